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
 * multiplies each input in place (as darknet does). */
#include <cblas.h>
#include <string.h>

#include "check.h"
#include "layers.h"

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

/* col (C*K*K, OH*OW), rows ld floats apart, = im2col(img (C,H,W)). */
static void im2col(float *restrict col, size_t ld, const float *restrict img, const Conv2dShape *s) {
    const int K = s->K, st = s->stride, OH = s->OH, OW = s->OW;
    for (int c = 0; c < s->C; c++) {
        for (int kh = 0; kh < K; kh++) {
            for (int kw = 0; kw < K; kw++) {
                int lo, hi;
                valid_cols(s, kw, &lo, &hi);
                float *row = col + ((size_t)(c * K + kh) * K + kw) * ld;
                for (int oh = 0; oh < OH; oh++) {
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

/* img (C,H,W) += col2im(col), col's rows ld floats apart: the adjoint of im2col,
 * padding entries dropped. */
static void col2im_add(float *restrict img, const float *restrict col, size_t ld, const Conv2dShape *s) {
    const int K = s->K, st = s->stride, OH = s->OH, OW = s->OW;
    for (int c = 0; c < s->C; c++) {
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

/* Copies between nb images' (OC, OHW) blocks, img_stride floats apart, and one
 * (OC, nb*OHW) staging block. */
static void gather_images(float *restrict block, const float *restrict img, size_t img_stride, int nb,
                          int OC, int OHW) {
    for (int oc = 0; oc < OC; oc++)
        for (int j = 0; j < nb; j++)
            memcpy(block + ((size_t)oc * nb + j) * OHW, img + j * img_stride + (size_t)oc * OHW,
                   sizeof(float) * OHW);
}

static void scatter_images(float *restrict img, size_t img_stride, const float *restrict block, int nb,
                           int OC, int OHW) {
    for (int oc = 0; oc < OC; oc++)
        for (int j = 0; j < nb; j++)
            memcpy(img + j * img_stride + (size_t)oc * OHW, block + ((size_t)oc * nb + j) * OHW,
                   sizeof(float) * OHW);
}

/* col (C*K*K, nb*OH*OW) = im2col of the nb images from inp, in_size floats apart. */
static void im2col_images(float *col, const float *inp, size_t in_size, int nb, const Conv2dShape *s) {
    const size_t OHW = (size_t)s->OH * s->OW;
    for (int j = 0; j < nb; j++) im2col(col + j * OHW, nb * OHW, inp + j * in_size, s);
}

void conv2d_forward(float *out, const float *inp, const float *weight, int N, const Conv2dShape *s,
                    float *workspace) {
    const int CKK = s->C * s->K * s->K, OHW = s->OH * s->OW;
    const size_t in_size = (size_t)s->C * s->H * s->W, out_size = (size_t)s->OC * OHW;
    if (is_pointwise(s)) {
        for (int n = 0; n < N; n++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->OC, OHW, CKK, 1.0f, weight, CKK,
                        inp + n * in_size, OHW, 0.0f, out + n * out_size, OHW);
        return;
    }
    CHECK(workspace, "conv2d needs %zu floats of workspace", conv2d_workspace_floats(s, N));
    const int per_gemm = conv2d_images_per_gemm(s, N);
    for (int n0 = 0; n0 < N; n0 += per_gemm) {
        const int nb = N - n0 < per_gemm ? N - n0 : per_gemm, cols = nb * OHW;
        float *col = workspace, *block = workspace + (size_t)CKK * cols;
        im2col_images(col, inp + n0 * in_size, in_size, nb, s);
        /* One image's (OC, OH*OW) result is already laid out as its output. */
        float *result = nb == 1 ? out + n0 * out_size : block;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->OC, cols, CKK, 1.0f, weight, CKK, col,
                    cols, 0.0f, result, cols);
        if (nb > 1) scatter_images(out + n0 * out_size, out_size, block, nb, s->OC, OHW);
    }
}

void conv2d_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                     const float *weight, int N, const Conv2dShape *s, float *workspace) {
    const int CKK = s->C * s->K * s->K, OHW = s->OH * s->OW;
    const size_t in_size = (size_t)s->C * s->H * s->W, out_size = (size_t)s->OC * OHW;
    if (is_pointwise(s)) {
        for (int n = 0; n < N; n++) {
            if (dweight)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->OC, CKK, OHW, 1.0f,
                            dout + n * out_size, OHW, inp + n * in_size, OHW, 1.0f, dweight, CKK);
            if (dinp)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, OHW, s->OC, 1.0f, weight, CKK,
                            dout + n * out_size, OHW, 1.0f, dinp + n * in_size, OHW);
        }
        return;
    }
    CHECK(workspace, "conv2d needs %zu floats of workspace", conv2d_workspace_floats(s, N));
    const int per_gemm = conv2d_images_per_gemm(s, N);
    for (int n0 = 0; n0 < N; n0 += per_gemm) {
        const int nb = N - n0 < per_gemm ? N - n0 : per_gemm, cols = nb * OHW;
        float *col = workspace, *block = workspace + (size_t)CKK * cols;
        const float *dout_block = dout + n0 * out_size;
        if (nb > 1) {
            gather_images(block, dout_block, out_size, nb, s->OC, OHW);
            dout_block = block;
        }
        if (dweight) {
            im2col_images(col, inp + n0 * in_size, in_size, nb, s);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->OC, CKK, cols, 1.0f, dout_block,
                        cols, col, cols, 1.0f, dweight, CKK);
        }
        if (!dinp) continue;
        /* The im2col copy is no longer needed; its space takes dcol. */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, cols, s->OC, 1.0f, weight, CKK,
                    dout_block, cols, 0.0f, col, cols);
        for (int j = 0; j < nb; j++)
            col2im_add(dinp + (n0 + j) * in_size, col + (size_t)j * OHW, (size_t)cols, s);
    }
}
