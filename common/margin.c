/* margin.c -- margin-based softmax cross entropy as shard-local pieces (see margin.h). */
#include "margin.h"

#include <math.h>
#include <string.h>

#include "check.h"

/* The exact derivative of cos(m1*theta + m2) with respect to cos(theta) is
 * m1 * sin(m1*theta + m2) / sin(theta), which is unbounded at cos = +-1 (for
 * ArcFace: s * sin(m2) / sin(theta) as theta -> 0). It is evaluated at a cosine
 * kept this far inside (-1, 1), in double, so it stays finite (at most about
 * 1100 * s for m2 = 0.5) while matching the true derivative to 1e-7 elsewhere. */
#define MARGIN_DCOS_EDGE 1e-7

static double clamp(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

float margin_target_logit(const Margin *m, float cosine, float *dz_dcos) {
    const double s = m->s, m1 = m->m1, m2 = m->m2, m3 = m->m3;
    const double c = clamp(cosine, -1.0, 1.0); /* NaN passes through */
    double z, dz;
    if (m1 == 1.0 && m2 == 0.0) {
        /* CosFace and plain normalised softmax: no angle needed, and the
         * derivative is s exactly. */
        z = s * (c - m3);
        dz = s;
    } else if (m->fallback == MARGIN_FALLBACK_EASY && c <= 0.0) {
        z = s * (c - m3);
        dz = s;
    } else if (m->fallback == MARGIN_FALLBACK_THMM && c <= cos(M_PI - m2)) {
        /* ArcMarginProduct: th = cos(pi - m2) is where theta + m2 reaches pi
         * (for m1 = 1). The fallback cos - mm, mm = sin(pi - m2) * m2, lies
         * below the margin branch's value there (-1), so z stays increasing in
         * cos but steps down by s * (mm - th - 1) (0.117 s for m2 = 0.5). */
        z = s * (c - sin(M_PI - m2) * m2 - m3);
        dz = s;
    } else {
        z = s * (cos(m1 * acos(c) + m2) - m3);
        const double cd = clamp(c, -1.0 + MARGIN_DCOS_EDGE, 1.0 - MARGIN_DCOS_EDGE);
        const double td = acos(cd);
        /* For m1 = 1 and m2 = 0 the ratio would be x / x = 1 exactly; that
         * case is handled above anyway. */
        dz = s * m1 * sin(m1 * td + m2) / sin(td);
    }
    if (m->grad == MARGIN_GRAD_STRAIGHT) dz = s;
    if (dz_dcos) *dz_dcos = (float)dz;
    return (float)z;
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

static int owns(int64_t label, int64_t start, int64_t R) { return label >= start && label - start < R; }

void margin_forward(float *cos_to_z, SoftmaxStats *stats, float *target_dz, const int64_t *labels,
                    int N, int64_t R, int64_t start, const Margin *m) {
    CHECK(m->s > 0, "margin scale s = %g must be positive", (double)m->s);
    if (R == 0) { /* a server without classes: neutral stats */
        for (int i = 0; i < N; i++) {
            stats[i] = (SoftmaxStats){-INFINITY, 0.0f, 0.0f};
            target_dz[i] = 0;
        }
        return;
    }
    for (int i = 0; i < N; i++) {
        float *z = cos_to_z + (int64_t)i * R;
        float t = 0, dz = 0;
        float mx;
        if (owns(labels[i], start, R)) {
            const int64_t j = labels[i] - start;
            t = margin_target_logit(m, z[j], &dz);
            z[j] = -INFINITY; /* s * -inf stays out of the max (s > 0) */
            mx = scale_and_max(z, R, m->s);
            z[j] = t;
            if (t > mx) mx = t;
        } else {
            mx = scale_and_max(z, R, m->s);
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

void margin_backward(float *z_to_dcos, const SoftmaxStats *combined, const float *target_dz,
                     const int64_t *labels, int N, int64_t R, int64_t start, float scale,
                     const Margin *m) {
    if (R == 0) return;
    for (int i = 0; i < N; i++) {
        float *z = z_to_dcos + (int64_t)i * R;
        const float M = combined[i].max, S = combined[i].sum;
        if (owns(labels[i], start, R)) {
            const int64_t j = labels[i] - start;
            const float p = softmax_exp(z[j] - M) / S;
            scaled_exp(z, R, M, scale * m->s / S);
            z[j] = scale * (p - 1.0f) * target_dz[i];
        } else {
            scaled_exp(z, R, M, scale * m->s / S);
        }
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
