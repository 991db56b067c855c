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
 * Target logit (insightface's combined margin): z = s * (cos(m1*theta + m2) - m3),
 * other logits z = s * cos(theta). ArcFace = (1, 0.5, 0), CosFace = (1, 0, 0.35..0.4),
 * normalised softmax = (1, 0, 0). */
#ifndef ARCFACE_MARGIN_H
#define ARCFACE_MARGIN_H

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
 * as written above, which does not make z monotone (SphereFace's psi would). */

typedef enum {
    MARGIN_GRAD_EXACT = 0,    /* derivative through cos(m1*theta + m2) (MXNet, insightface before 2022):
                                 s*m1*sin(m1*theta + m2)/sin(theta), evaluated at cos clamped to
                                 [-1 + 1e-7, 1 - 1e-7] so it stays finite at cos = +-1 */
    MARGIN_GRAD_STRAIGHT = 1, /* margin applied without its derivative: dz/dcos = s (insightface 2022+) */
} MarginGrad;

typedef struct {
    float s, m1, m2, m3;
    MarginFallback fallback;
    MarginGrad grad;
} Margin;

/* Per-sample statistics of one shard, combined over shards by margin_stats_combine. */
typedef struct {
    float max;    /* m: max logit of the shard (or of all shards once combined) */
    float sum;    /* s: sum of exp(z - max) */
    float target; /* t: the target logit if the shard owns the label, else 0 */
} SoftmaxStats;

/* Returns the target logit z(cos) and, in *dz_dcos (may be NULL), its
 * derivative under m's gradient mode. cos is clamped to [-1, 1] first; the
 * trigonometry runs in double. Without an angular margin (m1 = 1, m2 = 0) z is
 * s*(cos - m3) and dz/dcos is exactly s. Can't fail. */
float margin_target_logit(const Margin *m, float cos, float *dz_dcos);

/* Turns cosines of one shard into logits in place and writes per-sample stats.
 * cos_to_z (N, R): row i holds cos(x_i, w_c) for the shard's classes
 * c = start .. start+R-1; on return it holds z. labels (N) are global class ids;
 * a label outside [start, start+R) means "not mine". target_dz (N) receives
 * dz/dcos of the target column (0 where not owned), needed by the backward.
 * m->s must be positive (CHECKed). A shard with R = 0 gets the neutral stats
 * (-inf, 0, 0) and cos_to_z may be NULL. exp() here and in the backward is a
 * vectorised polynomial (relative error below 1e-7; exp(x) = 0 for x < -87). */
void margin_forward(float *cos_to_z, SoftmaxStats *stats, float *target_dz, const int64_t *labels,
                    int N, int64_t R, int64_t start, const Margin *m);

/* Associative, commutative combination: into = combine(into, other), per sample.
 * Stats of a shard without classes (max = -inf) are neutral, on either side. */
void margin_stats_combine(SoftmaxStats *into, const SoftmaxStats *other, int N);

/* Loss per sample from combined stats: log S + M - T. */
void margin_loss(float *loss, const SoftmaxStats *combined, int N);

/* In place: z (N, R) -> dcos (N, R), the gradient of scale * sum_i loss_i with
 * respect to the shard's cosines, given the combined stats:
 *     dz = scale * (exp(z - M)/S - onehot),   dcos = dz * (s, or target_dz for the target). */
void margin_backward(float *z_to_dcos, const SoftmaxStats *combined, const float *target_dz,
                     const int64_t *labels, int N, int64_t R, int64_t start, float scale,
                     const Margin *m);

/* Row-wise L2 normalisation: out (N, D) = inp / ||inp||, norms (N) saved for the
 * backward. A zero row stays zero (its norm is clamped to 1e-12, as F.normalize). */
void l2norm_forward(float *out, float *norms, const float *inp, int64_t N, int D);
/* dinp (N, D) += (dout - out * <out, dout>) / norm. */
void l2norm_backward(float *dinp, const float *dout, const float *out, const float *norms,
                     int64_t N, int D);

#endif
