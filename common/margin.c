/* margin.c -- margin-based softmax cross entropy as shard-local pieces (see margin.h). */
#include "margin.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

/* The exact derivative of cos(m1*theta + m2) with respect to cos(theta) is
 * m1 * sin(m1*theta + m2) / sin(theta), which is unbounded at cos = +-1 (for
 * ArcFace: s * sin(m2) / sin(theta) as theta -> 0). It is evaluated at a cosine
 * kept this far inside (-1, 1), in double, so it stays finite (at most about
 * 1100 * s for m2 = 0.5) while matching the true derivative to 1e-7 elsewhere. */
#define MARGIN_DCOS_EDGE 1e-7

static double clamp(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

/* margin_check's failure: the reason into err, return -1. */
#define REJECT(...)                                            \
    do {                                                       \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__); \
        return -1;                                             \
    } while (0)

int margin_check(const Margin *m, char *err, size_t errlen) {
    if (m->kind != MARGIN_COMBINED && m->kind != MARGIN_SPHEREFACE)
        REJECT("margin: unknown kind %d (combined = 0, sphereface = 1)", (int)m->kind);
    if (m->norm != MARGIN_NORM_BOTH && m->norm != MARGIN_NORM_WEIGHTS &&
        m->norm != MARGIN_NORM_NONE)
        REJECT("margin: unknown normalisation %d (both = 0, weights = 1, none = 2)", (int)m->norm);
    if (m->fallback != MARGIN_FALLBACK_NONE && m->fallback != MARGIN_FALLBACK_THMM &&
        m->fallback != MARGIN_FALLBACK_EASY)
        REJECT("margin: unknown fallback %d", (int)m->fallback);
    if (m->grad != MARGIN_GRAD_EXACT && m->grad != MARGIN_GRAD_STRAIGHT)
        REJECT("margin: unknown gradient mode %d", (int)m->grad);
    if (m->norm == MARGIN_NORM_BOTH && !(m->s > 0 && isfinite(m->s)))
        REJECT("margin: scale s = %g must be positive and finite with normalised embeddings",
               (double)m->s);
    if (!isfinite(m->m1) || !isfinite(m->m2) || !isfinite(m->m3))
        REJECT("margin: m1 = %g, m2 = %g, m3 = %g must be finite", (double)m->m1,
               (double)m->m2, (double)m->m3);
    if (m->kind == MARGIN_SPHEREFACE) {
        if (m->norm == MARGIN_NORM_NONE)
            REJECT("margin: sphereface needs normalised weights (psi is a function of the "
                   "angle); use normalisation 'weights' (the original) or 'both'");
        if (!(m->m1 >= 1 && m->m1 <= 5 && m->m1 == floorf(m->m1)))
            REJECT("margin: sphereface m = m1 = %g must be an integer in 1..5", (double)m->m1);
        if (m->m2 != 0 || m->m3 != 0)
            REJECT("margin: sphereface takes no m2, m3 (got %g, %g); use kind combined to "
                   "mix margins", (double)m->m2, (double)m->m3);
        if (m->fallback != MARGIN_FALLBACK_NONE)
            REJECT("margin: sphereface's psi is monotone by construction and takes no "
                   "fallback; set the fallback to none");
        if (!(m->lambda >= 0 && isfinite(m->lambda)))
            REJECT("margin: sphereface lambda = %g must be finite and >= 0", (double)m->lambda);
        return 0;
    }
    if (m->norm == MARGIN_NORM_NONE && (m->m1 != 1 || m->m2 != 0 || m->m3 != 0))
        REJECT("margin: with neither side normalised there is no angle to put a margin on; "
               "m1, m2, m3 must be 1, 0, 0 (got %g, %g, %g)", (double)m->m1, (double)m->m2,
               (double)m->m3);
    if (!(m->m1 > 0))
        REJECT("margin: m1 = %g must be positive", (double)m->m1);
    if (!(m->m2 >= 0 && m->m2 < M_PI))
        REJECT("margin: m2 = %g must be in [0, pi)", (double)m->m2);
    if (m->fallback == MARGIN_FALLBACK_THMM && m->m1 != 1)
        REJECT("margin: the thmm fallback needs m1 = 1, but m1 = %g; use easy or none",
               (double)m->m1);
    return 0;
}

#undef REJECT

double sphereface_psi(int m, double c, double *dpsi_dc) {
    CHECK(m >= 1 && m <= 5, "sphereface m = %d, must be in 1..5", m);
    c = clamp(c, -1.0, 1.0);
    int k = 0;
    for (int j = 1; j < m; j++) k += c < cos(j * M_PI / m);
    /* T_m(c) = cos(m theta) and its derivative, by Chebyshev's recurrence
     * written out. */
    const double c2 = c * c;
    double t, dt;
    switch (m) {
    case 1: t = c, dt = 1; break;
    case 2: t = 2 * c2 - 1, dt = 4 * c; break;
    case 3: t = (4 * c2 - 3) * c, dt = 12 * c2 - 3; break;
    case 4: t = (8 * c2 - 8) * c2 + 1, dt = (32 * c2 - 16) * c; break;
    default: t = ((16 * c2 - 20) * c2 + 5) * c, dt = (80 * c2 - 60) * c2 + 5; break;
    }
    const double sign = k % 2 ? -1.0 : 1.0;
    if (dpsi_dc) *dpsi_dc = sign * dt;
    return sign * t - 2.0 * k;
}

float sphereface_lambda(double base, double gamma, double power, double lambda_min, int64_t iter) {
    const double l = base * pow(1.0 + gamma * (double)iter, -power);
    return (float)(l > lambda_min ? l : lambda_min);
}

/* f(c) per unit scale (see margin.h) and its exact derivative, c in [-1, 1]. */
static double combined_unit(const Margin *m, double c, double *df) {
    const double m1 = m->m1, m2 = m->m2, m3 = m->m3;
    if (m1 == 1.0 && m2 == 0.0) {
        /* CosFace and plain normalised softmax: no angle needed, and the
         * derivative is 1 exactly. */
        *df = 1;
        return c - m3;
    }
    if (m->fallback == MARGIN_FALLBACK_EASY && c <= 0.0) {
        *df = 1;
        return c - m3;
    }
    if (m->fallback == MARGIN_FALLBACK_THMM && c <= cos(M_PI - m2)) {
        /* ArcMarginProduct: th = cos(pi - m2) is where theta + m2 reaches pi
         * (for m1 = 1). The fallback cos - mm, mm = sin(pi - m2) * m2, lies
         * below the margin branch's value there (-1), so z stays increasing in
         * cos but steps down by s * (mm - th - 1) (0.117 s for m2 = 0.5). */
        *df = 1;
        return c - sin(M_PI - m2) * m2 - m3;
    }
    const double cd = clamp(c, -1.0 + MARGIN_DCOS_EDGE, 1.0 - MARGIN_DCOS_EDGE);
    const double td = acos(cd);
    /* For m1 = 1 and m2 = 0 the ratio would be x / x = 1 exactly; that case is
     * handled above anyway. */
    *df = m1 * sin(m1 * td + m2) / sin(td);
    return cos(m1 * acos(c) + m2) - m3;
}

static double sphereface_unit(const Margin *m, double c, double *df) {
    const double lambda = m->lambda;
    double dpsi;
    const double psi = sphereface_psi((int)m->m1, c, &dpsi);
    *df = (lambda + dpsi) / (1.0 + lambda);
    return (lambda * c + psi) / (1.0 + lambda);
}

/* The target logit k * f(c) and dz/dc for the unit scale k, in double. */
static double target_logit(const Margin *m, double c, double k, double *dz) {
    if (m->norm == MARGIN_NORM_NONE) { /* a raw logit, no margin (margin_check) */
        *dz = k;
        return k * c;
    }
    c = clamp(c, -1.0, 1.0); /* NaN passes through */
    double df;
    const double f =
        m->kind == MARGIN_SPHEREFACE ? sphereface_unit(m, c, &df) : combined_unit(m, c, &df);
    if (m->grad == MARGIN_GRAD_STRAIGHT) df = 1;
    *dz = k * df;
    return k * f;
}

float margin_target_logit(const Margin *m, float cosine, float *dz_dcos) {
    double dz;
    const float z = (float)target_logit(m, cosine, m->norm == MARGIN_NORM_BOTH ? m->s : 1.0, &dz);
    if (dz_dcos) *dz_dcos = (float)dz;
    return z;
}

/* ---- exp for the softmax passes ----
 *
 * expf is called N * R times per pass (25.6M for a 256 x 100k shard), and
 * glibc's scalar expf does not vectorise. This one is branch-free so that the
 * fixed-width blocks below compile to SIMD code even at -O2. It is Cephes'
 * expf: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so n*C1 is exact),
 * exp(r) = 1 + r + r^2 P(r), then n added to the exponent bits; relative
 * error below 1e-7 on [-87, 0] (measured: 8.3e-8). n is rounded with the 1.5 * 2^23 trick (round to nearest
 * even, plain arithmetic). Inputs are z - max <= 0; below -87 the result is 0
 * (exp(-87) < 2e-38 is negligible against the max term, which is 1), which
 * also keeps 2^n a normal number. */
static inline float softmax_exp(float x) {
    const float xc = x < -87.0f ? -87.0f : x;
    const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        float f;
        int32_t i;
    } u = {p};
    u.i += (int32_t)n * (1 << 23);
    return x < -87.0f ? 0.0f : u.f;
}

#define BLOCK 16 /* floats per SIMD block of the row loops (one AVX-512 register) */

/* Max of z (n) and, in the same pass, z = s * cos. -INFINITY when n == 0. */
static float scale_and_max(float *z, int64_t n, float s) {
    float mx[BLOCK];
    for (int k = 0; k < BLOCK; k++) mx[k] = -INFINITY;
    int64_t j = 0;
    for (; j + BLOCK <= n; j += BLOCK)
        for (int k = 0; k < BLOCK; k++) {
            const float v = s * z[j + k];
            z[j + k] = v;
            mx[k] = v > mx[k] ? v : mx[k];
        }
    for (; j < n; j++) {
        z[j] *= s;
        mx[0] = z[j] > mx[0] ? z[j] : mx[0];
    }
    float best = -INFINITY;
    for (int k = 0; k < BLOCK; k++) best = mx[k] > best ? mx[k] : best;
    return best;
}

static float sum_exp(const float *z, int64_t n, float max) {
    float acc[BLOCK] = {0};
    int64_t j = 0;
    for (; j + BLOCK <= n; j += BLOCK)
        for (int k = 0; k < BLOCK; k++) acc[k] += softmax_exp(z[j + k] - max);
    for (; j < n; j++) acc[0] += softmax_exp(z[j] - max);
    double total = 0;
    for (int k = 0; k < BLOCK; k++) total += acc[k];
    return (float)total;
}

/* z (n) -> k * exp(z - max) in place. */
static void scaled_exp(float *z, int64_t n, float max, float k) {
    int64_t j = 0;
    for (; j + BLOCK <= n; j += BLOCK)
        for (int q = 0; q < BLOCK; q++) z[j + q] = k * softmax_exp(z[j + q] - max);
    for (; j < n; j++) z[j] = k * softmax_exp(z[j] - max);
}

/* z (n) -> k * exp(z - max) in place; returns sum_j exp(z_j - max) * z_j of
 * the values before. */
static double scaled_exp_dot(float *z, int64_t n, float max, float k) {
    float acc[BLOCK] = {0};
    int64_t j = 0;
    for (; j + BLOCK <= n; j += BLOCK)
        for (int q = 0; q < BLOCK; q++) {
            const float e = softmax_exp(z[j + q] - max);
            acc[q] += e * z[j + q];
            z[j + q] = k * e;
        }
    for (; j < n; j++) {
        const float e = softmax_exp(z[j] - max);
        acc[0] += e * z[j];
        z[j] = k * e;
    }
    double total = 0;
    for (int q = 0; q < BLOCK; q++) total += acc[q];
    return total;
}

static int owns(int64_t label, int64_t start, int64_t R) { return label >= start && label - start < R; }

/* The unit scale k_i of sample i's logits (see margin.h). */
static float unit_scale(const Margin *m, const float *xnorm, int i) {
    return m->norm == MARGIN_NORM_BOTH ? m->s : m->norm == MARGIN_NORM_WEIGHTS ? xnorm[i] : 1.0f;
}

void margin_forward(float *cos_to_z, SoftmaxStats *stats, float *target_dz, const int64_t *labels,
                    const float *xnorm, int N, int64_t R, int64_t start, const Margin *m) {
    if (m->norm == MARGIN_NORM_BOTH)
        CHECK(m->s > 0, "margin scale s = %g must be positive", (double)m->s);
    if (m->norm == MARGIN_NORM_WEIGHTS)
        CHECK(xnorm != NULL, "raw embeddings need their norms");
    if (R == 0) { /* a server without classes: neutral stats */
        for (int i = 0; i < N; i++) {
            stats[i] = (SoftmaxStats){-INFINITY, 0.0f, 0.0f};
            target_dz[i] = 0;
        }
        return;
    }
    for (int i = 0; i < N; i++) {
        float *z = cos_to_z + (int64_t)i * R;
        /* k > 0: s (CHECKed), a norm (clamped to 1e-12 by l2norm_forward) or 1 */
        const float k = unit_scale(m, xnorm, i);
        float t = 0, dz = 0;
        float mx;
        if (owns(labels[i], start, R)) {
            const int64_t j = labels[i] - start;
            double dzd;
            t = (float)target_logit(m, z[j], k, &dzd);
            dz = (float)dzd;
            z[j] = -INFINITY; /* k * -inf stays out of the max (k > 0) */
            mx = scale_and_max(z, R, k);
            z[j] = t;
            if (t > mx) mx = t;
        } else {
            mx = scale_and_max(z, R, k);
        }
        stats[i].max = mx;
        stats[i].sum = sum_exp(z, R, mx);
        stats[i].target = t;
        target_dz[i] = dz;
    }
}

void margin_stats_combine(SoftmaxStats *into, const SoftmaxStats *other, int N) {
    for (int i = 0; i < N; i++) {
        const SoftmaxStats a = into[i], b = other[i];
        const float M = a.max > b.max ? a.max : b.max;
        float S = 0;
        /* A shard with no classes has max = -inf and sum = 0; skipping it keeps
         * -inf - -inf (NaN) out of the sum. */
        if (a.max != -INFINITY) S += a.sum * expf(a.max - M);
        if (b.max != -INFINITY) S += b.sum * expf(b.max - M);
        into[i].max = M;
        into[i].sum = S;
        into[i].target = a.target + b.target;
    }
}

void margin_loss(float *loss, const SoftmaxStats *combined, int N) {
    for (int i = 0; i < N; i++)
        loss[i] = logf(combined[i].sum) + combined[i].max - combined[i].target;
}

void margin_backward(float *z_to_dcos, float *dxnorm, const SoftmaxStats *combined,
                     const float *target_dz, const int64_t *labels, const float *xnorm, int N,
                     int64_t R, int64_t start, float scale, const Margin *m) {
    if (R == 0) return;
    const int raw_x = m->norm == MARGIN_NORM_WEIGHTS;
    if (raw_x) CHECK(xnorm != NULL && dxnorm != NULL, "raw embeddings need xnorm and dxnorm");
    for (int i = 0; i < N; i++) {
        float *z = z_to_dcos + (int64_t)i * R;
        const float M = combined[i].max, S = combined[i].sum, k = unit_scale(m, xnorm, i);
        const int own = owns(labels[i], start, R);
        const int64_t j = own ? labels[i] - start : 0;
        const float p = own ? softmax_exp(z[j] - M) / S : 0.0f, zt = own ? z[j] : 0.0f;
        if (raw_x) {
            /* z_ij = ||x_i|| g_j(cos_ij), so d/d||x_i|| = sum_j dz_ij z_ij / ||x_i||
             * with dz_ij = scale (e_ij / S - onehot). */
            const double dot = scaled_exp_dot(z, R, M, scale * k / S);
            dxnorm[i] = (float)((scale / S * dot - (double)scale * zt) / k);
        } else {
            scaled_exp(z, R, M, scale * k / S);
        }
        if (own) z[j] = scale * (p - 1.0f) * target_dz[i];
    }
}

void l2norm_forward(float *out, float *norms, const float *inp, int64_t N, int D) {
    for (int64_t i = 0; i < N; i++) {
        const float *x = inp + i * D;
        float *y = out + i * D;
        float acc[BLOCK] = {0};
        int d = 0;
        for (; d + BLOCK <= D; d += BLOCK)
            for (int k = 0; k < BLOCK; k++) acc[k] += x[d + k] * x[d + k];
        for (; d < D; d++) acc[0] += x[d] * x[d];
        double ss = 0;
        for (int k = 0; k < BLOCK; k++) ss += acc[k];
        float norm = (float)sqrt(ss);
        if (norm < 1e-12f) norm = 1e-12f;
        const float inv = 1.0f / norm;
        for (d = 0; d + BLOCK <= D; d += BLOCK)
#pragma GCC ivdep /* out may be inp itself, never a shifted copy of it */
            for (int k = 0; k < BLOCK; k++) y[d + k] = x[d + k] * inv;
        for (; d < D; d++) y[d] = x[d] * inv;
        norms[i] = norm;
    }
}

void l2norm_backward(float *dinp, const float *dout, const float *out, const float *norms,
                     int64_t N, int D) {
    for (int64_t i = 0; i < N; i++) {
        const float *g = dout + i * D, *y = out + i * D;
        float *dx = dinp + i * D;
        float acc[BLOCK] = {0};
        int d = 0;
        for (; d + BLOCK <= D; d += BLOCK)
            for (int k = 0; k < BLOCK; k++) acc[k] += y[d + k] * g[d + k];
        for (; d < D; d++) acc[0] += y[d] * g[d];
        double dot = 0;
        for (int k = 0; k < BLOCK; k++) dot += acc[k];
        const float yg = (float)dot, inv = 1.0f / norms[i];
        for (d = 0; d + BLOCK <= D; d += BLOCK)
#pragma GCC ivdep
            for (int k = 0; k < BLOCK; k++) dx[d + k] += (g[d + k] - y[d + k] * yg) * inv;
        for (; d < D; d++) dx[d] += (g[d] - y[d] * yg) * inv;
    }
}
