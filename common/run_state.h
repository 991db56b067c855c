/* run_state.h -- when the job checkpoints, and how every rank agrees on the
 * checkpoint to resume from (file formats in checkpoint.h).
 *
 * A checkpoint after `done` steps lives in output_dir/checkpoint-<done>/:
 * worker 0 writes backbone.ckpt (backbone, momentum, BN statistics, step,
 * global batch, config text), server p writes classifier-<p>.ckpt (its rows
 * and their momentum with their global range). Everything else a step needs
 * is a pure function of (seed, step): learning rate, data order, flips,
 * dropout masks, SphereFace's lambda -- so (weights, momentum, step) resume a
 * run exactly. Servers may be more or fewer on resume (each reads its new row
 * range across the old files); workers too, as long as workers x batch_size
 * stays the same (the data order is defined on global batches). */
#ifndef ARCFACE_RUN_STATE_H
#define ARCFACE_RUN_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "job.h"

#define RUN_SEC_GLOBAL_BATCH "global_batch" /* i64[1] in backbone.ckpt */

/* Steps after which the job saves: every checkpoint_every, the stop step, the
 * last step; never without output_dir. */
int run_checkpoint_due(const TrainConfig *cfg, int64_t done);

/* The last step this run executes (exclusive bound): stop_at_step or steps. */
int64_t run_end_step(const TrainConfig *cfg);

/* Collective over the world. Worker 0 looks for the newest complete
 * checkpoint (resume = auto and output_dir set) and every rank learns its step
 * (0 and dir "" when starting fresh) and directory. Errors end the job. */
int64_t run_agree_resume(const Job *job, const TrainConfig *cfg, char *dir, size_t dirlen);

/* The directory of the checkpoint after `done` steps, created (every writer
 * calls it before writing its file). Errors end the job. */
void run_checkpoint_dir(const Job *job, const TrainConfig *cfg, int64_t done, char *dir, size_t dirlen);

/* Collective over the world, after every rank committed its file: worker 0
 * marks the directory complete and prunes old checkpoints. Errors end the job. */
void run_checkpoint_finish(const Job *job, const TrainConfig *cfg, int64_t done, const char *dir);

#endif
