/* face_embed.c -- image files to normalised embeddings. */
#include "face_embed.h"

#include <math.h>
#include <stdio.h>

#include "check.h"
#include "decode.h"
#include "image.h"

int face_load_file(const char *path, float crop_fraction, DatasetScratch *s, uint8_t *rgb112, char *err,
                   size_t errlen) {
    if (image_load_file(path, &s->file, &s->file_cap, &s->file_len, err, errlen) != 0) return -1;
    char why[512];
    if (decode_to_face(s->file, s->file_len, &s->image, crop_fraction, rgb112, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        return -1;
    }
    return 0;
}

void face_tensor(float *rows, const uint8_t *rgb112, int flip) {
    image_to_tensor(rows, rgb112, 0);
    if (flip) image_to_tensor(rows + FACE_TENSOR_FLOATS, rgb112, 1);
}

void face_embed(IResNet *net, const float *rows, int n, int flip, int normalise, float *out) {
    const int D = net->embedding_size, per_face = flip ? 2 : 1;
    CHECK(n >= 1 && n * per_face <= net->max_batch, "%d faces (flip %d) for a batch of %d", n, flip,
          net->max_batch);
    const float *emb = iresnet_forward(net, rows, n * per_face, 0, 0, 0);
    for (int i = 0; i < n; i++) {
        const float *e = emb + (size_t)i * per_face * D;
        float *o = out + (size_t)i * D;
        double norm = 0;
        for (int k = 0; k < D; k++) {
            o[k] = flip ? e[k] + e[D + k] : e[k];
            norm += (double)o[k] * o[k];
        }
        if (!normalise || norm == 0) continue;
        float scale = (float)(1.0 / sqrt(norm));
        for (int k = 0; k < D; k++) o[k] *= scale;
    }
}
