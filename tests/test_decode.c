/* test_decode.c -- image decoding (JPEG, PNG, PGM/PPM, the inflater) and the
 * crop-and-resize preprocessing: round trips, exact pixels from PNGs written
 * by tests/tools/make_png.py, a slow reference resize, corrupt and truncated
 * inputs (each must fail with a reason, never crash), and the real YaleB and
 * LFW JPEGs under ../shared/data/faces when present. */
#define _GNU_SOURCE
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "decode.h"
#include "inflate.h"
#include "png_decode.h"
#include "rng.h"
#include "synthetic.h"
#include "testutil.h"

#define S FACE_SIZE

static char err[512];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint32_t rnd(uint64_t *state) { return (uint32_t)(rng_hash4(*state += 1, 17, 3, 5) >> 32); }

/* A DecodedImage wrapping caller pixels, for resize tests. */
static DecodedImage wrap(uint8_t *rgb, int w, int h) {
    DecodedImage img = {0};
    img.width = w;
    img.height = h;
    img.rgb = rgb;
    return img;
}

/* ---- growable byte buffer and PNG / zlib writers ------------------------ */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} Buf;

static void put(Buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = 2 * (b->n + n) + 64;
        b->p = realloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_be32(Buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 4);
}

static void png_chunk(Buf *b, const char *type, const uint8_t *d, size_t n) {
    put_be32(b, (uint32_t)n);
    size_t at = b->n;
    put(b, type, 4);
    put(b, d, n);
    put_be32(b, png_crc32(0, b->p + at, n + 4));
}

/* zlib stream of stored blocks (what a minimal encoder writes). */
static void zlib_stored(Buf *z, const uint8_t *d, size_t n) {
    put(z, "\x78\x01", 2);
    size_t off = 0;
    do {
        size_t len = n - off < 65535 ? n - off : 65535;
        uint8_t h[5] = {off + len == n, (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)~len, (uint8_t)(~len >> 8)};
        put(z, h, 5);
        put(z, d + off, len);
        off += len;
    } while (off < n);
    put_be32(z, inflate_adler32(1, d, n));
}

/* A PNG of the given header fields whose IDAT holds zdata, plus IEND. */
static void png_file(Buf *out, uint32_t w, uint32_t h, int depth, int colour, const uint8_t *zdata, size_t zn) {
    out->n = 0;
    put(out, "\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                        (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h,
                        (uint8_t)depth, (uint8_t)colour, 0, 0, 0};
    png_chunk(out, "IHDR", ihdr, 13);
    png_chunk(out, "IDAT", zdata, zn);
    png_chunk(out, "IEND", NULL, 0);
}

/* LSB-first bit writer for hand-made deflate streams. */
typedef struct {
    Buf b;
    uint32_t acc;
    int nbits;
} BitWriter;

static void bits(BitWriter *w, uint32_t v, int n) {
    for (int i = 0; i < n; i++) {
        w->acc |= ((v >> i) & 1u) << w->nbits;
        if (++w->nbits == 8) {
            uint8_t byte = (uint8_t)w->acc;
            put(&w->b, &byte, 1);
            w->acc = 0;
            w->nbits = 0;
        }
    }
}

static void huff(BitWriter *w, uint32_t code, int len) { /* Huffman codes go most significant bit first */
    for (int i = len - 1; i >= 0; i--) bits(w, (code >> i) & 1u, 1);
}

/* Wraps the deflate bits of w in a zlib header and the Adler-32 of want. */
static void zlib_wrap(Buf *z, BitWriter *w, const uint8_t *want, size_t n) {
    if (w->nbits) bits(w, 0, 8 - w->nbits);
    z->n = 0;
    put(z, "\x78\x01", 2);
    put(z, w->b.p, w->b.n);
    put_be32(z, inflate_adler32(1, want, n));
}

/* ---- JPEG ---------------------------------------------------------------- */

static unsigned char *jpeg_encode(const uint8_t *px, int w, int h, int pf, int subsamp, unsigned long *size) {
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    *size = 0;
    int rc = tjCompress2(tj, px, w, 0, h, pf, &jpeg, size, subsamp, 95, 0);
    EXPECT(rc == 0, "tjCompress2: %s", tjGetErrorStr2(tj));
    tjDestroy(tj);
    return jpeg;
}

static void smooth_image(uint8_t *rgb, int w, int h) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(40 + 170 * x / w);
            p[1] = (uint8_t)(200 - 150 * y / h);
            p[2] = (uint8_t)(128 + 60 * sin(0.2 * x + 0.15 * y));
        }
}

static double mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n, int *max_diff) {
    double s = 0;
    *max_diff = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs(a[i] - b[i]);
        s += d;
        if (d > *max_diff) *max_diff = d;
    }
    return s / (double)n;
}

static void test_jpeg(DecodedImage *img) {
    enum { W = 37, H = 29 }; /* not a multiple of the MCU size */
    static uint8_t rgb[W * H * 3], grey[W * H], cmyk[W * H * 4], want[W * H * 3];
    smooth_image(rgb, W, H);
    int maxd;
    unsigned long size;
    const int subsamps[] = {TJSAMP_444, TJSAMP_420};
    for (int k = 0; k < 2; k++) {
        unsigned char *jpeg = jpeg_encode(rgb, W, H, TJPF_RGB, subsamps[k], &size);
        EXPECT(decode_image(jpeg, size, img, err, sizeof err) == 0, "colour JPEG: %s", err);
        EXPECT(img->width == W && img->height == H && !img->grey, "colour JPEG decoded as %dx%d, grey %d", img->width,
               img->height, img->grey);
        double mad = mean_abs_diff(img->rgb, rgb, sizeof rgb, &maxd);
        EXPECT(mad < 2.0 && maxd <= 24, "colour JPEG (subsampling %d): mean |diff| %.3f, max %d", subsamps[k], mad, maxd);
        tjFree(jpeg);
    }
    for (int i = 0; i < W * H; i++) grey[i] = (uint8_t)(30 + (i * 7) % 190 / 4 + (i / W) * 3);
    unsigned char *jpeg = jpeg_encode(grey, W, H, TJPF_GRAY, TJSAMP_GRAY, &size);
    EXPECT(decode_image(jpeg, size, img, err, sizeof err) == 0, "grey JPEG: %s", err);
    int not_grey = 0;
    for (int i = 0; i < W * H; i++) {
        const uint8_t *p = img->rgb + 3 * i;
        not_grey += p[0] != p[1] || p[1] != p[2];
        want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = grey[i];
    }
    EXPECT(not_grey == 0 && img->grey == 1, "grey JPEG: %d pixels with R, G, B not equal, grey flag %d", not_grey,
           img->grey);
    double mad = mean_abs_diff(img->rgb, want, sizeof want, &maxd);
    EXPECT(mad < 2.0 && maxd <= 24, "grey JPEG: mean |diff| %.3f, max %d", mad, maxd);
    tjFree(jpeg);

    /* CMYK (stored inverted, as Adobe and libjpeg-turbo do): RGB = C*K/255 ... */
    for (int i = 0; i < W * H; i++) {
        uint8_t k = (uint8_t)(150 + (i % W) * 100 / W);
        memcpy(cmyk + 4 * i, rgb + 3 * i, 3);
        cmyk[4 * i + 3] = k;
        for (int c = 0; c < 3; c++) want[3 * i + c] = (uint8_t)((rgb[3 * i + c] * k + 127) / 255);
    }
    jpeg = jpeg_encode(cmyk, W, H, TJPF_CMYK, TJSAMP_444, &size);
    EXPECT(decode_image(jpeg, size, img, err, sizeof err) == 0, "CMYK JPEG: %s", err);
    mad = mean_abs_diff(img->rgb, want, sizeof want, &maxd);
    EXPECT(mad < 2.0 && maxd <= 24, "CMYK JPEG: mean |diff| %.3f, max %d", mad, maxd);
    tjFree(jpeg);

    /* Every truncation fails (without EOI libjpeg warns; warnings are errors).
     * A larger image, so that most cut points fall in the entropy-coded data. */
    enum { BW = 160, BH = 120 };
    uint8_t *large = malloc(BW * BH * 3);
    smooth_image(large, BW, BH);
    for (int i = 0; i < BW * BH * 3; i++) large[i] = (uint8_t)(large[i] + (i * 7919) % 23); /* some texture */
    jpeg = jpeg_encode(large, BW, BH, TJPF_RGB, TJSAMP_420, &size);
    free(large);
    int accepted = 0, no_reason = 0;
    for (unsigned long cut = 0; cut < size; cut++) {
        err[0] = 0;
        if (decode_image(jpeg, cut, img, err, sizeof err) == 0) accepted++;
        no_reason += err[0] == 0;
    }
    EXPECT(accepted == 0 && no_reason == 0, "%d of %lu truncated JPEGs decoded, %d failed without a reason",
           accepted, size, no_reason);
    EXPECT(decode_image(jpeg, size / 2, img, err, sizeof err) == -1 && strstr(err, "JPEG"), "half JPEG: %s", err);
    fprintf(stderr, "truncated JPEG: %s\n", err);
    /* garbage in the middle of the entropy-coded data */
    unsigned char *bad = malloc(size);
    memcpy(bad, jpeg, size);
    uint64_t st = 1;
    for (unsigned long i = size / 2; i < size / 2 + 64; i++) bad[i] = (uint8_t)rnd(&st);
    EXPECT(decode_image(bad, size, img, err, sizeof err) == -1, "JPEG with 64 garbage bytes decoded");
    fprintf(stderr, "garbage JPEG: %s\n", err);
    /* a header claiming 60000 x 60000 */
    memcpy(bad, jpeg, size);
    for (unsigned long i = 2; i + 8 < size; i++)
        if (bad[i] == 0xFF && bad[i + 1] == 0xC0) { /* SOF0: FF C0 len(2) precision height(2) width(2) */
            bad[i + 5] = bad[i + 7] = 0xEA;
            bad[i + 6] = bad[i + 8] = 0x60;
            break;
        }
    EXPECT(decode_image(bad, size, img, err, sizeof err) == -1 && strstr(err, "limit"), "huge JPEG: %s", err);
    /* random damage: any outcome but a crash, and a reason whenever it fails */
    int ok = 0, failed = 0;
    for (int t = 0; t < 3000; t++) {
        memcpy(bad, jpeg, size);
        int n = 1 + (int)(rnd(&st) % 4);
        for (int k = 0; k < n; k++) bad[rnd(&st) % size] = (uint8_t)rnd(&st);
        err[0] = 0;
        if (decode_image(bad, size, img, err, sizeof err) == 0) {
            ok++;
            EXPECT(img->width > 0 && img->height > 0, "damaged JPEG decoded as %dx%d", img->width, img->height);
        } else {
            failed++;
            EXPECT(err[0] != 0, "damaged JPEG failed without a reason");
        }
    }
    fprintf(stderr, "damaged JPEGs (1-4 random bytes): %d rejected, %d decoded (JPEG has no checksum)\n", failed, ok);
    free(bad);
    tjFree(jpeg);
}

/* ---- PNG ----------------------------------------------------------------- */

static int read_file(const char *path, uint8_t **buf, size_t *cap, size_t *len) {
    return image_load_file(path, buf, cap, len, err, sizeof err);
}

static void test_png_files(DecodedImage *img) {
    const char *src = getenv("ARCFACE_SOURCE_DIR");
    if (!src) src = ".";
    if (system("python3 -c '' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP PNG files from make_png.py: python3 not found\n");
        return;
    }
    char dir[] = "/tmp/test_decode_XXXXXX", script[1024], cmd[2200], path[1024];
    snprintf(script, sizeof script, "%s/tests/tools/make_png.py", src);
    if (access(script, R_OK) != 0) {
        fprintf(stderr, "SKIP PNG files: %s not found (set ARCFACE_SOURCE_DIR to the project root)\n", script);
        return;
    }
    EXPECT(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s' >/dev/null", script, dir);
    if (system(cmd) != 0) {
        EXPECT(0, "%s failed", cmd);
        return;
    }
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    FILE *f = fopen(path, "r");
    EXPECT(f != NULL, "no %s", path);
    if (!f) return;
    uint8_t *png = NULL, *want = NULL;
    size_t png_cap = 0, want_cap = 0, png_len, want_len;
    char name[256];
    int w, h, cases = 0, bad = 0;
    while (fscanf(f, "%255s %d %d", name, &w, &h) == 3) {
        cases++;
        png_len = want_len = 0;
        snprintf(path, sizeof path, "%s/%s.png", dir, name);
        EXPECT(read_file(path, &png, &png_cap, &png_len) == 0, "%s", err);
        unlink(path);
        snprintf(path, sizeof path, "%s/%s.rgb", dir, name);
        EXPECT(read_file(path, &want, &want_cap, &want_len) == 0, "%s", err);
        unlink(path);
        if (decode_image(png, png_len, img, err, sizeof err) != 0) {
            EXPECT(0, "%s.png: %s", name, err);
            bad++;
            continue;
        }
        EXPECT(img->width == w && img->height == h, "%s.png decoded as %dx%d", name, img->width, img->height);
        int grey_type = name[0] == 'c' && (name[1] == '0' || name[1] == '4');
        if (grey_type) EXPECT(img->grey == 1, "%s.png: grey flag not set", name);
        if (want_len != (size_t)w * h * 3 || memcmp(img->rgb, want, want_len) != 0) {
            EXPECT(0, "%s.png: pixels differ from %s.rgb", name, name);
            bad++;
        }
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    unlink(path);
    rmdir(dir);
    EXPECT(cases >= 140, "make_png.py wrote only %d cases", cases);
    fprintf(stderr, "PNG files from make_png.py: %d cases, %d wrong\n", cases, bad);
    free(png);
    free(want);
}

/* Decodes a PNG expected to fail; the reason must mention `what`. */
static void expect_png_error(DecodedImage *img, const Buf *b, const char *what, const char *label) {
    err[0] = 0;
    int rc = decode_image(b->p, b->n, img, err, sizeof err);
    EXPECT(rc == -1 && strstr(err, what), "%s: rc %d, reason \"%s\" (expected \"%s\")", label, rc, err, what);
    fprintf(stderr, "  %-28s -> %s\n", label, err);
}

static void test_png_built(DecodedImage *img) {
    enum { W = 9, H = 5 };
    uint8_t raw[H * (1 + W * 3)], want[W * H * 3];
    for (int y = 0; y < H; y++) {
        raw[y * (1 + W * 3)] = 0;
        for (int i = 0; i < W * 3; i++) want[y * W * 3 + i] = raw[y * (1 + W * 3) + 1 + i] = (uint8_t)(y * 50 + i * 7);
    }
    Buf z = {0}, png = {0};
    zlib_stored(&z, raw, sizeof raw);
    png_file(&png, W, H, 8, 2, z.p, z.n);
    EXPECT(decode_image(png.p, png.n, img, err, sizeof err) == 0, "stored-block PNG: %s", err);
    EXPECT(img->width == W && img->height == H && memcmp(img->rgb, want, sizeof want) == 0, "stored-block PNG pixels");

    int accepted = 0;
    for (size_t cut = 0; cut < png.n; cut++) accepted += decode_image(png.p, cut, img, err, sizeof err) == 0;
    EXPECT(accepted == 0, "%d truncated PNGs decoded", accepted);

    fprintf(stderr, "corrupt PNGs:\n");
    Buf b = {0};
    put(&b, png.p, png.n);
    b.p[40] ^= 1; /* inside IDAT */
    expect_png_error(img, &b, "CRC mismatch", "bad CRC");
    b.n = png.n - 30;
    b.p[40] ^= 1;
    expect_png_error(img, &b, "truncated", "file cut inside IDAT");
    /* a zlib stream cut short inside an intact IDAT chunk */
    png_file(&b, W, H, 8, 2, z.p, z.n - 20);
    expect_png_error(img, &b, "truncated", "truncated zlib data");
    png_file(&b, W, H, 8, 2, z.p, z.n - 2);
    expect_png_error(img, &b, "Adler-32", "missing Adler-32");
    Buf z2 = {0};
    put(&z2, z.p, z.n);
    z2.p[0] = 0x79; /* CM 9 */
    png_file(&b, W, H, 8, 2, z2.p, z2.n);
    expect_png_error(img, &b, "zlib header", "bad zlib header");
    z2.n = 0;
    put(&z2, z.p, z.n);
    z2.p[z2.n - 1] ^= 0x40;
    png_file(&b, W, H, 8, 2, z2.p, z2.n);
    expect_png_error(img, &b, "Adler-32 mismatch", "bad Adler-32");
    png_file(&b, W, H + 1, 8, 2, z.p, z.n);
    expect_png_error(img, &b, "ends after", "too little image data");
    png_file(&b, W, H - 1, 8, 2, z.p, z.n);
    expect_png_error(img, &b, "more data", "too much image data");
    png_file(&b, 0, H, 8, 2, z.p, z.n);
    expect_png_error(img, &b, "invalid size", "IHDR width 0");
    png_file(&b, 100000, 100000, 8, 2, z.p, z.n);
    expect_png_error(img, &b, "limit", "IHDR 100000x100000");
    png_file(&b, 8000, 8000, 8, 2, z.p, z.n);
    expect_png_error(img, &b, "cannot hold", "IHDR 8000x8000, tiny IDAT");
    png_file(&b, W, H, 4, 2, z.p, z.n);
    expect_png_error(img, &b, "bit depth", "RGB at 4 bits");
    png_file(&b, W, H, 8, 3, z.p, z.n);
    expect_png_error(img, &b, "without PLTE", "palette without PLTE");

    z2.n = 0; /* filter type 7 on the second row */
    raw[1 + W * 3] = 7;
    zlib_stored(&z2, raw, sizeof raw);
    raw[1 + W * 3] = 0;
    png_file(&b, W, H, 8, 2, z2.p, z2.n);
    expect_png_error(img, &b, "filter type", "filter type 7");
    /* palette index 3 with a 2-colour palette */
    uint8_t praw[2] = {0, 0x03}, plte[6] = {1, 2, 3, 4, 5, 6};
    z2.n = 0;
    zlib_stored(&z2, praw, 2);
    b.n = 0;
    put(&b, "\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[13] = {0, 0, 0, 1, 0, 0, 0, 1, 8, 3, 0, 0, 0};
    png_chunk(&b, "IHDR", ihdr, 13);
    png_chunk(&b, "PLTE", plte, 6);
    png_chunk(&b, "IDAT", z2.p, z2.n);
    png_chunk(&b, "IEND", NULL, 0);
    expect_png_error(img, &b, "palette index", "palette index past PLTE");
    /* an unknown critical chunk, and no IEND */
    b.n = 0;
    put(&b, png.p, 33); /* signature + IHDR */
    png_chunk(&b, "ABCD", NULL, 0);
    expect_png_error(img, &b, "critical chunk", "unknown critical chunk");
    b.n = png.n - 12;
    memcpy(b.p, png.p, b.n);
    expect_png_error(img, &b, "IEND", "no IEND");
    b.n = 0;
    put(&b, png.p, 8);
    png_chunk(&b, "IDAT", z.p, z.n);
    expect_png_error(img, &b, "not IHDR", "IDAT before IHDR");

    /* random damage with the CRC recomputed, so that the decoder's other checks meet it */
    uint64_t st = 5;
    int ok = 0, failed = 0;
    zlib_stored(&z2, raw, sizeof raw);
    for (int t = 0; t < 3000; t++) {
        b.n = 0;
        put(&b, png.p, png.n);
        size_t at = 8 + (rnd(&st) % (png.n - 8));
        b.p[at] = (uint8_t)rnd(&st);
        for (size_t pos = 8; pos + 12 <= b.n;) { /* re-CRC every chunk that still parses */
            uint32_t n = (uint32_t)b.p[pos] << 24 | (uint32_t)b.p[pos + 1] << 16 | (uint32_t)b.p[pos + 2] << 8 | b.p[pos + 3];
            if (n > b.n - pos - 12) break;
            uint32_t crc = png_crc32(0, b.p + pos + 4, n + 4);
            uint8_t c[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8), (uint8_t)crc};
            memcpy(b.p + pos + 8 + n, c, 4);
            pos += 12 + n;
        }
        err[0] = 0;
        if (decode_image(b.p, b.n, img, err, sizeof err) == 0) {
            ok++;
        } else {
            failed++;
            EXPECT(err[0], "damaged PNG failed without a reason");
        }
    }
    fprintf(stderr, "damaged PNGs (CRC fixed up): %d rejected, %d decoded\n", failed, ok);
    free(z.p);
    free(z2.p);
    free(png.p);
    free(b.p);
}

/* Hand-made deflate streams the zlib encoder never writes. */
static void test_inflate(void) {
    uint8_t out[64];
    Buf z = {0};
    fprintf(stderr, "hand-made deflate streams:\n");
    /* fixed Huffman: literal 'A', then length 3 at distance 1 -> "AAAA" */
    BitWriter w = {0};
    bits(&w, 1, 1), bits(&w, 1, 2);          /* final, fixed */
    huff(&w, 0x30 + 'A', 8);                 /* literal */
    huff(&w, 1, 7), huff(&w, 0, 5);          /* length code 257 (3), distance code 0 (1) */
    huff(&w, 0, 7);                          /* end of block */
    zlib_wrap(&z, &w, (const uint8_t *)"AAAA", 4);
    EXPECT(inflate_zlib(out, 4, z.p, z.n, err, sizeof err) == 0 && memcmp(out, "AAAA", 4) == 0, "fixed AAAA: %s", err);
    /* the same with distance 2: reaches before the start */
    free(w.b.p);
    w = (BitWriter){0};
    bits(&w, 1, 1), bits(&w, 1, 2);
    huff(&w, 0x30 + 'A', 8);
    huff(&w, 1, 7), huff(&w, 1, 5); /* distance code 1 = 2 */
    huff(&w, 0, 7);
    zlib_wrap(&z, &w, (const uint8_t *)"AAAA", 4);
    EXPECT(inflate_zlib(out, 4, z.p, z.n, err, sizeof err) == -1 && strstr(err, "too far back"), "distance: %s", err);
    fprintf(stderr, "  %-28s -> %s\n", "distance too far back", err);
    /* distance code 30 (only 0..29 exist) */
    free(w.b.p);
    w = (BitWriter){0};
    bits(&w, 1, 1), bits(&w, 1, 2);
    huff(&w, 0x30 + 'A', 8);
    huff(&w, 1, 7), huff(&w, 30, 5);
    zlib_wrap(&z, &w, (const uint8_t *)"AAAA", 4);
    EXPECT(inflate_zlib(out, 4, z.p, z.n, err, sizeof err) == -1 && strstr(err, "distance code"), "dist 30: %s", err);
    /* dynamic block: code-length code with 19 one-bit codes */
    free(w.b.p);
    w = (BitWriter){0};
    bits(&w, 1, 1), bits(&w, 2, 2);
    bits(&w, 0, 5), bits(&w, 0, 5), bits(&w, 15, 4);
    for (int i = 0; i < 19; i++) bits(&w, 1, 3);
    zlib_wrap(&z, &w, out, 0);
    EXPECT(inflate_zlib(out, 4, z.p, z.n, err, sizeof err) == -1 && strstr(err, "over-subscribed"), "cl: %s", err);
    fprintf(stderr, "  %-28s -> %s\n", "code lengths over-subscribed", err);
    /* dynamic block: a valid code-length code {1: "0", 18: "1"}, then 257
     * literal/length codes of one bit each */
    free(w.b.p);
    w = (BitWriter){0};
    bits(&w, 1, 1), bits(&w, 2, 2);
    bits(&w, 0, 5), bits(&w, 0, 5), bits(&w, 14, 4); /* 257 + 1 codes, 18 code-length lengths */
    static const int ORDER[18] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1};
    for (int i = 0; i < 18; i++) bits(&w, ORDER[i] == 1 || ORDER[i] == 18, 3);
    for (int i = 0; i < 258; i++) huff(&w, 0, 1);
    zlib_wrap(&z, &w, out, 0);
    EXPECT(inflate_zlib(out, 4, z.p, z.n, err, sizeof err) == -1 && strstr(err, "literal/length code lengths are over"),
           "litlen: %s", err);
    fprintf(stderr, "  %-28s -> %s\n", "literal codes over-subscribed", err);
    /* incomplete code-length code: a single code of length 2 */
    free(w.b.p);
    w = (BitWriter){0};
    bits(&w, 1, 1), bits(&w, 2, 2);
    bits(&w, 0, 5), bits(&w, 0, 5), bits(&w, 0, 4);
    bits(&w, 0, 3), bits(&w, 0, 3), bits(&w, 2, 3), bits(&w, 0, 3);
    zlib_wrap(&z, &w, out, 0);
    EXPECT(inflate_zlib(out, 4, z.p, z.n, err, sizeof err) == -1 && strstr(err, "incomplete"), "incomplete: %s", err);
    /* reserved block type, stored length complement */
    free(w.b.p);
    w = (BitWriter){0};
    bits(&w, 1, 1), bits(&w, 3, 2);
    zlib_wrap(&z, &w, out, 0);
    EXPECT(inflate_zlib(out, 4, z.p, z.n, err, sizeof err) == -1 && strstr(err, "reserved"), "type 3: %s", err);
    z.n = 0;
    put(&z, "\x78\x01\x01\x04\x00\x00\x00", 7);
    EXPECT(inflate_zlib(out, 4, z.p, z.n, err, sizeof err) == -1 && strstr(err, "complement"), "stored: %s", err);
    put(&z, "\x78\x01", 2);
    z.p[0] = 0x78, z.p[1] = 0x02;
    EXPECT(inflate_zlib(out, 4, z.p, 2, err, sizeof err) == -1 && strstr(err, "header"), "check bits: %s", err);

    /* random damage to real zlib streams: never a crash or an out-of-bounds access */
    enum { N = 3000 };
    static uint8_t data[N], big[N];
    for (int i = 0; i < N; i++) data[i] = (uint8_t)(i % 251 < 100 ? i % 7 : (i * 31) % 256);
    uint64_t st = 9;
    z.n = 0;
    zlib_stored(&z, data, N);
    EXPECT(inflate_zlib(big, N, z.p, z.n, err, sizeof err) == 0 && memcmp(big, data, N) == 0, "stored: %s", err);
    int failed = 0;
    Buf m = {0};
    for (int t = 0; t < 3000; t++) {
        m.n = 0;
        put(&m, z.p, z.n);
        m.p[2 + rnd(&st) % (m.n - 2)] = (uint8_t)rnd(&st);
        failed += inflate_zlib(big, N, m.p, m.n, err, sizeof err) != 0;
        size_t cut = rnd(&st) % m.n;
        failed += inflate_zlib(big, N, m.p, cut, err, sizeof err) != 0;
        for (size_t i = 2; i < m.n && i < 400; i++) m.p[i] = (uint8_t)rnd(&st); /* random bits as deflate data */
        failed += inflate_zlib(big, N, m.p, m.n, err, sizeof err) != 0;
    }
    EXPECT(failed >= 6000, "only %d of 9000 damaged zlib streams rejected", failed);
    free(m.p);
    free(z.p);
    free(w.b.p);
}

/* ---- PGM / PPM and other formats ----------------------------------------- */

static void test_pnm(DecodedImage *img) {
    Buf b = {0};
    const char *hdr = "P6\n# a comment\n3 2\n255\n";
    put(&b, hdr, strlen(hdr));
    uint8_t px[18];
    for (int i = 0; i < 18; i++) px[i] = (uint8_t)(i * 14);
    put(&b, px, 18);
    EXPECT(decode_image(b.p, b.n, img, err, sizeof err) == 0, "P6: %s", err);
    EXPECT(img->width == 3 && img->height == 2 && memcmp(img->rgb, px, 18) == 0, "P6 pixels");
    b.n = 0;
    hdr = "P5 2 2 100 ";
    put(&b, hdr, strlen(hdr));
    put(&b, "\x00\x32\x63\x64", 4); /* 0 50 99 100 -> 0 128 252 255 */
    EXPECT(decode_image(b.p, b.n, img, err, sizeof err) == 0 && img->grey, "P5 maxval 100: %s", err);
    static const uint8_t want5[4] = {0, 128, 252, 255};
    for (int i = 0; i < 4; i++)
        EXPECT(img->rgb[3 * i] == want5[i] && img->rgb[3 * i + 1] == want5[i] && img->rgb[3 * i + 2] == want5[i],
               "P5 pixel %d = %d, want %d", i, img->rgb[3 * i], want5[i]);
    b.n = 0;
    hdr = "P6 1 1 65535\n";
    put(&b, hdr, strlen(hdr));
    put(&b, "\xff\xff\x80\x00\x00\x80", 6); /* 65535 32768 128 -> 255 128 0 */
    EXPECT(decode_image(b.p, b.n, img, err, sizeof err) == 0, "P6 16-bit: %s", err);
    EXPECT(img->rgb[0] == 255 && img->rgb[1] == 128 && img->rgb[2] == 0, "P6 16-bit: %d %d %d", img->rgb[0],
           img->rgb[1], img->rgb[2]);
    b.n = 0;
    hdr = "P5 1 2 1000\n";
    put(&b, hdr, strlen(hdr));
    put(&b, "\x01\xf4\x03\xe8", 4); /* 500 1000 -> 128 255 */
    EXPECT(decode_image(b.p, b.n, img, err, sizeof err) == 0 && img->rgb[0] == 128 && img->rgb[3] == 255,
           "P5 16-bit: %s", err);
    b.n = 0;
    hdr = "P5 2 2 255\n";
    put(&b, hdr, strlen(hdr));
    put(&b, "\x01\x02\x03", 3);
    EXPECT(decode_image(b.p, b.n, img, err, sizeof err) == -1 && strstr(err, "truncated"), "short P5: %s", err);
    b.n = 0;
    hdr = "P5 2 1 10\n\x05\x0b";
    put(&b, hdr, strlen(hdr));
    EXPECT(decode_image(b.p, b.n, img, err, sizeof err) == -1 && strstr(err, "above maxval"), "P5 >max: %s", err);
    const char *bad_headers[] = {"P6 3\n", "P6 3 2 0\n", "P6 3 2 70000\n", "P6 0 2 255\n", "P6 3 2 255", "P6 -3 2 255\n",
                                 "P5 99999999999 1 255\n", "P5 20000 20000 255\n"};
    for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++) {
        err[0] = 0;
        EXPECT(decode_image((const uint8_t *)bad_headers[i], strlen(bad_headers[i]), img, err, sizeof err) == -1 &&
                   err[0], "header \"%s\" accepted", bad_headers[i]);
    }
    free(b.p);

    EXPECT(decode_image((const uint8_t *)"", 0, img, err, sizeof err) == -1 && strstr(err, "empty"), "empty: %s", err);
    EXPECT(decode_image((const uint8_t *)"GIF89a\x01\x00", 8, img, err, sizeof err) == -1 &&
               strstr(err, "unsupported image format (first bytes 47 49 46 38 39 61 01 00: GIF"),
           "GIF: %s", err);
    fprintf(stderr, "GIF: %s\n", err);
    EXPECT(decode_image((const uint8_t *)"\xff\xd8", 2, img, err, sizeof err) == -1, "2-byte JPEG start accepted");
    EXPECT(decode_image((const uint8_t *)"\xff\xd8\xff", 3, img, err, sizeof err) == -1, "3-byte JPEG accepted");
    EXPECT(decode_image((const uint8_t *)"\x89PNG\r\n\x1a\n", 8, img, err, sizeof err) == -1, "bare PNG signature");
}

static void test_load_file(void) {
    char path[] = "/tmp/test_decode_file_XXXXXX";
    int fd = mkstemp(path);
    EXPECT(fd >= 0, "mkstemp");
    static uint8_t data[100000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 13);
    EXPECT(write(fd, data, sizeof data) == (ssize_t)sizeof data, "write");
    close(fd);
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    EXPECT(image_load_file(path, &buf, &cap, &len, err, sizeof err) == 0, "%s", err);
    EXPECT(len == sizeof data && memcmp(buf, data, len) == 0, "read %zu bytes", len);
    uint8_t *first = buf;
    EXPECT(image_load_file(path, &buf, &cap, &len, err, sizeof err) == 0 && buf == first, "buffer not reused");
    unlink(path);
    EXPECT(image_load_file(path, &buf, &cap, &len, err, sizeof err) == -1 && strstr(err, path), "missing: %s", err);
    EXPECT(image_load_file("/tmp", &buf, &cap, &len, err, sizeof err) == -1 && strstr(err, "directory"), "dir: %s", err);
    free(buf);
}

/* ---- resize -------------------------------------------------------------- */

/* The definition in decode.h, evaluated directly in double precision. */
static void resize_reference(uint8_t *out, const uint8_t *rgb, int w, int h, double crop) {
    int side = (int)lround(crop * (w < h ? w : h));
    side = side < 1 ? 1 : side;
    double x0 = (w - side) / 2.0, y0 = (h - side) / 2.0, scale = side / (double)S;
    for (int i = 0; i < S; i++)
        for (int j = 0; j < S; j++)
            for (int c = 0; c < 3; c++) {
                double v = 0;
                if (side >= S) {
                    double ya = y0 + i * scale, yb = ya + scale, xa = x0 + j * scale, xb = xa + scale;
                    for (int y = (int)floor(ya); y < yb && y < h; y++)
                        for (int x = (int)floor(xa); x < xb && x < w; x++) {
                            double ay = fmin(yb, y + 1) - fmax(ya, y), ax = fmin(xb, x + 1) - fmax(xa, x);
                            if (ay > 0 && ax > 0) v += ay * ax * rgb[((size_t)y * w + x) * 3 + c];
                        }
                    v /= scale * scale;
                } else {
                    double u = fmin(fmax(x0 + (j + 0.5) * scale - 0.5, 0), w - 1);
                    double t = fmin(fmax(y0 + (i + 0.5) * scale - 0.5, 0), h - 1);
                    int ux = (int)u, ty = (int)t, ux1 = ux + 1 < w ? ux + 1 : ux, ty1 = ty + 1 < h ? ty + 1 : ty;
                    double fx = u - ux, fy = t - ty;
#define P(yy, xx) rgb[((size_t)(yy) * w + (xx)) * 3 + c]
                    v = (1 - fy) * ((1 - fx) * P(ty, ux) + fx * P(ty, ux1)) + fy * ((1 - fx) * P(ty1, ux) + fx * P(ty1, ux1));
#undef P
                }
                out[(i * S + j) * 3 + c] = (uint8_t)floor(v + 0.5);
            }
}

static void random_image(uint8_t *rgb, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) rgb[i] = (uint8_t)(rng_hash4(seed, i, 1, 2) >> 56);
}

static void test_resize(void) {
    static uint8_t out[S * S * 3], ref[S * S * 3];
    uint8_t *src = malloc(3000 * 2400 * 3);
    random_image(src, S * S * 3, 1);
    DecodedImage img = wrap(src, S, S);
    resize_to_face(out, &img, 1.0f);
    EXPECT(memcmp(out, src, sizeof out) == 0, "112x112 with crop 1 is not copied exactly");

    for (int i = 0; i < 300 * 200; i++) src[3 * i] = 10, src[3 * i + 1] = 200, src[3 * i + 2] = 77;
    img = wrap(src, 300, 200);
    const float crops[] = {1.0f, 0.75f, 0.5f, 0.3f, 0.01f};
    for (int k = 0; k < 5; k++) {
        resize_to_face(out, &img, crops[k]);
        int off = 0;
        for (int i = 0; i < S * S; i++) off += out[3 * i] != 10 || out[3 * i + 1] != 200 || out[3 * i + 2] != 77;
        EXPECT(off == 0, "constant image with crop %g: %d pixels changed", crops[k], off);
    }

    random_image(src, 224 * 224 * 3, 2);
    img = wrap(src, 224, 224);
    resize_to_face(out, &img, 1.0f);
    int bad = 0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            for (int c = 0; c < 3; c++) {
                int sum = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) sum += src[((2 * y + dy) * 224 + 2 * x + dx) * 3 + c];
                bad += out[(y * S + x) * 3 + c] != (sum + 2) / 4;
            }
    EXPECT(bad == 0, "224x224 -> 112: %d values differ from the rounded 2x2 mean", bad);

    /* LFW-a geometry: crop 0.448 of 250 is the centre 112 x 112, from (69, 69) */
    random_image(src, 250 * 250 * 3, 3);
    img = wrap(src, 250, 250);
    resize_to_face(out, &img, 0.448f);
    bad = 0;
    for (int y = 0; y < S; y++) bad += memcmp(out + y * S * 3, src + ((y + 69) * 250 + 69) * 3, S * 3) != 0;
    EXPECT(bad == 0, "250x250 crop 0.448: %d rows are not the centre square", bad);

    /* against the reference: shrinking, odd margins, enlarging, non-square */
    struct { int w, h; float crop; } cases[] = {
        {250, 250, 1.0f}, {168, 192, 1.0f}, {168, 192, 0.8f}, {251, 240, 0.9f}, {300, 113, 1.0f}, {60, 80, 1.0f},
        {250, 250, 0.3f}, {113, 113, 1.0f}, {1, 1, 1.0f},     {3, 300, 1.0f},   {300, 2, 1.0f},   {3000, 2400, 1.0f},
        {3000, 2400, 0.5f}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        random_image(src, (size_t)cases[k].w * cases[k].h * 3, 10 + k);
        img = wrap(src, cases[k].w, cases[k].h);
        resize_to_face(out, &img, cases[k].crop);
        resize_reference(ref, src, cases[k].w, cases[k].h, cases[k].crop);
        int worst = 0;
        for (int i = 0; i < S * S * 3; i++) worst = abs(out[i] - ref[i]) > worst ? abs(out[i] - ref[i]) : worst;
        EXPECT(worst <= 1, "%dx%d crop %g: differs from the reference by %d", cases[k].w, cases[k].h, cases[k].crop, worst);
    }

    /* a YaleB-sized grey image stays grey, and its crop is the centred 168 x 168 */
    for (int y = 0; y < 192; y++)
        for (int x = 0; x < 168; x++) memset(src + (y * 168 + x) * 3, y < 12 || y >= 180 ? 255 : (x * 3 + y) % 200, 3);
    img = wrap(src, 168, 192);
    const float grey_crops[] = {1.0f, 0.6f, 0.5f};
    for (int k = 0; k < 3; k++) {
        img.grey = 0;
        resize_to_face(out, &img, grey_crops[k]);
        img.grey = 1; /* the one-channel path must give the same bytes */
        resize_to_face(ref, &img, grey_crops[k]);
        int not_grey = 0, white = 0;
        for (int i = 0; i < S * S; i++) {
            not_grey += out[3 * i] != out[3 * i + 1] || out[3 * i] != out[3 * i + 2];
            white += out[3 * i] == 255;
        }
        EXPECT(not_grey == 0 && white == 0, "168x192 grey, crop %g: %d pixels not grey, %d from the cropped-off bands",
               grey_crops[k], not_grey, white);
        EXPECT(memcmp(out, ref, sizeof out) == 0, "168x192 grey, crop %g: grey path differs", grey_crops[k]);
    }
    free(src);
}

static void test_decode_to_face(DecodedImage *img) {
    Buf b = {0};
    put(&b, "P6 112 112 255\n", 15);
    static uint8_t px[S * S * 3], out[S * S * 3];
    random_image(px, sizeof px, 4);
    put(&b, px, sizeof px);
    EXPECT(decode_to_face(b.p, b.n, img, 1.0f, out, err, sizeof err) == 0, "%s", err);
    EXPECT(memcmp(out, px, sizeof px) == 0, "decode_to_face of a 112x112 PPM is not exact");
    memset(out, 7, sizeof out);
    EXPECT(decode_to_face(b.p, b.n - 1, img, 1.0f, out, err, sizeof err) == -1 && out[0] == 7, "short PPM");
    free(b.p);
}

/* ---- real faces ---------------------------------------------------------- */

static int decode_folder(DecodedImage *img, const char *root, int limit, int want_w, int want_h, int *n_bad) {
    DIR *d = opendir(root);
    if (!d) return -1;
    int n = 0;
    uint8_t *buf = NULL;
    size_t cap = 0, len;
    char path[2048];
    struct dirent *e;
    while (n < limit && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char sub[1536];
        snprintf(sub, sizeof sub, "%s/%s", root, e->d_name);
        DIR *ds = opendir(sub);
        if (!ds) continue;
        struct dirent *f;
        while (n < limit && (f = readdir(ds))) {
            size_t l = strlen(f->d_name);
            if (l < 4 || strcmp(f->d_name + l - 4, ".jpg") != 0) continue;
            snprintf(path, sizeof path, "%s/%s", sub, f->d_name);
            n++;
            if (image_load_file(path, &buf, &cap, &len, err, sizeof err) != 0 ||
                decode_image(buf, len, img, err, sizeof err) != 0) {
                EXPECT(0, "%s: %s", path, err);
                (*n_bad)++;
                continue;
            }
            int grey = 1;
            for (size_t i = 0; i < (size_t)img->width * img->height; i++)
                grey &= img->rgb[3 * i] == img->rgb[3 * i + 1] && img->rgb[3 * i] == img->rgb[3 * i + 2];
            if (img->width != want_w || img->height != want_h || !grey || !img->grey) {
                EXPECT(0, "%s: %dx%d, grey %d (want %dx%d grey)", path, img->width, img->height, grey, want_w, want_h);
                (*n_bad)++;
            }
        }
        closedir(ds);
    }
    closedir(d);
    free(buf);
    return n;
}

static void test_real_faces(DecodedImage *img) {
    const char *src = getenv("ARCFACE_SOURCE_DIR");
    char root[1024];
    struct { const char *name; int limit, w, h; } sets[] = {{"yaleb", 100000, 168, 192}, {"lfw", 300, 250, 250}};
    for (int k = 0; k < 2; k++) {
        snprintf(root, sizeof root, "%s/../shared/data/faces/%s", src ? src : ".", sets[k].name);
        int bad = 0;
        double t0 = now();
        int n = decode_folder(img, root, sets[k].limit, sets[k].w, sets[k].h, &bad);
        if (n < 0) {
            fprintf(stderr, "SKIP real faces: %s not found (set ARCFACE_SOURCE_DIR to the project root)\n", root);
            continue;
        }
        EXPECT(n >= (k == 0 ? 2000 : 300), "only %d JPEGs under %s", n, root);
        fprintf(stderr, "%s: %d JPEGs decoded as %dx%d grey in %.2f s, %d bad\n", sets[k].name, n, sets[k].w,
                sets[k].h, now() - t0, bad);
    }
}

int main(void) {
    double t0 = now();
    DecodedImage img = {0};
    test_jpeg(&img);
    test_png_built(&img);
    test_inflate();
    test_png_files(&img);
    test_pnm(&img);
    test_load_file();
    test_resize();
    test_decode_to_face(&img);
    /* buffers are reused: a smaller image after a larger one reallocates nothing */
    static uint8_t big[300 * 300 * 3];
    random_image(big, sizeof big, 5);
    Buf b = {0};
    put(&b, "P6 300 300 255\n", 15);
    put(&b, big, sizeof big);
    EXPECT(decode_image(b.p, b.n, &img, err, sizeof err) == 0, "%s", err);
    uint8_t *rgb = img.rgb;
    b.n = 0;
    put(&b, "P6 200 100 255\n", 15);
    put(&b, big, 200 * 100 * 3);
    EXPECT(decode_image(b.p, b.n, &img, err, sizeof err) == 0 && img.rgb == rgb, "rgb buffer reallocated");
    free(b.p);
    test_real_faces(&img);
    decode_image_free(&img);
    decode_image_free(&img);
    decode_image_free(NULL);
    fprintf(stderr, "test_decode: %.2f s\n", now() - t0);
    return test_finish("test_decode");
}
