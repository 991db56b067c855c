/* sampling.h -- Partial FC's choice of classes (An et al., "Partial FC: Training
 * 10 Million Identities on a Single Machine"), independent of how the classes
 * are split over servers.
 *
 * At every step each shard keeps the classes of its range that are positive
 * (a label of the step's global batch) plus the negatives drawn by a
 * counter-based hash:
 *     keep class c  <=>  c is a label of the batch
 *                        or rng_uniform(rng_hash4(seed, RNG_SAMPLING, step, c)) < rate
 * Whether c is kept depends only on (seed, step, c, the batch's labels), so
 * P = 1 and P = 3 servers keep the same classes and a resumed run keeps the
 * same ones as an uninterrupted one. The count is a random variable:
 * pos + rate * (rows - pos) in expectation, with standard deviation
 * sqrt(rate * (1 - rate) * (rows - pos)), where pos counts the shard's distinct
 * positives. insightface instead keeps exactly max(pos, int(rate * rows)) per
 * GPU (a top-k of random scores with the positives forced in), which makes the
 * sampled classes, and so the run, depend on the number of GPUs. */
#ifndef ARCFACE_SAMPLING_H
#define ARCFACE_SAMPLING_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

/* 1 if class cls is drawn as a negative at step (the hash rule above).
 * Every class is drawn for rate >= 1 (rng_uniform < 1), none for rate <= 0. */
static inline int sampling_draw(uint64_t seed, int64_t step, int64_t cls, float rate) {
    return rng_uniform(rng_hash4(seed, RNG_SAMPLING, (uint64_t)step, (uint64_t)cls)) < rate;
}

/* Returns 0 if rate is a valid sample rate, i.e. finite and in (0, 1], else -1
 * with the reason in err (errlen bytes, may be NULL). */
int sampling_check_rate(float rate, char *err, size_t errlen);

/* Writes into keep the sorted local rows (class start + keep[j]) of the
 * shard's classes [start, start + rows) kept at step, and returns how many.
 * labels (N) are global class ids of the whole global batch; those outside
 * the shard's range are ignored. keep has room for rows entries. mark (rows)
 * is scratch that must be all zero on entry and is all zero again on return.
 * rate >= 1 keeps every row (keep[j] = j) without hashing. rows <= INT32_MAX.
 * Can't fail. */
int64_t sampling_select(int32_t *keep, uint8_t *mark, const int64_t *labels, int N, int64_t start,
                        int64_t rows, int64_t step, float rate, uint64_t seed);

#endif
