/* test_margin.c -- margins, sharded softmax and the classifier shard against a
 * double-precision reference: finite-difference gradients through the whole
 * classifier (combined margins, SphereFace, raw embeddings, raw weights),
 * sharding invariance, hand-computed margin, psi and lambda values,
 * margin_check, SGD, init. */
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

/* The combined margin on normalised cosines (the fields every test had before
 * SphereFace and the normalisation options were added). */
#define CM(s_, m1_, m2_, m3_, fb_, gr_) \
    ((Margin){.s = (s_), .m1 = (m1_), .m2 = (m2_), .m3 = (m3_), .fallback = (fb_), .grad = (gr_)})
#define ARC(s_, fb_, gr_) CM((s_), 1.0f, 0.5f, 0.0f, (fb_), (gr_))

/* ---- double-precision reference: the whole loss, written independently ---- */

/* SphereFace's psi from the angle, independently of margin.c's Chebyshev
 * polynomials and thresholds: theta = acos(c), k = floor(m theta / pi). */
static double ref_psi(int m, double c) {
    const double th = acos(fmin(1.0, fmax(-1.0, c)));
    int k = (int)floor(m * th / M_PI);
    if (k > m - 1) k = m - 1; /* theta = pi */
    return (k % 2 ? -1.0 : 1.0) * cos(m * th) - 2.0 * k;
}

static int ref_psi_k(int m, double c) {
    const int k = (int)floor(m * acos(fmin(1.0, fmax(-1.0, c))) / M_PI);
    return k > m - 1 ? m - 1 : k;
}

/* Target function per unit scale in double. For m1 = 1 the combined margin
 * uses ArcMarginProduct's expansion cos(theta + m2) = c cos m2 - sin(theta) sin m2
 * rather than acos. With MARGIN_NORM_NONE c is a raw logit and passes. */
static double ref_unit(const Margin *m, double c) {
    const double m1 = m->m1, m2 = m->m2, m3 = m->m3;
    if (m->norm == MARGIN_NORM_NONE) return c;
    c = fmin(1.0, fmax(-1.0, c));
    if (m->kind == MARGIN_SPHEREFACE)
        return (m->lambda * c + ref_psi((int)m1, c)) / (1.0 + m->lambda);
    if (m->fallback == MARGIN_FALLBACK_EASY && c <= 0) return c - m3;
    if (m->fallback == MARGIN_FALLBACK_THMM && c <= cos(M_PI - m2))
        return c - sin(M_PI - m2) * m2 - m3;
    if (m1 == 1.0) return c * cos(m2) - sqrt(1.0 - c * c) * sin(m2) - m3;
    return cos(m1 * acos(c) + m2) - m3;
}

typedef struct {
    int N, D, C;
    double *x, *w; /* (N, D), (C, D) */
    const int64_t *labels;
} RefProblem;

/* cosv (C) = cos(x_i, w_c); raw (C) = x_i . w_c and *xnorm = ||x_i|| when not NULL. */
static void ref_row(const RefProblem *p, int i, double *cosv, double *raw, double *xnorm) {
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
        if (raw) raw[c] = dot;
    }
    if (xnorm) *xnorm = nx;
}

static void ref_cosines(const RefProblem *p, int i, double *cosv /* (C) */) {
    ref_row(p, i, cosv, NULL, NULL);
}

/* Mean loss; per-sample losses into loss_i when not NULL. Logits are k * cos
 * with k = s, ||x|| (MARGIN_NORM_WEIGHTS), or x . w (MARGIN_NORM_NONE); the
 * target's is k * f(cos). With frozen (N) not NULL the target logit is
 * k * (cos + frozen[i]): the straight-through surrogate, whose gradient is the
 * STRAIGHT mode's. */
static double ref_loss(const RefProblem *p, const Margin *m, const double *frozen, double *loss_i) {
    double total = 0, cosv[MAXC], raw[MAXC], z[MAXC], nx;
    for (int i = 0; i < p->N; i++) {
        ref_row(p, i, cosv, raw, &nx);
        const int64_t y = p->labels[i];
        const double k = m->norm == MARGIN_NORM_BOTH      ? m->s
                         : m->norm == MARGIN_NORM_WEIGHTS ? nx
                                                          : 1;
        double mx = -INFINITY;
        for (int c = 0; c < p->C; c++) {
            const double u = m->norm == MARGIN_NORM_NONE ? raw[c] : cosv[c];
            z[c] = k * u;
            if (c == y) z[c] = k * (frozen ? u + frozen[i] : ref_unit(m, u));
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

/* Compares the shard's d(mean loss)/dx and /dweight (classifier_weight_grad,
 * blocks of 16 rows so that C rows span several) with central differences
 * of the double reference; returns the worst relative error (floor: 1e-3 of
 * the largest gradient). STRAIGHT mode is checked against the surrogate loss
 * whose target logit is k * (cos + the margin offset frozen at the base point),
 * k = s or the embedding norm. xscale and wscale multiply the embeddings and the
 * rows as made (cosines unchanged). */
static double grad_check_scaled(const char *name, Margin m, const double *targets, int N, int D,
                                int C, double tol, float xscale, float wscale) {
    ClassifierShard sh;
    char err[256];
    EXPECT(classifier_create(&sh, 0, C, D, N, 7, err, sizeof err) == 0, "%s", err);
    for (int k = 0; k < C * D; k++) sh.weight[k] *= wscale;
    sh.block_rows = 16;
    int64_t labels[64];
    for (int i = 0; i < N; i++) labels[i] = (i * 7 + 3) % C;
    float *x = malloc(sizeof(float) * N * D), *dx = malloc(sizeof(float) * N * D);
    float *dw = malloc(sizeof(float) * C * D);
    float loss[64];
    make_embeddings(x, sh.weight, labels, targets, N, D, 11);
    for (int k = 0; k < N * D; k++) x[k] *= xscale;
    run_single(&sh, loss, dx, x, labels, N, &m);
    classifier_weight_grad(&sh, 0, C, dw); /* every row kept: keep order is row order */

    RefProblem p = {N, D, C, malloc(sizeof(double) * N * D), malloc(sizeof(double) * C * D), labels};
    for (int k = 0; k < N * D; k++) p.x[k] = x[k];
    for (int k = 0; k < C * D; k++) p.w[k] = sh.weight[k];
    double frozen[64], ref_li[64], cosv[MAXC];
    for (int i = 0; i < N; i++) {
        ref_cosines(&p, i, cosv);
        const double c = cosv[labels[i]];
        EXPECT(fabs(c - targets[i]) < 1e-5, "%s: sample %d at cos %.6f, meant %.6f", name, i, c,
               targets[i]);
        frozen[i] = ref_unit(&m, c) - c;
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
        ana[k] = is_x ? dx[k] : dw[k - nx];
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
    free(dw);
    classifier_destroy(&sh);
    return worst;
}

/* Weights and embeddings as made: rows of norm ~0.045, embeddings of norm [0.5, 3). */
static double grad_check(const char *name, Margin m, const double *targets, int N, int D, int C,
                         double tol) {
    return grad_check_scaled(name, m, targets, N, D, C, tol, 1.0f, 1.0f);
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
               CM(16, 1, 0, 0.4f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT), t_arc, N, D, C,
               1e-3);
    grad_check("normalised softmax s=12",
               CM(12, 1, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT), t_arc, N, D, C, 1e-3);
    grad_check("combined (1,0.3,0.2) thmm s=16",
               CM(16, 1, 0.3f, 0.2f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT), t_arc, N, D, C,
               1e-3);
    grad_check("combined (2,0,0) none s=8",
               CM(8, 2, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT), t_m2, N, D, C, 1e-3);
    grad_check("combined (2,0.1,0.1) thmm s=8",
               CM(8, 2, 0.1f, 0.1f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT), t_m2, N, D, C,
               1e-3);
    grad_check("arcface exact thmm s=64", ARC(64, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT), t_arc,
               N, D, C, 2e-3);
    /* (2) straight-through against the frozen-offset surrogate */
    grad_check("arcface straight thmm s=16", ARC(16, MARGIN_FALLBACK_THMM, MARGIN_GRAD_STRAIGHT),
               t_arc, N, D, C, 1e-3);
    grad_check("arcface straight none s=16", ARC(16, MARGIN_FALLBACK_NONE, MARGIN_GRAD_STRAIGHT),
               t_arc, N, D, C, 1e-3);
    grad_check("combined (2,0,0) straight s=8",
               CM(8, 2, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_STRAIGHT), t_m2, N, D, C,
               1e-3);

    /* The straight-through gradient really differs from the exact one for
     * ArcFace, and equals it where dz/dcos = s anyway (CosFace). */
    ClassifierShard sh;
    char err[256];
    EXPECT(classifier_create(&sh, 0, C, D, N, 7, err, sizeof err) == 0, "%s", err);
    int64_t labels[N];
    for (int i = 0; i < N; i++) labels[i] = (i * 7 + 3) % C;
    float x[N * D], dx_e[N * D], dx_s[N * D], loss_e[N], loss_s[N], dw_e[C * D], dw_s[C * D];
    make_embeddings(x, sh.weight, labels, t_arc, N, D, 11);
    const Margin cos_e = CM(16, 1, 0, 0.4f, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT);
    const Margin cos_s = CM(16, 1, 0, 0.4f, MARGIN_FALLBACK_NONE, MARGIN_GRAD_STRAIGHT);
    run_single(&sh, loss_e, dx_e, x, labels, N, &cos_e);
    classifier_weight_grad(&sh, 0, C, dw_e);
    run_single(&sh, loss_s, dx_s, x, labels, N, &cos_s);
    classifier_weight_grad(&sh, 0, C, dw_s);
    EXPECT(memcmp(loss_e, loss_s, sizeof loss_e) == 0 && memcmp(dx_e, dx_s, sizeof dx_e) == 0 &&
               memcmp(dw_e, dw_s, sizeof dw_e) == 0,
           "cosface: straight and exact gradients should be identical");
    const Margin arc_s = ARC(16, MARGIN_FALLBACK_THMM, MARGIN_GRAD_STRAIGHT);
    run_single(&sh, loss_e, dx_e, x, labels, N, &arc_thmm);
    run_single(&sh, loss_s, dx_s, x, labels, N, &arc_s);
    EXPECT(memcmp(loss_e, loss_s, sizeof loss_e) == 0, "arcface: the gradient mode changed the loss");
    EXPECT(rel_to_max(dx_s, dx_e, N * D) > 1e-2, "arcface: straight gradient equals the exact one");
    classifier_destroy(&sh);
}

/* Target cosines for SphereFace with m: each interval boundary cos(j pi/m)
 * approached from both sides (2e-3 away: the finite differences move a cosine
 * by ~1e-5), the middle of each interval, then fillers; n = 16. Checks that
 * every k interval holds at least two samples. */
static void sphere_targets(double *t, int n, int m) {
    static const double fill[] = {0.97, -0.97, 0.55, -0.45, 0.15, -0.75, 0.35, -0.25,
                                  0.8,  -0.9,  0.05, 0.65,  -0.55, 0.9, -0.05, 0.25};
    int q = 0;
    for (int j = 1; j < m; j++) {
        t[q++] = cos(j * M_PI / m) + 2e-3;
        t[q++] = cos(j * M_PI / m) - 2e-3;
    }
    for (int k = 0; k < m; k++) t[q++] = cos((k + 0.5) * M_PI / m);
    for (int f = 0; q < n; f++) t[q++] = fill[f];
    int count[5] = {0};
    for (int i = 0; i < n; i++) count[ref_psi_k(m, t[i])]++;
    for (int k = 0; k < m; k++)
        EXPECT(count[k] >= 2, "sphereface m=%d: %d samples in interval k=%d", m, count[k], k);
}

#define SPHERE(s_, m_, lambda_, norm_, gr_)                                                    \
    ((Margin){.s = (s_), .m1 = (m_), .fallback = MARGIN_FALLBACK_NONE, .grad = (gr_),          \
              .kind = MARGIN_SPHEREFACE, .norm = (norm_), .lambda = (lambda_)})

/* SphereFace (m = 1..5, lambda 1000, 5, 0), the embedding norm as the scale,
 * and plain unnormalised softmax: gradients w.r.t. raw x and raw W. */
static void test_gradients_sphere_and_raw(void) {
    enum { N = 16, D = 20, C = 37 };
    const double lambdas[] = {1000, 5, 0};
    double t[N];
    char name[64];
    fprintf(stderr, "sphereface and unnormalised losses vs finite differences:\n");
    double worst_sphere = 0;
    for (int m = 1; m <= 5; m++) {
        sphere_targets(t, N, m);
        for (int l = 0; l < 3; l++) {
            /* the original: weights normalised, ||x|| in [1.5, 9) as the scale */
            snprintf(name, sizeof name, "sphereface m=%d lambda=%g raw x", m, lambdas[l]);
            const Margin sm = SPHERE(0, (float)m, (float)lambdas[l], MARGIN_NORM_WEIGHTS,
                                     MARGIN_GRAD_EXACT);
            worst_sphere = fmax(worst_sphere, grad_check_scaled(name, sm, t, N, D, C, 1e-3, 3, 1));
        }
    }
    fprintf(stderr, "  worst sphereface (raw x, exact): %.1e\n", worst_sphere);
    sphere_targets(t, N, 4);
    grad_check("sphereface m=4 lambda=0 s=8", SPHERE(8, 4, 0, MARGIN_NORM_BOTH, MARGIN_GRAD_EXACT),
               t, N, D, C, 1e-3);
    grad_check("sphereface m=4 lambda=5 s=8", SPHERE(8, 4, 5, MARGIN_NORM_BOTH, MARGIN_GRAD_EXACT),
               t, N, D, C, 1e-3);
    grad_check_scaled("sphereface m=4 l=5 raw x straight",
                      SPHERE(0, 4, 5, MARGIN_NORM_WEIGHTS, MARGIN_GRAD_STRAIGHT), t, N, D, C, 1e-3,
                      3, 1);
    grad_check("sphereface m=4 l=0 s=8 straight",
               SPHERE(8, 4, 0, MARGIN_NORM_BOTH, MARGIN_GRAD_STRAIGHT), t, N, D, C, 1e-3);
    sphere_targets(t, N, 5);
    grad_check("sphereface m=5 lambda=0 s=4", SPHERE(4, 5, 0, MARGIN_NORM_BOTH, MARGIN_GRAD_EXACT),
               t, N, D, C, 1e-3);

    /* the combined margins and softmax with ||x|| as the scale */
    const double t_arc[8] = {0.6, -0.95, 0.2, -0.3, 0.995, -0.97, 0.85, -0.6};
    Margin mw = CM(0, 1, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT);
    mw.norm = MARGIN_NORM_WEIGHTS;
    grad_check_scaled("softmax raw x, normalised W", mw, t_arc, 8, D, C, 1e-3, 3, 1);
    mw = ARC(0, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT);
    mw.norm = MARGIN_NORM_WEIGHTS;
    grad_check_scaled("arcface thmm raw x", mw, t_arc, 8, D, C, 1e-3, 3, 1);
    mw.grad = MARGIN_GRAD_STRAIGHT;
    grad_check_scaled("arcface thmm raw x straight", mw, t_arc, 8, D, C, 1e-3, 3, 1);
    mw = CM(0, 1, 0, 0.35f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT);
    mw.norm = MARGIN_NORM_WEIGHTS;
    grad_check_scaled("cosface raw x", mw, t_arc, 8, D, C, 1e-3, 3, 1);

    /* plain softmax z = x . w: rows scaled to norm ~1.3 so the logits are O(1..10) */
    Margin mn = CM(0, 1, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT);
    mn.norm = MARGIN_NORM_NONE;
    grad_check_scaled("softmax raw x, raw W", mn, t_arc, 8, D, C, 1e-3, 1, 30);
    grad_check_scaled("softmax raw x, raw W, large", mn, t_arc, 8, D, C, 1e-3, 3, 30);
    sphere_targets(t, N, 3);
    grad_check_scaled("softmax raw x, raw W, N=16", mn, t, N, D, C, 1e-3, 2, 30);
}

/* ---- (3), (6): sharding invariance ---- */

typedef struct {
    int P;
    int64_t rows[5];
} Split;

/* One margin: P = 1, 2, 3, 5 shards give the same loss, dx, dweight and SGD
 * step. wscale multiplies the rows as made (for raw weights). */
static void test_sharding_margin(const char *name, const Margin m, float wscale) {
    enum { N = 8, D = 20, C = 70 };
    /* Labels avoid [20, 36), which P = 5 gives to one shard; P = 5 also has an
     * empty shard. P = 1 takes its 70 rows in blocks of 32 (three blocks, the
     * last one short), the others in one block per shard. */
    const int64_t labels[N] = {0, 5, 19, 40, 69, 52, 36, 3};
    const Split splits[] = {{1, {70}}, {2, {35, 35}}, {3, {30, 25, 15}}, {5, {20, 0, 16, 33, 1}}};
    float x[N * D];
    test_fill_uniform(x, N * D, -1, 1, 5);
    float ref_loss_v[N], ref_dx[N * D], ref_w0[C * D], ref_dw[C * D], ref_w1[C * D];
    {
        /* push sample 1 into the fallback region: x close to -w_y */
        ClassifierShard sh;
        char err[256];
        EXPECT(classifier_create(&sh, 0, C, D, N, 42, err, sizeof err) == 0, "%s", err);
        for (int d = 0; d < D; d++)
            x[1 * D + d] = -30.0f * wscale * sh.weight[labels[1] * D + d] + 0.05f * x[1 * D + d];
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
            for (int64_t k = 0; k < sp->rows[p] * D; k++) sh[p].weight[k] *= wscale;
            if (sp->P == 1) sh[p].block_rows = 32;
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
            classifier_weight_grad(&sh[p], 0, sp->rows[p], dw + start * D);
            classifier_sgd_step(&sh[p], 0.1f, 0.9f, 5e-4f);
            memcpy(w1 + start * D, sh[p].weight, sizeof(float) * sp->rows[p] * D);
            start += sp->rows[p];
        }
        int finite = 1;
        for (int i = 0; i < N; i++) finite &= isfinite(loss[i]) && isfinite(loss_rev[i]);
        EXPECT(finite, "%s P=%d: non-finite loss", name, sp->P);
        if (sp->P == 1) {
            memcpy(ref_loss_v, loss, sizeof loss);
            memcpy(ref_dx, dx, sizeof dx);
            memcpy(ref_w0, w0, sizeof w0);
            memcpy(ref_dw, dw, sizeof dw);
            memcpy(ref_w1, w1, sizeof w1);
        } else {
            EXPECT(memcmp(w0, ref_w0, sizeof w0) == 0,
                   "%s P=%d: initial weights depend on the split", name, sp->P);
            EXPECT(rel_to_max(loss, ref_loss_v, N) < 1e-5, "%s P=%d: loss differs by %.3g", name,
                   sp->P, rel_to_max(loss, ref_loss_v, N));
            EXPECT(rel_to_max(dx, ref_dx, N * D) < 1e-5, "%s P=%d: summed dx differs by %.3g",
                   name, sp->P, rel_to_max(dx, ref_dx, N * D));
            EXPECT(rel_to_max(dw, ref_dw, C * D) < 1e-5, "%s P=%d: dweight differs by %.3g", name,
                   sp->P, rel_to_max(dw, ref_dw, C * D));
            EXPECT(rel_to_max(w1, ref_w1, C * D) < 1e-5,
                   "%s P=%d: weights after SGD differ by %.3g", name, sp->P,
                   rel_to_max(w1, ref_w1, C * D));
        }
        EXPECT(rel_to_max(loss_rev, loss, N) < 1e-6,
               "%s P=%d: combine order changes the loss by %.3g", name, sp->P,
               rel_to_max(loss_rev, loss, N));
        for (int p = 0; p < sp->P; p++) classifier_destroy(&sh[p]);
    }
}

static void test_sharding(void) {
    test_sharding_margin("arcface", ARC(32, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT), 1);
    /* the original A-Softmax: raw embeddings, m = 4 (sample 1 at cos ~ -1, k = 3) */
    test_sharding_margin("sphereface",
                         SPHERE(0, 4, 5, MARGIN_NORM_WEIGHTS, MARGIN_GRAD_EXACT), 1);
    Margin raw = CM(0, 1, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT);
    raw.norm = MARGIN_NORM_NONE;
    test_sharding_margin("unnormalised softmax", raw, 30);

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
    expect_logit(&CM(64, 1, 0, 0.35f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT), 0.5f, 9.6,
                 64, "cosface");
    /* combined (1, 0.3, 0.2): 64 (cos(60 deg + 17.189 deg) - 0.2) */
    expect_logit(&CM(64, 1, 0.3f, 0.2f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT), 0.5f,
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
    expect_logit(&CM(64, 2, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT), 0.5f, -32, 128,
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
    const Margin plain = CM(30, 1, 0, 0, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT);
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
        CM(64, 1, 0.3f, 0.2f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT),
        CM(64, 2, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT),
        CM(64, 2, 0.1f, 0.1f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT),
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
    const Margin thmm[] = {arc, CM(64, 1, 0.3f, 0.2f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT)};
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

/* ---- SphereFace's psi, its Chebyshev forms, lambda, and margin_check ---- */

static void expect_psi(int m, double theta_deg, double psi_want, double dpsi_want) {
    double dpsi;
    const double psi = sphereface_psi(m, cos(theta_deg * M_PI / 180), &dpsi);
    EXPECT(fabs(psi - psi_want) < 1e-12 && fabs(dpsi - dpsi_want) < 1e-11,
           "psi_%d(%g deg) = %.15g, dpsi/dcos = %.15g; want %.15g, %.15g", m, theta_deg, psi, dpsi,
           psi_want, dpsi_want);
}

static void test_sphereface_values(void) {
    /* theta = 50 deg, m = 4: pi/4 <= theta <= pi/2, so k = 1 and
     * psi = -cos(200 deg) - 2 = cos(20 deg) - 2; dpsi/dcos = -(32c^3 - 16c),
     * c = cos(50 deg) = 0.642788 (= -4 sin(200 deg) / sin(50 deg)). */
    expect_psi(4, 50, -1.0603073792140916, 1.785902352783193);
    /* theta = 30 deg, m = 4: k = 0, psi = cos(120 deg) = -0.5; 32c^3 - 16c = 8c = 4 sqrt(3) */
    expect_psi(4, 30, -0.5, 6.92820323027551);
    /* theta = 120 deg, m = 2: k = 1, psi = -(2c^2 - 1) - 2 = -1.5; dpsi = -4c = 2 */
    expect_psi(2, 120, -1.5, 2);
    /* theta = 100 deg, m = 3: k = 1, psi = -cos(300 deg) - 2 = -2.5; dpsi = -(12c^2 - 3) */
    expect_psi(3, 100, -2.5, 2.6381557247154506);
    /* theta = 170 deg, m = 5: k = 4, psi = cos(850 deg) - 8 = cos(130 deg) - 8;
     * dpsi = 80c^4 - 60c^2 + 5 at c = cos(170 deg) (= 5 sin(850) / sin(170)) */
    expect_psi(5, 170, -8.64278760968654, 22.057370639048855);
    /* m = 1 is the plain cosine */
    double d;
    EXPECT(sphereface_psi(1, 0.3, &d) == 0.3 && d == 1, "psi_1(0.3) = %g, dpsi %g",
           sphereface_psi(1, 0.3, NULL), d);
    for (int m = 1; m <= 5; m++) {
        /* ends: psi(0) = 1, psi(pi) = 1 - 2m, dpsi/dcos(0) = T_m'(1) = m^2 */
        EXPECT(sphereface_psi(m, 1.0, &d) == 1.0 && d == m * m, "psi_%d(0) = %g, dpsi %g", m,
               sphereface_psi(m, 1.0, NULL), d);
        EXPECT(sphereface_psi(m, -1.0, NULL) == 1 - 2 * m, "psi_%d(pi) = %g", m,
               sphereface_psi(m, -1.0, NULL));
        EXPECT(sphereface_psi(m, 1.5, NULL) == 1.0 && sphereface_psi(m, -1.5, NULL) == 1 - 2 * m,
               "psi_%d: cos outside [-1, 1] not clamped", m);
        /* Chebyshev form = the angle form; derivative = (-1)^k m sin(m theta) / sin(theta) */
        double worst = 0, worst_d = 0;
        for (double th = 1e-3; th < M_PI - 1e-3; th += 1e-3) {
            const double c = cos(th);
            const int k = ref_psi_k(m, c);
            const double psi = sphereface_psi(m, c, &d);
            worst = fmax(worst, fabs(psi - ref_psi(m, c)));
            worst_d = fmax(worst_d, fabs(d - (k % 2 ? -1 : 1) * m * sin(m * th) / sin(th)));
        }
        EXPECT(worst < 1e-12 && worst_d < 1e-9,
               "psi_%d: Chebyshev vs angle form %.3g, derivative %.3g", m, worst, worst_d);
        /* continuous at every boundary theta_j = j pi/m, where psi = 1 - 2j; the
         * derivative is continuous there too (0) */
        for (int j = 1; j < m; j++) {
            const double b = cos(j * M_PI / m);
            double dl, dr;
            const double lo = sphereface_psi(m, b - 1e-9, &dl);
            const double hi = sphereface_psi(m, b + 1e-9, &dr);
            EXPECT(fabs(lo - (1 - 2 * j)) < 1e-7 && fabs(hi - (1 - 2 * j)) < 1e-7,
                   "psi_%d at boundary %d: %.12g | %.12g, want %d", m, j, lo, hi, 1 - 2 * j);
            EXPECT(fabs(dl) < 1e-6 && fabs(dr) < 1e-6, "dpsi_%d at boundary %d: %g | %g", m, j, dl,
                   dr);
        }
        /* strictly decreasing in theta over [0, pi] */
        int mono = 1;
        double prev = sphereface_psi(m, 1.0, NULL);
        for (int q = 1; q <= 100000; q++) {
            const double v = sphereface_psi(m, cos(q * M_PI / 100000), NULL);
            mono &= v < prev;
            prev = v;
        }
        EXPECT(mono, "psi_%d not strictly decreasing in theta", m);
        /* and the float target logit is non-decreasing in cos for every lambda */
        const float lambdas[] = {0, 5, 1000};
        for (int l = 0; l < 3; l++) {
            const Margin sm = SPHERE(64, (float)m, lambdas[l], MARGIN_NORM_BOTH, MARGIN_GRAD_EXACT);
            float zp = margin_target_logit(&sm, -1.0f, NULL);
            int up = 1;
            for (int q = 1; q <= 20000; q++) {
                const float z = margin_target_logit(&sm, -1.0f + q * 1e-4f, NULL);
                up &= z >= zp;
                zp = z;
            }
            EXPECT(up, "sphereface m=%d lambda=%g: z not increasing in cos", m, (double)lambdas[l]);
        }
    }

    /* target logits: m = 4 at 60 deg, psi = -(8/16 - 8/4 + 1) - 2 = -1.5, dpsi = 4
     * lambda 5, s 64: 64 (5 0.5 - 1.5) / 6 = 64/6; dz = 64 (5 + 4) / 6 = 96 */
    expect_logit(&SPHERE(64, 4, 5, MARGIN_NORM_BOTH, MARGIN_GRAD_EXACT), 0.5f, 64.0 / 6, 96,
                 "sphereface l=5");
    /* lambda 0: pure psi, 64 (-1.5), 64 * 4 */
    expect_logit(&SPHERE(64, 4, 0, MARGIN_NORM_BOTH, MARGIN_GRAD_EXACT), 0.5f, -96, 256,
                 "sphereface l=0");
    /* lambda 1000: 64 (500 - 1.5) / 1001, 64 (1000 + 4) / 1001 */
    expect_logit(&SPHERE(64, 4, 1000, MARGIN_NORM_BOTH, MARGIN_GRAD_EXACT), 0.5f,
                 31.872127872127873, 64.19180819180819, "sphereface l=1000");
    /* raw embeddings: per unit norm (the caller's norm multiplies) */
    expect_logit(&SPHERE(64, 4, 5, MARGIN_NORM_WEIGHTS, MARGIN_GRAD_EXACT), 0.5f, 1.0 / 6, 1.5,
                 "sphereface raw x");
    expect_logit(&SPHERE(64, 4, 5, MARGIN_NORM_BOTH, MARGIN_GRAD_STRAIGHT), 0.5f, 64.0 / 6, 64,
                 "sphereface straight");
    expect_logit(&SPHERE(64, 4, 5, MARGIN_NORM_WEIGHTS, MARGIN_GRAD_STRAIGHT), 0.5f, 1.0 / 6, 1,
                 "sphereface raw x straight");
    /* m = 1, lambda anything: no margin, z = s c */
    expect_logit(&SPHERE(64, 1, 5, MARGIN_NORM_BOTH, MARGIN_GRAD_EXACT), 0.3f, 64 * 0.3f, 64,
                 "sphereface m=1");
    /* unnormalised: the raw logit passes unclamped, derivative 1 */
    Margin raw = CM(64, 1, 0, 0, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT);
    raw.norm = MARGIN_NORM_NONE;
    expect_logit(&raw, 3.5f, 3.5, 1, "no normalisation");
    Margin arcw = ARC(64, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT);
    arcw.norm = MARGIN_NORM_WEIGHTS;
    /* ArcFace at 60 deg per unit norm: the s = 64 values above / 64 */
    expect_logit(&arcw, 0.5f, 1.5101814586 / 64, 73.880257642 / 64, "arcface raw x");

    /* lambda = max(5, 1000 / (1 + 0.12 iter)): 1000, 1000/1.12, 1000/13, 1000/121,
     * 1000/199.96, then 1000/200.08 < 5 */
    const struct {
        int64_t iter;
        double want;
    } lam[] = {{0, 1000}, {1, 892.857142857}, {100, 76.9230769231}, {1000, 8.26446280992},
               {1658, 5.00100020004}, {1659, 5}, {100000, 5}};
    for (size_t k = 0; k < sizeof lam / sizeof *lam; k++) {
        const float l = sphereface_lambda(1000, 0.12, 1, 5, lam[k].iter);
        EXPECT(fabs(l - lam[k].want) <= 1e-6 * lam[k].want, "lambda(%lld) = %.9g, want %.9g",
               (long long)lam[k].iter, (double)l, lam[k].want);
    }
    /* power 2: 1000 (1 + 0.1 * 10)^-2 = 250; no floor: lambda_min 0 */
    EXPECT_NEAR(sphereface_lambda(1000, 0.1, 2, 0, 10), 250, 1e-4);
    EXPECT_NEAR(sphereface_lambda(1000, 0.1, 2, 0, 990), 0.1, 1e-7);
}

static void expect_check(const Margin *m, const char *why_contains) {
    char err[256] = "";
    const int rc = margin_check(m, err, sizeof err);
    if (!why_contains) {
        EXPECT(rc == 0, "valid margin rejected: %s", err);
    } else {
        EXPECT(rc == -1 && strstr(err, why_contains), "want rejection mentioning '%s', got %d '%s'",
               why_contains, rc, err);
    }
}

static void test_margin_check(void) {
    /* valid */
    Margin m = ARC(64, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT);
    expect_check(&m, NULL);
    expect_check(&CM(64, 1, 0, 0.4f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_STRAIGHT), NULL);
    expect_check(&CM(64, 1.35f, 0.1f, 0.1f, MARGIN_FALLBACK_EASY, MARGIN_GRAD_EXACT), NULL);
    expect_check(&CM(64, 2, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT), NULL);
    m.norm = MARGIN_NORM_WEIGHTS, m.s = 0; /* s unused */
    expect_check(&m, NULL);
    for (int k = 1; k <= 5; k++) {
        expect_check(&SPHERE(0, (float)k, 5, MARGIN_NORM_WEIGHTS, MARGIN_GRAD_EXACT), NULL);
        expect_check(&SPHERE(30, (float)k, 0, MARGIN_NORM_BOTH, MARGIN_GRAD_STRAIGHT), NULL);
    }
    Margin raw = CM(0, 1, 0, 0, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT);
    raw.norm = MARGIN_NORM_NONE;
    expect_check(&raw, NULL);
    /* zero-initialised apart from s: normalised softmax */
    expect_check(&(Margin){.s = 64, .m1 = 1}, NULL);

    /* invalid */
    expect_check(&(Margin){.m1 = 1}, "scale s");
    expect_check(&CM(NAN, 1, 0.5f, 0, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT), "scale s");
    expect_check(&CM(64, 2, 0.1f, 0.1f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT), "thmm");
    expect_check(&CM(64, 0, 0.5f, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT), "m1");
    expect_check(&CM(64, 1, -0.1f, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT), "m2");
    expect_check(&CM(64, 1, 3.2f, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT), "m2");
    expect_check(&CM(64, 1, NAN, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT), "finite");
    raw.m2 = 0.5f; /* no angle without normalisation */
    expect_check(&raw, "no angle");
    raw.m2 = 0, raw.m3 = 0.35f;
    expect_check(&raw, "no angle");
    expect_check(&SPHERE(0, 4, 5, MARGIN_NORM_NONE, MARGIN_GRAD_EXACT), "normalised weights");
    expect_check(&SPHERE(0, 6, 5, MARGIN_NORM_WEIGHTS, MARGIN_GRAD_EXACT), "integer in 1..5");
    expect_check(&SPHERE(0, 0, 5, MARGIN_NORM_WEIGHTS, MARGIN_GRAD_EXACT), "integer in 1..5");
    expect_check(&SPHERE(0, 3.5f, 5, MARGIN_NORM_WEIGHTS, MARGIN_GRAD_EXACT), "integer in 1..5");
    expect_check(&SPHERE(0, 4, -1, MARGIN_NORM_WEIGHTS, MARGIN_GRAD_EXACT), "lambda");
    expect_check(&SPHERE(0, 4, INFINITY, MARGIN_NORM_WEIGHTS, MARGIN_GRAD_EXACT), "lambda");
    expect_check(&SPHERE(0, 4, 5, MARGIN_NORM_BOTH, MARGIN_GRAD_EXACT), "scale s");
    Margin sm = SPHERE(0, 4, 5, MARGIN_NORM_WEIGHTS, MARGIN_GRAD_EXACT);
    sm.fallback = MARGIN_FALLBACK_THMM;
    expect_check(&sm, "fallback");
    sm.fallback = MARGIN_FALLBACK_EASY;
    expect_check(&sm, "fallback");
    sm.fallback = MARGIN_FALLBACK_NONE, sm.m3 = 0.1f;
    expect_check(&sm, "no m2, m3");
    sm.m3 = 0, sm.kind = (MarginKind)7;
    expect_check(&sm, "unknown kind");
    sm.kind = MARGIN_SPHEREFACE, sm.norm = (MarginNorm)3;
    expect_check(&sm, "unknown normalisation");
    sm.norm = MARGIN_NORM_WEIGHTS, sm.grad = (MarginGrad)2;
    expect_check(&sm, "unknown gradient");
    EXPECT(margin_check(&sm, NULL, 0) == -1, "no error buffer: still -1");
}

/* margin_forward / margin_backward on one hand-worked row. CosFace s = 10,
 * m3 = 0.1, cosines [0.1, 0.9, 0.2], label 1: z = [1, 8, 2], max 8 (the
 * target), sum = e^-7 + 1 + e^-6. A second sample's label is not owned. */
static void test_forward_backward_by_hand(void) {
    const Margin m = CM(10, 1, 0, 0.1f, MARGIN_FALLBACK_THMM, MARGIN_GRAD_EXACT);
    float z[6] = {0.1f, 0.9f, 0.2f, 0.1f, 0.9f, 0.2f}, tdz[2], tdz_empty[2];
    const int64_t labels[2] = {101, 7};
    SoftmaxStats st[2], empty[2];
    margin_forward(z, st, tdz, labels, NULL, 2, 3, 100, &m);
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
    margin_forward(NULL, empty, tdz_empty, labels, NULL, 2, 0, 0, &m);
    EXPECT(empty[0].max == -INFINITY && empty[0].sum == 0 && empty[0].target == 0,
           "empty shard stats (%g, %g, %g)", (double)empty[0].max, (double)empty[0].sum,
           (double)empty[0].target);
    float loss[2];
    margin_loss(loss, st, 2);
    EXPECT_NEAR(loss[0], log(sum), 1e-6);
    /* dcos = scale * (p - onehot) * s with scale 0.5 */
    margin_backward(z, NULL, st, tdz, labels, NULL, 1, 3, 100, 0.5f, &m);
    EXPECT_NEAR(z[0], 0.5 * exp(-7.0) / sum * 10, 1e-6);
    EXPECT_NEAR(z[1], 0.5 * (1 / sum - 1) * 10, 1e-6);
    EXPECT_NEAR(z[2], 0.5 * exp(-6.0) / sum * 10, 1e-6);
}

/* ---- (5): SGD against a hand computation ---- */

/* One step of a single shard on x (N, DIM) and labels: forward, its own stats
 * as the combined ones, backward, the kept rows' gradient into g, SGD. */
static void sgd_test_step(ClassifierShard *sh, float *g, const float *x, const int64_t *labels,
                          int N, const Margin *m, float lr, float mom, float wd) {
    SoftmaxStats st[4];
    float dx[4 * 8];
    classifier_forward(sh, x, labels, N, m);
    memcpy(st, sh->stats, (size_t)N * sizeof *st);
    classifier_backward(sh, dx, st, labels, m);
    classifier_weight_grad(sh, 0, sh->n_keep, g);
    classifier_sgd_step(sh, lr, mom, wd);
}

static void test_sgd(void) {
    /* 5 x 7 = 35 weights: two 16-wide blocks and a scalar tail; blocks of 2
     * rows, so the update also runs over a short last block */
    enum { ROWS = 5, DIM = 7, NW = ROWS * DIM, N = 2 };
    const Margin m = CM(8, 1, 0, 0, MARGIN_FALLBACK_NONE, MARGIN_GRAD_EXACT);
    const float lr = 0.1f, mom = 0.9f, wd = 0.01f;
    ClassifierShard sh;
    char err[256];
    float w0[NW], g1[NW], g2[NW], x[N * DIM];
    const int64_t labels[N] = {1, 4};
    test_fill_uniform(w0, NW, -2, 2, 101);
    test_fill_uniform(x, N * DIM, -1, 1, 102);
    w0[0] = 1.0f, w0[NW - 1] = 1.0f;
    /* By hand, with no samples (g = 0): v1 = 0.01 * 1, w1 = 1 - 0.001 = 0.999,
     * v2 = 0.9 * 0.01 + 0.01 * 0.999 = 0.01899, w2 = 0.999 - 0.001899 = 0.997101 */
    EXPECT(classifier_create(&sh, 0, ROWS, DIM, N, 1, err, sizeof err) == 0, "%s", err);
    memcpy(sh.weight, w0, sizeof w0);
    sgd_test_step(&sh, g1, x, labels, 0, &m, lr, mom, wd);
    sgd_test_step(&sh, g2, x, labels, 0, &m, lr, mom, wd);
    int zero = 1;
    for (int k = 0; k < NW; k++) zero &= g1[k] == 0 && g2[k] == 0;
    EXPECT(zero, "sgd: an empty batch gave a non-zero weight gradient");
    EXPECT_NEAR(sh.momentum[0], 0.01899, 1e-7);
    EXPECT_NEAR(sh.weight[0], 0.997101, 1e-6);
    EXPECT_NEAR(sh.momentum[NW - 1], 0.01899, 1e-7);
    EXPECT_NEAR(sh.weight[NW - 1], 0.997101, 1e-6);
    classifier_destroy(&sh);
    /* Two steps with a real gradient, every element against the formula. */
    EXPECT(classifier_create(&sh, 0, ROWS, DIM, N, 1, err, sizeof err) == 0, "%s", err);
    sh.block_rows = 2;
    memcpy(sh.weight, w0, sizeof w0);
    sgd_test_step(&sh, g1, x, labels, N, &m, lr, mom, wd);
    sgd_test_step(&sh, g2, x, labels, N, &m, lr, mom, wd);
    double gmax = 0;
    for (int k = 0; k < NW; k++) gmax = fmax(gmax, fabs(g1[k]));
    EXPECT(gmax > 1e-2, "sgd: gradient at most %.3g, too small to test its term", gmax);
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
    /* 70000 x 64 elements are drawn on several threads (one per CPU): the
     * same values as a small shard drawn on one */
    EXPECT(classifier_create(&a, 0, 70000, 64, 4, 2024, err, sizeof err) == 0, "%s", err);
    EXPECT(classifier_create(&b, 69990, 10, 64, 4, 2024, err, sizeof err) == 0, "%s", err);
    EXPECT(memcmp(b.weight, a.weight + (size_t)69990 * 64, sizeof(float) * 10 * 64) == 0,
           "rows of a threaded draw differ from the same rows drawn alone");
    EXPECT(a.weight[(size_t)35001 * 64 + 63] ==
               0.01f * rng_normal(rng_hash4(2024, RNG_CLASSIFIER_INIT, 35001, 63)),
           "row 35001 column 63 of a threaded draw is not its hash's value");
    classifier_destroy(&a);
    classifier_destroy(&b);

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
    test_sphereface_values();
    test_margin_check();
    test_forward_backward_by_hand();
    test_sgd();
    test_init();
    test_sharding();
    test_gradients();
    test_gradients_sphere_and_raw();
    return test_finish("test_margin");
}
