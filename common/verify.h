/* verify.h -- 1:1 face verification metrics (LFW protocol): k-fold accuracy
 * with a per-fold best threshold, and TAR at a fixed FAR. */
#ifndef ARCFACE_VERIFY_H
#define ARCFACE_VERIFY_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int folds;
    double accuracy_mean, accuracy_std; /* std as numpy's np.std: population (ddof = 0) */
    double threshold_mean;              /* mean of the per-fold thresholds */
    double tar_at_far_1e3;              /* NaN when fewer than 1000 different pairs or no same pair */
    double tar_at_far_1e4;              /* NaN when fewer than 10000 different pairs or no same pair */
} VerifyResult;

/* scores[i] is the similarity of pair i (higher = more alike), same[i] in
 * {0, 1}. A pair is accepted as "same" when score > threshold.
 *
 * Accuracy: the n pairs are split into `folds` consecutive equal folds (LFW
 * order). For each fold the threshold is the candidate that maximises accuracy
 * on the other folds, then it is applied to that fold. Candidates are the
 * midpoints between consecutive distinct sorted training scores, plus one below
 * the minimum (min - 1 - |min|: accept all) and one above the maximum
 * (max + 1 + |max|: reject all). Ties between candidates go to the highest
 * threshold, as insightface's argmax over ascending distance thresholds picks
 * the strictest one.
 *
 * TAR@FAR, over all n pairs: the largest fraction of same pairs accepted at a
 * threshold that accepts at most floor(FAR * D) of the D different pairs; NaN
 * when D < 1/FAR or there are no same pairs.
 *
 * O(n log n + folds * n) time, O(n) scratch memory. Returns 0, or -1 with a
 * reason in err (folds < 2, n not divisible by folds, a fold with no pairs,
 * a non-finite score, same[i] not 0 or 1); *r is unaltered then. */
int verify_kfold(VerifyResult *r, const float *scores, const uint8_t *same, int n, int folds,
                 char *err, size_t errlen);

/* The pairs [first, first + count) of one fold of a larger set, ordered for
 * k-fold cross-validation inside that fold: order[j] (0 <= j < count) is a
 * pair index such that, cut into `folds` consecutive equal parts, part p holds
 * the p-th of `folds` equal runs of the fold's same pairs followed by the p-th
 * run of its different pairs, each in their original order. Every part then
 * has the fold's balance of same and different pairs (LFW: 30 + 30 of a
 * fold's 300 + 300), as LFW's own folds do; without it the consecutive parts
 * of an LFW fold would hold only same or only different pairs. same is indexed
 * like the whole set. Returns 0, or -1 with a reason in err when the fold's
 * same or different pairs do not split into `folds` equal runs (order is
 * unaltered then). */
int verify_fold_order(int *order, const uint8_t *same, int first, int count, int folds, char *err, size_t errlen);

/* Formats like insightface, "[name][step]Accuracy-Flip: 0.99500+-0.00300",
 * into buf (truncated to len). Can't fail. */
void verify_format(char *buf, size_t len, const char *name, int64_t step, const VerifyResult *r);

/* Cosine similarity of two D-vectors, accumulated in double; 0 when either
 * vector is all zeros. */
float verify_cosine(const float *a, const float *b, int D);

#endif
