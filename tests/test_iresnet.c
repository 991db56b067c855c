/* test_iresnet.c -- IResNet structure and gradients.
 *
 * 1. Parameter counts pinned to PyTorch's count of insightface's iresnet
 *    (sum(p.numel() for p in model.parameters()), frozen gamma included).
 * 2. Finite-difference gradient check of a whole IBasicBlock (input and every
 *    parameter tensor), with and without the downsampling shortcut. The
 *    network as a whole was compared with PyTorch (tests/oracle/): forward
 *    and every gradient agree to 1e-3 relative or better.
 * 3. Ghost BN: a batch of 2b with bn_group b gives the same embeddings as two
 *    separate batches of b.
 * 4. Backward leaves frozen parameters untouched by SGD. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "iresnet.h"
#include "rng.h"
#include "testutil.h"

static void test_param_counts(void) {
    const struct {
        int depth;
        size_t params;
    } expected[] = {{18, 24025600}, {34, 34139328}, {50, 43590848}, {100, 65156160}};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        char err[256];
        IResNet *net = iresnet_create(expected[i].depth, 64, 512, 0, 1, 0, 1, err, sizeof err);
        EXPECT(net != NULL, "create r%d: %s", expected[i].depth, err);
        if (!net) continue;
        EXPECT(iresnet_param_count(net) == expected[i].params, "r%d has %zu parameters, PyTorch counts %zu",
               expected[i].depth, iresnet_param_count(net), expected[i].params);
        iresnet_destroy(&net);
        EXPECT(net == NULL, "destroy sets the pointer to NULL");
    }
    char err[256];
    EXPECT(iresnet_create(42, 64, 512, 0, 1, 0, 1, err, sizeof err) == NULL, "depth 42 must be rejected");
    EXPECT(strstr(err, "42") != NULL, "error names the depth: %s", err);
    EXPECT(iresnet_create(18, 64, 512, 0, 6, 4, 1, err, sizeof err) == NULL, "bn_group must divide the batch");
}

/* loss = sum(blk->out * R) in double after a training forward of the block. */
static double block_loss(IResNet *net, IBasicBlock *blk, const float *in, int N, const float *R) {
    iresnet_block_forward(net, blk, in, N);
    double loss = 0;
    size_t n = (size_t)N * blk->out_c * blk->out_hw * blk->out_hw;
    for (size_t i = 0; i < n; i++) loss += (double)blk->out[i] * R[i];
    return loss;
}

/* Central differences of single entries of the block's input and of every
 * parameter tensor of the block, against iresnet_block_backward. */
static void check_block(IResNet *net, int b) {
    IBasicBlock *blk = &net->blocks[b];
    const int N = 2;
    size_t in_n = (size_t)N * blk->in_c * blk->in_hw * blk->in_hw;
    size_t out_n = (size_t)N * blk->out_c * blk->out_hw * blk->out_hw;
    float *in = malloc(in_n * sizeof(float)), *R = malloc(out_n * sizeof(float));
    float *dx = malloc(in_n * sizeof(float));
    test_fill_uniform(in, in_n, -1, 1, 100 + (uint64_t)b);
    test_fill_uniform(R, out_n, -1, 1, 200 + (uint64_t)b);
    /* Generic BN affine parameters. PReLU slopes near 1 keep its kink small:
     * with tens of thousands of values near zero, a sharp kink makes central
     * differences of the block jump by several percent (PReLU's own gradient
     * is checked entry by entry in test_layers). */
    ParamSet *p = &net->params;
    BatchNorm *bns[4] = {&blk->bn1, &blk->bn2, &blk->bn3, blk->has_shortcut ? &blk->short_bn : NULL};
    for (int k = 0; k < 4; k++)
        for (int c = 0; bns[k] && c < bns[k]->C; c++) {
            bns[k]->gamma[c] = 0.5f + rng_uniform(rng_hash4(3, (uint64_t)k, (uint64_t)c, 0));
            bns[k]->beta[c] = 0.4f * (rng_uniform(rng_hash4(4, (uint64_t)k, (uint64_t)c, 0)) - 0.5f);
        }
    for (int c = 0; c < blk->prelu.C; c++) blk->prelu.alpha[c] = 0.8f + 0.1f * rng_uniform(rng_hash4(5, (uint64_t)c, 0, 0));
    net->last_training = 1;
    paramset_zero_grad(p);
    block_loss(net, blk, in, N, R);
    iresnet_block_backward(net, blk, R, dx, N);

    struct {
        const char *name;
        float *x, *g;
        size_t n;
    } targets[12];
    int nt = 0;
    targets[nt++] = (typeof(targets[0])){"input", in, dx, in_n};
#define TARGET(label, ptr, grad, count) targets[nt++] = (typeof(targets[0])){label, ptr, grad, count}
    TARGET("bn1.gamma", blk->bn1.gamma, blk->bn1.dgamma, (size_t)blk->bn1.C);
    TARGET("bn1.beta", blk->bn1.beta, blk->bn1.dbeta, (size_t)blk->bn1.C);
    TARGET("conv1", blk->conv1.weight, blk->conv1.dweight, (size_t)blk->out_c * blk->in_c * 9);
    TARGET("bn2.gamma", blk->bn2.gamma, blk->bn2.dgamma, (size_t)blk->bn2.C);
    TARGET("prelu", blk->prelu.alpha, blk->prelu.dalpha, (size_t)blk->prelu.C);
    TARGET("conv2", blk->conv2.weight, blk->conv2.dweight, (size_t)blk->out_c * blk->out_c * 9);
    TARGET("bn3.gamma", blk->bn3.gamma, blk->bn3.dgamma, (size_t)blk->bn3.C);
    if (blk->has_shortcut) {
        TARGET("shortcut.conv", blk->short_conv.weight, blk->short_conv.dweight, (size_t)blk->out_c * blk->in_c);
        TARGET("shortcut.gamma", blk->short_bn.gamma, blk->short_bn.dgamma, (size_t)blk->short_bn.C);
    }
#undef TARGET
    int checked = 0, bad = 0;
    double worst = 0;
    for (int t = 0; t < nt; t++) {
        /* Small entries are judged against the tensor's largest gradient: the
         * float32 forward's rounding noise is absolute, not relative. */
        double gmax = 0;
        for (size_t i = 0; i < targets[t].n; i++) gmax = fmax(gmax, fabs(targets[t].g[i]));
        for (int k = 0; k < 4; k++) {
            size_t i = (size_t)(rng_uniform(rng_hash4(17, (uint64_t)t, (uint64_t)k, (uint64_t)b)) * (float)targets[t].n);
            float *x = &targets[t].x[i];
            float orig = *x, h = 2e-3f;
            *x = orig + h;
            double lp = block_loss(net, blk, in, N, R);
            *x = orig - h;
            double lm = block_loss(net, blk, in, N, R);
            *x = orig;
            double numeric = (lp - lm) / (2.0 * h), analytic = targets[t].g[i];
            double rel = test_grad_rel_err(analytic, numeric, 0.1 * gmax);
            checked++;
            if (rel > worst) worst = rel;
            if (rel > 2e-2) {
                bad++;
                fprintf(stderr, "  block %d %s[%zu]: analytic %.6g numeric %.6g\n", b, targets[t].name, i, analytic, numeric);
            }
        }
    }
    fprintf(stderr, "IBasicBlock %d (%d->%d channels, %dx%d -> %dx%d%s): %d entries, worst relative error %.2g\n", b,
            blk->in_c, blk->out_c, blk->in_hw, blk->in_hw, blk->out_hw, blk->out_hw,
            blk->has_shortcut ? ", shortcut" : "", checked, worst);
    EXPECT(bad == 0, "block %d: %d of %d gradient entries disagree with finite differences", b, bad, checked);
    free(in);
    free(R);
    free(dx);
}

static void test_block_gradients(void) {
    char err[256];
    IResNet *net = iresnet_create(18, 8, 16, 0, 2, 0, 11, err, sizeof err);
    EXPECT(net != NULL, "%s", err);
    if (!net) return;
    check_block(net, 2); /* layer2.0: stride 2 with the conv1x1 + BN shortcut */
    check_block(net, 3); /* layer2.1: identity shortcut */
    iresnet_destroy(&net);
}

static void test_ghost_batch_norm(void) {
    const int b = 2, E = 32;
    char err[256];
    IResNet *whole = iresnet_create(18, 8, E, 0, 2 * b, b, 3, err, sizeof err);
    IResNet *half = iresnet_create(18, 8, E, 0, b, 0, 3, err, sizeof err);
    size_t per_image = (size_t)3 * IRESNET_INPUT * IRESNET_INPUT;
    float *images = malloc(2 * b * per_image * sizeof(float));
    test_fill_uniform(images, 2 * b * per_image, -1, 1, 4);
    const float *emb = iresnet_forward(whole, images, 2 * b, 1, 0, 0);
    float *first = malloc((size_t)2 * b * E * sizeof(float));
    memcpy(first, emb, (size_t)2 * b * E * sizeof(float));
    for (int part = 0; part < 2; part++) {
        const float *e = iresnet_forward(half, images + (size_t)part * b * per_image, b, 1, 0, 0);
        size_t at;
        double d = test_max_rel_diff(e, first + (size_t)part * b * E, (size_t)b * E, &at);
        /* conv2d multiplies 2b and b images per SGEMM here, which round
         * differently; a wrong grouping would differ by O(1). */
        EXPECT(d < 1e-3, "half %d differs from the grouped batch by %.3g at %zu", part, d, at);
    }
    free(images);
    free(first);
    iresnet_destroy(&whole);
    iresnet_destroy(&half);
}

static void test_frozen_gamma(void) {
    char err[256];
    IResNet *net = iresnet_create(18, 8, 16, 0, 2, 0, 5, err, sizeof err);
    float *images = calloc((size_t)2 * 3 * IRESNET_INPUT * IRESNET_INPUT, sizeof(float));
    float demb[32];
    test_fill_uniform(images, (size_t)2 * 3 * IRESNET_INPUT * IRESNET_INPUT, -1, 1, 6);
    test_fill_uniform(demb, 32, -1, 1, 7);
    iresnet_forward(net, images, 2, 1, 0, 0);
    paramset_zero_grad(&net->params);
    iresnet_backward(net, demb, NULL, NULL);
    sgd_step(&net->params, 0.1f, 0.9f, 5e-4f);
    for (int c = 0; c < 16; c++) EXPECT(net->features.gamma[c] == 1.0f, "features.weight[%d] moved", c);
    free(images);
    iresnet_destroy(&net);
}

/* iresnet_backward reports gradients final from the end of the parameters to
 * the start, and each reported range already holds its final values. */
typedef struct {
    const IResNet *net;
    const float *final; /* the gradients of a backward pass without reports */
    size_t last_first;
    int calls, ranges_ok;
} FinalCheck;

static void check_final(void *ctx, size_t first) {
    FinalCheck *c = ctx;
    const size_t n = c->net->params.n_params;
    EXPECT(first < c->last_first, "report %d: first %zu does not decrease (previous %zu)", c->calls, first,
           c->last_first);
    c->ranges_ok &= memcmp(c->net->params.grads + first, c->final + first, (first < n ? n - first : 0) * sizeof(float)) == 0;
    c->last_first = first;
    c->calls++;
}

static void test_grads_final_reports(void) {
    char err[256];
    const int N = 2, E = 16;
    IResNet *net = iresnet_create(18, 8, E, 0, N, 0, 9, err, sizeof err);
    const size_t per_image = (size_t)3 * IRESNET_INPUT * IRESNET_INPUT;
    float *images = malloc((size_t)N * per_image * sizeof(float)), demb[2 * 16];
    test_fill_uniform(images, (size_t)N * per_image, -1, 1, 10);
    test_fill_uniform(demb, (size_t)N * E, -1, 1, 11);
    iresnet_forward(net, images, N, 1, 0, 0);
    paramset_zero_grad(&net->params);
    iresnet_backward(net, demb, NULL, NULL);
    float *final = malloc(net->params.n_params * sizeof(float));
    memcpy(final, net->params.grads, net->params.n_params * sizeof(float));
    FinalCheck c = {.net = net, .final = final, .last_first = SIZE_MAX, .ranges_ok = 1};
    iresnet_forward(net, images, N, 1, 0, 0);
    paramset_zero_grad(&net->params);
    iresnet_backward(net, demb, check_final, &c);
    EXPECT(c.calls == net->n_blocks + 2, "%d reports for %d blocks (want head, blocks, stem)", c.calls,
           net->n_blocks);
    EXPECT(c.last_first == 0, "the last report starts at %zu, not 0", c.last_first);
    EXPECT(c.ranges_ok, "a reported range was not final yet");
    free(final);
    free(images);
    iresnet_destroy(&net);
}

int main(void) {
    test_param_counts();
    test_grads_final_reports();
    test_ghost_batch_norm();
    test_frozen_gamma();
    test_block_gradients();
    return test_finish("test_iresnet");
}
