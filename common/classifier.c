/* classifier.c -- one shard of the margin-softmax classifier (see classifier.h). */
#include "classifier.h"

#include <cblas.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "optim.h"
#include "parallel.h"
#include "rng.h"

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
    /* Each of rows * dim, rows * max_batch and the chunks' CLASSIFIER_CHUNKS *
     * max_batch * dim must be addressable in floats. */
    const uint64_t limit = (uint64_t)(SIZE_MAX / sizeof(float));
    if ((uint64_t)rows > limit / (uint64_t)dim || (uint64_t)rows > limit / (uint64_t)max_batch ||
        (uint64_t)max_batch * (uint64_t)dim > limit / CLASSIFIER_CHUNKS) {
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
    const size_t bd = (size_t)CLASSIFIER_BLOCK_ROWS * (size_t)dim, nb = (size_t)max_batch;
    c->start = start;
    c->rows = rows;
    c->dim = dim;
    c->max_batch = max_batch;
    c->weight = xcalloc_aligned(rd, sizeof(float));
    c->momentum = xcalloc_aligned(rd, sizeof(float));
    c->wnorm = xcalloc_aligned((size_t)rows, sizeof(float));
    c->xn = xcalloc_aligned(nd, sizeof(float));
    c->xnorm = xcalloc_aligned(nb, sizeof(float));
    c->dxnorm = xcalloc_aligned(nb, sizeof(float));
    /* Not pre-faulted, unlike the rest: a step touches only the first N x K
     * floats, so with Partial FC the pages no step has needed never become
     * resident. */
    c->logits = calloc(rows > 0 ? (size_t)max_batch * (size_t)rows : 1, sizeof(float));
    if (!c->logits)
        FATAL("out of memory allocating the logits of %lld rows x %d samples", (long long)rows,
              max_batch);
    c->target_dz = xcalloc_aligned(nb, sizeof(float));
    c->dxn = xcalloc_aligned(nd, sizeof(float));
    c->block_rows = CLASSIFIER_BLOCK_ROWS;
    c->slots = parallel_threads();
    c->scratch = xcalloc_aligned((size_t)c->slots, sizeof(ClassifierScratch));
    for (int s = 0; s < c->slots; s++) {
        ClassifierScratch *t = &c->scratch[s];
        t->wn = xcalloc_aligned(bd, sizeof(float));
        t->dwn = xcalloc_aligned(bd, sizeof(float));
        t->dw = xcalloc_aligned(bd, sizeof(float));
        t->stats = xcalloc_aligned(nb, sizeof(SoftmaxStats));
        t->target_dz = xcalloc_aligned(nb, sizeof(float));
        t->dxnorm = xcalloc_aligned(nb, sizeof(float));
    }
    const int64_t blocks = (rows + CLASSIFIER_BLOCK_ROWS - 1) / CLASSIFIER_BLOCK_ROWS;
    c->chunks = blocks < 1 ? 1 : blocks < CLASSIFIER_CHUNKS ? (int)blocks : CLASSIFIER_CHUNKS;
    c->chunk_stats = xcalloc_aligned((size_t)c->chunks * nb, sizeof(SoftmaxStats));
    /* Not pre-faulted: the backward reuses the buffers it has freed first, so
     * only about one per thread becomes resident. */
    c->chunk_dx = calloc(c->chunks > 1 ? (size_t)(c->chunks - 1) * nd : 1, sizeof(float));
    if (!c->chunk_dx)
        FATAL("out of memory allocating %d chunk buffers of %d x %d floats", c->chunks - 1,
              max_batch, dim);
    c->chunk_dxnorm = xcalloc_aligned((size_t)c->chunks * nb, sizeof(float));
    c->stats = xcalloc_aligned(nb, sizeof(SoftmaxStats));
    c->keep = xcalloc_aligned((size_t)rows, sizeof(int32_t));
    c->keep_mark = xcalloc_aligned((size_t)rows, 1);
    c->col_label = xcalloc_aligned(nb, sizeof(int64_t));
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
    for (int s = 0; s < c->slots; s++) {
        ClassifierScratch *t = &c->scratch[s];
        free(t->wn), free(t->dwn), free(t->dw), free(t->stats), free(t->target_dz), free(t->dxnorm);
    }
    free(c->scratch);
    free(c->chunk_stats);
    free(c->chunk_dx);
    free(c->chunk_dxnorm);
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

/* The sampled selection in pieces of the shard's rows, one thread each: piece
 * p runs sampling_select over rows [lo, hi) into keep[lo ..] (room for hi - lo
 * entries) and the pieces' lists are then moved together, so keep[] is the
 * list sampling_select makes of the whole shard, with any number of pieces. */
typedef struct {
    ClassifierShard *c;
    const int64_t *labels;
    int N, pieces;
    int64_t step;
    int64_t count[CLASSIFIER_CHUNKS]; /* (pieces) rows kept by each */
} SelectArg;

/* Rows a piece hashes at least (about 10 ns each). */
#define SELECT_GRAIN 16384

static void select_pieces(void *ctx, size_t begin, size_t end) {
    SelectArg *a = ctx;
    ClassifierShard *c = a->c;
    for (size_t p = begin; p < end; p++) {
        const int64_t lo = c->rows * (int64_t)p / a->pieces;
        const int64_t hi = c->rows * (int64_t)(p + 1) / a->pieces;
        const int64_t n = sampling_select(c->keep + lo, c->keep_mark + lo, a->labels, a->N,
                                          c->start + lo, hi - lo, a->step, c->sample_rate,
                                          c->sample_seed);
        for (int64_t j = 0; j < n; j++) c->keep[lo + j] += (int32_t)lo; /* the shard's rows */
        a->count[p] = n;
    }
}

void classifier_select(ClassifierShard *c, const int64_t *labels, int N, int64_t step) {
    CHECK(N >= 0 && N <= c->max_batch, "batch of %d samples, shard capacity %d", N, c->max_batch);
    if (c->sample_rate >= 1.0f) {
        /* Every row: keep[] is the identity whenever n_keep == rows. */
        if (c->n_keep != c->rows)
            c->n_keep = sampling_select(c->keep, c->keep_mark, labels, N, c->start, c->rows, step,
                                        1.0f, c->sample_seed);
    } else {
        SelectArg a = {.c = c, .labels = labels, .N = N, .step = step};
        const int64_t by_rows = c->rows / SELECT_GRAIN;
        a.pieces = parallel_threads() < CLASSIFIER_CHUNKS ? parallel_threads() : CLASSIFIER_CHUNKS;
        if (a.pieces > by_rows) a.pieces = by_rows > 1 ? (int)by_rows : 1;
        parallel_for((size_t)a.pieces, 1, select_pieces, &a);
        int64_t n = 0;
        for (int p = 0; p < a.pieces; p++) {
            const int64_t lo = c->rows * p / a.pieces;
            memmove(c->keep + n, c->keep + lo, (size_t)a.count[p] * sizeof(int32_t));
            n += a.count[p];
        }
        c->n_keep = n;
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
 * but that in-place case lands in the thread's t->wn; n <= block_rows. */
static const float *block_rows(ClassifierShard *c, ClassifierScratch *t, int64_t j0, int64_t n,
                               int first) {
    const int D = c->dim;
    const int raw = c->last_norm == MARGIN_NORM_NONE;
    if (raw && c->keep[j0 + n - 1] - c->keep[j0] == n - 1) /* keep[] is sorted and distinct */
        return c->weight + (size_t)c->keep[j0] * D;
    for (int64_t j = j0, r; j < j0 + n; j += r) {
        r = kept_run(c, j, j0 + n - j);
        const float *w = c->weight + (size_t)c->keep[j] * D;
        float *out = t->wn + (size_t)(j - j0) * D;
        if (raw)
            memcpy(out, w, (size_t)r * (size_t)D * sizeof(float));
        else if (first)
            l2norm_forward(out, c->wnorm + j, w, r, D);
        else
            rescale_rows(out, w, c->wnorm + j, r, D);
    }
    return t->wn;
}

/* ---- the passes over the kept rows, on the compute threads ---- */

/* One pass: the compute threads claim its units (chunks or blocks) from
 * `next` until none is left, each unit run with the claiming thread's
 * scratch. Which thread runs a unit changes nothing it computes. */
typedef struct Pass Pass;
struct Pass {
    ClassifierShard *c;
    void (*unit)(Pass *p, ClassifierScratch *t, int64_t u);
    int64_t units;
    _Atomic int64_t next;
    int64_t blocks, chunks;             /* of the step's kept rows */
    const Margin *m;                    /* forward, backward */
    const SoftmaxStats *combined;       /* backward */
    float lr, momentum, weight_decay;   /* SGD step */
    int64_t first, end, first_block;    /* weight gradient: kept rows [first, end) */
    float *out;
    /* Backward: chunk 0 writes its part of dxn into sum, every other chunk
     * into a buffer of c->chunk_dx, which is added into sum once the chunks
     * before it are: sum is the chunks' parts added in chunk order, whoever
     * finishes first. No thread waits for another: the one that finds the
     * next chunk due adds it and every finished one after it. */
    float *sum;                         /* dxn (N, D), or dx itself for MARGIN_NORM_NONE */
    float *dx;
    pthread_mutex_t lock;               /* guards the fields below */
    int64_t added;                      /* chunks [0, added) are in sum */
    int adding;                         /* a thread is adding */
    uint8_t finished[CLASSIFIER_CHUNKS];
    int buffer_of[CLASSIFIER_CHUNKS];   /* chunk k's buffer (k > 0) */
    int free_buffer[CLASSIFIER_CHUNKS], n_free;
};

static void pass_body(void *ctx, size_t begin, size_t end) {
    Pass *p = ctx;
    for (size_t s = begin; s < end; s++)
        for (;;) {
            const int64_t u = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
            if (u >= p->units) break;
            p->unit(p, &p->c->scratch[s], u);
        }
}

/* Runs p->unit on every unit, one scratch set per thread. */
static void run_pass(Pass *p) {
    int64_t threads = parallel_threads();
    if (threads > p->c->slots) threads = p->c->slots;
    if (threads > p->units) threads = p->units;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    if (threads > 0) parallel_for((size_t)threads, 1, pass_body, p);
}

/* A pass over the step's kept rows: blocks of block_rows kept rows, and
 * chunks of consecutive blocks, chunk k holding the blocks
 * [blocks * k / chunks, blocks * (k + 1) / chunks). */
static void pass_init(Pass *p, ClassifierShard *c) {
    memset(p, 0, sizeof *p);
    p->c = c;
    p->blocks = (c->n_keep + c->block_rows - 1) / c->block_rows;
    p->chunks = p->blocks < c->chunks ? p->blocks : c->chunks;
}

/* Block b: its first kept row (keep order) and its number of rows. */
static int64_t block_start(const Pass *p, int64_t b) { return b * p->c->block_rows; }
static int64_t block_size(const Pass *p, int64_t b) {
    const int64_t left = p->c->n_keep - b * p->c->block_rows;
    return left < p->c->block_rows ? left : p->c->block_rows;
}

/* out (N, D) = the rows of in normalised, norms (N) their norms: rows
 * [begin, end) (a parallel_for body). */
typedef struct {
    float *out, *norms;
    const float *in;
    int D;
} RowsArg;

static void normalise_rows(void *ctx, size_t begin, size_t end) {
    const RowsArg *a = ctx;
    const size_t D = (size_t)a->D;
    l2norm_forward(a->out + begin * D, a->norms + begin, a->in + begin * D, (int64_t)(end - begin),
                   a->D);
}

/* Chunk k of the forward: each block's logits, z and stats; the stats
 * combined in block order into the chunk's. */
static void forward_chunk(Pass *p, ClassifierScratch *t, int64_t k) {
    ClassifierShard *c = p->c;
    const int N = c->last_n, D = c->dim;
    SoftmaxStats *st = c->chunk_stats + (size_t)k * (size_t)N;
    const int64_t b0 = p->blocks * k / p->chunks, b1 = p->blocks * (k + 1) / p->chunks;
    for (int64_t b = b0; b < b1; b++) {
        const int64_t j0 = block_start(p, b), n = block_size(p, b);
        float *z = c->logits + (size_t)N * (size_t)j0;
        /* z (N, n) = xn (N, D) . Wn[block] (n, D)^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, (int)n, D, 1.0f, c->xn, D,
                    block_rows(c, t, j0, n, 1), D, 0.0f, z, (int)n);
        margin_forward(z, b == b0 ? st : t->stats, t->target_dz, c->col_label, c->xnorm, N, n, j0,
                       p->m);
        if (b > b0) margin_stats_combine(st, t->stats, N);
        for (int i = 0; i < N; i++) /* the block owning a target has its dz/dcos */
            if (c->col_label[i] >= j0 && c->col_label[i] - j0 < n)
                c->target_dz[i] = t->target_dz[i];
    }
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
    const int64_t R = c->rows;
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
    if (m->norm == MARGIN_NORM_NONE) {
        memcpy(c->xn, x, (size_t)N * (size_t)D * sizeof(float));
    } else {
        RowsArg a = {c->xn, c->xnorm, x, D};
        parallel_for((size_t)N, parallel_grain((size_t)D), normalise_rows, &a);
    }
    if (c->n_keep == 0) { /* neutral stats, target_dz = 0 */
        margin_forward(NULL, c->stats, c->target_dz, c->col_label, c->xnorm, N, 0, 0, m);
        return;
    }
    memset(c->target_dz, 0, (size_t)N * sizeof(float));
    Pass p;
    pass_init(&p, c);
    p.unit = forward_chunk;
    p.units = p.chunks;
    p.m = m;
    run_pass(&p);
    memcpy(c->stats, c->chunk_stats, (size_t)N * sizeof(SoftmaxStats));
    for (int64_t k = 1; k < p.chunks; k++)
        margin_stats_combine(c->stats, c->chunk_stats + (size_t)k * (size_t)N, N);
}

static float *dx_buffer(const Pass *p, int b) {
    return p->c->chunk_dx + (size_t)b * (size_t)p->c->max_batch * (size_t)p->c->dim;
}

/* Chunk k's part of dxn is in buffer b (unused for k = 0): adds it and the
 * finished chunks after it into p->sum if their turn has come (see Pass). */
static void finish_chunk(Pass *p, int64_t k, int b) {
    const size_t nd = (size_t)p->c->last_n * (size_t)p->c->dim;
    pthread_mutex_lock(&p->lock);
    p->finished[k] = 1;
    p->buffer_of[k] = b;
    if (!p->adding) {
        p->adding = 1;
        while (p->added < p->chunks && p->finished[p->added]) {
            const int64_t j = p->added;
            const int buffer = p->buffer_of[j];
            pthread_mutex_unlock(&p->lock);
            if (j > 0) { /* chunk 0 wrote into sum itself */
                const float *part = dx_buffer(p, buffer);
                float *sum = p->sum;
                for (size_t e = 0; e < nd; e++) sum[e] += part[e];
            }
            pthread_mutex_lock(&p->lock);
            if (j > 0) p->free_buffer[p->n_free++] = buffer;
            p->added++;
        }
        p->adding = 0;
    }
    pthread_mutex_unlock(&p->lock);
}

/* Chunk k of the backward: each block's z -> dcos, then the chunk's part of
 * dxn (N, D) = sum over its blocks of dcos[:, block] . Wn[block], and of
 * dxnorm, summed in block order; then into p->sum. */
static void backward_chunk(Pass *p, ClassifierScratch *t, int64_t k) {
    ClassifierShard *c = p->c;
    const int N = c->last_n, D = c->dim;
    const int weights = p->m->norm == MARGIN_NORM_WEIGHTS;
    int b = -1;
    if (k > 0) {
        pthread_mutex_lock(&p->lock);
        CHECK(p->n_free > 0, "no buffer left for chunk %lld of %lld", (long long)k,
              (long long)p->chunks);
        b = p->free_buffer[--p->n_free];
        pthread_mutex_unlock(&p->lock);
    }
    float *part = k == 0 ? p->sum : dx_buffer(p, b);
    float *part_norm = c->chunk_dxnorm + (size_t)k * (size_t)N;
    const int64_t b0 = p->blocks * k / p->chunks, b1 = p->blocks * (k + 1) / p->chunks;
    for (int64_t blk = b0; blk < b1; blk++) {
        const int64_t j0 = block_start(p, blk), n = block_size(p, blk);
        float *z = c->logits + (size_t)N * (size_t)j0;
        float *dxnorm = !weights ? NULL : blk == b0 ? part_norm : t->dxnorm;
        margin_backward(z, dxnorm, p->combined, c->target_dz, c->col_label, c->xnorm, N, n, j0,
                        1.0f / (float)N, p->m);
        if (weights && blk > b0)
            for (int i = 0; i < N; i++) part_norm[i] += t->dxnorm[i];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, (int)n, 1.0f, z, (int)n,
                    block_rows(c, t, j0, n, 0), D, blk == b0 ? 0.0f : 1.0f, part, D);
    }
    finish_chunk(p, k, b);
}

/* Samples [begin, end) of dx from dxn (the chunks' parts summed), through
 * the embeddings' normalisation. */
static void dx_rows(void *ctx, size_t begin, size_t end) {
    const Pass *p = ctx;
    const ClassifierShard *c = p->c;
    const size_t N = (size_t)c->last_n, D = (size_t)c->dim;
    for (size_t i = begin; i < end; i++) {
        float *dxi = p->dx + i * D;
        const float *xn = c->xn + i * D;
        memset(dxi, 0, D * sizeof(float));
        l2norm_backward(dxi, c->dxn + i * D, xn, c->xnorm + i, 1, (int)D);
        if (p->m->norm == MARGIN_NORM_WEIGHTS) { /* d||x||/dx = x / ||x|| = xn */
            float g = c->chunk_dxnorm[i];
            for (int64_t k = 1; k < p->chunks; k++) g += c->chunk_dxnorm[(size_t)k * N + i];
            c->dxnorm[i] = g;
            for (size_t d = 0; d < D; d++) dxi[d] += g * xn[d];
        }
    }
}

void classifier_backward(ClassifierShard *c, float *dx, const SoftmaxStats *combined,
                         const int64_t *labels, const Margin *m) {
    const int N = c->last_n, D = c->dim;
    CHECK(m->norm == c->last_norm, "backward with normalisation %d after a forward with %d",
          (int)m->norm, (int)c->last_norm);
    for (int i = 0; i < N; i++)
        CHECK(c->col_label[i] < 0 ? labels[i] < c->start || labels[i] - c->start >= c->rows
                                  : c->start + c->keep[c->col_label[i]] == labels[i],
              "backward with label %lld for sample %d, not the forward's", (long long)labels[i], i);
    c->grad_ready = 1;
    if (N == 0) return;
    if (c->n_keep == 0) { /* no rows: dx = 0, dW = 0 */
        memset(dx, 0, (size_t)N * (size_t)D * sizeof(float));
        return;
    }
    Pass p;
    pass_init(&p, c);
    p.unit = backward_chunk;
    p.units = p.chunks;
    p.m = m;
    p.combined = combined;
    p.dx = dx;
    /* with raw embeddings and rows (z = x W^T) dxn is dx itself */
    p.sum = m->norm == MARGIN_NORM_NONE ? dx : c->dxn;
    pthread_mutex_init(&p.lock, NULL);
    for (int b = (int)p.chunks - 2; b >= 0; b--) p.free_buffer[p.n_free++] = b;
    run_pass(&p);
    pthread_mutex_destroy(&p.lock);
    CHECK(p.added == p.chunks, "%lld of %lld chunks of dx added", (long long)p.added,
          (long long)p.chunks);
    if (m->norm != MARGIN_NORM_NONE)
        parallel_for((size_t)N, parallel_grain((size_t)D * 4), dx_rows, &p);
}

/* dw (n, D) = the gradient of the kept rows j0 .. j0 + n - 1 (n <= block_rows)
 * from what the backward left: dWn = dcos[:, block]^T xn, then through the
 * rows' normalisation (nothing to chain through for MARGIN_NORM_NONE). The
 * one routine behind classifier_weight_grad and classifier_sgd_step. */
static void block_grad(ClassifierShard *c, ClassifierScratch *t, int64_t j0, int64_t n, float *dw) {
    const int N = c->last_n, D = c->dim;
    if (N == 0) {
        memset(dw, 0, (size_t)n * (size_t)D * sizeof(float));
        return;
    }
    const float *dz = c->logits + (size_t)N * (size_t)j0; /* (N, n) */
    if (c->last_norm == MARGIN_NORM_NONE) { /* dW = dz^T x */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, D, N, 1.0f, dz, (int)n, c->xn,
                    D, 0.0f, dw, D);
        return;
    }
    const float *wn = block_rows(c, t, j0, n, 0);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, D, N, 1.0f, dz, (int)n, c->xn, D,
                0.0f, t->dwn, D);
    memset(dw, 0, (size_t)n * (size_t)D * sizeof(float));
    l2norm_backward(dw, t->dwn, wn, c->wnorm + j0, n, D);
}

/* Block first_block + u of classifier_weight_grad: its rows in [first, end)
 * into out. */
static void grad_block(Pass *p, ClassifierScratch *t, int64_t u) {
    ClassifierShard *c = p->c;
    const size_t D = (size_t)c->dim;
    const int64_t b = p->first_block + u, j0 = block_start(p, b), n = block_size(p, b);
    const int64_t lo = j0 > p->first ? j0 : p->first, hi = j0 + n < p->end ? j0 + n : p->end;
    if (lo == j0 && hi == j0 + n) {
        block_grad(c, t, j0, n, p->out + (size_t)(j0 - p->first) * D);
    } else {
        block_grad(c, t, j0, n, t->dw);
        memcpy(p->out + (size_t)(lo - p->first) * D, t->dw + (size_t)(lo - j0) * D,
               (size_t)(hi - lo) * D * sizeof(float));
    }
}

void classifier_weight_grad(ClassifierShard *c, int64_t first, int64_t count, float *out) {
    CHECK(c->grad_ready,
          "classifier_weight_grad needs a classifier_backward and must precede its SGD step");
    CHECK(first >= 0 && count >= 0 && first <= c->n_keep - count,
          "kept rows [%lld, %lld) asked for, %lld kept", (long long)first,
          (long long)(first + count), (long long)c->n_keep);
    if (count == 0) return;
    /* The SGD step's blocks, since SGEMM's rounding of a row can depend on
     * where it falls in the call; only the asked-for rows are copied out. */
    const int64_t B = c->block_rows;
    Pass p;
    pass_init(&p, c);
    p.unit = grad_block;
    p.first = first;
    p.end = first + count;
    p.first_block = first / B;
    p.units = (first + count - 1) / B - p.first_block + 1;
    p.out = out;
    run_pass(&p);
}

/* Block b of the SGD step: its gradient, made from its rows before they
 * move, then the update of its rows. */
static void sgd_block(Pass *p, ClassifierScratch *t, int64_t b) {
    ClassifierShard *c = p->c;
    const size_t D = (size_t)c->dim;
    const int64_t j0 = block_start(p, b), n = block_size(p, b);
    block_grad(c, t, j0, n, t->dw);
    for (int64_t j = j0, r; j < j0 + n; j += r) {
        r = kept_run(c, j, j0 + n - j);
        const size_t off = (size_t)c->keep[j] * D;
        sgd_update(c->weight + off, c->momentum + off, t->dw + (size_t)(j - j0) * D, (size_t)r * D,
                    p->lr, p->momentum, p->weight_decay);
    }
}

void classifier_sgd_step(ClassifierShard *c, float lr, float momentum, float weight_decay) {
    CHECK(c->grad_ready, "classifier_sgd_step without a classifier_backward since the last step");
    Pass p;
    pass_init(&p, c);
    p.unit = sgd_block;
    p.units = p.blocks;
    p.lr = lr;
    p.momentum = momentum;
    p.weight_decay = weight_decay;
    run_pass(&p);
    c->grad_ready = 0;
}
