/* testutil.h -- assertions and numeric helpers shared by the unit tests.
 *
 * Every EXPECT that fails prints where and why and marks the test failed;
 * test_finish() returns the process exit code (non-zero on any failure). */
#ifndef ARCFACE_TESTUTIL_H
#define ARCFACE_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int test_failures;

#define EXPECT(cond, ...)                                                        \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                        \
            fprintf(stderr, "\n");                                               \
            test_failures++;                                                     \
        }                                                                        \
    } while (0)

#define EXPECT_NEAR(a, b, tol)                                                   \
    EXPECT(fabs((double)(a) - (double)(b)) <= (tol), "%s = %.9g, %s = %.9g, tol %g", #a, \
           (double)(a), #b, (double)(b), (double)(tol))

/* Prints "name: N passed, M failed" style summary and returns the exit code. */
int test_finish(const char *name);

/* Fills x[0..n) with uniform values in [lo, hi) from a fixed seed. */
void test_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed);

/* Largest |a - b| / max(1, |a|, |b|) over n elements; *where gets its index. */
double test_max_rel_diff(const float *a, const float *b, size_t n, size_t *where);

/* Relative error of an analytic gradient against a numeric one, robust near
 * zero: |a - n| / max(|a| + |n|, floor). */
double test_grad_rel_err(double analytic, double numeric, double floor);

#endif
