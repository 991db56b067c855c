/* parallel.c -- a fork-join pool: the calling thread plus workers started on
 * first use.
 *
 * Between SGEMMs the gaps are short (a BN pass over a 14x14 map takes well under
 * a millisecond), so a worker first spins for a while on the job counter before
 * sleeping on a condition variable; the caller waits for the workers the same
 * way. Jobs are published under the mutex and read under it, so a worker never
 * sees half of one. */
#include "parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 64
/* Spin iterations before sleeping: about 50 us; the gaps between the kernels of one
 * layer are shorter, the SGEMMs between layers are longer. */
#define SPIN_ITERATIONS 4000

static struct {
    pthread_mutex_t running;  /* held by the one parallel_for that uses the pool */
    pthread_mutex_t lock;     /* guards the job below and the condition variables */
    pthread_cond_t wake, done;
    int workers;              /* started so far */
    uint64_t start_job[MAX_THREADS]; /* worker i's first job is the one after start_job[i] */
    _Atomic uint64_t job;     /* incremented for every job */
    _Atomic int remaining;    /* workers of the current job still running */
    int threads;              /* of the current job, the caller included */
    size_t n;
    ParallelBody body;
    void *ctx;
} pool = {.running = PTHREAD_MUTEX_INITIALIZER,
          .lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

static int compute_threads = 1, grain_ignored;
static _Thread_local int inside_body;

void parallel_set_threads(int threads) {
    if (threads <= 0) {
        const long online = sysconf(_SC_NPROCESSORS_ONLN);
        threads = online > 0 ? (int)online : 1;
    }
    compute_threads = threads > MAX_THREADS ? MAX_THREADS : threads;
}

int parallel_threads(void) { return compute_threads; }

void parallel_ignore_grain(int on) { grain_ignored = on; }

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_range(ParallelBody body, void *ctx, size_t n, int threads, int id) {
    const size_t begin = n * (size_t)id / (size_t)threads, end = n * (size_t)(id + 1) / (size_t)threads;
    if (begin < end) {
        inside_body = 1;
        body(ctx, begin, end);
        inside_body = 0;
    }
}

static void *worker_main(void *arg) {
    const int id = (int)(intptr_t)arg;
    uint64_t seen = pool.start_job[id];
    for (;;) {
        for (int i = 0; i < SPIN_ITERATIONS && atomic_load_explicit(&pool.job, memory_order_acquire) == seen; i++)
            cpu_relax();
        pthread_mutex_lock(&pool.lock);
        while (atomic_load(&pool.job) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = atomic_load(&pool.job);
        const int threads = pool.threads;
        const size_t n = pool.n;
        const ParallelBody body = pool.body;
        void *ctx = pool.ctx;
        pthread_mutex_unlock(&pool.lock);
        if (id >= threads) continue; /* not part of this job */
        run_range(body, ctx, n, threads, id);
        if (atomic_fetch_sub(&pool.remaining, 1) == 1) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
    }
    return NULL;
}

/* Starts workers up to wanted - 1 (the caller is thread 0); returns the threads
 * usable, at most wanted. */
static int ensure_workers(int wanted) {
    while (pool.workers < wanted - 1) {
        pthread_t th;
        /* Not the worker's own read of pool.job: the job about to be published could
         * come first, and it would wait for the next one forever. */
        pool.start_job[pool.workers + 1] = atomic_load(&pool.job);
        if (pthread_create(&th, NULL, worker_main, (void *)(intptr_t)(pool.workers + 1)) != 0) break;
        pthread_detach(th);
        pool.workers++;
    }
    return pool.workers + 1 < wanted ? pool.workers + 1 : wanted;
}

void parallel_for(size_t n, size_t grain, ParallelBody body, void *ctx) {
    int threads = compute_threads;
    if (grain < 1 || grain_ignored) grain = 1;
    if ((size_t)threads > n / grain) threads = (int)(n / grain);
    if (threads <= 1 || inside_body || pthread_mutex_trylock(&pool.running) != 0) {
        if (n > 0) body(ctx, 0, n);
        return;
    }
    threads = ensure_workers(threads);
    if (threads <= 1) {
        pthread_mutex_unlock(&pool.running);
        body(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    pool.threads = threads;
    pool.n = n;
    pool.body = body;
    pool.ctx = ctx;
    atomic_store(&pool.remaining, threads - 1);
    atomic_fetch_add_explicit(&pool.job, 1, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    run_range(body, ctx, n, threads, 0);

    for (int i = 0; i < SPIN_ITERATIONS && atomic_load_explicit(&pool.remaining, memory_order_acquire) > 0; i++)
        cpu_relax();
    pthread_mutex_lock(&pool.lock);
    while (atomic_load(&pool.remaining) > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.running);
}

size_t parallel_grain(size_t n_per_index) {
    const size_t target = 16384;
    return n_per_index >= target ? 1 : (target + n_per_index - 1) / n_per_index;
}

static void zero_range(void *ctx, size_t begin, size_t end) {
    memset((float *)ctx + begin, 0, (end - begin) * sizeof(float));
}

void parallel_zero(float *dst, size_t n) { parallel_for(n, 16384, zero_range, dst); }

/* Columns (or rows) per block are a multiple of this, so each thread's block
 * starts on a 64-byte boundary when the whole matrix does. */
#define GEMM_ALIGN 16

typedef struct {
    CBLAS_TRANSPOSE trans_a, trans_b;
    int M, N, K, lda, ldb, ldc, split_rows;
    float alpha, beta;
    const float *A, *B;
    float *C;
} GemmCall;

static void gemm_range(void *ctx, size_t begin, size_t end) {
    const GemmCall *g = ctx;
    const int lo = (int)begin * GEMM_ALIGN;
    int hi = (int)end * GEMM_ALIGN;
    if (g->split_rows) {
        if (hi > g->M) hi = g->M;
        const float *A = g->A + (g->trans_a == CblasNoTrans ? (size_t)lo * g->lda : (size_t)lo);
        cblas_sgemm(CblasRowMajor, g->trans_a, g->trans_b, hi - lo, g->N, g->K, g->alpha, A, g->lda,
                    g->B, g->ldb, g->beta, g->C + (size_t)lo * g->ldc, g->ldc);
    } else {
        if (hi > g->N) hi = g->N;
        const float *B = g->B + (g->trans_b == CblasNoTrans ? (size_t)lo : (size_t)lo * g->ldb);
        cblas_sgemm(CblasRowMajor, g->trans_a, g->trans_b, g->M, hi - lo, g->K, g->alpha, g->A, g->lda,
                    B, g->ldb, g->beta, g->C + lo, g->ldc);
    }
}

void sgemm_parallel(CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    GemmCall g = {.trans_a = trans_a, .trans_b = trans_b, .M = M, .N = N, .K = K, .lda = lda,
                  .ldb = ldb, .ldc = ldc, .split_rows = M > N, .alpha = alpha, .beta = beta,
                  .A = A, .B = B, .C = C};
    const int split = g.split_rows ? M : N;
    /* Blocks of GEMM_ALIGN; a thread gets at least 4 of them (64 columns) and
     * about 2 MFLOP, below which waking it costs more than it saves. */
    const size_t blocks = (size_t)(split + GEMM_ALIGN - 1) / GEMM_ALIGN;
    const double flops_per_block = 2.0 * GEMM_ALIGN * (g.split_rows ? N : M) * (double)(K > 0 ? K : 1);
    size_t grain = (size_t)(2e6 / flops_per_block) + 1;
    if (grain < 4) grain = 4;
    parallel_for(blocks, grain, gemm_range, &g);
}
