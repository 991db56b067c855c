/* run_state.c -- checkpoint schedule and the job's agreement on resuming. */
#include "run_state.h"

#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "log.h"

int run_checkpoint_due(const TrainConfig *cfg, int64_t done) {
    if (!cfg->output_dir[0]) return 0;
    if (done == run_end_step(cfg)) return 1;
    return cfg->checkpoint_every > 0 && done % cfg->checkpoint_every == 0;
}

int64_t run_end_step(const TrainConfig *cfg) { return cfg->stop_at_step > 0 ? cfg->stop_at_step : cfg->steps; }

int64_t run_agree_resume(const Job *job, const TrainConfig *cfg, char *dir, size_t dirlen) {
    int64_t step = 0;
    char err[1024];
    if (!job->is_server && job->role_rank == 0 && cfg->output_dir[0] && strcmp(cfg->resume, "auto") == 0) {
        CkptDirEntry latest;
        int found = ckpt_dir_latest(cfg->output_dir, &latest, err, sizeof err);
        if (found < 0) job_abort(job, "looking for a checkpoint to resume: %s", err);
        if (found) step = latest.step;
    }
    MPI_Request req;
    MPI_Ibcast(&step, 1, MPI_INT64_T, job->worker_world_ranks[0], MPI_COMM_WORLD, &req);
    job_wait(job, &req, "worker 0's choice of the checkpoint to resume");
    dir[0] = '\0';
    if (step > 0) {
        if (ckpt_dir_path(dir, dirlen, cfg->output_dir, step) != 0) job_abort(job, "checkpoint path too long");
        if (step >= run_end_step(cfg))
            job_abort(job, "the newest checkpoint (%s) is at step %lld, the run ends at step %lld: nothing to do "
                      "(raise steps, or resume = none to start over)", dir, (long long)step,
                      (long long)run_end_step(cfg));
        if (job->world_rank == job->worker_world_ranks[0]) log_info("resuming from %s", dir);
    }
    return step;
}

void run_checkpoint_dir(const Job *job, const TrainConfig *cfg, int64_t done, char *dir, size_t dirlen) {
    char err[1024];
    if (ckpt_dir_create(cfg->output_dir, done, dir, dirlen, err, sizeof err) != 0)
        job_abort(job, "checkpoint of step %lld: %s", (long long)done, err);
}

void run_checkpoint_finish(const Job *job, const TrainConfig *cfg, int64_t done, const char *dir) {
    MPI_Request req;
    char what[96], err[1024];
    snprintf(what, sizeof what, "every rank to write its part of checkpoint %lld", (long long)done);
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    job_wait(job, &req, what);
    if (job->is_server || job->role_rank != 0) return;
    if (ckpt_dir_mark_complete(dir, done, job->n_servers, err, sizeof err) != 0)
        job_abort(job, "checkpoint of step %lld: %s", (long long)done, err);
    if (ckpt_dir_prune(cfg->output_dir, cfg->keep_checkpoints, err, sizeof err) != 0)
        log_warn("removing old checkpoints: %s", err);
    log_info("checkpoint %s complete", dir);
}
