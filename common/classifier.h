/* classifier.h -- one shard of the margin-softmax classifier: the rows of the
 * classes [start, start + rows), their momentum, and the per-step computation
 * of a parameter server.
 *
 * One step for the global batch X (N, D) with labels:
 *   1. classifier_forward: normalise X and the rows as the Margin says
 *      (m->norm: both, rows only, or neither), C = Xn Wn^T (one SGEMM),
 *      margin on owned targets, per-sample local SoftmaxStats.
 *   2. the caller combines the stats over all shards (MPI_Allreduce, or
 *      margin_stats_combine for in-process shards).
 *   3. classifier_backward: dC, then dX partial (N, D) = this shard's
 *      contribution to dLoss/dX (summing the partials of all shards gives the
 *      full gradient), and the gradient of the rows, kept inside the shard.
 *   4. classifier_sgd_step: momentum SGD with weight decay on the rows.
 * The loss is the mean over the N samples of the global batch.
 * All buffers are allocated by classifier_create for up to max_batch samples;
 * no step allocates. */
#ifndef ARCFACE_CLASSIFIER_H
#define ARCFACE_CLASSIFIER_H

#include <stddef.h>
#include <stdint.h>

#include "margin.h"

typedef struct {
    int64_t start, rows; /* owned classes [start, start + rows) */
    int dim;             /* embedding size D */
    int max_batch;       /* global batch capacity N */
    float *weight;       /* (rows, D) */
    float *momentum;     /* (rows, D) */
    float *dweight;      /* (rows, D) gradient of the last backward */
    /* workspaces */
    float *wn, *wnorm;    /* normalised rows (rows, D), their norms (rows); unused for
                             MARGIN_NORM_NONE */
    float *xn, *xnorm;    /* embeddings as multiplied (N, D): normalised, or a copy of the
                             raw ones for MARGIN_NORM_NONE; norms (N) */
    float *dxnorm;        /* (N) gradient of the norms (MARGIN_NORM_WEIGHTS) */
    float *logits;        /* (N, rows): cos, then z, then dcos */
    float *target_dz;     /* (N) */
    float *dxn, *dwn;     /* (N, D), (rows, D) */
    SoftmaxStats *stats;  /* (N) local stats of the last forward */
    int last_n;           /* N of the last forward */
    MarginNorm last_norm; /* normalisation of the last forward */
} ClassifierShard;

/* Allocates the shard and initialises row c (global class id) with
 * normal(0, 0.01) values that depend only on (seed, c, d):
 *     weight[c - start][d] = 0.01f * rng_normal(rng_hash4(seed, RNG_CLASSIFIER_INIT, c, d)),
 * so any split of the classes over servers starts from the same matrix.
 * rows may be 0 (a server with no classes); at most INT_MAX (BLAS takes ints).
 * Returns 0, or -1 with a message in err when the sizes are invalid (c is then
 * zeroed, so classifier_destroy is still safe); allocation failure is fatal. */
int classifier_create(ClassifierShard *c, int64_t start, int64_t rows, int dim, int max_batch,
                      uint64_t seed, char *err, size_t errlen);
/* Frees every buffer and zeroes *c. Accepts NULL, a zeroed or an already
 * destroyed shard. */
void classifier_destroy(ClassifierShard *c);

/* x (N, D) raw embeddings, labels (N) global class ids. Writes the shard's
 * local stats into c->stats (N). N <= max_batch. m should pass margin_check.
 * With MARGIN_NORM_NONE the SGEMM reads c->weight itself (no copy), so the
 * weights must not change before the matching classifier_backward. */
void classifier_forward(ClassifierShard *c, const float *x, const int64_t *labels, int N,
                        const Margin *m);

/* combined (N): the stats combined over all shards, for the batch of the last
 * classifier_forward, and the same m (its norm is CHECKed). Writes dx (N, D)
 * (overwritten, not accumulated) with this shard's part of d(mean loss)/dx,
 * including the norm's derivative when the embeddings are raw, and c->dweight
 * (overwritten). Overwrites c->logits, so it runs once per forward. */
void classifier_backward(ClassifierShard *c, float *dx, const SoftmaxStats *combined,
                         const int64_t *labels, const Margin *m);

/* v = momentum * v + dweight + weight_decay * w;  w -= lr * v  (PyTorch SGD with
 * dampening 0, no Nesterov; v starts at 0, so the first step is v = g as in PyTorch). */
void classifier_sgd_step(ClassifierShard *c, float lr, float momentum, float weight_decay);

#endif
