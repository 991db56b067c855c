/* rng.h -- counter-based random numbers.
 *
 * Every random draw of the trainer is a pure function of (seed, purpose,
 * indices), never of a hidden stream position. That is what makes a run with W
 * workers and P servers draw exactly the same numbers as a run with 1 and 1:
 * a classifier row's initial values depend on its class id, not on which
 * server holds it; a sample's flip and dropout mask depend on its index in the
 * global batch, not on which worker computes it. */
#ifndef ARCFACE_RNG_H
#define ARCFACE_RNG_H

#include <math.h>
#include <stdint.h>

/* Purposes: distinct streams for distinct uses of the same seed. */
enum {
    RNG_BACKBONE_INIT = 1,
    RNG_CLASSIFIER_INIT = 2,
    RNG_DATA_ORDER = 3,
    RNG_AUGMENT = 4,
    RNG_DROPOUT = 5,
    RNG_SYNTHETIC = 6,
    RNG_PAIRS = 7,
    RNG_TOKEN = 8,
    RNG_SAMPLING = 9,
};

/* splitmix64's finaliser: a bijective mix with full avalanche. */
static inline uint64_t rng_mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static inline uint64_t rng_hash4(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
    uint64_t h = rng_mix(seed);
    h = rng_mix(h ^ a);
    h = rng_mix(h ^ (b * 0xD6E8FEB86659FD93ull));
    return rng_mix(h ^ (c * 0xA0761D6478BD642Full));
}

/* Uniform in [0, 1) with 24 bits, exactly representable as float. */
static inline float rng_uniform(uint64_t h) { return (float)(h >> 40) * (1.0f / 16777216.0f); }

/* Standard normal from one 64-bit hash (Box-Muller on its two 32-bit halves). */
static inline float rng_normal(uint64_t h) {
    double u1 = ((double)(h >> 32) + 1.0) / 4294967297.0; /* (0, 1) */
    double u2 = (double)(h & 0xffffffffu) / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* A sequential generator whose whole state is (key, counter): two integers to
 * checkpoint. */
typedef struct {
    uint64_t key;
    uint64_t counter;
} Rng;

static inline uint64_t rng_next(Rng *r) { return rng_hash4(r->key, r->counter++, 0, 0); }
static inline float rng_next_uniform(Rng *r) { return rng_uniform(rng_next(r)); }
/* Uniform integer in [0, n), n > 0 (Lemire's multiply; bias below 2^-32 for n < 2^32). */
static inline uint64_t rng_next_below(Rng *r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

#endif
