/* pointwise.c -- elementwise layers: PReLU, ReLU, residual add, inverted dropout.
 *
 * Memory-bound loops written so the compiler vectorises them: selects instead of
 * branches, contiguous inner loops, restrict where an output never aliases an input. */
#include <string.h>

#include "check.h"
#include "layers.h"
#include "rng.h"

#define LANES 8

void prelu_forward(float *out, const float *inp, const float *alpha, int N, int C, int HW) {
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            const size_t off = ((size_t)n * C + c) * HW;
            const float a = alpha[c];
            /* out may alias inp: each element is read before it is written. */
            for (int i = 0; i < HW; i++) {
                float v = inp[off + i];
                out[off + i] = v > 0.0f ? v : a * v;
            }
        }
    }
}

/* The slope's gradient is sum over x <= 0 of dy * x (the same convention as PyTorch at
 * x == 0: that element takes the negative branch). */
void prelu_backward(float *dinp, float *dalpha, const float *dout, const float *inp,
                    const float *alpha, int N, int C, int HW) {
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            const size_t off = ((size_t)n * C + c) * HW;
            const float *restrict x = inp + off, *restrict dy = dout + off;
            const float a = alpha[c];
            if (dinp) {
                float *restrict dx = dinp + off;
                for (int i = 0; i < HW; i++) dx[i] += x[i] > 0.0f ? dy[i] : a * dy[i];
            }
            if (dalpha) {
                /* Lanes in double so a 112x112 plane sums without losing digits. */
                double acc[LANES] = {0};
                int i = 0;
                for (; i + LANES <= HW; i += LANES)
                    for (int j = 0; j < LANES; j++)
                        acc[j] += x[i + j] > 0.0f ? 0.0f : x[i + j] * dy[i + j];
                for (; i < HW; i++) acc[0] += x[i] > 0.0f ? 0.0f : x[i] * dy[i];
                double s = 0;
                for (int j = 0; j < LANES; j++) s += acc[j];
                dalpha[c] += (float)s;
            }
        }
    }
}

void relu_forward(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

/* out > 0 exactly where inp > 0, so relu's output may be passed as inp here. */
void relu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
}

void add_forward(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void add_backward(float *da, float *db, const float *dout, size_t n) {
    if (da)
        for (size_t i = 0; i < n; i++) da[i] += dout[i];
    if (db)
        for (size_t i = 0; i < n; i++) db[i] += dout[i];
}

/* Element (n, f) is kept iff
 *   rng_uniform(rng_hash4(seed, step, (RNG_DROPOUT << 56) | (first_sample + n), f)) >= p,
 * so P(keep) = 1 - p (to 2^-24) and the mask depends only on the global sample index,
 * the feature and the step. The purpose sits in the top byte of the sample index so this
 * stream cannot meet another purpose's (sample indices stay far below 2^56). */
void dropout_forward(float *out, float *mask, const float *inp, int N, int F, float p,
                     uint64_t seed, uint64_t step, uint64_t first_sample) {
    CHECK(p >= 0.0f && p < 1.0f, "dropout p=%g outside [0, 1)", (double)p);
    const size_t total = (size_t)N * F;
    if (p == 0.0f) {
        if (out != inp) memcpy(out, inp, sizeof(float) * total);
        for (size_t i = 0; i < total; i++) mask[i] = 1.0f;
        return;
    }
    const float scale = 1.0f / (1.0f - p);
    for (int n = 0; n < N; n++) {
        const uint64_t sample = ((uint64_t)RNG_DROPOUT << 56) | (first_sample + (uint64_t)n);
        float *m = mask + (size_t)n * F;
        for (int f = 0; f < F; f++)
            m[f] = rng_uniform(rng_hash4(seed, step, sample, (uint64_t)f)) >= p ? scale : 0.0f;
        const float *x = inp + (size_t)n * F;
        float *y = out + (size_t)n * F;
        for (int f = 0; f < F; f++) y[f] = x[f] * m[f];
    }
}

void dropout_backward(float *dinp, const float *dout, const float *mask, int N, int F) {
    const size_t total = (size_t)N * F;
    for (size_t i = 0; i < total; i++) dinp[i] += dout[i] * mask[i];
}
