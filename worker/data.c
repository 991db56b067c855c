/* data.c -- per-epoch shuffled, sharded access to the training set. */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "image.h"
#include "rng.h"
#include "synthetic.h"

int data_init(DataShard *d, const TrainConfig *cfg, int worker, int n_workers, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    d->cfg = cfg;
    d->worker = worker;
    d->n_workers = n_workers;
    d->B = cfg->batch_size;
    d->n_samples = (int64_t)cfg->synthetic_ids * cfg->synthetic_images;
    int64_t global = (int64_t)n_workers * d->B;
    d->steps_per_epoch = d->n_samples / global;
    if (d->steps_per_epoch < 1) {
        snprintf(err, errlen, "the training set has %lld samples, fewer than one global batch of %lld "
                 "(%d workers x batch_size %d)", (long long)d->n_samples, (long long)global, n_workers, d->B);
        return -1;
    }
    d->order = xcalloc_aligned((size_t)d->n_samples, sizeof(int64_t));
    d->order_epoch = -1;
    d->rgb = xcalloc_aligned((size_t)FACE_SIZE * FACE_SIZE * 3, 1);
    return 0;
}

void data_destroy(DataShard *d) {
    free(d->order);
    free(d->rgb);
    memset(d, 0, sizeof *d);
}

int64_t data_epoch_of(const DataShard *d, int64_t step) { return step / d->steps_per_epoch; }

/* Fisher-Yates with a generator keyed by (seed, epoch). */
static void shuffle_epoch(DataShard *d, int64_t epoch) {
    for (int64_t i = 0; i < d->n_samples; i++) d->order[i] = i;
    Rng rng = {.key = rng_hash4(d->cfg->seed, RNG_DATA_ORDER, (uint64_t)epoch, 0), .counter = 0};
    for (int64_t i = d->n_samples - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_next_below(&rng, (uint64_t)i + 1);
        int64_t t = d->order[i];
        d->order[i] = d->order[j];
        d->order[j] = t;
    }
    d->order_epoch = epoch;
}

void data_fill(DataShard *d, int64_t step, float *images, int64_t *labels) {
    int64_t epoch = data_epoch_of(d, step);
    if (epoch != d->order_epoch) shuffle_epoch(d, epoch);
    int64_t global = (int64_t)d->n_workers * d->B;
    int64_t first = (step % d->steps_per_epoch) * global + (int64_t)d->worker * d->B;
    const size_t image_floats = (size_t)3 * FACE_SIZE * FACE_SIZE;
    for (int i = 0; i < d->B; i++) {
        int64_t sample = d->order[first + i];
        int64_t identity = sample / d->cfg->synthetic_images;
        int64_t instance = sample % d->cfg->synthetic_images;
        synthetic_render(d->rgb, d->cfg->seed, identity, instance);
        int flip = (int)(rng_hash4(d->cfg->seed, RNG_AUGMENT, (uint64_t)epoch, (uint64_t)sample) & 1);
        image_to_tensor(images + (size_t)i * image_floats, d->rgb, flip);
        labels[i] = identity;
    }
}
