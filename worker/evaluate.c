/* evaluate.c -- verification accuracy on held-out synthetic identities. */
#include "evaluate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "image.h"

int evaluator_init(Evaluator *e, const Job *job, const TrainConfig *cfg, int max_batch, char *err,
                   size_t errlen) {
    memset(e, 0, sizeof *e);
    e->job = job;
    e->cfg = cfg;
    e->n_pairs = cfg->verify_pairs;
    e->pairs = xcalloc_aligned((size_t)e->n_pairs, sizeof *e->pairs);
    if (synthetic_pairs(e->pairs, e->n_pairs, cfg->seed, cfg->synthetic_ids, cfg->synthetic_holdout_ids,
                        cfg->synthetic_images, err, errlen) != 0)
        return -1;
    if (max_batch < 4) {
        snprintf(err, errlen, "verification needs batch_size >= 4 (got %d)", max_batch);
        return -1;
    }
    int W = job->n_workers, w = job->role_rank;
    e->first = (int)((int64_t)e->n_pairs * w / W);
    e->count = (int)((int64_t)e->n_pairs * (w + 1) / W) - e->first;
    e->scores = xcalloc_aligned((size_t)e->n_pairs, sizeof(float));
    e->images = xcalloc_aligned((size_t)max_batch * 3 * FACE_SIZE * FACE_SIZE, sizeof(float));
    e->embeddings = xcalloc_aligned((size_t)max_batch, (size_t)cfg->embedding_size * sizeof(float));
    e->rgb = xcalloc_aligned((size_t)FACE_SIZE * FACE_SIZE * 3, 1);
    return 0;
}

void evaluator_destroy(Evaluator *e) {
    free(e->pairs);
    free(e->scores);
    free(e->images);
    free(e->embeddings);
    free(e->rgb);
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

int evaluator_run(Evaluator *e, IResNet *net, VerifyResult *result) {
    average_bn_statistics(e, net);
    const int D = net->embedding_size;
    const size_t image_floats = (size_t)3 * FACE_SIZE * FACE_SIZE;
    /* Each pair needs 4 images: a, b and their mirrors. */
    int per_batch = net->max_batch / 4;
    for (int start = 0; start < e->count; start += per_batch) {
        int n = e->count - start < per_batch ? e->count - start : per_batch;
        for (int i = 0; i < n; i++) {
            const SyntheticPair *pr = &e->pairs[e->first + start + i];
            synthetic_render(e->rgb, e->cfg->seed, pr->id_a, pr->inst_a);
            image_to_tensor(e->images + (size_t)(4 * i + 0) * image_floats, e->rgb, 0);
            image_to_tensor(e->images + (size_t)(4 * i + 1) * image_floats, e->rgb, 1);
            synthetic_render(e->rgb, e->cfg->seed, pr->id_b, pr->inst_b);
            image_to_tensor(e->images + (size_t)(4 * i + 2) * image_floats, e->rgb, 0);
            image_to_tensor(e->images + (size_t)(4 * i + 3) * image_floats, e->rgb, 1);
        }
        const float *emb = iresnet_forward(net, e->images, 4 * n, 0, 0, 0);
        for (int i = 0; i < n; i++) {
            float *a = e->embeddings, *b = e->embeddings + D;
            for (int k = 0; k < D; k++) {
                a[k] = emb[(size_t)(4 * i + 0) * D + k] + emb[(size_t)(4 * i + 1) * D + k];
                b[k] = emb[(size_t)(4 * i + 2) * D + k] + emb[(size_t)(4 * i + 3) * D + k];
            }
            e->scores[e->first + start + i] = verify_cosine(a, b, D);
        }
    }
    /* Gather every worker's slice on worker 0. */
    int W = e->job->n_workers;
    int *counts = xcalloc_aligned((size_t)W, sizeof(int)), *displs = xcalloc_aligned((size_t)W, sizeof(int));
    for (int w = 0; w < W; w++) {
        displs[w] = (int)((int64_t)e->n_pairs * w / W);
        counts[w] = (int)((int64_t)e->n_pairs * (w + 1) / W) - displs[w];
    }
    MPI_Request req;
    if (e->job->role_rank == 0)
        MPI_Igatherv(MPI_IN_PLACE, 0, MPI_FLOAT, e->scores, counts, displs, MPI_FLOAT, 0, e->job->role_comm, &req);
    else
        MPI_Igatherv(e->scores + e->first, e->count, MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, 0,
                     e->job->role_comm, &req);
    job_wait(e->job, &req, "the workers' verification scores");
    free(counts);
    free(displs);
    if (e->job->role_rank != 0) return 0;
    uint8_t *same = xcalloc_aligned((size_t)e->n_pairs, 1);
    for (int i = 0; i < e->n_pairs; i++) same[i] = e->pairs[i].same;
    char err[256];
    int rc = verify_kfold(result, e->scores, same, e->n_pairs, 10, err, sizeof err);
    free(same);
    CHECK(rc == 0, "verification: %s", err);
    return 1;
}
