/* png_decode.h -- PNG decoding to 8-bit RGB for decode_image (see decode.h for the
 * conversions: 16-bit keeps the high byte, low-depth grey is scaled, alpha is
 * ignored). */
#ifndef ARCFACE_PNG_DECODE_H
#define ARCFACE_PNG_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "decode.h"

/* Decodes the PNG file data[0..len) (signature included) into img->rgb,
 * width, height, using img->work and img->raw as scratch (grown, never
 * shrunk). Checks the CRC-32 of every chunk, the chunk order (IHDR first,
 * PLTE before IDAT, IDAT consecutive, IEND present), IHDR's fields and the
 * size limits of decode.h, filter types, palette indices, and that the zlib
 * data holds exactly the image's scanlines. Unknown ancillary chunks are
 * skipped; an unknown critical chunk is an error. Returns 0, or -1 with a
 * reason in err. */
int png_decode(const uint8_t *data, size_t len, DecodedImage *img, char *err, size_t errlen);

/* CRC-32 (the ISO-HDLC polynomial of PNG, zlib and gzip) of p[0..n),
 * continuing from crc (0 to start). */
uint32_t png_crc32(uint32_t crc, const uint8_t *p, size_t n);

#endif
