/* grad_allreduce.c -- see grad_allreduce.h. */
#include "grad_allreduce.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"

struct GradAllreduce {
    const Job *job;
    float *grads;
    size_t n;
    size_t *bucket_lo; /* bucket k is [bucket_lo[k], k ? bucket_lo[k-1] : n), k = 0 first */
    int n_buckets;
    int threaded; /* 0: MPI_THREAD_SERIALIZED unavailable, finish sums every bucket */

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Under mu: */
    size_t final_from; /* [final_from, n) is final this step */
    int next_bucket;   /* buckets before it are summed this step */
    int active;        /* between start and finish */
    int quit;
    int64_t step;
};

static size_t bucket_hi(const GradAllreduce *g, int k) { return k ? g->bucket_lo[k - 1] : g->n; }

/* MPI counts are ints: a bucket over INT_MAX floats goes in pieces. */
static void sum_bucket(GradAllreduce *g, int k, int64_t step) {
    char what[128];
    snprintf(what, sizeof what, "the backbone gradient allreduce of step %lld (bucket %d of %d)",
             (long long)step, k + 1, g->n_buckets);
    for (size_t lo = g->bucket_lo[k], hi = bucket_hi(g, k); lo < hi;) {
        const size_t count = hi - lo < (size_t)INT_MAX ? hi - lo : (size_t)INT_MAX;
        MPI_Request req;
        MPI_Iallreduce(MPI_IN_PLACE, g->grads + lo, (int)count, MPI_FLOAT, MPI_SUM, g->job->role_comm, &req);
        job_wait(g->job, &req, what);
        lo += count;
    }
}

static void *communicate(void *arg) {
    GradAllreduce *g = arg;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (!g->quit && !(g->active && g->next_bucket < g->n_buckets &&
                             g->final_from <= g->bucket_lo[g->next_bucket]))
            pthread_cond_wait(&g->cv, &g->mu);
        if (g->quit) break;
        const int k = g->next_bucket;
        const int64_t step = g->step;
        pthread_mutex_unlock(&g->mu);
        sum_bucket(g, k, step);
        pthread_mutex_lock(&g->mu);
        g->next_bucket = k + 1;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* The i-th place iresnet_backward reports from: the head's start, then each
 * block's from the last, then 0 after the stem (i = n_blocks + 1). */
static size_t report_point(const IResNet *net, int i) {
    if (i == 0) return net->head_param_start;
    if (i <= net->n_blocks) return net->blocks[net->n_blocks - i].param_start;
    return 0;
}

GradAllreduce *grad_allreduce_create(const Job *job, IResNet *net, size_t bucket_floats) {
    GradAllreduce *g = calloc(1, sizeof *g);
    CHECK(g != NULL, "out of memory");
    g->job = job;
    g->grads = net->params.grads;
    g->n = net->params.n_params;
    g->bucket_lo = calloc((size_t)net->n_blocks + 2, sizeof *g->bucket_lo);
    CHECK(g->bucket_lo != NULL, "out of memory");
    /* A bucket closes at the first report point at least bucket_floats below its
     * top, and at every report point once fewer than bucket_floats parameters
     * remain below: the last bucket, summed after the pass, is then the stem's
     * alone, and the early blocks' small buckets overlap with the backward of the
     * largest feature maps, which comes last. */
    size_t top = g->n;
    for (int i = 0; i <= net->n_blocks + 1; i++) {
        const size_t point = report_point(net, i);
        if (point < bucket_floats || top - point >= bucket_floats) {
            g->bucket_lo[g->n_buckets++] = point;
            top = point;
        }
    }
    int level = 0;
    MPI_Query_thread(&level);
    g->threaded = level >= MPI_THREAD_SERIALIZED;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    if (g->threaded) CHECK(pthread_create(&g->thread, NULL, communicate, g) == 0, "cannot start the allreduce thread");
    return g;
}

void grad_allreduce_start(GradAllreduce *g, int64_t step) {
    pthread_mutex_lock(&g->mu);
    g->final_from = g->n;
    g->next_bucket = 0;
    g->step = step;
    g->active = 1;
    pthread_mutex_unlock(&g->mu);
}

void grad_allreduce_final(void *ctx, size_t first) {
    GradAllreduce *g = ctx;
    pthread_mutex_lock(&g->mu);
    g->final_from = first;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

void grad_allreduce_finish(GradAllreduce *g) {
    if (!g->threaded) {
        for (int k = 0; k < g->n_buckets; k++) sum_bucket(g, k, g->step);
        g->active = 0;
        return;
    }
    pthread_mutex_lock(&g->mu);
    CHECK(g->final_from == 0, "grad_allreduce_finish before the backward pass ended");
    /* Bounded: each bucket's wait is job_wait's, which ends the job on timeout. */
    while (g->next_bucket < g->n_buckets) pthread_cond_wait(&g->cv, &g->mu);
    g->active = 0;
    pthread_mutex_unlock(&g->mu);
}

void grad_allreduce_destroy(GradAllreduce **gp) {
    if (!gp || !*gp) return;
    GradAllreduce *g = *gp;
    if (g->threaded) {
        pthread_mutex_lock(&g->mu);
        g->quit = 1;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
        pthread_join(g->thread, NULL);
    }
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->bucket_lo);
    free(g);
    *gp = NULL;
}
