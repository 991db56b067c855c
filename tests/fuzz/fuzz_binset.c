/* fuzz_binset.c -- fuzz target for the .bin verification-set reader
 * (binset_load: the restricted unpickler). The input is the file. A set that
 * loads must point every image inside its blob, and must survive a round
 * trip: binset_write then binset_load give the same pairs, bytes and flags. */
#include <string.h>

#include "binset.h"
#include "fuzz_util.h"

/* Round trips only for sets this small, so one input stays fast. */
#define ROUND_TRIP_MAX_BYTES (1u << 20)

static void round_trip(const BinSet *set) {
    char err[1024];
    uint8_t *same = malloc(set->n_pairs > 0 ? (size_t)set->n_pairs : 1);
    FUZZ_ASSERT(same, "out of memory");
    for (int i = 0; i < set->n_pairs; i++) same[i] = set->same[i];
    const char *path = fuzz_remove_file("again.bin");
    int rc = binset_write(path, set->image, set->image_len, same, set->n_pairs, err, sizeof err);
    FUZZ_ASSERT(rc == 0, "binset_write of a loaded set: %s", err);
    BinSet again;
    rc = binset_load(&again, path, err, sizeof err);
    FUZZ_ASSERT(rc == 0, "reading back our own write: %s", err);
    FUZZ_ASSERT(again.n_pairs == set->n_pairs, "%d pairs became %d", set->n_pairs, again.n_pairs);
    for (int i = 0; i < set->n_pairs; i++)
        FUZZ_ASSERT(!again.same[i] == !set->same[i], "flag of pair %d changed", i);
    for (int j = 0; j < 2 * set->n_pairs; j++)
        FUZZ_ASSERT(again.image_len[j] == set->image_len[j] &&
                        memcmp(again.image[j], set->image[j], set->image_len[j]) == 0,
                    "image %d changed in the round trip", j);
    binset_free(&again);
    free(same);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("set.bin", data, size);
    char err[1024];
    BinSet set;
    if (binset_load(&set, path, err, sizeof err) != 0) {
        FUZZ_ASSERT(err[0] && set.n_pairs == 0 && !set.blob && !set.image,
                    "failure without a reason or with a half-filled set");
        fuzz_note("binset: %s", err);
        binset_free(&set);
        return 0;
    }
    FUZZ_ASSERT(set.n_pairs > 0 && set.blob && strcmp(set.name, "set") == 0,
                "loaded %d pairs, name '%s'", set.n_pairs, set.name);
    fuzz_note("binset: %d pairs", set.n_pairs);
    size_t total = 0;
    for (int j = 0; j < 2 * set.n_pairs; j++) {
        const uint8_t *p = set.image[j];
        size_t n = set.image_len[j];
        FUZZ_ASSERT(p >= set.blob && n <= set.blob_len && (size_t)(p - set.blob) <= set.blob_len - n,
                    "image %d (%zu bytes) outside the blob", j, n);
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < n; i++) sink ^= p[i];
        (void)sink;
        total += n;
    }
    if (total <= ROUND_TRIP_MAX_BYTES) round_trip(&set);
    binset_free(&set);
    return 0;
}
