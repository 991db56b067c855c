/* test_wire.c -- CRC32C vectors, and the wire protocol over real ZeroMQ
 * sockets: FORWARD and GRADIENT round trips, then every kind of bad message
 * from a raw client is rejected with the right status while the message after
 * it is still received intact. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "arcface.pb-c.h"
#include "check.h"
#include "crc32c.h"
#include "log.h"
#include "rng.h"
#include "testutil.h"
#include "wire.h"

#define POLL_MS 2000 /* every receive of the test waits at most this long */
#define DIM 8
#define MAX_ROWS 16
#define NUM_CLASSES 100
#define TOKEN 0x5EC2E7C0FFEE1234ull

static const WireLimits LIM = {
    .token = TOKEN, .dim = DIM, .max_rows = MAX_ROWS, .num_classes = NUM_CLASSES,
    .max_message_bytes = 4096,
};

/* ---- CRC32C -------------------------------------------------------------- */

static void test_crc32c(void) {
    EXPECT(crc32c_update(0, "123456789", 9) == 0xE3069283u, "got 0x%08x",
           crc32c_update(0, "123456789", 9));
    EXPECT(crc32c_update_table(0, "123456789", 9) == 0xE3069283u, "got 0x%08x",
           crc32c_update_table(0, "123456789", 9));
    EXPECT(crc32c_update(0, NULL, 0) == 0, "empty input");
    /* RFC 3720 (iSCSI) B.4 vectors. */
    uint8_t buf[32];
    memset(buf, 0, 32);
    EXPECT(crc32c_update(0, buf, 32) == 0x8A9136AAu, "32 zeros: 0x%08x", crc32c_update(0, buf, 32));
    memset(buf, 0xFF, 32);
    EXPECT(crc32c_update(0, buf, 32) == 0x62A8AB43u, "32 ones: 0x%08x", crc32c_update(0, buf, 32));
    for (int i = 0; i < 32; i++) buf[i] = (uint8_t)i;
    EXPECT(crc32c_update(0, buf, 32) == 0x46DD794Eu, "incrementing: 0x%08x",
           crc32c_update(0, buf, 32));
    for (int i = 0; i < 32; i++) buf[i] = (uint8_t)(31 - i);
    EXPECT(crc32c_update(0, buf, 32) == 0x113FDB5Cu, "decrementing: 0x%08x",
           crc32c_update(0, buf, 32));

    /* Hardware path against the table, at every alignment and many lengths,
     * and incremental updates split at every point equal the one-shot value. */
    enum { N = 1000 };
    uint8_t data[N + 8];
    for (int i = 0; i < N + 8; i++) data[i] = (uint8_t)(rng_hash4(7, (uint64_t)i, 0, 0) >> 13);
    int bad = 0;
    for (int off = 0; off < 8; off++)
        for (int n = 0; n <= N; n += (n < 70 ? 1 : 37))
            bad += crc32c_update(0, data + off, (size_t)n) !=
                   crc32c_update_table(0, data + off, (size_t)n);
    EXPECT(bad == 0, "%d hardware/table mismatches", bad);
    uint32_t whole = crc32c_update(0, data, N);
    bad = 0;
    for (int cut = 0; cut <= N; cut += 7) {
        bad += crc32c_update(crc32c_update(0, data, (size_t)cut), data + cut, (size_t)(N - cut)) !=
               whole;
        bad += crc32c_update_table(crc32c_update_table(0, data, (size_t)cut), data + cut,
                                   (size_t)(N - cut)) != whole;
    }
    EXPECT(bad == 0, "%d incremental mismatches", bad);
    fprintf(stderr, "crc32c: sse4.2 path %s\n", crc32c_hw_available() ? "used" : "unavailable");
}

/* ---- helpers -------------------------------------------------------------- */

/* Waits at most POLL_MS for a message, then receives it without blocking. */
static WireStatus recv_within(void *sock, int router, WireMessage *msg, const WireLimits *lim,
                              char *err, size_t errlen) {
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, POLL_MS);
    CHECK(rc >= 0, "zmq_poll: %s", zmq_strerror(zmq_errno()));
    if (rc == 0) {
        snprintf(err, errlen, "no message within %d ms", POLL_MS);
        return WIRE_AGAIN;
    }
    return wire_recv(sock, router, msg, lim, ZMQ_DONTWAIT, err, errlen);
}

/* 1 when nothing arrives on sock within ms. */
static int nothing_within(void *sock, int ms) {
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, ms);
    CHECK(rc >= 0, "zmq_poll: %s", zmq_strerror(zmq_errno()));
    return rc == 0;
}

/* A well-formed FORWARD payload whose content depends on seed. */
typedef struct {
    WireHeader h;
    int64_t labels[MAX_ROWS + 1];
    float x[(MAX_ROWS + 1) * DIM];
} Forward;

static void make_forward(Forward *f, uint32_t rows, uint64_t step, uint64_t seed) {
    memset(f, 0, sizeof *f);
    f->h = (WireHeader){.type = WIRE_FORWARD, .token = TOKEN, .step = step, .sender = 3,
                        .rows = rows, .dim = DIM};
    for (uint32_t i = 0; i < rows; i++)
        f->labels[i] = (int64_t)(rng_hash4(seed, i, 1, 0) % NUM_CLASSES);
    test_fill_uniform(f->x, (size_t)rows * DIM, -2, 2, seed);
}

static size_t labels_bytes(const Forward *f) { return f->h.rows * sizeof(int64_t); }
static size_t x_bytes(const Forward *f) { return (size_t)f->h.rows * DIM * sizeof(float); }

/* Checks that msg holds exactly f. */
static void expect_forward(const WireMessage *msg, const Forward *f, const char *what) {
    EXPECT(msg->header.type == WIRE_FORWARD && msg->header.token == TOKEN &&
               msg->header.step == f->h.step && msg->header.sender == f->h.sender &&
               msg->header.rows == f->h.rows && msg->header.dim == DIM,
           "%s: header type %u step %llu sender %u rows %u dim %u", what, msg->header.type,
           (unsigned long long)msg->header.step, msg->header.sender, msg->header.rows,
           msg->header.dim);
    EXPECT(msg->frame_bytes[0] == labels_bytes(f) && msg->frame_bytes[1] == x_bytes(f),
           "%s: frame bytes %zu %zu", what, msg->frame_bytes[0], msg->frame_bytes[1]);
    EXPECT(memcmp(msg->frame[0], f->labels, labels_bytes(f)) == 0, "%s: labels differ", what);
    EXPECT(memcmp(msg->frame[1], f->x, x_bytes(f)) == 0, "%s: embeddings differ", what);
}

/* Packs a header frame; pb starts as the correct header of f. */
static Arcface__Header header_of(const Forward *f) {
    Arcface__Header pb = ARCFACE__HEADER__INIT;
    pb.version = WIRE_VERSION;
    pb.type = ARCFACE__MSG_TYPE__MSG_FORWARD;
    pb.token = f->h.token;
    pb.step = f->h.step;
    pb.sender = f->h.sender;
    pb.rows = f->h.rows;
    pb.dim = f->h.dim;
    pb.dtype = ARCFACE__DTYPE__DTYPE_F32;
    pb.checksum = crc32c_update(crc32c_update(0, f->labels, labels_bytes(f)), f->x, x_bytes(f));
    return pb;
}

static size_t pack(const Arcface__Header *pb, uint8_t *out, size_t cap) {
    size_t n = arcface__header__get_packed_size(pb);
    CHECK(n <= cap, "header of %zu bytes", n);
    CHECK(arcface__header__pack(pb, out) == n, "pack");
    return n;
}

typedef struct {
    const void *data;
    size_t len;
} Frame;

/* Sends hand-built frames as one multipart message. */
static void raw_send(void *sock, const Frame *frames, int n) {
    for (int i = 0; i < n; i++)
        CHECK(zmq_send(sock, frames[i].data, frames[i].len, i + 1 < n ? ZMQ_SNDMORE : 0) >= 0,
              "zmq_send: %s", zmq_strerror(zmq_errno()));
}

/* Sends f's frames with header pb (possibly corrupted by the caller). */
static void raw_send_forward(void *sock, const Arcface__Header *pb, const Forward *f) {
    uint8_t hdr[WIRE_MAX_HEADER_BYTES];
    size_t hn = pack(pb, hdr, sizeof hdr);
    Frame fr[3] = {{hdr, hn}, {f->labels, labels_bytes(f)}, {f->x, x_bytes(f)}};
    raw_send(sock, fr, 3);
}

/* ---- round trips ----------------------------------------------------------- */

static void test_round_trips(void *router, void *dealer, WireMessage *rmsg, WireMessage *dmsg) {
    char err[512];
    for (uint32_t rows = 1; rows <= MAX_ROWS; rows += MAX_ROWS - 1) {
        Forward f;
        make_forward(&f, rows, 100 + rows, rows);
        EXPECT(wire_send(dealer, NULL, 0, &f.h, f.labels, labels_bytes(&f), f.x, x_bytes(&f), err,
                         sizeof err) == 0,
               "wire_send forward: %s", err);
        WireStatus st = recv_within(router, 1, rmsg, &LIM, err, sizeof err);
        EXPECT(st == WIRE_OK, "forward rows %u: %s: %s", rows, wire_status_str(st), err);
        expect_forward(rmsg, &f, "forward round trip");
        EXPECT(rmsg->identity_len > 0, "router saw no identity");

        /* The reply goes back through the identity the ROUTER reported. */
        float loss[MAX_ROWS], dx[MAX_ROWS * DIM];
        test_fill_uniform(loss, rows, 0, 30, 50 + rows);
        test_fill_uniform(dx, (size_t)rows * DIM, -1e-3f, 1e-3f, 60 + rows);
        dx[0] = -0.0f;
        dx[1] = 1e-40f; /* subnormals are finite and pass */
        /* The last reply also carries a flag. */
        uint32_t flags = rows == MAX_ROWS ? WIRE_FLAG_STOP_REQUESTED : 0;
        WireHeader g = {.type = WIRE_GRADIENT, .token = TOKEN, .step = f.h.step, .sender = 0,
                        .rows = rows, .dim = DIM, .flags = flags};
        EXPECT(wire_send(router, rmsg->identity, rmsg->identity_len, &g, loss, rows * 4u, dx,
                         (size_t)rows * DIM * 4, err, sizeof err) == 0,
               "wire_send gradient: %s", err);
        st = recv_within(dealer, 0, dmsg, &LIM, err, sizeof err);
        EXPECT(st == WIRE_OK, "gradient rows %u: %s: %s", rows, wire_status_str(st), err);
        EXPECT(dmsg->header.type == WIRE_GRADIENT && dmsg->header.step == f.h.step &&
                   dmsg->header.rows == rows && dmsg->header.sender == 0 && dmsg->header.flags == flags,
               "gradient header");
        EXPECT(dmsg->frame_bytes[0] == rows * 4u && memcmp(dmsg->frame[0], loss, rows * 4u) == 0,
               "loss differs");
        EXPECT(dmsg->frame_bytes[1] == rows * DIM * 4u &&
                   memcmp(dmsg->frame[1], dx, rows * DIM * 4u) == 0,
               "dx differs");
    }
    /* A STOP: no rows, empty payload frames, the step it names. */
    WireHeader stop = {.type = WIRE_STOP, .token = TOKEN, .step = 77, .sender = 3, .rows = 0, .dim = DIM};
    EXPECT(wire_send(dealer, NULL, 0, &stop, NULL, 0, NULL, 0, err, sizeof err) == 0, "wire_send stop: %s", err);
    WireStatus st = recv_within(router, 1, rmsg, &LIM, err, sizeof err);
    EXPECT(st == WIRE_OK && rmsg->header.type == WIRE_STOP && rmsg->header.step == 77 && rmsg->header.rows == 0 &&
               rmsg->frame_bytes[0] == 0 && rmsg->frame_bytes[1] == 0,
           "stop round trip: %s (%s)", wire_status_str(st), err);
    /* Nothing waiting: WIRE_AGAIN without consuming anything. */
    st = wire_recv(router, 1, rmsg, &LIM, ZMQ_DONTWAIT, err, sizeof err);
    EXPECT(st == WIRE_AGAIN, "empty socket gave %s", wire_status_str(st));
}

/* ---- bad messages ---------------------------------------------------------- */

typedef enum {
    BAD_TOKEN, BAD_VERSION, BAD_GARBAGE_HEADER, BAD_EMPTY_HEADER, BAD_TRUNCATED_HEADER,
    BAD_HUGE_HEADER, BAD_ONE_FRAME, BAD_TWO_FRAMES, BAD_EXTRA_FRAME, BAD_MANY_EXTRA,
    BAD_FRAME1_SHORT, BAD_FRAME0_F32, BAD_ROWS_OVER, BAD_ROWS_ZERO, BAD_DIM, BAD_TYPE, BAD_DTYPE,
    BAD_CHECKSUM, BAD_LABEL_NEG, BAD_LABEL_HIGH, BAD_NAN, BAD_INF, BAD_NEG_INF, BAD_TOTAL_SIZE,
    BAD_FLAGS, BAD_STOP_ROWS, BAD_COUNT
} BadKind;

static const struct {
    const char *name;
    WireStatus expect;
    const char *err_contains;
} BAD[BAD_COUNT] = {
    [BAD_TOKEN] = {"wrong token", WIRE_ERR_TOKEN, "0x5ec2e7c0ffee1235"},
    [BAD_VERSION] = {"wrong version", WIRE_ERR_VERSION, "version 2"},
    [BAD_GARBAGE_HEADER] = {"garbage header", WIRE_ERR_HEADER, "does not unpack"},
    [BAD_EMPTY_HEADER] = {"empty header", WIRE_ERR_HEADER, "header frame has 0 bytes"},
    [BAD_TRUNCATED_HEADER] = {"truncated header", WIRE_ERR_HEADER, "does not unpack"},
    [BAD_HUGE_HEADER] = {"oversized header", WIRE_ERR_HEADER, "header frame has 300 bytes"},
    [BAD_ONE_FRAME] = {"header only", WIRE_ERR_FRAMES, "has 2 frames, expected 4"},
    [BAD_TWO_FRAMES] = {"missing payload 1", WIRE_ERR_FRAMES, "has 3 frames, expected 4"},
    [BAD_EXTRA_FRAME] = {"extra frame", WIRE_ERR_FRAMES, "has 5 frames, expected 4"},
    [BAD_MANY_EXTRA] = {"ten extra frames", WIRE_ERR_FRAMES, "has 14 frames, expected 4"},
    [BAD_FRAME1_SHORT] = {"payload 1 short", WIRE_ERR_SIZE,
                          "frame 1 has 220 bytes, header implies 224"},
    [BAD_FRAME0_F32] = {"labels as int32", WIRE_ERR_SIZE,
                        "frame 0 has 28 bytes, header implies 56"},
    [BAD_ROWS_OVER] = {"rows over max_rows", WIRE_ERR_LIMIT, "17 rows from rank 3, limit is 16"},
    [BAD_ROWS_ZERO] = {"zero rows", WIRE_ERR_SIZE, "0 rows"},
    [BAD_DIM] = {"dim mismatch", WIRE_ERR_SIZE, "dim 4 from rank 3, expected 8"},
    [BAD_TYPE] = {"unknown type", WIRE_ERR_TYPE, "unknown message type 7"},
    [BAD_DTYPE] = {"unknown dtype", WIRE_ERR_TYPE, "unsupported dtype 2"},
    [BAD_CHECKSUM] = {"checksum mismatch", WIRE_ERR_CHECKSUM, "checksum"},
    [BAD_LABEL_NEG] = {"negative label", WIRE_ERR_LABEL, "label -1 of row 2"},
    [BAD_LABEL_HIGH] = {"label == num_classes", WIRE_ERR_LABEL,
                        "label 100 of row 6 from rank 3 is outside [0, 100)"},
    [BAD_NAN] = {"NaN embedding", WIRE_ERR_NONFINITE, "first at row 1 column 3"},
    [BAD_INF] = {"Inf embedding", WIRE_ERR_NONFINITE, "1 non-finite embedding"},
    [BAD_NEG_INF] = {"-Inf embedding", WIRE_ERR_NONFINITE, "first at row 6 column 7"},
    [BAD_TOTAL_SIZE] = {"over max_message_bytes", WIRE_ERR_LIMIT, "exceeds the limit of 300"},
    [BAD_FLAGS] = {"unknown flag bit", WIRE_ERR_TYPE, "unknown flags 0x4 from rank 3"},
    [BAD_STOP_ROWS] = {"stop with rows", WIRE_ERR_SIZE, "a stop message from rank 3 has 7 rows"},
};

/* Sends bad message `kind` from the raw DEALER. */
static void send_bad(void *raw, BadKind kind) {
    Forward f;
    make_forward(&f, 7, 900 + kind, 1000 + kind);
    Arcface__Header pb = header_of(&f);
    uint8_t hdr[512];
    size_t hn;
    switch (kind) {
    case BAD_TOKEN: pb.token = TOKEN + 1; break;
    case BAD_VERSION: pb.version = WIRE_VERSION + 1; break;
    case BAD_GARBAGE_HEADER: {
        memset(hdr, 0xFF, 40);
        Frame fr[3] = {{hdr, 40}, {f.labels, labels_bytes(&f)}, {f.x, x_bytes(&f)}};
        raw_send(raw, fr, 3);
        return;
    }
    case BAD_EMPTY_HEADER: {
        Frame fr[3] = {{hdr, 0}, {f.labels, labels_bytes(&f)}, {f.x, x_bytes(&f)}};
        raw_send(raw, fr, 3);
        return;
    }
    case BAD_TRUNCATED_HEADER: /* the checksum, a required field, is cut off */
        hn = pack(&pb, hdr, sizeof hdr);
        {
            Frame fr[3] = {{hdr, hn - 5}, {f.labels, labels_bytes(&f)}, {f.x, x_bytes(&f)}};
            raw_send(raw, fr, 3);
        }
        return;
    case BAD_HUGE_HEADER:
        memset(hdr, 0, 300);
        {
            Frame fr[3] = {{hdr, 300}, {f.labels, labels_bytes(&f)}, {f.x, x_bytes(&f)}};
            raw_send(raw, fr, 3);
        }
        return;
    case BAD_ONE_FRAME:
    case BAD_TWO_FRAMES:
    case BAD_EXTRA_FRAME:
    case BAD_MANY_EXTRA: {
        hn = pack(&pb, hdr, sizeof hdr);
        Frame fr[13] = {{hdr, hn}, {f.labels, labels_bytes(&f)}, {f.x, x_bytes(&f)}};
        for (int i = 3; i < 13; i++) fr[i] = (Frame){f.x, 12};
        int n = kind == BAD_ONE_FRAME ? 1 : kind == BAD_TWO_FRAMES ? 2
                : kind == BAD_EXTRA_FRAME ? 4 : 13;
        raw_send(raw, fr, n);
        return;
    }
    case BAD_FRAME1_SHORT: {
        hn = pack(&pb, hdr, sizeof hdr);
        Frame fr[3] = {{hdr, hn}, {f.labels, labels_bytes(&f)}, {f.x, x_bytes(&f) - 4}};
        raw_send(raw, fr, 3);
        return;
    }
    case BAD_FRAME0_F32: {
        int32_t small[7];
        for (int i = 0; i < 7; i++) small[i] = (int32_t)f.labels[i];
        hn = pack(&pb, hdr, sizeof hdr);
        Frame fr[3] = {{hdr, hn}, {small, sizeof small}, {f.x, x_bytes(&f)}};
        raw_send(raw, fr, 3);
        return;
    }
    case BAD_ROWS_OVER: /* frames sized consistently for 17 rows */
        make_forward(&f, MAX_ROWS + 1, 900 + kind, 1000 + kind);
        pb = header_of(&f);
        break;
    case BAD_ROWS_ZERO: {
        pb.rows = 0;
        pb.checksum = 0;
        hn = pack(&pb, hdr, sizeof hdr);
        Frame fr[3] = {{hdr, hn}, {f.labels, 0}, {f.x, 0}};
        raw_send(raw, fr, 3);
        return;
    }
    case BAD_DIM: pb.dim = DIM / 2; pb.rows = 14; break; /* same byte count, other shape */
    case BAD_TYPE: pb.type = (Arcface__MsgType)7; break;
    case BAD_DTYPE: pb.dtype = (Arcface__Dtype)2; break;
    case BAD_CHECKSUM: f.x[5] = nextafterf(f.x[5], 10.0f); break; /* one bit, header unchanged */
    case BAD_LABEL_NEG: f.labels[2] = -1; pb = header_of(&f); break;
    case BAD_LABEL_HIGH: f.labels[6] = NUM_CLASSES; pb = header_of(&f); break;
    case BAD_NAN: f.x[1 * DIM + 3] = NAN; pb = header_of(&f); break;
    case BAD_INF: f.x[0] = INFINITY; pb = header_of(&f); break;
    case BAD_NEG_INF: f.x[6 * DIM + 7] = -INFINITY; pb = header_of(&f); break;
    case BAD_TOTAL_SIZE: /* received with max_message_bytes 300; this one is ~290 + header */
        break;
    case BAD_FLAGS: pb.has_flags = 1; pb.flags = WIRE_FLAG_STOP_REQUESTED | 4u; break;
    case BAD_STOP_ROWS: pb.type = ARCFACE__MSG_TYPE__MSG_STOP; break;
    case BAD_COUNT: break;
    }
    raw_send_forward(raw, &pb, &f);
}

static void test_bad_messages(void *router, void *raw, WireMessage *rmsg) {
    char err[512];
    WireLimits small = LIM;
    small.max_message_bytes = 300;
    for (int k = 0; k < BAD_COUNT; k++) {
        const WireLimits *lim = k == BAD_TOTAL_SIZE ? &small : &LIM;
        /* Known payload in the buffers: a rejected message must leave it alone. */
        memset(rmsg->frame[1], 0xAB, rmsg->frame_capacity[1]);
        send_bad(raw, (BadKind)k);
        err[0] = '\0';
        WireStatus st = recv_within(router, 1, rmsg, lim, err, sizeof err);
        EXPECT(st == BAD[k].expect, "%s: got %s (%s), expected %s", BAD[k].name,
               wire_status_str(st), err, wire_status_str(BAD[k].expect));
        EXPECT(strstr(err, BAD[k].err_contains) != NULL, "%s: err '%s' lacks '%s'", BAD[k].name,
               err, BAD[k].err_contains);
        EXPECT(((uint8_t *)rmsg->frame[1])[0] == 0xAB &&
                   ((uint8_t *)rmsg->frame[1])[rmsg->frame_capacity[1] - 1] == 0xAB,
               "%s: rejected message was written into the buffer", BAD[k].name);
        EXPECT(rmsg->identity_len > 0, "%s: no identity for logging", BAD[k].name);
        if (st >= WIRE_ERR_TOKEN && k != BAD_TOKEN)
            EXPECT(rmsg->header.sender == 3 && rmsg->header.step == 900u + (unsigned)k,
                   "%s: header for logging says sender %u step %llu", BAD[k].name,
                   rmsg->header.sender, (unsigned long long)rmsg->header.step);

        /* The next good message is received intact. */
        Forward good;
        make_forward(&good, 1 + (uint32_t)k % 3, 5000 + k, 7000 + k);
        Arcface__Header pb = header_of(&good);
        raw_send_forward(raw, &pb, &good);
        st = recv_within(router, 1, rmsg, lim, err, sizeof err);
        EXPECT(st == WIRE_OK, "good message after %s: %s (%s)", BAD[k].name, wire_status_str(st),
               err);
        expect_forward(rmsg, &good, BAD[k].name);
    }
    EXPECT(nothing_within(router, 50), "stray message left on the router");
}

/* A frame over ZMQ_MAXMSGSIZE: ZeroMQ drops that connection before wire_recv
 * sees anything; the ROUTER stays healthy and the peer's next message (after
 * its automatic reconnect) arrives. */
static void test_maxmsgsize(void *router, void *raw, WireMessage *rmsg) {
    char err[512];
    size_t big = LIM.max_message_bytes + 1;
    uint8_t *junk = calloc(big, 1);
    CHECK(junk, "calloc");
    Frame fr[3] = {{junk, 10}, {junk, 8}, {junk, big}};
    raw_send(raw, fr, 3);
    free(junk);
    EXPECT(nothing_within(router, 300), "an over-ZMQ_MAXMSGSIZE frame was delivered");
    Forward good;
    make_forward(&good, 4, 6000, 8000);
    Arcface__Header pb = header_of(&good);
    raw_send_forward(raw, &pb, &good);
    WireStatus st = recv_within(router, 1, rmsg, &LIM, err, sizeof err);
    EXPECT(st == WIRE_OK, "good message after an oversized frame: %s (%s)", wire_status_str(st),
           err);
    expect_forward(rmsg, &good, "after oversized frame");
}

/* Bad GRADIENT messages on the worker's DEALER, sent raw by the ROUTER. */
static void test_bad_gradients(void *router, const uint8_t *identity, size_t idlen, void *dealer,
                               WireMessage *dmsg) {
    char err[512];
    enum { ROWS = 5 };
    float loss[ROWS], dx[ROWS * DIM];
    for (int bad = 0; bad < 3; bad++) {
        test_fill_uniform(loss, ROWS, 0, 10, 90 + bad);
        test_fill_uniform(dx, ROWS * DIM, -1, 1, 91 + bad);
        if (bad == 0) loss[4] = NAN;
        if (bad == 1) dx[2 * DIM + 1] = INFINITY;
        Arcface__Header pb = ARCFACE__HEADER__INIT;
        pb.version = WIRE_VERSION;
        pb.type = ARCFACE__MSG_TYPE__MSG_GRADIENT;
        pb.token = TOKEN;
        pb.step = 77;
        pb.rows = ROWS;
        pb.dim = DIM;
        pb.dtype = ARCFACE__DTYPE__DTYPE_F32;
        pb.checksum = crc32c_update(crc32c_update(0, loss, sizeof loss), dx, sizeof dx);
        uint8_t hdr[WIRE_MAX_HEADER_BYTES];
        size_t hn = pack(&pb, hdr, sizeof hdr);
        /* bad == 2: labels-sized payload 0 (int64) on a GRADIENT */
        double wide[ROWS] = {0};
        Frame fr[4] = {{identity, idlen}, {hdr, hn},
                       bad == 2 ? (Frame){wide, sizeof wide} : (Frame){loss, sizeof loss},
                       {dx, sizeof dx}};
        raw_send(router, fr, 4);
        WireStatus st = recv_within(dealer, 0, dmsg, &LIM, err, sizeof err);
        WireStatus want = bad == 2 ? WIRE_ERR_SIZE : WIRE_ERR_NONFINITE;
        EXPECT(st == want, "gradient case %d: %s (%s)", bad, wire_status_str(st), err);
        const char *needle = bad == 0   ? "non-finite loss values from rank 0, first at row 4"
                             : bad == 1 ? "first at row 2 column 1"
                                        : "frame 0 has 40 bytes, header implies 20";
        EXPECT(strstr(err, needle), "gradient case %d: err '%s' lacks '%s'", bad, err, needle);

        WireHeader g = {.type = WIRE_GRADIENT, .token = TOKEN, .step = 78, .rows = 1, .dim = DIM};
        float l1 = 1.5f, d1[DIM] = {1, 2, 3, 4, 5, 6, 7, 8};
        EXPECT(wire_send(router, identity, idlen, &g, &l1, 4, d1, sizeof d1, err, sizeof err) == 0,
               "%s", err);
        st = recv_within(dealer, 0, dmsg, &LIM, err, sizeof err);
        EXPECT(st == WIRE_OK && dmsg->header.step == 78 &&
                   memcmp(dmsg->frame[1], d1, sizeof d1) == 0,
               "good gradient after case %d: %s (%s)", bad, wire_status_str(st), err);
    }
    /* A DEALER receiving a ROUTER-style message (identity frame in front) sees 4 frames. */
    Frame fr[4] = {{"id", 2}, {"h", 1}, {"a", 1}, {"b", 1}};
    raw_send(router, (Frame[]){{identity, idlen}, fr[0], fr[1], fr[2], fr[3]}, 5);
    WireStatus st = recv_within(dealer, 0, dmsg, &LIM, err, sizeof err);
    EXPECT(st == WIRE_ERR_FRAMES && strstr(err, "has 4 frames, expected 3"), "%s (%s)",
           wire_status_str(st), err);
}

/* Sends that cannot complete fail within the timeout, naming the reason. */
static void test_send_failures(void *ctx, void *router) {
    char err[512];
    Forward f;
    make_forward(&f, 2, 1, 1);
    /* ROUTER_MANDATORY: an unknown peer fails at once instead of vanishing. */
    f.h.type = WIRE_FORWARD;
    err[0] = '\0';
    int rc = wire_send(router, (const uint8_t *)"nobody", 6, &f.h, f.labels, labels_bytes(&f), f.x,
                       x_bytes(&f), err, sizeof err);
    EXPECT(rc == -1 && strstr(err, zmq_strerror(EHOSTUNREACH)), "unknown peer: rc %d, '%s'", rc,
           err);
    /* A DEALER with no connection blocks, then gives up after ZMQ_SNDTIMEO. */
    void *lonely = zmq_socket(ctx, ZMQ_DEALER);
    CHECK(lonely, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    wire_socket_setup(lonely, &LIM, 100, 1000);
    rc = wire_send(lonely, NULL, 0, &f.h, f.labels, labels_bytes(&f), f.x, x_bytes(&f), err,
                   sizeof err);
    EXPECT(rc == -1 && strstr(err, zmq_strerror(EAGAIN)), "unconnected dealer: rc %d, '%s'", rc,
           err);
    /* A blocking receive gives up after ZMQ_RCVTIMEO with WIRE_AGAIN. */
    WireMessage m;
    wire_message_init(&m, &LIM);
    WireStatus st = wire_recv(lonely, 0, &m, &LIM, 0, err, sizeof err);
    EXPECT(st == WIRE_AGAIN, "blocking receive on a silent socket: %s", wire_status_str(st));
    wire_message_destroy(&m);
    CHECK(zmq_close(lonely) == 0, "zmq_close");
}

static void test_status_strings(void) {
    for (int s = WIRE_OK; s <= WIRE_ERR_NONFINITE; s++)
        EXPECT(strcmp(wire_status_str((WireStatus)s), "unknown status") != 0, "status %d", s);
}

int main(void) {
    log_set_role("test", -1);
    test_crc32c();
    test_status_strings();

    void *ctx = zmq_ctx_new();
    CHECK(ctx, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    void *raw = zmq_socket(ctx, ZMQ_DEALER);
    CHECK(router && dealer && raw, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    wire_socket_setup(router, &LIM, POLL_MS, 1000);
    wire_socket_setup(dealer, &LIM, POLL_MS, 1000);
    int zero = 0, timeout = POLL_MS;
    CHECK(zmq_setsockopt(raw, ZMQ_LINGER, &zero, sizeof zero) == 0, "linger");
    CHECK(zmq_setsockopt(raw, ZMQ_SNDTIMEO, &timeout, sizeof timeout) == 0, "sndtimeo");
    CHECK(zmq_bind(router, "tcp://127.0.0.1:*") == 0, "zmq_bind: %s", zmq_strerror(zmq_errno()));
    char endpoint[256];
    size_t len = sizeof endpoint;
    CHECK(zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &len) == 0, "ZMQ_LAST_ENDPOINT");
    CHECK(zmq_connect(dealer, endpoint) == 0, "zmq_connect: %s", zmq_strerror(zmq_errno()));
    CHECK(zmq_connect(raw, endpoint) == 0, "zmq_connect: %s", zmq_strerror(zmq_errno()));

    WireMessage rmsg, dmsg, zeroed;
    memset(&zeroed, 0, sizeof zeroed);
    wire_message_destroy(&zeroed); /* accepts a zeroed struct */
    wire_message_destroy(NULL);
    wire_message_init(&rmsg, &LIM);
    wire_message_init(&dmsg, &LIM);
    EXPECT(rmsg.frame_capacity[0] == MAX_ROWS * 8 && rmsg.frame_capacity[1] == MAX_ROWS * DIM * 4,
           "capacities %zu %zu", rmsg.frame_capacity[0], rmsg.frame_capacity[1]);

    test_round_trips(router, dealer, &rmsg, &dmsg);
    uint8_t dealer_id[WIRE_MAX_IDENTITY];
    size_t dealer_idlen = rmsg.identity_len;
    memcpy(dealer_id, rmsg.identity, dealer_idlen);
    test_bad_messages(router, raw, &rmsg);
    test_bad_gradients(router, dealer_id, dealer_idlen, dealer, &dmsg);
    test_maxmsgsize(router, raw, &rmsg);
    test_send_failures(ctx, router);

    wire_message_destroy(&rmsg);
    wire_message_destroy(&dmsg);
    EXPECT(rmsg.frame[0] == NULL && rmsg.frame_capacity[1] == 0, "destroy zeroes the message");
    CHECK(zmq_close(raw) == 0 && zmq_close(dealer) == 0 && zmq_close(router) == 0, "zmq_close");
    CHECK(zmq_ctx_term(ctx) == 0, "zmq_ctx_term: %s", zmq_strerror(zmq_errno()));
    return test_finish("test_wire");
}
