/* random_backbone.h -- an IResNet with every kind of value away from its
 * initial default, for tests of inference and export: BN gamma and beta,
 * PReLU slopes and the fc bias random, BN running statistics those of a batch
 * of random images (so inference activations keep a sensible scale). */
#ifndef ARCFACE_RANDOM_BACKBONE_H
#define ARCFACE_RANDOM_BACKBONE_H

#include <stdint.h>

#include "iresnet.h"

/* A network for inference batches of up to max_batch images (>= 2), values a
 * function of seed. Invalid sizes are fatal. */
IResNet *test_random_iresnet(int depth, int width, int embedding_size, int max_batch, uint64_t seed);

#endif
