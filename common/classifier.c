/* classifier.c -- one shard of the margin-softmax classifier (see classifier.h). */
#include "classifier.h"

#include <cblas.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "rng.h"

/* Fixed-length inner loops vectorise at -O2 (GCC's very-cheap cost model). */
#define SGD_BLOCK 16
/* The initial draw (about 0.1 us per element: a hash, a log and a cos) is
 * split over up to this many threads when the shard has at least
 * INIT_THREAD_MIN elements; each element is a pure function of (seed, c, d),
 * so the split does not change a value. */
#define INIT_MAX_THREADS 16
#define INIT_THREAD_MIN ((int64_t)1 << 22)

/* Rows [r0, r1) of a shard starting at class start, initialised as classifier.h says. */
typedef struct {
    float *weight;
    int64_t start, r0, r1;
    int dim;
    uint64_t seed;
} InitRows;

static void *init_rows(void *arg) {
    const InitRows *t = arg;
    for (int64_t r = t->r0; r < t->r1; r++) {
        float *w = t->weight + r * t->dim;
        for (int d = 0; d < t->dim; d++)
            w[d] = 0.01f * rng_normal(rng_hash4(t->seed, RNG_CLASSIFIER_INIT,
                                                (uint64_t)(t->start + r), (uint64_t)d));
    }
    return NULL;
}

/* Fills c->weight on one thread per online CPU; a thread that cannot be
 * started leaves its rows to the calling thread. */
static void init_weights(ClassifierShard *c, uint64_t seed) {
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = c->rows * c->dim < INIT_THREAD_MIN || cpus < 1 ? 1
             : cpus > INIT_MAX_THREADS                        ? INIT_MAX_THREADS
                                                              : (int)cpus;
    if (nt > c->rows) nt = c->rows > 0 ? (int)c->rows : 1;
    InitRows part[INIT_MAX_THREADS];
    pthread_t th[INIT_MAX_THREADS];
    int started[INIT_MAX_THREADS] = {0};
    for (int k = 0; k < nt; k++)
        part[k] = (InitRows){c->weight, c->start, c->rows * k / nt, c->rows * (k + 1) / nt, c->dim,
                             seed};
    for (int k = 1; k < nt; k++) started[k] = pthread_create(&th[k], NULL, init_rows, &part[k]) == 0;
    init_rows(&part[0]);
    for (int k = 1; k < nt; k++) {
        if (started[k])
            pthread_join(th[k], NULL);
        else
            init_rows(&part[k]);
    }
}

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
    const size_t bd = (size_t)CLASSIFIER_BLOCK_ROWS * (size_t)dim;
    c->start = start;
    c->rows = rows;
    c->dim = dim;
    c->max_batch = max_batch;
    c->weight = xcalloc_aligned(rd, sizeof(float));
    c->momentum = xcalloc_aligned(rd, sizeof(float));
    c->wnorm = xcalloc_aligned((size_t)rows, sizeof(float));
    c->xn = xcalloc_aligned(nd, sizeof(float));
    c->xnorm = xcalloc_aligned((size_t)max_batch, sizeof(float));
    c->dxnorm = xcalloc_aligned((size_t)max_batch, sizeof(float));
    /* Not pre-faulted, unlike the rest: a step touches only the first N x K
     * floats (leading dimension K), so with Partial FC the pages of columns no
     * step has needed never become resident. */
    c->logits = calloc(rows > 0 ? (size_t)max_batch * (size_t)rows : 1, sizeof(float));
    if (!c->logits)
        FATAL("out of memory allocating the logits of %lld rows x %d samples", (long long)rows,
              max_batch);
    c->target_dz = xcalloc_aligned((size_t)max_batch, sizeof(float));
    c->dxn = xcalloc_aligned(nd, sizeof(float));
    c->wn_block = xcalloc_aligned(bd, sizeof(float));
    c->dwn_block = xcalloc_aligned(bd, sizeof(float));
    c->dw_block = xcalloc_aligned(bd, sizeof(float));
    c->block_rows = CLASSIFIER_BLOCK_ROWS;
    c->stats = xcalloc_aligned((size_t)max_batch, sizeof(SoftmaxStats));
    c->keep = xcalloc_aligned((size_t)rows, sizeof(int32_t));
    c->keep_mark = xcalloc_aligned((size_t)rows, 1);
    c->col_label = xcalloc_aligned((size_t)max_batch, sizeof(int64_t));
    c->sample_rate = 1.0f;
    for (int64_t r = 0; r < rows; r++) c->keep[r] = (int32_t)r;
    c->n_keep = rows;
    init_weights(c, seed);
    return 0;
}

void classifier_destroy(ClassifierShard *c) {
    if (!c) return;
    free(c->weight);
    free(c->momentum);
    free(c->wnorm);
    free(c->xn);
    free(c->xnorm);
    free(c->dxnorm);
    free(c->logits);
    free(c->target_dz);
    free(c->dxn);
    free(c->wn_block);
    free(c->dwn_block);
    free(c->dw_block);
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

/* Rows out (n, D) = inp / norms, the normalised rows l2norm_forward made from
 * the same inp and returned those norms of, bit for bit (the same 1 / norm
 * times each element). */
static void rescale_rows(float *out, const float *inp, const float *norms, int64_t n, int D) {
    for (int64_t i = 0; i < n; i++) {
        const float inv = 1.0f / norms[i], *x = inp + i * D;
        float *y = out + i * D;
        for (int d = 0; d < D; d++) y[d] = x[d] * inv;
    }
}

/* The kept rows j0 .. j0 + n - 1 (keep order) as the SGEMMs multiply them,
 * (n, D) with leading dimension D: normalised (by l2norm_forward, which writes
 * their norms to wnorm, when first is set, else from weight and those norms)
 * or, for MARGIN_NORM_NONE, the raw rows: in place when they are consecutive
 * rows of weight (always so with every row kept), else gathered. Everything
 * but that in-place case lands in wn_block; n <= block_rows. */
static const float *block_rows(ClassifierShard *c, int64_t j0, int64_t n, int first) {
    const int D = c->dim;
    const int raw = c->last_norm == MARGIN_NORM_NONE;
    if (raw && c->keep[j0 + n - 1] - c->keep[j0] == n - 1) /* keep[] is sorted and distinct */
        return c->weight + (size_t)c->keep[j0] * D;
    for (int64_t j = j0, r; j < j0 + n; j += r) {
        r = kept_run(c, j, j0 + n - j);
        const float *w = c->weight + (size_t)c->keep[j] * D;
        float *out = c->wn_block + (size_t)(j - j0) * D;
        if (raw)
            memcpy(out, w, (size_t)r * (size_t)D * sizeof(float));
        else if (first)
            l2norm_forward(out, c->wnorm + j, w, r, D);
        else
            rescale_rows(out, w, c->wnorm + j, r, D);
    }
    return c->wn_block;
}

void classifier_forward(ClassifierShard *c, const float *x, const int64_t *labels, int N,
                        const Margin *m) {
    CHECK(N >= 0 && N <= c->max_batch, "batch of %d samples, shard capacity %d", N, c->max_batch);
    CHECK(c->block_rows > 0 && c->block_rows <= CLASSIFIER_BLOCK_ROWS,
          "block of %lld rows, buffers for 1 to %d", (long long)c->block_rows,
          CLASSIFIER_BLOCK_ROWS);
    if (!c->select_pending) {
        CHECK(c->sample_rate >= 1.0f,
              "sample rate %g: classifier_select(step) must come before classifier_forward",
              (double)c->sample_rate);
        classifier_select(c, labels, N, 0);
    }
    CHECK(c->select_n == N, "forward of %d samples after a classifier_select of %d", N,
          c->select_n);
    c->select_pending = 0;
    c->grad_ready = 0;
    const int D = c->dim;
    const int64_t R = c->rows, K = c->n_keep, B = c->block_rows;
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
    if (m->norm == MARGIN_NORM_NONE)
        memcpy(c->xn, x, (size_t)N * (size_t)D * sizeof(float));
    else
        l2norm_forward(c->xn, c->xnorm, x, N, D);
    /* logits[:, block] (N, n) = xn (N, D) . Wn[block] (n, D)^T, leading dimension K */
    for (int64_t j0 = 0; j0 < K; j0 += B) {
        const int64_t n = K - j0 < B ? K - j0 : B;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, (int)n, D, 1.0f, c->xn, D,
                    block_rows(c, j0, n, 1), D, 0.0f, c->logits + j0, (int)K);
    }
    margin_forward(c->logits, c->stats, c->target_dz, c->col_label, c->xnorm, N, K, 0, m);
}

void classifier_backward(ClassifierShard *c, float *dx, const SoftmaxStats *combined,
                         const int64_t *labels, const Margin *m) {
    const int N = c->last_n, D = c->dim;
    const int64_t K = c->n_keep, B = c->block_rows;
    CHECK(m->norm == c->last_norm, "backward with normalisation %d after a forward with %d",
          (int)m->norm, (int)c->last_norm);
    for (int i = 0; i < N; i++)
        CHECK(c->col_label[i] < 0 ? labels[i] < c->start || labels[i] - c->start >= c->rows
                                  : c->start + c->keep[c->col_label[i]] == labels[i],
              "backward with label %lld for sample %d, not the forward's", (long long)labels[i], i);
    c->grad_ready = 1;
    if (N > 0) memset(dx, 0, (size_t)N * (size_t)D * sizeof(float));
    if (K == 0 || N == 0) return; /* no rows or no samples: dx = 0, dW = 0 */
    /* logits: z -> dcos (N, K) of the mean loss */
    margin_backward(c->logits, c->dxnorm, combined, c->target_dz, c->col_label, c->xnorm, N, K, 0,
                    1.0f / (float)N, m);
    /* dxn (N, D) = dcos (N, K) . Wn (K, D), a block of rows at a time; with
     * raw embeddings and rows (z = x W^T) that is dx itself. */
    const int raw = m->norm == MARGIN_NORM_NONE;
    float *dxn = raw ? dx : c->dxn;
    for (int64_t j0 = 0; j0 < K; j0 += B) {
        const int64_t n = K - j0 < B ? K - j0 : B;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, (int)n, 1.0f, c->logits + j0,
                    (int)K, block_rows(c, j0, n, 0), D, j0 ? 1.0f : 0.0f, dxn, D);
    }
    if (raw) return;
    l2norm_backward(dx, c->dxn, c->xn, c->xnorm, N, D);
    if (m->norm == MARGIN_NORM_WEIGHTS) /* d||x||/dx = x / ||x|| = xn */
        for (int i = 0; i < N; i++) {
            const float g = c->dxnorm[i], *xn = c->xn + (size_t)i * D;
            float *dxi = dx + (size_t)i * D;
            for (int d = 0; d < D; d++) dxi[d] += g * xn[d];
        }
}

/* dw (n, D) = the gradient of the kept rows j0 .. j0 + n - 1 (n <= block_rows)
 * from what the backward left: dWn = dcos[:, block]^T xn, then through the
 * rows' normalisation (nothing to chain through for MARGIN_NORM_NONE). The
 * one routine behind classifier_weight_grad and classifier_sgd_step. */
static void block_grad(ClassifierShard *c, int64_t j0, int64_t n, float *dw) {
    const int N = c->last_n, D = c->dim;
    const int64_t K = c->n_keep;
    if (N == 0) {
        memset(dw, 0, (size_t)n * (size_t)D * sizeof(float));
        return;
    }
    if (c->last_norm == MARGIN_NORM_NONE) { /* dW = dz^T x */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, D, N, 1.0f, c->logits + j0,
                    (int)K, c->xn, D, 0.0f, dw, D);
        return;
    }
    const float *wn = block_rows(c, j0, n, 0);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, D, N, 1.0f, c->logits + j0,
                (int)K, c->xn, D, 0.0f, c->dwn_block, D);
    memset(dw, 0, (size_t)n * (size_t)D * sizeof(float));
    l2norm_backward(dw, c->dwn_block, wn, c->wnorm + j0, n, D);
}

void classifier_weight_grad(ClassifierShard *c, int64_t first, int64_t count, float *out) {
    CHECK(c->grad_ready,
          "classifier_weight_grad needs a classifier_backward and must precede its SGD step");
    CHECK(first >= 0 && count >= 0 && first <= c->n_keep - count,
          "kept rows [%lld, %lld) asked for, %lld kept", (long long)first,
          (long long)(first + count), (long long)c->n_keep);
    /* The SGD step's blocks, since SGEMM's rounding of a row can depend on
     * where it falls in the call; only the asked-for rows are copied out. */
    const int64_t B = c->block_rows, end = first + count;
    const size_t D = (size_t)c->dim;
    if (count == 0) return;
    for (int64_t j0 = first - first % B; j0 < end; j0 += B) {
        const int64_t n = c->n_keep - j0 < B ? c->n_keep - j0 : B;
        const int64_t lo = j0 > first ? j0 : first, hi = j0 + n < end ? j0 + n : end;
        if (lo == j0 && hi == j0 + n) {
            block_grad(c, j0, n, out + (size_t)(j0 - first) * D);
        } else {
            block_grad(c, j0, n, c->dw_block);
            memcpy(out + (size_t)(lo - first) * D, c->dw_block + (size_t)(lo - j0) * D,
                   (size_t)(hi - lo) * D * sizeof(float));
        }
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
    CHECK(c->grad_ready, "classifier_sgd_step without a classifier_backward since the last step");
    const int64_t K = c->n_keep, B = c->block_rows;
    const size_t D = (size_t)c->dim;
    /* A block's gradient is made from its rows before they move. */
    for (int64_t j0 = 0; j0 < K; j0 += B) {
        const int64_t n = K - j0 < B ? K - j0 : B;
        block_grad(c, j0, n, c->dw_block);
        for (int64_t j = j0, r; j < j0 + n; j += r) {
            r = kept_run(c, j, j0 + n - j);
            const size_t off = (size_t)c->keep[j] * D;
            sgd_range(c->weight + off, c->momentum + off, c->dw_block + (size_t)(j - j0) * D,
                      (size_t)r * D, lr, momentum, weight_decay);
        }
    }
    c->grad_ready = 0;
}
