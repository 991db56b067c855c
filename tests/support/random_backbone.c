/* random_backbone.c -- IResNets with non-default BN, PReLU and bias values. */
#include "random_backbone.h"

#include <stdlib.h>

#include "check.h"
#include "image.h"
#include "testutil.h"

static void randomise_bn(BatchNorm *bn, uint64_t seed) {
    if (bn->dgamma) test_fill_uniform(bn->gamma, (size_t)bn->C, 0.5f, 1.5f, seed);
    test_fill_uniform(bn->beta, (size_t)bn->C, -0.3f, 0.3f, seed + 1);
}

static void randomise_prelu(PRelu *pr, uint64_t seed) { test_fill_uniform(pr->alpha, (size_t)pr->C, 0.0f, 0.5f, seed); }

IResNet *test_random_iresnet(int depth, int width, int embedding_size, int max_batch, uint64_t seed) {
    char err[256];
    const int N = 8;
    IResNet *net = iresnet_create(depth, width, embedding_size, 0, max_batch > N ? max_batch : N, 0, seed, err,
                                  sizeof err);
    CHECK(net != NULL, "%s", err);
    uint64_t s = seed * 1000;
    randomise_bn(&net->stem_bn, s += 2);
    randomise_prelu(&net->stem_prelu, s += 2);
    for (int b = 0; b < net->n_blocks; b++) {
        IBasicBlock *blk = &net->blocks[b];
        randomise_bn(&blk->bn1, s += 2);
        randomise_bn(&blk->bn2, s += 2);
        randomise_bn(&blk->bn3, s += 2);
        randomise_prelu(&blk->prelu, s += 2);
        if (blk->has_shortcut) randomise_bn(&blk->short_bn, s += 2);
    }
    randomise_bn(&net->head_bn, s += 2);
    randomise_bn(&net->features, s += 2);
    test_fill_uniform(net->fc_bias, (size_t)embedding_size, -0.1f, 0.1f, s += 2);
    /* Momentum 1: the running statistics become those of this one batch. */
    size_t image = (size_t)3 * IMAGE_SIZE * IMAGE_SIZE;
    float *images = malloc((size_t)N * image * sizeof(float));
    CHECK(images != NULL, "out of memory");
    test_fill_uniform(images, (size_t)N * image, -1.0f, 1.0f, s + 2);
    float momentum = net->bn_momentum;
    net->bn_momentum = 1.0f;
    iresnet_forward(net, images, N, 1, 0, 0);
    net->bn_momentum = momentum;
    free(images);
    return net;
}
