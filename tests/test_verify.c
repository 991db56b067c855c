/* test_verify.c -- k-fold verification accuracy, TAR@FAR and cosine similarity
 * against hand-computed cases and a brute-force reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "testutil.h"
#include "verify.h"

/* Brute force, written from the contract rather than from verify.c: every
 * candidate threshold is scored by counting over all training pairs. */
static double ref_fold_threshold(const float *s, const uint8_t *same, int n, int first, int end) {
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i < first || i >= end) {
            lo = s[i] < lo ? s[i] : lo;
            hi = s[i] > hi ? s[i] : hi;
        }
    int m = 0;
    double *cand = malloc((size_t)(n + 2) * sizeof *cand);
    cand[m++] = (double)lo - 1 - fabs(lo);
    cand[m++] = (double)hi + 1 + fabs(hi);
    for (int i = 0; i < n; i++) {
        if (i >= first && i < end) continue;
        float next = INFINITY; /* smallest training score above s[i] */
        for (int j = 0; j < n; j++)
            if ((j < first || j >= end) && s[j] > s[i] && s[j] < next) next = s[j];
        if (next < INFINITY) cand[m++] = 0.5 * ((double)s[i] + (double)next);
    }
    double best_thr = 0;
    int best = -1;
    for (int c = 0; c < m; c++) {
        int correct = 0;
        for (int i = 0; i < n; i++)
            if (i < first || i >= end) correct += ((double)s[i] > cand[c]) == (same[i] != 0);
        if (correct > best || (correct == best && cand[c] > best_thr)) {
            best = correct;
            best_thr = cand[c];
        }
    }
    free(cand);
    return best_thr;
}

static void ref_kfold(VerifyResult *r, const float *s, const uint8_t *same, int n, int folds) {
    int fs = n / folds;
    double acc[64], sum = 0, thr_sum = 0;
    for (int f = 0; f < folds; f++) {
        double thr = ref_fold_threshold(s, same, n, f * fs, (f + 1) * fs);
        int correct = 0;
        for (int i = f * fs; i < (f + 1) * fs; i++) correct += ((double)s[i] > thr) == (same[i] != 0);
        acc[f] = (double)correct / fs;
        sum += acc[f];
        thr_sum += thr;
    }
    double mean = sum / folds, var = 0;
    for (int f = 0; f < folds; f++) var += (acc[f] - mean) * (acc[f] - mean);
    r->folds = folds;
    r->accuracy_mean = mean;
    r->accuracy_std = sqrt(var / folds);
    r->threshold_mean = thr_sum / folds;
    /* TAR: try every score as a threshold (and one below all), keep the best
     * whose false accepts stay within floor(D / inv_far). */
    int n_same = 0;
    for (int i = 0; i < n; i++) n_same += same[i];
    int n_diff = n - n_same;
    double *tar[2] = {&r->tar_at_far_1e3, &r->tar_at_far_1e4};
    int inv[2] = {1000, 10000};
    for (int k = 0; k < 2; k++) {
        int allowed = n_diff / inv[k];
        if (allowed < 1 || n_same == 0) {
            *tar[k] = NAN;
            continue;
        }
        int best = -1;
        for (int c = -1; c < n; c++) {
            double t = c < 0 ? -INFINITY : s[c];
            int fa = 0, ta = 0;
            for (int i = 0; i < n; i++)
                if ((double)s[i] > t) {
                    fa += !same[i];
                    ta += same[i];
                }
            if (fa <= allowed && ta > best) best = ta;
        }
        *tar[k] = (double)best / n_same;
    }
}

static int same_or_both_nan(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

/* Two folds of four pairs, scores exact in binary so midpoints are exact too.
 *   fold 0: 0.875 S, 0.625 S, 0.5 D,    0.25 D
 *   fold 1: 0.75 S,  0.375 S, 0.6875 D, 0.125 D
 * Testing fold 0, train on fold 1, sorted 0.125D 0.375S 0.6875D 0.75S:
 *   below-min (accept all) 2/4, t=0.25 3/4, t=0.53125 2/4, t=0.71875 3/4,
 *   above-max 2/4 -> tie of 3/4 goes to the higher t = 0.71875;
 *   on fold 0: 0.875S accept ok, 0.625S reject wrong, 0.5D ok, 0.25D ok -> 0.75.
 * Testing fold 1, train on fold 0, sorted 0.25D 0.5D 0.625S 0.875S:
 *   2/4, t=0.375 3/4, t=0.5625 4/4, t=0.75 3/4, 2/4 -> t = 0.5625;
 *   on fold 1: 0.75S ok, 0.375S wrong, 0.6875D accepted wrong, 0.125D ok -> 0.5.
 * mean 0.625, population std 0.125, threshold mean (0.71875 + 0.5625) / 2. */
static void test_two_folds_by_hand(void) {
    const float s[8] = {0.875f, 0.625f, 0.5f, 0.25f, 0.75f, 0.375f, 0.6875f, 0.125f};
    const uint8_t same[8] = {1, 1, 0, 0, 1, 1, 0, 0};
    VerifyResult r;
    char err[256];
    EXPECT(verify_kfold(&r, s, same, 8, 2, err, sizeof err) == 0, "%s", err);
    EXPECT(r.folds == 2, "folds %d", r.folds);
    EXPECT(r.accuracy_mean == 0.625, "mean %.17g", r.accuracy_mean);
    EXPECT(r.accuracy_std == 0.125, "std %.17g", r.accuracy_std);
    EXPECT(r.threshold_mean == 0.640625, "threshold %.17g", r.threshold_mean);
    EXPECT(isnan(r.tar_at_far_1e3) && isnan(r.tar_at_far_1e4), "TAR should be NaN with 4 different pairs");
}

/* Ten folds of two pairs (one same, one different), in units of 1/32:
 * fold f != 3 has same = 16 + (f+1), different = 16 - (f+1); fold 3 is
 * inverted: same = 12, different = 20. Every other value is <= 15 (different)
 * or >= 17 (same).
 *   Testing fold 3: the other nine folds separate perfectly only at 16/32 =
 *   0.5 (between 15 and 17); on fold 3 both pairs are wrong -> 0.
 *   Testing fold f != 3: training holds the inverted pair, which is wrong at
 *   any threshold between its values; the best (16/18) is the gap between the
 *   largest regular different and the smallest regular same, whose midpoint
 *   is 16/32 for every f (f = 0: (14 + 18) / 2, else (15 + 17) / 2); fold f
 *   is right on both pairs -> 1.
 * mean 0.9, std sqrt(0.9 * 0.1) = 0.3, every threshold 0.5. */
static void test_ten_folds_by_hand(void) {
    float s[20];
    uint8_t same[20];
    for (int f = 0; f < 10; f++) {
        s[2 * f] = f == 3 ? 12 / 32.0f : (16 + f + 1) / 32.0f;
        s[2 * f + 1] = f == 3 ? 20 / 32.0f : (16 - f - 1) / 32.0f;
        same[2 * f] = 1;
        same[2 * f + 1] = 0;
    }
    VerifyResult r;
    char err[256];
    EXPECT(verify_kfold(&r, s, same, 20, 10, err, sizeof err) == 0, "%s", err);
    EXPECT_NEAR(r.accuracy_mean, 0.9, 1e-12);
    EXPECT_NEAR(r.accuracy_std, 0.3, 1e-12);
    EXPECT(r.threshold_mean == 0.5, "threshold %.17g", r.threshold_mean);
    char buf[128];
    verify_format(buf, sizeof buf, "lfw", 12000, &r);
    EXPECT(strcmp(buf, "[lfw][12000]Accuracy-Flip: 0.90000+-0.30000") == 0, "formatted '%s'", buf);
}

/* One fold scored on its own (a model trained on the people of the other
 * folds): two folds of 10 same then 10 different pairs; fold 2 (pairs 20..39)
 * is cut into 10 balanced parts by verify_fold_order, part p = (same pair
 * 20 + p, different pair 30 + p), which carry the scores of the ten-fold case
 * above (part 3 inverted) -> 0.9 +- 0.3, every threshold 0.5. Fold 1 holds
 * inverted scores that would change the result if they leaked in. */
static void test_one_fold_by_hand(void) {
    float s[40];
    uint8_t same[40];
    for (int i = 0; i < 40; i++) {
        int fold = i / 20, k = i % 20, is_same = k < 10, p = k % 10;
        same[i] = (uint8_t)is_same;
        if (fold == 0)
            s[i] = is_same ? 0.0f : 1.0f;
        else if (is_same)
            s[i] = p == 3 ? 12 / 32.0f : (16 + p + 1) / 32.0f;
        else
            s[i] = p == 3 ? 20 / 32.0f : (16 - p - 1) / 32.0f;
    }
    int order[20];
    char err[256];
    EXPECT(verify_fold_order(order, same, 20, 20, 10, err, sizeof err) == 0, "%s", err);
    for (int p = 0; p < 10; p++)
        EXPECT(order[2 * p] == 20 + p && order[2 * p + 1] == 30 + p, "part %d: pairs %d, %d", p, order[2 * p],
               order[2 * p + 1]);
    float fs[20];
    uint8_t fsame[20];
    for (int j = 0; j < 20; j++) {
        fs[j] = s[order[j]];
        fsame[j] = same[order[j]];
    }
    VerifyResult r;
    EXPECT(verify_kfold(&r, fs, fsame, 20, 10, err, sizeof err) == 0, "%s", err);
    EXPECT_NEAR(r.accuracy_mean, 0.9, 1e-12);
    EXPECT_NEAR(r.accuracy_std, 0.3, 1e-12);
    EXPECT(r.threshold_mean == 0.5, "threshold %.17g", r.threshold_mean);

    /* LFW's layout: fold 3 of 10 x (300 same + 300 different); part p takes
     * same pairs 1200 + 30p .. +29 and different pairs 1500 + 30p .. +29. */
    enum { N = 6000 };
    uint8_t *lsame = malloc(N);
    int *lorder = malloc(600 * sizeof *lorder);
    for (int i = 0; i < N; i++) lsame[i] = (i % 600) < 300;
    EXPECT(verify_fold_order(lorder, lsame, 1200, 600, 10, err, sizeof err) == 0, "%s", err);
    int ok = 1;
    for (int p = 0; p < 10; p++)
        for (int j = 0; j < 60; j++) ok &= lorder[60 * p + j] == (j < 30 ? 1200 + 30 * p + j : 1500 + 30 * p + j - 30);
    EXPECT(ok, "LFW fold order");
    /* 15 same pairs do not split into 10 equal runs. */
    for (int i = 0; i < 40; i++) same[i] = i < 15;
    int before = order[0];
    EXPECT(verify_fold_order(order, same, 0, 40, 10, err, sizeof err) == -1 && strstr(err, "15 same and 25 different"),
           "unbalanced fold: %s", err);
    EXPECT(order[0] == before, "order written on failure");
    free(lsame);
    free(lorder);
}

static void test_perfect_and_random(void) {
    enum { N = 6000 };
    float *s = malloc(N * sizeof *s);
    uint8_t *same = malloc(N);
    VerifyResult r;
    char err[256];
    for (int i = 0; i < N; i++) {
        same[i] = (i % 600) < 300;
        float u = rng_uniform(rng_hash4(5, (uint64_t)i, 0, 0));
        s[i] = same[i] ? 0.3f + 0.7f * u : -1.0f + 1.2f * u;
    }
    EXPECT(verify_kfold(&r, s, same, N, 10, err, sizeof err) == 0, "%s", err);
    EXPECT(r.accuracy_mean == 1.0 && r.accuracy_std == 0.0, "perfect: %g +- %g", r.accuracy_mean, r.accuracy_std);
    EXPECT(r.threshold_mean > 0.2 && r.threshold_mean < 0.3, "perfect threshold %g", r.threshold_mean);
    EXPECT(r.tar_at_far_1e3 == 1.0, "perfect TAR@1e-3 %g", r.tar_at_far_1e3);
    EXPECT(isnan(r.tar_at_far_1e4), "3000 different pairs: TAR@1e-4 must be NaN, got %g", r.tar_at_far_1e4);

    for (int i = 0; i < N; i++) s[i] = rng_uniform(rng_hash4(6, (uint64_t)i, 0, 0));
    EXPECT(verify_kfold(&r, s, same, N, 10, err, sizeof err) == 0, "%s", err);
    EXPECT(fabs(r.accuracy_mean - 0.5) < 0.04, "random scores: accuracy %g", r.accuracy_mean);
    EXPECT(r.tar_at_far_1e3 < 0.02, "random scores: TAR@1e-3 %g", r.tar_at_far_1e3);
    free(s);
    free(same);
}

/* 1000 different pairs with scores i/1024 (i < 1000) and 10 same pairs. At
 * FAR 1e-3 one false accept is allowed, so the threshold is the second-largest
 * different score 998/1024 and a pair is accepted when score > 998/1024: the
 * same pairs 1.0, 999/1024 (tied with the top different pair) and 998.5/1024
 * pass, 998/1024 (tied with the threshold) and the rest do not -> 3/10. FAR
 * 1e-4 needs 10000 different pairs -> NaN. */
static void test_tar_by_hand(void) {
    enum { N = 1010 };
    float s[N];
    uint8_t same[N];
    const float same_scores[10] = {1.0f, 999 / 1024.0f, 998.5f / 1024, 998 / 1024.0f, 0.5f, 0.25f, 0.9f, 0.0f, -1.0f, 0.75f};
    for (int i = 0; i < N; i++) {
        /* interleave so both classes land in every fold */
        if (i % 101 == 0) {
            same[i] = 1;
            s[i] = same_scores[i / 101];
        } else {
            same[i] = 0;
            s[i] = (float)(i - i / 101 - 1) / 1024;
        }
    }
    VerifyResult r;
    char err[256];
    EXPECT(verify_kfold(&r, s, same, N, 10, err, sizeof err) == 0, "%s", err);
    EXPECT(r.tar_at_far_1e3 == 0.3, "TAR@1e-3 %.17g, expected 0.3", r.tar_at_far_1e3);
    EXPECT(isnan(r.tar_at_far_1e4), "TAR@1e-4 %g, expected NaN", r.tar_at_far_1e4);
}

/* Random cases with many ties (scores on a coarse grid) against brute force. */
static void test_against_reference(void) {
    const int sizes[][2] = {{20, 10}, {40, 2}, {60, 3}, {600, 10}, {2200, 10}, {16000, 10}};
    for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
        int n = sizes[c][0], folds = sizes[c][1];
        int grid = c % 2 ? 7 : 64;
        float *s = malloc((size_t)n * sizeof *s);
        uint8_t *same = malloc((size_t)n);
        for (int i = 0; i < n; i++) {
            same[i] = rng_uniform(rng_hash4(11, c, (uint64_t)i, 1)) < 0.3f;
            float u = rng_uniform(rng_hash4(11, c, (uint64_t)i, 2));
            s[i] = floorf((u + (same[i] ? 0.25f : 0)) * grid) / grid - 0.5f;
        }
        VerifyResult got, want;
        char err[256];
        if (n > 3000) { /* brute-force TAR only; the O(n^2) fold reference would be slow */
            EXPECT(verify_kfold(&got, s, same, n, folds, err, sizeof err) == 0, "%s", err);
            int n_same = 0;
            for (int i = 0; i < n; i++) n_same += same[i];
            int best[2] = {-1, -1}, allowed[2] = {(n - n_same) / 1000, (n - n_same) / 10000};
            for (int t = -1; t <= grid + 1; t++) {
                float thr = (float)t / grid - 0.5f;
                int fa = 0, ta = 0;
                for (int i = 0; i < n; i++)
                    if (s[i] > thr) {
                        fa += !same[i];
                        ta += same[i];
                    }
                for (int k = 0; k < 2; k++)
                    if (fa <= allowed[k] && ta > best[k]) best[k] = ta;
            }
            EXPECT(allowed[1] >= 1, "n %d: case meant to have >= 10000 different pairs", n);
            EXPECT(got.tar_at_far_1e3 == (double)best[0] / n_same, "n %d: TAR@1e-3 %g vs %g", n,
                   got.tar_at_far_1e3, (double)best[0] / n_same);
            EXPECT(got.tar_at_far_1e4 == (double)best[1] / n_same, "n %d: TAR@1e-4 %g vs %g", n,
                   got.tar_at_far_1e4, (double)best[1] / n_same);
        } else {
            EXPECT(verify_kfold(&got, s, same, n, folds, err, sizeof err) == 0, "%s", err);
            ref_kfold(&want, s, same, n, folds);
            EXPECT_NEAR(got.accuracy_mean, want.accuracy_mean, 1e-12);
            EXPECT_NEAR(got.accuracy_std, want.accuracy_std, 1e-12);
            EXPECT_NEAR(got.threshold_mean, want.threshold_mean, 1e-12);
            EXPECT(same_or_both_nan(got.tar_at_far_1e3, want.tar_at_far_1e3), "n %d: TAR@1e-3 %g vs %g", n,
                   got.tar_at_far_1e3, want.tar_at_far_1e3);
            EXPECT(same_or_both_nan(got.tar_at_far_1e4, want.tar_at_far_1e4), "n %d: TAR@1e-4 %g vs %g", n,
                   got.tar_at_far_1e4, want.tar_at_far_1e4);
        }
        free(s);
        free(same);
    }
}

static void test_errors(void) {
    float s[20] = {0};
    uint8_t same[20] = {0};
    VerifyResult r = {.folds = -7};
    char err[256];
    err[0] = 0;
    EXPECT(verify_kfold(&r, s, same, 21, 10, err, sizeof err) == -1 && err[0], "21 pairs in 10 folds accepted");
    err[0] = 0;
    EXPECT(verify_kfold(&r, s, same, 0, 10, err, sizeof err) == -1 && err[0], "0 pairs accepted");
    err[0] = 0;
    EXPECT(verify_kfold(&r, s, same, 20, 1, err, sizeof err) == -1 && err[0], "1 fold accepted");
    err[0] = 0;
    EXPECT(verify_kfold(&r, s, same, -10, 10, err, sizeof err) == -1 && err[0], "negative n accepted");
    s[5] = NAN;
    err[0] = 0;
    EXPECT(verify_kfold(&r, s, same, 20, 10, err, sizeof err) == -1 && strstr(err, "pair 5"), "NaN score: '%s'", err);
    s[5] = INFINITY;
    EXPECT(verify_kfold(&r, s, same, 20, 10, err, sizeof err) == -1, "infinite score accepted");
    s[5] = 0;
    same[3] = 2;
    EXPECT(verify_kfold(&r, s, same, 20, 10, err, sizeof err) == -1 && strstr(err, "pair 3"), "label 2: '%s'", err);
    EXPECT(r.folds == -7, "result written on failure");
    same[3] = 0;
    /* all different, all scores equal: accepting none is right everywhere */
    EXPECT(verify_kfold(&r, s, same, 20, 10, err, sizeof err) == 0, "%s", err);
    EXPECT(r.accuracy_mean == 1.0, "all-different accuracy %g", r.accuracy_mean);
    EXPECT(r.threshold_mean == 1.0, "all-different threshold %g (above-max is max + 1 + |max|)", r.threshold_mean);
}

static void test_cosine(void) {
    const float a[3] = {1, 2, 3}, b[3] = {2, 4, 6}, c[3] = {-1, -2, -3}, z[3] = {0, 0, 0};
    const float x[2] = {1, 0}, y[2] = {0, 1}, xy[2] = {1, 1};
    EXPECT_NEAR(verify_cosine(a, b, 3), 1.0, 1e-7);
    EXPECT_NEAR(verify_cosine(a, c, 3), -1.0, 1e-7);
    EXPECT(verify_cosine(a, z, 3) == 0.0f, "zero vector");
    EXPECT(verify_cosine(x, y, 2) == 0.0f, "orthogonal");
    EXPECT_NEAR(verify_cosine(x, xy, 2), 1 / sqrt(2.0), 1e-7);
}

int main(void) {
    test_two_folds_by_hand();
    test_ten_folds_by_hand();
    test_one_fold_by_hand();
    test_perfect_and_random();
    test_tar_by_hand();
    test_against_reference();
    test_errors();
    test_cosine();
    return test_finish("test_verify");
}
