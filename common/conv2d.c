/* conv2d.c -- convolution as im2col + SGEMM, one image at a time through a shared workspace.
 *
 * The column matrix of one image is (C*K*K, OH*OW): row (c,kh,kw) holds, for every
 * output pixel, the input pixel that kernel tap multiplies (0 in the padding). Then
 *   forward:  out_n (OC, OH*OW)      = weight (OC, C*K*K) . col
 *   dweight:  dweight (OC, C*K*K)   += dout_n (OC, OH*OW) . col^T
 *   dinp:     col                    = weight^T . dout_n, scattered back (col2im, adding).
 * A 1x1, stride-1, unpadded convolution's column matrix is the image itself, so it
 * skips the copy and multiplies the input in place (as darknet does). */
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

size_t conv2d_workspace_floats(const Conv2dShape *s) {
    if (is_pointwise(s)) return 0;
    return (size_t)s->C * s->K * s->K * s->OH * s->OW;
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

/* col (C*K*K, OH*OW) = im2col(img (C,H,W)). */
static void im2col(float *restrict col, const float *restrict img, const Conv2dShape *s) {
    const int K = s->K, st = s->stride, OH = s->OH, OW = s->OW;
    for (int c = 0; c < s->C; c++) {
        for (int kh = 0; kh < K; kh++) {
            for (int kw = 0; kw < K; kw++) {
                int lo, hi;
                valid_cols(s, kw, &lo, &hi);
                float *row = col + ((size_t)(c * K + kh) * K + kw) * OH * OW;
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

/* img (C,H,W) += col2im(col): the adjoint of im2col, padding entries dropped. */
static void col2im_add(float *restrict img, const float *restrict col, const Conv2dShape *s) {
    const int K = s->K, st = s->stride, OH = s->OH, OW = s->OW;
    for (int c = 0; c < s->C; c++) {
        for (int kh = 0; kh < K; kh++) {
            for (int kw = 0; kw < K; kw++) {
                int lo, hi;
                valid_cols(s, kw, &lo, &hi);
                const float *row = col + ((size_t)(c * K + kh) * K + kw) * OH * OW;
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

void conv2d_forward(float *out, const float *inp, const float *weight, int N, const Conv2dShape *s,
                    float *workspace) {
    const int CKK = s->C * s->K * s->K, OHW = s->OH * s->OW;
    const size_t in_size = (size_t)s->C * s->H * s->W, out_size = (size_t)s->OC * OHW;
    CHECK(is_pointwise(s) || workspace, "conv2d needs %zu floats of workspace",
          conv2d_workspace_floats(s));
    for (int n = 0; n < N; n++) {
        const float *col = inp + n * in_size;
        if (!is_pointwise(s)) {
            im2col(workspace, col, s);
            col = workspace;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->OC, OHW, CKK, 1.0f, weight, CKK,
                    col, OHW, 0.0f, out + n * out_size, OHW);
    }
}

void conv2d_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                     const float *weight, int N, const Conv2dShape *s, float *workspace) {
    const int CKK = s->C * s->K * s->K, OHW = s->OH * s->OW;
    const size_t in_size = (size_t)s->C * s->H * s->W, out_size = (size_t)s->OC * OHW;
    CHECK(is_pointwise(s) || workspace, "conv2d needs %zu floats of workspace",
          conv2d_workspace_floats(s));
    for (int n = 0; n < N; n++) {
        const float *dout_n = dout + n * out_size;
        if (dweight) {
            const float *col = inp + n * in_size;
            if (!is_pointwise(s)) {
                im2col(workspace, col, s);
                col = workspace;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->OC, CKK, OHW, 1.0f, dout_n, OHW,
                        col, OHW, 1.0f, dweight, CKK);
        }
        if (!dinp) continue;
        if (is_pointwise(s)) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, OHW, s->OC, 1.0f, weight, CKK,
                        dout_n, OHW, 1.0f, dinp + n * in_size, OHW);
        } else {
            /* The workspace's im2col copy is no longer needed; reuse it for dcol. */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, OHW, s->OC, 1.0f, weight, CKK,
                        dout_n, OHW, 0.0f, workspace, OHW);
            col2im_add(dinp + n * in_size, workspace, s);
        }
    }
}
