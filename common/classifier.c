/* classifier.c -- one shard of the margin-softmax classifier (see classifier.h). */
#include "classifier.h"

#include <cblas.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "rng.h"

/* Rows of dweight zeroed and then accumulated into while they are still in
 * cache (64 rows of 512 floats = 128 KiB). */
#define DWEIGHT_BLOCK_ROWS 64
/* Fixed-length inner loops vectorise at -O2 (GCC's very-cheap cost model). */
#define SGD_BLOCK 16

int classifier_create(ClassifierShard *c, int64_t start, int64_t rows, int dim, int max_batch,
                      uint64_t seed, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    if (start < 0 || rows < 0 || dim <= 0 || max_batch <= 0) {
        if (err && errlen)
            snprintf(err, errlen,
                     "classifier shard: invalid sizes start=%lld rows=%lld dim=%d max_batch=%d "
                     "(need start >= 0, rows >= 0, dim > 0, max_batch > 0)",
                     (long long)start, (long long)rows, dim, max_batch);
        return -1;
    }
    /* Each of rows * dim and rows * max_batch must be addressable in floats. */
    const uint64_t limit = (uint64_t)(SIZE_MAX / sizeof(float));
    if ((uint64_t)rows > limit / (uint64_t)dim || (uint64_t)rows > limit / (uint64_t)max_batch) {
        if (err && errlen)
            snprintf(err, errlen, "classifier shard: %lld rows x %d floats do not fit in memory",
                     (long long)rows, dim > max_batch ? dim : max_batch);
        return -1;
    }
    /* BLAS takes the row count (a leading dimension of the logits) as an int. */
    if (rows > INT_MAX) {
        if (err && errlen)
            snprintf(err, errlen, "classifier shard: %lld rows, at most %d per server; use more servers",
                     (long long)rows, INT_MAX);
        return -1;
    }
    const size_t rd = (size_t)rows * (size_t)dim, nd = (size_t)max_batch * (size_t)dim;
    c->start = start;
    c->rows = rows;
    c->dim = dim;
    c->max_batch = max_batch;
    c->weight = xcalloc_aligned(rd, sizeof(float));
    c->momentum = xcalloc_aligned(rd, sizeof(float));
    c->dweight = xcalloc_aligned(rd, sizeof(float));
    c->wn = xcalloc_aligned(rd, sizeof(float));
    c->wnorm = xcalloc_aligned((size_t)rows, sizeof(float));
    c->xn = xcalloc_aligned(nd, sizeof(float));
    c->xnorm = xcalloc_aligned((size_t)max_batch, sizeof(float));
    c->dxnorm = xcalloc_aligned((size_t)max_batch, sizeof(float));
    c->logits = xcalloc_aligned((size_t)max_batch * (size_t)rows, sizeof(float));
    c->target_dz = xcalloc_aligned((size_t)max_batch, sizeof(float));
    c->dxn = xcalloc_aligned(nd, sizeof(float));
    c->dwn = xcalloc_aligned(rd, sizeof(float));
    c->stats = xcalloc_aligned((size_t)max_batch, sizeof(SoftmaxStats));
    for (int64_t r = 0; r < rows; r++) {
        float *w = c->weight + r * dim;
        for (int d = 0; d < dim; d++)
            w[d] = 0.01f * rng_normal(
                               rng_hash4(seed, RNG_CLASSIFIER_INIT, (uint64_t)(start + r), (uint64_t)d));
    }
    return 0;
}

void classifier_destroy(ClassifierShard *c) {
    if (!c) return;
    free(c->weight);
    free(c->momentum);
    free(c->dweight);
    free(c->wn);
    free(c->wnorm);
    free(c->xn);
    free(c->xnorm);
    free(c->dxnorm);
    free(c->logits);
    free(c->target_dz);
    free(c->dxn);
    free(c->dwn);
    free(c->stats);
    memset(c, 0, sizeof *c);
}

void classifier_forward(ClassifierShard *c, const float *x, const int64_t *labels, int N,
                        const Margin *m) {
    CHECK(N >= 0 && N <= c->max_batch, "batch of %d samples, shard capacity %d", N, c->max_batch);
    const int D = c->dim;
    const int64_t R = c->rows;
    const int raw = m->norm == MARGIN_NORM_NONE;
    c->last_n = N;
    c->last_norm = m->norm;
    if (N == 0) return;
    /* With raw embeddings (MARGIN_NORM_WEIGHTS) the cosines are still taken
     * between normalised vectors; the margin layer scales them by the norms. */
    if (raw)
        memcpy(c->xn, x, (size_t)N * (size_t)D * sizeof(float));
    else
        l2norm_forward(c->xn, c->xnorm, x, N, D);
    if (R > 0) {
        if (!raw) l2norm_forward(c->wn, c->wnorm, c->weight, R, D);
        /* logits (N, R) = xn (N, D) . wn (R, D)^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, (int)R, D, 1.0f, c->xn, D,
                    raw ? c->weight : c->wn, D, 0.0f, c->logits, (int)R);
    }
    margin_forward(c->logits, c->stats, c->target_dz, labels, c->xnorm, N, R, c->start, m);
}

void classifier_backward(ClassifierShard *c, float *dx, const SoftmaxStats *combined,
                         const int64_t *labels, const Margin *m) {
    const int N = c->last_n, D = c->dim;
    const int64_t R = c->rows;
    CHECK(m->norm == c->last_norm, "backward with normalisation %d after a forward with %d",
          (int)m->norm, (int)c->last_norm);
    if (N > 0) memset(dx, 0, (size_t)N * (size_t)D * sizeof(float));
    if (R == 0) return;
    if (N == 0) { /* no samples, no gradient */
        memset(c->dweight, 0, (size_t)R * (size_t)D * sizeof(float));
        return;
    }
    /* logits: z -> dcos (N, R) of the mean loss */
    margin_backward(c->logits, c->dxnorm, combined, c->target_dz, labels, c->xnorm, N, R, c->start,
                    1.0f / (float)N, m);
    if (m->norm == MARGIN_NORM_NONE) {
        /* z = x W^T: dx = dz W, dW = dz^T x, nothing to chain through */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, (int)R, 1.0f, c->logits,
                    (int)R, c->weight, D, 0.0f, dx, D);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)R, D, N, 1.0f, c->logits, (int)R,
                    c->xn, D, 0.0f, c->dweight, D);
        return;
    }
    /* dxn (N, D) = dcos (N, R) . wn (R, D) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, (int)R, 1.0f, c->logits, (int)R,
                c->wn, D, 0.0f, c->dxn, D);
    /* dwn (R, D) = dcos^T (R, N) . xn (N, D) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)R, D, N, 1.0f, c->logits, (int)R,
                c->xn, D, 0.0f, c->dwn, D);
    l2norm_backward(dx, c->dxn, c->xn, c->xnorm, N, D);
    if (m->norm == MARGIN_NORM_WEIGHTS) /* d||x||/dx = x / ||x|| = xn */
        for (int i = 0; i < N; i++) {
            const float g = c->dxnorm[i], *xn = c->xn + (size_t)i * D;
            float *dxi = dx + (size_t)i * D;
            for (int d = 0; d < D; d++) dxi[d] += g * xn[d];
        }
    for (int64_t r = 0; r < R; r += DWEIGHT_BLOCK_ROWS) {
        const int64_t n = R - r < DWEIGHT_BLOCK_ROWS ? R - r : DWEIGHT_BLOCK_ROWS;
        const size_t off = (size_t)r * (size_t)D;
        memset(c->dweight + off, 0, (size_t)n * (size_t)D * sizeof(float));
        l2norm_backward(c->dweight + off, c->dwn + off, c->wn + off, c->wnorm + r, n, D);
    }
}

void classifier_sgd_step(ClassifierShard *c, float lr, float momentum, float weight_decay) {
    const size_t n = (size_t)c->rows * (size_t)c->dim;
    float *w = c->weight, *v = c->momentum;
    const float *g = c->dweight;
    size_t i = 0;
    for (; i + SGD_BLOCK <= n; i += SGD_BLOCK)
#pragma GCC ivdep /* three separate buffers */
        for (int k = 0; k < SGD_BLOCK; k++) {
            v[i + k] = momentum * v[i + k] + (g[i + k] + weight_decay * w[i + k]);
            w[i + k] -= lr * v[i + k];
        }
    for (; i < n; i++) {
        v[i] = momentum * v[i] + (g[i] + weight_decay * w[i]);
        w[i] -= lr * v[i];
    }
}
