/* test_partial_fc.c -- Partial FC in the classifier shard: sample rate 1 is
 * bit-for-bit the unsampled computation; the kept classes follow the hash rule,
 * hold every positive and do not depend on the split over shards; unsampled
 * rows and their momentum are untouched; the update applies exactly the
 * gradient classifier_weight_grad reports; finite-difference gradients of the
 * partial softmax; P = 1 and P = 3 agree on loss, dx and the update; 1 and 3
 * compute threads agree bit for bit. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "classifier.h"
#include "margin.h"
#include "parallel.h"
#include "rng.h"
#include "sampling.h"
#include "testutil.h"

#define MAXN 64
#define MAXC 128

#define CM(s_, m1_, m2_, m3_, fb_, norm_)                                                        \
    ((Margin){.s = (s_), .m1 = (m1_), .m2 = (m2_), .m3 = (m3_), .fallback = (fb_),               \
              .grad = MARGIN_GRAD_EXACT, .norm = (norm_)})

static const float LR = 0.1f, MOM = 0.9f, WD = 5e-4f;

/* max |a - b| / max |b| */
static double rel_to_max(const float *a, const float *b, size_t n) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        diff = d > diff || isnan(d) ? d : diff;
        scale = fmax(scale, fabs((double)b[i]));
    }
    return isnan(diff) ? INFINITY : diff / fmax(scale, 1e-30);
}

/* Labels of step `step`: hashed into [0, C), with repeats (samples 2k and 2k+1
 * share a class every fourth pair) as a real batch has. */
static void make_labels(int64_t *labels, int N, int64_t C, int64_t step, uint64_t seed) {
    for (int i = 0; i < N; i++) {
        const uint64_t h = rng_hash4(seed, 1000 + (uint64_t)step, (uint64_t)i, 3);
        labels[i] = i % 8 == 1 ? labels[i - 1] : (int64_t)(h % (uint64_t)C);
    }
}

/* ---- the unsampled computation, written as classifier.c was before Partial FC ---- */

/* One full step of a single shard holding classes [0, C): forward, loss from
 * its own stats, backward, SGD, with the same calls and loops. */
static void ref_full_step(float *w, float *v, float *dw, float *loss, float *dx, const float *x,
                          const int64_t *labels, int N, int C, int D, const Margin *m) {
    const size_t cd = (size_t)C * D, nd = (size_t)N * D;
    float *wn = calloc(cd, sizeof(float)), *wnorm = calloc((size_t)C, sizeof(float));
    float *xn = calloc(nd, sizeof(float)), *xnorm = calloc((size_t)N, sizeof(float));
    float *dxnorm = calloc((size_t)N, sizeof(float)), *tdz = calloc((size_t)N, sizeof(float));
    float *logits = calloc((size_t)N * C, sizeof(float)), *dxn = calloc(nd, sizeof(float));
    float *dwn = calloc(cd, sizeof(float));
    SoftmaxStats *st = calloc((size_t)N, sizeof *st);
    const int raw = m->norm == MARGIN_NORM_NONE;
    if (raw)
        memcpy(xn, x, nd * sizeof(float));
    else
        l2norm_forward(xn, xnorm, x, N, D);
    if (!raw) l2norm_forward(wn, wnorm, w, C, D);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, C, D, 1.0f, xn, D, raw ? w : wn, D,
                0.0f, logits, C);
    margin_forward(logits, st, tdz, labels, xnorm, N, C, 0, m);
    margin_loss(loss, st, N);
    margin_backward(logits, dxnorm, st, tdz, labels, xnorm, N, C, 0, 1.0f / (float)N, m);
    if (raw) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, C, 1.0f, logits, C, w, D, 0.0f,
                    dx, D);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, D, N, 1.0f, logits, C, xn, D, 0.0f,
                    dw, D);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, C, 1.0f, logits, C, wn, D,
                    0.0f, dxn, D);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, D, N, 1.0f, logits, C, xn, D, 0.0f,
                    dwn, D);
        memset(dx, 0, nd * sizeof(float));
        l2norm_backward(dx, dxn, xn, xnorm, N, D);
        if (m->norm == MARGIN_NORM_WEIGHTS)
            for (int i = 0; i < N; i++)
                for (int d = 0; d < D; d++) dx[i * D + d] += dxnorm[i] * xn[i * D + d];
        memset(dw, 0, cd * sizeof(float));
        l2norm_backward(dw, dwn, wn, wnorm, C, D);
    }
    size_t i = 0;
    for (; i + 16 <= cd; i += 16)
#pragma GCC ivdep
        for (int k = 0; k < 16; k++) {
            v[i + k] = MOM * v[i + k] + (dw[i + k] + WD * w[i + k]);
            w[i + k] -= LR * v[i + k];
        }
    for (; i < cd; i++) {
        v[i] = MOM * v[i] + (dw[i] + WD * w[i]);
        w[i] -= LR * v[i];
    }
    free(wn), free(wnorm), free(xn), free(xnorm), free(dxnorm), free(tdz), free(logits);
    free(dxn), free(dwn), free(st);
}

/* ---- shards ---- */

/* P shards over [0, sum rows) with seed 42, sample rate rate; wscale
 * multiplies the rows as made. */
static void make_shards(ClassifierShard *sh, const int64_t *rows, int P, int D, int N, float rate,
                        uint64_t sample_seed, float wscale) {
    int64_t start = 0;
    char err[256];
    for (int p = 0; p < P; p++) {
        EXPECT(classifier_create(&sh[p], start, rows[p], D, N, 42, err, sizeof err) == 0, "%s",
               err);
        EXPECT(classifier_set_sampling(&sh[p], rate, sample_seed, err, sizeof err) == 0, "%s", err);
        for (int64_t k = 0; k < rows[p] * D; k++) sh[p].weight[k] *= wscale;
        start += rows[p];
    }
}

/* The kept classes of all shards as global ids, in shard order (so sorted). */
static int64_t kept_global(const ClassifierShard *sh, int P, int64_t *out) {
    int64_t n = 0;
    for (int p = 0; p < P; p++)
        for (int64_t j = 0; j < sh[p].n_keep; j++) out[n++] = sh[p].start + sh[p].keep[j];
    return n;
}

/* The gradient of shard p's kept rows (classifier_weight_grad) scattered
 * into dw, the (sum of rows, D) matrix of all shards' classes; the other rows
 * of dw are left as they are. */
static void scatter_weight_grad(float *dw, ClassifierShard *sh) {
    const int D = sh->dim;
    float *g = malloc(sizeof(float) * (size_t)(sh->n_keep ? sh->n_keep : 1) * D);
    classifier_weight_grad(sh, 0, sh->n_keep, g);
    for (int64_t j = 0; j < sh->n_keep; j++)
        memcpy(dw + (size_t)(sh->start + sh->keep[j]) * D, g + (size_t)j * D, sizeof(float) * D);
    free(g);
}

/* One training step over P in-process shards: select, forward, combine,
 * loss, backward (dx summed in shard order), the kept rows' gradient into dw
 * (if not NULL, see scatter_weight_grad), SGD. */
static void sharded_step(ClassifierShard *sh, int P, float *loss, float *dx, float *dw,
                         const float *x, const int64_t *labels, int N, int64_t step,
                         const Margin *m, int sgd) {
    const int D = sh[0].dim;
    SoftmaxStats comb[MAXN];
    float dxp[MAXN * 64];
    for (int p = 0; p < P; p++) {
        classifier_select(&sh[p], labels, N, step);
        classifier_forward(&sh[p], x, labels, N, m);
    }
    memcpy(comb, sh[0].stats, (size_t)N * sizeof *comb);
    for (int p = 1; p < P; p++) margin_stats_combine(comb, sh[p].stats, N);
    margin_loss(loss, comb, N);
    memset(dx, 0, sizeof(float) * (size_t)N * D);
    for (int p = 0; p < P; p++) {
        classifier_backward(&sh[p], dxp, comb, labels, m);
        for (int k = 0; k < N * D; k++) dx[k] += dxp[k];
        if (dw) scatter_weight_grad(dw, &sh[p]);
        if (sgd) classifier_sgd_step(&sh[p], LR, MOM, WD);
    }
}

/* ---- (1) sample rate 1 is the unsampled computation, bit for bit ---- */

/* a (never sampled) and b (rate 1 through classifier_select) against the
 * unsampled reference for 3 steps. With one block of rows (the default
 * block_rows for these 37 rows) all three are bit-identical; with blocks of
 * 16 rows the blocked sums of dx may round differently from the reference's
 * one SGEMM, so a and b must still be bit-identical to each other and within
 * 1e-5 of the reference. */
static void test_rate_one(void) {
    enum { N = 8, D = 20, C = 37 };
    const struct {
        const char *name;
        Margin m;
        float wscale;
    } cases[] = {
        {"arcface thmm", CM(32, 1, 0.5f, 0, MARGIN_FALLBACK_THMM, MARGIN_NORM_BOTH), 1},
        {"cosface raw x", CM(0, 1, 0, 0.35f, MARGIN_FALLBACK_THMM, MARGIN_NORM_WEIGHTS), 1},
        {"softmax raw x, raw W", CM(0, 1, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_NORM_NONE), 30},
    };
    const int64_t blocks[2] = {CLASSIFIER_BLOCK_ROWS, 16};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++)
        for (int bi = 0; bi < 2; bi++) {
            const Margin *m = &cases[ci].m;
            ClassifierShard a, b;
            const int64_t rows[1] = {C};
            make_shards(&a, rows, 1, D, N, 1.0f, 0, cases[ci].wscale);
            make_shards(&b, rows, 1, D, N, 1.0f, 777, cases[ci].wscale);
            a.block_rows = b.block_rows = blocks[bi];
            const size_t cd = (size_t)C * D;
            float *w = malloc(sizeof(float) * cd), *v = calloc(cd, sizeof(float));
            float *dw = malloc(sizeof(float) * cd), *dw_a = malloc(sizeof(float) * cd);
            float *dw_b = malloc(sizeof(float) * cd);
            memcpy(w, a.weight, sizeof(float) * cd);
            int same = 1;
            double worst = 0;
            for (int step = 0; step < 3; step++) {
                float x[N * D], loss_a[N], loss_b[N], loss_r[N], dx_a[N * D], dx_b[N * D],
                    dx_r[N * D];
                int64_t labels[N];
                test_fill_uniform(x, N * D, -1, 1, 100 + (uint64_t)step);
                make_labels(labels, N, C, step, 5);
                SoftmaxStats st[N];
                classifier_forward(&a, x, labels, N, m); /* no classifier_select at all */
                memcpy(st, a.stats, sizeof st);
                margin_loss(loss_a, st, N);
                classifier_backward(&a, dx_a, st, labels, m);
                classifier_weight_grad(&a, 0, C, dw_a);
                classifier_sgd_step(&a, LR, MOM, WD);
                sharded_step(&b, 1, loss_b, dx_b, dw_b, x, labels, N, step, m, 1);
                ref_full_step(w, v, dw, loss_r, dx_r, x, labels, N, C, D, m);
                EXPECT(b.n_keep == C, "%s: rate 1 kept %lld of %d rows", cases[ci].name,
                       (long long)b.n_keep, C);
                const int ab = memcmp(loss_a, loss_b, sizeof loss_a) == 0 &&
                               memcmp(dx_a, dx_b, sizeof dx_a) == 0 &&
                               memcmp(a.weight, b.weight, sizeof(float) * cd) == 0 &&
                               memcmp(a.momentum, b.momentum, sizeof(float) * cd) == 0 &&
                               memcmp(dw_a, dw_b, sizeof(float) * cd) == 0;
                const int br = memcmp(loss_b, loss_r, sizeof loss_b) == 0 &&
                               memcmp(dx_b, dx_r, sizeof dx_b) == 0 &&
                               memcmp(b.weight, w, sizeof(float) * cd) == 0 &&
                               memcmp(b.momentum, v, sizeof(float) * cd) == 0 &&
                               memcmp(dw_b, dw, sizeof(float) * cd) == 0;
                const double d = fmax(fmax(rel_to_max(loss_b, loss_r, N),
                                           rel_to_max(dx_b, dx_r, N * D)),
                                      fmax(fmax(rel_to_max(b.weight, w, cd),
                                                rel_to_max(b.momentum, v, cd)),
                                           rel_to_max(dw_b, dw, cd)));
                worst = fmax(worst, d);
                EXPECT(ab, "%s, blocks of %lld, step %d: rate 1 differs from the unsampled shard",
                       cases[ci].name, (long long)blocks[bi], step);
                EXPECT(bi ? d < 1e-5 : br,
                       "%s, blocks of %lld, step %d: rate 1 is not %s the unsampled reference "
                       "(loss %.3g, dx %.3g, w %.3g, dw %.3g apart)",
                       cases[ci].name, (long long)blocks[bi], step,
                       bi ? "within 1e-5 of" : "bit-identical to", rel_to_max(loss_b, loss_r, N),
                       rel_to_max(dx_b, dx_r, N * D), rel_to_max(b.weight, w, cd),
                       rel_to_max(dw_b, dw, cd));
                same &= ab && (bi || br);
            }
            fprintf(stderr, "  rate 1 = unsampled, 3 steps, %-22s blocks of %4lld: %s (%.1e)\n",
                    cases[ci].name, (long long)blocks[bi],
                    same ? "bit-identical" : "DIFFERENT", worst);
            free(w), free(v), free(dw), free(dw_a), free(dw_b);
            classifier_destroy(&a);
            classifier_destroy(&b);
        }
}

/* ---- (2) the kept set ---- */

static void test_selection(void) {
    enum { N = 64, D = 4, C = 20000, STEPS = 10 };
    const float rate = 0.1f;
    const uint64_t seed = 99;
    const struct {
        int P;
        int64_t rows[3];
    } splits[] = {{1, {C}}, {2, {C / 2, C / 2}}, {3, {7001, 5999, 7000}}};
    ClassifierShard sh[3][3];
    for (int s = 0; s < 3; s++)
        make_shards(sh[s], splits[s].rows, splits[s].P, D, N, rate, seed, 1);
    int64_t *kept[3], *prev = malloc(sizeof(int64_t) * C);
    int64_t n_prev = 0;
    for (int s = 0; s < 3; s++) kept[s] = malloc(sizeof(int64_t) * C);
    uint8_t *want = malloc(C), *in_prev = calloc(C, 1);
    double sum_n = 0, sum_e = 0, worst_z = 0;
    for (int64_t step = 0; step < STEPS; step++) {
        int64_t labels[N];
        make_labels(labels, N, C, step, 17);
        int64_t n[3];
        for (int s = 0; s < 3; s++) {
            for (int p = 0; p < splits[s].P; p++) classifier_select(&sh[s][p], labels, N, step);
            n[s] = kept_global(sh[s], splits[s].P, kept[s]);
        }
        EXPECT(n[1] == n[0] && n[2] == n[0] &&
                   memcmp(kept[1], kept[0], sizeof(int64_t) * n[0]) == 0 &&
                   memcmp(kept[2], kept[0], sizeof(int64_t) * n[0]) == 0,
               "step %lld: kept classes differ between 1, 2 and 3 shards (%lld, %lld, %lld)",
               (long long)step, (long long)n[0], (long long)n[1], (long long)n[2]);
        /* the rule itself, from rng.h directly */
        int pos = 0;
        memset(want, 0, C);
        for (int i = 0; i < N; i++) pos += !want[labels[i]], want[labels[i]] = 1;
        int64_t nwant = 0, mismatch = 0;
        for (int64_t c = 0; c < C; c++) {
            want[c] |=
                rng_uniform(rng_hash4(seed, RNG_SAMPLING, (uint64_t)step, (uint64_t)c)) < rate;
            nwant += want[c];
        }
        for (int64_t j = 0; j < n[0]; j++) {
            mismatch += !want[kept[0][j]];
            EXPECT(j == 0 || kept[0][j] > kept[0][j - 1], "kept classes not strictly increasing");
        }
        EXPECT(mismatch == 0 && nwant == n[0],
               "step %lld: %lld kept, the rule keeps %lld; %lld kept against the rule",
               (long long)step, (long long)n[0], (long long)nwant, (long long)mismatch);
        int missing = 0;
        for (int i = 0; i < N; i++) {
            int64_t lo = 0, hi = n[0];
            while (lo < hi) {
                const int64_t mid = (lo + hi) / 2;
                if (kept[0][mid] < labels[i])
                    lo = mid + 1;
                else
                    hi = mid;
            }
            missing += lo == n[0] || kept[0][lo] != labels[i];
        }
        EXPECT(missing == 0, "step %lld: %d positives not kept", (long long)step, missing);
        /* size: pos + rate (C - pos) in expectation, sd sqrt(rate (1 - rate) (C - pos)) */
        const double e = pos + rate * (C - pos), sd = sqrt(rate * (1 - rate) * (C - pos));
        const double z = fabs((double)n[0] - e) / sd;
        worst_z = fmax(worst_z, z);
        EXPECT(z < 5, "step %lld: %lld kept, expected %.1f +- %.1f", (long long)step,
               (long long)n[0], e, sd);
        sum_n += (double)n[0], sum_e += e;
        /* differs between steps; negatives overlap about rate */
        if (step > 0) {
            int64_t both = 0;
            for (int64_t j = 0; j < n[0]; j++) both += in_prev[kept[0][j]];
            const double overlap = (double)both / (double)n[0];
            EXPECT(n[0] != n_prev || memcmp(kept[0], prev, sizeof(int64_t) * n_prev) != 0,
                   "steps %lld and %lld keep the same classes", (long long)step - 1,
                   (long long)step);
            EXPECT(overlap > 0.5 * rate && overlap < 2 * rate,
                   "step %lld: %.3f of the kept classes were kept the step before", (long long)step,
                   overlap);
        }
        for (int64_t j = 0; j < n_prev; j++) in_prev[prev[j]] = 0;
        for (int64_t j = 0; j < n[0]; j++) in_prev[kept[0][j]] = 1;
        memcpy(prev, kept[0], sizeof(int64_t) * n[0]);
        n_prev = n[0];
    }
    EXPECT(fabs(sum_n - sum_e) / sum_e < 0.02, "mean kept %.1f, expected %.1f", sum_n / STEPS,
           sum_e / STEPS);
    fprintf(stderr,
            "  selection, %d rows at rate %.1f: %.1f kept per step (expected %.1f, "
            "worst |z| %.2f), same for 1, 2, 3 shards\n",
            C, (double)rate, sum_n / STEPS, sum_e / STEPS, worst_z);

    /* deterministic from the seed; another seed, other classes */
    int64_t labels[N];
    make_labels(labels, N, C, 3, 17);
    ClassifierShard same, other;
    const int64_t rows[1] = {C};
    make_shards(&same, rows, 1, D, N, rate, seed, 1);
    make_shards(&other, rows, 1, D, N, rate, seed + 1, 1);
    classifier_select(&sh[0][0], labels, N, 3);
    classifier_select(&same, labels, N, 3);
    classifier_select(&other, labels, N, 3);
    EXPECT(same.n_keep == sh[0][0].n_keep &&
               memcmp(same.keep, sh[0][0].keep, sizeof(int32_t) * (size_t)same.n_keep) == 0,
           "the same seed and step keep other classes");
    EXPECT(other.n_keep != same.n_keep ||
               memcmp(other.keep, same.keep, sizeof(int32_t) * (size_t)same.n_keep) != 0,
           "another seed keeps the same classes");
    /* back to rate 1: every row again */
    char err[256];
    EXPECT(classifier_set_sampling(&same, 1.0f, seed, err, sizeof err) == 0, "%s", err);
    classifier_select(&same, labels, N, 4);
    int identity = same.n_keep == C;
    for (int64_t j = 0; identity && j < C; j++) identity = same.keep[j] == j;
    EXPECT(identity, "rate 1 after sampling: %lld rows kept", (long long)same.n_keep);
    /* rates outside (0, 1] are refused and change nothing */
    const float bad[] = {0.0f, -0.1f, 1.0001f, NAN, INFINITY};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        err[0] = 0;
        EXPECT(classifier_set_sampling(&same, bad[k], 1, err, sizeof err) == -1 &&
                   strstr(err, "sample_rate") && same.sample_rate == 1.0f &&
                   same.sample_seed == seed,
               "sample rate %g accepted (or the shard changed): '%s'", (double)bad[k], err);
    }
    EXPECT(sampling_check_rate(1e-6f, NULL, 0) == 0 && sampling_check_rate(1.0f, NULL, 0) == 0,
           "valid rates refused");
    EXPECT(sampling_check_rate(0.0f, NULL, 0) == -1, "no error buffer: still -1");

    classifier_destroy(&same);
    classifier_destroy(&other);
    for (int s = 0; s < 3; s++) {
        for (int p = 0; p < splits[s].P; p++) classifier_destroy(&sh[s][p]);
        free(kept[s]);
    }
    free(prev), free(want), free(in_prev);
}

/* ---- (3) unsampled rows and their momentum are not touched ---- */

static void test_untouched(void) {
    enum { N = 16, D = 24, C = 500 };
    const Margin m = CM(32, 1, 0.5f, 0, MARGIN_FALLBACK_THMM, MARGIN_NORM_BOTH);
    ClassifierShard sh;
    const int64_t rows[1] = {C};
    make_shards(&sh, rows, 1, D, N, 0.1f, 3, 1);
    const size_t cd = (size_t)C * D;
    /* momentum as after earlier steps; dw holds a sentinel where no row is kept */
    test_fill_uniform(sh.momentum, cd, -1e-3f, 1e-3f, 7);
    float *w0 = malloc(sizeof(float) * cd), *v0 = malloc(sizeof(float) * cd);
    float *dw = malloc(sizeof(float) * cd);
    for (size_t k = 0; k < cd; k++) dw[k] = -12345.0f;
    memcpy(w0, sh.weight, sizeof(float) * cd);
    memcpy(v0, sh.momentum, sizeof(float) * cd);
    float x[N * D], loss[N], dx[N * D];
    int64_t labels[N];
    test_fill_uniform(x, N * D, -1, 1, 8);
    make_labels(labels, N, C, 0, 9);
    sharded_step(&sh, 1, loss, dx, dw, x, labels, N, 0, &m, 1);
    uint8_t *kept = calloc(C, 1);
    for (int64_t j = 0; j < sh.n_keep; j++) kept[sh.keep[j]] = 1;
    int64_t touched = 0, unmoved = 0, sgd_bad = 0;
    for (int64_t r = 0; r < C; r++) {
        const size_t o = (size_t)r * D;
        if (!kept[r]) {
            touched += memcmp(sh.weight + o, w0 + o, sizeof(float) * D) != 0 ||
                       memcmp(sh.momentum + o, v0 + o, sizeof(float) * D) != 0;
            continue;
        }
        unmoved += memcmp(sh.weight + o, w0 + o, sizeof(float) * D) == 0;
        for (int d = 0; d < D; d++) {
            const double v = MOM * (double)v0[o + d] + dw[o + d] + WD * (double)w0[o + d];
            const double w = w0[o + d] - LR * v;
            const double g = dw[o + d],
                         vs = MOM * fabs(v0[o + d]) + fabs(g) + WD * fabs(w0[o + d]);
            sgd_bad += fabs(sh.momentum[o + d] - v) > 1e-6 * vs ||
                       fabs(sh.weight[o + d] - w) > 1e-6 * (fabs(w0[o + d]) + LR * vs);
        }
    }
    EXPECT(touched == 0, "%lld unsampled rows changed (weight or momentum)",
           (long long)touched);
    EXPECT(unmoved == 0, "%lld kept rows did not move", (long long)unmoved);
    EXPECT(sgd_bad == 0, "%lld kept weights differ from the SGD formula", (long long)sgd_bad);
    fprintf(stderr,
            "  one step at rate 0.1 kept %lld of %d rows; the other %lld rows, their "
            "momentum bit-unchanged\n",
            (long long)sh.n_keep, C, (long long)(C - sh.n_keep));
    classifier_destroy(&sh);

    /* a shard that keeps nothing (no positive, tiny rate): neutral stats, zero
     * dx, no update */
    ClassifierShard e;
    char err[256];
    EXPECT(classifier_create(&e, 1000, 3, D, N, 42, err, sizeof err) == 0, "%s", err);
    EXPECT(classifier_set_sampling(&e, 1e-6f, 3, err, sizeof err) == 0, "%s", err);
    memcpy(w0, e.weight, sizeof(float) * 3 * D);
    classifier_select(&e, labels, N, 0);
    EXPECT(e.n_keep == 0, "rate 1e-6 without positives kept %lld rows", (long long)e.n_keep);
    classifier_forward(&e, x, labels, N, &m);
    int neutral = 1;
    for (int i = 0; i < N; i++)
        neutral &= e.stats[i].max == -INFINITY && e.stats[i].sum == 0 && e.stats[i].target == 0;
    EXPECT(neutral, "a shard without kept rows gave non-neutral stats");
    SoftmaxStats comb[N];
    for (int i = 0; i < N; i++) comb[i] = (SoftmaxStats){1, 1, 0};
    test_fill_uniform(dx, N * D, 1, 2, 1);
    classifier_backward(&e, dx, comb, labels, &m);
    classifier_sgd_step(&e, LR, MOM, WD);
    int zero = 1;
    for (int k = 0; k < N * D; k++) zero &= dx[k] == 0;
    EXPECT(zero, "a shard without kept rows gave a non-zero dx");
    EXPECT(memcmp(e.weight, w0, sizeof(float) * 3 * D) == 0, "a shard without kept rows moved");
    classifier_destroy(&e);
    free(w0), free(v0), free(dw), free(kept);
}

/* ---- (3b) the update applies classifier_weight_grad's gradient ---- */

/* With lr 1, momentum 0 and no weight decay the step is w -= g, v = g: the
 * moved rows must be exactly w0 - g for the g that classifier_weight_grad
 * gives, over two blocks of kept rows, and a sub-range of kept rows must give
 * the same rows bit for bit as the whole range (the blocks fall elsewhere). */
static void test_update_is_grad(void) {
    enum { N = 16, D = 24, C = 3000 };
    const struct {
        const char *name;
        Margin m;
        float wscale;
    } cases[] = {
        {"arcface", CM(32, 1, 0.5f, 0, MARGIN_FALLBACK_THMM, MARGIN_NORM_BOTH), 1},
        {"cosface raw x", CM(0, 1, 0, 0.35f, MARGIN_FALLBACK_THMM, MARGIN_NORM_WEIGHTS), 1},
        {"softmax raw x, raw W", CM(0, 1, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_NORM_NONE), 30},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        ClassifierShard sh;
        const int64_t rows[1] = {C};
        const size_t cd = (size_t)C * D;
        make_shards(&sh, rows, 1, D, N, 0.5f, 13, cases[ci].wscale);
        float x[N * D], dx[N * D];
        int64_t labels[N];
        SoftmaxStats st[N];
        test_fill_uniform(x, N * D, -1, 1, 40);
        make_labels(labels, N, C, 0, 41);
        classifier_select(&sh, labels, N, 0);
        classifier_forward(&sh, x, labels, N, &cases[ci].m);
        memcpy(st, sh.stats, sizeof st);
        classifier_backward(&sh, dx, st, labels, &cases[ci].m);
        const int64_t K = sh.n_keep, first = 700, count = K - 900;
        EXPECT(K > CLASSIFIER_BLOCK_ROWS + 100 && K < C, "%s: %lld of %d rows kept, want two blocks",
               cases[ci].name, (long long)K, C);
        float *g = malloc(sizeof(float) * cd), *part = malloc(sizeof(float) * cd);
        float *w0 = malloc(sizeof(float) * cd), *v0 = malloc(sizeof(float) * cd);
        classifier_weight_grad(&sh, 0, K, g);
        classifier_weight_grad(&sh, first, count, part);
        EXPECT(memcmp(part, g + first * D, sizeof(float) * (size_t)count * D) == 0,
               "%s: the gradient of kept rows [%lld, %lld) depends on the range asked for",
               cases[ci].name, (long long)first, (long long)(first + count));
        test_fill_uniform(sh.momentum, cd, -1, 1, 42);
        memcpy(w0, sh.weight, sizeof(float) * cd);
        memcpy(v0, sh.momentum, sizeof(float) * cd);
        classifier_sgd_step(&sh, 1.0f, 0.0f, 0.0f);
        int64_t bad = 0, untouched_bad = 0, nonzero = 0;
        for (int64_t r = 0, j = 0; r < C; r++) {
            const size_t o = (size_t)r * D;
            if (j < K && sh.keep[j] == r) {
                for (int d = 0; d < D; d++) {
                    const float gj = g[(size_t)j * D + d];
                    bad += sh.weight[o + d] != w0[o + d] - gj || sh.momentum[o + d] != gj;
                    nonzero += gj != 0;
                }
                j++;
            } else {
                untouched_bad += memcmp(sh.weight + o, w0 + o, sizeof(float) * D) != 0 ||
                                 memcmp(sh.momentum + o, v0 + o, sizeof(float) * D) != 0;
            }
        }
        EXPECT(bad == 0 && nonzero > 0,
               "%s: %lld kept weights are not w0 - g of classifier_weight_grad (%lld non-zero g)",
               cases[ci].name, (long long)bad, (long long)nonzero);
        EXPECT(untouched_bad == 0, "%s: %lld unsampled rows changed", cases[ci].name,
               (long long)untouched_bad);
        fprintf(stderr, "  the step applies classifier_weight_grad exactly: %-22s K=%lld of %d\n",
                cases[ci].name, (long long)K, C);
        free(g), free(part), free(w0), free(v0);
        classifier_destroy(&sh);
    }
}

/* ---- (4) gradients of the partial softmax against finite differences ---- */

/* Target function per unit scale in double (m1 = 1: ArcMarginProduct's
 * expansion; no fallback is hit by these samples). */
static double ref_unit(const Margin *m, double c) {
    if (m->norm == MARGIN_NORM_NONE) return c;
    c = fmin(1.0, fmax(-1.0, c));
    return c * cos(m->m2) - sqrt(1.0 - c * c) * sin(m->m2) - m->m3;
}

typedef struct {
    int N, D, K;
    double *x, *w;      /* (N, D), the kept rows (K, D) */
    const int64_t *cls; /* (K) their global ids */
    const int64_t *labels;
} PartialProblem;

/* Mean over the samples of the softmax cross entropy over the kept classes only. */
static double ref_partial_loss(const PartialProblem *p, const Margin *m) {
    double total = 0, z[MAXC];
    const int D = p->D;
    for (int i = 0; i < p->N; i++) {
        const double *xi = p->x + i * D;
        double nx = 0;
        for (int d = 0; d < D; d++) nx += xi[d] * xi[d];
        nx = sqrt(nx);
        const double k = m->norm == MARGIN_NORM_BOTH      ? m->s
                         : m->norm == MARGIN_NORM_WEIGHTS ? nx
                                                          : 1;
        double mx = -INFINITY, zy = NAN;
        for (int c = 0; c < p->K; c++) {
            const double *wc = p->w + c * D;
            double nw = 0, dot = 0;
            for (int d = 0; d < D; d++) nw += wc[d] * wc[d], dot += xi[d] * wc[d];
            const double u = m->norm == MARGIN_NORM_NONE ? dot : dot / (nx * sqrt(nw));
            z[c] = k * (p->cls[c] == p->labels[i] ? ref_unit(m, u) : u);
            if (p->cls[c] == p->labels[i]) zy = z[c];
            mx = fmax(mx, z[c]);
        }
        double sum = 0;
        for (int c = 0; c < p->K; c++) sum += exp(z[c] - mx);
        total += log(sum) + mx - zy;
    }
    return total / p->N;
}

static void grad_check_partial(const char *name, Margin m, float xscale, float wscale) {
    enum { N = 8, D = 16, C = 60 };
    ClassifierShard sh;
    const int64_t rows[1] = {C};
    make_shards(&sh, rows, 1, D, N, 0.3f, 11, wscale);
    int64_t labels[N];
    for (int i = 0; i < N; i++) labels[i] = (i * 7 + 3) % C;
    float x[N * D], dx[N * D], loss[N];
    test_fill_uniform(x, N * D, -xscale, xscale, 12);
    float *dw = malloc(sizeof(float) * C * D);
    sh.block_rows = 8; /* several blocks over the kept rows */
    sharded_step(&sh, 1, loss, dx, dw, x, labels, N, 5, &m, 0);
    const int K = (int)sh.n_keep;
    EXPECT(K > N && K < C, "%s: %d of %d classes kept", name, K, C);
    int64_t cls[MAXC];
    PartialProblem p = {
        N, D, K, malloc(sizeof(double) * N * D), malloc(sizeof(double) * K * D), cls, labels};
    for (int k = 0; k < N * D; k++) p.x[k] = x[k];
    for (int j = 0; j < K; j++) {
        cls[j] = sh.keep[j];
        for (int d = 0; d < D; d++) p.w[j * D + d] = sh.weight[(size_t)sh.keep[j] * D + d];
    }
    double mean = 0;
    for (int i = 0; i < N; i++) mean += loss[i] / N;
    const double ref = ref_partial_loss(&p, &m);
    EXPECT(fabs(mean - ref) <= 1e-5 * (1 + ref), "%s: partial loss %.9g, reference %.9g", name,
           mean, ref);
    const int nx = N * D, n = N * D + K * D;
    double *num = malloc(sizeof(double) * n), *ana = malloc(sizeof(double) * n), maxg = 0;
    for (int k = 0; k < n; k++) {
        const int is_x = k < nx, row = is_x ? k / D : (k - nx) / D;
        double *v = is_x ? &p.x[k] : &p.w[k - nx], *base = is_x ? p.x + row * D : p.w + row * D;
        double nrm = 0;
        for (int d = 0; d < D; d++) nrm += base[d] * base[d];
        const double h = 1e-5 * sqrt(nrm), v0 = *v;
        *v = v0 + h;
        const double lp = ref_partial_loss(&p, &m);
        *v = v0 - h;
        const double lm = ref_partial_loss(&p, &m);
        *v = v0;
        num[k] = (lp - lm) / (2 * h);
        ana[k] = is_x ? dx[k] : dw[(size_t)sh.keep[row] * D + (size_t)(k - nx) % D];
        maxg = fmax(maxg, fabs(num[k]));
    }
    double worst = 0;
    int at = 0;
    for (int k = 0; k < n; k++) {
        const double e = test_grad_rel_err(ana[k], num[k], 1e-3 * maxg);
        if (!(e <= worst)) worst = e, at = k;
    }
    EXPECT(worst < 1e-3, "%s: gradient rel err %.3g at %s[%d] (analytic %.6g, numeric %.6g)", name,
           worst, at < nx ? "x" : "w", at < nx ? at : at - nx, ana[at], num[at]);
    fprintf(stderr, "  partial softmax %-26s K=%d of %d  grad err %.1e\n", name, K, C, worst);
    free(num), free(ana), free(p.x), free(p.w), free(dw);
    classifier_destroy(&sh);
}

static void test_gradients(void) {
    grad_check_partial("arcface s=16", CM(16, 1, 0.5f, 0, MARGIN_FALLBACK_NONE, MARGIN_NORM_BOTH),
                       1, 1);
    grad_check_partial("cosface raw x",
                       CM(0, 1, 0, 0.35f, MARGIN_FALLBACK_NONE, MARGIN_NORM_WEIGHTS), 1, 1);
    grad_check_partial("softmax raw x, raw W",
                       CM(0, 1, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_NORM_NONE), 1, 30);
}

/* ---- (5) P = 1 and P = 3 shards at rate 0.3 ---- */

static void test_sharding(const char *name, Margin m, float wscale) {
    enum { N = 8, D = 20, C = 70, STEPS = 3 };
    const int64_t one[1] = {C}, three[3] = {30, 25, 15};
    ClassifierShard a, b[3];
    make_shards(&a, one, 1, D, N, 0.3f, 21, wscale);
    make_shards(b, three, 3, D, N, 0.3f, 21, wscale);
    a.block_rows = 8; /* P = 1 in several blocks, P = 3 in one per shard */
    double worst_loss = 0, worst_dx = 0, worst_w = 0;
    for (int step = 0; step < STEPS; step++) {
        float x[N * D], loss_a[N], loss_b[N], dx_a[N * D], dx_b[N * D];
        int64_t labels[N], ka[C], kb[C];
        test_fill_uniform(x, N * D, -1, 1, 30 + (uint64_t)step);
        make_labels(labels, N, C, step, 31);
        sharded_step(&a, 1, loss_a, dx_a, NULL, x, labels, N, step, &m, 1);
        sharded_step(b, 3, loss_b, dx_b, NULL, x, labels, N, step, &m, 1);
        const int64_t na = kept_global(&a, 1, ka), nb = kept_global(b, 3, kb);
        EXPECT(na == nb && memcmp(ka, kb, sizeof(int64_t) * na) == 0 && na < C,
               "%s step %d: P=1 keeps %lld classes, P=3 %lld (of %d)", name, step, (long long)na,
               (long long)nb, C);
        float wb[C * D], vb[C * D];
        for (int p = 0, off = 0; p < 3; off += (int)three[p] * D, p++) {
            memcpy(wb + off, b[p].weight, sizeof(float) * three[p] * D);
            memcpy(vb + off, b[p].momentum, sizeof(float) * three[p] * D);
        }
        worst_loss = fmax(worst_loss, rel_to_max(loss_b, loss_a, N));
        worst_dx = fmax(worst_dx, rel_to_max(dx_b, dx_a, N * D));
        worst_w =
            fmax(worst_w, fmax(rel_to_max(wb, a.weight, C * D), rel_to_max(vb, a.momentum, C * D)));
    }
    EXPECT(worst_loss < 1e-5 && worst_dx < 1e-5 && worst_w < 1e-5,
           "%s: P=3 differs from P=1: loss %.3g, dx %.3g, weights/momentum %.3g", name, worst_loss,
           worst_dx, worst_w);
    fprintf(stderr, "  P=1 vs P=3 at rate 0.3, %d steps, %-20s loss %.1e dx %.1e w,v %.1e\n", STEPS,
            name, worst_loss, worst_dx, worst_w);
    classifier_destroy(&a);
    for (int p = 0; p < 3; p++) classifier_destroy(&b[p]);
}

/* ---- (6) the thread count changes no bit ---- */

/* The same steps on two shards, one run with 1 compute thread and one with 3
 * (OpenBLAS at one thread in both, as blas_setup runs it): stats, loss, dx,
 * the weight gradient, weights and momentum must be memcmp-equal. The cases
 * span several chunks of several blocks (blocks of 16 rows), 64 chunks of
 * one or two blocks (40000 rows), gathers (sampled) and rows used in place
 * (raw rows, every row kept), and every normalisation; the sampled 40000 rows
 * are also selected in two pieces with 3 threads, in one with 1. */
static void test_threads(void) {
    enum { N = 16, STEPS = 2 };
    const struct {
        const char *name;
        Margin m;
        float wscale, rate;
        int64_t rows, block;
        int D;
    } cases[] = {
        {"arcface", CM(32, 1, 0.5f, 0, MARGIN_FALLBACK_THMM, MARGIN_NORM_BOTH), 1, 1.0f, 3000, 16,
         24},
        {"arcface", CM(32, 1, 0.5f, 0, MARGIN_FALLBACK_THMM, MARGIN_NORM_BOTH), 1, 0.3f, 3000, 16,
         24},
        {"cosface raw x", CM(0, 1, 0, 0.35f, MARGIN_FALLBACK_THMM, MARGIN_NORM_WEIGHTS), 1, 0.3f,
         3000, 16, 24},
        {"softmax raw x, raw W", CM(0, 1, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_NORM_NONE), 30, 0.3f,
         3000, 16, 24},
        {"softmax raw x, raw W", CM(0, 1, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_NORM_NONE), 30, 1.0f,
         3000, CLASSIFIER_BLOCK_ROWS, 24},
        {"arcface", CM(32, 1, 0.5f, 0, MARGIN_FALLBACK_THMM, MARGIN_NORM_BOTH), 1, 1.0f, 40000,
         CLASSIFIER_BLOCK_ROWS, 16},
        {"cosface raw x", CM(0, 1, 0, 0.35f, MARGIN_FALLBACK_THMM, MARGIN_NORM_WEIGHTS), 1, 0.5f,
         40000, CLASSIFIER_BLOCK_ROWS, 16},
    };
    const int threads[2] = {1, 3};
    openblas_set_num_threads(1);
    parallel_set_threads(3); /* the shards get scratch for 3 */
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const int D = cases[ci].D;
        const int64_t rows[1] = {cases[ci].rows};
        const size_t cd = (size_t)cases[ci].rows * (size_t)D;
        ClassifierShard sh[2];
        float *dw[2], loss[2][N], dx[2][N * 64];
        for (int t = 0; t < 2; t++) {
            make_shards(&sh[t], rows, 1, D, N, cases[ci].rate, 8, cases[ci].wscale);
            sh[t].block_rows = cases[ci].block;
            dw[t] = calloc(cd, sizeof(float));
        }
        int same = 1;
        for (int step = 0; step < STEPS; step++) {
            float x[N * 64];
            int64_t labels[N];
            test_fill_uniform(x, (size_t)N * D, -1, 1, 60 + (uint64_t)step);
            make_labels(labels, N, cases[ci].rows, step, 61);
            for (int t = 0; t < 2; t++) {
                parallel_set_threads(threads[t]);
                sharded_step(&sh[t], 1, loss[t], dx[t], dw[t], x, labels, N, step, &cases[ci].m, 1);
            }
            const size_t nk = (size_t)sh[0].n_keep;
            const int eq = sh[0].n_keep == sh[1].n_keep &&
                           memcmp(sh[0].keep, sh[1].keep, sizeof(int32_t) * nk) == 0 &&
                           memcmp(sh[0].stats, sh[1].stats, sizeof(SoftmaxStats) * N) == 0 &&
                           memcmp(loss[0], loss[1], sizeof loss[0]) == 0 &&
                           memcmp(dx[0], dx[1], sizeof(float) * N * D) == 0 &&
                           memcmp(dw[0], dw[1], sizeof(float) * cd) == 0 &&
                           memcmp(sh[0].weight, sh[1].weight, sizeof(float) * cd) == 0 &&
                           memcmp(sh[0].momentum, sh[1].momentum, sizeof(float) * cd) == 0;
            EXPECT(eq,
                   "%s, %lld rows at rate %.1f in blocks of %lld, step %d: 1 and 3 threads differ "
                   "(loss %.3g, dx %.3g, dw %.3g, w %.3g, v %.3g apart)",
                   cases[ci].name, (long long)cases[ci].rows, (double)cases[ci].rate,
                   (long long)cases[ci].block, step, rel_to_max(loss[1], loss[0], N),
                   rel_to_max(dx[1], dx[0], (size_t)N * D), rel_to_max(dw[1], dw[0], cd),
                   rel_to_max(sh[1].weight, sh[0].weight, cd),
                   rel_to_max(sh[1].momentum, sh[0].momentum, cd));
            same &= eq;
        }
        const int64_t K = sh[0].n_keep, blocks = (K + cases[ci].block - 1) / cases[ci].block;
        fprintf(stderr,
                "  1 vs 3 threads, %d steps, %-22s %5lld rows, K=%5lld in %4lld blocks, "
                "%2lld chunks: %s\n",
                STEPS, cases[ci].name, (long long)cases[ci].rows, (long long)K, (long long)blocks,
                (long long)(blocks < sh[0].chunks ? blocks : sh[0].chunks),
                same ? "bit-identical" : "DIFFERENT");
        for (int t = 0; t < 2; t++) {
            classifier_destroy(&sh[t]);
            free(dw[t]);
        }
    }
    parallel_set_threads(1);
}

int main(void) {
    fprintf(stderr, "sample rate 1:\n");
    test_rate_one();
    fprintf(stderr, "kept classes:\n");
    test_selection();
    test_untouched();
    test_update_is_grad();
    fprintf(stderr, "gradients vs finite differences of the partial softmax:\n");
    test_gradients();
    fprintf(stderr, "sharding:\n");
    test_sharding("arcface thmm", CM(32, 1, 0.5f, 0, MARGIN_FALLBACK_THMM, MARGIN_NORM_BOTH), 1);
    test_sharding("cosface raw x", CM(0, 1, 0, 0.35f, MARGIN_FALLBACK_THMM, MARGIN_NORM_WEIGHTS),
                  1);
    test_sharding("softmax raw x, raw W", CM(0, 1, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_NORM_NONE),
                  30);
    fprintf(stderr, "threads:\n");
    test_threads();
    return test_finish("test_partial_fc");
}
