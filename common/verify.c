/* verify.c -- 1:1 verification metrics: LFW-style k-fold accuracy and TAR@FAR.
 *
 * All scores are sorted once; each fold then copies its training pairs in
 * sorted order and sweeps the candidate thresholds from low to high, keeping a
 * running count of correct decisions, so a fold costs O(n) after the sort. */
#include "verify.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"

typedef struct {
    float score;
    int index;
    uint8_t same;
} Scored;

static int scored_cmp(const void *pa, const void *pb) {
    const Scored *a = pa, *b = pb;
    if (a->score != b->score) return a->score < b->score ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

/* Best threshold on the training pairs `train` (sorted ascending, m > 0),
 * highest threshold among ties. */
static double best_threshold(const Scored *train, int m) {
    int64_t correct = 0; /* below the minimum every pair is accepted */
    for (int i = 0; i < m; i++) correct += train[i].same;
    int64_t best = correct;
    double lo = train[0].score;
    double best_thr = lo - 1.0 - fabs(lo);
    for (int i = 0; i < m;) {
        float v = train[i].score;
        for (; i < m && train[i].score == v; i++) correct += train[i].same ? -1 : 1;
        double thr = i < m ? 0.5 * ((double)v + (double)train[i].score) : (double)v + 1.0 + fabs(v);
        if (correct >= best) {
            best = correct;
            best_thr = thr;
        }
    }
    return best_thr;
}

/* TAR at FAR = 1 / inv_far over the whole sorted set. */
static double tar_at_far(const Scored *sorted, int n, int64_t n_same, int64_t n_diff, int64_t inv_far) {
    int64_t allowed = n_diff / inv_far; /* floor(FAR * D), exact */
    if (allowed < 1 || n_same == 0) return NAN;
    /* The threshold is the (allowed+1)-th largest different-pair score: at most
     * `allowed` different pairs lie strictly above it, and no lower threshold
     * keeps that bound. */
    int64_t seen = 0;
    float thr = 0;
    for (int i = n - 1; i >= 0; i--) {
        if (sorted[i].same) continue;
        if (seen++ == allowed) {
            thr = sorted[i].score;
            break;
        }
    }
    int64_t accepted = 0;
    for (int i = n - 1; i >= 0 && sorted[i].score > thr; i--) accepted += sorted[i].same;
    return (double)accepted / (double)n_same;
}

int verify_kfold(VerifyResult *r, const float *scores, const uint8_t *same, int n, int folds,
                 char *err, size_t errlen) {
    Scored *sorted = NULL, *train = NULL;
    double *acc = NULL;
    int64_t n_same = 0;
    if (folds < 2) {
        snprintf(err, errlen, "need at least 2 folds, got %d", folds);
        goto error;
    }
    if (n < 0 || n % folds != 0) {
        snprintf(err, errlen, "%d pairs do not split into %d equal folds", n, folds);
        goto error;
    }
    if (n == 0) {
        snprintf(err, errlen, "no pairs: each of the %d folds would be empty", folds);
        goto error;
    }
    for (int i = 0; i < n; i++) {
        if (!isfinite(scores[i])) {
            snprintf(err, errlen, "score of pair %d is %g (not finite)", i, (double)scores[i]);
            goto error;
        }
        if (same[i] > 1) {
            snprintf(err, errlen, "label of pair %d is %d, expected 0 or 1", i, same[i]);
            goto error;
        }
        n_same += same[i];
    }

    const int fold_size = n / folds;
    sorted = malloc((size_t)n * sizeof *sorted);
    train = malloc((size_t)(n - fold_size) * sizeof *train);
    acc = malloc((size_t)folds * sizeof *acc);
    CHECK(sorted && train && acc, "out of memory for %d pairs", n);
    for (int i = 0; i < n; i++) sorted[i] = (Scored){scores[i], i, same[i]};
    qsort(sorted, (size_t)n, sizeof *sorted, scored_cmp);

    double acc_sum = 0, thr_sum = 0;
    for (int f = 0; f < folds; f++) {
        const int first = f * fold_size, end = first + fold_size;
        int m = 0;
        for (int i = 0; i < n; i++)
            if (sorted[i].index < first || sorted[i].index >= end) train[m++] = sorted[i];
        double thr = best_threshold(train, m);
        int correct = 0;
        for (int i = first; i < end; i++) correct += ((double)scores[i] > thr) == (same[i] != 0);
        acc[f] = (double)correct / fold_size;
        acc_sum += acc[f];
        thr_sum += thr;
    }
    double mean = acc_sum / folds, var = 0;
    for (int f = 0; f < folds; f++) var += (acc[f] - mean) * (acc[f] - mean);
    r->folds = folds;
    r->accuracy_mean = mean;
    r->accuracy_std = sqrt(var / folds);
    r->threshold_mean = thr_sum / folds;
    r->tar_at_far_1e3 = tar_at_far(sorted, n, n_same, n - n_same, 1000);
    r->tar_at_far_1e4 = tar_at_far(sorted, n, n_same, n - n_same, 10000);
    free(sorted);
    free(train);
    free(acc);
    return 0;

error:
    free(sorted);
    free(train);
    free(acc);
    return -1;
}

int verify_fold_order(int *order, const uint8_t *same, int first, int count, int folds, char *err, size_t errlen) {
    if (folds < 1 || count < 0) {
        snprintf(err, errlen, "cannot split %d pairs into %d folds", count, folds);
        return -1;
    }
    int n_same = 0;
    for (int i = first; i < first + count; i++) n_same += same[i] != 0;
    int n_diff = count - n_same;
    if (n_same % folds != 0 || n_diff % folds != 0) {
        snprintf(err, errlen, "the fold's %d same and %d different pairs do not split into %d equal parts", n_same,
                 n_diff, folds);
        return -1;
    }
    /* Part p takes same pairs [p*S, (p+1)*S) and different pairs [p*D, (p+1)*D)
     * of the fold, counted in order of appearance. */
    const int S = n_same / folds, D = n_diff / folds;
    int seen_same = 0, seen_diff = 0;
    for (int i = first; i < first + count; i++) {
        if (same[i]) {
            int p = seen_same / S;
            order[p * (S + D) + seen_same % S] = i;
            seen_same++;
        } else {
            int p = seen_diff / D;
            order[p * (S + D) + S + seen_diff % D] = i;
            seen_diff++;
        }
    }
    return 0;
}

void verify_format(char *buf, size_t len, const char *name, int64_t step, const VerifyResult *r) {
    snprintf(buf, len, "[%s][%" PRId64 "]Accuracy-Flip: %1.5f+-%1.5f", name, step, r->accuracy_mean,
             r->accuracy_std);
}

float verify_cosine(const float *a, const float *b, int D) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < D; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    if (aa == 0 || bb == 0) return 0.0f;
    return (float)(ab / sqrt(aa * bb));
}
