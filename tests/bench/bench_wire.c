/* bench_wire.c -- the cost of CURVE encryption on the worker <-> server path.
 *
 *     bench_wire [rows] [dim] [round_trips]      (default 256 512 200)
 *
 * A server thread (ROUTER) and a worker (DEALER) in one process exchange the
 * step's messages over TCP on 127.0.0.1 -- FORWARD (rows labels and
 * embeddings) out, GRADIENT (rows losses and dX) back -- through wire_send and
 * wire_recv with all their checks, first in plain TCP, then with CURVE as
 * encrypt = curve sets it up (ZAP handler included). Prints the time per
 * round trip and the payload throughput of each. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "check.h"
#include "curve.h"
#include "job.h"
#include "wire.h"

typedef struct {
    void *zctx;
    const char *endpoint;
    WireLimits lim;
    int round_trips;
    CurveKeypair server_kp, worker_kp;
    int curve;
    int ready;
} Bench;

static void *server_thread(void *arg) {
    Bench *b = arg;
    void *router = zmq_socket(b->zctx, ZMQ_ROUTER);
    wire_socket_setup(router, &b->lim, 10000, 1000);
    if (b->curve) curve_server_socket(router, &b->server_kp);
    CHECK(zmq_bind(router, b->endpoint) == 0, "bind: %s", zmq_strerror(zmq_errno()));
    __atomic_store_n(&b->ready, 1, __ATOMIC_RELEASE);
    WireMessage msg;
    wire_message_init(&msg, &b->lim);
    size_t rows = b->lim.max_rows, dim = b->lim.dim;
    float *loss = calloc(rows, sizeof(float)), *dx = calloc(rows * dim, sizeof(float));
    char err[256];
    for (int i = 0; i < b->round_trips; i++) {
        WireStatus st = wire_recv(router, 1, &msg, &b->lim, 0, err, sizeof err);
        CHECK(st == WIRE_OK, "server recv: %s %s", wire_status_str(st), err);
        WireHeader h = {.type = WIRE_GRADIENT, .token = b->lim.token, .step = msg.header.step, .rows = (uint32_t)rows,
                        .dim = (uint32_t)dim};
        CHECK(wire_send(router, msg.identity, msg.identity_len, &h, loss, rows * 4, dx, rows * dim * 4, err,
                        sizeof err) == 0, "server send: %s", err);
    }
    wire_message_destroy(&msg);
    free(loss);
    free(dx);
    zmq_close(router);
    return NULL;
}

/* Seconds per round trip. */
static double run(Bench *b) {
    b->zctx = zmq_ctx_new();
    CurveZap zap = {0};
    char err[256];
    if (b->curve) {
        CHECK(curve_keypair(&b->server_kp, err, sizeof err) == 0 && curve_keypair(&b->worker_kp, err, sizeof err) == 0,
              "%s", err);
        char allowed[1][CURVE_KEY_TEXT];
        memcpy(allowed[0], b->worker_kp.public_key, CURVE_KEY_TEXT);
        CHECK(curve_zap_start(&zap, b->zctx, allowed, 1, err, sizeof err) == 0, "%s", err);
    }
    b->ready = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, server_thread, b) == 0, "pthread_create");
    while (!__atomic_load_n(&b->ready, __ATOMIC_ACQUIRE)) sched_yield();
    void *dealer = zmq_socket(b->zctx, ZMQ_DEALER);
    wire_socket_setup(dealer, &b->lim, 10000, 1000);
    if (b->curve) curve_client_socket(dealer, &b->worker_kp, b->server_kp.public_key);
    CHECK(zmq_connect(dealer, b->endpoint) == 0, "connect: %s", zmq_strerror(zmq_errno()));
    size_t rows = b->lim.max_rows, dim = b->lim.dim;
    int64_t *labels = calloc(rows, sizeof(int64_t));
    float *x = calloc(rows * dim, sizeof(float));
    for (size_t i = 0; i < rows * dim; i++) x[i] = (float)(i % 97) * 0.01f;
    WireMessage msg;
    wire_message_init(&msg, &b->lim);
    double start = 0;
    for (int i = 0; i < b->round_trips; i++) {
        if (i == 1) start = now_seconds(); /* the first includes the handshake */
        WireHeader h = {.type = WIRE_FORWARD, .token = b->lim.token, .step = (uint64_t)i, .rows = (uint32_t)rows,
                        .dim = (uint32_t)dim};
        CHECK(wire_send(dealer, NULL, 0, &h, labels, rows * 8, x, rows * dim * 4, err, sizeof err) == 0, "send: %s",
              err);
        WireStatus st = wire_recv(dealer, 0, &msg, &b->lim, 0, err, sizeof err);
        CHECK(st == WIRE_OK, "worker recv: %s %s", wire_status_str(st), err);
    }
    double per_trip = (now_seconds() - start) / (b->round_trips - 1);
    pthread_join(t, NULL);
    wire_message_destroy(&msg);
    free(labels);
    free(x);
    zmq_close(dealer);
    curve_zap_stop(&zap);
    zmq_ctx_term(b->zctx);
    return per_trip;
}

int main(int argc, char **argv) {
    int rows = argc > 1 ? atoi(argv[1]) : 256, dim = argc > 2 ? atoi(argv[2]) : 512;
    int trips = argc > 3 ? atoi(argv[3]) : 200;
    CHECK(rows > 0 && dim > 0 && trips > 1, "usage: bench_wire [rows] [dim] [round_trips > 1]");
    Bench b = {.endpoint = "tcp://127.0.0.1:47311",
               .lim = {.token = 42, .dim = (uint32_t)dim, .max_rows = (uint32_t)rows, .num_classes = 1 << 30,
                       .max_message_bytes = (size_t)rows * (8 + 4 * (size_t)dim) + 4096},
               .round_trips = trips};
    double bytes = (double)rows * (8 + 4.0 * dim) + (double)rows * (4 + 4.0 * dim);
    printf("round trip = FORWARD %d x %d + GRADIENT back, %.2f MiB of payload, %d trips, TCP on 127.0.0.1\n", rows, dim,
           bytes / (1 << 20), trips);
    double plain = 0, curve = 0;
    for (int c = 0; c < 2; c++) {
        b.curve = c;
        double t = run(&b);
        printf("%-6s %8.3f ms per round trip  %8.1f MiB/s\n", c ? "curve" : "plain", t * 1e3, bytes / t / (1 << 20));
        if (c) curve = t;
        else plain = t;
    }
    printf("CURVE costs %.2fx the plain round trip\n", curve / plain);
    return 0;
}
