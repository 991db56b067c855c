/* embed.c -- arcface-embed: face embeddings of many images with a trained backbone.
 *
 *     arcface-embed BACKBONE.bin (FOLDER | LIST.txt) OUT [--format bin|csv] [--flip] [--raw]
 *                   [--batch N] [--crop-fraction F] [--threads T] [--skip-bad]
 *
 * Embeds every image of FOLDER (recursively, sorted by path) or of LIST.txt
 * (one path per line) with the preprocessing of training and verification,
 * N images per forward pass, and writes one L2-normalised row per image
 * (--raw: the network's output as it is) to OUT (formats:
 * common/embeddings_file.h, docs/inference.md). An image that cannot be read
 * or decoded stops the run with its path, unless --skip-bad, which leaves it
 * out of OUT and counts it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backbone_file.h"
#include "check.h"
#include "embeddings_file.h"
#include "face_embed.h"
#include "image_list.h"
#include "log.h"
#include "train_setup.h"

typedef struct {
    const char *backbone, *source, *out;
    EmbedFormat format;
    int format_set, flip, raw, batch, threads, skip_bad;
    float crop;
} Options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: arcface-embed BACKBONE.bin (FOLDER | LIST.txt) OUT [options]\n"
            "  embeds every image of FOLDER (recursively: *.jpg *.jpeg *.png *.ppm *.pgm, sorted by path)\n"
            "  or of LIST.txt (one path per line, relative to the list's folder) and writes one\n"
            "  L2-normalised embedding per image to OUT\n"
            "  --format bin|csv     binary (header, rows, paths) or CSV (path,e0,...); default: csv when\n"
            "                       OUT ends in .csv, else bin\n"
            "  --flip               embedding of the image plus that of its mirror image, as verification\n"
            "  --raw                the network's output as the ONNX export gives it, not L2-normalised\n"
            "  --batch N            images per forward pass (default 8)\n"
            "  --crop-fraction F    centred square crop of F times the shorter side before resizing to\n"
            "                       112x112 (default 1; use the crop_fraction the model was trained with)\n"
            "  --threads T          compute threads (default: OPENBLAS_NUM_THREADS, else one per CPU)\n"
            "  --skip-bad           leave unreadable or corrupt images out (counted) instead of stopping\n");
}

/* Returns 0, or 2 after printing what is wrong. */
static int parse(Options *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    o->batch = 8;
    o->crop = 1.0f;
    const char *positional[3];
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(a, "--flip") == 0) {
            o->flip = 1;
        } else if (strcmp(a, "--raw") == 0) {
            o->raw = 1;
        } else if (strcmp(a, "--skip-bad") == 0) {
            o->skip_bad = 1;
        } else if (strcmp(a, "--format") == 0 && v) {
            if (strcmp(v, "bin") != 0 && strcmp(v, "csv") != 0) goto bad_value;
            o->format = strcmp(v, "csv") == 0 ? EMBED_FORMAT_CSV : EMBED_FORMAT_BIN;
            o->format_set = 1;
            i++;
        } else if (strcmp(a, "--batch") == 0 && v) {
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || n > 4096) goto bad_value;
            o->batch = (int)n;
            i++;
        } else if (strcmp(a, "--threads") == 0 && v) {
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || n > 1024) goto bad_value;
            o->threads = (int)n;
            i++;
        } else if (strcmp(a, "--crop-fraction") == 0 && v) {
            double f = strtod(v, &end);
            if (*end || !(f > 0 && f <= 1)) goto bad_value;
            o->crop = (float)f;
            i++;
        } else if (a[0] == '-' && a[1] == '-') {
            log_error("unknown option or missing value: %s (see --help)", a);
            return 2;
        } else if (n_pos < 3) {
            positional[n_pos++] = a;
        } else {
            log_error("unexpected argument %s (see --help)", a);
            return 2;
        }
        continue;
    bad_value:
        log_error("bad value for %s: %s (see --help)", a, v);
        return 2;
    }
    if (n_pos != 3) {
        usage(stderr);
        return 2;
    }
    o->backbone = positional[0];
    o->source = positional[1];
    o->out = positional[2];
    if (!o->format_set) {
        size_t len = strlen(o->out);
        o->format = len >= 4 && strcmp(o->out + len - 4, ".csv") == 0 ? EMBED_FORMAT_CSV : EMBED_FORMAT_BIN;
    }
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Embeds the images of list into w. Returns 0, or -1 with err. *bad counts skipped images. */
static int embed_all(const Options *o, IResNet *net, const ImageList *list, EmbedWriter *w, int64_t *bad,
                     char *err, size_t errlen) {
    const int D = net->embedding_size, per_face = o->flip ? 2 : 1;
    float *rows = xcalloc_aligned((size_t)o->batch * per_face * FACE_TENSOR_FLOATS, sizeof(float));
    float *out = xcalloc_aligned((size_t)o->batch * D, sizeof(float));
    int64_t *index = xcalloc_aligned((size_t)o->batch, sizeof *index);
    uint8_t *rgb = xcalloc_aligned(FACE_TENSOR_FLOATS, 1);
    DatasetScratch scratch;
    dataset_scratch_init(&scratch);
    double start = now(), last_report = start;
    int64_t next = 0, done = 0;
    int rc = 0;
    char why[1024];
    while (next < list->n && rc == 0) {
        int n = 0;
        for (; n < o->batch && next < list->n; next++) {
            if (face_load_file(list->paths[next], o->crop, &scratch, rgb, why, sizeof why) != 0) {
                if (!o->skip_bad) {
                    snprintf(err, errlen, "%s (--skip-bad leaves such images out)", why);
                    rc = -1;
                    break;
                }
                log_warn("skipped: %s", why);
                (*bad)++;
                continue;
            }
            face_tensor(rows + (size_t)n * per_face * FACE_TENSOR_FLOATS, rgb, o->flip);
            index[n++] = next;
        }
        if (rc != 0 || n == 0) break;
        face_embed(net, rows, n, o->flip, !o->raw, out);
        for (int i = 0; i < n && rc == 0; i++)
            rc = embed_writer_append(w, list->names[index[i]], out + (size_t)i * D, err, errlen);
        done += n;
        if (now() - last_report >= 10.0) {
            last_report = now();
            log_info("%lld/%lld images, %.1f images/s", (long long)(done + *bad), (long long)list->n,
                     (double)done / (last_report - start));
        }
    }
    dataset_scratch_free(&scratch);
    free(rows);
    free(out);
    free(index);
    free(rgb);
    return rc;
}

int main(int argc, char **argv) {
    log_set_role("embed", -1);
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    Options o;
    int rc = parse(&o, argc, argv);
    if (rc != 0) return rc;
    blas_setup(o.threads, 0);
    char err[2048];
    ImageList list;
    EmbedWriter *w = NULL;
    IResNet *net = backbone_load(o.backbone, o.batch * (o.flip ? 2 : 1), err, sizeof err);
    if (!net) goto error;
    if (image_list_open(&list, o.source, err, sizeof err) != 0) goto error;
    if (embed_writer_open(&w, o.out, o.format, net->embedding_size, err, sizeof err) != 0) goto error_list;
    int64_t bad = 0;
    double start = now();
    if (embed_all(&o, net, &list, w, &bad, err, sizeof err) != 0) goto error_list;
    if (bad == list.n) {
        snprintf(err, sizeof err, "none of the %lld images of %s could be read", (long long)list.n, o.source);
        goto error_list;
    }
    if (embed_writer_close(&w, err, sizeof err) != 0) goto error_list;
    printf("%s: %lld embeddings of %d floats (%s%s) of the images of %s, %s; %lld skipped; %.1f s\n", o.out,
           (long long)(list.n - bad), net->embedding_size, o.raw ? "raw" : "L2-normalised", o.flip ? ", flip" : "",
           o.source,
           o.format == EMBED_FORMAT_CSV ? "CSV" : "binary", (long long)bad, now() - start);
    image_list_free(&list);
    iresnet_destroy(&net);
    return 0;

error_list:
    image_list_free(&list);
error:
    embed_writer_abort(&w);
    iresnet_destroy(&net);
    log_error("%s", err);
    log_error("nothing was written to %s", o.out);
    return 1;
}
