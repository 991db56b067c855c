/* linear.c -- fully connected layer, y = x W^T + b, on SGEMM. */
#include <string.h>

#include "layers.h"
#include "parallel.h"

void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                    int C, int OC) {
    /* Start from the bias and let SGEMM accumulate (beta = 1): one pass over out. */
    if (bias)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, sizeof(float) * OC);
    sgemm_parallel(CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, bias ? 1.0f : 0.0f,
                   out, OC);
}

void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int N, int C, int OC) {
    if (dinp)
        sgemm_parallel(CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
    if (dweight)
        sgemm_parallel(CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias)
        for (int n = 0; n < N; n++) {
            const float *d = dout + (size_t)n * OC;
            for (int o = 0; o < OC; o++) dbias[o] += d[o];
        }
}
