/* reference_layers.c -- naive, obviously-correct layer loops the fast kernels are tested against.
 */
#include "reference_layers.h"

#include <math.h>
#include <stdlib.h>

#include "check.h"

/* Input pixel of output (oh, ow) under kernel tap (kh, kw); -1 when it falls in the padding. */
static long conv_src(const Conv2dShape *s, int c, int oh, int ow, int kh, int kw) {
    int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
    if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) return -1;
    return ((long)c * s->H + ih) * s->W + iw;
}

void conv2d_forward_reference(float *out, const float *inp, const float *weight, int N,
                              const Conv2dShape *s) {
    const int K = s->K;
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * s->C * s->H * s->W;
        for (int o = 0; o < s->OC; o++)
            for (int oh = 0; oh < s->OH; oh++)
                for (int ow = 0; ow < s->OW; ow++) {
                    double acc = 0;
                    for (int c = 0; c < s->C; c++)
                        for (int kh = 0; kh < K; kh++)
                            for (int kw = 0; kw < K; kw++) {
                                long src = conv_src(s, c, oh, ow, kh, kw);
                                if (src < 0) continue;
                                acc += (double)weight[((o * s->C + c) * K + kh) * K + kw] * x[src];
                            }
                    out[(((long)n * s->OC + o) * s->OH + oh) * s->OW + ow] = (float)acc;
                }
    }
}

/* Every (output, tap) pair contributes weight*dout to dinp and inp*dout to dweight. Sums
 * are gathered in double scratch first so the reference rounds once per element. */
void conv2d_backward_reference(float *dinp, float *dweight, const float *dout, const float *inp,
                               const float *weight, int N, const Conv2dShape *s) {
    const int K = s->K;
    const long in_size = (long)s->C * s->H * s->W, w_size = (long)s->OC * s->C * K * K;
    double *gx = xcalloc_aligned(in_size, sizeof(double));
    double *gw = xcalloc_aligned(w_size, sizeof(double));
    for (int n = 0; n < N; n++) {
        const float *x = inp + n * in_size;
        for (long i = 0; i < in_size; i++) gx[i] = 0;
        for (int o = 0; o < s->OC; o++)
            for (int oh = 0; oh < s->OH; oh++)
                for (int ow = 0; ow < s->OW; ow++) {
                    double dy = dout[(((long)n * s->OC + o) * s->OH + oh) * s->OW + ow];
                    for (int c = 0; c < s->C; c++)
                        for (int kh = 0; kh < K; kh++)
                            for (int kw = 0; kw < K; kw++) {
                                long src = conv_src(s, c, oh, ow, kh, kw);
                                if (src < 0) continue;
                                long wi = ((o * s->C + c) * K + kh) * K + kw;
                                gx[src] += weight[wi] * dy;
                                gw[wi] += x[src] * dy;
                            }
                }
        if (dinp)
            for (long i = 0; i < in_size; i++) dinp[n * in_size + i] += (float)gx[i];
    }
    if (dweight)
        for (long i = 0; i < w_size; i++) dweight[i] += (float)gw[i];
    free(gx);
    free(gw);
}

/* Value i of channel c in group g, i in [0, group*HW): sample g*group + i/HW, pixel i%HW. */
static long bn_index(int g, int c, long i, int C, int HW, int group) {
    long n = (long)g * group + i / HW;
    return (n * C + c) * HW + i % HW;
}

void batchnorm_forward_train_reference(float *out, float *save_mean, float *save_invstd,
                                       float *running_mean, float *running_var, const float *inp,
                                       const float *gamma, const float *beta, int N, int C, int HW,
                                       int group, float eps, float momentum) {
    const long M = (long)group * HW;
    for (int g = 0; g < N / group; g++)
        for (int c = 0; c < C; c++) {
            double mean = 0, var = 0;
            for (long i = 0; i < M; i++) mean += inp[bn_index(g, c, i, C, HW, group)];
            mean /= M;
            for (long i = 0; i < M; i++) {
                double d = inp[bn_index(g, c, i, C, HW, group)] - mean;
                var += d * d;
            }
            var /= M;
            double invstd = 1.0 / sqrt(var + eps);
            for (long i = 0; i < M; i++) {
                long k = bn_index(g, c, i, C, HW, group);
                out[k] = (float)((inp[k] - mean) * invstd * gamma[c] + beta[c]);
            }
            save_mean[g * C + c] = (float)mean;
            save_invstd[g * C + c] = (float)invstd;
            double unbiased = var * M / (M - 1);
            running_mean[c] = (float)((1 - momentum) * running_mean[c] + momentum * mean);
            running_var[c] = (float)((1 - momentum) * running_var[c] + momentum * unbiased);
        }
}

/* The chain rule step by step through xhat, var and mean, as in the original BN paper
 * (a different route from the closed form the fast kernel uses). */
void batchnorm_backward_reference(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                  const float *inp, const float *gamma, const float *save_mean,
                                  const float *save_invstd, int N, int C, int HW, int group) {
    const long M = (long)group * HW;
    for (int g = 0; g < N / group; g++)
        for (int c = 0; c < C; c++) {
            double mean = save_mean[g * C + c], invstd = save_invstd[g * C + c];
            double dvar = 0, dmean = 0, sum_xc = 0, gg = 0, gb = 0;
            for (long i = 0; i < M; i++) {
                long k = bn_index(g, c, i, C, HW, group);
                double xc = inp[k] - mean, dxhat = (double)dout[k] * gamma[c];
                dvar += dxhat * xc * -0.5 * invstd * invstd * invstd;
                dmean += -dxhat * invstd;
                sum_xc += xc;
                gg += dout[k] * xc * invstd;
                gb += dout[k];
            }
            dmean += dvar * -2.0 * sum_xc / M;
            if (dinp)
                for (long i = 0; i < M; i++) {
                    long k = bn_index(g, c, i, C, HW, group);
                    double xc = inp[k] - mean, dxhat = (double)dout[k] * gamma[c];
                    dinp[k] += (float)(dxhat * invstd + dvar * 2.0 * xc / M + dmean / M);
                }
            if (dgamma) dgamma[c] += (float)gg;
            if (dbeta) dbeta[c] += (float)gb;
        }
}

void linear_forward_reference(float *out, const float *inp, const float *weight, const float *bias,
                              int N, int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double acc = bias ? bias[o] : 0.0;
            for (int c = 0; c < C; c++)
                acc += (double)inp[(long)n * C + c] * weight[(long)o * C + c];
            out[(long)n * OC + o] = (float)acc;
        }
}

void linear_backward_reference(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int N, int C, int OC) {
    if (dinp)
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                double acc = 0;
                for (int o = 0; o < OC; o++)
                    acc += (double)dout[(long)n * OC + o] * weight[(long)o * C + c];
                dinp[(long)n * C + c] += (float)acc;
            }
    if (dweight)
        for (int o = 0; o < OC; o++)
            for (int c = 0; c < C; c++) {
                double acc = 0;
                for (int n = 0; n < N; n++)
                    acc += (double)dout[(long)n * OC + o] * inp[(long)n * C + c];
                dweight[(long)o * C + c] += (float)acc;
            }
    if (dbias)
        for (int o = 0; o < OC; o++) {
            double acc = 0;
            for (int n = 0; n < N; n++) acc += dout[(long)n * OC + o];
            dbias[o] += (float)acc;
        }
}
