/* rogue_worker.c -- a worker that attacks the servers it trains with.
 *
 *     mpirun -np P arcface-ps ARGS : -np 1 rogue_worker REPLIES_FILE ATTACK ARGS
 *
 * Joins a training job as its only worker, with the real worker's collective
 * calls, and runs `steps` steps with deterministic embeddings and labels
 * through the real client (worker/ps_client.c), appending every reply (loss
 * and dX of each step) to REPLIES_FILE. With ATTACK = 1 it first sends each
 * server, before every step's real message, one of each kind of bad message
 * the issue lists -- wrong token, wrong version, undecodable or truncated
 * header, missing or extra frames, frame sizes that disagree with the header,
 * rows over the limit, labels out of range, NaN and Inf values, a replayed and
 * a future step, a sender that is not a worker, a spoofed sender on another
 * connection, unknown type and flag bits -- plus, at one step, a flood of
 * 2,500 stray messages and a frame over ZMQ_MAXMSGSIZE. Servers must reject
 * each one and change nothing: the replies of an attacked run equal those of
 * a clean one byte for byte (tests/integration_rogue_peer.sh). Prints the
 * number of rejectable messages it delivered per server. With encrypt = curve
 * its extra connections are CURVE clients with keys of their own, which the
 * servers refuse at the handshake: nothing sent on them arrives. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "arcface.pb-c.h"
#include "check.h"
#include "checkpoint.h"
#include "config.h"
#include "crc32c.h"
#include "job.h"
#include "log.h"
#include "ps_client.h"
#include "rng.h"
#include "run_state.h"

#define FLOOD 2500

typedef struct {
    WireHeader h;
    int64_t *labels; /* (rows) */
    float *x;        /* (rows, D) */
} Forward;

typedef struct {
    void *socket;
    uint64_t token;
    int B, D;
    int64_t num_classes;
    long sent; /* bad messages the server must count */
} Attack;

/* Returns 1 when the message went out, 0 when the socket has no peer to take
 * it within its send timeout (a raw connection whose CURVE handshake the
 * server refused). */
static int send_frames(void *socket, const void *const *data, const size_t *len, int n) {
    for (int i = 0; i < n; i++) {
        if (zmq_send(socket, data[i], len[i], i + 1 < n ? ZMQ_SNDMORE : 0) >= 0) continue;
        CHECK(zmq_errno() == EAGAIN && i == 0, "zmq_send: %s", zmq_strerror(zmq_errno()));
        return 0;
    }
    return 1;
}

static Arcface__Header header_of(const Forward *f) {
    Arcface__Header pb = ARCFACE__HEADER__INIT;
    pb.version = 1;
    pb.type = ARCFACE__MSG_TYPE__MSG_FORWARD;
    pb.token = f->h.token;
    pb.step = f->h.step;
    pb.sender = f->h.sender;
    pb.rows = f->h.rows;
    pb.dim = f->h.dim;
    pb.dtype = ARCFACE__DTYPE__DTYPE_F32;
    pb.checksum = crc32c_update(crc32c_update(0, f->labels, f->h.rows * sizeof(int64_t)), f->x,
                                (size_t)f->h.rows * f->h.dim * sizeof(float));
    return pb;
}

/* Sends header pb and f's payload, frame sizes adjusted by the deltas and
 * frames beyond `frames` left out or (frames > 3) repeated. */
static void send_forward(Attack *a, void *socket, const Arcface__Header *pb, const Forward *f, int frames,
                         long delta1) {
    uint8_t hdr[512];
    size_t hn = arcface__header__get_packed_size(pb);
    CHECK(hn <= sizeof hdr && arcface__header__pack(pb, hdr) == hn, "pack");
    const void *data[5] = {hdr, f->labels, f->x, f->x, f->x};
    size_t len[5] = {hn, f->h.rows * sizeof(int64_t), (size_t)((long)f->h.rows * f->h.dim * 4 + delta1), 16, 16};
    a->sent += send_frames(socket, data, len, frames);
}

/* The real message of `step` for these labels and embeddings. x has
 * X_SPARE zero floats past rows x D: the "payload 1 longer" attack sends them. */
#define X_SPARE 2
static Forward forward_of(const Attack *a, uint64_t step, int rows, const int64_t *labels, const float *x) {
    Forward f = {.h = {.type = WIRE_FORWARD, .token = a->token, .step = step, .sender = 0, .rows = (uint32_t)rows,
                       .dim = (uint32_t)a->D},
                 .labels = xcalloc_aligned((size_t)rows, sizeof(int64_t)),
                 .x = xcalloc_aligned((size_t)rows * a->D + X_SPARE, sizeof(float))};
    memcpy(f.labels, labels, (size_t)(rows < a->B ? rows : a->B) * sizeof(int64_t));
    memcpy(f.x, x, (size_t)(rows < a->B ? rows : a->B) * a->D * sizeof(float));
    return f;
}

static void forward_free(Forward *f) {
    free(f->labels);
    free(f->x);
}

/* One of every bad message for `step`, built from its real content. */
static void attack_step(Attack *a, int64_t step, const int64_t *labels, const float *x, void *spoof) {
    Forward f = forward_of(a, (uint64_t)step, a->B, labels, x);
    Arcface__Header pb;
    uint8_t junk[64];
    memset(junk, 0xA5, sizeof junk);

    pb = header_of(&f), pb.token ^= 1;
    send_forward(a, a->socket, &pb, &f, 3, 0); /* wrong token */
    pb = header_of(&f), pb.version = 2;
    send_forward(a, a->socket, &pb, &f, 3, 0); /* wrong version */
    {
        const void *data[3] = {junk, f.labels, f.x};
        size_t len[3] = {sizeof junk, f.h.rows * sizeof(int64_t), (size_t)f.h.rows * f.h.dim * 4};
        a->sent += send_frames(a->socket, data, len, 3); /* a header that does not decode */
    }
    pb = header_of(&f);
    send_forward(a, a->socket, &pb, &f, 2, 0);  /* payload 1 missing */
    send_forward(a, a->socket, &pb, &f, 5, 0);  /* two extra frames */
    send_forward(a, a->socket, &pb, &f, 3, -4); /* payload 1 shorter than the header says */
    send_forward(a, a->socket, &pb, &f, 3, X_SPARE * 4); /* and longer */
    pb.rows = f.h.rows - 1;                     /* rows disagree with both frames */
    send_forward(a, a->socket, &pb, &f, 3, 0);
    {
        Forward big = forward_of(a, (uint64_t)step, a->B + 1, labels, x);
        pb = header_of(&big);
        send_forward(a, a->socket, &pb, &big, 3, 0); /* more rows than the batch limit */
        forward_free(&big);
    }
    int64_t saved_label = f.labels[1];
    f.labels[1] = a->num_classes;
    pb = header_of(&f);
    send_forward(a, a->socket, &pb, &f, 3, 0); /* label == num_classes */
    f.labels[1] = -3;
    pb = header_of(&f);
    send_forward(a, a->socket, &pb, &f, 3, 0); /* negative label */
    f.labels[1] = saved_label;
    float saved_x = f.x[5];
    f.x[5] = NAN;
    pb = header_of(&f);
    send_forward(a, a->socket, &pb, &f, 3, 0); /* NaN embedding */
    f.x[5] = -INFINITY;
    pb = header_of(&f);
    send_forward(a, a->socket, &pb, &f, 3, 0); /* -Inf embedding */
    f.x[5] = saved_x;
    pb = header_of(&f), pb.checksum ^= 0x100;
    send_forward(a, a->socket, &pb, &f, 3, 0); /* checksum mismatch */
    pb = header_of(&f), pb.step = (uint64_t)step + 1;
    send_forward(a, a->socket, &pb, &f, 3, 0); /* a future step: out of order */
    if (step > 0) {
        pb = header_of(&f), pb.step = (uint64_t)step - 1;
        send_forward(a, a->socket, &pb, &f, 3, 0); /* a replay of the last step */
    }
    pb = header_of(&f), pb.sender = 7;
    send_forward(a, a->socket, &pb, &f, 3, 0); /* a sender that is not a worker */
    pb = header_of(&f);
    send_forward(a, spoof, &pb, &f, 3, 0); /* worker 0's message on another connection */
    pb = header_of(&f), pb.type = (Arcface__MsgType)9;
    send_forward(a, a->socket, &pb, &f, 3, 0); /* unknown type */
    pb = header_of(&f), pb.has_flags = 1, pb.flags = 0x80;
    send_forward(a, a->socket, &pb, &f, 3, 0); /* unknown flag bit */
    pb = header_of(&f), pb.dtype = (Arcface__Dtype)2;
    send_forward(a, a->socket, &pb, &f, 3, 0); /* a dtype this version does not take */
    forward_free(&f);
}

/* Thousands of stray messages (a process of another job), and on a third
 * connection one frame over ZMQ_MAXMSGSIZE, which ZeroMQ answers by dropping
 * that connection (with whatever it still had queued from it): it never
 * reaches the server's code, so it is not counted. */
static void attack_flood(Attack *a, void *spoof, void *oversize, int64_t step, const int64_t *labels,
                         const float *x, size_t max_message_bytes) {
    Forward f = forward_of(a, (uint64_t)step, a->B, labels, x);
    Arcface__Header pb = header_of(&f);
    pb.token = 0x5717a7;
    for (int i = 0; i < FLOOD; i++) {
        long before = a->sent;
        send_forward(a, spoof, &pb, &f, 3, 0);
        if (a->sent == before) break; /* refused at the handshake (CURVE): nothing gets through */
    }
    size_t big = max_message_bytes + 1;
    uint8_t *junk = xcalloc_aligned(big, 1);
    const void *data[3] = {junk, junk, junk};
    size_t len[3] = {16, 8, big};
    (void)send_frames(oversize, data, len, 3); /* never counted: ZeroMQ drops it */
    free(junk);
    forward_free(&f);
}

/* A DEALER outside the protocol. With a server key it is a CURVE client with
 * a keypair of its own, which the server's ZAP handler must refuse. It queues
 * messages only on a connection whose handshake completed (ZMQ_IMMEDIATE), so
 * a send on a refused one times out and is not counted as delivered. */
static void *connect_raw(void *zctx, const char *endpoint, const char *routing_id, const char *server_key) {
    void *socket = zmq_socket(zctx, ZMQ_DEALER);
    CHECK(socket != NULL, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    int zero = 0, one = 1, timeout_ms = server_key ? 300 : 5000;
    CHECK(zmq_setsockopt(socket, ZMQ_LINGER, &zero, sizeof zero) == 0, "ZMQ_LINGER");
    CHECK(zmq_setsockopt(socket, ZMQ_IMMEDIATE, &one, sizeof one) == 0, "ZMQ_IMMEDIATE");
    CHECK(zmq_setsockopt(socket, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms) == 0, "ZMQ_SNDTIMEO");
    if (server_key) {
        CurveKeypair stranger;
        char err[256];
        CHECK(curve_keypair(&stranger, err, sizeof err) == 0, "%s", err);
        curve_client_socket(socket, &stranger, server_key);
    }
    CHECK(zmq_setsockopt(socket, ZMQ_ROUTING_ID, routing_id, strlen(routing_id)) == 0, "ZMQ_ROUTING_ID");
    CHECK(zmq_connect(socket, endpoint) == 0, "connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
    return socket;
}

int main(int argc, char **argv) {
    Job job;
    job_init(&job, &argc, &argv, 0, 120.0);
    if (argc < 3) job_abort(&job, "usage: rogue_worker REPLIES_FILE ATTACK(0|1) [key=value ...]");
    const char *replies_path = argv[1];
    int attack = atoi(argv[2]);
    argv[2] = argv[0];
    TrainConfig cfg;
    char err[1024];
    if (config_from_args(&cfg, argc - 2, argv + 2, err, sizeof err) != 0) job_abort(&job, "config: %s", err);
    if (job.n_workers != 1) job_abort(&job, "run exactly one rogue_worker");
    job.timeout = 2 * cfg.step_timeout;

    /* The real worker's collective calls, in its order. */
    const int64_t classes = 1000, samples = 100000;
    JobData data = job_share_data(&job, &cfg, classes, samples);
    char dir[CKPT_PATH_MAX];
    if (run_agree_resume(&job, &cfg, dir, sizeof dir) != 0) job_abort(&job, "rogue_worker starts fresh only");
    PsClient client;
    ps_client_init(&client, &job, &cfg, data.num_classes);

    /* More connections per server: for spoofed and stray messages, and for
     * the oversized frame that gets its connection dropped. */
    void **spoof = xcalloc_aligned((size_t)job.n_servers, sizeof(void *));
    void **oversize = xcalloc_aligned((size_t)job.n_servers, sizeof(void *));
    for (int p = 0; p < job.n_servers; p++) {
        const char *server_key = client.server_keys ? client.server_keys[p] : NULL;
        spoof[p] = connect_raw(client.zctx, client.endpoints[p], "intruder", server_key);
        oversize[p] = connect_raw(client.zctx, client.endpoints[p], "oversize", server_key);
    }

    const int B = cfg.batch_size, D = cfg.embedding_size;
    int64_t *labels = xcalloc_aligned((size_t)B, sizeof(int64_t));
    float *x = xcalloc_aligned((size_t)B * D, sizeof(float));
    float *dx = xcalloc_aligned((size_t)B * D, sizeof(float));
    float *loss = xcalloc_aligned((size_t)B, sizeof(float));
    FILE *replies = fopen(replies_path, "wb");
    if (!replies) job_abort(&job, "cannot create %s", replies_path);
    long sent = 0;
    for (int64_t step = 0; step < cfg.steps; step++) {
        for (int i = 0; i < B; i++) {
            labels[i] = (int64_t)(rng_hash4(cfg.seed, 1, (uint64_t)step, (uint64_t)i) % (uint64_t)data.num_classes);
            for (int d = 0; d < D; d++) x[(size_t)i * D + d] = rng_normal(rng_hash4(cfg.seed, 2, (uint64_t)step, (uint64_t)(i * D + d)));
        }
        if (attack) {
            for (int p = 0; p < job.n_servers; p++) {
                Attack a = {.socket = client.dealers[p], .token = job.token, .B = B, .D = D,
                            .num_classes = data.num_classes};
                attack_step(&a, step, labels, x, spoof[p]);
                if (step == 2)
                    attack_flood(&a, spoof[p], oversize[p], step, labels, x, (size_t)cfg.max_message_bytes);
                if (p == 0) sent += a.sent;
            }
        }
        if (attack && step == cfg.steps - 1) {
            /* The server drains what is still in flight while it waits for
             * the last step, so that its count at the end is complete. */
            struct timespec ts = {1, 0};
            nanosleep(&ts, NULL);
        }
        ps_client_exchange(&client, step, labels, x, dx, loss);
        CHECK(fwrite(loss, sizeof(float), (size_t)B, replies) == (size_t)B &&
                  fwrite(dx, sizeof(float), (size_t)B * D, replies) == (size_t)B * D,
              "writing %s", replies_path);
    }
    CHECK(fclose(replies) == 0, "closing %s", replies_path);
    if (attack) printf("rogue_worker: sent %ld rejectable messages to each server\n", sent);
    fflush(stdout);
    for (int p = 0; p < job.n_servers; p++) {
        zmq_close(spoof[p]);
        zmq_close(oversize[p]);
    }
    free(spoof);
    free(oversize);
    ps_client_destroy(&client);
    free(labels);
    free(x);
    free(dx);
    free(loss);
    job_finalize(&job);
    return 0;
}
