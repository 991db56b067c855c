/* loader.h -- a worker's training batches, decoded ahead of time by
 * background threads into a ring of preallocated batches.
 *
 * Order: epoch e visits the samples in the order shuffle_index(pos, n,
 * key(seed, e)); the global batch of step t is the next W*B positions of it
 * (the last partial batch of an epoch is dropped, as insightface's drop_last)
 * and worker w takes positions [w*B, (w+1)*B). So W workers of batch B read
 * exactly what one worker of batch W*B reads. A sample is mirrored when a hash
 * of (seed, epoch, sample) says so. Decoding thread k prepares steps
 * first + k, first + k + T, ...; which thread decodes a batch never changes
 * what is in it.
 *
 * A sample that fails to load is reported (file and offset) and replaced by a
 * deterministic substitute from the same epoch; once a worker has skipped more
 * than max_bad_images, loader_get fails and the run stops. */
#ifndef ARCFACE_LOADER_H
#define ARCFACE_LOADER_H

#include <stdint.h>

#include "config.h"
#include "dataset.h"

typedef struct Loader Loader;

/* Starts decode_threads threads preparing steps [first_step, end_step).
 * Returns 0, or -1 with a reason (the set is smaller than one global batch). */
int loader_start(Loader **out, const Dataset *ds, const TrainConfig *cfg, int worker, int n_workers,
                 int64_t first_step, int64_t end_step, char *err, size_t errlen);

/* Waits (at most timeout seconds) for the batch of `step`, which must be
 * requested in order. On success images (B, 3, 112, 112) and labels (B) stay
 * valid until loader_release(step). Returns -1 with a reason when the bad
 * image limit was passed or the wait timed out. */
int loader_get(Loader *l, int64_t step, double timeout, const float **images, const int64_t **labels,
               char *err, size_t errlen);
void loader_release(Loader *l, int64_t step);

int64_t loader_epoch_of(const Loader *l, int64_t step);
int64_t loader_steps_per_epoch(const Loader *l);
/* Samples skipped so far because they failed to load. */
int64_t loader_bad_images(Loader *l);

/* Stops and joins the threads, frees everything; accepts NULL. */
void loader_stop(Loader **l);

#endif
