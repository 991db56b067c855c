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
    c->keep = xcalloc_aligned((size_t)rows, sizeof(int32_t));
    c->keep_mark = xcalloc_aligned((size_t)rows, 1);
    c->col_label = xcalloc_aligned((size_t)max_batch, sizeof(int64_t));
    c->sample_rate = 1.0f;
    for (int64_t r = 0; r < rows; r++) c->keep[r] = (int32_t)r;
    c->n_keep = rows;
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
    free(c->keep);
    free(c->keep_mark);
    free(c->col_label);
    memset(c, 0, sizeof *c);
}

int classifier_set_sampling(ClassifierShard *c, float rate, uint64_t seed, char *err,
                            size_t errlen) {
    if (sampling_check_rate(rate, err, errlen) != 0) return -1;
    c->sample_rate = rate;
    c->sample_seed = seed;
    return 0;
}

void classifier_select(ClassifierShard *c, const int64_t *labels, int N, int64_t step) {
    CHECK(N >= 0 && N <= c->max_batch, "batch of %d samples, shard capacity %d", N, c->max_batch);
    if (c->sample_rate >= 1.0f) {
        /* Every row: keep[] is the identity whenever n_keep == rows. */
        if (c->n_keep != c->rows)
            c->n_keep = sampling_select(c->keep, c->keep_mark, labels, N, c->start, c->rows, step,
                                        1.0f, c->sample_seed);
    } else {
        c->n_keep = sampling_select(c->keep, c->keep_mark, labels, N, c->start, c->rows, step,
                                    c->sample_rate, c->sample_seed);
    }
    c->select_pending = 1;
    c->select_n = N;
}

/* Number of consecutive rows keep[j], keep[j] + 1, ... kept from position j
 * on, at most max: the gathers and scatters copy such runs, so with every row
 * kept each pass is one call over the whole shard, as without sampling. */
static int64_t kept_run(const ClassifierShard *c, int64_t j, int64_t max) {
    const int64_t left = c->n_keep - j, lim = left < max ? left : max;
    if (c->n_keep == c->rows) return lim;
    int64_t n = 1;
    while (n < lim && c->keep[j + n] == c->keep[j] + n) n++;
    return n;
}

/* The column of local row r among the kept rows, or -1 if it is not kept. */
static int64_t kept_column(const ClassifierShard *c, int64_t r) {
    if (c->n_keep == c->rows) return r;
    int64_t lo = 0, hi = c->n_keep; /* binary search of the sorted keep[] */
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (c->keep[mid] < r)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->n_keep && c->keep[lo] == r ? lo : -1;
}

void classifier_forward(ClassifierShard *c, const float *x, const int64_t *labels, int N,
                        const Margin *m) {
    CHECK(N >= 0 && N <= c->max_batch, "batch of %d samples, shard capacity %d", N, c->max_batch);
    if (!c->select_pending) {
        CHECK(c->sample_rate >= 1.0f,
              "sample rate %g: classifier_select(step) must come before classifier_forward",
              (double)c->sample_rate);
        classifier_select(c, labels, N, 0);
    }
    CHECK(c->select_n == N, "forward of %d samples after a classifier_select of %d", N,
          c->select_n);
    c->select_pending = 0;
    const int D = c->dim;
    const int64_t R = c->rows, K = c->n_keep;
    const int raw = m->norm == MARGIN_NORM_NONE, all = K == R;
    c->last_n = N;
    c->last_norm = m->norm;
    /* Targets as columns of the kept rows (every owned target is kept). */
    for (int i = 0; i < N; i++) {
        const int own = labels[i] >= c->start && labels[i] - c->start < R;
        c->col_label[i] = own ? kept_column(c, labels[i] - c->start) : -1;
        CHECK(!own || c->col_label[i] >= 0,
              "label %lld of sample %d is not among the kept rows: classifier_select saw "
              "other labels",
              (long long)labels[i], i);
    }
    if (N == 0) return;
    /* With raw embeddings (MARGIN_NORM_WEIGHTS) the cosines are still taken
     * between normalised vectors; the margin layer scales them by the norms. */
    if (raw)
        memcpy(c->xn, x, (size_t)N * (size_t)D * sizeof(float));
    else
        l2norm_forward(c->xn, c->xnorm, x, N, D);
    if (K > 0) {
        /* Gather the kept rows into wn (K, D), normalised unless raw; raw with
         * every row kept reads the weights in place. */
        for (int64_t j = 0, n; j < K; j += n) {
            n = kept_run(c, j, K);
            const float *w = c->weight + (size_t)c->keep[j] * D;
            if (!raw)
                l2norm_forward(c->wn + (size_t)j * D, c->wnorm + j, w, n, D);
            else if (!all)
                memcpy(c->wn + (size_t)j * D, w, (size_t)n * (size_t)D * sizeof(float));
        }
        /* logits (N, K) = xn (N, D) . wn (K, D)^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, (int)K, D, 1.0f, c->xn, D,
                    raw && all ? c->weight : c->wn, D, 0.0f, c->logits, (int)K);
    }
    margin_forward(c->logits, c->stats, c->target_dz, c->col_label, c->xnorm, N, K, 0, m);
}

void classifier_backward(ClassifierShard *c, float *dx, const SoftmaxStats *combined,
                         const int64_t *labels, const Margin *m) {
    const int N = c->last_n, D = c->dim;
    const int64_t K = c->n_keep;
    const int all = K == c->rows;
    CHECK(m->norm == c->last_norm, "backward with normalisation %d after a forward with %d",
          (int)m->norm, (int)c->last_norm);
    for (int i = 0; i < N; i++)
        CHECK(c->col_label[i] < 0 ? labels[i] < c->start || labels[i] - c->start >= c->rows
                                  : c->start + c->keep[c->col_label[i]] == labels[i],
              "backward with label %lld for sample %d, not the forward's", (long long)labels[i], i);
    if (N > 0) memset(dx, 0, (size_t)N * (size_t)D * sizeof(float));
    if (K == 0) return;
    if (N == 0) { /* no samples, no gradient */
        for (int64_t j = 0, n; j < K; j += n) {
            n = kept_run(c, j, K);
            memset(c->dweight + (size_t)c->keep[j] * D, 0, (size_t)n * (size_t)D * sizeof(float));
        }
        return;
    }
    /* logits: z -> dcos (N, K) of the mean loss */
    margin_backward(c->logits, c->dxnorm, combined, c->target_dz, c->col_label, c->xnorm, N, K, 0,
                    1.0f / (float)N, m);
    if (m->norm == MARGIN_NORM_NONE) {
        /* z = x W^T: dx = dz W, dW = dz^T x, nothing to chain through; with
         * some rows left out dW goes to dwn (K, D) and is scattered. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, (int)K, 1.0f, c->logits,
                    (int)K, all ? c->weight : c->wn, D, 0.0f, dx, D);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, D, N, 1.0f, c->logits, (int)K,
                    c->xn, D, 0.0f, all ? c->dweight : c->dwn, D);
        if (!all)
            for (int64_t j = 0, n; j < K; j += n) {
                n = kept_run(c, j, K);
                memcpy(c->dweight + (size_t)c->keep[j] * D, c->dwn + (size_t)j * D,
                       (size_t)n * (size_t)D * sizeof(float));
            }
        return;
    }
    /* dxn (N, D) = dcos (N, K) . wn (K, D) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, (int)K, 1.0f, c->logits, (int)K,
                c->wn, D, 0.0f, c->dxn, D);
    /* dwn (K, D) = dcos^T (K, N) . xn (N, D) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, D, N, 1.0f, c->logits, (int)K,
                c->xn, D, 0.0f, c->dwn, D);
    l2norm_backward(dx, c->dxn, c->xn, c->xnorm, N, D);
    if (m->norm == MARGIN_NORM_WEIGHTS) /* d||x||/dx = x / ||x|| = xn */
        for (int i = 0; i < N; i++) {
            const float g = c->dxnorm[i], *xn = c->xn + (size_t)i * D;
            float *dxi = dx + (size_t)i * D;
            for (int d = 0; d < D; d++) dxi[d] += g * xn[d];
        }
    /* Through the rows' normalisation, scattered to the kept rows of dweight. */
    for (int64_t j = 0, n; j < K; j += n) {
        n = kept_run(c, j, DWEIGHT_BLOCK_ROWS);
        float *dw = c->dweight + (size_t)c->keep[j] * D;
        const size_t off = (size_t)j * (size_t)D;
        memset(dw, 0, (size_t)n * (size_t)D * sizeof(float));
        l2norm_backward(dw, c->dwn + off, c->wn + off, c->wnorm + j, n, D);
    }
}

/* The SGD update of n consecutive parameters. */
static void sgd_range(float *w, float *v, const float *g, size_t n,
                      float lr, float momentum, float weight_decay) {
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

void classifier_sgd_step(ClassifierShard *c, float lr, float momentum, float weight_decay) {
    const int64_t K = c->n_keep;
    const size_t D = (size_t)c->dim;
    for (int64_t j = 0, n; j < K; j += n) {
        n = kept_run(c, j, K);
        const size_t off = (size_t)c->keep[j] * D;
        sgd_range(c->weight + off, c->momentum + off, c->dweight + off, (size_t)n * D, lr, momentum,
                  weight_decay);
    }
}
