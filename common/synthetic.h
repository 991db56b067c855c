/* synthetic.h -- a built-in synthetic face set: procedurally drawn 112x112 RGB
 * faces, one visual identity per class, with per-image variation. Any number of
 * identities and images per identity, nothing stored: an image is a pure
 * function of (seed, identity, instance). See docs/synthetic.md. */
#ifndef ARCFACE_SYNTHETIC_H
#define ARCFACE_SYNTHETIC_H

#include <stddef.h>
#include <stdint.h>

#define FACE_SIZE 112

/* Renders image `instance` of `identity` into rgb, FACE_SIZE x FACE_SIZE RGB,
 * HWC, uint8 (FACE_SIZE * FACE_SIZE * 3 bytes, owned by the caller). A pure
 * function of (seed, identity, instance); identity and instance are >= 0.
 * Thread-safe, no allocation, can't fail. No horizontal flip is applied here:
 * the training pipeline flips. */
void synthetic_render(uint8_t *rgb, uint64_t seed, int64_t identity, int64_t instance);

typedef struct {
    int64_t id_a, inst_a, id_b, inst_b;
    uint8_t same;
} SyntheticPair;

/* Fills pairs[0..n) with verification pairs over identities
 * [first_id, first_id + n_ids) and instances [0, images_per_id), in the LFW
 * pairs.txt layout: 10 consecutive folds of n/10 pairs, each fold first n/20
 * same-identity pairs (two distinct instances) then n/20 different-identity
 * pairs. Deterministic from seed. Returns 0, or -1 with a reason in err
 * (n not a positive multiple of 20, n_ids < 2, images_per_id < 2,
 * first_id < 0); pairs is unaltered then. */
int synthetic_pairs(SyntheticPair *pairs, int n, uint64_t seed, int64_t first_id, int64_t n_ids,
                    int images_per_id, char *err, size_t errlen);

#endif
