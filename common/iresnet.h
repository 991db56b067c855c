/* iresnet.h -- IResNet-18/34/50/100 (LResNetxxE-IR), as insightface's iresnet:
 *
 *   stem:  conv3x3(3 -> w) BN PReLU                        112x112
 *   stages of IBasicBlocks with w, 2w, 4w, 8w channels, each stage starting
 *   with stride 2 (56, 28, 14, 7); blocks per stage r18 [2,2,2,2],
 *   r34 [3,4,6,3], r50 [3,4,14,3], r100 [3,13,30,3]
 *   IBasicBlock: BN, conv3x3, BN, PReLU, conv3x3 (stride), BN, + shortcut
 *                (conv1x1 stride + BN on the first block of a stage)
 *   head:  BN2d, dropout, flatten, linear(8w*7*7 -> E) with bias,
 *          BatchNorm1d(E) with gamma frozen at 1
 *
 * w = 64 and E = 512 are insightface's; smaller widths make quick demos.
 * Every activation, gradient and workspace buffer is allocated once by
 * iresnet_create for max_batch images and reused by every step.
 *
 * Memory: the training forward does not keep every activation. The outputs of
 * a BN that feeds a convolution (each block's bn1, the stem's BN), of a block's
 * PReLU, of bn3 and of the shortcut's BN are not stored: the forward writes
 * them into the gradient scratch (grad_tmp, idle until the backward) or, for
 * bn3, straight into the block output before the residual add, and the
 * backward recomputes the two it reads (batchnorm_apply from the saved
 * statistics, prelu_forward from the kept BN output) into gradient scratch
 * that is free at that moment. The recomputed values are bit for bit the
 * forward's. At IResNet-50, batch 32, the kept activations take 1.4 GiB
 * instead of 2.4 GiB. */
#ifndef ARCFACE_IRESNET_H
#define ARCFACE_IRESNET_H

#include <stddef.h>
#include <stdint.h>

#include "layers.h"
#include "optim.h"

#define IRESNET_INPUT 112

typedef struct {
    float *weight, *dweight;
    size_t offset; /* into the ParamSet */
    Conv2dShape shape;
} Conv;

typedef struct {
    float *gamma, *beta, *dgamma, *dbeta; /* dgamma NULL when gamma is frozen */
    float *running_mean, *running_var;
    float *save_mean, *save_invstd;       /* (max_batch, C): one row per BN group */
    size_t gamma_offset, beta_offset;     /* into the ParamSet */
    size_t stats_offset;                  /* running mean, then var, in bn_buffers */
    int C, HW;
} BatchNorm;

typedef struct {
    float *alpha, *dalpha;
    size_t offset;
    int C, HW;
} PRelu;

/* One IBasicBlock with the activations its backward keeps (the others are
 * recomputed, see the top of this file). */
typedef struct {
    int in_c, out_c, in_hw, out_hw; /* channels, spatial sizes (square) */
    BatchNorm bn1, bn2, bn3;
    Conv conv1, conv2;
    PRelu prelu;
    int has_shortcut;
    size_t param_start; /* the block's parameters (and gradients) lie in [param_start, the next block's) */
    Conv short_conv;
    BatchNorm short_bn;
    const float *in; /* the block input (the previous block's out), not owned;
                        bn1's output is recomputed from it */
    float *conv1_out, *bn2_out, *conv2_out; /* bn2_out also gives the PReLU output */
    float *short_conv_out;                  /* shortcut blocks only */
    float *out;                             /* bn3 + identity, the next block's input */
} IBasicBlock;

typedef struct {
    int depth, width, embedding_size;
    float dropout;
    int max_batch, bn_group;
    float bn_eps, bn_momentum;
    uint64_t seed;

    ParamSet params;
    float *bn_buffers; /* every running mean and var */
    size_t n_bn_buffers;

    Conv stem_conv;
    BatchNorm stem_bn;
    PRelu stem_prelu;
    float *stem_conv_out, *stem_out; /* the stem BN's output is recomputed */

    IBasicBlock *blocks;
    int n_blocks;

    size_t head_param_start; /* the head's parameters lie in [head_param_start, n_params) */
    BatchNorm head_bn;     /* BN2d over (8w, 7, 7) */
    float *head_bn_out, *dropout_out, *dropout_mask;
    float *fc_weight, *fc_bias, *dfc_weight, *dfc_bias;
    size_t fc_weight_offset, fc_bias_offset;
    int fc_in;             /* 8w * 7 * 7 */
    float *fc_out;
    BatchNorm features;    /* BN1d over E, gamma frozen */
    float *embedding;      /* (max_batch, E): the output */

    const float *input;    /* images of the last forward, not owned */
    int last_n, last_training;

    float *workspace;      /* shared im2col buffer */
    float *grad_trunk[2];  /* gradient of block outputs, ping-pong */
    float *grad_tmp[3];    /* gradients inside a block; in the forward, where the
                              activations that are not kept are written */
    size_t max_activation; /* floats of the largest activation of one image */
    double flops_per_image;
} IResNet;

/* Blocks per stage for depth 18, 34, 50, 100; returns -1 for other depths. */
int iresnet_stage_blocks(int depth, int blocks[4]);

/* Builds the network and initialises it as insightface does (conv weights
 * normal(0, 0.1), BN gamma 1 beta 0, PReLU 0.25, linear as PyTorch's default
 * uniform(+-1/sqrt(fan_in))), every value a pure function of (seed, tensor,
 * index) so all workers start identical. bn_group divides every batch given to
 * forward (0 = the whole batch). Returns NULL with a reason in err for invalid
 * sizes; allocation failure is fatal. */
IResNet *iresnet_create(int depth, int width, int embedding_size, float dropout, int max_batch,
                        int bn_group, uint64_t seed, char *err, size_t errlen);
void iresnet_destroy(IResNet **net);

/* images (N, 3, 112, 112) -> returns the embeddings (N, E), owned by net and
 * valid until the next forward. training = 1 uses batch statistics (in groups
 * of bn_group), updates the running statistics and applies dropout with masks
 * keyed by (seed, step, first_sample + n); 0 is inference. */
const float *iresnet_forward(IResNet *net, const float *images, int N, int training,
                             uint64_t step, uint64_t first_sample);

/* Called during iresnet_backward each time more gradients are final: every
 * gradient in [first, n_params) of net->params.grads is complete (first
 * decreases call by call: the head, each block from the last, and 0 after
 * the stem), so a caller may start reducing them while the pass goes on. */
typedef void (*IResNetGradsFinal)(void *ctx, size_t first);

/* Adds d(loss)/d(params) for the last training forward to net->params.grads,
 * given dembedding (N, E). grads_final (may be NULL) hears of the progress. */
void iresnet_backward(IResNet *net, const float *dembedding, IResNetGradsFinal grads_final, void *ctx);

/* One IBasicBlock on its own (the network's loop, exposed for gradient tests).
 * Forward reads in (N, in_c, in_hw, in_hw) and fills blk->out with the mode
 * (net->last_training) and bn_group of the network; it overwrites
 * net->grad_tmp[0], so in must not be that buffer, and in must stay unchanged
 * until the backward. Backward (after a training forward of the block, with
 * the parameters unchanged since) adds the block's parameter gradients and
 * overwrites dx (the input's shape) given dout; it uses all of grad_tmp, which
 * dout and dx must not be. */
void iresnet_block_forward(IResNet *net, IBasicBlock *blk, const float *in, int N);
void iresnet_block_backward(IResNet *net, IBasicBlock *blk, const float *dout, float *dx, int N);

/* Number of parameters as PyTorch's sum(p.numel() for p in model.parameters())
 * counts them (frozen ones included). */
size_t iresnet_param_count(const IResNet *net);

/* Floating-point operations of one forward pass of one image (2 per MAC). */
double iresnet_forward_flops(const IResNet *net);

#endif
