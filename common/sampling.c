/* sampling.c -- Partial FC's split-independent choice of classes (see sampling.h). */
#include "sampling.h"

#include <math.h>
#include <stdio.h>

int sampling_check_rate(float rate, char *err, size_t errlen) {
    if (isfinite(rate) && rate > 0.0f && rate <= 1.0f) return 0;
    if (err && errlen)
        snprintf(err, errlen, "sample_rate %g is outside (0, 1] (1 = every class, no sampling)",
                 (double)rate);
    return -1;
}

int64_t sampling_select(int32_t *keep, uint8_t *mark, const int64_t *labels, int N, int64_t start,
                        int64_t rows, int64_t step, float rate, uint64_t seed) {
    if (rate >= 1.0f) {
        for (int64_t r = 0; r < rows; r++) keep[r] = (int32_t)r;
        return rows;
    }
    for (int i = 0; i < N; i++)
        if (labels[i] >= start && labels[i] - start < rows) mark[labels[i] - start] = 1;
    int64_t n = 0;
    for (int64_t r = 0; r < rows; r++)
        if (mark[r] || sampling_draw(seed, step, start + r, rate)) keep[n++] = (int32_t)r;
    for (int i = 0; i < N; i++)
        if (labels[i] >= start && labels[i] - start < rows) mark[labels[i] - start] = 0;
    return n;
}
