/* test_margin.c -- margins, sharded softmax and the classifier shard against a
 * double-precision reference: finite-difference gradients through the whole
 * classifier, sharding invariance, hand-computed margin values, SGD, init. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "classifier.h"
#include "margin.h"
#include "rng.h"
#include "testutil.h"

/* Sizes of the small problems: D = 20 and C = 37 or 70 take both the 16-wide
 * blocks and the scalar tails of the row loops. */
#define MAXC 128
#define MAXD 64

#define ARC(s_, fb_, gr_) ((Margin){(s_), 1.0f, 0.5f, 0.0f, (fb_), (gr_)})

/* ---- double-precision reference: the whole loss, written independently ---- */

/* Target logit in double. For m1 = 1 it uses ArcMarginProduct's expansion
 * cos(theta + m2) = c cos m2 - sin(theta) sin m2 rather than acos. */
static double ref_target(const Margin *m, double c) {
    const double s = m->s, m1 = m->m1, m2 = m->m2, m3 = m->m3;
    c = fmin(1.0, fmax(-1.0, c));
    if (m->fallback == MARGIN_FALLBACK_EASY && c <= 0) return s * (c - m3);
    if (m->fallback == MARGIN_FALLBACK_THMM && c <= cos(M_PI - m2))
        return s * (c - sin(M_PI - m2) * m2 - m3);
    if (m1 == 1.0) return s * (c * cos(m2) - sqrt(1.0 - c * c) * sin(m2) - m3);
    return s * (cos(m1 * acos(c) + m2) - m3);
}

typedef struct {
    int N, D, C;
    double *x, *w; /* (N, D), (C, D) */
    const int64_t *labels;
} RefProblem;

static void ref_cosines(const RefProblem *p, int i, double *cosv /* (C) */) {
    const int D = p->D;
    double nx = 0;
    for (int d = 0; d < D; d++) nx += p->x[i * D + d] * p->x[i * D + d];
    nx = sqrt(nx);
    for (int c = 0; c < p->C; c++) {
        double nw = 0, dot = 0;
        for (int d = 0; d < D; d++) {
            nw += p->w[c * D + d] * p->w[c * D + d];
            dot += p->x[i * D + d] * p->w[c * D + d];
        }
        cosv[c] = dot / (nx * sqrt(nw));
    }
}

/* Mean loss; per-sample losses into loss_i when not NULL. With frozen (N) not
 * NULL the target logit is s * cos + frozen[i]: the straight-through surrogate,
 * whose gradient is the STRAIGHT mode's. */
static double ref_loss(const RefProblem *p, const Margin *m, const double *frozen, double *loss_i) {
    double total = 0, cosv[MAXC], z[MAXC];
    for (int i = 0; i < p->N; i++) {
        ref_cosines(p, i, cosv);
        const int64_t y = p->labels[i];
        double mx = -INFINITY;
        for (int c = 0; c < p->C; c++) {
            z[c] = m->s * cosv[c];
            if (c == y) z[c] = frozen ? m->s * cosv[c] + frozen[i] : ref_target(m, cosv[c]);
            mx = fmax(mx, z[c]);
        }
        double sum = 0;
        for (int c = 0; c < p->C; c++) sum += exp(z[c] - mx);
        const double l = log(sum) + mx - z[y];
        if (loss_i) loss_i[i] = l;
        total += l;
    }
    return total / p->N;
}

/* ---- helpers ---- */

/* max |a - b| / max |b|: an error relative to the size of the whole array. */
static double rel_to_max(const float *a, const float *b, size_t n) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        diff = d > diff || isnan(d) ? d : diff;
        scale = fmax(scale, fabs((double)b[i]));
    }
    return isnan(diff) ? INFINITY : diff / fmax(scale, 1e-30);
}

/* Places x_i at cosine targets[i] from its class row (in a random direction
 * otherwise), with norm in [0.5, 3): the test controls which margin branch
 * each sample takes and keeps it away from the branch boundaries. */
static void make_embeddings(float *x, const float *w, const int64_t *labels, const double *targets,
                            int N, int D, uint64_t seed) {
    double u[MAXD], wn[MAXD];
    for (int i = 0; i < N; i++) {
        const float *wy = w + labels[i] * D;
        double nw = 0, dot = 0, nu = 0;
        for (int d = 0; d < D; d++) nw += (double)wy[d] * wy[d];
        for (int d = 0; d < D; d++) wn[d] = wy[d] / sqrt(nw);
        for (int d = 0; d < D; d++) u[d] = rng_normal(rng_hash4(seed, (uint64_t)i, (uint64_t)d, 1));
        for (int d = 0; d < D; d++) dot += u[d] * wn[d];
        for (int d = 0; d < D; d++) u[d] -= dot * wn[d];
        for (int d = 0; d < D; d++) nu += u[d] * u[d];
        const double t = targets[i], r = 0.5 + 2.5 * rng_uniform(rng_hash4(seed, (uint64_t)i, 0, 2));
        for (int d = 0; d < D; d++)
            x[i * D + d] = (float)(r * (t * wn[d] + sqrt(1 - t * t) * u[d] / sqrt(nu)));
    }
}

/* One shard over all C classes: forward, stats as the combined stats, loss, backward. */
static void run_single(ClassifierShard *sh, float *loss, float *dx, const float *x,
                       const int64_t *labels, int N, const Margin *m) {
    SoftmaxStats st[64];
    classifier_forward(sh, x, labels, N, m);
    memcpy(st, sh->stats, (size_t)N * sizeof *st);
    margin_loss(loss, st, N);
    classifier_backward(sh, dx, st, labels, m);
}

/* ---- (1), (2): gradients through the whole classifier against finite differences ---- */

/* Compares the shard's d(mean loss)/dx and /dweight with central differences
 * of the double reference; returns the worst relative error (floor: 1e-3 of
 * the largest gradient). STRAIGHT mode is checked against the surrogate loss
 * whose target logit is s * cos + (margin offset frozen at the base point). */
static double grad_check(const char *name, Margin m, const double *targets, int N, int D, int C,
                         double tol) {
    ClassifierShard sh;
    char err[256];
    EXPECT(classifier_create(&sh, 0, C, D, N, 7, err, sizeof err) == 0, "%s", err);
    int64_t labels[64];
    for (int i = 0; i < N; i++) labels[i] = (i * 7 + 3) % C;
    float *x = malloc(sizeof(float) * N * D), *dx = malloc(sizeof(float) * N * D);
    float loss[64];
    make_embeddings(x, sh.weight, labels, targets, N, D, 11);
    run_single(&sh, loss, dx, x, labels, N, &m);

    RefProblem p = {N, D, C, malloc(sizeof(double) * N * D), malloc(sizeof(double) * C * D), labels};
    for (int k = 0; k < N * D; k++) p.x[k] = x[k];
    for (int k = 0; k < C * D; k++) p.w[k] = sh.weight[k];
    double frozen[64], ref_li[64], cosv[MAXC];
    for (int i = 0; i < N; i++) {
        ref_cosines(&p, i, cosv);
        const double c = cosv[labels[i]];
        EXPECT(fabs(c - targets[i]) < 1e-5, "%s: sample %d at cos %.6f, meant %.6f", name, i, c,
               targets[i]);
        frozen[i] = ref_target(&m, c) - m.s * c;
    }
    const double *fz = m.grad == MARGIN_GRAD_STRAIGHT ? frozen : NULL;
    ref_loss(&p, &m, NULL, ref_li);
    double loss_err = 0;
    for (int i = 0; i < N; i++) loss_err = fmax(loss_err, fabs(loss[i] - ref_li[i]) / (1 + ref_li[i]));
    EXPECT(loss_err < 1e-5, "%s: loss differs from the reference by %.3g", name, loss_err);

    /* numeric gradients: x then w */
    const int nx = N * D, n = N * D + C * D;
    double *num = malloc(sizeof(double) * n), *ana = malloc(sizeof(double) * n), maxg = 0;
    for (int k = 0; k < n; k++) {
        const int is_x = k < nx, row = is_x ? k / D : (k - nx) / D;
        double *v = is_x ? &p.x[k] : &p.w[k - nx], *base = is_x ? p.x + row * D : p.w + row * D;
        double nrm = 0;
        for (int d = 0; d < D; d++) nrm += base[d] * base[d];
        const double h = 1e-5 * sqrt(nrm), v0 = *v;
        *v = v0 + h;
        const double lp = ref_loss(&p, &m, fz, NULL);
        *v = v0 - h;
        const double lm = ref_loss(&p, &m, fz, NULL);
        *v = v0;
        num[k] = (lp - lm) / (2 * h);
        ana[k] = is_x ? dx[k] : sh.dweight[k - nx];
        maxg = fmax(maxg, fabs(num[k]));
    }
    double worst = 0;
    int at = 0;
    for (int k = 0; k < n; k++) {
        const double e = test_grad_rel_err(ana[k], num[k], 1e-3 * maxg);
        if (!(e <= worst)) worst = e, at = k;
    }
    EXPECT(worst < tol, "%s: gradient rel err %.3g at %s[%d] (analytic %.6g, numeric %.6g)", name,
           worst, at < nx ? "x" : "w", at < nx ? at : at - nx, ana[at], num[at]);
    fprintf(stderr, "  %-34s loss err %.1e  grad err %.1e (tol %.0e)\n", name, loss_err, worst, tol);
    free(num);
    free(ana);
    free(p.x);
    free(p.w);
    free(x);
    free(dx);
    classifier_destroy(&sh);
    return worst;
}

static void test_gradients(void) {
    enum { N = 8, D = 20, C = 37 };
    const Margin arc_thmm = ARC(16, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT);
    /* ArcFace th = cos(pi - 0.5) = -0.878: -0.95 and -0.97 take the fallback;
     * 0.995 is where the exact derivative gets large (~5 s). */
    const double t_arc[N] = {0.6, -0.95, 0.2, -0.3, 0.995, -0.97, 0.85, -0.6};
    /* Away from 0, where easy_margin switches branch. */
    const double t_easy[N] = {0.6, -0.95, 0.2, -0.3, 0.9, -0.1, 0.45, 0.1};
    /* SphereFace-like m1 = 2 (with THMM and m2 = 0.1 the switch is at cos(pi - 0.1) = -0.995) */
    const double t_m2[N] = {0.7, -0.5, 0.3, -0.2, 0.95, -0.9, 0.1, 0.5};
    fprintf(stderr, "gradients vs finite differences of the double reference:\n");
    grad_check("arcface exact thmm s=16", arc_thmm, t_arc, N, D, C, 1e-3);
    grad_check("arcface exact easy s=16", ARC(16, MARGIN_FALLBACK_EASY, MARGIN_GRAD_EXACT), t_easy,
               N, D, C, 1e-3);
    grad_check("arcface exact none s=16", ARC(16, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT), t_arc,
               N, D, C, 1e-3);
    grad_check("cosface m3=0.4 s=16",
               (Margin){16, 1, 0, 0.4f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT}, t_arc, N, D, C,
               1e-3);
    grad_check("normalised softmax s=12",
               (Margin){12, 1, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT}, t_arc, N, D, C, 1e-3);
    grad_check("combined (1,0.3,0.2) thmm s=16",
               (Margin){16, 1, 0.3f, 0.2f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT}, t_arc, N, D, C,
               1e-3);
    grad_check("combined (2,0,0) none s=8",
               (Margin){8, 2, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT}, t_m2, N, D, C, 1e-3);
    grad_check("combined (2,0.1,0.1) thmm s=8",
               (Margin){8, 2, 0.1f, 0.1f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT}, t_m2, N, D, C,
               1e-3);
    grad_check("arcface exact thmm s=64", ARC(64, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT), t_arc,
               N, D, C, 2e-3);
    /* (2) straight-through against the frozen-offset surrogate */
    grad_check("arcface straight thmm s=16", ARC(16, MARGIN_FALLBACK_THMM, MARGIN_GRAD_STRAIGHT),
               t_arc, N, D, C, 1e-3);
    grad_check("arcface straight none s=16", ARC(16, MARGIN_FALLBACK_NONE, MARGIN_GRAD_STRAIGHT),
               t_arc, N, D, C, 1e-3);
    grad_check("combined (2,0,0) straight s=8",
               (Margin){8, 2, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_STRAIGHT}, t_m2, N, D, C,
               1e-3);

    /* The straight-through gradient really differs from the exact one for
     * ArcFace, and equals it where dz/dcos = s anyway (CosFace). */
    ClassifierShard sh;
    char err[256];
    EXPECT(classifier_create(&sh, 0, C, D, N, 7, err, sizeof err) == 0, "%s", err);
    int64_t labels[N];
    for (int i = 0; i < N; i++) labels[i] = (i * 7 + 3) % C;
    float x[N * D], dx_e[N * D], dx_s[N * D], loss_e[N], loss_s[N], dw_e[C * D];
    make_embeddings(x, sh.weight, labels, t_arc, N, D, 11);
    const Margin cos_e = {16, 1, 0, 0.4f, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT};
    const Margin cos_s = {16, 1, 0, 0.4f, MARGIN_FALLBACK_NONE, MARGIN_GRAD_STRAIGHT};
    run_single(&sh, loss_e, dx_e, x, labels, N, &cos_e);
    memcpy(dw_e, sh.dweight, sizeof dw_e);
    run_single(&sh, loss_s, dx_s, x, labels, N, &cos_s);
    EXPECT(memcmp(loss_e, loss_s, sizeof loss_e) == 0 && memcmp(dx_e, dx_s, sizeof dx_e) == 0 &&
               memcmp(dw_e, sh.dweight, sizeof dw_e) == 0,
           "cosface: straight and exact gradients should be identical");
    const Margin arc_s = ARC(16, MARGIN_FALLBACK_THMM, MARGIN_GRAD_STRAIGHT);
    run_single(&sh, loss_e, dx_e, x, labels, N, &arc_thmm);
    run_single(&sh, loss_s, dx_s, x, labels, N, &arc_s);
    EXPECT(memcmp(loss_e, loss_s, sizeof loss_e) == 0, "arcface: the gradient mode changed the loss");
    EXPECT(rel_to_max(dx_s, dx_e, N * D) > 1e-2, "arcface: straight gradient equals the exact one");
    classifier_destroy(&sh);
}

/* ---- (3), (6): sharding invariance ---- */

typedef struct {
    int P;
    int64_t rows[5];
} Split;

static void test_sharding(void) {
    enum { N = 8, D = 20, C = 70 };
    /* Labels avoid [20, 36), which P = 5 gives to one shard; P = 5 also has an
     * empty shard. 70 rows make two blocks of the dweight pass. */
    const int64_t labels[N] = {0, 5, 19, 40, 69, 52, 36, 3};
    const Split splits[] = {{1, {70}}, {2, {35, 35}}, {3, {30, 25, 15}}, {5, {20, 0, 16, 33, 1}}};
    const Margin m = ARC(32, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT);
    float x[N * D];
    test_fill_uniform(x, N * D, -1, 1, 5);
    float ref_loss_v[N], ref_dx[N * D], ref_w0[C * D], ref_dw[C * D], ref_w1[C * D];
    {
        /* push sample 1 into the fallback region: x close to -w_y */
        ClassifierShard sh;
        char err[256];
        EXPECT(classifier_create(&sh, 0, C, D, N, 42, err, sizeof err) == 0, "%s", err);
        for (int d = 0; d < D; d++)
            x[1 * D + d] = -30.0f * sh.weight[labels[1] * D + d] + 0.05f * x[1 * D + d];
        classifier_destroy(&sh);
    }
    for (size_t si = 0; si < sizeof splits / sizeof *splits; si++) {
        const Split *sp = &splits[si];
        ClassifierShard sh[5];
        int64_t start = 0;
        char err[256];
        float loss[N], loss_rev[N], dx[N * D], dx_p[N * D], w0[C * D], dw[C * D], w1[C * D];
        SoftmaxStats comb[N], comb_rev[N];
        for (int p = 0; p < sp->P; p++) {
            EXPECT(classifier_create(&sh[p], start, sp->rows[p], D, N, 42, err, sizeof err) == 0,
                   "%s", err);
            memcpy(w0 + start * D, sh[p].weight, sizeof(float) * sp->rows[p] * D);
            start += sp->rows[p];
            classifier_forward(&sh[p], x, labels, N, &m);
        }
        /* combine in shard order and in reverse; both must agree */
        memcpy(comb, sh[0].stats, sizeof comb);
        for (int p = 1; p < sp->P; p++) margin_stats_combine(comb, sh[p].stats, N);
        memcpy(comb_rev, sh[sp->P - 1].stats, sizeof comb_rev);
        for (int p = sp->P - 2; p >= 0; p--) margin_stats_combine(comb_rev, sh[p].stats, N);
        margin_loss(loss, comb, N);
        margin_loss(loss_rev, comb_rev, N);
        memset(dx, 0, sizeof dx);
        start = 0;
        for (int p = 0; p < sp->P; p++) {
            classifier_backward(&sh[p], dx_p, comb, labels, &m);
            for (int k = 0; k < N * D; k++) dx[k] += dx_p[k];
            memcpy(dw + start * D, sh[p].dweight, sizeof(float) * sp->rows[p] * D);
            classifier_sgd_step(&sh[p], 0.1f, 0.9f, 5e-4f);
            memcpy(w1 + start * D, sh[p].weight, sizeof(float) * sp->rows[p] * D);
            start += sp->rows[p];
        }
        int finite = 1;
        for (int i = 0; i < N; i++) finite &= isfinite(loss[i]) && isfinite(loss_rev[i]);
        EXPECT(finite, "P=%d: non-finite loss", sp->P);
        if (sp->P == 1) {
            memcpy(ref_loss_v, loss, sizeof loss);
            memcpy(ref_dx, dx, sizeof dx);
            memcpy(ref_w0, w0, sizeof w0);
            memcpy(ref_dw, dw, sizeof dw);
            memcpy(ref_w1, w1, sizeof w1);
        } else {
            EXPECT(memcmp(w0, ref_w0, sizeof w0) == 0, "P=%d: initial weights depend on the split",
                   sp->P);
            EXPECT(rel_to_max(loss, ref_loss_v, N) < 1e-5, "P=%d: loss differs by %.3g", sp->P,
                   rel_to_max(loss, ref_loss_v, N));
            EXPECT(rel_to_max(dx, ref_dx, N * D) < 1e-5, "P=%d: summed dx differs by %.3g", sp->P,
                   rel_to_max(dx, ref_dx, N * D));
            EXPECT(rel_to_max(dw, ref_dw, C * D) < 1e-5, "P=%d: dweight differs by %.3g", sp->P,
                   rel_to_max(dw, ref_dw, C * D));
            EXPECT(rel_to_max(w1, ref_w1, C * D) < 1e-5, "P=%d: weights after SGD differ by %.3g",
                   sp->P, rel_to_max(w1, ref_w1, C * D));
        }
        EXPECT(rel_to_max(loss_rev, loss, N) < 1e-6, "P=%d: combine order changes the loss by %.3g",
               sp->P, rel_to_max(loss_rev, loss, N));
        for (int p = 0; p < sp->P; p++) classifier_destroy(&sh[p]);
    }

    /* An empty shard's stats are neutral, also as the first operand. */
    SoftmaxStats empty = {-INFINITY, 0, 0}, a = {3.5f, 2.25f, 1.5f}, t;
    t = empty;
    margin_stats_combine(&t, &empty, 1);
    EXPECT(t.max == -INFINITY && t.sum == 0 && t.target == 0, "empty+empty = (%g, %g, %g)",
           (double)t.max, (double)t.sum, (double)t.target);
    t = empty;
    margin_stats_combine(&t, &a, 1);
    EXPECT(t.max == a.max && t.sum == a.sum && t.target == a.target, "empty+a = (%g, %g, %g)",
           (double)t.max, (double)t.sum, (double)t.target);
    t = a;
    margin_stats_combine(&t, &empty, 1);
    EXPECT(t.max == a.max && t.sum == a.sum && t.target == a.target, "a+empty = (%g, %g, %g)",
           (double)t.max, (double)t.sum, (double)t.target);
    /* log-sum-exp merge: {3.5: 2.25} + {1: 4} -> max 3.5, sum 2.25 + 4 e^-2.5 */
    SoftmaxStats b = {1.0f, 4.0f, 0.0f};
    t = a;
    margin_stats_combine(&t, &b, 1);
    EXPECT_NEAR(t.sum, 2.25 + 4 * exp(-2.5), 1e-6);
    EXPECT(t.max == 3.5f && t.target == 1.5f, "a+b max %g target %g", (double)t.max,
           (double)t.target);
}

/* ---- (4): margin_target_logit against hand-computed values ---- */

static void expect_logit(const Margin *m, float c, double z_want, double dz_want, const char *what) {
    float dz;
    const float z = margin_target_logit(m, c, &dz);
    EXPECT(fabs(z - z_want) <= 2e-6 * fmax(1, fabs(z_want)), "%s: z = %.9g, want %.9g", what,
           (double)z, z_want);
    EXPECT(fabs(dz - dz_want) <= 2e-6 * fmax(1, fabs(dz_want)), "%s: dz/dcos = %.9g, want %.9g",
           what, (double)dz, dz_want);
}

static void test_target_logit(void) {
    const Margin arc = ARC(64, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT);
    /* theta = 60 deg, m = 0.5 rad = 28.648 deg: 64 cos(88.648 deg) = 64 * 0.0235965;
     * dz/dcos = 64 sin(88.648 deg) / sin(60 deg) = 64 * 0.999722 / 0.866025. */
    expect_logit(&arc, 0.5f, 1.5101814586, 73.880257642, "arcface 60 deg");
    /* cosface: 64 (0.5 - 0.35) */
    expect_logit(&(Margin){64, 1, 0, 0.35f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT}, 0.5f, 9.6,
                 64, "cosface");
    /* combined (1, 0.3, 0.2): 64 (cos(60 deg + 17.189 deg) - 0.2) */
    expect_logit(&(Margin){64, 1, 0.3f, 0.2f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT}, 0.5f,
                 1.3913752488, 72.061130240, "combined");
    /* th = cos(pi - 0.5) = -0.87758, mm = sin(0.5) 0.5 = 0.23971: 64 (-0.95 - mm) */
    expect_logit(&arc, -0.95f, -76.141617235, 64, "thmm fallback");
    /* theta + m > pi taken as is: 64 cos(161.805 deg + 28.648 deg) */
    expect_logit(&ARC(64, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT), -0.95f, -62.937856656,
                 -37.186460122, "no fallback");
    expect_logit(&ARC(64, MARGIN_FALLBACK_EASY, MARGIN_GRAD_EXACT), -0.3f, -19.2, 64, "easy, cos<0");
    expect_logit(&ARC(64, MARGIN_FALLBACK_EASY, MARGIN_GRAD_EXACT), 0.3f, -12.420354999,
                 65.814714792, "easy, cos>0");
    /* m1 = 2 at 60 deg: 64 cos(120 deg) = -32; 64 * 2 sin(120) / sin(60) = 128 */
    expect_logit(&(Margin){64, 2, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT}, 0.5f, -32, 128,
                 "m1=2");
    /* cosines outside [-1, 1] are clamped */
    float dz;
    EXPECT_NEAR(margin_target_logit(&arc, 1.5f, &dz), 64 * cos(0.5), 1e-4);
    EXPECT(isfinite(dz) && dz > 64, "arcface at cos = 1: dz/dcos = %g", (double)dz);
    EXPECT_NEAR(margin_target_logit(&arc, -1.5f, &dz), -79.341617235, 1e-4);
    /* straight-through: always s */
    expect_logit(&ARC(64, MARGIN_FALLBACK_THMM, MARGIN_GRAD_STRAIGHT), 0.5f, 1.5101814586, 64,
                 "straight");
    /* no margin: exactly s * cos and exactly s, at the ends too */
    const Margin plain = {30, 1, 0, 0, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT};
    const float cs[] = {-1.0f, -0.3f, 0.0f, 0.7f, 1.0f};
    for (int k = 0; k < 5; k++) {
        const float z = margin_target_logit(&plain, cs[k], &dz);
        EXPECT(z == 30.0f * cs[k] && dz == 30.0f, "plain at %g: z %.9g dz %.9g", (double)cs[k],
               (double)z, (double)dz);
    }

    /* The exact dz/dcos matches a central difference of z wherever z is smooth. */
    const Margin smooth[] = {
        ARC(64, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT),
        ARC(64, MARGIN_FALLBACK_EASY, MARGIN_GRAD_EXACT),
        ARC(64, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT),
        {64, 1, 0.3f, 0.2f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT},
        {64, 2, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT},
        {64, 2, 0.1f, 0.1f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT},
    };
    double worst = 0;
    for (size_t k = 0; k < sizeof smooth / sizeof *smooth; k++) {
        const Margin *m = &smooth[k];
        const double th = cos(M_PI - m->m2), h = 1e-3;
        for (double c = -0.98; c <= 0.98; c += 0.01) {
            if (m->fallback == MARGIN_FALLBACK_THMM && fabs(c - th) < 3 * h) continue;
            if (m->fallback == MARGIN_FALLBACK_EASY && fabs(c) < 3 * h) continue;
            const double num = (margin_target_logit(m, (float)(c + h), NULL) -
                                margin_target_logit(m, (float)(c - h), NULL)) /
                               ((double)(float)(c + h) - (double)(float)(c - h));
            margin_target_logit(m, (float)c, &dz);
            worst = fmax(worst, fabs(dz - num) / fmax(fabs(num), m->s));
        }
    }
    EXPECT(worst < 2e-3, "dz/dcos vs central difference of z: rel err %.3g", worst);

    /* THMM: z is increasing in cos over [-1, 1], and at th the margin branch
     * lies s (mm - th - 1) above the fallback, ArcMarginProduct's step (7.507
     * for s = 64, m = 0.5; it is not continuous). */
    const Margin thmm[] = {arc, {64, 1, 0.3f, 0.2f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT}};
    for (int k = 0; k < 2; k++) {
        const Margin *m = &thmm[k];
        int mono = 1;
        float prev = margin_target_logit(m, -1.0f, NULL);
        for (int q = 1; q <= 20000; q++) {
            const float z = margin_target_logit(m, -1.0f + q * 1e-4f, NULL);
            mono &= z >= prev;
            prev = z;
        }
        EXPECT(mono, "thmm (m2 = %g): z not increasing in cos", (double)m->m2);
        const double th = cos(M_PI - m->m2), mm = sin(M_PI - m->m2) * m->m2;
        const double jump = margin_target_logit(m, (float)(th + 1e-5), NULL) -
                            margin_target_logit(m, (float)(th - 1e-5), NULL);
        EXPECT_NEAR(jump, m->s * (-1 - (th - mm)), 1e-3 * m->s);
    }
    const double th5 = cos(M_PI - 0.5), mm5 = sin(M_PI - 0.5) * 0.5;
    EXPECT_NEAR(64 * (-1 - (th5 - mm5)), 7.5069011963, 1e-8);
}

/* margin_forward / margin_backward on one hand-worked row. CosFace s = 10,
 * m3 = 0.1, cosines [0.1, 0.9, 0.2], label 1: z = [1, 8, 2], max 8 (the
 * target), sum = e^-7 + 1 + e^-6. A second sample's label is not owned. */
static void test_forward_backward_by_hand(void) {
    const Margin m = {10, 1, 0, 0.1f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT};
    float z[6] = {0.1f, 0.9f, 0.2f, 0.1f, 0.9f, 0.2f}, tdz[2], tdz_empty[2];
    const int64_t labels[2] = {101, 7};
    SoftmaxStats st[2], empty[2];
    margin_forward(z, st, tdz, labels, 2, 3, 100, &m);
    const double sum = exp(-7.0) + 1 + exp(-6.0);
    EXPECT_NEAR(z[0], 1, 1e-6);
    EXPECT_NEAR(z[1], 8, 1e-6);
    EXPECT_NEAR(z[2], 2, 1e-6);
    EXPECT_NEAR(st[0].max, 8, 1e-6);
    EXPECT_NEAR(st[0].sum, sum, 1e-6);
    EXPECT_NEAR(st[0].target, 8, 1e-6);
    EXPECT_NEAR(tdz[0], 10, 0);
    EXPECT_NEAR(st[1].max, 9, 1e-6);
    EXPECT_NEAR(st[1].target, 0, 0);
    EXPECT_NEAR(tdz[1], 0, 0);
    /* a shard without classes: max -inf, sum 0 */
    margin_forward(NULL, empty, tdz_empty, labels, 2, 0, 0, &m);
    EXPECT(empty[0].max == -INFINITY && empty[0].sum == 0 && empty[0].target == 0,
           "empty shard stats (%g, %g, %g)", (double)empty[0].max, (double)empty[0].sum,
           (double)empty[0].target);
    float loss[2];
    margin_loss(loss, st, 2);
    EXPECT_NEAR(loss[0], log(sum), 1e-6);
    /* dcos = scale * (p - onehot) * s with scale 0.5 */
    margin_backward(z, st, tdz, labels, 1, 3, 100, 0.5f, &m);
    EXPECT_NEAR(z[0], 0.5 * exp(-7.0) / sum * 10, 1e-6);
    EXPECT_NEAR(z[1], 0.5 * (1 / sum - 1) * 10, 1e-6);
    EXPECT_NEAR(z[2], 0.5 * exp(-6.0) / sum * 10, 1e-6);
}

/* ---- (5): SGD against a hand computation ---- */

static void test_sgd(void) {
    /* 5 x 7 = 35 weights: two 16-wide blocks and a scalar tail */
    enum { ROWS = 5, DIM = 7, NW = ROWS * DIM };
    ClassifierShard sh;
    char err[256];
    EXPECT(classifier_create(&sh, 0, ROWS, DIM, 1, 1, err, sizeof err) == 0, "%s", err);
    float w0[NW], g1[NW], g2[NW];
    test_fill_uniform(w0, NW, -2, 2, 101);
    test_fill_uniform(g1, NW, -1, 1, 102);
    test_fill_uniform(g2, NW, -1, 1, 103);
    w0[0] = 1.0f, g1[0] = 0.5f, g2[0] = -0.25f;
    w0[NW - 1] = 1.0f, g1[NW - 1] = 0.5f, g2[NW - 1] = -0.25f;
    const float lr = 0.1f, mom = 0.9f, wd = 0.01f;
    memcpy(sh.weight, w0, sizeof w0);
    memcpy(sh.dweight, g1, sizeof g1);
    classifier_sgd_step(&sh, lr, mom, wd);
    memcpy(sh.dweight, g2, sizeof g2);
    classifier_sgd_step(&sh, lr, mom, wd);
    /* first and last element by hand: v1 = 0.5 + 0.01 * 1 = 0.51,
     * w1 = 1 - 0.051 = 0.949, v2 = 0.9 * 0.51 - 0.25 + 0.01 * 0.949 = 0.21849,
     * w2 = 0.949 - 0.021849 = 0.927151 */
    EXPECT_NEAR(sh.momentum[0], 0.21849, 1e-6);
    EXPECT_NEAR(sh.weight[0], 0.927151, 1e-6);
    EXPECT_NEAR(sh.momentum[NW - 1], 0.21849, 1e-6);
    EXPECT_NEAR(sh.weight[NW - 1], 0.927151, 1e-6);
    int bad = 0;
    for (int k = 0; k < NW; k++) {
        const double v1 = g1[k] + wd * (double)w0[k], w1 = w0[k] - lr * v1;
        const double v2 = mom * v1 + g2[k] + wd * w1, w2 = w1 - lr * v2;
        bad += fabs(sh.momentum[k] - v2) > 1e-6 || fabs(sh.weight[k] - w2) > 1e-6;
    }
    EXPECT(bad == 0, "sgd: %d of %d weights differ from v = m v + g + wd w, w -= lr v", bad, NW);
    classifier_destroy(&sh);
    classifier_destroy(&sh); /* a destroyed shard can be destroyed again */
}

/* ---- (6): initialisation and creation errors ---- */

static void test_init(void) {
    ClassifierShard a, b;
    char err[256];
    EXPECT(classifier_create(&a, 0, 4096, 64, 4, 2024, err, sizeof err) == 0, "%s", err);
    EXPECT(classifier_create(&b, 1000, 7, 64, 4, 2024, err, sizeof err) == 0, "%s", err);
    EXPECT(memcmp(b.weight, a.weight + 1000 * 64, sizeof(float) * 7 * 64) == 0,
           "rows of a shard starting at 1000 differ from the same rows of the full matrix");
    EXPECT(a.weight[5 * 64 + 9] == 0.01f * rng_normal(rng_hash4(2024, RNG_CLASSIFIER_INIT, 5, 9)),
           "row 5 column 9 is not 0.01 * rng_normal(hash(seed, CLASSIFIER_INIT, 5, 9))");
    double sum = 0, sq = 0;
    const int64_t n = 4096 * 64;
    for (int64_t k = 0; k < n; k++) sum += a.weight[k], sq += (double)a.weight[k] * a.weight[k];
    const double mean = sum / n, sd = sqrt(sq / n - mean * mean);
    EXPECT(fabs(mean) < 1e-4 && fabs(sd - 0.01) < 1e-4, "init mean %g sd %g, want 0, 0.01", mean, sd);
    classifier_destroy(&a);
    classifier_destroy(&b);
    classifier_destroy(NULL);

    EXPECT(classifier_create(&a, 0, -1, 64, 4, 1, err, sizeof err) == -1 && strstr(err, "rows"),
           "negative rows accepted");
    EXPECT(a.weight == NULL, "failed create left buffers");
    classifier_destroy(&a);
    EXPECT(classifier_create(&a, 0, 10, 0, 4, 1, err, sizeof err) == -1, "dim 0 accepted");
    EXPECT(classifier_create(&a, 0, 10, 8, 0, 1, err, sizeof err) == -1, "max_batch 0 accepted");
    EXPECT(classifier_create(&a, 0, (int64_t)1 << 40, 512, 256, 1, err, sizeof err) == -1,
           "2^40 rows accepted");
}

int main(void) {
    test_target_logit();
    test_forward_backward_by_hand();
    test_sgd();
    test_init();
    test_sharding();
    test_gradients();
    return test_finish("test_margin");
}
