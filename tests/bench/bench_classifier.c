/* bench_classifier.c -- time of the parameter server's classifier step
 * (classifier_select, forward, backward, SGD) against the bare SGEMMs it
 * contains, with and without Partial FC.
 *
 * Usage: bench_classifier [--json] [ROWS...]   (default: 100000 1000000)
 * --json prints one JSON object per line (what deploy/bench.sh reads)
 * instead of the table.
 * N = 256 samples (the global batch), D = 512, ArcFace s = 64, m = 0.5. For
 * each shard size, sample rate 1 and 0.1, with 1 compute thread and with the
 * count OpenBLAS starts with (OPENBLAS_NUM_THREADS, else every core), as the
 * server runs (blas_setup): the step on the compute threads of parallel.h
 * (parallel_set_threads), OpenBLAS at one thread inside them.
 * The step's own statistics stand in for the combined ones (one server).
 * "sgemm" is the three SGEMMs of the step alone (logits N x K x D, dX and dW),
 * each one call over all K kept rows on buffers of its own (K x D normalised
 * rows and row gradients, N x K logits), timed after the shard is freed with
 * OpenBLAS's own threads (openblas_set_num_threads with the same count): the
 * best this OpenBLAS does for the same products. "step/sgemm" is what
 * everything else (normalisation, margin, exp, gathers, blocking, SGD, and
 * splitting the work over the threads) adds. Times are medians.
 * A 1,000,000-row shard allocates about 4.8 GiB: weights and momentum
 * (2 x 1.91 GiB) and the N x rows logits (0.95 GiB); each thread's row blocks
 * take 3 MiB, the buffers of dX's partial sums 0.5 MiB each (one or two per
 * thread resident), the norms and per-sample buffers a few MiB. "peak RSS"
 * (peak_rss_gib in --json) is the process's peak resident size (getrusage ru_maxrss) once the shard
 * has been created and stepped; it is a peak over the whole process, so give
 * the row counts in increasing order (as the default). Every shard size is
 * stepped before any bare SGEMM runs, so neither the bare SGEMMs' buffers nor
 * OpenBLAS's own threads (which a server never starts) count in it; the
 * table's lines come after all the steps. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "classifier.h"
#include "margin.h"
#include "parallel.h"
#include "rng.h"

#define N_BATCH 256
#define DIM 512
#define MAX_REPS 20

static int json_output;
static const float rates[2] = {1.0f, 0.1f}; /* sample rates */

/* Repetitions after one warm-up that took t seconds: at least 3 (2 when a
 * run takes more than 4 s) and about 2 s in all. */
static int reps_for(double t) {
    if (t > 4.0) return 2;
    int r = (int)(2.0 / (t > 1e-6 ? t : 1e-6));
    return r < 3 ? 3 : r > MAX_REPS ? MAX_REPS : r;
}

typedef struct {
    double select, forward, backward, sgd, total;
} StepTimes;

/* One server step; the phases' times into *t. */
static void step(ClassifierShard *c, float *dx, float *loss, SoftmaxStats *comb, const float *x,
                 const int64_t *labels, int64_t s, const Margin *m, StepTimes *t) {
    const double t0 = bench_now();
    classifier_select(c, labels, N_BATCH, s);
    const double t1 = bench_now();
    classifier_forward(c, x, labels, N_BATCH, m);
    memcpy(comb, c->stats, sizeof(SoftmaxStats) * N_BATCH);
    const double t2 = bench_now();
    classifier_backward(c, dx, comb, labels, m);
    margin_loss(loss, comb, N_BATCH);
    const double t3 = bench_now();
    classifier_sgd_step(c, 0.1f, 0.9f, 5e-4f);
    const double t4 = bench_now();
    *t = (StepTimes){t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0};
}

/* The process's peak resident set so far, in GiB (ru_maxrss is in KiB on Linux). */
static double peak_rss_gib(void) {
    struct rusage u;
    if (getrusage(RUSAGE_SELF, &u) != 0) return -1;
    return (double)u.ru_maxrss / (1024.0 * 1024.0);
}

/* Buffers of the bare SGEMMs, shaped as the step's for up to max_k kept rows. */
typedef struct {
    float *xn, *wn, *logits, *dxn, *dwn; /* (N, D), (K, D), (N, K), (N, D), (K, D) */
} GemmBuffers;

static GemmBuffers gemm_buffers(int64_t max_k) {
    const size_t kd = (size_t)max_k * DIM, nd = (size_t)N_BATCH * DIM;
    GemmBuffers g = {malloc(sizeof(float) * nd), malloc(sizeof(float) * kd),
                     calloc((size_t)N_BATCH * (size_t)max_k, sizeof(float)),
                     calloc(nd, sizeof(float)), calloc(kd, sizeof(float))};
    if (!g.xn || !g.wn || !g.logits || !g.dxn || !g.dwn) {
        fprintf(stderr, "bench_classifier: out of memory for the bare SGEMMs' buffers (%lld rows)\n",
                (long long)max_k);
        exit(1);
    }
    /* Values of the size of normalised 512-d vectors' elements (no denormals). */
    for (size_t k = 0; k < nd; k++) g.xn[k] = 0.044f * (float)((int)(k % 61) - 30) / 30.0f;
    for (size_t k = 0; k < kd; k++) g.wn[k] = 0.044f * (float)((int)(k % 53) - 26) / 26.0f;
    return g;
}

static void gemm_buffers_free(GemmBuffers *g) {
    free(g->xn), free(g->wn), free(g->logits), free(g->dxn), free(g->dwn);
}

/* The step's three SGEMMs for K kept rows, each one call over all of them. */
static void sgemms(const GemmBuffers *g, int K) {
    const int N = N_BATCH, D = DIM;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, K, D, 1.0f, g->xn, D, g->wn, D, 0.0f,
                g->logits, K);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, K, 1.0f, g->logits, K, g->wn, D,
                0.0f, g->dxn, D);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, D, N, 1.0f, g->logits, K, g->xn, D,
                0.0f, g->dwn, D);
}

/* Median time of sgemms(K) after one warm-up call. */
static double time_sgemms(const GemmBuffers *g, int K) {
    double t[MAX_REPS], t0 = bench_now();
    sgemms(g, K);
    const int reps = reps_for(bench_now() - t0);
    for (int r = 0; r < reps; r++) {
        t0 = bench_now();
        sgemms(g, K);
        t[r] = bench_now() - t0;
    }
    return bench_median(t, reps);
}

/* The shard's step times for one thread count and sample rate. */
typedef struct {
    double med[5]; /* select, forward, backward, sgd, total */
    double kept;   /* mean kept rows */
    int K;         /* kept rows of the last step, for the bare SGEMMs */
    int reps;
} StepResult;

/* What one shard size measured: res[thread count][sample rate]. */
typedef struct {
    int64_t rows, max_k;
    double gib, create_s, rss;
    StepResult res[2][2];
} RowsResult;

/* Creates a shard of rr->rows rows and times its steps. */
static void step_rows(RowsResult *rr, const int *threads, int n_threads) {
    const int64_t rows = rr->rows;
    ClassifierShard c;
    char err[256];
    parallel_set_threads(threads[n_threads - 1]); /* scratch for the most threads */
    double t0 = bench_now();
    if (classifier_create(&c, 0, rows, DIM, N_BATCH, 1, err, sizeof err) != 0) {
        fprintf(stderr, "bench_classifier: %s\n", err);
        exit(1);
    }
    const double gib = ((double)rows * DIM * 2 + (double)rows * N_BATCH) * 4 / (1 << 30);
    const double create_s = bench_now() - t0;
    rr->gib = gib;
    rr->create_s = create_s;
    if (!json_output) printf("# %lld rows: shard created in %.1f s (%.2f GiB)\n", (long long)rows, create_s, gib);
    fflush(stdout);
    float *x = malloc(sizeof(float) * N_BATCH * DIM), *dx = malloc(sizeof(float) * N_BATCH * DIM);
    float loss[N_BATCH];
    int64_t labels[N_BATCH];
    SoftmaxStats comb[N_BATCH];
    for (int k = 0; k < N_BATCH * DIM; k++) x[k] = rng_normal(rng_hash4(3, 4, (uint64_t)k, 0));
    const Margin m = {.s = 64, .m1 = 1, .m2 = 0.5f, .fallback = MARGIN_FALLBACK_THMM};
    StepResult (*res)[2] = rr->res;
    int64_t s = 0, max_k = 1;
    for (int ti = 0; ti < n_threads; ti++) {
        parallel_set_threads(threads[ti]);
        for (int ri = 0; ri < 2; ri++) {
            if (classifier_set_sampling(&c, rates[ri], 7, err, sizeof err) != 0) {
                fprintf(stderr, "bench_classifier: %s\n", err);
                exit(1);
            }
            StepResult *sr = &res[ti][ri];
            StepTimes t, all[MAX_REPS];
            double v[5][MAX_REPS];
            for (int i = 0; i < N_BATCH; i++)
                labels[i] = (int64_t)(rng_hash4(5, (uint64_t)s, (uint64_t)i, 0) % (uint64_t)rows);
            step(&c, dx, loss, comb, x, labels, s++, &m, &t); /* warm-up */
            sr->reps = reps_for(t.total);
            sr->kept = 0;
            for (int r = 0; r < sr->reps; r++) {
                for (int i = 0; i < N_BATCH; i++)
                    labels[i] =
                        (int64_t)(rng_hash4(5, (uint64_t)s, (uint64_t)i, 0) % (uint64_t)rows);
                step(&c, dx, loss, comb, x, labels, s++, &m, &all[r]);
                sr->kept += (double)c.n_keep / sr->reps;
                v[0][r] = all[r].select, v[1][r] = all[r].forward, v[2][r] = all[r].backward;
                v[3][r] = all[r].sgd, v[4][r] = all[r].total;
            }
            for (int k = 0; k < 5; k++) sr->med[k] = bench_median(v[k], sr->reps);
            sr->K = (int)c.n_keep;
            if (sr->K > max_k) max_k = sr->K;
        }
    }
    rr->max_k = max_k;
    rr->rss = peak_rss_gib();
    if (!json_output) printf("# %lld rows: peak RSS %.2f GiB after creating and stepping the shard\n",
                             (long long)rows, rr->rss);
    fflush(stdout);
    free(x);
    free(dx);
    classifier_destroy(&c);
}

/* The bare SGEMMs for each configuration's K of rr, on buffers of their own,
 * and the results' lines. */
static void sgemm_rows(const RowsResult *rr, const int *threads, int n_threads) {
    const int64_t rows = rr->rows;
    const double gib = rr->gib, create_s = rr->create_s, rss = rr->rss;
    GemmBuffers g = gemm_buffers(rr->max_k);
    for (int ti = 0; ti < n_threads; ti++) {
        openblas_set_num_threads(threads[ti]);
        for (int ri = 0; ri < 2; ri++) {
            const StepResult *sr = &rr->res[ti][ri];
            const double *med = sr->med;
            const double gm = time_sgemms(&g, sr->K);
            const double flop = 3.0 * 2.0 * N_BATCH * (double)sr->K * DIM;
            if (json_output)
                printf("{\"rows\": %lld, \"sample_rate\": %.2f, \"kept_rows\": %.0f, \"threads\": %d, "
                       "\"batch\": %d, \"dim\": %d, \"step_ms\": %.2f, \"select_ms\": %.2f, "
                       "\"forward_ms\": %.2f, \"backward_ms\": %.2f, \"sgd_ms\": %.2f, "
                       "\"sgemm_ms\": %.2f, \"sgemm_gflops\": %.1f, \"step_over_sgemm\": %.3f, "
                       "\"reps\": %d, \"shard_gib\": %.2f, \"shard_create_s\": %.1f, "
                       "\"peak_rss_gib\": %.3f, \"openblas_core\": \"%s\"}\n",
                       (long long)rows, (double)rates[ri], sr->kept, threads[ti], N_BATCH, DIM,
                       1e3 * med[4], 1e3 * med[0], 1e3 * med[1], 1e3 * med[2], 1e3 * med[3],
                       1e3 * gm, flop / gm * 1e-9, med[4] / gm, sr->reps, gib, create_s, rss,
                       openblas_get_corename());
            else
                printf("%9lld %4.2f %9.0f %3d %9.1f %8.1f %8.1f %8.1f %8.1f %9.1f %6.0f %6.2f %3d\n",
                       (long long)rows, (double)rates[ri], sr->kept, threads[ti], 1e3 * med[4],
                       1e3 * med[0], 1e3 * med[1], 1e3 * med[2], 1e3 * med[3], 1e3 * gm,
                       flop / gm * 1e-9, med[4] / gm, sr->reps);
            fflush(stdout);
        }
    }
    openblas_set_num_threads(1);
    gemm_buffers_free(&g);
}

int main(int argc, char **argv) {
    int64_t rows_list[16] = {100000, 1000000};
    int n_rows = 2;
    int a = 1;
    if (a < argc && !strcmp(argv[a], "--json")) json_output = 1, a++;
    if (a < argc) {
        n_rows = 0;
        for (; a < argc && n_rows < 16; a++) {
            char *end;
            const long long r = strtoll(argv[a], &end, 10);
            if (*end || r <= 0) {
                fprintf(stderr, "usage: bench_classifier [--json] [ROWS...]  ('%s' is not a row count)\n",
                        argv[a]);
                return 2;
            }
            rows_list[n_rows++] = r;
        }
    }
    /* What blas_setup does with threads = 0: the count OpenBLAS would use, as
     * compute threads; the shards are created with that many (their scratch). */
    const int t_max = openblas_get_num_threads();
    const int threads[2] = {1, t_max};
    const int n_threads = t_max > 1 ? 2 : 1;
    parallel_set_threads(t_max);
    openblas_set_num_threads(1);
    if (!json_output) {
        printf("# OpenBLAS %s, core %s, %d threads by default; N = %d, D = %d, ArcFace s = 64\n",
               openblas_get_config(), openblas_get_corename(), t_max, N_BATCH, DIM);
        printf("# times in ms (median); K = kept rows (mean); thr = compute threads of the step, "
               "OpenBLAS threads of sgemm\n");
        printf("# sgemm = the step's 3 SGEMMs alone, one OpenBLAS call each\n");
        printf("#    rows rate         K thr   step_ms   select  forward backward      sgd  sgemm_ms "
               "GFLOPS step/sgemm reps\n");
    }
    /* Every shard first, then the bare SGEMMs: these start OpenBLAS's own
     * threads, which keep buffers resident that a server (OpenBLAS at one
     * thread) never has, and would count in the next shard's peak RSS. */
    RowsResult rr[16];
    for (int i = 0; i < n_rows; i++) {
        rr[i].rows = rows_list[i];
        step_rows(&rr[i], threads, n_threads);
    }
    for (int i = 0; i < n_rows; i++) sgemm_rows(&rr[i], threads, n_threads);
    return 0;
}
