/* testutil.c -- shared assertions and numeric helpers for unit tests. */
#include "testutil.h"

#include <math.h>

#include "rng.h"

int test_failures;

int test_finish(const char *name) {
    if (test_failures) {
        fprintf(stderr, "%s: FAILED (%d failed checks)\n", name, test_failures);
        return 1;
    }
    fprintf(stderr, "%s: all checks passed\n", name);
    return 0;
}

void test_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * rng_uniform(rng_hash4(seed, i, 77, 0));
}

double test_max_rel_diff(const float *a, const float *b, size_t n, size_t *where) {
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double scale = fmax(1.0, fmax(fabs(a[i]), fabs(b[i])));
        double d = fabs((double)a[i] - (double)b[i]) / scale;
        if (!(d <= worst)) { /* also catches NaN */
            worst = isnan(d) ? INFINITY : d;
            at = i;
        }
    }
    if (where) *where = at;
    return worst;
}

double test_grad_rel_err(double analytic, double numeric, double floor) {
    return fabs(analytic - numeric) / fmax(fabs(analytic) + fabs(numeric), floor);
}
