/* shuffle.h -- a random permutation of [0, n) evaluated one index at a time.
 *
 * shuffle_index(i, n, key) is a bijection of [0, n) for every key: a 4-round
 * Feistel network on the smallest even-bit power-of-two domain >= n, walked
 * back into [0, n) ("cycle walking": on average fewer than 4 rounds since the
 * domain is < 4n). It needs no table, so a data order over 100 million samples
 * costs no memory, any worker or decoding thread can compute any position of
 * any epoch by itself, and the order does not depend on who asks. */
#ifndef ARCFACE_SHUFFLE_H
#define ARCFACE_SHUFFLE_H

#include <stdint.h>

#include "rng.h"

static inline uint64_t shuffle_feistel(uint64_t x, int half_bits, uint64_t key) {
    uint64_t mask = (1ull << half_bits) - 1;
    uint64_t left = x >> half_bits, right = x & mask;
    for (int round = 0; round < 4; round++) {
        uint64_t f = rng_hash4(key, (uint64_t)round, right, 0) & mask;
        uint64_t next = left ^ f;
        left = right;
        right = next;
    }
    return (left << half_bits) | right;
}

/* Position i (0 <= i < n) of the permutation keyed by key. n >= 1. */
static inline uint64_t shuffle_index(uint64_t i, uint64_t n, uint64_t key) {
    int half_bits = 1;
    while ((1ull << (2 * half_bits)) < n) half_bits++;
    uint64_t x = i;
    do {
        x = shuffle_feistel(x, half_bits, key);
    } while (x >= n);
    return x;
}

#endif
