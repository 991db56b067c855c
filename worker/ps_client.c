/* ps_client.c -- a worker's side of the wire protocol. */
#include "ps_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "check.h"
#include "log.h"

void ps_client_init(PsClient *c, const Job *job, const TrainConfig *cfg, int64_t num_classes) {
    memset(c, 0, sizeof *c);
    c->job = job;
    c->P = job->n_servers;
    if (c->P > PS_CLIENT_MAX_SERVERS)
        job_abort(job, "%d servers: at most %d are supported", c->P, PS_CLIENT_MAX_SERVERS);
    c->B = cfg->batch_size;
    c->D = cfg->embedding_size;
    c->timeout = cfg->step_timeout;
    c->limits = (WireLimits){.token = job->token, .dim = (uint32_t)c->D, .max_rows = (uint32_t)c->B,
                             .num_classes = num_classes, .max_message_bytes = (size_t)cfg->max_message_bytes};
    wire_message_init(&c->msg, &c->limits);
    c->partials = xcalloc_aligned((size_t)c->P * c->B * c->D, sizeof(float));
    c->loss = xcalloc_aligned((size_t)c->B, sizeof(float));
    c->have = xcalloc_aligned((size_t)c->P, 1);
    c->dealers = xcalloc_aligned((size_t)c->P, sizeof(void *));
    c->zctx = zmq_ctx_new();
    CHECK(c->zctx != NULL, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    CurveKeypair kp;
    char (*keys)[CURVE_KEY_TEXT];
    int curve = curve_job_setup(job, cfg->encrypt, &kp, &keys);
    if (curve) c->server_keys = xcalloc_aligned((size_t)c->P, CURVE_KEY_TEXT);
    c->endpoints = xcalloc_aligned((size_t)c->P, JOB_ENDPOINT_LEN);
    job_exchange_endpoints(job, NULL, c->endpoints);
    char identity[32];
    snprintf(identity, sizeof identity, "worker-%d", job->role_rank);
    for (int p = 0; p < c->P; p++) {
        c->dealers[p] = zmq_socket(c->zctx, ZMQ_DEALER);
        CHECK(c->dealers[p] != NULL, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        wire_socket_setup(c->dealers[p], &c->limits, (int)(cfg->step_timeout * 1000),
                          (int)(cfg->heartbeat_interval * 1000));
        CHECK(zmq_setsockopt(c->dealers[p], ZMQ_ROUTING_ID, identity, strlen(identity)) == 0,
              "ZMQ_ROUTING_ID: %s", zmq_strerror(zmq_errno()));
        if (curve) {
            memcpy(c->server_keys[p], keys[job->server_world_ranks[p]], CURVE_KEY_TEXT);
            curve_client_socket(c->dealers[p], &kp, c->server_keys[p]);
        }
        if (zmq_connect(c->dealers[p], c->endpoints[p]) != 0)
            job_abort(job, "cannot connect to ps %d at '%s': %s", p, c->endpoints[p], zmq_strerror(zmq_errno()));
    }
    explicit_bzero(&kp, sizeof kp);
    free(keys);
}

void ps_client_destroy(PsClient *c) {
    for (int p = 0; c->dealers && p < c->P; p++)
        if (c->dealers[p]) zmq_close(c->dealers[p]);
    if (c->zctx) zmq_ctx_term(c->zctx);
    wire_message_destroy(&c->msg);
    free(c->dealers);
    free(c->endpoints);
    free(c->server_keys);
    free(c->partials);
    free(c->loss);
    free(c->have);
    memset(c, 0, sizeof *c);
}

static void reject(PsClient *c, int p, const char *why) {
    c->rejected++;
    if (c->rejected <= 10 || c->rejected % 1000 == 0)
        log_warn("rejected a message from ps %d: %s", p, why);
}

/* Validates a GRADIENT reply from server p and keeps its payload. Returns 1 when accepted. */
static int accept_reply(PsClient *c, int p, int64_t step) {
    const WireHeader *h = &c->msg.header;
    char why[256];
    if (h->type != WIRE_GRADIENT || h->sender != (uint32_t)p || h->step != (uint64_t)step ||
        h->rows != (uint32_t)c->B || c->have[p]) {
        snprintf(why, sizeof why, "type %u sender %u step %llu rows %u, expected a GRADIENT for step %lld "
                 "with %d rows%s", h->type, h->sender, (unsigned long long)h->step, h->rows,
                 (long long)step, c->B, c->have[p] ? " (duplicate)" : "");
        reject(c, p, why);
        return 0;
    }
    memcpy(c->partials + (size_t)p * c->B * c->D, c->msg.frame[1], (size_t)c->B * c->D * sizeof(float));
    if (p == 0) memcpy(c->loss, c->msg.frame[0], (size_t)c->B * sizeof(float));
    c->have[p] = 1;
    c->stop_requested |= (h->flags & WIRE_FLAG_STOP_REQUESTED) != 0;
    return 1;
}

int ps_client_exchange(PsClient *c, int64_t step, const int64_t *labels, const float *embeddings,
                       float *dx, float *loss) {
    char err[256], who[160];
    for (int p = 0; p < c->P; p++) {
        WireHeader h = {.type = WIRE_FORWARD, .token = c->job->token, .step = (uint64_t)step,
                        .sender = (uint32_t)c->job->role_rank, .rows = (uint32_t)c->B, .dim = (uint32_t)c->D};
        if (wire_send(c->dealers[p], NULL, 0, &h, labels, (size_t)c->B * sizeof(int64_t), embeddings,
                      (size_t)c->B * c->D * sizeof(float), err, sizeof err) != 0)
            job_abort(c->job, "cannot send step %lld to %s: %s", (long long)step,
                      job_describe_rank(c->job, c->job->server_world_ranks[p], who, sizeof who), err);
    }
    memset(c->have, 0, (size_t)c->P);
    c->stop_requested = 0;
    zmq_pollitem_t items[PS_CLIENT_MAX_SERVERS];
    int got = 0;
    double deadline = now_seconds() + c->timeout;
    while (got < c->P) {
        double left = deadline - now_seconds();
        if (left <= 0) {
            int missing = 0;
            while (missing < c->P && c->have[missing]) missing++;
            job_abort(c->job, "no gradients from %s for step %lld within %.0f s (step_timeout)",
                      job_describe_rank(c->job, c->job->server_world_ranks[missing], who, sizeof who),
                      (long long)step, c->timeout);
        }
        for (int p = 0; p < c->P; p++) items[p] = (zmq_pollitem_t){.socket = c->dealers[p], .events = ZMQ_POLLIN};
        int rc = zmq_poll(items, c->P, left > 1.0 ? 1000 : (long)(left * 1000) + 1);
        if (rc < 0) {
            if (zmq_errno() == EINTR) continue;
            job_abort(c->job, "zmq_poll: %s", zmq_strerror(zmq_errno()));
        }
        for (int p = 0; p < c->P && rc > 0; p++) {
            if (!(items[p].revents & ZMQ_POLLIN)) continue;
            for (;;) {
                WireStatus st = wire_recv(c->dealers[p], 0, &c->msg, &c->limits, ZMQ_DONTWAIT, err, sizeof err);
                if (st == WIRE_AGAIN) break;
                if (st != WIRE_OK) {
                    char why[400];
                    snprintf(why, sizeof why, "%s: %s", wire_status_str(st), err);
                    reject(c, p, why);
                    continue;
                }
                got += accept_reply(c, p, step);
            }
        }
    }
    /* Sum in server order, not arrival order, so runs are reproducible. */
    size_t n = (size_t)c->B * c->D;
    memcpy(dx, c->partials, n * sizeof(float));
    for (int p = 1; p < c->P; p++) {
        const float *part = c->partials + (size_t)p * n;
        for (size_t i = 0; i < n; i++) dx[i] += part[i];
    }
    memcpy(loss, c->loss, (size_t)c->B * sizeof(float));
    return c->stop_requested;
}

void ps_client_send_stop(PsClient *c, int64_t done) {
    char err[256], who[160];
    for (int p = 0; p < c->P; p++) {
        WireHeader h = {.type = WIRE_STOP, .token = c->job->token, .step = (uint64_t)done,
                        .sender = (uint32_t)c->job->role_rank, .rows = 0, .dim = (uint32_t)c->D};
        if (wire_send(c->dealers[p], NULL, 0, &h, NULL, 0, NULL, 0, err, sizeof err) != 0)
            job_abort(c->job, "cannot send the stop after step %lld to %s: %s", (long long)done,
                      job_describe_rank(c->job, c->job->server_world_ranks[p], who, sizeof who), err);
    }
}
