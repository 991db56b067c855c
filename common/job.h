/* job.h -- the MPI side of a training job: roles, communicators, hosts, the
 * job token, bounded waits and job-wide abort.
 *
 * One MPMD job runs arcface-ps and arcface-worker ranks. Every rank calls
 * job_init with its role; afterwards each knows every rank's role and host,
 * has a communicator of its own role, and shares a random job token. Every MPI
 * wait goes through job_wait, which polls and ends the job with a message
 * naming what it waited for when the timeout passes: no wait is unbounded. */
#ifndef ARCFACE_JOB_H
#define ARCFACE_JOB_H

#include <mpi.h>
#include <stdint.h>

#include "config.h"

#define JOB_HOST_LEN 64
#define JOB_ENDPOINT_LEN 256

typedef struct {
    int world_rank, world_size;
    int is_server;
    int role_rank;             /* rank among servers or among workers */
    int n_servers, n_workers;
    MPI_Comm role_comm;        /* servers' or workers' communicator */
    int *server_world_ranks;   /* (n_servers) */
    int *worker_world_ranks;   /* (n_workers) */
    char (*hosts)[JOB_HOST_LEN]; /* (world_size) */
    uint64_t token;            /* random per job, made by world rank 0 */
    double timeout;            /* seconds for any single wait */
} Job;

/* MPI_Init, then roles, hosts, communicators and token. Installs a fatal
 * handler that calls MPI_Abort so any fatal error ends the whole job. Waits
 * here are bounded by timeout seconds. Fails fatally (the job cannot go on). */
void job_init(Job *job, int *argc, char ***argv, int is_server, double timeout);

/* Waits for req, polling without burning a core; when `timeout` seconds pass,
 * logs "timed out after T s waiting for <what>" and aborts the job. */
void job_wait(const Job *job, MPI_Request *req, const char *what);

/* Logs the message as an error and ends the whole job (MPI_Abort). */
_Noreturn void job_abort(const Job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "rank R (worker 1 on host h)" for messages that name a peer. */
const char *job_describe_rank(const Job *job, int world_rank, char *buf, size_t len);

/* Collective over the world: every rank contributes `mine` (shorter than
 * width bytes) and all (world_size x width bytes) receives them in rank order,
 * each NUL-terminated. `what` names the wait in a timeout message. */
void job_allgather_strings(const Job *job, const char *mine, size_t width, char *all, const char *what);

/* Every server contributes its endpoint, workers an empty string; on return
 * endpoints[p] is server p's (n_servers entries of JOB_ENDPOINT_LEN). */
void job_exchange_endpoints(const Job *job, const char *mine, char (*endpoints)[JOB_ENDPOINT_LEN]);

/* The IPv4 address the servers should bind. The setting is `interface`, or
 * the environment variable ARCFACE_INTERFACE when `interface` is empty: an
 * IPv4 address of this host or an interface name (looked up with getifaddrs).
 * With neither set (auto): 127.0.0.1 when every rank runs on this host, else
 * the first non-loopback IPv4 interface that is up. A loopback address is
 * never given to a worker on another host: that is an error. Logs the address
 * and why it was chosen (config, environment or auto). Returns 0, or -1 with a
 * reason that names this host and what to set in err. */
int job_bind_address(const Job *job, const char *interface, char *addr, size_t len, char *err,
                     size_t errlen);

/* What the whole job must agree on about the training set, taken from worker
 * 0's dataset (other ranks pass anything): num_classes is the classifier's row
 * count (the configured num_classes when set, which must not be smaller than
 * the dataset's identity count), steps_per_epoch the full global batches per
 * epoch. Ends the job on a conflict. */
typedef struct {
    int64_t num_classes, samples, steps_per_epoch;
} JobData;

JobData job_share_data(const Job *job, const TrainConfig *cfg, int64_t dataset_classes, int64_t dataset_samples);

/* Synchronises all ranks (bounded) and calls MPI_Finalize. */
void job_finalize(Job *job);

/* Seconds from a monotonic clock. */
double now_seconds(void);

#endif
