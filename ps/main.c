/* main.c -- arcface-ps: a parameter server holding one shard of the
 * margin-softmax classifier. Launched with the workers as one MPMD job:
 *     mpirun -np P arcface-ps CONFIG [key=value ...] : -np W arcface-worker CONFIG [...] */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "job.h"
#include "log.h"
#include "server.h"
#include "stop_request.h"
#include "train_setup.h"

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        print_usage(stdout);
        return 0;
    }
    Job job;
    job_init(&job, &argc, &argv, 1, 120.0);
    stop_request_install();
    TrainConfig cfg;
    char err[1024];
    if (config_from_args(&cfg, argc, argv, err, sizeof err) != 0) job_abort(&job, "config: %s", err);
    job.timeout = cfg.step_timeout;
    blas_setup(cfg.threads, job.role_rank == 0);

    Server server;
    server_init(&server, &job, &cfg);
    server_run(&server);
    if (server_write_weights(&server, err, sizeof err) != 0) job_abort(&job, "%s", err);
    server_destroy(&server);
    job_finalize(&job);
    return 0;
}
