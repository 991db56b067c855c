/* iresnet.c -- IResNet backbone: construction, forward and backward. */
#include "iresnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "parallel.h"
#include "rng.h"

int iresnet_stage_blocks(int depth, int blocks[4]) {
    static const int table[][5] = {
        {18, 2, 2, 2, 2}, {34, 3, 4, 6, 3}, {50, 3, 4, 14, 3}, {100, 3, 13, 30, 3}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (table[i][0] != depth) continue;
        memcpy(blocks, &table[i][1], 4 * sizeof(int));
        return 0;
    }
    return -1;
}

/* ---- construction: register parameters, then allocate, then bind pointers ---- */

typedef struct {
    ParamSet *params;
    int max_batch;
    size_t n_bn_buffers;
    size_t max_activation; /* floats per image */
    size_t max_workspace;  /* floats */
    double flops;          /* per image forward */
} Plan;

/* "prefix" + "suffix" into name; names are short, so truncation is a bug. */
static void join_name(char *name, size_t len, const char *prefix, const char *suffix) {
    int n = snprintf(name, len, "%s%s", prefix, suffix);
    CHECK(n >= 0 && (size_t)n < len, "parameter name %s%s too long", prefix, suffix);
}

static void note_activation(Plan *plan, size_t per_image) {
    if (per_image > plan->max_activation) plan->max_activation = per_image;
}

static void plan_conv(Plan *plan, Conv *conv, const char *name, int C, int HW, int OC, int K,
                      int stride) {
    conv->shape = conv2d_shape(C, HW, HW, OC, K, stride, K / 2);
    conv->offset = paramset_add(plan->params, name, (size_t)OC * C * K * K, 1);
    size_t ws = conv2d_workspace_floats(&conv->shape, plan->max_batch);
    if (ws > plan->max_workspace) plan->max_workspace = ws;
    note_activation(plan, (size_t)OC * conv->shape.OH * conv->shape.OW);
    plan->flops += 2.0 * OC * C * K * K * conv->shape.OH * conv->shape.OW;
}

static void plan_bn(Plan *plan, BatchNorm *bn, const char *prefix, int C, int HW, int frozen) {
    char name[64];
    bn->C = C;
    bn->HW = HW;
    join_name(name, sizeof name, prefix, ".weight");
    bn->gamma_offset = paramset_add(plan->params, name, (size_t)C, !frozen);
    join_name(name, sizeof name, prefix, ".bias");
    bn->beta_offset = paramset_add(plan->params, name, (size_t)C, 1);
    bn->stats_offset = plan->n_bn_buffers;
    plan->n_bn_buffers += 2 * (size_t)C;
    note_activation(plan, (size_t)C * HW);
}

static void plan_prelu(Plan *plan, PRelu *pr, const char *prefix, int C, int HW) {
    char name[64];
    pr->C = C;
    pr->HW = HW;
    join_name(name, sizeof name, prefix, ".weight");
    pr->offset = paramset_add(plan->params, name, (size_t)C, 1);
}

static void bind_conv(Conv *conv, ParamSet *p) {
    conv->weight = p->params + conv->offset;
    conv->dweight = p->grads + conv->offset;
}

static void bind_bn(BatchNorm *bn, IResNet *net, int frozen) {
    ParamSet *p = &net->params;
    bn->gamma = p->params + bn->gamma_offset;
    bn->beta = p->params + bn->beta_offset;
    bn->dgamma = frozen ? NULL : p->grads + bn->gamma_offset;
    bn->dbeta = p->grads + bn->beta_offset;
    bn->running_mean = net->bn_buffers + bn->stats_offset;
    bn->running_var = bn->running_mean + bn->C;
    /* One row of statistics per BN group; at most max_batch groups. */
    bn->save_mean = xcalloc_aligned((size_t)net->max_batch * bn->C, sizeof(float));
    bn->save_invstd = xcalloc_aligned((size_t)net->max_batch * bn->C, sizeof(float));
    for (int c = 0; c < bn->C; c++) {
        bn->gamma[c] = 1.0f;
        bn->running_var[c] = 1.0f;
    }
}

static void bind_prelu(PRelu *pr, ParamSet *p) {
    pr->alpha = p->params + pr->offset;
    pr->dalpha = p->grads + pr->offset;
    for (int c = 0; c < pr->C; c++) pr->alpha[c] = 0.25f;
}

static void free_bn(BatchNorm *bn) {
    free(bn->save_mean);
    free(bn->save_invstd);
}

static float *activation(const IResNet *net, size_t per_image) {
    return xcalloc_aligned((size_t)net->max_batch * per_image, sizeof(float));
}

/* Conv weights normal(0, 0.1) as insightface's iresnet; the values of tensor
 * t depend only on (seed, t, index). */
static void init_conv(Conv *conv, const IResNet *net, int tensor) {
    size_t n = (size_t)conv->shape.OC * conv->shape.C * conv->shape.K * conv->shape.K;
    for (size_t i = 0; i < n; i++)
        conv->weight[i] = 0.1f * rng_normal(rng_hash4(net->seed, RNG_BACKBONE_INIT, (uint64_t)tensor, i));
}

static int tensor_index(const ParamSet *p, size_t offset) {
    for (int t = 0; t < p->n_tensors; t++)
        if (p->tensors[t].offset == offset) return t;
    FATAL("no tensor at offset %zu", offset);
}

IResNet *iresnet_create(int depth, int width, int embedding_size, float dropout, int max_batch,
                        int bn_group, uint64_t seed, char *err, size_t errlen) {
    int stage_blocks[4];
    if (iresnet_stage_blocks(depth, stage_blocks) != 0) {
        snprintf(err, errlen, "unsupported IResNet depth %d (use 18, 34, 50 or 100)", depth);
        return NULL;
    }
    if (width < 1 || embedding_size < 1 || max_batch < 1 || !(dropout >= 0 && dropout < 1)) {
        snprintf(err, errlen, "invalid IResNet sizes (width %d, embedding %d, batch %d, dropout %g)",
                 width, embedding_size, max_batch, dropout);
        return NULL;
    }
    if (bn_group < 0 || (bn_group > 0 && max_batch % bn_group != 0)) {
        snprintf(err, errlen, "bn_group %d must divide the batch %d", bn_group, max_batch);
        return NULL;
    }

    IResNet *net = xcalloc_aligned(1, sizeof *net);
    net->depth = depth;
    net->width = width;
    net->embedding_size = embedding_size;
    net->dropout = dropout;
    net->max_batch = max_batch;
    net->bn_group = bn_group;
    net->bn_eps = 1e-5f;
    net->bn_momentum = 0.1f;
    net->seed = seed;
    for (int s = 0; s < 4; s++) net->n_blocks += stage_blocks[s];
    net->blocks = xcalloc_aligned((size_t)net->n_blocks, sizeof *net->blocks);

    /* Plan: shapes and parameters in PyTorch's registration order. */
    Plan plan = {.params = &net->params, .max_batch = max_batch};
    const int S = IRESNET_INPUT;
    note_activation(&plan, 3 * (size_t)S * S);
    plan_conv(&plan, &net->stem_conv, "conv1.weight", 3, S, width, 3, 1);
    plan_bn(&plan, &net->stem_bn, "bn1", width, S * S, 0);
    plan_prelu(&plan, &net->stem_prelu, "prelu", width, S * S);

    int in_c = width, hw = S, b = 0;
    for (int s = 0; s < 4; s++) {
        int out_c = width << s;
        for (int i = 0; i < stage_blocks[s]; i++, b++) {
            IBasicBlock *blk = &net->blocks[b];
            int stride = i == 0 ? 2 : 1;
            char prefix[16], name[64];
            CHECK(snprintf(prefix, sizeof prefix, "layer%d.%d", s + 1, i) < (int)sizeof prefix, "name");
            blk->in_c = in_c;
            blk->out_c = out_c;
            blk->in_hw = hw;
            blk->param_start = net->params.n_params;
            join_name(name, sizeof name, prefix, ".bn1");
            plan_bn(&plan, &blk->bn1, name, in_c, hw * hw, 0);
            join_name(name, sizeof name, prefix, ".conv1.weight");
            plan_conv(&plan, &blk->conv1, name, in_c, hw, out_c, 3, 1);
            join_name(name, sizeof name, prefix, ".bn2");
            plan_bn(&plan, &blk->bn2, name, out_c, hw * hw, 0);
            join_name(name, sizeof name, prefix, ".prelu");
            plan_prelu(&plan, &blk->prelu, name, out_c, hw * hw);
            join_name(name, sizeof name, prefix, ".conv2.weight");
            plan_conv(&plan, &blk->conv2, name, out_c, hw, out_c, 3, stride);
            blk->out_hw = blk->conv2.shape.OH;
            join_name(name, sizeof name, prefix, ".bn3");
            plan_bn(&plan, &blk->bn3, name, out_c, blk->out_hw * blk->out_hw, 0);
            blk->has_shortcut = stride != 1 || in_c != out_c;
            if (blk->has_shortcut) {
                join_name(name, sizeof name, prefix, ".downsample.0.weight");
                plan_conv(&plan, &blk->short_conv, name, in_c, hw, out_c, 1, stride);
                join_name(name, sizeof name, prefix, ".downsample.1");
                plan_bn(&plan, &blk->short_bn, name, out_c, blk->out_hw * blk->out_hw, 0);
            }
            in_c = out_c;
            hw = blk->out_hw;
        }
    }
    CHECK(hw == 7, "IResNet expects a 7x7 final feature map, got %dx%d", hw, hw);
    net->head_param_start = net->params.n_params;
    plan_bn(&plan, &net->head_bn, "bn2", in_c, hw * hw, 0);
    net->fc_in = in_c * hw * hw;
    net->fc_weight_offset = paramset_add(&net->params, "fc.weight", (size_t)embedding_size * net->fc_in, 1);
    net->fc_bias_offset = paramset_add(&net->params, "fc.bias", (size_t)embedding_size, 1);
    plan.flops += 2.0 * net->fc_in * embedding_size;
    plan_bn(&plan, &net->features, "features", embedding_size, 1, 1);

    /* Allocate once. */
    paramset_alloc(&net->params);
    net->n_bn_buffers = plan.n_bn_buffers;
    net->bn_buffers = xcalloc_aligned(plan.n_bn_buffers, sizeof(float));
    net->max_activation = plan.max_activation;
    net->workspace = xcalloc_aligned(plan.max_workspace ? plan.max_workspace : 1, sizeof(float));
    for (int i = 0; i < 2; i++) net->grad_trunk[i] = activation(net, plan.max_activation);
    for (int i = 0; i < 3; i++) net->grad_tmp[i] = activation(net, plan.max_activation);
    net->flops_per_image = plan.flops;

    /* Bind pointers, initialise, allocate activations. */
    ParamSet *p = &net->params;
    bind_conv(&net->stem_conv, p);
    init_conv(&net->stem_conv, net, tensor_index(p, net->stem_conv.offset));
    bind_bn(&net->stem_bn, net, 0);
    bind_prelu(&net->stem_prelu, p);
    net->stem_conv_out = activation(net, (size_t)width * S * S);
    net->stem_out = activation(net, (size_t)width * S * S);
    for (b = 0; b < net->n_blocks; b++) {
        IBasicBlock *blk = &net->blocks[b];
        size_t mid_size = (size_t)blk->out_c * blk->in_hw * blk->in_hw;
        size_t out_size = (size_t)blk->out_c * blk->out_hw * blk->out_hw;
        bind_bn(&blk->bn1, net, 0);
        bind_conv(&blk->conv1, p);
        init_conv(&blk->conv1, net, tensor_index(p, blk->conv1.offset));
        bind_bn(&blk->bn2, net, 0);
        bind_prelu(&blk->prelu, p);
        bind_conv(&blk->conv2, p);
        init_conv(&blk->conv2, net, tensor_index(p, blk->conv2.offset));
        bind_bn(&blk->bn3, net, 0);
        blk->conv1_out = activation(net, mid_size);
        blk->bn2_out = activation(net, mid_size);
        blk->conv2_out = activation(net, out_size);
        blk->out = activation(net, out_size);
        if (blk->has_shortcut) {
            bind_conv(&blk->short_conv, p);
            init_conv(&blk->short_conv, net, tensor_index(p, blk->short_conv.offset));
            bind_bn(&blk->short_bn, net, 0);
            blk->short_conv_out = activation(net, out_size);
        }
    }
    bind_bn(&net->head_bn, net, 0);
    net->head_bn_out = activation(net, (size_t)net->fc_in);
    net->dropout_out = activation(net, (size_t)net->fc_in);
    net->dropout_mask = activation(net, (size_t)net->fc_in);
    net->fc_weight = p->params + net->fc_weight_offset;
    net->fc_bias = p->params + net->fc_bias_offset;
    net->dfc_weight = p->grads + net->fc_weight_offset;
    net->dfc_bias = p->grads + net->fc_bias_offset;
    /* PyTorch's nn.Linear default: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), bias likewise. */
    float bound = 1.0f / sqrtf((float)net->fc_in);
    int fc_w = tensor_index(p, net->fc_weight_offset), fc_b = tensor_index(p, net->fc_bias_offset);
    for (size_t i = 0; i < (size_t)embedding_size * net->fc_in; i++)
        net->fc_weight[i] = bound * (2.0f * rng_uniform(rng_hash4(seed, RNG_BACKBONE_INIT, (uint64_t)fc_w, i)) - 1.0f);
    for (int i = 0; i < embedding_size; i++)
        net->fc_bias[i] = bound * (2.0f * rng_uniform(rng_hash4(seed, RNG_BACKBONE_INIT, (uint64_t)fc_b, (uint64_t)i)) - 1.0f);
    net->fc_out = activation(net, (size_t)embedding_size);
    bind_bn(&net->features, net, 1);
    net->embedding = activation(net, (size_t)embedding_size);
    return net;
}

void iresnet_destroy(IResNet **pnet) {
    IResNet *net = pnet ? *pnet : NULL;
    if (!net) return;
    free_bn(&net->stem_bn);
    free(net->stem_conv_out);
    free(net->stem_out);
    for (int b = 0; b < net->n_blocks; b++) {
        IBasicBlock *blk = &net->blocks[b];
        free_bn(&blk->bn1);
        free_bn(&blk->bn2);
        free_bn(&blk->bn3);
        free(blk->conv1_out);
        free(blk->bn2_out);
        free(blk->conv2_out);
        free(blk->out);
        if (blk->has_shortcut) {
            free_bn(&blk->short_bn);
            free(blk->short_conv_out);
        }
    }
    free(net->blocks);
    free_bn(&net->head_bn);
    free(net->head_bn_out);
    free(net->dropout_out);
    free(net->dropout_mask);
    free(net->fc_out);
    free_bn(&net->features);
    free(net->embedding);
    free(net->workspace);
    for (int i = 0; i < 2; i++) free(net->grad_trunk[i]);
    for (int i = 0; i < 3; i++) free(net->grad_tmp[i]);
    free(net->bn_buffers);
    paramset_free(&net->params);
    free(net);
    *pnet = NULL;
}

size_t iresnet_param_count(const IResNet *net) {
    size_t n = 0;
    for (int t = 0; t < net->params.n_tensors; t++) n += net->params.tensors[t].count;
    return n;
}

double iresnet_forward_flops(const IResNet *net) { return net->flops_per_image; }

/* ---- forward ---- */

static int group_of(const IResNet *net, int N) { return net->bn_group > 0 ? net->bn_group : N; }

static void bn_forward(const IResNet *net, BatchNorm *bn, float *out, const float *in, int N) {
    if (net->last_training)
        batchnorm_forward_train(out, bn->save_mean, bn->save_invstd, bn->running_mean,
                                bn->running_var, in, bn->gamma, bn->beta, N, bn->C, bn->HW,
                                group_of(net, N), net->bn_eps, net->bn_momentum);
    else
        batchnorm_forward_eval(out, in, bn->gamma, bn->beta, bn->running_mean, bn->running_var,
                               N, bn->C, bn->HW, net->bn_eps);
}

/* The activations the backward recomputes instead of keeping (iresnet.h) go
 * through one scratch buffer, each dead before the next is written. */
void iresnet_block_forward(IResNet *net, IBasicBlock *blk, const float *in, int N) {
    float *scratch = net->grad_tmp[0];
    blk->in = in;
    float *bn1_out = scratch;
    bn_forward(net, &blk->bn1, bn1_out, in, N);
    conv2d_forward(blk->conv1_out, bn1_out, blk->conv1.weight, N, &blk->conv1.shape, net->workspace);
    bn_forward(net, &blk->bn2, blk->bn2_out, blk->conv1_out, N);
    float *prelu_out = scratch;
    prelu_forward(prelu_out, blk->bn2_out, blk->prelu.alpha, N, blk->prelu.C, blk->prelu.HW);
    conv2d_forward(blk->conv2_out, prelu_out, blk->conv2.weight, N, &blk->conv2.shape, net->workspace);
    bn_forward(net, &blk->bn3, blk->out, blk->conv2_out, N);
    const float *identity = in;
    if (blk->has_shortcut) {
        conv2d_forward(blk->short_conv_out, in, blk->short_conv.weight, N, &blk->short_conv.shape, net->workspace);
        float *short_bn_out = scratch;
        bn_forward(net, &blk->short_bn, short_bn_out, blk->short_conv_out, N);
        identity = short_bn_out;
    }
    /* out = bn3's output + identity, in place. */
    add_forward(blk->out, blk->out, identity, (size_t)N * blk->out_c * blk->out_hw * blk->out_hw);
}

/* The input of the embedding FC: the dropout output when dropout is active. */
static const float *fc_input(const IResNet *net) {
    return net->last_training && net->dropout > 0 ? net->dropout_out : net->head_bn_out;
}

const float *iresnet_forward(IResNet *net, const float *images, int N, int training,
                             uint64_t step, uint64_t first_sample) {
    CHECK(N >= 1 && N <= net->max_batch, "batch %d outside [1, %d]", N, net->max_batch);
    CHECK(!training || N % group_of(net, N) == 0, "bn_group %d does not divide batch %d",
          net->bn_group, N);
    net->input = images;
    net->last_n = N;
    net->last_training = training;
    const int S = IRESNET_INPUT;
    conv2d_forward(net->stem_conv_out, images, net->stem_conv.weight, N, &net->stem_conv.shape, net->workspace);
    float *stem_bn_out = net->grad_tmp[0]; /* recomputed by the backward */
    bn_forward(net, &net->stem_bn, stem_bn_out, net->stem_conv_out, N);
    prelu_forward(net->stem_out, stem_bn_out, net->stem_prelu.alpha, N, net->width, S * S);
    const float *x = net->stem_out;
    for (int b = 0; b < net->n_blocks; b++) {
        iresnet_block_forward(net, &net->blocks[b], x, N);
        x = net->blocks[b].out;
    }
    bn_forward(net, &net->head_bn, net->head_bn_out, x, N);
    if (training && net->dropout > 0)
        dropout_forward(net->dropout_out, net->dropout_mask, net->head_bn_out, N, net->fc_in,
                        net->dropout, net->seed, step, first_sample);
    linear_forward(net->fc_out, fc_input(net), net->fc_weight, net->fc_bias, N, net->fc_in,
                   net->embedding_size);
    bn_forward(net, &net->features, net->embedding, net->fc_out, N);
    return net->embedding;
}

/* ---- backward ---- */

static float *zeroed(float *buf, size_t n) {
    parallel_zero(buf, n);
    return buf;
}

static void bn_backward(const IResNet *net, const BatchNorm *bn, float *dinp, const float *dout,
                        const float *inp, int N) {
    batchnorm_backward(dinp, bn->dgamma, bn->dbeta, dout, inp, bn->gamma, bn->save_mean,
                       bn->save_invstd, N, bn->C, bn->HW, group_of(net, N));
}

/* bn's training-forward output for inp, recomputed bit for bit from the saved statistics. */
static void bn_recompute(const IResNet *net, const BatchNorm *bn, float *out, const float *inp, int N) {
    batchnorm_apply(out, inp, bn->gamma, bn->beta, bn->save_mean, bn->save_invstd, N, bn->C,
                    bn->HW, group_of(net, N));
}

void iresnet_block_backward(IResNet *net, IBasicBlock *blk, const float *dout, float *dx, int N) {
    size_t in_size = (size_t)N * blk->in_c * blk->in_hw * blk->in_hw;
    size_t mid_size = (size_t)N * blk->out_c * blk->in_hw * blk->in_hw;
    size_t out_size = (size_t)N * blk->out_c * blk->out_hw * blk->out_hw;
    float **tmp = net->grad_tmp;
    zeroed(dx, in_size);
    /* The residual add passes dout unchanged to both branches. The PReLU and bn1
     * outputs the forward did not keep are recomputed into tmp[2] when it is free. */
    float *d_conv2_out = zeroed(tmp[0], out_size);
    bn_backward(net, &blk->bn3, d_conv2_out, dout, blk->conv2_out, N);
    float *prelu_out = tmp[2];
    prelu_forward(prelu_out, blk->bn2_out, blk->prelu.alpha, N, blk->prelu.C, blk->prelu.HW);
    float *d_prelu_out = zeroed(tmp[1], mid_size);
    conv2d_backward(d_prelu_out, blk->conv2.dweight, d_conv2_out, prelu_out, blk->conv2.weight,
                    N, &blk->conv2.shape, net->workspace);
    float *d_bn2_out = zeroed(tmp[2], mid_size);
    prelu_backward(d_bn2_out, blk->prelu.dalpha, d_prelu_out, blk->bn2_out, blk->prelu.alpha, N,
                   blk->prelu.C, blk->prelu.HW);
    float *d_conv1_out = zeroed(tmp[0], mid_size);
    bn_backward(net, &blk->bn2, d_conv1_out, d_bn2_out, blk->conv1_out, N);
    float *bn1_out = tmp[2];
    bn_recompute(net, &blk->bn1, bn1_out, blk->in, N);
    float *d_bn1_out = zeroed(tmp[1], in_size);
    conv2d_backward(d_bn1_out, blk->conv1.dweight, d_conv1_out, bn1_out, blk->conv1.weight, N,
                    &blk->conv1.shape, net->workspace);
    bn_backward(net, &blk->bn1, dx, d_bn1_out, blk->in, N);
    if (blk->has_shortcut) {
        float *d_short_conv_out = zeroed(tmp[2], out_size);
        bn_backward(net, &blk->short_bn, d_short_conv_out, dout, blk->short_conv_out, N);
        conv2d_backward(dx, blk->short_conv.dweight, d_short_conv_out, blk->in,
                        blk->short_conv.weight, N, &blk->short_conv.shape, net->workspace);
    } else {
        for (size_t i = 0; i < in_size; i++) dx[i] += dout[i];
    }
}

void iresnet_backward(IResNet *net, const float *dembedding, IResNetGradsFinal grads_final, void *ctx) {
    int N = net->last_n;
    CHECK(net->last_training, "iresnet_backward needs a training forward");
    const int S = IRESNET_INPUT;
    float **tmp = net->grad_tmp;
    size_t head_size = (size_t)N * net->fc_in;

    float *d_fc_out = zeroed(tmp[0], (size_t)N * net->embedding_size);
    bn_backward(net, &net->features, d_fc_out, dembedding, net->fc_out, N);
    float *d_fc_in = zeroed(tmp[1], head_size);
    linear_backward(d_fc_in, net->dfc_weight, net->dfc_bias, d_fc_out, fc_input(net), net->fc_weight,
                    N, net->fc_in, net->embedding_size);
    float *d_head_bn_out = d_fc_in;
    if (net->dropout > 0) {
        d_head_bn_out = zeroed(tmp[2], head_size);
        dropout_backward(d_head_bn_out, d_fc_in, net->dropout_mask, N, net->fc_in);
    }
    int cur = 0;
    const float *last_out = net->blocks[net->n_blocks - 1].out;
    bn_backward(net, &net->head_bn, zeroed(net->grad_trunk[cur], head_size), d_head_bn_out, last_out, N);
    if (grads_final) grads_final(ctx, net->head_param_start);
    for (int b = net->n_blocks - 1; b >= 0; b--) {
        iresnet_block_backward(net, &net->blocks[b], net->grad_trunk[cur], net->grad_trunk[1 - cur], N);
        cur = 1 - cur;
        if (grads_final) grads_final(ctx, net->blocks[b].param_start);
    }
    size_t stem_size = (size_t)N * net->width * S * S;
    float *stem_bn_out = tmp[1];
    bn_recompute(net, &net->stem_bn, stem_bn_out, net->stem_conv_out, N);
    float *d_stem_bn_out = zeroed(tmp[0], stem_size);
    prelu_backward(d_stem_bn_out, net->stem_prelu.dalpha, net->grad_trunk[cur], stem_bn_out,
                   net->stem_prelu.alpha, N, net->width, S * S);
    float *d_stem_conv_out = zeroed(tmp[1], stem_size);
    bn_backward(net, &net->stem_bn, d_stem_conv_out, d_stem_bn_out, net->stem_conv_out, N);
    conv2d_backward(NULL, net->stem_conv.dweight, d_stem_conv_out, net->input, net->stem_conv.weight,
                    N, &net->stem_conv.shape, net->workspace);
    if (grads_final) grads_final(ctx, 0);
}
