/* evaluate.h -- 1:1 verification of held-out identities during and after training.
 *
 * The pairs are split over the workers; each embeds its pairs with the
 * flip-augmented embedding (embedding(image) + embedding(mirrored image),
 * L2-normalised), computes cosine similarities, and worker 0 gathers them and
 * computes the 10-fold accuracy. */
#ifndef ARCFACE_EVALUATE_H
#define ARCFACE_EVALUATE_H

#include <stdint.h>

#include "config.h"
#include "iresnet.h"
#include "job.h"
#include "synthetic.h"
#include "verify.h"

typedef struct {
    const Job *job;
    const TrainConfig *cfg;
    SyntheticPair *pairs;     /* all pairs */
    int n_pairs, first, count;/* this worker's slice [first, first + count) */
    float *scores;            /* (n_pairs) gathered on worker 0 */
    float *images;            /* (max_batch, 3, 112, 112) */
    float *embeddings;        /* (2 * pairs per batch, D) flip-summed */
    uint8_t *rgb;
} Evaluator;

/* Returns 0 or -1 with a reason (too few held-out identities, ...). */
int evaluator_init(Evaluator *e, const Job *job, const TrainConfig *cfg, int max_batch, char *err,
                   size_t errlen);
void evaluator_destroy(Evaluator *e);

/* Collective over the workers: averages the BatchNorm running statistics of all
 * workers into net (so every worker evaluates the same model), scores this
 * worker's pairs, and on worker 0 fills *result and returns 1 (0 elsewhere). */
int evaluator_run(Evaluator *e, IResNet *net, VerifyResult *result);

#endif
