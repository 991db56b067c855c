/* server.c -- the parameter server's synchronous step loop.
 *
 * Each step: gather the FORWARD messages of all W workers (validated and
 * bounded in time), compute this shard's logits and softmax statistics for the
 * whole global batch, combine the statistics with the other servers
 * (MPI_Iallreduce with a log-sum-exp operator), return to every worker its
 * partial embedding gradient and loss, then update the shard's rows. Instead
 * of a step's FORWARD messages the workers may all send STOP: the job ends
 * there (a signal asked for it), after that step's checkpoint. */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "check.h"
#include "checkpoint.h"
#include "dump.h"
#include "log.h"
#include "run_state.h"
#include "stop_request.h"
#include "train_setup.h"

/* Rejections are logged in full for the first few, then one in every 1000, so a
 * flood of bad messages cannot flood the log. */
#define REJECT_LOG_FIRST 10
#define REJECT_LOG_EVERY 1000

static void stats_combine_op(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    margin_stats_combine((SoftmaxStats *)inout, (const SoftmaxStats *)in, *len);
}

static const char *reject_kind_str(int kind) {
    switch (kind) {
    case REJECT_TYPE: return "not FORWARD or STOP";
    case REJECT_SENDER: return "not a worker";
    case REJECT_CONNECTION: return "spoofed sender";
    case REJECT_STEP: return "wrong step";
    case REJECT_ROWS: return "wrong batch";
    default: return wire_status_str((WireStatus)kind);
    }
}

static void reject(Server *s, int kind, const char *why) {
    s->rejected++;
    s->rejected_by[kind]++;
    if (s->rejected <= REJECT_LOG_FIRST || s->rejected % REJECT_LOG_EVERY == 0)
        log_warn("rejected message #%llu: %s", (unsigned long long)s->rejected, why);
}

static void worker_identity(char *buf, size_t len, int worker) {
    snprintf(buf, len, "worker-%d", worker);
}

void server_init(Server *s, Job *job, const TrainConfig *cfg) {
    memset(s, 0, sizeof *s);
    s->job = job;
    s->cfg = cfg;
    s->W = job->n_workers;
    s->B = cfg->batch_size;
    s->N = s->W * s->B;
    s->D = cfg->embedding_size;
    char err[512];
    if (margin_from_config(cfg, &s->margin, err, sizeof err) != 0) job_abort(job, "loss: %s", err);
    JobData data = job_share_data(job, cfg, 0, 0);
    int64_t num_classes = data.num_classes;
    s->schedule = schedule_from_config(cfg, data.steps_per_epoch);
    if (num_classes < job->n_servers)
        job_abort(job, "%lld classes cannot be split over %d servers", (long long)num_classes,
                  job->n_servers);
    int64_t start, rows;
    shard_range(num_classes, job->role_rank, job->n_servers, &start, &rows);
    if (classifier_create(&s->shard, start, rows, s->D, s->N, cfg->seed, err, sizeof err) != 0)
        job_abort(job, "classifier: %s", err);
    if (classifier_set_sampling(&s->shard, cfg->sample_rate, cfg->seed, err, sizeof err) != 0)
        job_abort(job, "classifier: %s", err);
    char dir[CKPT_PATH_MAX];
    s->start_step = run_agree_resume(job, cfg, dir, sizeof dir);
    if (s->start_step > 0) {
        /* Read this server's rows from however many servers wrote them. */
        CkptClassifierSet *set;
        if (ckpt_classifier_open_dir(&set, dir, num_classes, err, sizeof err) != 0 ||
            (ckpt_classifier_dim(set) != s->D &&
             snprintf(err, sizeof err, "%s holds %lld-d rows, embedding_size is %d", dir,
                      (long long)ckpt_classifier_dim(set), s->D) > 0) ||
            ckpt_classifier_read_rows(set, CKPT_SEC_WEIGHT, start, start + rows, s->shard.weight, err, sizeof err) != 0 ||
            ckpt_classifier_read_rows(set, CKPT_SEC_MOMENTUM, start, start + rows, s->shard.momentum, err,
                                      sizeof err) != 0)
            job_abort(job, "resuming the classifier: %s", err);
        ckpt_classifier_close(&set);
    }

    s->limits = (WireLimits){.token = job->token, .dim = (uint32_t)s->D, .max_rows = (uint32_t)s->B,
                             .num_classes = num_classes, .max_message_bytes = (size_t)cfg->max_message_bytes};
    wire_message_init(&s->msg, &s->limits);
    s->x = xcalloc_aligned((size_t)s->N * s->D, sizeof(float));
    s->dx = xcalloc_aligned((size_t)s->N * s->D, sizeof(float));
    s->labels = xcalloc_aligned((size_t)s->N, sizeof(int64_t));
    s->loss = xcalloc_aligned((size_t)s->N, sizeof(float));
    s->combined = xcalloc_aligned((size_t)s->N, sizeof(SoftmaxStats));
    s->identity = xcalloc_aligned((size_t)s->W, sizeof *s->identity);
    s->identity_len = xcalloc_aligned((size_t)s->W, sizeof(size_t));
    s->have = xcalloc_aligned((size_t)s->W, 1);

    MPI_Type_contiguous(3, MPI_FLOAT, &s->stats_type);
    MPI_Type_commit(&s->stats_type);
    MPI_Op_create(stats_combine_op, 1, &s->stats_op);

    /* Bind an ephemeral port on the job's interface; the endpoint goes to the
     * workers through MPI. */
    char addr[64], endpoint[JOB_ENDPOINT_LEN];
    if (job_bind_address(job, cfg->interface, addr, sizeof addr, err, sizeof err) != 0)
        job_abort(job, "%s", err);
    s->zctx = zmq_ctx_new();
    CHECK(s->zctx != NULL, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    s->router = zmq_socket(s->zctx, ZMQ_ROUTER);
    CHECK(s->router != NULL, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    wire_socket_setup(s->router, &s->limits, (int)(cfg->step_timeout * 1000), (int)(cfg->heartbeat_interval * 1000));
    CurveKeypair kp;
    char (*keys)[CURVE_KEY_TEXT];
    if (curve_job_setup(job, cfg->encrypt, &kp, &keys)) {
        char (*workers)[CURVE_KEY_TEXT] = xcalloc_aligned((size_t)s->W, CURVE_KEY_TEXT);
        for (int w = 0; w < s->W; w++) memcpy(workers[w], keys[job->worker_world_ranks[w]], CURVE_KEY_TEXT);
        if (curve_zap_start(&s->zap, s->zctx, workers, s->W, err, sizeof err) != 0) job_abort(job, "CURVE: %s", err);
        curve_server_socket(s->router, &kp);
        explicit_bzero(&kp, sizeof kp);
        free(workers);
        free(keys);
    }
    snprintf(endpoint, sizeof endpoint, "tcp://%s:*", addr);
    if (zmq_bind(s->router, endpoint) != 0)
        job_abort(job, "cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
    size_t len = sizeof endpoint;
    CHECK(zmq_getsockopt(s->router, ZMQ_LAST_ENDPOINT, endpoint, &len) == 0, "ZMQ_LAST_ENDPOINT: %s",
          zmq_strerror(zmq_errno()));
    log_info("classes [%lld, %lld) of %lld on %s", (long long)start, (long long)(start + rows),
             (long long)num_classes, endpoint);
    char (*endpoints)[JOB_ENDPOINT_LEN] = xcalloc_aligned((size_t)job->n_servers, JOB_ENDPOINT_LEN);
    job_exchange_endpoints(job, endpoint, endpoints);
    free(endpoints);
}

void server_destroy(Server *s) {
    if (s->router) zmq_close(s->router);
    uint64_t refused = curve_zap_stop(&s->zap);
    if (refused) log_warn("%llu CURVE handshakes refused during the run", (unsigned long long)refused);
    if (s->zctx) zmq_ctx_term(s->zctx);
    classifier_destroy(&s->shard);
    wire_message_destroy(&s->msg);
    MPI_Op_free(&s->stats_op);
    MPI_Type_free(&s->stats_type);
    free(s->x);
    free(s->dx);
    free(s->labels);
    free(s->loss);
    free(s->combined);
    free(s->identity);
    free(s->identity_len);
    free(s->have);
    memset(s, 0, sizeof *s);
}

/* Takes one FORWARD (or STOP) message for `step` if it is valid and new.
 * Returns 1 when it was accepted. */
static int accept_forward(Server *s, int64_t step) {
    const WireHeader *h = &s->msg.header;
    char why[256], expected[32];
    if (h->type != WIRE_FORWARD && h->type != WIRE_STOP) {
        snprintf(why, sizeof why, "message type %u from a worker, expected FORWARD or STOP", h->type);
        reject(s, REJECT_TYPE, why);
        return 0;
    }
    if (h->sender >= (uint32_t)s->W) {
        snprintf(why, sizeof why, "sender %u is not a worker of this job (%d workers)", h->sender, s->W);
        reject(s, REJECT_SENDER, why);
        return 0;
    }
    int w = (int)h->sender;
    worker_identity(expected, sizeof expected, w);
    if (s->msg.identity_len != strlen(expected) || memcmp(s->msg.identity, expected, s->msg.identity_len) != 0) {
        snprintf(why, sizeof why, "sender %d arrived on a connection that is not %s", w, expected);
        reject(s, REJECT_CONNECTION, why);
        return 0;
    }
    if (h->step != (uint64_t)step || s->have[w]) {
        snprintf(why, sizeof why, "worker %d sent step %llu while step %lld %s", w,
                 (unsigned long long)h->step, (long long)step,
                 s->have[w] && h->step == (uint64_t)step ? "was already received (replay)" : "is current");
        reject(s, REJECT_STEP, why);
        return 0;
    }
    if (h->type == WIRE_STOP) {
        s->have[w] = 1;
        s->stops++;
        return 1;
    }
    if (h->rows != (uint32_t)s->B) {
        snprintf(why, sizeof why, "worker %d sent %u rows, the batch is %d", w, h->rows, s->B);
        reject(s, REJECT_ROWS, why);
        return 0;
    }
    memcpy(s->labels + (size_t)w * s->B, s->msg.frame[0], (size_t)s->B * sizeof(int64_t));
    memcpy(s->x + (size_t)w * s->B * s->D, s->msg.frame[1], (size_t)s->B * s->D * sizeof(float));
    memcpy(s->identity[w], s->msg.identity, s->msg.identity_len);
    s->identity_len[w] = s->msg.identity_len;
    s->have[w] = 1;
    return 1;
}

/* Gathers the step's FORWARD message of every worker, or ends the job naming
 * the first worker that stayed silent for step_timeout seconds. Returns 1
 * when every worker sent STOP instead. */
static int gather_step(Server *s, int64_t step) {
    memset(s->have, 0, (size_t)s->W);
    s->stops = 0;
    int got = 0;
    double deadline = now_seconds() + s->cfg->step_timeout;
    while (got < s->W) {
        double left = deadline - now_seconds();
        if (left <= 0) {
            /* Name every silent worker: one that froze mid-step also stalls
             * the others in their gradient allreduce, so they fall silent too. */
            char who[1024] = "", one[160];
            for (int w = 0, named = 0; w < s->W && named < 8; w++) {
                if (s->have[w]) continue;
                job_describe_rank(s->job, s->job->worker_world_ranks[w], one, sizeof one);
                size_t used = strlen(who);
                snprintf(who + used, sizeof who - used, "%s%s", named++ ? ", " : "", one);
            }
            job_abort(s->job, "no embeddings for step %lld within %.0f s (step_timeout) from %s", (long long)step,
                      s->cfg->step_timeout, who);
        }
        zmq_pollitem_t item = {.socket = s->router, .events = ZMQ_POLLIN};
        long wait_ms = left > 1.0 ? 1000 : (long)(left * 1000) + 1;
        int rc = zmq_poll(&item, 1, wait_ms);
        if (rc < 0) {
            if (zmq_errno() == EINTR) continue;
            job_abort(s->job, "zmq_poll: %s", zmq_strerror(zmq_errno()));
        }
        if (rc == 0) continue;
        for (;;) {
            char err[256];
            WireStatus st = wire_recv(s->router, 1, &s->msg, &s->limits, ZMQ_DONTWAIT, err, sizeof err);
            if (st == WIRE_AGAIN) break;
            if (st != WIRE_OK) {
                char why[400];
                snprintf(why, sizeof why, "%s: %s", wire_status_str(st), err);
                reject(s, (int)st, why);
                continue;
            }
            got += accept_forward(s, step);
        }
    }
    if (s->stops != 0 && s->stops != s->W)
        job_abort(s->job, "%d of %d workers sent STOP for step %lld, the others its data: the workers disagree "
                  "on when to stop (a bug)", s->stops, s->W, (long long)step);
    return s->stops == s->W;
}

static void reply_step(Server *s, int64_t step) {
    for (int w = 0; w < s->W; w++) {
        WireHeader h = {.type = WIRE_GRADIENT, .token = s->job->token, .step = (uint64_t)step,
                        .sender = (uint32_t)s->job->role_rank, .rows = (uint32_t)s->B, .dim = (uint32_t)s->D,
                        .flags = stop_request_signal() ? WIRE_FLAG_STOP_REQUESTED : 0};
        char err[256];
        if (wire_send(s->router, s->identity[w], s->identity_len[w], &h, s->loss + (size_t)w * s->B,
                      (size_t)s->B * sizeof(float), s->dx + (size_t)w * s->B * s->D,
                      (size_t)s->B * s->D * sizeof(float), err, sizeof err) != 0) {
            char who[160];
            job_describe_rank(s->job, s->job->worker_world_ranks[w], who, sizeof who);
            job_abort(s->job, "cannot send step %lld gradients to %s: %s", (long long)step, who, err);
        }
    }
}

static void save_checkpoint(Server *s, int64_t done) {
    char dir[CKPT_PATH_MAX], path[CKPT_PATH_MAX], err[1024];
    run_checkpoint_dir(s->job, s->cfg, done, dir, sizeof dir);
    if (ckpt_classifier_path(path, sizeof path, dir, s->job->role_rank) != 0 ||
        ckpt_classifier_write(path, s->shard.start, s->shard.rows, s->shard.dim, s->shard.weight, s->shard.momentum,
                              err, sizeof err) != 0)
        job_abort(s->job, "checkpoint of step %lld: %s", (long long)done, err);
    run_checkpoint_finish(s->job, s->cfg, done, dir);
}

void server_run(Server *s) {
    char what[128];
    for (int64_t step = s->start_step; step < run_end_step(s->cfg); step++) {
        if (gather_step(s, step)) {
            /* The workers stop after `step` steps; a due checkpoint was saved already. */
            if (s->cfg->output_dir[0] && !run_checkpoint_due(s->cfg, step)) save_checkpoint(s, step);
            s->stopped_at = step;
            break;
        }
        margin_set_step(&s->margin, s->cfg, step);
        classifier_select(&s->shard, s->labels, s->N, step);
        classifier_forward(&s->shard, s->x, s->labels, s->N, &s->margin);
        memcpy(s->combined, s->shard.stats, (size_t)s->N * sizeof(SoftmaxStats));
        if (s->job->n_servers > 1) {
            MPI_Request req;
            MPI_Iallreduce(MPI_IN_PLACE, s->combined, s->N, s->stats_type, s->stats_op,
                           s->job->role_comm, &req);
            snprintf(what, sizeof what, "the other servers' softmax statistics of step %lld", (long long)step);
            job_wait(s->job, &req, what);
        }
        classifier_backward(&s->shard, s->dx, s->combined, s->labels, &s->margin);
        margin_loss(s->loss, s->combined, s->N);
        reply_step(s, step);
        /* The update runs while the workers do their backward pass. */
        classifier_sgd_step(&s->shard, lr_at(&s->schedule, step), s->cfg->momentum, s->cfg->weight_decay);
        if (run_checkpoint_due(s->cfg, step + 1)) save_checkpoint(s, step + 1);
    }
    if (s->rejected) {
        char by_kind[1024] = "";
        for (int k = 0, n = 0; k < REJECT_KINDS; k++) {
            if (!s->rejected_by[k]) continue;
            size_t used = strlen(by_kind);
            snprintf(by_kind + used, sizeof by_kind - used, "%s%s %llu", n++ ? ", " : "", reject_kind_str(k),
                     (unsigned long long)s->rejected_by[k]);
        }
        log_warn("%llu messages rejected during the run (%s)", (unsigned long long)s->rejected, by_kind);
    }
}

int server_write_weights(const Server *s, char *err, size_t errlen) {
    if (!s->cfg->output_dir[0] || run_end_step(s->cfg) != s->cfg->steps || s->stopped_at) return 0;
    if (mkdir(s->cfg->output_dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create output_dir '%s': %s", s->cfg->output_dir, strerror(errno));
        return -1;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/classifier.%d.bin", s->cfg->output_dir, s->job->role_rank);
    int64_t meta[4] = {s->shard.start, s->shard.rows, s->shard.dim, 0};
    return dump_write(path, "classifier", meta, s->shard.weight, (size_t)s->shard.rows * s->shard.dim,
                      err, errlen);
}
