/* test_align.c -- face alignment: the similarity estimate (exact recovery,
 * least-squares optimality with noise, no reflections, degenerate input), the
 * warp against a naive double-precision bilinear and against pixels produced
 * by cv2.warpAffine, and the landmark-file run behind arcface-align (bad lines
 * named with their line number, outputs in identity folders). */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "align.h"
#include "align_list.h"
#include "decode.h"
#include "jpeg_encode.h"
#include "log.h"
#include "rng.h"
#include "testutil.h"

static char err[4096];

static double uniform(uint64_t *state, double lo, double hi) {
    uint64_t r = rng_hash4(*state += 1, 7, 11, 13);
    return lo + (hi - lo) * (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

/* G = scale * rotation(angle) + (tx, ty) as a 2x3 matrix. */
static void similarity(double G[6], double angle, double scale, double tx, double ty) {
    G[0] = scale * cos(angle);
    G[1] = -scale * sin(angle);
    G[2] = tx;
    G[3] = scale * sin(angle);
    G[4] = scale * cos(angle);
    G[5] = ty;
}

static void apply(double out[2], const double G[6], const double p[2]) {
    double x = G[0] * p[0] + G[1] * p[1] + G[2], y = G[3] * p[0] + G[4] * p[1] + G[5];
    out[0] = x;
    out[1] = y;
}

static double max_abs_diff6(const double a[6], const double b[6]) {
    double d = 0;
    for (int i = 0; i < 6; i++) d = fmax(d, fabs(a[i] - b[i]));
    return d;
}

/* The least-squares similarity by a different route than the library's: the
 * 4x4 normal equations of min sum |[p -q; q p] s + t - d|^2 in (p, q, tx, ty),
 * solved by Gaussian elimination with partial pivoting. */
static void similarity_normal_equations(double M[6], const double (*src)[2], const double (*dst)[2], int n) {
    double A[4][5] = {{0}};
    for (int i = 0; i < n; i++) {
        double x = src[i][0], y = src[i][1];
        double rows[2][5] = {{x, -y, 1, 0, dst[i][0]}, {y, x, 0, 1, dst[i][1]}};
        for (int r = 0; r < 2; r++)
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < 5; k++) A[j][k] += rows[r][j] * rows[r][k];
    }
    for (int c = 0; c < 4; c++) {
        int piv = c;
        for (int r = c + 1; r < 4; r++)
            if (fabs(A[r][c]) > fabs(A[piv][c])) piv = r;
        for (int k = 0; k < 5; k++) {
            double t = A[c][k];
            A[c][k] = A[piv][k];
            A[piv][k] = t;
        }
        for (int r = 0; r < 4; r++) {
            if (r == c) continue;
            double f = A[r][c] / A[c][c];
            for (int k = 0; k < 5; k++) A[r][k] -= f * A[c][k];
        }
    }
    double p = A[0][4] / A[0][0], q = A[1][4] / A[1][1], tx = A[2][4] / A[2][2], ty = A[3][4] / A[3][3];
    double out[6] = {p, -q, tx, q, p, ty};
    memcpy(M, out, sizeof out);
}

/* ---- the similarity estimate -------------------------------------------- */

/* Landmarks made by mapping the template through a known G^-1 must give back
 * G, with zero residual, over rotations all the way round and scales from a
 * tiny to a huge face. */
static void test_recovers_known_transform(void) {
    uint64_t st = 1;
    double worst = 0, worst_rms = 0;
    for (int t = 0; t < 200; t++) {
        double G[6], Ginv[6];
        similarity(G, uniform(&st, -M_PI, M_PI), exp(uniform(&st, -3, 2)), uniform(&st, -100, 100),
                   uniform(&st, -100, 100));
        align_invert(Ginv, G);
        double lm[ALIGN_POINTS][2];
        for (int i = 0; i < ALIGN_POINTS; i++) apply(lm[i], Ginv, align_template[i]);
        double M[6], rms = -1;
        int rc = align_estimate(M, lm, &rms, err, sizeof err);
        EXPECT(rc == 0, "trial %d: %s", t, err);
        if (rc != 0) continue;
        worst = fmax(worst, max_abs_diff6(M, G) / (1 + fabs(G[0]) + fabs(G[1])));
        worst_rms = fmax(worst_rms, rms);
    }
    EXPECT(worst < 1e-9, "worst relative error of the recovered matrix %.3g", worst);
    EXPECT(worst_rms < 1e-9, "worst residual %.3g pixels for an exact similarity", worst_rms);
}

/* With noisy points the result must be the least-squares optimum: equal to the
 * normal-equations solution, its residual orthogonal to every direction of
 * the model, the reported rms the true one, and no nearby similarity better. */
static void test_least_squares_with_noise(void) {
    uint64_t st = 2;
    for (int t = 0; t < 100; t++) {
        int n = 2 + t % 9;
        double src[10][2], dst[10][2], G[6];
        similarity(G, uniform(&st, -3, 3), uniform(&st, 0.2, 5), uniform(&st, -50, 50), uniform(&st, -50, 50));
        for (int i = 0; i < n; i++) {
            src[i][0] = uniform(&st, 0, 300);
            src[i][1] = uniform(&st, 0, 300);
            apply(dst[i], G, src[i]);
            dst[i][0] += uniform(&st, -4, 4);
            dst[i][1] += uniform(&st, -4, 4);
        }
        double M[6], R[6], rms;
        int rc = align_similarity(M, (const double(*)[2])src, (const double(*)[2])dst, n, &rms, err, sizeof err);
        EXPECT(rc == 0, "trial %d: %s", t, err);
        if (rc != 0) continue;
        similarity_normal_equations(R, (const double(*)[2])src, (const double(*)[2])dst, n);
        EXPECT(max_abs_diff6(M, R) < 1e-8 * (1 + fabs(R[2]) + fabs(R[5])), "trial %d: differs from the normal "
               "equations' solution by %.3g", t, max_abs_diff6(M, R));
        double gp = 0, gq = 0, gx = 0, gy = 0, ss = 0, scale = 0;
        for (int i = 0; i < n; i++) {
            double m[2];
            apply(m, M, src[i]);
            double ex = m[0] - dst[i][0], ey = m[1] - dst[i][1];
            gp += ex * src[i][0] + ey * src[i][1];
            gq += -ex * src[i][1] + ey * src[i][0];
            gx += ex;
            gy += ey;
            ss += ex * ex + ey * ey;
            scale += src[i][0] * src[i][0] + src[i][1] * src[i][1];
        }
        double g = fmax(fmax(fabs(gp), fabs(gq)) / sqrt(scale), fmax(fabs(gx), fabs(gy)));
        EXPECT(g < 1e-8 * sqrt(n * (ss + 1)), "trial %d: gradient of the squared residual %.3g, not 0", t, g);
        EXPECT_NEAR(rms, sqrt(ss / n), 1e-9 * (1 + rms));
        /* Nudging any parameter only makes the fit worse. */
        for (int k = 0; k < 4; k++)
            for (int sgn = -1; sgn <= 1; sgn += 2) {
                double P[6];
                memcpy(P, M, sizeof P);
                double h = 1e-3 * sgn;
                if (k == 0) P[0] = P[4] = M[0] + h;
                if (k == 1) P[3] = M[3] + h, P[1] = -(M[3] + h);
                if (k == 2) P[2] += h * 100;
                if (k == 3) P[5] += h * 100;
                double s2 = 0;
                for (int i = 0; i < n; i++) {
                    double m[2];
                    apply(m, P, src[i]);
                    s2 += (m[0] - dst[i][0]) * (m[0] - dst[i][0]) + (m[1] - dst[i][1]) * (m[1] - dst[i][1]);
                }
                EXPECT(s2 >= ss, "trial %d: moving parameter %d by %g improves the fit (%.9g < %.9g)", t, k, h, s2,
                       ss);
            }
    }
}

/* skimage's SimilarityTransform.estimate (Umeyama with SVD), printed by
 * numpy for these landmarks and for their mirror image (x -> 250 - x, where
 * det(A) < 0 and Umeyama flips a singular vector rather than reflect). */
static void test_matches_umeyama_and_never_reflects(void) {
    double lm[ALIGN_POINTS][2] = {{104.3, 112.1}, {146.8, 111.0}, {125.2, 137.9}, {108.4, 160.7}, {142.9, 159.3}};
    const double want[6] = {0.8370019444360768, -0.006764064702356789, -48.113058453155375,
                            0.0067640647023567875, 0.8370019444360767, -42.94791023363348};
    const double want_mirrored[6] = {0.18668629868490888, -0.00821382668551551, 33.90617273426976,
                                     0.00821382668551551, 0.18668629868490888, 45.45164897330244};
    double M[6];
    EXPECT(align_estimate(M, lm, NULL, err, sizeof err) == 0, "%s", err);
    EXPECT(max_abs_diff6(M, want) < 1e-10, "differs from skimage by %.3g", max_abs_diff6(M, want));
    for (int i = 0; i < ALIGN_POINTS; i++) lm[i][0] = 250 - lm[i][0];
    EXPECT(align_estimate(M, lm, NULL, err, sizeof err) == 0, "%s", err);
    EXPECT(max_abs_diff6(M, want_mirrored) < 1e-10, "mirrored: differs from skimage by %.3g",
           max_abs_diff6(M, want_mirrored));
    /* Mirrored template points: a reflection would fit exactly; a similarity cannot. */
    uint64_t st = 3;
    for (int t = 0; t < 50; t++) {
        double G[6], pts[ALIGN_POINTS][2], rms;
        similarity(G, uniform(&st, -M_PI, M_PI), uniform(&st, 0.5, 3), uniform(&st, 0, 200), uniform(&st, 0, 200));
        for (int i = 0; i < ALIGN_POINTS; i++) {
            double m[2] = {-align_template[i][0], align_template[i][1]};
            apply(pts[i], G, m);
        }
        int rc = align_estimate(M, pts, &rms, err, sizeof err);
        EXPECT(rc == 0, "%s", err);
        if (rc != 0) continue;
        double det = M[0] * M[4] - M[1] * M[3];
        EXPECT(det > 0 && M[0] == M[4] && M[1] == -M[3], "trial %d: not a rotation and scale: [%g %g; %g %g]", t,
               M[0], M[1], M[3], M[4]);
        EXPECT(rms > 1, "trial %d: residual %.3g: mirrored landmarks cannot fit a similarity this well", t, rms);
    }
}

static void test_degenerate_input_rejected(void) {
    double M[6];
    double same[ALIGN_POINTS][2];
    for (int i = 0; i < ALIGN_POINTS; i++) same[i][0] = 120.5, same[i][1] = 80.25;
    err[0] = '\0';
    EXPECT(align_estimate(M, same, NULL, err, sizeof err) == -1, "all landmarks equal accepted");
    EXPECT(strstr(err, "degenerate") != NULL, "reason: '%s'", err);
    double tiny[ALIGN_POINTS][2];
    for (int i = 0; i < ALIGN_POINTS; i++) {
        tiny[i][0] = 100 + 0.2 * align_template[i][0] / 56;
        tiny[i][1] = 100 + 0.2 * align_template[i][1] / 56;
    }
    EXPECT(align_estimate(M, tiny, NULL, err, sizeof err) == -1, "a face under a pixel wide accepted");
    double nan_pts[ALIGN_POINTS][2];
    memcpy(nan_pts, align_template, sizeof nan_pts);
    nan_pts[2][1] = NAN;
    EXPECT(align_estimate(M, nan_pts, NULL, err, sizeof err) == -1, "NaN landmark accepted");
    nan_pts[2][1] = INFINITY;
    EXPECT(align_estimate(M, nan_pts, NULL, err, sizeof err) == -1, "infinite landmark accepted");
    /* The generic estimate: fewer than 2 points, coincident sources, all
     * targets equal (scale 0) are errors; collinear points are fine. */
    const double a[3][2] = {{1, 2}, {1, 2}, {1, 2}}, b[3][2] = {{0, 0}, {1, 0}, {2, 0}};
    const double c[3][2] = {{5, 5}, {5, 5}, {5, 5}};
    EXPECT(align_similarity(M, a, b, 1, NULL, err, sizeof err) == -1, "one point accepted");
    EXPECT(align_similarity(M, a, b, 3, NULL, err, sizeof err) == -1, "coincident source points accepted");
    EXPECT(align_similarity(M, b, c, 3, NULL, err, sizeof err) == -1, "scale-0 fit accepted");
    const double d[3][2] = {{0, 0}, {0, 2}, {0, 4}};
    EXPECT(align_similarity(M, b, d, 3, NULL, err, sizeof err) == 0, "collinear points rejected: %s", err);
    EXPECT(fabs(M[0]) < 1e-12 && fabs(M[3] - 2) < 1e-12, "x axis onto the y axis doubled: got [%g %g; %g %g]",
           M[0], M[1], M[3], M[4]);
}

/* ---- the warp ----------------------------------------------------------- */

/* dst(x, y) = bilinear src at M^-1 (x, y), pixel centres at integers, 0
 * outside, in double, rounded once. */
static void warp_reference(uint8_t *dst, int dst_w, int dst_h, const uint8_t *src, int src_w, int src_h, int ch,
                           const double M[6]) {
    double det = M[0] * M[4] - M[1] * M[3];
    for (int y = 0; y < dst_h; y++)
        for (int x = 0; x < dst_w; x++) {
            double u = x - M[2], v = y - M[5];
            double sx = (M[4] * u - M[1] * v) / det, sy = (-M[3] * u + M[0] * v) / det;
            double fx = floor(sx), fy = floor(sy);
            for (int c = 0; c < ch; c++) {
                double acc = 0;
                for (int j = 0; j < 2; j++)
                    for (int i = 0; i < 2; i++) {
                        double px = fx + i, py = fy + j;
                        double w = (i ? sx - fx : 1 - (sx - fx)) * (j ? sy - fy : 1 - (sy - fy));
                        if (px >= 0 && px < src_w && py >= 0 && py < src_h)
                            acc += w * src[((size_t)py * src_w + (size_t)px) * ch + c];
                    }
                dst[((size_t)y * dst_w + x) * ch + c] = (uint8_t)floor(acc + 0.5);
            }
        }
}

/* A smooth picture fading to 0 at its edges: neighbouring pixels differ by
 * at most about 12, so OpenCV's 1/32-pixel positions move a value by well
 * under one grey level, even where the warp blends in the zero border. */
static void smooth_image(uint8_t *px, int w, int h, int ch) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double win = sin(M_PI * (x + 0.5) / w) * sin(M_PI * (y + 0.5) / h);
            for (int c = 0; c < ch; c++) {
                double v = 0.5 + 0.25 * sin(0.07 * x + 0.05 * y + c) + 0.25 * cos(0.04 * x - 0.09 * y + 2 * c);
                px[((size_t)y * w + x) * ch + c] = (uint8_t)(255 * win * v + 0.5);
            }
        }
}

static void test_warp_against_reference(void) {
    enum { W = 150, H = 170 };
    static uint8_t src[W * H * 3], got[ALIGN_SIZE * ALIGN_SIZE * 3], want[ALIGN_SIZE * ALIGN_SIZE * 3];
    uint64_t st = 4;
    for (int ch = 1; ch <= 3; ch += 2) {
        smooth_image(src, W, H, ch);
        int worst = 0;
        for (int t = 0; t < 40; t++) {
            double G[6];
            similarity(G, uniform(&st, -M_PI, M_PI), exp(uniform(&st, -1, 1.2)), uniform(&st, -60, 120),
                       uniform(&st, -60, 120));
            align_warp(got, ALIGN_SIZE, ALIGN_SIZE, src, W, H, ch, G);
            warp_reference(want, ALIGN_SIZE, ALIGN_SIZE, src, W, H, ch, G);
            for (int i = 0; i < ALIGN_SIZE * ALIGN_SIZE * ch; i++)
                if (abs(got[i] - want[i]) > worst) worst = abs(got[i] - want[i]);
        }
        EXPECT(worst <= 1, "%d channel(s): smooth image differs from the double-precision bilinear by %d grey levels",
               ch, worst);
    }
    /* A random (sharp) picture: a value may move by up to 2 x (1/64 + 1/1024)
     * of the spread of its 4 source pixels, plus rounding. */
    for (int i = 0; i < W * H * 3; i++) src[i] = (uint8_t)(rng_hash4(i, 5, 6, 7) >> 56);
    for (int t = 0; t < 20; t++) {
        double G[6];
        similarity(G, uniform(&st, -M_PI, M_PI), exp(uniform(&st, -1, 1.2)), uniform(&st, -60, 120),
                   uniform(&st, -60, 120));
        align_warp(got, ALIGN_SIZE, ALIGN_SIZE, src, W, H, 3, G);
        warp_reference(want, ALIGN_SIZE, ALIGN_SIZE, src, W, H, 3, G);
        int bad = 0;
        for (int i = 0; i < ALIGN_SIZE * ALIGN_SIZE * 3; i++) bad += abs(got[i] - want[i]) > 9;
        EXPECT(bad == 0, "random image, trial %d: %d values off by more than 9", t, bad);
    }
}

/* Transforms whose OpenCV result is exact arithmetic. */
static void test_warp_exact_cases(void) {
    enum { W = 40, H = 30 };
    static uint8_t src[W * H * 3], out[50 * 45 * 3];
    for (int i = 0; i < W * H * 3; i++) src[i] = (uint8_t)(rng_hash4(i, 1, 2, 3) >> 56);
    const double identity[6] = {1, 0, 0, 0, 1, 0};
    align_warp(out, 50, 45, src, W, H, 3, identity);
    int bad = 0;
    for (int y = 0; y < 45; y++)
        for (int x = 0; x < 50; x++)
            for (int c = 0; c < 3; c++) {
                int want = x < W && y < H ? src[(y * W + x) * 3 + c] : 0;
                bad += out[(y * 50 + x) * 3 + c] != want;
            }
    EXPECT(bad == 0, "identity: %d values differ from the source (or from 0 outside it)", bad);
    /* Shift right by 3 and up by 2: dst(x, y) = src(x - 3, y + 2). */
    const double shift[6] = {1, 0, 3, 0, 1, -2};
    align_warp(out, W, H, src, W, H, 1 * 3, shift);
    bad = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                int sx = x - 3, sy = y + 2;
                int want = sx >= 0 && sy < H ? src[(sy * W + sx) * 3 + c] : 0;
                bad += out[(y * W + x) * 3 + c] != want;
            }
    EXPECT(bad == 0, "integer shift: %d values wrong", bad);
    /* Half a pixel left: dst(x, y) = (src(x, y) + src(x + 1, y) + 1) / 2,
     * exactly (OpenCV rounds halves up); the last column blends with 0. */
    const double half[6] = {1, 0, -0.5, 0, 1, 0};
    align_warp(out, W, H, src, W, H, 3, half);
    bad = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                int a = src[(y * W + x) * 3 + c], b = x + 1 < W ? src[(y * W + x + 1) * 3 + c] : 0;
                bad += out[(y * W + x) * 3 + c] != (a + b + 1) / 2;
            }
    EXPECT(bad == 0, "half-pixel shift: %d values differ from the rounded mean of neighbours", bad);
    /* OpenCV leaves a singular map's inverse all zero: every pixel is src(0, 0). */
    const double singular[6] = {1, 2, 0, 2, 4, 0};
    align_warp(out, 7, 5, src, W, H, 3, singular);
    bad = 0;
    for (int i = 0; i < 7 * 5 * 3; i++) bad += out[i] != src[i % 3];
    EXPECT(bad == 0, "singular map: %d values are not src(0, 0)", bad);
    /* A tie in OpenCV's rounding to 1/1024: M^-1 = [1/1024 0 2^-11; 0 1 0]
     * puts output column x at source position (round(0.5) + 16 + x) / 1024
     * before the shift to 1/32; cvRound rounds 0.5 to even (0), so column 15
     * still samples src(0) and column 16 is 1/32 of the way to src(1):
     * cv2.warpAffine gives 0 and 8 for src row [0 255 100 0]. */
    const uint8_t row[4] = {0, 255, 100, 0};
    const double tie[6] = {1024, 0, -0.5, 0, 1, 0};
    align_warp(out, 20, 1, row, 4, 1, 1, tie);
    EXPECT(out[15] == 0 && out[16] == 8, "rounding tie: columns 15, 16 are %d, %d; OpenCV gives 0, 8", out[15],
           out[16]);
}

/* Pixels of cv2.warpAffine (OpenCV 4.6) for a 7x6 colour image with
 * img[y, x, c] = (37x + 91y + 53c + 11xy) % 256, rotated by 0.3 rad, scaled
 * by 1.7 and shifted by (2.25, -3.1), into a 10x9 output:
 *   M = [[1.7cos .3, -1.7sin .3, 2.25], [1.7sin .3, 1.7cos .3, -3.1]]
 *   cv2.warpAffine(img, M, (10, 9), borderValue=0.0)
 * Sharp content, so a different rounding of positions or weights shows. */
static void test_warp_matches_opencv_pixels(void) {
    static const uint8_t want[9][30] = {
        {45, 60, 12, 151, 196, 31, 185, 157, 91, 201, 99, 147, 152, 153, 129,
         156, 191, 70, 206, 107, 80, 183, 55, 108, 89, 100, 153, 95, 148, 162},
        {30, 53, 41, 94, 147, 80, 161, 119, 99, 194, 65, 112, 106, 79, 132,
         85, 126, 143, 138, 120, 156, 142, 110, 118, 77, 119, 97, 69, 106, 143},
        {25, 58, 91, 39, 92, 140, 84, 119, 166, 127, 136, 129, 113, 152, 79,
         114, 125, 124, 130, 127, 180, 136, 185, 99, 152, 177, 34, 158, 90, 88},
        {71, 112, 154, 103, 156, 152, 128, 181, 125, 116, 169, 97, 141, 187, 23,
         191, 102, 57, 179, 63, 108, 114, 125, 103, 127, 140, 89, 184, 75, 98},
        {138, 189, 147, 142, 195, 116, 169, 222, 50, 82, 135, 90, 76, 111, 102,
         144, 97, 122, 149, 92, 115, 76, 108, 125, 74, 127, 180, 132, 139, 185},
        {170, 223, 71, 100, 153, 109, 93, 146, 124, 73, 126, 156, 76, 103, 156,
         100, 138, 191, 137, 179, 109, 131, 184, 65, 75, 128, 127, 84, 137, 160},
        {74, 100, 39, 36, 71, 85, 63, 108, 153, 123, 176, 229, 156, 92, 145,
         163, 76, 117, 130, 145, 105, 117, 170, 85, 46, 99, 110, 38, 91, 138},
        {0, 0, 0, 4, 9, 14, 26, 41, 56, 68, 70, 95, 123, 36, 69,
         136, 36, 79, 73, 93, 145, 96, 149, 179, 101, 154, 207, 123, 104, 157},
        {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 13, 2, 5,
         36, 15, 28, 24, 45, 67, 65, 97, 128, 121, 131, 171, 200, 77, 127},
    };
    uint8_t src[6][7][3], got[9][10][3];
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 7; x++)
            for (int c = 0; c < 3; c++) src[y][x][c] = (uint8_t)((x * 37 + y * 91 + c * 53 + x * y * 11) % 256);
    double M[6];
    similarity(M, 0.3, 1.7, 2.25, -3.1);
    align_warp(&got[0][0][0], 10, 9, &src[0][0][0], 7, 6, 3, M);
    int bad = 0;
    for (int y = 0; y < 9; y++)
        for (int i = 0; i < 30; i++) {
            int g = (&got[y][0][0])[i];
            if (g != want[y][i] && bad++ < 5)
                fprintf(stderr, "  row %d value %d: got %d, OpenCV %d\n", y, i, g, want[y][i]);
        }
    EXPECT(bad == 0, "%d of 270 values differ from cv2.warpAffine", bad);
}

/* ---- the landmark file and the batch run -------------------------------- */

static void test_parse_line(void) {
    AlignEntry e;
    EXPECT(align_parse_line("", &e, err, sizeof err) == 0, "blank line");
    EXPECT(align_parse_line("  \t\r\n", &e, err, sizeof err) == 0, "white-space line");
    EXPECT(align_parse_line("   # a comment 1 2 3", &e, err, sizeof err) == 0, "comment line");
    int rc = align_parse_line("id/a b.jpg 1 2 3 4 5 6 7 8 9 10\r\n", &e, err, sizeof err);
    EXPECT(rc == -1 && strstr(err, "found 12 fields"), "a path with a space: rc %d, '%s'", rc, err);
    rc = align_parse_line("id_7/img.01.jpg\t1.5 -2 3e1 4 5 6 7 8 9 10.25\r\n", &e, err, sizeof err);
    EXPECT(rc == 1, "good line: %s", err);
    EXPECT(strcmp(e.path, "id_7/img.01.jpg") == 0, "path '%s'", e.path);
    EXPECT(e.landmarks[0][0] == 1.5 && e.landmarks[0][1] == -2 && e.landmarks[1][0] == 30 &&
               e.landmarks[4][1] == 10.25,
           "numbers read wrong");
    rc = align_parse_line("a.jpg 1 2 3 4 5 6 7 8 9", &e, err, sizeof err);
    EXPECT(rc == -1 && strstr(err, "found 10 fields"), "9 numbers: rc %d, '%s'", rc, err);
    rc = align_parse_line("a.jpg 1 2 3 4 5 6 7 8 9 10 11", &e, err, sizeof err);
    EXPECT(rc == -1 && strstr(err, "found 12 fields"), "11 numbers: rc %d, '%s'", rc, err);
    rc = align_parse_line("a.jpg 1 2 3 4 5 6 7 8x 9 10", &e, err, sizeof err);
    EXPECT(rc == -1 && strstr(err, "'8x'") && strstr(err, "left mouth corner y"), "8x: rc %d, '%s'", rc, err);
    rc = align_parse_line("a.jpg 1 2 3 nan 5 6 7 8 9 10", &e, err, sizeof err);
    EXPECT(rc == -1, "nan accepted");
    rc = align_parse_line("a.jpg 1 2 3 1e999 5 6 7 8 9 10", &e, err, sizeof err);
    EXPECT(rc == -1, "1e999 accepted");
    rc = align_parse_line("/etc/a.jpg 1 2 3 4 5 6 7 8 9 10", &e, err, sizeof err);
    EXPECT(rc == -1 && strstr(err, "absolute"), "absolute path: rc %d, '%s'", rc, err);
    rc = align_parse_line("id/../../a.jpg 1 2 3 4 5 6 7 8 9 10", &e, err, sizeof err);
    EXPECT(rc == -1 && strstr(err, ".."), "'..': rc %d, '%s'", rc, err);
    rc = align_parse_line("id/a..b.jpg 1 2 3 4 5 6 7 8 9 10", &e, err, sizeof err);
    EXPECT(rc == 1, "'a..b.jpg' is an ordinary name: %s", err);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    EXPECT(f != NULL, "cannot create %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static int decode_file(const char *path, DecodedImage *img) {
    uint8_t *buf = NULL;
    size_t cap = 0, len;
    int rc = image_load_file(path, &buf, &cap, &len, err, sizeof err) == 0 &&
                     decode_image(buf, len, img, err, sizeof err) == 0
                 ? 0
                 : -1;
    free(buf);
    return rc;
}

static void test_list_run(void) {
    char dir[] = "/tmp/test_align_XXXXXX";
    EXPECT(mkdtemp(dir) != NULL, "mkdtemp");
    char path[1100], cmd[600], out_dir[512];
    enum { W = 160, H = 180 };
    static uint8_t grey[W * H], rgb[W * H * 3], crop[ALIGN_SIZE * ALIGN_SIZE * 3];
    smooth_image(grey, W, H, 1);
    smooth_image(rgb, W, H, 3);
    snprintf(path, sizeof path, "%s/images/alice", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s/images/alice %s/images/bob", dir, dir);
    EXPECT(system(cmd) == 0, "%s", cmd);
    snprintf(path, sizeof path, "%s/images/alice/1.jpg", dir);
    EXPECT(jpeg_write_file(path, grey, W, H, 1, 100, err, sizeof err) == 0, "%s", err);
    /* A colour PPM: its output gets the .jpg extension. */
    snprintf(path, sizeof path, "%s/images/bob/2.ppm", dir);
    FILE *f = fopen(path, "wb");
    EXPECT(f != NULL, "cannot create %s", path);
    if (f) {
        fprintf(f, "P6\n%d %d\n255\n", W, H);
        fwrite(rgb, 1, sizeof rgb, f);
        fclose(f);
    }
    const double lm[ALIGN_POINTS][2] = {{58, 80}, {102, 78}, {80, 104}, {62, 128}, {99, 127}};
    char list[2048];
    int n = snprintf(list, sizeof list, "# two faces\n\n");
    for (int k = 0; k < 2; k++) {
        n += snprintf(list + n, sizeof list - (size_t)n, "%s", k ? "bob/2.ppm" : "alice/1.jpg");
        for (int i = 0; i < ALIGN_POINTS; i++)
            n += snprintf(list + n, sizeof list - (size_t)n, " %.17g %.17g", lm[i][0], lm[i][1]);
        n += snprintf(list + n, sizeof list - (size_t)n, "\n");
    }
    snprintf(list + n, sizeof list - (size_t)n,
             "bob/2.ppm 1 2 3 4 5 6 7 8 9\n"    /* line 5: 9 numbers */
             "bob/none.jpg 58 80 102 78 80 104 62 128 99 127\n"  /* line 6: no such image */
             "bob/2.ppm 5 5 5 5 5 5 5 5 5 5\n"); /* line 7: degenerate */
    char list_path[512];
    snprintf(list_path, sizeof list_path, "%s/landmarks.txt", dir);
    write_text(list_path, list);
    snprintf(out_dir, sizeof out_dir, "%s/aligned", dir);
    char root[512];
    snprintf(root, sizeof root, "%s/images", dir);

    AlignOptions opt = {.root = root, .out_dir = out_dir, .quality = 100, .skip_bad = 0};
    AlignStats st;
    int rc = align_list_run(list_path, &opt, &st, err, sizeof err);
    char where[600];
    snprintf(where, sizeof where, "%s:5: ", list_path);
    EXPECT(rc == -1 && strstr(err, where) == err, "stops at line 5: rc %d, '%s'", rc, err);
    EXPECT(st.aligned == 2, "%lld aligned before the error", (long long)st.aligned);

    opt.skip_bad = 1;
    log_set_level(LOG_ERROR); /* the three expected "skipped" warnings */
    rc = align_list_run(list_path, &opt, &st, err, sizeof err);
    log_set_level(LOG_INFO);
    EXPECT(rc == 0, "with skip_bad: %s", err);
    EXPECT(st.aligned == 2 && st.skipped == 3, "aligned %lld skipped %lld, want 2 and 3", (long long)st.aligned,
           (long long)st.skipped);
    EXPECT(st.worst_rms < 3, "residual %.3g", st.worst_rms);

    /* Each output decodes to 112x112, grey stays grey, and is the warp of its
     * source up to JPEG loss at quality 100. */
    double M[6];
    EXPECT(align_estimate(M, lm, NULL, err, sizeof err) == 0, "%s", err);
    for (int k = 0; k < 2; k++) {
        DecodedImage img = {0};
        snprintf(path, sizeof path, "%s/%s", out_dir, k ? "bob/2.jpg" : "alice/1.jpg");
        if (decode_file(path, &img) != 0) {
            EXPECT(0, "output %s: %s", path, err);
            continue;
        }
        EXPECT(img.width == ALIGN_SIZE && img.height == ALIGN_SIZE, "%s is %dx%d", path, img.width, img.height);
        EXPECT(img.grey == (k == 0), "%s: grey %d", path, img.grey);
        if (k == 0) {
            uint8_t g[ALIGN_SIZE * ALIGN_SIZE];
            align_warp(g, ALIGN_SIZE, ALIGN_SIZE, grey, W, H, 1, M);
            for (int i = 0; i < ALIGN_SIZE * ALIGN_SIZE; i++) crop[3 * i] = crop[3 * i + 1] = crop[3 * i + 2] = g[i];
        } else {
            align_warp(crop, ALIGN_SIZE, ALIGN_SIZE, rgb, W, H, 3, M);
        }
        double sum = 0;
        for (int i = 0; i < ALIGN_SIZE * ALIGN_SIZE * 3 && img.width == ALIGN_SIZE && img.height == ALIGN_SIZE; i++)
            sum += abs(img.rgb[i] - crop[i]);
        double mean = sum / (ALIGN_SIZE * ALIGN_SIZE * 3);
        EXPECT(mean < 1.5, "%s: mean difference %.3g from the warp of its source", path, mean);
        decode_image_free(&img);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
    test_recovers_known_transform();
    test_least_squares_with_noise();
    test_matches_umeyama_and_never_reflects();
    test_degenerate_input_rejected();
    test_warp_against_reference();
    test_warp_exact_cases();
    test_warp_matches_opencv_pixels();
    test_parse_line();
    test_list_run();
    return test_finish("test_align");
}
