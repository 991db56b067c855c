/* fuzz_decode.c -- fuzz target for the image decoders (decode_image: JPEG
 * through TurboJPEG, PNG with our inflate, binary PGM/PPM) and the crop and
 * resize every decoded face goes through (resize_to_face: one image in four,
 * with one of three crops, in a fuzzing run; every image with all three in a
 * thorough run, see fuzz_util.h).
 * The input is the encoded image.
 *
 * Checked beyond "no crash": a decoded image is within the limits and fills
 * its buffer, a grey one has R = G = B everywhere, decoding again with the
 * same (reused) DecodedImage gives the same pixels, and after a failure the
 * same DecodedImage still decodes a good JPEG to the same pixels as a fresh
 * one (a failed TurboJPEG handle must not poison the next image). */
#include <string.h>

#include "decode.h"
#include "fuzz_util.h"
#include "jpeg_encode.h"
#include "synthetic.h"

/* Images up to this many pixels are decoded twice and compared. */
#define COMPARE_MAX_PIXELS (1 << 20)
/* A fuzzing run resizes one decoded image in this many (see the call). */
#define RESIZE_ONE_IN 4

enum { GOOD_W = 24, GOOD_H = 20 };
static uint8_t *good_jpeg;
static size_t good_len;
static uint8_t good_rgb[GOOD_W * GOOD_H * 3];

/* The copy of a decoded image compared with a second decode, kept between
 * inputs: a fresh malloc of up to 3 MB each time is about as slow as the
 * decode under ASan. */
static uint8_t *first;
static size_t first_cap;

/* A small JPEG from the project's own encoder and its pixels as a fresh
 * DecodedImage decodes them. */
static void make_good_jpeg(void) {
    uint8_t px[GOOD_W * GOOD_H * 3];
    for (int i = 0; i < GOOD_W * GOOD_H * 3; i++) px[i] = (uint8_t)(i * 7 + i / 5);
    char err[512];
    const char *path = fuzz_remove_file("good.jpg");
    FUZZ_ASSERT(jpeg_write_file(path, px, GOOD_W, GOOD_H, 3, 90, err, sizeof err) == 0, "%s", err);
    size_t cap = 0;
    FUZZ_ASSERT(image_load_file(path, &good_jpeg, &cap, &good_len, err, sizeof err) == 0, "%s", err);
    DecodedImage img = {0};
    FUZZ_ASSERT(decode_image(good_jpeg, good_len, &img, err, sizeof err) == 0, "%s", err);
    FUZZ_ASSERT(img.width == GOOD_W && img.height == GOOD_H && !img.grey, "good JPEG is %dx%d",
                img.width, img.height);
    memcpy(good_rgb, img.rgb, sizeof good_rgb);
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
        /* resize_to_face computes 112 x 112 outputs whatever the image's
         * size; with three crops per image it took four fifths of the time
         * under the fuzzer's instrumentation. Which pixels it reads and
         * writes depends on the width, height, grey flag and crop only, which
         * few mutations change. So a fuzzing run resizes one decoded image in
         * RESIZE_ONE_IN, with one crop, both chosen by hash; a thorough run
         * resizes every image with all three. */
        static const float crops[] = {1.0f, 0.448f, 0.01f};
        const size_t n_crops = sizeof crops / sizeof crops[0];
        uint32_t hash = fuzz_hash(data, size);
        int resize = hash % RESIZE_ONE_IN == 0;
        size_t pick = hash / RESIZE_ONE_IN % n_crops;
        for (size_t i = 0; i < n_crops; i++)
            if ((resize && i == pick) || fuzz_thorough()) resize_to_face(face, &img, crops[i]);
        size_t bytes = (size_t)img.width * (size_t)img.height * 3;
        if (bytes <= 3u * COMPARE_MAX_PIXELS) {
            if (bytes > first_cap) {
                free(first);
                first = malloc(bytes);
                FUZZ_ASSERT(first, "out of memory");
                first_cap = bytes;
            }
            memcpy(first, img.rgb, bytes);
            int w = img.width, h = img.height;
            FUZZ_ASSERT(decode_image(data, size, &img, err, sizeof err) == 0,
                        "second decode failed: %s", err);
            FUZZ_ASSERT(img.width == w && img.height == h && memcmp(first, img.rgb, bytes) == 0,
                        "second decode differs");
        }
    } else {
        FUZZ_ASSERT(err[0], "decode failed without a reason");
        fuzz_note("decode: %s", err);
        /* The decoded pixels, not a resized face: resize_to_face of the good
         * JPEG took two thirds of the time of an input that fails (most do),
         * and comparing the pixels themselves is the stricter check. */
        FUZZ_ASSERT(decode_image(good_jpeg, good_len, &img, err, sizeof err) == 0,
                    "good JPEG after a failure: %s", err);
        FUZZ_ASSERT(img.width == GOOD_W && img.height == GOOD_H && !img.grey &&
                        memcmp(img.rgb, good_rgb, sizeof good_rgb) == 0,
                    "good JPEG decoded differently after a failure");
    }
    decode_image_free(&img);
    return 0;
}
