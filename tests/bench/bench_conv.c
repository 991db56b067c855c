/* bench_conv.c -- every distinct convolution of IResNet (width 64) at batch 32:
 * forward and backward time and GFLOPS, the images conv2d puts into one SGEMM,
 * and the bare forward SGEMM of one image against that of the batched block,
 * which is why conv2d batches images where feature maps are small.
 *
 * Usage: bench_conv [BATCH]   (default 32; compute threads: OPENBLAS_NUM_THREADS, else
 * one per CPU, as the trainer with threads = 0) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"
#include "layers.h"
#include "parallel.h"
#include "rng.h"
#include "train_setup.h"

static float *filled(size_t n, uint64_t seed) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "bench_conv: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = 0.1f * rng_normal(rng_hash4(seed, 0, i, 0));
    return p;
}

/* Best of a few runs of a forward SGEMM (OC x cols x CKK), in seconds. */
static double sgemm_time(int OC, int cols, int CKK, const float *w, const float *b, float *c) {
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        const double t0 = bench_now();
        sgemm_parallel(CblasNoTrans, CblasNoTrans, OC, cols, CKK, 1.0f, w, CKK, b, cols, 0.0f, c, cols);
        const double t = bench_now() - t0;
        if (t < best) best = t;
    }
    return best;
}

static void bench(int N, int C, int HW, int OC, int K, int stride) {
    const Conv2dShape s = conv2d_shape(C, HW, HW, OC, K, stride, K / 2);
    const size_t n_in = (size_t)N * C * HW * HW, n_out = (size_t)N * OC * s.OH * s.OW;
    const size_t n_w = (size_t)OC * C * K * K;
    float *inp = filled(n_in, 1), *w = filled(n_w, 2), *dout = filled(n_out, 3);
    float *out = filled(n_out, 4), *dinp = filled(n_in, 5), *dw = filled(n_w, 6);
    float *ws = filled(conv2d_workspace_floats(&s, N), 7);
    conv2d_forward(out, inp, w, N, &s, ws); /* warm-up */
    double fwd = 1e30, bwd = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = bench_now();
        conv2d_forward(out, inp, w, N, &s, ws);
        const double t1 = bench_now();
        conv2d_backward(dinp, dw, dout, inp, w, N, &s, ws);
        const double t2 = bench_now();
        if (t1 - t0 < fwd) fwd = t1 - t0;
        if (t2 - t1 < bwd) bwd = t2 - t1;
    }
    const int nb = conv2d_images_per_gemm(&s, N), OHW = s.OH * s.OW, CKK = C * K * K;
    const double flop = 2.0 * N * OC * CKK * OHW;
    float *b = filled((size_t)CKK * nb * OHW, 8), *c = filled((size_t)OC * nb * OHW, 9);
    const double one = sgemm_time(OC, OHW, CKK, w, b, c), block = sgemm_time(OC, nb * OHW, CKK, w, b, c);
    printf("%4d %4d %3dx%-3d %dx%d/%d %3d | %8.1f %6.1f | %8.1f %6.1f | %9.1f %9.1f\n", C, OC, HW,
           HW, K, K, stride, nb, 1e3 * fwd, flop / fwd * 1e-9, 1e3 * bwd, 2 * flop / bwd * 1e-9,
           2.0 * OC * CKK * OHW / one * 1e-9, 2.0 * OC * CKK * nb * OHW / block * 1e-9);
    fflush(stdout);
    free(inp), free(w), free(dout), free(out), free(dinp), free(dw), free(ws), free(b), free(c);
}

int main(int argc, char **argv) {
    const int N = argc > 1 ? atoi(argv[1]) : 32;
    if (N < 1) {
        fprintf(stderr, "usage: bench_conv [BATCH]\n");
        return 2;
    }
    blas_setup(0, 0);
    printf("# OpenBLAS core %s, %d threads; batch %d; best of 3; GFLOPS of backward count dX and dW\n",
           openblas_get_corename(), parallel_threads(), N);
    printf("#  C   OC  size   kernel nb |   fwd ms GFLOPS |   bwd ms GFLOPS | sgemm 1 img  nb imgs (GFLOPS)\n");
    bench(N, 3, 112, 64, 3, 1);    /* stem */
    bench(N, 64, 112, 64, 3, 1);   /* stage 1: conv1 at 112x112 */
    bench(N, 64, 112, 64, 3, 2);   /*          conv2, stride 2 */
    bench(N, 64, 112, 64, 1, 2);   /*          shortcut */
    bench(N, 64, 56, 64, 3, 1);    /*          later blocks */
    bench(N, 64, 56, 128, 3, 1);   /* stage 2 */
    bench(N, 128, 56, 128, 3, 2);
    bench(N, 128, 28, 128, 3, 1);
    bench(N, 128, 28, 256, 3, 1);  /* stage 3 */
    bench(N, 256, 28, 256, 3, 2);
    bench(N, 256, 14, 256, 3, 1);
    bench(N, 256, 14, 512, 3, 1);  /* stage 4 */
    bench(N, 512, 14, 512, 3, 2);
    bench(N, 512, 7, 512, 3, 1);
    return 0;
}
