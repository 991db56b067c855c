/* ps_client.h -- a worker's connections to every parameter server: send the
 * step's embeddings and labels to all, collect every partial gradient. */
#ifndef ARCFACE_PS_CLIENT_H
#define ARCFACE_PS_CLIENT_H

#include <stdint.h>

#include "config.h"
#include "curve.h"
#include "job.h"
#include "wire.h"

/* zmq_poll takes one item per server; beyond this many, use fewer, larger servers. */
#define PS_CLIENT_MAX_SERVERS 256

typedef struct {
    const Job *job;
    int P, B, D;
    double timeout;
    void *zctx;
    void **dealers;      /* (P) one DEALER per server */
    char (*endpoints)[JOB_ENDPOINT_LEN]; /* (P) where they connect */
    char (*server_keys)[CURVE_KEY_TEXT];  /* (P) their CURVE public keys; NULL without encryption */
    WireLimits limits;
    WireMessage msg;
    float *partials;     /* (P, B, D) each server's dx, summed in server order */
    float *loss;         /* (B) per-sample loss from server 0 */
    uint8_t *have;       /* (P) */
    int stop_requested;  /* a reply of this step had WIRE_FLAG_STOP_REQUESTED */
    uint64_t rejected;
} PsClient;

/* Collective over the world, where the servers call theirs in server_init:
 * with encrypt = curve makes this worker's keys and learns the servers'
 * (curve_job_setup), then learns the servers' endpoints
 * (job_exchange_endpoints) and connects to each. Failures end the job. */
void ps_client_init(PsClient *c, const Job *job, const TrainConfig *cfg, int64_t num_classes);

/* Sends (step, labels, embeddings) to every server and waits (bounded by the
 * step timeout) for all their replies. dx (B, D) receives the full gradient of
 * the mean global loss with respect to the embeddings; loss (B) the per-sample
 * losses. A silent server ends the job with a message naming it. Returns 1
 * when a server reported a stop signal, else 0. */
int ps_client_exchange(PsClient *c, int64_t step, const int64_t *labels, const float *embeddings,
                       float *dx, float *loss);

/* Tells every server that the job stops after `done` steps (instead of
 * sending step `done`). Failures end the job. */
void ps_client_send_stop(PsClient *c, int64_t done);

void ps_client_destroy(PsClient *c);

#endif
