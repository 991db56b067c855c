/* margin.h -- margin-based softmax cross entropy, written as shard-local pieces.
 *
 * The classifier is split by class over P shards (parameter servers). For a
 * global batch of N samples, shard p holds the cosines between every sample and
 * its own classes. The loss of sample i is
 *     loss_i = log sum_j exp(z_ij) - z_{i,y_i}
 * and is assembled from per-shard statistics that combine associatively:
 *     (m_p, s_p, t_p) = (max_j z_ij, sum_j exp(z_ij - m_p), target logit or 0)
 *     M = max_p m_p,  S = sum_p s_p exp(m_p - M),  T = sum_p t_p
 *     loss_i = log S + M - T
 * so one process (P = 1) and many run the same code.
 *
 * Logits: z_ij = k_i * cos_ij for the other classes and k_i * f(cos_iy) for the
 * target, where the scale k_i is s (both normalised, the default), ||x_i||
 * (embeddings raw, weights normalised: A-Softmax's form) or 1 with raw logits
 * x_i . w_j in place of the cosines (plain softmax). ||x_i|| is the same on every
 * shard, so the statistics stay shard-local.
 *
 * Target function f (per unit scale):
 *   MARGIN_COMBINED (insightface): f = cos(m1*theta + m2) - m3. ArcFace = (1, 0.5, 0),
 *     CosFace = (1, 0, 0.35..0.4), normalised softmax = (1, 0, 0).
 *   MARGIN_SPHEREFACE (A-Softmax, Liu et al. 2017), integer m = m1 in 1..5:
 *     f = (lambda*cos + psi(theta)) / (1 + lambda),
 *     psi(theta) = (-1)^k cos(m*theta) - 2k for theta in [k*pi/m, (k+1)*pi/m],
 *     lambda annealed by the caller (sphereface_lambda) and stored in Margin.
 *
 * Valid combinations (margin_check):
 *   norm          kind        margins                               fallback
 *   BOTH          COMBINED    m1 > 0, 0 <= m2 < pi, m3 any; s > 0   thmm only with m1 = 1
 *   BOTH          SPHEREFACE  m1 in {1..5}, m2 = m3 = 0; s > 0      none
 *   WEIGHTS       COMBINED    as BOTH; s unused                     as BOTH
 *   WEIGHTS       SPHEREFACE  as BOTH; s unused (the original)      none
 *   NONE          COMBINED    m1 = 1, m2 = m3 = 0 (no margin)       any (unused)
 *   NONE          SPHEREFACE  invalid: psi needs a cosine, so normalised weights
 * lambda must be finite and >= 0 (read by SPHEREFACE only). */
#ifndef ARCFACE_MARGIN_H
#define ARCFACE_MARGIN_H

#include <stddef.h>
#include <stdint.h>

/* What happens when m1*theta + m2 passes pi and cos() would turn back up. */
typedef enum {
    MARGIN_FALLBACK_NONE = 0, /* use the formula as is (insightface 2022+ combined margin) */
    MARGIN_FALLBACK_THMM = 1, /* ArcMarginProduct: cos <= th = cos(pi - m2) -> s*(cos - mm - m3), mm = sin(pi - m2)*m2 */
    MARGIN_FALLBACK_EASY = 2, /* easy_margin: cos <= 0 -> s*(cos - m3) */
} MarginFallback;
/* Both fallbacks have dz/dcos = s. For ArcFace-style margins (m1 = 1) THMM
 * keeps z increasing in cos but is not continuous: at th the fallback starts
 * s*(mm - th - 1) below the margin branch (0.117 s for m2 = 0.5), as in
 * ArcMarginProduct. THMM and EASY are ArcFace devices: for m1 != 1 they apply
 * as written above, which does not make z monotone (margin_check rejects THMM
 * there; MARGIN_SPHEREFACE's psi is the monotone form of cos(m*theta)).
 * The combined form only. */

/* Gradient through the target function f (k is the unit scale, see the top).
 * For SphereFace, EXACT is the true derivative k*(lambda + dpsi/dcos)/(1 + lambda),
 * finite everywhere; the Caffe original back-propagates a rescaled direction
 * instead (its README: "normalize the scale of gradient"), which is not a
 * gradient and is not offered. */
typedef enum {
    MARGIN_GRAD_EXACT = 0,    /* derivative through cos(m1*theta + m2) (MXNet, insightface before 2022):
                                 k*m1*sin(m1*theta + m2)/sin(theta), evaluated at cos clamped to
                                 [-1 + 1e-7, 1 - 1e-7] so it stays finite at cos = +-1 */
    MARGIN_GRAD_STRAIGHT = 1, /* margin applied without its derivative: dz/dcos = k (insightface
                                 2022+); with raw embeddings dz/d||x|| is still f(cos), the value */
} MarginGrad;

typedef enum {
    MARGIN_COMBINED = 0,   /* cos(m1*theta + m2) - m3 */
    MARGIN_SPHEREFACE = 1, /* (lambda*cos + psi_m(theta)) / (1 + lambda), m = m1 */
} MarginKind;

/* Which side of the cosine is normalised. Embeddings normalised with raw
 * weights is no loss of the seed papers and has no value here. */
typedef enum {
    MARGIN_NORM_BOTH = 0,    /* logits s * cos (insightface; the default) */
    MARGIN_NORM_WEIGHTS = 1, /* weights normalised, embeddings raw: logits ||x|| * cos, s unused */
    MARGIN_NORM_NONE = 2,    /* plain softmax: logits x . w_j, no margin, s unused */
} MarginNorm;

/* A zero-initialised tail (kind, norm, lambda) is the combined margin on
 * cosines times s, so {s, m1, m2, m3, fallback, grad} keeps its meaning. */
typedef struct {
    float s, m1, m2, m3;
    MarginFallback fallback;
    MarginGrad grad;
    MarginKind kind;
    MarginNorm norm;
    float lambda; /* SphereFace's annealing weight of this step (sphereface_lambda); 0 = pure psi */
} Margin;

/* Per-sample statistics of one shard, combined over shards by margin_stats_combine. */
typedef struct {
    float max;    /* m: max logit of the shard (or of all shards once combined) */
    float sum;    /* s: sum of exp(z - max) */
    float target; /* t: the target logit if the shard owns the label, else 0 */
} SoftmaxStats;

/* Returns 0 if m is one of the valid combinations listed at the top, else -1
 * with the reason in err (errlen bytes, may be NULL). The functions below do
 * not call it (they compute whatever they are given); configuration code does. */
int margin_check(const Margin *m, char *err, size_t errlen);

/* Returns the target logit z(cos) and, in *dz_dcos (may be NULL), its
 * derivative under m's gradient mode, for a unit scale k (see the top) of s
 * (MARGIN_NORM_BOTH) or 1 (the others: for MARGIN_NORM_WEIGHTS the logit is
 * ||x|| times the result). cos is clamped to [-1, 1] first; the trigonometry
 * runs in double. Without an angular margin (combined, m1 = 1, m2 = 0) z is
 * s*(cos - m3) and dz/dcos is exactly s. With MARGIN_NORM_NONE the input is
 * the raw logit and comes back unchanged (no clamp, no margin; derivative 1).
 * SphereFace's exact derivative is s*(lambda + dpsi/dcos)/(1 + lambda), finite
 * everywhere. STRAIGHT mode gives dz/dcos = s (or 1). Can't fail. */
float margin_target_logit(const Margin *m, float cos, float *dz_dcos);

/* SphereFace's psi for integer m in 1..5 (CHECKed), as a function of c = cos(theta):
 * (-1)^k T_m(c) - 2k with T_m the Chebyshev polynomial (T_m(cos t) = cos(m t)) and
 * k = #{j in 1..m-1 : c < cos(j*pi/m)}, i.e. theta in [k*pi/m, (k+1)*pi/m].
 * c is clamped to [-1, 1]. *dpsi_dc (may be NULL) gets (-1)^k T_m'(c), which is
 * continuous too (0 at the interior boundaries, m^2 at c = 1). psi decreases
 * from 1 at theta = 0 to 1 - 2m at theta = pi. */
double sphereface_psi(int m, double c, double *dpsi_dc);

/* The original A-Softmax annealing: max(lambda_min, base * (1 + gamma*iter)^(-power)).
 * The Caffe layer increments its counter before each forward, so training step
 * t (0-based) uses iter = t + 1; its defaults are base 1000, gamma 0.12,
 * power 1, lambda_min 5 (sphereface_model.prototxt), reaching 5 at iter 1659. */
float sphereface_lambda(double base, double gamma, double power, double lambda_min, int64_t iter);

/* Turns cosines of one shard into logits in place and writes per-sample stats.
 * cos_to_z (N, R): row i holds cos(x_i, w_c) for the shard's classes
 * c = start .. start+R-1; on return it holds z. labels (N) are global class ids;
 * a label outside [start, start+R) means "not mine". target_dz (N) receives
 * dz/dcos of the target column (0 where not owned), needed by the backward.
 * xnorm (N): ||x_i||, read for MARGIN_NORM_WEIGHTS only (CHECKed non-NULL
 * then), may be NULL otherwise. For MARGIN_NORM_NONE cos_to_z holds the raw
 * logits x . w_j, which pass unchanged. With MARGIN_NORM_BOTH m->s must be
 * positive (CHECKed). A shard with R = 0 gets the neutral stats (-inf, 0, 0)
 * and cos_to_z may be NULL. exp() here and in the backward is a vectorised
 * polynomial (relative error below 1e-7; exp(x) = 0 for x < -87). */
void margin_forward(float *cos_to_z, SoftmaxStats *stats, float *target_dz, const int64_t *labels,
                    const float *xnorm, int N, int64_t R, int64_t start, const Margin *m);

/* Associative, commutative combination: into = combine(into, other), per sample.
 * Stats of a shard without classes (max = -inf) are neutral, on either side. */
void margin_stats_combine(SoftmaxStats *into, const SoftmaxStats *other, int N);

/* Loss per sample from combined stats: log S + M - T. */
void margin_loss(float *loss, const SoftmaxStats *combined, int N);

/* In place: z (N, R) -> dcos (N, R), the gradient of scale * sum_i loss_i with
 * respect to the shard's cosines (raw logits for MARGIN_NORM_NONE), given the
 * combined stats and the xnorm of the forward:
 *     dz = scale * (exp(z - M)/S - onehot),   dcos = dz * (k_i, or target_dz for the target)
 * with k_i = s, ||x_i|| or 1 as in the forward. For MARGIN_NORM_WEIGHTS,
 * dxnorm (N) receives this shard's part of d(scale * sum loss)/d||x_i|| =
 * sum_j dz_ij z_ij / ||x_i|| (the shards' parts add up, like their dx); it may
 * be NULL otherwise and is not written then. */
void margin_backward(float *z_to_dcos, float *dxnorm, const SoftmaxStats *combined,
                     const float *target_dz, const int64_t *labels, const float *xnorm, int N,
                     int64_t R, int64_t start, float scale, const Margin *m);

/* Row-wise L2 normalisation: out (N, D) = inp / ||inp||, norms (N) saved for the
 * backward. A zero row stays zero (its norm is clamped to 1e-12, as F.normalize). */
void l2norm_forward(float *out, float *norms, const float *inp, int64_t N, int D);
/* dinp (N, D) += (dout - out * <out, dout>) / norm. */
void l2norm_backward(float *dinp, const float *dout, const float *out, const float *norms,
                     int64_t N, int D);

#endif
