/* decode.h -- face images from bytes to 112x112 RGB: JPEG (libjpeg-turbo),
 * PNG and binary PGM/PPM decoding, and the crop-and-resize preprocessing that
 * training and evaluation share.
 *
 * Corrupt input is an error with a reason, never a crash and never a silently
 * grey or half-decoded image. Decoding reuses the buffers of a DecodedImage,
 * so a thread that keeps one decodes without allocating once it has seen its
 * largest image (libjpeg itself still allocates internally per image). */
#ifndef ARCFACE_DECODE_H
#define ARCFACE_DECODE_H

#include <stddef.h>
#include <stdint.h>

/* Images wider or taller than this, or with more pixels than DECODE_MAX_PIXELS,
 * are rejected from their header, before anything is allocated. */
#define DECODE_MAX_SIDE 16384
#define DECODE_MAX_PIXELS (64ll << 20)
/* image_load_file refuses larger files. */
#define IMAGE_FILE_MAX (64u << 20)

/* A decoded image and the decoder's reusable buffers. Start from a
 * zero-initialised struct (DecodedImage img = {0}, or memset); release with
 * decode_image_free. One per thread: it owns a TurboJPEG handle. After a
 * successful decode_image, rgb holds height rows of width pixels, R G B bytes
 * each, no padding, and grey is 1 when the source had no colour (a greyscale
 * JPEG, PNG or PGM: R = G = B everywhere), which lets resize_to_face filter
 * one channel; after a failed one, width, height, grey and rgb are
 * unspecified. */
typedef struct {
    int width, height;
    int grey;
    uint8_t *rgb;
    size_t rgb_cap;
    /* private: the decoders' scratch */
    void *tj;            /* tjhandle, created by the first JPEG */
    uint8_t *work;       /* JPEG: CMYK pixels; PNG: the IDAT data */
    size_t work_cap;
    uint8_t *raw;        /* PNG: inflated scanlines */
    size_t raw_cap;
} DecodedImage;

/* Decodes data[0..len) into img as 8-bit RGB. The format comes from the first
 * bytes:
 *   JPEG (FF D8 FF): baseline or progressive, any subsampling; greyscale
 *     becomes R = G = B; CMYK/YCCK (Adobe's inverted convention, as Photoshop
 *     and libjpeg-turbo write it) becomes R = C*K/255, G = M*K/255,
 *     B = Y*K/255. Any libjpeg warning (truncated data, corrupt entropy data,
 *     extraneous bytes) is an error too.
 *   PNG: every colour type and bit depth, Adam7 interlacing, CRC-32 checked on
 *     every chunk. 16-bit samples keep their high byte; 1/2/4-bit grey is
 *     scaled to 0..255 (x255, x85, x17); alpha (an alpha channel or tRNS) is
 *     ignored -- colour values are taken as stored, as PIL's convert("RGB")
 *     and OpenCV's IMREAD_COLOR do.
 *   PGM/PPM (P5/P6, maxval 1..65535; two bytes big-endian per sample above
 *     255): samples scaled to 0..255 as round(v * 255 / maxval); a sample
 *     above maxval is an error.
 * Returns 0, or -1 with a reason in err (unknown format with its first bytes,
 * truncated or corrupt data, a size over the limits, out of memory); img keeps
 * its buffers either way. */
int decode_image(const uint8_t *data, size_t len, DecodedImage *img, char *err, size_t errlen);

/* Frees img's buffers and TurboJPEG handle and zeroes it. Accepts NULL. */
void decode_image_free(DecodedImage *img);

/* The preprocessing used by training and evaluation. rgb112 is (112,112,3)
 * uint8 HWC; img is a decoded image; crop_fraction is in (0, 1].
 *
 * 1. Crop: the centred square of side s = round(crop_fraction * min(w, h))
 *    pixels (at least 1), i.e. the source region [x0, x0 + s) x [y0, y0 + s)
 *    with x0 = (w - s) / 2, y0 = (h - s) / 2, in coordinates where source
 *    pixel i covers [i, i + 1) (x0 is a half-integer when w - s is odd).
 *    crop_fraction 1 keeps the largest centred square.
 * 2. Resize the square to 112 x 112, each output pixel j covering source
 *    [x0 + j*s/112, x0 + (j+1)*s/112) (pixel-centre aligned):
 *    s >= 112: area average (box filter) -- every source pixel weighted by the
 *      area it shares with the output pixel;
 *    s < 112: bilinear, output pixel j sampling source position
 *      x0 + (j + 0.5) * s/112 - 0.5 in pixel-centre coordinates, clamped to
 *      the image (edge pixels repeat).
 *    Separable, computed in float, rounded to nearest (halves up). When
 *    img->grey is set only R is filtered and written to all three channels.
 * A 112x112 image with crop 1 is copied exactly (so insightface's aligned
 * 112x112 sets pass through unchanged); LFW-a's 250x250 with crop 0.448 is
 * exactly its centre 112x112. Can't fail, no allocation, thread-safe. */
void resize_to_face(uint8_t *rgb112, const DecodedImage *img, float crop_fraction);

/* decode_image into scratch, then resize_to_face into rgb112. Returns 0, or -1
 * with decode_image's reason in err (rgb112 unaltered then). */
int decode_to_face(const uint8_t *data, size_t len, DecodedImage *scratch, float crop_fraction, uint8_t *rgb112,
                   char *err, size_t errlen);

/* Reads the whole file at path into *buf, growing it (realloc) when *cap is too
 * small; *buf may start NULL with *cap 0. Sets *len to the file's size.
 * Returns 0, or -1 with a reason naming path in err (cannot open or read, a
 * directory, larger than IMAGE_FILE_MAX, out of memory); *buf and *cap stay
 * valid for the caller to free either way. */
int image_load_file(const char *path, uint8_t **buf, size_t *cap, size_t *len, char *err, size_t errlen);

#endif
