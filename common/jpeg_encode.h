/* jpeg_encode.h -- 8-bit RGB or grey pixels to a JPEG file through libjpeg-turbo. */
#ifndef ARCFACE_JPEG_ENCODE_H
#define ARCFACE_JPEG_ENCODE_H

#include <stddef.h>
#include <stdint.h>

/* Compresses pixels, (height, width, channels) uint8 HWC with channels 3 (RGB,
 * written with 4:2:0 chroma subsampling as cv2.imwrite and PIL do by default)
 * or 1 (greyscale JPEG), at quality 1..100, and writes it to path (created or
 * truncated, mode 0644 less the umask). Returns 0, or -1 with a reason naming
 * path in err (bad arguments, compressor failure, cannot create or write the
 * file); a partly written file is removed. Thread-safe; allocates per call. */
int jpeg_write_file(const char *path, const uint8_t *pixels, int width, int height, int channels, int quality,
                    char *err, size_t errlen);

#endif
