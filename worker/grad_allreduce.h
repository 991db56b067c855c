/* grad_allreduce.h -- the workers' sum of the backbone gradient, overlapped
 * with the backward pass.
 *
 * iresnet_backward reports gradients final from the last parameter towards
 * the first (the head, then each block from the last, then the stem). The
 * parameters are cut into buckets at those report points, about
 * bucket_floats each down to the early blocks, which get one each; the same cut on every worker and every step (the
 * buckets are collectives, which every worker must call alike; a fixed cut
 * also keeps the sums reproducible). A communication thread sums each bucket
 * over the workers (MPI_Iallreduce, waited on by job_wait) as soon as it is
 * final, while the backward pass computes the earlier layers; what is left at
 * the end of the pass is the only allreduce time the step waits for.
 *
 * Between grad_allreduce_start and grad_allreduce_finish only that thread
 * calls MPI (the job runs MPI_THREAD_SERIALIZED). When the MPI library cannot
 * give that, grad_allreduce_finish sums every bucket itself after the pass. */
#ifndef ARCFACE_GRAD_ALLREDUCE_H
#define ARCFACE_GRAD_ALLREDUCE_H

#include <stddef.h>
#include <stdint.h>

#include "iresnet.h"
#include "job.h"

typedef struct GradAllreduce GradAllreduce;

/* Sums net->params.grads over job->role_comm; buckets of at least
 * bucket_floats floats where the report points allow, then one per report
 * point for the first bucket_floats parameters. Starts the thread. */
GradAllreduce *grad_allreduce_create(const Job *job, IResNet *net, size_t bucket_floats);

/* A new step: no gradient is final yet. */
void grad_allreduce_start(GradAllreduce *g, int64_t step);

/* The IResNetGradsFinal callback (ctx is the GradAllreduce): gradients in
 * [first, n_params) are final. */
void grad_allreduce_final(void *ctx, size_t first);

/* After the backward pass (every gradient final): returns once every bucket
 * is summed. */
void grad_allreduce_finish(GradAllreduce *g);

/* Stops the thread and frees; accepts NULL and *g == NULL. */
void grad_allreduce_destroy(GradAllreduce **g);

#endif
