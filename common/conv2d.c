/* conv2d.c -- convolution as im2col + SGEMM over several images at once.
 *
 * The column matrix of nb images is (C*K*K, nb*OH*OW): row (c,kh,kw) holds, for
 * every output pixel of every image, the input pixel that kernel tap multiplies
 * (0 in the padding); image j owns columns [j*OH*OW, (j+1)*OH*OW). Then
 *   forward:  out (OC, nb*OH*OW)     = weight (OC, C*K*K) . col
 *   dweight:  dweight (OC, C*K*K)   += dout (OC, nb*OH*OW) . col^T
 *   dinp:     col                    = weight^T . dout, scattered back (col2im, adding).
 * Several images per SGEMM keep its inner dimension long where the feature maps
 * are small (7x7 has 49 pixels: one image alone multiplies at a fraction of the
 * speed); out and dout are (OC, OH*OW) per image in memory, so with nb > 1 they
 * go through a (OC, nb*OH*OW) staging block. A 1x1, stride-1, unpadded
 * convolution's column matrix is the image itself, so it skips the copy and
 * multiplies each input in place (as darknet does).
 *
 * The compute threads (parallel.h) split each block so that a thread multiplies
 * what it copied itself: the forward by output pixels (its columns of col, of
 * the SGEMM and of the output), the backward by input channels (their rows of
 * col, their columns of dweight, their rows of dcol, their planes of dinp).
 * Every thread calls a single-threaded SGEMM on its share. */
#include <cblas.h>
#include <string.h>

#include "check.h"
#include "layers.h"
#include "parallel.h"

Conv2dShape conv2d_shape(int C, int H, int W, int OC, int K, int stride, int pad) {
    CHECK(C > 0 && H > 0 && W > 0 && OC > 0 && K > 0 && stride > 0 && pad >= 0,
          "conv2d C=%d H=%d W=%d OC=%d K=%d stride=%d pad=%d", C, H, W, OC, K, stride, pad);
    CHECK(H + 2 * pad >= K && W + 2 * pad >= K, "conv2d kernel %d larger than padded %dx%d input",
          K, H, W);
    Conv2dShape s = {.C = C, .H = H, .W = W, .OC = OC, .K = K, .stride = stride, .pad = pad};
    s.OH = (H + 2 * pad - K) / stride + 1;
    s.OW = (W + 2 * pad - K) / stride + 1;
    return s;
}

static int is_pointwise(const Conv2dShape *s) { return s->K == 1 && s->stride == 1 && s->pad == 0; }

/* Columns one SGEMM should get at least: below about this many, OpenBLAS's
 * SGEMM runs well under its peak on these shapes (tests/bench/bench_conv). */
#define GEMM_MIN_COLUMNS 1536

int conv2d_images_per_gemm(const Conv2dShape *s, int N) {
    if (is_pointwise(s)) return 1;
    const int OHW = s->OH * s->OW;
    const int nb = (GEMM_MIN_COLUMNS + OHW - 1) / OHW;
    return nb < 1 ? 1 : nb > N ? (N > 0 ? N : 1) : nb;
}

size_t conv2d_workspace_floats(const Conv2dShape *s, int max_batch) {
    if (is_pointwise(s)) return 0;
    const size_t nb = (size_t)conv2d_images_per_gemm(s, max_batch), OHW = (size_t)s->OH * s->OW;
    const size_t col = (size_t)s->C * s->K * s->K * nb * OHW;
    return col + (nb > 1 ? (size_t)s->OC * nb * OHW : 0);
}

/* Output columns [*lo, *hi) whose input column ow*stride - pad + kw lies inside [0, W);
 * the others read padding. Splitting the row this way keeps the copy loops branch-free. */
static void valid_cols(const Conv2dShape *s, int kw, int *lo, int *hi) {
    int first = s->pad - kw; /* smallest ow*stride that lands on iw >= 0 */
    int l = first > 0 ? (first + s->stride - 1) / s->stride : 0;
    int last = s->W - 1 + s->pad - kw; /* largest ow*stride that lands on iw <= W-1 */
    int h = last >= 0 ? last / s->stride + 1 : 0;
    if (h > s->OW) h = s->OW;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* col (C*K*K, OH*OW), rows ld floats apart, = im2col(img (C,H,W)), restricted to
 * the taps of channels [c0, c1) (rows [c0*K*K, c1*K*K)) and the output pixels of
 * output rows [oh0, oh1) (columns [oh0*OW, oh1*OW)). */
static void im2col(float *restrict col, size_t ld, const float *restrict img, const Conv2dShape *s,
                   int c0, int c1, int oh0, int oh1) {
    const int K = s->K, st = s->stride, OW = s->OW;
    for (int c = c0; c < c1; c++) {
        for (int kh = 0; kh < K; kh++) {
            for (int kw = 0; kw < K; kw++) {
                int lo, hi;
                valid_cols(s, kw, &lo, &hi);
                float *row = col + ((size_t)(c * K + kh) * K + kw) * ld;
                for (int oh = oh0; oh < oh1; oh++) {
                    float *dst = row + (size_t)oh * OW;
                    int ih = oh * st - s->pad + kh;
                    if (ih < 0 || ih >= s->H) {
                        memset(dst, 0, sizeof(float) * OW);
                        continue;
                    }
                    const float *src = img + ((size_t)c * s->H + ih) * s->W;
                    const int off = kw - s->pad; /* output column ow reads src[ow*st + off] */
                    for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                    if (st == 1)
                        memcpy(dst + lo, src + lo + off, sizeof(float) * (hi - lo));
                    else
                        for (int ow = lo; ow < hi; ow++) dst[ow] = src[ow * st + off];
                    for (int ow = hi; ow < OW; ow++) dst[ow] = 0.0f;
                }
            }
        }
    }
}

/* Channels [c0, c1) of img (C,H,W) += col2im(col), col's rows ld floats apart: the
 * adjoint of im2col, padding entries dropped. */
static void col2im_add(float *restrict img, const float *restrict col, size_t ld, const Conv2dShape *s,
                       int c0, int c1) {
    const int K = s->K, st = s->stride, OH = s->OH, OW = s->OW;
    for (int c = c0; c < c1; c++) {
        for (int kh = 0; kh < K; kh++) {
            for (int kw = 0; kw < K; kw++) {
                int lo, hi;
                valid_cols(s, kw, &lo, &hi);
                const float *row = col + ((size_t)(c * K + kh) * K + kw) * ld;
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * st - s->pad + kh;
                    if (ih < 0 || ih >= s->H) continue;
                    const float *src = row + (size_t)oh * OW;
                    float *dst = img + ((size_t)c * s->H + ih) * s->W;
                    const int off = kw - s->pad;
                    /* Within one row the targets are distinct, so this vectorises. */
                    if (st == 1)
                        for (int ow = lo; ow < hi; ow++) dst[ow + off] += src[ow];
                    else
                        for (int ow = lo; ow < hi; ow++) dst[ow * st + off] += src[ow];
                }
            }
        }
    }
}

/* One SGEMM's block of nb images, for the thread bodies below. */
typedef struct {
    const Conv2dShape *s;
    int nb;
    const float *inp, *weight, *dout_block; /* inp: the block's first image */
    float *out, *dinp, *dweight;            /* out, dinp: the block's first image */
    float *col, *block;                     /* workspace: column matrix, staging block */
    size_t in_size, out_size;               /* floats per image */
} ConvBlock;

/* Forward of the block's output rows [u0, u1), u = j*OH + oh for output row oh of
 * image j: their columns of im2col, their columns of the SGEMM, and (nb > 1) their
 * copy from the staging block to the output. The threads split the columns, so
 * each multiplies what it copied, while it is still in its cache. */
static void forward_rows(void *ctx, size_t u0, size_t u1) {
    const ConvBlock *b = ctx;
    const Conv2dShape *s = b->s;
    const int OH = s->OH, OW = s->OW, CKK = s->C * s->K * s->K;
    const size_t OHW = (size_t)OH * OW, cols = (size_t)b->nb * OHW;
    for (size_t u = u0; u < u1;) {
        const size_t j = u / OH;
        const int oh0 = (int)(u % OH), oh1 = u1 - u < (size_t)(OH - oh0) ? oh0 + (int)(u1 - u) : OH;
        im2col(b->col + j * OHW, cols, b->inp + j * b->in_size, s, 0, s->C, oh0, oh1);
        u += (size_t)(oh1 - oh0);
    }
    /* One image's (OC, OH*OW) result is already laid out as its output. */
    float *result = b->nb == 1 ? b->out : b->block;
    const size_t c0 = u0 * OW;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->OC, (int)((u1 - u0) * OW), CKK, 1.0f,
                b->weight, CKK, b->col + c0, (int)cols, 0.0f, result + c0, (int)cols);
    if (b->nb == 1) return;
    for (size_t u = u0; u < u1;) {
        const size_t j = u / OH;
        const int oh0 = (int)(u % OH), oh1 = u1 - u < (size_t)(OH - oh0) ? oh0 + (int)(u1 - u) : OH;
        const size_t first = (size_t)oh0 * OW, n = (size_t)(oh1 - oh0) * OW;
        for (int oc = 0; oc < s->OC; oc++)
            memcpy(b->out + j * b->out_size + (size_t)oc * OHW + first,
                   b->block + (size_t)oc * cols + j * OHW + first, sizeof(float) * n);
        u += (size_t)(oh1 - oh0);
    }
}

/* block (OC, nb*OHW) <- the nb images' (OC, OHW) output gradients, rows [oc0, oc1). */
static void gather_dout(void *ctx, size_t oc0, size_t oc1) {
    const ConvBlock *b = ctx;
    const size_t OHW = (size_t)b->s->OH * b->s->OW;
    for (size_t oc = oc0; oc < oc1; oc++)
        for (int j = 0; j < b->nb; j++)
            memcpy(b->block + (oc * b->nb + j) * OHW, b->dout_block + j * b->out_size + oc * OHW,
                   sizeof(float) * OHW);
}

/* Backward of the block for input channels [c0, c1): their rows of im2col, their
 * columns of dweight (each over every pixel of the block), their rows of
 * dcol = weight^T . dout in the same rows of the workspace, and their planes of
 * dinp. Nothing a thread writes is read by another. */
static void backward_channels(void *ctx, size_t c0, size_t c1) {
    const ConvBlock *b = ctx;
    const Conv2dShape *s = b->s;
    const int KK = s->K * s->K, CKK = s->C * KK, OC = s->OC;
    const size_t OHW = (size_t)s->OH * s->OW, cols = (size_t)b->nb * OHW;
    const int k0 = (int)c0 * KK, nk = (int)(c1 - c0) * KK;
    float *rows = b->col + (size_t)k0 * cols;
    if (b->dweight) {
        for (int j = 0; j < b->nb; j++)
            im2col(b->col + j * OHW, cols, b->inp + j * b->in_size, s, (int)c0, (int)c1, 0, s->OH);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, nk, (int)cols, 1.0f, b->dout_block,
                    (int)cols, rows, (int)cols, 1.0f, b->dweight + k0, CKK);
    }
    if (!b->dinp) return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, (int)cols, OC, 1.0f, b->weight + k0, CKK,
                b->dout_block, (int)cols, 0.0f, rows, (int)cols);
    for (int j = 0; j < b->nb; j++)
        col2im_add(b->dinp + j * b->in_size, b->col + j * OHW, cols, s, (int)c0, (int)c1);
}

void conv2d_forward(float *out, const float *inp, const float *weight, int N, const Conv2dShape *s,
                    float *workspace) {
    const int CKK = s->C * s->K * s->K, OHW = s->OH * s->OW;
    const size_t in_size = (size_t)s->C * s->H * s->W, out_size = (size_t)s->OC * OHW;
    if (is_pointwise(s)) {
        for (int n = 0; n < N; n++)
            sgemm_parallel(CblasNoTrans, CblasNoTrans, s->OC, OHW, CKK, 1.0f, weight, CKK,
                           inp + n * in_size, OHW, 0.0f, out + n * out_size, OHW);
        return;
    }
    CHECK(workspace, "conv2d needs %zu floats of workspace", conv2d_workspace_floats(s, N));
    const int per_gemm = conv2d_images_per_gemm(s, N);
    for (int n0 = 0; n0 < N; n0 += per_gemm) {
        const int nb = N - n0 < per_gemm ? N - n0 : per_gemm;
        ConvBlock b = {.s = s, .nb = nb, .inp = inp + n0 * in_size, .weight = weight,
                       .out = out + n0 * out_size, .col = workspace,
                       .block = workspace + (size_t)CKK * nb * OHW, .in_size = in_size,
                       .out_size = out_size};
        /* A thread's share should stay a few hundred columns wide: SGEMM slows below that. */
        parallel_for((size_t)nb * s->OH, (size_t)(512 + s->OW - 1) / (size_t)s->OW, forward_rows, &b);
    }
}

void conv2d_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                     const float *weight, int N, const Conv2dShape *s, float *workspace) {
    const int CKK = s->C * s->K * s->K, OHW = s->OH * s->OW;
    const size_t in_size = (size_t)s->C * s->H * s->W, out_size = (size_t)s->OC * OHW;
    if (is_pointwise(s)) {
        for (int n = 0; n < N; n++) {
            if (dweight)
                sgemm_parallel(CblasNoTrans, CblasTrans, s->OC, CKK, OHW, 1.0f,
                               dout + n * out_size, OHW, inp + n * in_size, OHW, 1.0f, dweight, CKK);
            if (dinp)
                sgemm_parallel(CblasTrans, CblasNoTrans, CKK, OHW, s->OC, 1.0f, weight, CKK,
                               dout + n * out_size, OHW, 1.0f, dinp + n * in_size, OHW);
        }
        return;
    }
    CHECK(workspace, "conv2d needs %zu floats of workspace", conv2d_workspace_floats(s, N));
    const int per_gemm = conv2d_images_per_gemm(s, N);
    for (int n0 = 0; n0 < N; n0 += per_gemm) {
        const int nb = N - n0 < per_gemm ? N - n0 : per_gemm;
        ConvBlock b = {.s = s, .nb = nb, .inp = inp + n0 * in_size, .weight = weight,
                       .dout_block = dout + n0 * out_size, .dinp = dinp ? dinp + n0 * in_size : NULL,
                       .dweight = dweight, .col = workspace,
                       .block = workspace + (size_t)CKK * nb * OHW, .in_size = in_size,
                       .out_size = out_size};
        if (nb > 1) {
            parallel_for((size_t)s->OC, parallel_grain((size_t)nb * OHW), gather_dout, &b);
            b.dout_block = b.block;
        }
        parallel_for((size_t)s->C, 1, backward_channels, &b);
    }
}
