/* replay_main.c -- runs a fuzz target's LLVMFuzzerTestOneInput once on each
 * input file named on the command line (a directory stands for the files in
 * it, in name order), for builds without libFuzzer: ctest replays the
 * corpora this way, and a crash file from deploy/fuzz.sh reproduces under gdb
 * or valgrind with it. Every input gets every check, also those a fuzzing run
 * leaves to a fraction of its inputs (fuzz_thorough in fuzz_util.h).
 * Exits 0 after the last input; a finding aborts before.
 * Exits 1 when an argument cannot be read or names no input at all. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *data = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size == cap) {
            cap = cap ? 2 * cap : 65536;
            uint8_t *p = realloc(data, cap);
            if (!p) {
                fprintf(stderr, "replay: %s: out of memory\n", path);
                free(data);
                fclose(f);
                return -1;
            }
            data = p;
        }
        size_t n = fread(data + size, 1, cap - size, f);
        size += n;
        if (n == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "replay: %s: read error\n", path);
        free(data);
        return -1;
    }
    /* An exact-size copy, so ASan sees a read past the input's end. */
    uint8_t *exact = malloc(size ? size : 1);
    if (!exact) {
        free(data);
        return -1;
    }
    if (size) memcpy(exact, data, size);
    free(data);
    LLVMFuzzerTestOneInput(exact, size);
    free(exact);
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, int *count) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **files = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(files, cap * sizeof *files);
            if (!p) {
                rc = -1;
                break;
            }
            files = p;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        files[n] = malloc(len);
        if (!files[n]) {
            rc = -1;
            break;
        }
        snprintf(files[n], len, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    if (n) qsort(files, n, sizeof *files, by_name);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (rc == 0 && stat(files[i], &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(files[i]) != 0) rc = -1;
            else (*count)++;
        }
        free(files[i]);
    }
    free(files);
    return rc;
}

int main(int argc, char **argv) {
    fuzz_set_thorough(); /* a replay does every check on every input */
    int count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        int rc = S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i]);
        if (rc != 0) return 1;
        if (!S_ISDIR(st.st_mode)) count++;
    }
    if (count == 0) {
        fprintf(stderr, "usage: %s INPUT|DIR...   (no input given or found)\n", argv[0]);
        return 1;
    }
    printf("%s: %d inputs replayed, no finding\n", argv[0], count);
    return 0;
}
