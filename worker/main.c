/* main.c -- arcface-worker: data-parallel backbone training.
 *
 * Each step: read this worker's shard of the global batch, run the IResNet
 * forward, send embeddings and labels to every parameter server, receive the
 * embedding gradient, run backward, sum the backbone gradients of all workers
 * (MPI_Iallreduce), clip, and apply SGD. A stop signal on any rank ends the
 * run at a step boundary all ranks agree on (docs/design.md). Launched with
 * the servers:
 *     mpirun -np P arcface-ps CONFIG : -np W arcface-worker CONFIG */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "backbone_file.h"
#include "check.h"
#include "config.h"
#include "dataset.h"
#include "checkpoint.h"
#include "evaluate.h"
#include "grad_allreduce.h"
#include "iresnet.h"
#include "job.h"
#include "loader.h"
#include "log.h"
#include "ps_client.h"
#include "run_state.h"
#include "stop_request.h"
#include "train_setup.h"

/* Gradient allreduce buckets of 16 MiB: large enough that a bucket costs
 * bandwidth, not latency (the first 16 MiB of parameters, the early blocks,
 * go one block per bucket: see grad_allreduce_create). */
#define GRAD_BUCKET_FLOATS ((size_t)4 << 20)

typedef struct {
    double data, forward, exchange, backward, allreduce, update;
} StepTimes;

typedef struct {
    Job job;
    TrainConfig cfg;
    IResNet *net;
    GradAllreduce *grad_sum; /* the backbone gradient's allreduce, overlapped with backward */
    PsClient client;
    Dataset *dataset;
    Loader *loader;
    Evaluator eval;
    LrSchedule schedule;
    float *dembedding, *loss;
    int64_t start_step; /* 0, or the step of the checkpoint resumed */
    int64_t stopped_at; /* the step a stop signal ended the run after, else 0 */
    double test_delay;  /* seconds to sleep per step: ARCFACE_TEST_STEP_DELAY_MS, for tests of slow peers */
    FILE *metrics; /* output_dir/metrics.jsonl on worker 0, else NULL */
} Worker;

static void open_metrics(Worker *wk) {
    if (wk->job.role_rank != 0 || !wk->cfg.output_dir[0]) return;
    if (mkdir(wk->cfg.output_dir, 0755) != 0 && errno != EEXIST)
        job_abort(&wk->job, "cannot create output_dir '%s': %s", wk->cfg.output_dir, strerror(errno));
    char path[600];
    snprintf(path, sizeof path, "%s/metrics.jsonl", wk->cfg.output_dir);
    /* A resumed run continues the file; a fresh one starts it over. */
    wk->metrics = fopen(path, wk->start_step > 0 ? "a" : "w");
    if (!wk->metrics) job_abort(&wk->job, "cannot create %s: %s", path, strerror(errno));
}

/* The BatchNorm running statistics averaged over the workers (collective),
 * into out: what a checkpoint or an export holds. */
static void averaged_bn_buffers(Worker *wk, float *out) {
    IResNet *net = wk->net;
    memcpy(out, net->bn_buffers, net->n_bn_buffers * sizeof(float));
    if (wk->job.n_workers == 1) return;
    MPI_Request req;
    MPI_Iallreduce(MPI_IN_PLACE, out, (int)net->n_bn_buffers, MPI_FLOAT, MPI_SUM, wk->job.role_comm, &req);
    job_wait(&wk->job, &req, "the workers' BatchNorm statistics for a checkpoint");
    for (size_t i = 0; i < net->n_bn_buffers; i++) out[i] /= (float)wk->job.n_workers;
}

static void save_checkpoint(Worker *wk, int64_t done) {
    IResNet *net = wk->net;
    float *bn = xcalloc_aligned(net->n_bn_buffers, sizeof(float));
    averaged_bn_buffers(wk, bn);
    char dir[CKPT_PATH_MAX];
    run_checkpoint_dir(&wk->job, &wk->cfg, done, dir, sizeof dir);
    if (wk->job.role_rank == 0) {
        char path[CKPT_PATH_MAX], err[1024];
        char *config_text = NULL;
        size_t config_len = 0;
        FILE *mem = open_memstream(&config_text, &config_len);
        config_print(&wk->cfg, mem);
        fclose(mem);
        CkptWriter *w = NULL;
        int64_t global_batch = (int64_t)wk->job.n_workers * wk->cfg.batch_size;
        int rc = ckpt_backbone_path(path, sizeof path, dir) != 0 ? (snprintf(err, sizeof err, "path too long"), -1)
                 : ckpt_writer_open(&w, path, err, sizeof err);
        if (rc == 0) rc = ckpt_writer_add(w, CKPT_SEC_CONFIG, CKPT_U8, config_text, config_len, err, sizeof err);
        if (rc == 0) rc = ckpt_writer_add_i64(w, CKPT_SEC_STEP, done, err, sizeof err);
        if (rc == 0) rc = ckpt_writer_add_i64(w, CKPT_SEC_EPOCH, loader_epoch_of(wk->loader, done), err, sizeof err);
        if (rc == 0) rc = ckpt_writer_add_i64(w, RUN_SEC_GLOBAL_BATCH, global_batch, err, sizeof err);
        if (rc == 0)
            rc = ckpt_writer_add(w, CKPT_SEC_BACKBONE_PARAMS, CKPT_F32, net->params.params, net->params.n_params, err,
                                 sizeof err);
        if (rc == 0)
            rc = ckpt_writer_add(w, CKPT_SEC_BACKBONE_MOMENTUM, CKPT_F32, net->params.momentum, net->params.n_params,
                                 err, sizeof err);
        if (rc == 0) rc = ckpt_writer_add(w, CKPT_SEC_BN_BUFFERS, CKPT_F32, bn, net->n_bn_buffers, err, sizeof err);
        if (rc == 0) rc = ckpt_writer_commit(&w, err, sizeof err);
        else ckpt_writer_abort(&w);
        free(config_text);
        if (rc != 0) job_abort(&wk->job, "checkpoint of step %lld: %s", (long long)done, err);
    }
    free(bn);
    run_checkpoint_finish(&wk->job, &wk->cfg, done, dir);
}

static void load_checkpoint(Worker *wk, const char *dir) {
    IResNet *net = wk->net;
    char path[CKPT_PATH_MAX], err[CKPT_PATH_MAX + 512];
    CkptReader *r = NULL;
    int64_t step = -1, global_batch = -1, want = (int64_t)wk->job.n_workers * wk->cfg.batch_size;
    int rc = ckpt_backbone_path(path, sizeof path, dir) != 0 ? (snprintf(err, sizeof err, "path too long"), -1)
             : ckpt_open(&r, path, err, sizeof err);
    if (rc == 0) rc = ckpt_read_i64(r, CKPT_SEC_STEP, &step, err, sizeof err);
    if (rc == 0) rc = ckpt_read_i64(r, RUN_SEC_GLOBAL_BATCH, &global_batch, err, sizeof err);
    if (rc == 0 && global_batch != want)
        rc = -1, snprintf(err, sizeof err, "%s was trained with a global batch of %lld, this job has %d workers x "
                          "batch_size %d = %lld: keep workers x batch_size to resume exactly", path,
                          (long long)global_batch, wk->job.n_workers, wk->cfg.batch_size, (long long)want);
    if (rc == 0 && ckpt_section_count(r, CKPT_SEC_BACKBONE_PARAMS) != (int64_t)net->params.n_params)
        rc = -1, snprintf(err, sizeof err, "%s holds %lld backbone parameters, IResNet-%d width %d has %zu: the network "
                          "keys differ from the run that wrote it", path,
                          (long long)ckpt_section_count(r, CKPT_SEC_BACKBONE_PARAMS), net->depth, net->width,
                          net->params.n_params);
    if (rc == 0)
        rc = ckpt_read(r, CKPT_SEC_BACKBONE_PARAMS, CKPT_F32, net->params.params, net->params.n_params, err, sizeof err);
    if (rc == 0)
        rc = ckpt_read(r, CKPT_SEC_BACKBONE_MOMENTUM, CKPT_F32, net->params.momentum, net->params.n_params, err,
                       sizeof err);
    if (rc == 0) rc = ckpt_read(r, CKPT_SEC_BN_BUFFERS, CKPT_F32, net->bn_buffers, net->n_bn_buffers, err, sizeof err);
    ckpt_close(&r);
    if (rc != 0) job_abort(&wk->job, "resuming the backbone: %s", err);
    if (step != wk->start_step) job_abort(&wk->job, "%s holds step %lld, expected %lld", path, (long long)step,
                                          (long long)wk->start_step);
}

static void setup(Worker *wk, int argc, char **argv) {
    Job *job = &wk->job;
    char err[1024];
    if (config_from_args(&wk->cfg, argc, argv, err, sizeof err) != 0) job_abort(job, "config: %s", err);
    const TrainConfig *cfg = &wk->cfg;
    /* Workers wait on collectives twice as long as the servers wait for a
     * worker: when a worker freezes, the servers, who can tell which worker is
     * missing, report first. */
    job->timeout = 2 * cfg->step_timeout;
    blas_setup(cfg->threads, job->role_rank == 0);

    wk->net = iresnet_create(config_depth(cfg), cfg->width, cfg->embedding_size, cfg->dropout,
                             cfg->batch_size, cfg->bn_group, cfg->seed, err, sizeof err);
    if (!wk->net) job_abort(job, "backbone: %s", err);
    wk->grad_sum = grad_allreduce_create(job, wk->net, GRAD_BUCKET_FLOATS);
    if (job->role_rank == 0)
        log_info("IResNet-%d width %d: %zu parameters, %.2f GFLOP forward per image; %d workers x "
                 "batch %d, %d servers", wk->net->depth, wk->net->width, iresnet_param_count(wk->net),
                 iresnet_forward_flops(wk->net) * 1e-9, job->n_workers, cfg->batch_size, job->n_servers);

    if (dataset_open(&wk->dataset, cfg, err, sizeof err) != 0) job_abort(job, "training set: %s", err);
    if (job->role_rank == 0) log_info("training set: %s", dataset_describe(wk->dataset));
    JobData data = job_share_data(job, cfg, dataset_classes(wk->dataset), dataset_size(wk->dataset));
    int64_t num_classes = data.num_classes;
    char dir[CKPT_PATH_MAX];
    wk->start_step = run_agree_resume(job, cfg, dir, sizeof dir);
    if (wk->start_step > 0) load_checkpoint(wk, dir);
    ps_client_init(&wk->client, job, cfg, num_classes);

    if (loader_start(&wk->loader, wk->dataset, cfg, job->role_rank, job->n_workers, wk->start_step,
                     run_end_step(cfg), err, sizeof err) != 0)
        job_abort(job, "data: %s", err);
    if (evaluator_init(&wk->eval, job, cfg, err, sizeof err) != 0)
        job_abort(job, "verification: %s", err);
    wk->schedule = schedule_from_config(cfg, data.steps_per_epoch);
    size_t B = (size_t)cfg->batch_size;
    wk->dembedding = xcalloc_aligned(B * (size_t)cfg->embedding_size, sizeof(float));
    wk->loss = xcalloc_aligned(B, sizeof(float));
    open_metrics(wk);
    const char *delay = getenv("ARCFACE_TEST_STEP_DELAY_MS");
    if (delay && delay[0]) {
        char *end;
        double ms = strtod(delay, &end);
        if (*end || !(ms >= 0 && ms <= 60000))
            job_abort(job, "ARCFACE_TEST_STEP_DELAY_MS='%s': expected milliseconds in [0, 60000]", delay);
        wk->test_delay = ms / 1000;
        log_warn("ARCFACE_TEST_STEP_DELAY_MS: sleeping %.0f ms in every step (a test setting)", ms);
    }
}

static void format_duration(char *buf, size_t len, double seconds) {
    long s = (long)(seconds + 0.5);
    snprintf(buf, len, "%02ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
}

static void train(Worker *wk) {
    Job *job = &wk->job;
    const TrainConfig *cfg = &wk->cfg;
    IResNet *net = wk->net;
    const int B = cfg->batch_size;
    const int64_t global_batch = (int64_t)B * job->n_workers;
    StepTimes acc = {0};
    double window_start = now_seconds(), run_start = window_start;
    double loss_window = 0;
    int window_steps = 0;
    char what[128];

    const int64_t end = run_end_step(cfg);
    for (int64_t step = wk->start_step; step < end; step++) {
        double t0 = now_seconds();
        const float *images;
        const int64_t *labels;
        char err[1024];
        if (loader_get(wk->loader, step, cfg->step_timeout, &images, &labels, err, sizeof err) != 0)
            job_abort(job, "training data: %s", err);
        if (wk->test_delay > 0) {
            struct timespec ts = {(time_t)wk->test_delay, (long)((wk->test_delay - (double)(time_t)wk->test_delay) * 1e9)};
            nanosleep(&ts, NULL); /* a signal may cut it short; that is fine */
        }
        double t1 = now_seconds();
        const float *emb = iresnet_forward(net, images, B, 1, (uint64_t)step, (uint64_t)job->role_rank * B);
        double t2 = now_seconds();
        int server_stop = ps_client_exchange(&wk->client, step, labels, emb, wk->dembedding, wk->loss);
        double t3 = now_seconds();
        paramset_zero_grad(&net->params);
        grad_allreduce_start(wk->grad_sum, step);
        iresnet_backward(net, wk->dembedding, grad_allreduce_final, wk->grad_sum);
        /* The stem's weight gradient reads the images: only now may the
         * decoding threads refill their slot. */
        loader_release(wk->loader, step);
        double t4 = now_seconds();

        /* The servers scaled the gradient by 1/global_batch, so summing the
         * workers' gradients (begun during the backward pass) gives the
         * gradient of the global mean loss. Beside the loss travels the stop
         * vote: a signal here or at a server makes every worker stop after
         * this same step. */
        grad_allreduce_finish(wk->grad_sum);
        double loss_and_stop[2] = {0, stop_request_signal() || server_stop};
        for (int i = 0; i < B; i++) loss_and_stop[0] += wk->loss[i];
        MPI_Request req;
        MPI_Iallreduce(MPI_IN_PLACE, loss_and_stop, 2, MPI_DOUBLE, MPI_SUM, job->role_comm, &req);
        snprintf(what, sizeof what, "the loss allreduce of step %lld", (long long)step);
        job_wait(job, &req, what);
        double t5 = now_seconds();
        double loss = loss_and_stop[0] / (double)global_batch;
        if (!isfinite(loss)) job_abort(job, "the loss of step %lld is %g: training diverged (lower lr?)", (long long)step, loss);
        clip_grad_norm(&net->params, cfg->grad_clip);
        float lr = lr_at(&wk->schedule, step);
        sgd_step(&net->params, lr, cfg->momentum, cfg->weight_decay);
        double t6 = now_seconds();

        acc.data += t1 - t0, acc.forward += t2 - t1, acc.exchange += t3 - t2;
        acc.backward += t4 - t3, acc.allreduce += t5 - t4, acc.update += t6 - t5;
        loss_window += loss;
        window_steps++;
        if (wk->metrics) {
            /* The phase times (worker 0's) let deploy/bench.sh split a step into
             * compute and waiting on the servers and the allreduce. */
            fprintf(wk->metrics, "{\"step\": %lld, \"epoch\": %lld, \"loss\": %.9g, \"lr\": %.9g, \"images_per_s\": %.2f, "
                    "\"time_s\": {\"data\": %.5f, \"forward\": %.5f, \"servers\": %.5f, \"backward\": %.5f, "
                    "\"allreduce\": %.5f, \"sgd\": %.5f}}\n",
                    (long long)(step + 1), (long long)loader_epoch_of(wk->loader, step), loss, lr,
                    (double)global_batch / (t6 - t0), t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5);
            fflush(wk->metrics);
        }
        int64_t done = step + 1;
        if (job->role_rank == 0 && (done % cfg->log_every == 0 || done == end)) {
            double now = now_seconds(), elapsed = now - window_start;
            double per_step = (now - run_start) / (double)(done - wk->start_step);
            char eta[32];
            format_duration(eta, sizeof eta, per_step * (double)(cfg->steps - done));
            double total = acc.data + acc.forward + acc.exchange + acc.backward + acc.allreduce + acc.update;
            log_info("step %lld/%lld epoch %lld loss %.4f lr %.5f %.1f images/s (%.1f per worker) eta %s | "
                     "data %.0f%% fwd %.0f%% ps %.0f%% bwd %.0f%% allreduce %.0f%% sgd %.0f%%",
                     (long long)done, (long long)cfg->steps, (long long)loader_epoch_of(wk->loader, step),
                     loss_window / window_steps, lr, (double)window_steps * global_batch / elapsed,
                     (double)window_steps * B / elapsed, eta, 100 * acc.data / total,
                     100 * acc.forward / total, 100 * acc.exchange / total, 100 * acc.backward / total,
                     100 * acc.allreduce / total, 100 * acc.update / total);
            window_start = now;
            loss_window = 0;
            window_steps = 0;
            memset(&acc, 0, sizeof acc);
        }
        if (loss_and_stop[1] > 0 && done < end) {
            /* The servers learn the step from this message and save their
             * rows into the same checkpoint. */
            ps_client_send_stop(&wk->client, done);
            if (cfg->output_dir[0]) save_checkpoint(wk, done);
            wk->stopped_at = done;
            break;
        }
        if (cfg->verify_every > 0 && done % cfg->verify_every == 0 && done != cfg->steps)
            evaluator_run(&wk->eval, net, done, wk->metrics);
        if (run_checkpoint_due(cfg, done)) save_checkpoint(wk, done);
    }
    if (wk->stopped_at) {
        if (job->role_rank == 0)
            log_info("stopped by a signal after step %lld of %lld%s", (long long)wk->stopped_at, (long long)cfg->steps,
                     cfg->output_dir[0] ? "; run the same command again to resume from its checkpoint"
                                        : " (no output_dir: nothing saved)");
    } else if (end == cfg->steps) {
        evaluator_run(&wk->eval, net, cfg->steps, wk->metrics);
    }
}

/* output_dir/backbone.bin (common/backbone_file.h), with the BatchNorm
 * statistics averaged over the workers by the final verification. */
static void write_backbone(Worker *wk) {
    if (wk->job.role_rank != 0 || !wk->cfg.output_dir[0] || run_end_step(&wk->cfg) != wk->cfg.steps ||
        wk->stopped_at)
        return;
    char path[600], err[1024];
    snprintf(path, sizeof path, "%s/backbone.bin", wk->cfg.output_dir);
    if (backbone_save(wk->net, path, err, sizeof err) != 0) job_abort(&wk->job, "%s", err);
}

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        print_usage(stdout);
        return 0;
    }
    Worker wk;
    memset(&wk, 0, sizeof wk);
    job_init(&wk.job, &argc, &argv, 0, 120.0);
    stop_request_install();
    setup(&wk, argc, argv);
    train(&wk);
    write_backbone(&wk);
    if (wk.metrics) fclose(wk.metrics);
    evaluator_destroy(&wk.eval);
    int64_t bad = loader_bad_images(wk.loader);
    if (bad) log_warn("%lld training images could not be loaded and were replaced", (long long)bad);
    loader_stop(&wk.loader);
    dataset_close(&wk.dataset);
    ps_client_destroy(&wk.client);
    grad_allreduce_destroy(&wk.grad_sum);
    iresnet_destroy(&wk.net);
    free(wk.dembedding);
    free(wk.loss);
    job_finalize(&wk.job);
    return 0;
}
