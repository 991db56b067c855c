/* layers.h -- forward and backward passes of the backbone's layers.
 *
 * Conventions (as llm.c): free functions over flat fp32 arrays in NCHW order;
 * outputs first, then inputs, then sizes. Forward functions overwrite their
 * output. Backward functions ADD into every gradient they are given (dinp,
 * dweight, ...), so zeroing gradients is an explicit call by the owner; a
 * NULL gradient pointer means "not needed" (the input image, a frozen gamma).
 * No function allocates: workspaces are passed in, sized by the *_floats()
 * helpers, and reused every step.
 *
 * The heavy kernels (conv2d, batchnorm, linear) have naive *_reference twins in
 * tests/support/reference_layers.c that tests/test_layers.c compares them against;
 * every gradient of every layer is also checked there by finite differences. */
#ifndef ARCFACE_LAYERS_H
#define ARCFACE_LAYERS_H

#include <stddef.h>
#include <stdint.h>

/* ---- conv2d: no bias (every convolution of IResNet is followed by BN) ---- */

typedef struct {
    int C, H, W;     /* input channels and spatial size */
    int OC, K;       /* output channels, square kernel size */
    int stride, pad; /* same in both directions */
    int OH, OW;      /* derived: (H + 2*pad - K) / stride + 1 */
} Conv2dShape;

/* Fills every field, OH and OW included. Sizes must be positive and the
 * kernel must fit the padded input (CHECKed). */
Conv2dShape conv2d_shape(int C, int H, int W, int OC, int K, int stride, int pad);

/* Images conv2d_forward/backward put into one SGEMM, for a batch of N: enough
 * that its column count (images x OH*OW) is long, at most N. */
int conv2d_images_per_gemm(const Conv2dShape *s, int N);

/* Floats of workspace conv2d_forward/backward need for batches of up to
 * max_batch images (the im2col matrix of conv2d_images_per_gemm images and a
 * staging block for their outputs; 0 for a 1x1, stride-1, unpadded convolution). */
size_t conv2d_workspace_floats(const Conv2dShape *s, int max_batch);

/* out (N,OC,OH,OW) = conv(inp (N,C,H,W), weight (OC,C,K,K)). */
void conv2d_forward(float *out, const float *inp, const float *weight, int N,
                    const Conv2dShape *s, float *workspace);

/* dinp (N,C,H,W) += conv^T(dout); dweight (OC,C,K,K) += dout (x) im2col(inp).
 * dinp may be NULL (the stem's input image); so may dweight. The workspace is the
 * same one conv2d_forward uses; its contents are scratch between calls. */
void conv2d_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                     const float *weight, int N, const Conv2dShape *s, float *workspace);

/* ---- batch normalisation (BatchNorm2d with HW = H*W, BatchNorm1d with HW = 1) ----
 *
 * Training mode normalises with the statistics of groups of `group` consecutive
 * samples ("ghost" batch norm): group == N is ordinary batch norm. Splitting a
 * batch into groups is what lets one process reproduce W workers exactly, each
 * worker's BN seeing only its own samples, as DDP does. N must be a multiple of
 * group. The biased variance normalises; the unbiased one feeds the running
 * average (as PyTorch), which is updated once per group in order:
 * running = (1 - momentum) * running + momentum * batch_stat. */

/* out, inp (N,C,HW); gamma, beta, running_mean, running_var (C);
 * save_mean, save_invstd (N/group, C) are written for the backward pass.
 * group*HW must exceed 1 (CHECKed; PyTorch refuses it too): the unbiased
 * variance of a single value is undefined. */
void batchnorm_forward_train(float *out, float *save_mean, float *save_invstd,
                             float *running_mean, float *running_var, const float *inp,
                             const float *gamma, const float *beta, int N, int C, int HW,
                             int group, float eps, float momentum);

/* out = the training forward's output, recomputed from its save_mean/save_invstd
 * (same group): bit for bit what batchnorm_forward_train wrote, so a backward pass
 * can recompute a normalised activation instead of keeping it. */
void batchnorm_apply(float *out, const float *inp, const float *gamma, const float *beta,
                     const float *save_mean, const float *save_invstd, int N, int C, int HW,
                     int group);

/* Inference with the running statistics; running_* are not changed. */
void batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, int N, int C,
                            int HW, float eps);

/* Backward of batchnorm_forward_train with the same group, inp and gamma, and the
 * save_mean/save_invstd that call wrote. dgamma may be NULL (frozen gamma, as
 * IResNet's final BatchNorm1d: gamma still scales dinp); dinp and dbeta may be NULL. */
void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                        const float *inp, const float *gamma, const float *save_mean,
                        const float *save_invstd, int N, int C, int HW, int group);

/* ---- pointwise ---- */

/* PReLU with one slope per channel: out = x > 0 ? x : alpha[c] * x.
 * out, inp (N,C,HW); alpha (C). out may alias inp in forward, but the backward
 * pass needs the original inp. Backward (dinp, dalpha may be NULL):
 * dinp += x > 0 ? dout : alpha[c] * dout; dalpha[c] += sum over x <= 0 of dout * x. */
void prelu_forward(float *out, const float *inp, const float *alpha, int N, int C, int HW);
void prelu_backward(float *dinp, float *dalpha, const float *dout, const float *inp,
                    const float *alpha, int N, int C, int HW);

/* ReLU over n elements; out may alias inp. relu_backward gives the same result
 * when handed the forward's out in place of inp (both are > 0 at the same places). */
void relu_forward(float *out, const float *inp, size_t n);
void relu_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* Residual add over n elements: out = a + b. Backward: da += dout, db += dout
 * (either may be NULL). */
void add_forward(float *out, const float *a, const float *b, size_t n);
void add_backward(float *da, float *db, const float *dout, size_t n);

/* Inverted dropout over inp (N, F): each element kept with probability 1 - p and
 * scaled by 1/(1-p). The decision for feature f of sample n is a pure function
 * of (seed, step, first_sample + n, f), so the same global sample gets the same
 * mask whichever worker computes it. mask (N, F) receives 0 or 1/(1-p) for the
 * backward pass. p == 0 copies. 0 <= p < 1 (CHECKed). The exact hash is documented
 * at dropout_forward in pointwise.c and pinned by tests/test_layers.c. */
void dropout_forward(float *out, float *mask, const float *inp, int N, int F, float p,
                     uint64_t seed, uint64_t step, uint64_t first_sample);
void dropout_backward(float *dinp, const float *dout, const float *mask, int N, int F);

/* Flatten (N,C,H,W) -> (N, C*H*W) needs no code: NCHW is already row-major in
 * the flattened order, so the next layer reads the same buffer. */

/* ---- linear ---- */

/* out (N,OC) = inp (N,C) weight^T + bias; weight (OC,C); bias (OC) or NULL. */
void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                    int C, int OC);
/* dinp (N,C) += dout weight; dweight (OC,C) += dout^T inp; dbias (OC) += sum_n dout.
 * Any gradient may be NULL. */
void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, int N, int C, int OC);

#endif
