/* pointwise.c -- elementwise layers: PReLU, ReLU, residual add, inverted dropout.
 *
 * Memory-bound loops written so the compiler vectorises them: selects instead of
 * branches, contiguous inner loops, restrict where an output never aliases an input;
 * spread over the compute threads (parallel.h). */
#include <string.h>

#include "check.h"
#include "layers.h"
#include "parallel.h"
#include "rng.h"

#define LANES 8

/* The arguments of one PReLU call; threads split the channels, so each slope's
 * gradient is summed by one thread in sample order, whatever the thread count. */
typedef struct {
    float *out, *dinp, *dalpha;
    const float *inp, *dout, *alpha;
    int N, C, HW;
} PreluCall;

static void prelu_forward_channels(void *ctx, size_t c0, size_t c1) {
    const PreluCall *p = ctx;
    for (int n = 0; n < p->N; n++) {
        for (size_t c = c0; c < c1; c++) {
            const size_t off = ((size_t)n * p->C + c) * p->HW;
            const float a = p->alpha[c];
            /* out may alias inp: each element is read before it is written. */
            for (int i = 0; i < p->HW; i++) {
                float v = p->inp[off + i];
                p->out[off + i] = v > 0.0f ? v : a * v;
            }
        }
    }
}

void prelu_forward(float *out, const float *inp, const float *alpha, int N, int C, int HW) {
    PreluCall p = {.out = out, .inp = inp, .alpha = alpha, .N = N, .C = C, .HW = HW};
    parallel_for((size_t)C, parallel_grain((size_t)N * HW), prelu_forward_channels, &p);
}

/* The slope's gradient is sum over x <= 0 of dy * x (the same convention as PyTorch at
 * x == 0: that element takes the negative branch). */
static void prelu_backward_channels(void *ctx, size_t c0, size_t c1) {
    const PreluCall *p = ctx;
    for (int n = 0; n < p->N; n++) {
        for (size_t c = c0; c < c1; c++) {
            const size_t off = ((size_t)n * p->C + c) * p->HW;
            const float *restrict x = p->inp + off, *restrict dy = p->dout + off;
            const float a = p->alpha[c];
            const int HW = p->HW;
            if (p->dinp) {
                float *restrict dx = p->dinp + off;
                for (int i = 0; i < HW; i++) dx[i] += x[i] > 0.0f ? dy[i] : a * dy[i];
            }
            if (p->dalpha) {
                /* Lanes in double so a 112x112 plane sums without losing digits. */
                double acc[LANES] = {0};
                int i = 0;
                for (; i + LANES <= HW; i += LANES)
                    for (int j = 0; j < LANES; j++)
                        acc[j] += x[i + j] > 0.0f ? 0.0f : x[i + j] * dy[i + j];
                for (; i < HW; i++) acc[0] += x[i] > 0.0f ? 0.0f : x[i] * dy[i];
                double s = 0;
                for (int j = 0; j < LANES; j++) s += acc[j];
                p->dalpha[c] += (float)s;
            }
        }
    }
}

void prelu_backward(float *dinp, float *dalpha, const float *dout, const float *inp,
                    const float *alpha, int N, int C, int HW) {
    PreluCall p = {.dinp = dinp, .dalpha = dalpha, .dout = dout, .inp = inp, .alpha = alpha,
                   .N = N, .C = C, .HW = HW};
    parallel_for((size_t)C, parallel_grain((size_t)N * HW), prelu_backward_channels, &p);
}

/* The arguments of an elementwise call over n floats; threads split the range. */
typedef struct {
    float *out, *out2;
    const float *a, *b;
} ElementsCall;

static void relu_forward_range(void *ctx, size_t begin, size_t end) {
    const ElementsCall *e = ctx;
    for (size_t i = begin; i < end; i++) e->out[i] = e->a[i] > 0.0f ? e->a[i] : 0.0f;
}

void relu_forward(float *out, const float *inp, size_t n) {
    ElementsCall e = {.out = out, .a = inp};
    parallel_for(n, parallel_grain(1), relu_forward_range, &e);
}

static void relu_backward_range(void *ctx, size_t begin, size_t end) {
    const ElementsCall *e = ctx;
    for (size_t i = begin; i < end; i++) e->out[i] += e->b[i] > 0.0f ? e->a[i] : 0.0f;
}

/* out > 0 exactly where inp > 0, so relu's output may be passed as inp here. */
void relu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    ElementsCall e = {.out = dinp, .a = dout, .b = inp};
    parallel_for(n, parallel_grain(1), relu_backward_range, &e);
}

static void add_forward_range(void *ctx, size_t begin, size_t end) {
    const ElementsCall *e = ctx;
    for (size_t i = begin; i < end; i++) e->out[i] = e->a[i] + e->b[i];
}

void add_forward(float *out, const float *a, const float *b, size_t n) {
    ElementsCall e = {.out = out, .a = a, .b = b};
    parallel_for(n, parallel_grain(1), add_forward_range, &e);
}

static void add_backward_range(void *ctx, size_t begin, size_t end) {
    const ElementsCall *e = ctx;
    if (e->out)
        for (size_t i = begin; i < end; i++) e->out[i] += e->a[i];
    if (e->out2)
        for (size_t i = begin; i < end; i++) e->out2[i] += e->a[i];
}

void add_backward(float *da, float *db, const float *dout, size_t n) {
    ElementsCall e = {.out = da, .out2 = db, .a = dout};
    parallel_for(n, parallel_grain(1), add_backward_range, &e);
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
