/* server.h -- a parameter server: one classifier shard behind a ZeroMQ ROUTER. */
#ifndef ARCFACE_PS_SERVER_H
#define ARCFACE_PS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "classifier.h"
#include "config.h"
#include "curve.h"
#include "job.h"
#include "optim.h"
#include "wire.h"

/* Why a server rejected a message: a WireStatus from wire_recv, or one of
 * the checks the step loop adds. */
enum { REJECT_TYPE = WIRE_ERR_NONFINITE + 1, REJECT_SENDER, REJECT_CONNECTION, REJECT_STEP, REJECT_ROWS,
       REJECT_KINDS };

typedef struct {
    Job *job;
    const TrainConfig *cfg;
    int W, B, N, D;          /* workers, per-worker batch, global batch, embedding size */
    Margin margin;
    LrSchedule schedule;
    ClassifierShard shard;
    void *zctx, *router;
    CurveZap zap;            /* encrypt = curve: admits the job's workers only */
    WireLimits limits;
    WireMessage msg;         /* receive buffer, reused */
    float *x, *dx, *loss;    /* global batch (N, D), partial gradient (N, D), loss (N) */
    int64_t *labels;         /* (N) */
    SoftmaxStats *combined;  /* (N) */
    uint8_t (*identity)[256];/* ZeroMQ routing id of each worker */
    size_t *identity_len;
    uint8_t *have;           /* (W) message of the current step received */
    int stops;               /* workers that sent STOP instead of the current step */
    int64_t stopped_at;      /* the step a stop signal ended the run after, else 0 */
    MPI_Datatype stats_type;
    MPI_Op stats_op;
    uint64_t rejected, rejected_by[REJECT_KINDS];
    int64_t start_step;      /* 0, or the step of the checkpoint resumed */
} Server;

/* Creates the shard, binds the ROUTER and publishes its endpoint to the job.
 * Any failure ends the job with a message. */
void server_init(Server *s, Job *job, const TrainConfig *cfg);
/* Runs the synchronous steps [start_step, run_end_step), saving the shard
 * into every due checkpoint, until the workers send STOP. */
void server_run(Server *s);
/* Writes the shard's rows to output_dir/classifier.<rank>.bin (no-op without
 * output_dir or after a stop). Returns 0 or -1 with the reason in err. */
int server_write_weights(const Server *s, char *err, size_t errlen);
void server_destroy(Server *s);

#endif
