/* parallel.h -- the compute threads of a process: fork-join loops, and SGEMMs
 * split over the same threads.
 *
 * One pool does all the work of a step. OpenBLAS runs single-threaded inside it
 * (blas_setup), each thread multiplying its own part of a matrix: when OpenBLAS
 * had threads of its own, they spun in sched_yield through every memory-bound
 * pass between SGEMMs (batch norm, PReLU, im2col, the classifier's softmax) and
 * took the CPU from the threads doing it. */
#ifndef ARCFACE_PARALLEL_H
#define ARCFACE_PARALLEL_H

#include <cblas.h>
#include <stddef.h>

/* Sets the number of compute threads, the caller included; 0 = one per online
 * CPU. Call before the first parallel_for, from one thread. */
void parallel_set_threads(int threads);
int parallel_threads(void);

/* For tests: when on, parallel_for ignores `grain`, so that inputs small enough
 * for a test still get split over every thread. */
void parallel_ignore_grain(int on);

/* body(ctx, begin, end) handles the indices [begin, end). */
typedef void (*ParallelBody)(void *ctx, size_t begin, size_t end);

/* Calls body on consecutive ranges that cover [0, n) once each, spread over the
 * compute threads (the caller runs the first range), and returns when all have
 * returned. Every index is handled by one call and a range's bounds do not
 * change what happens to an index, so a body that writes only what its indices
 * own gives the same bits with any thread count. Ranges hold at least `grain`
 * indices: smaller loops run on the caller alone, not worth waking a thread.
 * A call made from inside a body, or while another thread's call is running,
 * runs on its caller alone. Can't fail (a thread that cannot be started means
 * fewer threads). */
void parallel_for(size_t n, size_t grain, ParallelBody body, void *ctx);

/* Indices of `n_per_index` floats each worth one thread: ~16k floats of
 * memory-bound work. At least 1. */
size_t parallel_grain(size_t n_per_index);

/* dst[0..n) = 0 over the compute threads. */
void parallel_zero(float *dst, size_t n);

/* cblas_sgemm(CblasRowMajor, ...) with C split into one block of columns (or of
 * rows, when C is taller than wide) per compute thread, each multiplied by a
 * single-threaded OpenBLAS call. */
void sgemm_parallel(CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
