/* train_setup.h -- objects derived from a finalised TrainConfig, shared by the
 * worker and the server so both sides read the configuration the same way. */
#ifndef ARCFACE_TRAIN_SETUP_H
#define ARCFACE_TRAIN_SETUP_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "margin.h"
#include "optim.h"

/* The margin parameters of a finalised cfg (loss, s, m1..m3, fallback,
 * gradient mode, normalisation); lambda stays 0 (SphereFace's is set per
 * step by margin_set_step). Returns 0, or -1 with margin_check's reason. */
int margin_from_config(const TrainConfig *cfg, Margin *m, char *err, size_t errlen);

/* Updates the step-dependent part of m: SphereFace's annealed lambda, with the
 * original's iteration count (step + 1). */
void margin_set_step(Margin *m, const TrainConfig *cfg, int64_t step);

/* The learning-rate schedule of cfg; steps_per_epoch turns lr_epochs into
 * steps (a milestone at epoch e is step round(e * steps_per_epoch)). */
LrSchedule schedule_from_config(const TrainConfig *cfg, int64_t steps_per_epoch);

/* The IResNet depth named by cfg->network ("r50" -> 50). */
int config_depth(const TrainConfig *cfg);

/* The contiguous block of classes server p of P owns: sizes differ by at most one. */
void shard_range(int64_t num_classes, int p, int P, int64_t *start, int64_t *rows);

/* The launch line of a job and every configuration key (--help of both programs). */
void print_usage(FILE *out);

/* Sets the compute threads (parallel.h; 0 = one per CPU), OpenBLAS to one
 * thread per call inside them, and, when log is set, logs the OpenBLAS build and
 * core in use, warning when the CPU could use a faster core than the one
 * OPENBLAS_CORETYPE forced. */
void blas_setup(int threads, int log);

#endif
