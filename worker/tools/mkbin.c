/* mkbin.c -- arcface-mkbin: a verification set in insightface's .bin format
 * from identities of an image folder.
 *
 *     arcface-mkbin IMAGE_ROOT OUT.bin [first=K] [ids=N] [pairs=P] [seed=S]
 *
 * Takes the identities K .. K+N-1 of IMAGE_ROOT/<identity>/<image> in sorted
 * order (default: all), and writes P pairs (default 600, a multiple of 20) as
 * 10 folds, each half same-identity and half different-identity pairs, drawn
 * reproducibly from seed. The images are stored as the bytes of their files
 * (JPEG stays JPEG), exactly as insightface's lfw.bin stores them. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "binset.h"
#include "decode.h"
#include "log.h"
#include "rng.h"

typedef struct {
    char **files;
    int n;
} Identity;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int list(const char *dir, int dirs, char ***out) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0, cap = 16;
    char **names = malloc((size_t)cap * sizeof *names);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || (dirs ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))) continue;
        if (n == cap) names = realloc(names, (size_t)(cap *= 2) * sizeof *names);
        names[n++] = strdup(path);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

static long arg_value(int argc, char **argv, const char *key, long fallback) {
    size_t len = strlen(key);
    for (int i = 3; i < argc; i++)
        if (strncmp(argv[i], key, len) == 0 && argv[i][len] == '=') return strtol(argv[i] + len + 1, NULL, 10);
    return fallback;
}

int main(int argc, char **argv) {
    log_set_role("mkbin", -1);
    if (argc < 3) {
        fprintf(stderr, "usage: arcface-mkbin IMAGE_ROOT OUT.bin [first=K] [ids=N] [pairs=P] [seed=S]\n");
        return 2;
    }
    for (int i = 3; i < argc; i++)
        if (strncmp(argv[i], "first=", 6) && strncmp(argv[i], "ids=", 4) && strncmp(argv[i], "pairs=", 6) &&
            strncmp(argv[i], "seed=", 5)) {
            log_error("unknown argument '%s' (expected first=, ids=, pairs= or seed=)", argv[i]);
            return 2;
        }
    char **dirs;
    int n_dirs = list(argv[1], 1, &dirs);
    if (n_dirs < 0) {
        log_error("cannot open %s: %s", argv[1], strerror(errno));
        return 1;
    }
    long first = arg_value(argc, argv, "first", 0), ids = arg_value(argc, argv, "ids", n_dirs - first);
    long n_pairs = arg_value(argc, argv, "pairs", 600), seed = arg_value(argc, argv, "seed", 1);
    if (first < 0 || ids < 2 || first + ids > n_dirs || n_pairs < 20 || n_pairs % 20 != 0) {
        log_error("%s has %d identities: need 0 <= first, ids >= 2, first + ids <= %d, pairs a positive multiple "
                  "of 20 (got first=%ld ids=%ld pairs=%ld)", argv[1], n_dirs, n_dirs, first, ids, n_pairs);
        return 2;
    }
    Identity *people = calloc((size_t)ids, sizeof *people);
    for (long i = 0; i < ids; i++) {
        people[i].n = list(dirs[first + i], 0, &people[i].files);
        if (people[i].n < 2) {
            log_error("%s has %d images; every identity needs at least 2", dirs[first + i], people[i].n);
            return 1;
        }
    }
    /* Pairs: fold f holds n_pairs/10 pairs, the first half same-identity. */
    Rng rng = {.key = rng_hash4((uint64_t)seed, RNG_PAIRS, 0, 0)};
    int per_fold = (int)n_pairs / 10;
    const char **paths = calloc(2 * (size_t)n_pairs, sizeof *paths);
    uint8_t *same = calloc((size_t)n_pairs, 1);
    for (int p = 0; p < n_pairs; p++) {
        int is_same = (p % per_fold) < per_fold / 2;
        long a = (long)rng_next_below(&rng, (uint64_t)ids), b = a;
        while (!is_same && b == a) b = (long)rng_next_below(&rng, (uint64_t)ids);
        int ia = (int)rng_next_below(&rng, (uint64_t)people[a].n), ib = ia;
        while (ib == ia) ib = (int)rng_next_below(&rng, (uint64_t)people[b].n);
        paths[2 * p] = people[a].files[ia];
        paths[2 * p + 1] = people[b].files[ib];
        same[p] = (uint8_t)is_same;
    }
    /* Read every image once and keep its bytes. */
    const uint8_t **images = calloc(2 * (size_t)n_pairs, sizeof *images);
    size_t *lens = calloc(2 * (size_t)n_pairs, sizeof *lens);
    char err[1024];
    for (long i = 0; i < 2 * n_pairs; i++) {
        uint8_t *buf = NULL;
        size_t cap = 0;
        if (image_load_file(paths[i], &buf, &cap, &lens[i], err, sizeof err) != 0) {
            log_error("%s", err);
            return 1;
        }
        images[i] = buf;
    }
    int rc = binset_write(argv[2], images, lens, same, (int)n_pairs, err, sizeof err);
    if (rc != 0) {
        log_error("%s", err);
        return 1;
    }
    printf("%s: %ld pairs (%ld same) over %ld identities of %s (from %s)\n", argv[2], n_pairs, n_pairs / 2, ids,
           argv[1], strrchr(dirs[first], '/') + 1);
    return 0;
}
