/* seeds.c -- arcface-fuzz-seeds OUTDIR: writes seed inputs for the fuzz
 * targets with the project's own writers (wire headers, RecordIO writer,
 * binset_write, the checkpoint writer, jpeg_write_file, config_print) into
 * OUTDIR/<target>/, each valid file and a few near-valid variants.
 * tests/fuzz/make_corpus.sh runs it (plus the Python tools) to rebuild
 * tests/fuzz/corpus/. Exits non-zero on the first failure. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arcface.pb-c.h"
#include "binset.h"
#include "check.h"
#include "checkpoint.h"
#include "config.h"
#include "crc32c.h"
#include "jpeg_encode.h"
#include "recordio.h"
#include "wire.h"

static const char *out_dir;
static char err[2048];

/* OUTDIR/target/name into buf; makes OUTDIR/target. */
static void path_of(char *buf, size_t n, const char *target, const char *name) {
    CHECK(snprintf(buf, n, "%s/%s", out_dir, target) < (int)n, "path too long");
    CHECK(mkdir(buf, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", buf, strerror(errno));
    CHECK(snprintf(buf, n, "%s/%s/%s", out_dir, target, name) < (int)n, "path too long");
}

static void put(const char *target, const char *name, const void *data, size_t len) {
    char path[4096];
    path_of(path, sizeof path, target, name);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, len, f) == len && fclose(f) == 0, "cannot write %s", path);
}

/* Reads a whole file (the writers' output) into a malloc'ed buffer. */
static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECK(f, "%s: %s", path, strerror(errno));
    CHECK(fseek(f, 0, SEEK_END) == 0, "seek");
    long n = ftell(f);
    rewind(f);
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    CHECK(p && fread(p, 1, (size_t)n, f) == (size_t)n, "read %s", path);
    fclose(f);
    *len = (size_t)n;
    return p;
}

/* ---- wire: control byte, frames with 2-byte lengths (fuzz_wire.c) -------- */

#define TOKEN 0x5ec2e7c0ffee1234ull
#define DIM 8

typedef struct {
    uint8_t b[8192];
    size_t n;
} Buf;

static void add(Buf *b, const void *p, size_t n) {
    CHECK(b->n + n <= sizeof b->b, "seed too large");
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void add_frame(Buf *b, const void *p, size_t n, int last) {
    if (!last) {
        uint8_t len[2] = {(uint8_t)n, (uint8_t)(n >> 8)};
        add(b, len, 2);
    }
    add(b, p, n);
}

static void wire_seed(const char *name, int router, int type, uint32_t rows, int mutate) {
    int64_t labels[16];
    float x[16 * DIM], loss[16];
    for (uint32_t i = 0; i < rows; i++) {
        labels[i] = (int64_t)(i * 13 % 100);
        loss[i] = 0.5f + (float)i;
        for (int j = 0; j < DIM; j++) x[i * DIM + j] = sinf((float)(i * DIM + j));
    }
    if (mutate == 1) labels[rows - 1] = 100;
    if (mutate == 2) x[3] = NAN;
    const void *p0 = type == WIRE_FORWARD ? (const void *)labels : (const void *)loss;
    size_t n0 = rows * (type == WIRE_FORWARD ? 8u : 4u), n1 = (size_t)rows * DIM * 4;
    if (type == WIRE_STOP) n0 = n1 = 0;
    Arcface__Header pb = ARCFACE__HEADER__INIT;
    pb.version = WIRE_VERSION;
    pb.type = (Arcface__MsgType)type;
    pb.token = mutate == 3 ? TOKEN + 1 : TOKEN;
    pb.step = 42;
    pb.sender = 3;
    pb.rows = rows;
    pb.dim = DIM;
    pb.dtype = ARCFACE__DTYPE__DTYPE_F32;
    pb.has_flags = type == WIRE_GRADIENT;
    pb.flags = WIRE_FLAG_STOP_REQUESTED;
    pb.checksum = crc32c_update(crc32c_update(0, p0, n0), x, n1);
    if (mutate == 4) pb.checksum ^= 1;
    uint8_t hdr[WIRE_MAX_HEADER_BYTES];
    size_t hn = arcface__header__pack(&pb, hdr);
    int frames = 3 + router + (mutate == 5 ? 1 : 0);
    /* Control: router, frame count - 1, re-stamp the checksum for mutations
     * of the valid seeds (not for the ones whose point is a bad checksum). */
    uint8_t ctl = (uint8_t)(router | (frames - 1) << 1 | (mutate == 0 ? 16 : 0));
    Buf b = {.n = 0};
    add(&b, &ctl, 1);
    if (router) add_frame(&b, "worker-3", 8, 0);
    add_frame(&b, hdr, hn, 0);
    add_frame(&b, p0, n0, 0);
    add_frame(&b, x, n1, mutate != 5);
    if (mutate == 5) add_frame(&b, "extra", 5, 1);
    put("wire", name, b.b, b.n);
}

static void wire_seeds(void) {
    wire_seed("forward_dealer", 0, WIRE_FORWARD, 4, 0);
    wire_seed("forward_router", 1, WIRE_FORWARD, 16, 0);
    wire_seed("gradient", 0, WIRE_GRADIENT, 3, 0);
    wire_seed("stop_router", 1, WIRE_STOP, 0, 0);
    wire_seed("bad_label", 1, WIRE_FORWARD, 5, 1);
    wire_seed("nan_embedding", 1, WIRE_FORWARD, 2, 2);
    wire_seed("wrong_token", 1, WIRE_FORWARD, 2, 3);
    wire_seed("bad_checksum", 0, WIRE_GRADIENT, 2, 4);
    wire_seed("extra_frame", 1, WIRE_FORWARD, 1, 5);
}

/* ---- recordio: 2-byte idx length, 1-byte property length, idx, property, rec */

static void rec_seed(const char *name, const char *prop, int layout) {
    char rec[4096], idx[4096];
    path_of(rec, sizeof rec, "recordio", "tmp.rec");
    path_of(idx, sizeof idx, "recordio", "tmp.idx");
    RecWriter *w;
    CHECK(rec_writer_open(&w, rec, idx, err, sizeof err) == 0, "%s", err);
    /* Tiny stand-ins for images: the reader does not decode them. */
    uint8_t img[40];
    for (int i = 0; i < (int)sizeof img; i++) img[i] = (uint8_t)(i * 29 + 3);
    const int n_img = 5, n_id = 3;
    if (layout == 0) { /* insightface: header 0, images 1..5, identities 6..8 */
        IRHeader h0 = {.flag = 2};
        float l0[2] = {(float)(n_img + 1), (float)(n_img + 1 + n_id)};
        CHECK(rec_writer_add(w, 0, &h0, l0, NULL, 0, err, sizeof err) == 0, "%s", err);
        for (int k = 1; k <= n_img; k++) {
            IRHeader h = {.flag = (uint32_t)(k % 2 ? 0 : 2), .label = (float)((k - 1) / 2), .id = (uint64_t)k};
            float l[2] = {(float)((k - 1) / 2), 1.0f};
            if (h.flag) h.label = 0;
            CHECK(rec_writer_add(w, (uint64_t)k, &h, h.flag ? l : NULL, img, 8 + (size_t)k * 6, err,
                                 sizeof err) == 0, "%s", err);
        }
        for (int c = 0; c < n_id; c++) {
            IRHeader h = {.flag = 2};
            float l[2] = {(float)(1 + 2 * c), (float)(c == n_id - 1 ? n_img + 1 : 3 + 2 * c)};
            CHECK(rec_writer_add(w, (uint64_t)(n_img + 1 + c), &h, l, NULL, 0, err, sizeof err) == 0,
                  "%s", err);
        }
    } else { /* im2rec: every key an image; one payload holds the magic (multi-part) */
        for (int k = n_img - 1; k >= 0; k--) {
            IRHeader h = {.flag = 0, .label = (float)k};
            uint8_t p[48];
            memcpy(p, img, sizeof img);
            uint32_t magic = REC_MAGIC;
            memcpy(p + 8, &magic, 4);
            memcpy(p + 40, &magic, 4);
            CHECK(rec_writer_add(w, (uint64_t)k + 10, &h, NULL, p, k == 2 ? sizeof p : 20, err,
                                 sizeof err) == 0, "%s", err);
        }
    }
    CHECK(rec_writer_close(&w, 1, err, sizeof err) == 0, "%s", err);
    size_t nr, ni;
    uint8_t *r = slurp(rec, &nr), *x = slurp(idx, &ni);
    size_t np = prop ? strlen(prop) : 0;
    Buf b = {.n = 0};
    uint8_t lens[3] = {(uint8_t)ni, (uint8_t)(ni >> 8), (uint8_t)(np | 128)}; /* and rec_scan */
    add(&b, lens, 3);
    add(&b, x, ni);
    add(&b, prop, np);
    add(&b, r, nr);
    put("recordio", name, b.b, b.n);
    if (layout == 0 && prop) { /* truncated inside a record, and a bad magic */
        char n2[128];
        snprintf(n2, sizeof n2, "%s_truncated", name);
        put("recordio", n2, b.b, b.n - 10);
        b.b[3 + ni + np + 64] ^= 0x40;
        snprintf(n2, sizeof n2, "%s_corrupt", name);
        put("recordio", n2, b.b, b.n);
    }
    free(r);
    free(x);
    unlink(rec);
    unlink(idx);
}

/* ---- binset: the file itself --------------------------------------------- */

static void binset_seeds(void) {
    uint8_t a[3] = {0xFF, 0xD8, 0xFF}, bb[300], c[1] = {0x89};
    for (int i = 0; i < 300; i++) bb[i] = (uint8_t)(i * 7);
    const uint8_t *images[6] = {a, bb, c, a, bb, c};
    size_t lens[6] = {3, 300, 1, 3, 300, 1};
    uint8_t same[3] = {1, 0, 1};
    char path[4096];
    path_of(path, sizeof path, "binset", "ours_3pairs.bin");
    CHECK(binset_write(path, images, lens, same, 3, err, sizeof err) == 0, "%s", err);
    path_of(path, sizeof path, "binset", "ours_1pair.bin");
    CHECK(binset_write(path, images + 1, lens + 1, same, 1, err, sizeof err) == 0, "%s", err);
}

/* ---- decode: the image bytes ---------------------------------------------- */

static void decode_seeds(void) {
    char path[4096];
    enum { W = 13, H = 11 };
    uint8_t px[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) px[i] = (uint8_t)(i * 11 + i / 7);
    path_of(path, sizeof path, "decode", "rgb_13x11.jpg");
    CHECK(jpeg_write_file(path, px, W, H, 3, 75, err, sizeof err) == 0, "%s", err);
    path_of(path, sizeof path, "decode", "grey_13x11.jpg");
    CHECK(jpeg_write_file(path, px, W, H, 1, 90, err, sizeof err) == 0, "%s", err);
    size_t n;
    uint8_t *j = slurp(path, &n);
    put("decode", "grey_13x11_truncated.jpg", j, n - 20);
    free(j);

    char ppm[64 + W * H * 6];
    int hn = snprintf(ppm, 64, "P6\n# comment\n%d %d\n255\n", W, H);
    memcpy(ppm + hn, px, W * H * 3);
    put("decode", "rgb_13x11.ppm", ppm, (size_t)hn + W * H * 3);
    hn = snprintf(ppm, 64, "P5 %d %d 65535\n", W, H);
    memcpy(ppm + hn, px, W * H * 2);
    put("decode", "grey16_13x11.pgm", ppm, (size_t)hn + W * H * 2);
    hn = snprintf(ppm, 64, "P5\n3 2\n7\n");
    memcpy(ppm + hn, "\0\1\2\3\7\10", 6); /* the last sample is above maxval */
    put("decode", "grey_maxval7_bad.pgm", ppm, (size_t)hn + 6);
}

/* ---- checkpoint: control byte, then the file ------------------------------- */

static void ckpt_put(const char *name, const char *tmp, uint8_t ctl) {
    size_t n;
    uint8_t *f = slurp(tmp, &n);
    uint8_t *b = malloc(n + 1);
    CHECK(b, "out of memory");
    b[0] = ctl;
    memcpy(b + 1, f, n);
    put("checkpoint", name, b, n + 1);
    free(b);
    free(f);
    unlink(tmp);
}

static void checkpoint_seeds(void) {
    char tmp[4096];
    path_of(tmp, sizeof tmp, "checkpoint", "tmp.ckpt");
    CkptWriter *w;
    CHECK(ckpt_writer_open(&w, tmp, err, sizeof err) == 0, "%s", err);
    const char *conf = "network = r18\nwidth = 16\n";
    float params[37];
    uint64_t rng[4] = {1, 2, 3, 0xFFFFFFFFFFFFFFFFull};
    for (int i = 0; i < 37; i++) params[i] = (float)i / 7.0f;
    CHECK(ckpt_writer_add(w, CKPT_SEC_CONFIG, CKPT_U8, conf, strlen(conf), err, sizeof err) == 0 &&
              ckpt_writer_add_i64(w, CKPT_SEC_STEP, 20, err, sizeof err) == 0 &&
              ckpt_writer_add_i64(w, CKPT_SEC_EPOCH, 1, err, sizeof err) == 0 &&
              ckpt_writer_add(w, CKPT_SEC_RNG_STATE, CKPT_U64, rng, 4, err, sizeof err) == 0 &&
              ckpt_writer_add(w, CKPT_SEC_BACKBONE_PARAMS, CKPT_F32, params, 37, err, sizeof err) == 0 &&
              ckpt_writer_add(w, "empty", CKPT_F32, NULL, 0, err, sizeof err) == 0,
          "%s", err);
    CHECK(ckpt_writer_commit(&w, err, sizeof err) == 0, "%s", err);
    ckpt_put("backbone_restamp", tmp, 7);
    CHECK(ckpt_writer_open(&w, tmp, err, sizeof err) == 0, "%s", err);
    CHECK(ckpt_writer_add_i64(w, CKPT_SEC_STEP, 20, err, sizeof err) == 0, "%s", err);
    CHECK(ckpt_writer_commit(&w, err, sizeof err) == 0, "%s", err);
    ckpt_put("one_section", tmp, 0);

    float wgt[5 * 3], mom[5 * 3];
    for (int i = 0; i < 15; i++) wgt[i] = (float)i - 7.0f, mom[i] = 0.25f * (float)i;
    CHECK(ckpt_classifier_write(tmp, 10, 5, 3, wgt, mom, err, sizeof err) == 0, "%s", err);
    ckpt_put("classifier_at_10", tmp, 0);
    CHECK(ckpt_classifier_write(tmp, 0, 5, 3, wgt, mom, err, sizeof err) == 0, "%s", err);
    size_t n;
    uint8_t *f = slurp(tmp, &n);
    ckpt_put("classifier_restamp", tmp, 7);
    uint8_t *b = malloc(n + 1);
    CHECK(b, "out of memory");
    b[0] = 0;
    memcpy(b + 1, f, n);
    b[1 + n - 130] ^= 1; /* in the table: header CRC mismatch */
    put("checkpoint", "classifier_bad_crc", b, n + 1);
    b[1 + n - 130] ^= 1;
    b[1 + 64 + 4] ^= 1; /* in row_start's data: section CRC mismatch */
    put("checkpoint", "classifier_bad_data_crc", b, n + 1);
    free(b);
    free(f);
    CHECK(ckpt_classifier_write(tmp, 0, 0, 4, NULL, NULL, err, sizeof err) == 0, "%s", err);
    ckpt_put("classifier_empty", tmp, 0);
}

/* ---- config: file text, NUL, overrides ------------------------------------- */

static void config_seeds(void) {
    TrainConfig c;
    config_defaults(&c);
    CHECK(config_finalize(&c, err, sizeof err) == 0, "%s", err);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(f, "open_memstream");
    config_print(&c, f);
    fclose(f);
    put("config", "printed_defaults", text, len);
    free(text);
    static const char with_args[] = "network = r18\n# a comment\nloss = cosface\n\n"
                                    "\0width=16\0--lr_schedule=step\0lr_epochs=1,2.5,4\0s = 30";
    put("config", "file_and_overrides", with_args, sizeof with_args - 1);
    static const char sphere[] = "loss = sphereface\nm1 = 4\n\0sphereface_lambda_min=5\0"
                                 "margin_grad=straight\0sample_rate=0.3";
    put("config", "sphereface", sphere, sizeof sphere - 1);
    static const char bad[] = "loss = arcface\nm3 = 0.4\nwidth = 13\nunknown_key = 1\n";
    put("config", "bad_keys", bad, sizeof bad - 1);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    CHECK(mkdir(out_dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", out_dir, strerror(errno));
    wire_seeds();
    rec_seed("insightface", "3,112,112\n", 0);
    rec_seed("insightface_noprop", NULL, 0);
    rec_seed("im2rec_multipart", NULL, 1);
    binset_seeds();
    decode_seeds();
    checkpoint_seeds();
    config_seeds();
    printf("seeds written to %s\n", out_dir);
    return 0;
}
