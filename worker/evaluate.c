/* evaluate.c -- verification on the configured sets, spread over the workers. */
#include "evaluate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "log.h"
#include "verify.h"

int evaluator_init(Evaluator *e, const Job *job, const TrainConfig *cfg, char *err, size_t errlen) {
    memset(e, 0, sizeof *e);
    e->job = job;
    if (cfg->batch_size < 4) {
        snprintf(err, errlen, "verification needs batch_size >= 4 (got %d)", cfg->batch_size);
        return -1;
    }
    if (verify_sets_open(&e->sets, &e->n_sets, cfg, err, errlen) != 0) return -1;
    int most = 1;
    for (int i = 0; i < e->n_sets; i++)
        if (verify_set_pairs(e->sets[i]) > most) most = verify_set_pairs(e->sets[i]);
    e->scores = xcalloc_aligned((size_t)most, sizeof(float));
    return 0;
}

void evaluator_destroy(Evaluator *e) {
    verify_sets_close(&e->sets, e->n_sets);
    free(e->scores);
    memset(e, 0, sizeof *e);
}

static void average_bn_statistics(const Evaluator *e, IResNet *net) {
    if (e->job->n_workers == 1) return;
    MPI_Request req;
    MPI_Iallreduce(MPI_IN_PLACE, net->bn_buffers, (int)net->n_bn_buffers, MPI_FLOAT, MPI_SUM,
                   e->job->role_comm, &req);
    job_wait(e->job, &req, "the workers' BatchNorm statistics before verification");
    float inv = 1.0f / (float)e->job->n_workers;
    for (size_t i = 0; i < net->n_bn_buffers; i++) net->bn_buffers[i] *= inv;
}

static void report(const Evaluator *e, const VerifySet *set, int64_t step, FILE *metrics) {
    int n = verify_set_pairs(set);
    uint8_t *same = xcalloc_aligned((size_t)n, 1);
    for (int i = 0; i < n; i++) same[i] = (uint8_t)verify_set_same(set, i);
    VerifyResult r;
    char err[256], line[256];
    int rc = verify_kfold(&r, e->scores, same, n, 10, err, sizeof err);
    free(same);
    if (rc != 0) job_abort(e->job, "verification on %s: %s", verify_set_name(set), err);
    verify_format(line, sizeof line, verify_set_name(set), step, &r);
    log_info("%s", line);
    char tar[96] = "";
    if (isfinite(r.tar_at_far_1e3)) snprintf(tar, sizeof tar, " TAR@FAR=1e-3: %.5f", r.tar_at_far_1e3);
    if (isfinite(r.tar_at_far_1e4))
        snprintf(tar + strlen(tar), sizeof tar - strlen(tar), " TAR@FAR=1e-4: %.5f", r.tar_at_far_1e4);
    log_info("[%s][%lld]Threshold: %.4f%s (%s)", verify_set_name(set), (long long)step, r.threshold_mean, tar,
             verify_set_protocol(set));
    if (metrics) {
        fprintf(metrics, "{\"step\": %lld, \"set\": \"%s\", \"accuracy\": %.6f, \"accuracy_std\": %.6f, "
                "\"threshold\": %.6f", (long long)step, verify_set_name(set), r.accuracy_mean, r.accuracy_std,
                r.threshold_mean);
        if (isfinite(r.tar_at_far_1e3)) fprintf(metrics, ", \"tar_at_far_1e-3\": %.6f", r.tar_at_far_1e3);
        if (isfinite(r.tar_at_far_1e4)) fprintf(metrics, ", \"tar_at_far_1e-4\": %.6f", r.tar_at_far_1e4);
        fprintf(metrics, "}\n");
        fflush(metrics);
    }
}

void evaluator_run(Evaluator *e, IResNet *net, int64_t step, FILE *metrics) {
    average_bn_statistics(e, net);
    const int W = e->job->n_workers, w = e->job->role_rank;
    int *counts = xcalloc_aligned((size_t)W, sizeof(int)), *displs = xcalloc_aligned((size_t)W, sizeof(int));
    for (int s = 0; s < e->n_sets; s++) {
        const VerifySet *set = e->sets[s];
        int n = verify_set_pairs(set);
        for (int k = 0; k < W; k++) {
            displs[k] = (int)((int64_t)n * k / W);
            counts[k] = (int)((int64_t)n * (k + 1) / W) - displs[k];
        }
        char err[1024], what[128];
        if (verify_set_score(set, net, displs[w], counts[w], e->scores + displs[w], err, sizeof err) != 0)
            job_abort(e->job, "verification set %s: %s", verify_set_name(set), err);
        MPI_Request req;
        if (w == 0)
            MPI_Igatherv(MPI_IN_PLACE, 0, MPI_FLOAT, e->scores, counts, displs, MPI_FLOAT, 0, e->job->role_comm, &req);
        else
            MPI_Igatherv(e->scores + displs[w], counts[w], MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, 0,
                         e->job->role_comm, &req);
        snprintf(what, sizeof what, "the workers' verification scores of %s", verify_set_name(set));
        job_wait(e->job, &req, what);
        if (w == 0) report(e, set, step, metrics);
    }
    free(counts);
    free(displs);
}
