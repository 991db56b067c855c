/* bench_util.h -- timing helpers shared by the benchmarks in tests/bench/. */
#ifndef ARCFACE_BENCH_UTIL_H
#define ARCFACE_BENCH_UTIL_H

/* Seconds on the monotonic clock. */
double bench_now(void);

/* Median of v[0..n) (n >= 1, at most 1024); v is left as it was. */
double bench_median(const double *v, int n);

#endif
