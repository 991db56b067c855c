/* verify_set.h -- verification pairs from any source: the synthetic held-out
 * identities, an insightface .bin set, or LFW's pairs.txt beside an image
 * folder; and the flip-augmented scoring of pairs with a backbone.
 *
 * A set spec (config key `verify`, comma-separated) is one of
 *   synthetic                      held-out synthetic identities
 *   [NAME=]PATH.bin                insightface .bin (pickled images + issame list)
 *   [NAME=]PAIRS.txt@IMAGE_ROOT    LFW View-2 pairs file and the image folder
 * optionally followed by ":fold=K": only the pairs of fold K (1-based; a pairs
 * file's own folds, else 10 consecutive equal folds), scored by 10-fold
 * cross-validation within that fold (see verify_fold_order), for a model
 * trained on the people of the other folds. The name (printed as
 * [NAME][step]Accuracy-Flip: ...) defaults to the file's stem, plus "-foldK"
 * for one fold. */
#ifndef ARCFACE_VERIFY_SET_H
#define ARCFACE_VERIFY_SET_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "dataset.h"
#include "iresnet.h"

typedef struct VerifySet VerifySet;

/* Opens one set from its spec. Returns 0, or -1 with err naming the file. */
int verify_set_open(VerifySet **out, const char *spec, const TrainConfig *cfg, char *err, size_t errlen);
void verify_set_close(VerifySet **v);

/* Opens every set of cfg->verify into a malloc'ed array (*n of them; none when
 * the key is empty). On failure nothing stays open. */
int verify_sets_open(VerifySet ***sets, int *n, const TrainConfig *cfg, char *err, size_t errlen);
void verify_sets_close(VerifySet ***sets, int n);

const char *verify_set_name(const VerifySet *v);
/* The pairs scored and how the threshold is chosen, for the log:
 * "6000 pairs: 10 folds, threshold chosen on the other 9" or "600 pairs: fold
 * 1 of 10 only, threshold by 10-fold cross-validation within the fold". */
const char *verify_set_protocol(const VerifySet *v);
/* Pairs are numbered 0 .. verify_set_pairs - 1; for one fold, in the balanced
 * order of verify_fold_order, so verify_kfold with 10 folds applies as is. */
int verify_set_pairs(const VerifySet *v);
int verify_set_same(const VerifySet *v, int pair);

/* Image `side` (0 or 1) of `pair` as 112x112 RGB HWC (with the configured
 * crop_fraction). Thread-safe with distinct scratch. Returns 0 or -1 with err. */
int verify_set_image(const VerifySet *v, int pair, int side, DatasetScratch *s, uint8_t *rgb, char *err,
                     size_t errlen);

/* Scores pairs [first, first + count) with net in inference mode: each
 * image's embedding is embedding(image) + embedding(mirrored image), and a
 * pair's score is the cosine of the two. scores[i] is pair first + i.
 * Works in batches of net->max_batch images. Returns 0, or -1 with err when an
 * image cannot be loaded (verification images are never skipped). */
int verify_set_score(const VerifySet *v, IResNet *net, int first, int count, float *scores, char *err,
                     size_t errlen);

#endif
