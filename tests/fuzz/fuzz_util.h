/* fuzz_util.h -- helpers shared by the fuzz targets in tests/fuzz/.
 *
 * Each target defines LLVMFuzzerTestOneInput. Built with clang and
 * -fsanitize=fuzzer it is a libFuzzer binary (deploy/fuzz.sh); built with any
 * compiler against replay_main.c it runs the inputs named on its command line
 * (files, or directories of them) once each, which is how ctest replays the
 * corpora in tests/fuzz/corpus/ on every build.
 *
 * A target's contract: any input may make the code under test return an
 * error, which is fine; only a crash, a sanitizer report, a leak, a hang or a
 * FUZZ_ASSERT (a broken promise of the API, e.g. a success whose result
 * breaks its own invariants) is a finding. */
#ifndef ARCFACE_FUZZ_UTIL_H
#define ARCFACE_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reports a broken invariant as a crash, so the fuzzer saves the input. */
#define FUZZ_ASSERT(cond, ...)                                                        \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "FUZZ_ASSERT %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                             \
            fprintf(stderr, "\n");                                                    \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* Writes data[0..len) to the file `name` in this process's scratch directory
 * (created on first use under $TMPDIR, or /dev/shm, or /tmp, and removed at
 * normal exit) and returns its path, valid until the next call with the same
 * name. The file stays open between calls (see fuzz_util.c), so nothing but
 * these two functions may write, rename or replace it. Aborts when the file
 * cannot be written: that is the harness's environment failing, not the code
 * under test. */
const char *fuzz_write_file(const char *name, const void *data, size_t len);

/* Removes `name` from the scratch directory (no error when absent) and
 * returns its path, for the code under test to create. */
const char *fuzz_remove_file(const char *name);

/* Some checks cost far more than the rest of an input (rec_scan's and the
 * checkpoint CRC stream's 4 MiB buffers, about 6 ms each under ASan, where
 * the rest of an input takes about 0.1 ms; resize_to_face's 112 x 112
 * outputs): a fuzzing run does them on a fraction of its inputs, so that the
 * rest runs many times faster, and a thorough run does them on every input.
 *
 * Thorough runs: corpus replays (replay_main.c calls fuzz_set_thorough) and
 * any run with FUZZ_THOROUGH=1 in the environment (ctest's libFuzzer
 * replays, deploy/fuzz.sh --repro). A thorough run does everything a fuzzing
 * run does on an input, and more, so a finding reproduces in it. */
void fuzz_set_thorough(void);
int fuzz_thorough(void);

/* A hash of the whole input, for choosing which inputs get an expensive
 * check. A hash and not a control byte: mutants of an input keep its control
 * bytes, so the inputs that chose the check (it adds coverage) would fill the
 * corpus and nearly every input would pay again; a hash chooses afresh for
 * each mutant. Deterministic, so a finding reproduces. */
uint32_t fuzz_hash(const uint8_t *data, size_t size);

/* 1 for one input in `one_in` (by fuzz_hash) in a fuzzing run, for every
 * input in a thorough run. */
int fuzz_pick(const uint8_t *data, size_t size, unsigned one_in);

/* printf to stderr when FUZZ_VERBOSE is set in the environment: what the
 * code under test said about an input, for reproducing a finding or checking
 * that seeds get past the first checks. */
void fuzz_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A little-endian integer of `bytes` (1..8) bytes taken from the front of
 * *data (zero-extended when fewer are left), advancing it. */
uint64_t fuzz_take_uint(const uint8_t **data, size_t *size, int bytes);

#endif
