/* test_shuffle.c -- shuffle_index is a permutation of [0, n) for many n and
 * keys, differs between keys, and spreads indices evenly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shuffle.h"
#include "testutil.h"

static void test_bijection(void) {
    const uint64_t sizes[] = {1, 2, 3, 4, 5, 7, 16, 17, 100, 255, 256, 257, 1000, 4097, 65537};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint64_t n = sizes[k];
        uint8_t *seen = calloc(n, 1);
        int bad = 0;
        for (uint64_t key = 0; key < 3; key++) {
            memset(seen, 0, n);
            for (uint64_t i = 0; i < n; i++) {
                uint64_t j = shuffle_index(i, n, key);
                if (j >= n || seen[j]) bad++;
                else seen[j] = 1;
            }
        }
        EXPECT(bad == 0, "n = %llu: %d collisions or out-of-range values", (unsigned long long)n, bad);
        free(seen);
    }
}

static void test_randomness(void) {
    const uint64_t n = 10000;
    /* Different keys give different orders; few fixed points (expected 1). */
    int same = 0, fixed = 0;
    for (uint64_t i = 0; i < n; i++) {
        same += shuffle_index(i, n, 1) == shuffle_index(i, n, 2);
        fixed += shuffle_index(i, n, 1) == i;
    }
    EXPECT(same < 10, "keys 1 and 2 agree at %d of %llu positions", same, (unsigned long long)n);
    EXPECT(fixed < 10, "%d fixed points", fixed);
    /* The first tenth of the order covers every tenth of the range about equally. */
    int bins[10] = {0};
    for (uint64_t i = 0; i < n / 10; i++) bins[shuffle_index(i, n, 3) * 10 / n]++;
    for (int b = 0; b < 10; b++) EXPECT(abs(bins[b] - 100) < 40, "bin %d holds %d of 1000", b, bins[b]);
    /* Consecutive positions are not consecutive samples. */
    int adjacent = 0;
    for (uint64_t i = 0; i + 1 < n; i++) {
        long long d = (long long)shuffle_index(i + 1, n, 4) - (long long)shuffle_index(i, n, 4);
        adjacent += llabs(d) == 1;
    }
    EXPECT(adjacent < 20, "%d adjacent pairs stay adjacent", adjacent);
}

int main(void) {
    test_bijection();
    test_randomness();
    return test_finish("test_shuffle");
}
