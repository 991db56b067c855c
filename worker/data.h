/* data.h -- a worker's shard of the training set, step by step.
 *
 * Each epoch visits a seeded permutation of all training samples; the global
 * batch of step t is the next W*B samples of it (the last partial batch of an
 * epoch is dropped, as insightface's drop_last), and worker w takes positions
 * [w*B, (w+1)*B) of that batch. So W workers of batch B read exactly what one
 * worker of batch W*B reads, which the equivalence test relies on. A sample's
 * random flip depends on (seed, epoch, sample id), not on who reads it. */
#ifndef ARCFACE_DATA_H
#define ARCFACE_DATA_H

#include <stdint.h>

#include "config.h"

typedef struct {
    const TrainConfig *cfg;
    int worker, n_workers, B;
    int64_t n_samples;        /* training samples in the set */
    int64_t steps_per_epoch;  /* full global batches per epoch */
    int64_t *order;           /* permutation of the current epoch */
    int64_t order_epoch;      /* epoch `order` belongs to, -1 none */
    uint8_t *rgb;             /* one decoded image */
} DataShard;

/* Returns 0, or -1 with a reason when the set is smaller than one global batch. */
int data_init(DataShard *d, const TrainConfig *cfg, int worker, int n_workers, char *err, size_t errlen);
void data_destroy(DataShard *d);

int64_t data_epoch_of(const DataShard *d, int64_t step);

/* Fills this worker's B images (B, 3, 112, 112), normalised and flipped, and
 * their labels for `step`. */
void data_fill(DataShard *d, int64_t step, float *images, int64_t *labels);

#endif
