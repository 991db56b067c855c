/* test_parallel.c -- the compute pool: every index handled once, the caller's
 * share, nested and concurrent calls, the same bits from batch norm and PReLU
 * at any thread count, and sgemm_parallel against one cblas_sgemm call. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "parallel.h"
#include "testutil.h"

#define MAX_N 5000

typedef struct {
    _Atomic int hits[MAX_N];
    _Atomic int calls;
    pthread_t caller;
    _Atomic int caller_ran_first; /* the range starting at 0 ran on the caller */
    int nested;                   /* each body also runs a parallel_for of its own */
    _Atomic int nested_hits;
} Coverage;

static void nested_body(void *ctx, size_t begin, size_t end) {
    Coverage *c = ctx;
    atomic_fetch_add(&c->nested_hits, (int)(end - begin));
}

static void count_body(void *ctx, size_t begin, size_t end) {
    Coverage *c = ctx;
    atomic_fetch_add(&c->calls, 1);
    if (begin == 0 && pthread_equal(pthread_self(), c->caller)) atomic_store(&c->caller_ran_first, 1);
    for (size_t i = begin; i < end; i++) atomic_fetch_add(&c->hits[i], 1);
    if (c->nested) parallel_for(10, 1, nested_body, c);
}

static void test_coverage(void) {
    static const size_t ns[] = {0, 1, 2, 3, 5, 64, 999, MAX_N};
    static const size_t grains[] = {1, 7, 1000};
    static const int threads[] = {1, 2, 3, 8};
    static Coverage c;
    for (size_t ti = 0; ti < sizeof threads / sizeof *threads; ti++) {
        parallel_set_threads(threads[ti]);
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
            for (size_t gi = 0; gi < sizeof grains / sizeof *grains; gi++) {
                for (int nested = 0; nested < 2; nested++) {
                    memset(&c, 0, sizeof c);
                    c.caller = pthread_self();
                    c.nested = nested;
                    const size_t n = ns[ni], grain = grains[gi];
                    parallel_for(n, grain, count_body, &c);
                    int bad = 0;
                    for (size_t i = 0; i < n; i++) bad += atomic_load(&c.hits[i]) != 1;
                    EXPECT(bad == 0, "threads %d n %zu grain %zu: %d indices not hit exactly once",
                           threads[ti], n, grain, bad);
                    const int calls = atomic_load(&c.calls);
                    size_t most = n / grain < (size_t)threads[ti] ? n / grain : (size_t)threads[ti];
                    if (most < 1) most = 1;
                    EXPECT(n == 0 ? calls == 0 : calls >= 1 && (size_t)calls <= most,
                           "threads %d n %zu grain %zu: %d calls, at most %zu expected", threads[ti],
                           n, grain, calls, most);
                    if (n > 0)
                        EXPECT(atomic_load(&c.caller_ran_first), "threads %d n %zu: the caller did "
                               "not run the first range", threads[ti], n);
                    if (nested)
                        EXPECT(atomic_load(&c.nested_hits) == 10 * calls,
                               "threads %d n %zu: nested loops covered %d of %d", threads[ti], n,
                               atomic_load(&c.nested_hits), 10 * calls);
                }
            }
        }
    }
}

/* Two threads calling parallel_for at once: one gets the pool, the other runs
 * alone; both must cover their ranges. */
static void *concurrent_caller(void *arg) {
    Coverage *c = arg;
    c->caller = pthread_self();
    for (int r = 0; r < 200; r++) parallel_for(MAX_N, 1, count_body, c);
    return NULL;
}

static void test_concurrent_callers(void) {
    parallel_set_threads(3);
    static Coverage a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    pthread_t ta, tb;
    EXPECT(pthread_create(&ta, NULL, concurrent_caller, &a) == 0, "pthread_create");
    EXPECT(pthread_create(&tb, NULL, concurrent_caller, &b) == 0, "pthread_create");
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    int bad = 0;
    for (size_t i = 0; i < MAX_N; i++) bad += atomic_load(&a.hits[i]) != 200 || atomic_load(&b.hits[i]) != 200;
    EXPECT(bad == 0, "concurrent callers: %d indices not hit 200 times by each", bad);
}

static float *filled(size_t n, float lo, float hi, uint64_t seed) {
    float *x = malloc(n * sizeof(float));
    test_fill_uniform(x, n, lo, hi, seed);
    return x;
}

/* Batch norm and PReLU split by channel: 1 and 3 threads give the same bits. */
static void test_layer_bits(void) {
    const int N = 4, C = 48, HW = 28 * 28, group = 2;
    const size_t n = (size_t)N * C * HW;
    float *inp = filled(n, -2, 3, 1), *dout = filled(n, -1, 1, 2);
    float *gamma = filled((size_t)C, 0.5f, 1.5f, 3), *beta = filled((size_t)C, -0.5f, 0.5f, 4);
    float *alpha = filled((size_t)C, 0.1f, 0.3f, 5);
    float *out[2], *dinp[2], *stats[2], *running[2], *dparams[2], *apply[2];
    for (int t = 0; t < 2; t++) {
        parallel_set_threads(t == 0 ? 1 : 3);
        out[t] = calloc(n, sizeof(float));
        dinp[t] = calloc(n, sizeof(float));
        apply[t] = calloc(n, sizeof(float));
        stats[t] = calloc((size_t)2 * (N / group) * C, sizeof(float));
        running[t] = calloc((size_t)2 * C, sizeof(float));
        dparams[t] = calloc((size_t)3 * C, sizeof(float));
        float *mean = stats[t], *invstd = stats[t] + (N / group) * C;
        batchnorm_forward_train(out[t], mean, invstd, running[t], running[t] + C, inp, gamma, beta, N,
                                C, HW, group, 1e-5f, 0.1f);
        batchnorm_apply(apply[t], inp, gamma, beta, mean, invstd, N, C, HW, group);
        batchnorm_backward(dinp[t], dparams[t], dparams[t] + C, dout, inp, gamma, mean, invstd, N, C,
                           HW, group);
        prelu_forward(out[t], out[t], alpha, N, C, HW); /* in place, as allowed */
        prelu_backward(dinp[t], dparams[t] + 2 * C, dout, inp, alpha, N, C, HW);
    }
    EXPECT(memcmp(apply[0], apply[1], n * sizeof(float)) == 0, "batchnorm_apply differs by thread count");
    EXPECT(memcmp(out[0], out[1], n * sizeof(float)) == 0, "forward outputs differ by thread count");
    EXPECT(memcmp(dinp[0], dinp[1], n * sizeof(float)) == 0, "input gradients differ by thread count");
    EXPECT(memcmp(stats[0], stats[1], (size_t)2 * (N / group) * C * sizeof(float)) == 0,
           "saved statistics differ by thread count");
    EXPECT(memcmp(running[0], running[1], (size_t)2 * C * sizeof(float)) == 0,
           "running statistics differ by thread count");
    EXPECT(memcmp(dparams[0], dparams[1], (size_t)3 * C * sizeof(float)) == 0,
           "parameter gradients differ by thread count");
    /* batchnorm_apply recomputes the training forward bit for bit (before PReLU
     * overwrote it, so compare against a fresh forward). */
    float *again = calloc(n, sizeof(float)), *stats2 = calloc((size_t)2 * (N / group) * C, sizeof(float));
    float *running2 = calloc((size_t)2 * C, sizeof(float));
    batchnorm_forward_train(again, stats2, stats2 + (N / group) * C, running2, running2 + C, inp, gamma,
                            beta, N, C, HW, group, 1e-5f, 0.1f);
    EXPECT(memcmp(again, apply[1], n * sizeof(float)) == 0, "batchnorm_apply differs from the forward");
    free(again), free(stats2), free(running2);
    for (int t = 0; t < 2; t++) free(out[t]), free(dinp[t]), free(apply[t]), free(stats[t]), free(running[t]), free(dparams[t]);
    free(inp), free(dout), free(gamma), free(beta), free(alpha);
}

/* sgemm_parallel against one single-threaded call, every transpose, split by
 * rows (tall C) and by columns (wide C), with leading dimensions wider than the
 * matrices and sizes that do not divide evenly. */
static void test_sgemm(void) {
    static const int shapes[][3] = {{37, 301, 19}, {403, 29, 33}, {1, 1, 5}, {64, 64, 0}, {130, 17, 70}};
    parallel_set_threads(3);
    parallel_ignore_grain(1);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        for (int ta = 0; ta < 2; ta++) {
            for (int tb = 0; tb < 2; tb++) {
                const CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
                const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 5;
                const size_t a_rows = (size_t)(ta ? K : M), b_rows = (size_t)(tb ? N : K);
                float *A = filled(a_rows * lda + 1, -1, 1, 10 + si), *B = filled(b_rows * ldb + 1, -1, 1, 20 + si);
                float *C0 = filled((size_t)M * ldc, -1, 1, 30 + si), *C1 = malloc((size_t)M * ldc * sizeof(float));
                memcpy(C1, C0, (size_t)M * ldc * sizeof(float));
                cblas_sgemm(CblasRowMajor, TA, TB, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C0, ldc);
                sgemm_parallel(TA, TB, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C1, ldc);
                size_t where = 0;
                const double d = test_max_rel_diff(C0, C1, (size_t)M * ldc, &where);
                EXPECT(d < 1e-5, "sgemm %dx%dx%d trans %d%d: differs by %g at %zu", M, N, K, ta, tb, d, where);
                free(A), free(B), free(C0), free(C1);
            }
        }
    }
    parallel_ignore_grain(0);
}

int main(void) {
    test_coverage();
    test_concurrent_callers();
    test_layer_bits();
    test_sgemm();
    return test_finish("test_parallel");
}
