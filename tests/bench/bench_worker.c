/* bench_worker.c -- a worker's training speed: IResNet forward, an ArcFace
 * classifier step, backward and SGD in one process, the same work as
 * tests/bench/torch_iresnet.py does in PyTorch, so deploy/bench.sh can put the
 * two side by side.
 *
 * Usage: bench_worker [--model r18|r34|r50|r100] [--width W] [--embedding E]
 *                     [--batch N] [--classes C] [--threads T] [--steps S]
 *                     [--warmup S] [--forward-steps S]
 * Prints one line of JSON: training images/s (median over the timed steps),
 * forward-only (inference) images/s, GFLOPS of both (a forward is
 * iresnet_forward_flops per image, a training step counts three times that:
 * forward, input gradient and weight gradient), the phase times of the
 * median step and the peak RSS. Run one configuration per process: the peak
 * RSS is the process's.
 *
 * The classifier is one shard of every class with ArcFace s = 64, m = 0.5,
 * its own statistics standing in for the combined ones (one server), as a
 * single-process PyTorch ArcFace layer computes it. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "classifier.h"
#include "iresnet.h"
#include "margin.h"
#include "optim.h"
#include "rng.h"
#include "train_setup.h"

#define MAX_STEPS 64

typedef struct {
    int depth, width, embedding, batch, threads, steps, warmup, forward_steps;
    long classes;
} Options;

static void usage_error(const char *what, const char *value) {
    fprintf(stderr, "bench_worker: %s '%s' (see the usage at the top of tests/bench/bench_worker.c)\n",
            what, value);
    exit(2);
}

static long parse_long(const char *name, const char *v, long lo, long hi) {
    char *end;
    const long x = strtol(v, &end, 10);
    if (*v == '\0' || *end || x < lo || x > hi) {
        char what[128];
        snprintf(what, sizeof what, "%s must be an integer in [%ld, %ld], not", name, lo, hi);
        usage_error(what, v);
    }
    return x;
}

static Options parse_options(int argc, char **argv) {
    Options o = {.depth = 50, .width = 64, .embedding = 512, .batch = 32, .classes = 10000,
                 .threads = 2, .steps = 5, .warmup = 1, .forward_steps = 5};
    for (int a = 1; a < argc; a++) {
        const char *name = argv[a];
        if (a + 1 >= argc) usage_error("missing value after", name);
        const char *v = argv[++a];
        if (!strcmp(name, "--model")) {
            if (v[0] != 'r') usage_error("unknown model", v);
            o.depth = (int)parse_long("--model's depth", v + 1, 18, 100);
        } else if (!strcmp(name, "--width")) o.width = (int)parse_long(name, v, 1, 4096);
        else if (!strcmp(name, "--embedding")) o.embedding = (int)parse_long(name, v, 1, 65536);
        else if (!strcmp(name, "--batch")) o.batch = (int)parse_long(name, v, 1, 4096);
        else if (!strcmp(name, "--classes")) o.classes = parse_long(name, v, 1, 100000000);
        else if (!strcmp(name, "--threads")) o.threads = (int)parse_long(name, v, 1, 1024);
        else if (!strcmp(name, "--steps")) o.steps = (int)parse_long(name, v, 1, MAX_STEPS);
        else if (!strcmp(name, "--warmup")) o.warmup = (int)parse_long(name, v, 0, MAX_STEPS);
        else if (!strcmp(name, "--forward-steps")) o.forward_steps = (int)parse_long(name, v, 1, MAX_STEPS);
        else usage_error("unknown option", name);
    }
    return o;
}

static long peak_rss_kib(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

static void print_times(const char *name, const double *t, int n) {
    printf(", \"%s\": [", name);
    for (int i = 0; i < n; i++) printf("%s%.4f", i ? ", " : "", t[i]);
    printf("]");
}

int main(int argc, char **argv) {
    const Options o = parse_options(argc, argv);
    blas_setup(o.threads, 0);
    char err[512];
    IResNet *net = iresnet_create(o.depth, o.width, o.embedding, 0.0f, o.batch, 0, 1, err, sizeof err);
    if (!net) {
        fprintf(stderr, "bench_worker: %s\n", err);
        return 2;
    }
    ClassifierShard head;
    if (classifier_create(&head, 0, o.classes, o.embedding, o.batch, 2, err, sizeof err) != 0) {
        fprintf(stderr, "bench_worker: %s\n", err);
        return 2;
    }
    const Margin arcface = {.s = 64, .m1 = 1, .m2 = 0.5f, .fallback = MARGIN_FALLBACK_THMM};
    const size_t image_floats = (size_t)3 * IRESNET_INPUT * IRESNET_INPUT;
    float *images = malloc(sizeof(float) * image_floats * (size_t)o.batch);
    float *dembedding = malloc(sizeof(float) * (size_t)o.batch * (size_t)o.embedding);
    float *loss = malloc(sizeof(float) * (size_t)o.batch);
    int64_t *labels = malloc(sizeof(int64_t) * (size_t)o.batch);
    SoftmaxStats *combined = malloc(sizeof(SoftmaxStats) * (size_t)o.batch);
    if (!images || !dembedding || !loss || !labels || !combined) {
        fprintf(stderr, "bench_worker: out of memory\n");
        return 1;
    }
    for (size_t k = 0; k < image_floats * (size_t)o.batch; k++)
        images[k] = rng_normal(rng_hash4(3, 1, k, 0));
    for (int i = 0; i < o.batch; i++)
        labels[i] = (int64_t)(rng_hash4(3, 2, (uint64_t)i, 0) % (uint64_t)o.classes);

    /* Training steps: the first o.warmup are not timed. */
    enum { FORWARD, HEAD, BACKWARD, UPDATE, PHASES };
    double step_s[MAX_STEPS], phase_s[PHASES][MAX_STEPS], mean_loss = 0;
    for (int s = 0; s < o.warmup + o.steps; s++) {
        const double t0 = bench_now();
        const float *emb = iresnet_forward(net, images, o.batch, 1, (uint64_t)s, 0);
        const double t1 = bench_now();
        classifier_forward(&head, emb, labels, o.batch, &arcface);
        memcpy(combined, head.stats, sizeof(SoftmaxStats) * (size_t)o.batch);
        classifier_backward(&head, dembedding, combined, labels, &arcface);
        margin_loss(loss, combined, o.batch);
        const double t2 = bench_now();
        paramset_zero_grad(&net->params);
        iresnet_backward(net, dembedding, NULL, NULL);
        const double t3 = bench_now();
        sgd_step(&net->params, 0.1f, 0.9f, 5e-4f);
        classifier_sgd_step(&head, 0.1f, 0.9f, 5e-4f);
        const double t4 = bench_now();
        if (s < o.warmup) continue;
        const int k = s - o.warmup;
        step_s[k] = t4 - t0;
        phase_s[FORWARD][k] = t1 - t0, phase_s[HEAD][k] = t2 - t1;
        phase_s[BACKWARD][k] = t3 - t2, phase_s[UPDATE][k] = t4 - t3;
        for (int i = 0; i < o.batch; i++) mean_loss += loss[i] / ((double)o.batch * o.steps);
    }
    double forward_s[MAX_STEPS];
    (void)iresnet_forward(net, images, o.batch, 0, 0, 0); /* warm-up of the inference path */
    for (int s = 0; s < o.forward_steps; s++) {
        const double t0 = bench_now();
        (void)iresnet_forward(net, images, o.batch, 0, 0, 0);
        forward_s[s] = bench_now() - t0;
    }

    const double train_med = bench_median(step_s, o.steps), fwd_med = bench_median(forward_s, o.forward_steps);
    const double flops = iresnet_forward_flops(net);
    printf("{\"impl\": \"arcface-c\", \"openblas_core\": \"%s\", \"model\": \"r%d\", \"width\": %d, "
           "\"embedding\": %d, \"batch\": %d, \"classes\": %ld, \"threads\": %d, "
           "\"train_images_per_s\": %.3f, \"forward_images_per_s\": %.3f, "
           "\"train_gflops\": %.1f, \"forward_gflops\": %.1f, \"forward_gflop_per_image\": %.4f, "
           "\"phases_median_s\": {\"forward\": %.4f, \"arcface\": %.4f, \"backward\": %.4f, \"sgd\": %.4f}, "
           "\"mean_loss\": %.4f, \"peak_rss_mib\": %.0f",
           openblas_get_corename(), o.depth, o.width, o.embedding, o.batch, o.classes, o.threads,
           o.batch / train_med, o.batch / fwd_med, 3 * flops * o.batch / train_med * 1e-9,
           flops * o.batch / fwd_med * 1e-9, flops * 1e-9, bench_median(phase_s[FORWARD], o.steps),
           bench_median(phase_s[HEAD], o.steps), bench_median(phase_s[BACKWARD], o.steps),
           bench_median(phase_s[UPDATE], o.steps), mean_loss, peak_rss_kib() / 1024.0);
    print_times("train_step_s", step_s, o.steps);
    print_times("forward_s", forward_s, o.forward_steps);
    printf("}\n");

    free(images);
    free(dembedding);
    free(loss);
    free(labels);
    free(combined);
    classifier_destroy(&head);
    iresnet_destroy(&net);
    return 0;
}
