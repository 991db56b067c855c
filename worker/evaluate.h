/* evaluate.h -- 1:1 verification during and after training, on every
 * configured set (config key `verify`).
 *
 * Each set's pairs are split over the workers; each scores its slice with the
 * flip-augmented embedding (verify_set_score) and worker 0 gathers the scores
 * and computes the 10-fold accuracy, threshold and TAR@FAR. */
#ifndef ARCFACE_EVALUATE_H
#define ARCFACE_EVALUATE_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "iresnet.h"
#include "job.h"
#include "verify_set.h"

typedef struct {
    const Job *job;
    VerifySet **sets;
    int n_sets;
    float *scores; /* the largest set's pairs */
} Evaluator;

/* Opens the configured sets. Returns 0 or -1 with a reason. */
int evaluator_init(Evaluator *e, const Job *job, const TrainConfig *cfg, char *err, size_t errlen);
void evaluator_destroy(Evaluator *e);

/* Collective over the workers: averages the BatchNorm running statistics of
 * all workers into net (so every worker evaluates the same model), scores
 * every set and, on worker 0, logs "[name][step]Accuracy-Flip: ..." lines and
 * appends one JSON line per set to metrics (when not NULL). A verification
 * image that cannot be loaded ends the job. */
void evaluator_run(Evaluator *e, IResNet *net, int64_t step, FILE *metrics);

#endif
