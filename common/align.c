/* align.c -- the similarity transform to the ArcFace template (Umeyama) and
 * an affine warp that reproduces cv2.warpAffine's bilinear fixed point. */
#include "align.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>

const double align_template[ALIGN_POINTS][2] = {
    {38.2946, 51.6963}, {73.5318, 51.5014}, {56.0252, 71.7366}, {41.5493, 92.3655}, {70.7299, 92.2041},
};

/* Umeyama with scaling in 2-D. With demeaned points s_i, d_i and
 * A = sum_i d_i s_i^T, the best rotation R maximises tr(R^T A); for a rotation
 * by t that is cos t (A00 + A11) + sin t (A10 - A01), so
 *     scale * R = [p -q; q p],  p = (A00 + A11) / S,  q = (A10 - A01) / S,
 * with S = sum_i |s_i|^2 -- what Umeyama's SVD with the reflection-correcting
 * sign gives (its scale is tr(DS) / S = sqrt((A00+A11)^2 + (A10-A01)^2) / S).
 * Computing it directly leaves no SVD, no rank cases and no way to return a
 * reflection. */
int align_similarity(double M[6], const double (*src)[2], const double (*dst)[2], int n, double *rms, char *err,
                     size_t errlen) {
    if (n < 2) {
        snprintf(err, errlen, "a similarity transform needs at least 2 point pairs, got %d", n);
        return -1;
    }
    double ms[2] = {0, 0}, md[2] = {0, 0}, extent = 0;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < 2; k++) {
            if (!isfinite(src[i][k]) || !isfinite(dst[i][k])) {
                snprintf(err, errlen, "point %d has a coordinate that is not a finite number", i + 1);
                return -1;
            }
            ms[k] += src[i][k];
            md[k] += dst[i][k];
            extent = fmax(extent, fabs(src[i][k]));
        }
    }
    for (int k = 0; k < 2; k++) {
        ms[k] /= n;
        md[k] /= n;
    }
    double S = 0, a00 = 0, a01 = 0, a10 = 0, a11 = 0;
    for (int i = 0; i < n; i++) {
        double sx = src[i][0] - ms[0], sy = src[i][1] - ms[1];
        double dx = dst[i][0] - md[0], dy = dst[i][1] - md[1];
        S += sx * sx + sy * sy;
        a00 += dx * sx;
        a01 += dx * sy;
        a10 += dy * sx;
        a11 += dy * sy;
    }
    /* Spread below rounding noise of the coordinates: the points are one point. */
    double eps = 1e-12 * (1 + extent);
    if (S <= (double)n * eps * eps) {
        snprintf(err, errlen, "the %d source points all coincide: no rotation or scale to estimate", n);
        return -1;
    }
    double p = (a00 + a11) / S, q = (a10 - a01) / S;
    if (hypot(p, q) <= 1e-12) {
        snprintf(err, errlen, "no rotation maps the source points onto the target points (best scale 0)");
        return -1;
    }
    M[0] = p;
    M[1] = -q;
    M[3] = q;
    M[4] = p;
    M[2] = md[0] - (p * ms[0] - q * ms[1]);
    M[5] = md[1] - (q * ms[0] + p * ms[1]);
    if (rms) {
        double r = 0;
        for (int i = 0; i < n; i++) {
            double ex = M[0] * src[i][0] + M[1] * src[i][1] + M[2] - dst[i][0];
            double ey = M[3] * src[i][0] + M[4] * src[i][1] + M[5] - dst[i][1];
            r += ex * ex + ey * ey;
        }
        *rms = sqrt(r / n);
    }
    return 0;
}

int align_estimate(double M[6], const double landmarks[ALIGN_POINTS][2], double *rms, char *err, size_t errlen) {
    double cx = 0, cy = 0, r2 = 0;
    for (int i = 0; i < ALIGN_POINTS; i++) {
        cx += landmarks[i][0] / ALIGN_POINTS;
        cy += landmarks[i][1] / ALIGN_POINTS;
    }
    for (int i = 0; i < ALIGN_POINTS; i++)
        r2 += ((landmarks[i][0] - cx) * (landmarks[i][0] - cx) + (landmarks[i][1] - cy) * (landmarks[i][1] - cy)) /
              ALIGN_POINTS;
    /* Written so that a NaN fails it too. */
    if (!(sqrt(r2) >= ALIGN_MIN_SPREAD)) {
        snprintf(err, errlen,
                 "degenerate landmarks: the 5 points lie within %.3g pixels of their centre (at least %.3g "
                 "needed), not a detected face",
                 sqrt(r2), ALIGN_MIN_SPREAD);
        return -1;
    }
    return align_similarity(M, landmarks, align_template, ALIGN_POINTS, rms, err, errlen);
}

/* Transcribed from cv::warpAffine: D = 0 leaves an all-zero inverse. */
int align_invert(double inv[6], const double M[6]) {
    double D = M[0] * M[4] - M[1] * M[3];
    D = D != 0 ? 1. / D : 0;
    double a11 = M[4] * D, a22 = M[0] * D;
    double a12 = -M[1] * D, a21 = -M[3] * D;
    inv[0] = a11;
    inv[1] = a12;
    inv[3] = a21;
    inv[4] = a22;
    inv[2] = -a11 * M[2] - a12 * M[5];
    inv[5] = -a21 * M[2] - a22 * M[5];
    return D != 0 ? 0 : -1;
}

/* saturate_cast<int>(double): round half to even (cvRound), clamped. */
static int64_t round_sat(double v) {
    if (!(v == v)) return 0;
    if (v >= (double)INT_MAX) return INT_MAX;
    if (v <= (double)INT_MIN) return INT_MIN;
    return (int64_t)nearbyint(v);
}

/* OpenCV's precision: source positions in 1/1024 pixel (AB_BITS), weights in
 * 1/32 pixel steps (INTER_BITS). */
#define AB_BITS 10
#define INTER_BITS 5
#define INTER_TAB 32

/* One source sample, 0 outside the image. */
static inline int pixel_or_zero(const uint8_t *src, int w, int h, int ch, int x, int y, int c) {
    return (x >= 0 && x < w && y >= 0 && y < h) ? src[((size_t)y * w + x) * ch + c] : 0;
}

void align_warp(uint8_t *dst, int dst_w, int dst_h, const uint8_t *src, int src_w, int src_h, int channels,
                const double M[6]) {
    double iM[6];
    align_invert(iM, M);
    for (int y = 0; y < dst_h; y++) {
        /* As cv::WarpAffineInvoker: the row offset and each column's step are
         * rounded to 1/1024 separately, then shifted down to 1/32. int64_t
         * sums keep OpenCV's 32-bit results for every in-range position and
         * avoid its overflow for absurd ones (which land outside anyway). */
        int64_t X0 = round_sat((iM[1] * y + iM[2]) * (1 << AB_BITS)) + (1 << AB_BITS) / INTER_TAB / 2;
        int64_t Y0 = round_sat((iM[4] * y + iM[5]) * (1 << AB_BITS)) + (1 << AB_BITS) / INTER_TAB / 2;
        uint8_t *out = dst + (size_t)y * dst_w * channels;
        for (int x = 0; x < dst_w; x++, out += channels) {
            int64_t X = (X0 + round_sat(iM[0] * x * (1 << AB_BITS))) >> (AB_BITS - INTER_BITS);
            int64_t Y = (Y0 + round_sat(iM[3] * x * (1 << AB_BITS))) >> (AB_BITS - INTER_BITS);
            int64_t sx = X >> INTER_BITS, sy = Y >> INTER_BITS;
            int fx = (int)(X & (INTER_TAB - 1)), fy = (int)(Y & (INTER_TAB - 1));
            if (sx < -1 || sx >= src_w || sy < -1 || sy >= src_h) {
                for (int c = 0; c < channels; c++) out[c] = 0;
                continue;
            }
            int ix = (int)sx, iy = (int)sy;
            /* OpenCV's 15-bit weights are these times 32, its rounding
             * (v + 2^14) >> 15 the same as (v' + 2^9) >> 10 here. */
            int w00 = (INTER_TAB - fx) * (INTER_TAB - fy), w01 = fx * (INTER_TAB - fy);
            int w10 = (INTER_TAB - fx) * fy, w11 = fx * fy;
            if (ix >= 0 && ix + 1 < src_w && iy >= 0 && iy + 1 < src_h) {
                const uint8_t *p = src + ((size_t)iy * src_w + ix) * channels;
                const uint8_t *q = p + (size_t)src_w * channels;
                for (int c = 0; c < channels; c++) {
                    int v = w00 * p[c] + w01 * p[c + channels] + w10 * q[c] + w11 * q[c + channels];
                    out[c] = (uint8_t)((v + 512) >> 10);
                }
            } else {
                for (int c = 0; c < channels; c++) {
                    int v = w00 * pixel_or_zero(src, src_w, src_h, channels, ix, iy, c) +
                            w01 * pixel_or_zero(src, src_w, src_h, channels, ix + 1, iy, c) +
                            w10 * pixel_or_zero(src, src_w, src_h, channels, ix, iy + 1, c) +
                            w11 * pixel_or_zero(src, src_w, src_h, channels, ix + 1, iy + 1, c);
                    out[c] = (uint8_t)((v + 512) >> 10);
                }
            }
        }
    }
}
