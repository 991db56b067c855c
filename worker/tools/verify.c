/* verify.c -- arcface-verify: are two face images the same person?
 *
 *     arcface-verify BACKBONE.bin IMG1 IMG2 [--threshold T] [--flip] [--crop-fraction F]
 *
 * Prints the cosine similarity of the two images' embeddings (prepared as
 * arcface-embed prepares them) and "same" when it is above the threshold,
 * else "different". The exit code is 0 either way; 1 is an error (an image or
 * the backbone cannot be read), 2 a usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backbone_file.h"
#include "check.h"
#include "face_embed.h"
#include "log.h"
#include "verify.h"

/* Models trained to convergence put different people near cosine 0 and the
 * same person well above; calibrate with arcface-eval's Threshold line. */
#define DEFAULT_THRESHOLD 0.3

static void usage(FILE *f) {
    fprintf(f,
            "usage: arcface-verify BACKBONE.bin IMG1 IMG2 [--threshold T] [--flip] [--crop-fraction F]\n"
            "  prints \"cosine C same|different (threshold T)\": same when C > T; exit code 0 either way\n"
            "  --threshold T        decision threshold on the cosine (default %.1f); arcface-eval prints the\n"
            "                       best one for a verification set as [set][0]Threshold: (it uses --flip)\n"
            "  --flip               embeddings of image + mirror image, as arcface-eval scores pairs\n"
            "  --crop-fraction F    centred crop before resizing to 112x112 (default 1; as in training)\n",
            DEFAULT_THRESHOLD);
}

int main(int argc, char **argv) {
    log_set_role("verify", -1);
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    const char *positional[3];
    int n_pos = 0, flip = 0;
    double threshold = DEFAULT_THRESHOLD, crop = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(a, "--flip") == 0) {
            flip = 1;
        } else if (strcmp(a, "--threshold") == 0 && v) {
            threshold = strtod(v, &end);
            if (*end || !(threshold >= -1 && threshold <= 1)) {
                log_error("--threshold %s: a cosine in [-1, 1]", v);
                return 2;
            }
            i++;
        } else if (strcmp(a, "--crop-fraction") == 0 && v) {
            crop = strtod(v, &end);
            if (*end || !(crop > 0 && crop <= 1)) {
                log_error("--crop-fraction %s: a fraction in (0, 1]", v);
                return 2;
            }
            i++;
        } else if ((a[0] == '-' && a[1] == '-') || n_pos == 3) {
            log_error("unexpected argument %s (see --help)", a);
            return 2;
        } else {
            positional[n_pos++] = a;
        }
    }
    if (n_pos != 3) {
        usage(stderr);
        return 2;
    }
    char err[2048];
    int per_face = flip ? 2 : 1;
    IResNet *net = backbone_load(positional[0], 2 * per_face, err, sizeof err);
    if (!net) {
        log_error("%s", err);
        return 1;
    }
    const int D = net->embedding_size;
    float *rows = xcalloc_aligned((size_t)2 * per_face * FACE_TENSOR_FLOATS, sizeof(float));
    float *emb = xcalloc_aligned(2 * (size_t)D, sizeof(float));
    uint8_t *rgb = xcalloc_aligned(FACE_TENSOR_FLOATS, 1);
    DatasetScratch scratch;
    dataset_scratch_init(&scratch);
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        rc = face_load_file(positional[1 + i], (float)crop, &scratch, rgb, err, sizeof err);
        if (rc == 0) face_tensor(rows + (size_t)i * per_face * FACE_TENSOR_FLOATS, rgb, flip);
    }
    if (rc == 0) {
        face_embed(net, rows, 2, flip, 1, emb);
        float cosine = verify_cosine(emb, emb + D, D);
        printf("cosine %.6f %s (threshold %g)\n", (double)cosine, cosine > threshold ? "same" : "different",
               threshold);
    } else {
        log_error("%s", err);
    }
    dataset_scratch_free(&scratch);
    free(rows);
    free(emb);
    free(rgb);
    iresnet_destroy(&net);
    return rc == 0 ? 0 : 1;
}
