/* fuzz_decode.c -- fuzz target for the image decoders (decode_image: JPEG
 * through TurboJPEG, PNG with our inflate, binary PGM/PPM) and the crop and
 * resize every decoded face goes through (resize_to_face). The input is the
 * encoded image.
 *
 * Checked beyond "no crash": a decoded image is within the limits and fills
 * its buffer, a grey one has R = G = B everywhere, decoding again with the
 * same (reused) DecodedImage gives the same pixels, and after a failure the
 * same DecodedImage still decodes a good JPEG correctly (a failed TurboJPEG
 * handle must not poison the next image). */
#include <string.h>

#include "decode.h"
#include "fuzz_util.h"
#include "jpeg_encode.h"
#include "synthetic.h"

/* Images up to this many pixels are decoded twice and compared. */
#define COMPARE_MAX_PIXELS (1 << 20)

static uint8_t *good_jpeg;
static size_t good_len;
static uint8_t good_rgb[FACE_SIZE * FACE_SIZE * 3];

/* A small JPEG from the project's own encoder and its decoded face. */
static void make_good_jpeg(void) {
    enum { W = 24, H = 20 };
    uint8_t px[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) px[i] = (uint8_t)(i * 7 + i / 5);
    char err[512];
    const char *path = fuzz_remove_file("good.jpg");
    FUZZ_ASSERT(jpeg_write_file(path, px, W, H, 3, 90, err, sizeof err) == 0, "%s", err);
    size_t cap = 0;
    FUZZ_ASSERT(image_load_file(path, &good_jpeg, &cap, &good_len, err, sizeof err) == 0, "%s", err);
    DecodedImage img = {0};
    FUZZ_ASSERT(decode_to_face(good_jpeg, good_len, &img, 1.0f, good_rgb, err, sizeof err) == 0,
                "%s", err);
    decode_image_free(&img);
}

static void check_decoded(const DecodedImage *img) {
    FUZZ_ASSERT(img->width >= 1 && img->height >= 1 && img->width <= DECODE_MAX_SIDE &&
                    img->height <= DECODE_MAX_SIDE &&
                    (long long)img->width * img->height <= DECODE_MAX_PIXELS,
                "decoded %dx%d", img->width, img->height);
    size_t n = (size_t)img->width * (size_t)img->height;
    FUZZ_ASSERT(img->rgb && img->rgb_cap >= 3 * n, "rgb buffer of %zu bytes for %zu pixels",
                img->rgb_cap, n);
    const uint8_t *p = img->rgb;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < n; i++, p += 3) {
        sink ^= p[0] ^ p[1] ^ p[2];
        if (img->grey)
            FUZZ_ASSERT(p[0] == p[1] && p[1] == p[2], "grey image has colour at pixel %zu", i);
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!good_jpeg) make_good_jpeg();
    char err[512];
    DecodedImage img = {0};
    uint8_t face[FACE_SIZE * FACE_SIZE * 3];
    if (decode_image(data, size, &img, err, sizeof err) == 0) {
        fuzz_note("decode: %dx%d%s", img.width, img.height, img.grey ? " grey" : "");
        check_decoded(&img);
        static const float crops[] = {1.0f, 0.448f, 0.01f};
        for (size_t i = 0; i < sizeof crops / sizeof crops[0]; i++)
            resize_to_face(face, &img, crops[i]);
        size_t bytes = (size_t)img.width * (size_t)img.height * 3;
        if (bytes <= 3u * COMPARE_MAX_PIXELS) {
            uint8_t *first = malloc(bytes);
            FUZZ_ASSERT(first, "out of memory");
            memcpy(first, img.rgb, bytes);
            int w = img.width, h = img.height;
            FUZZ_ASSERT(decode_image(data, size, &img, err, sizeof err) == 0,
                        "second decode failed: %s", err);
            FUZZ_ASSERT(img.width == w && img.height == h && memcmp(first, img.rgb, bytes) == 0,
                        "second decode differs");
            free(first);
        }
    } else {
        FUZZ_ASSERT(err[0], "decode failed without a reason");
        fuzz_note("decode: %s", err);
        FUZZ_ASSERT(decode_to_face(good_jpeg, good_len, &img, 1.0f, face, err, sizeof err) == 0,
                    "good JPEG after a failure: %s", err);
        FUZZ_ASSERT(memcmp(face, good_rgb, sizeof face) == 0, "good JPEG decoded differently");
    }
    decode_image_free(&img);
    return 0;
}
