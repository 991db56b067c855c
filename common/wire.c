/* wire.c -- packs, sends, receives and validates protocol messages (wire.h). */
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "arcface.pb-c.h"
#include "check.h"
#include "crc32c.h"
#include "err.h"

/* Payloads are the machine's own arrays: only a little-endian host with IEEE
 * binary32 floats writes the format the protocol defines. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire format is little-endian");
_Static_assert(sizeof(float) == 4 && sizeof(int64_t) == 8, "payload element sizes");
_Static_assert((int)WIRE_FORWARD == (int)ARCFACE__MSG_TYPE__MSG_FORWARD,
               "WIRE_FORWARD mirrors the proto");
_Static_assert((int)WIRE_GRADIENT == (int)ARCFACE__MSG_TYPE__MSG_GRADIENT,
               "WIRE_GRADIENT mirrors the proto");
_Static_assert((int)WIRE_STOP == (int)ARCFACE__MSG_TYPE__MSG_STOP, "WIRE_STOP mirrors the proto");
_Static_assert((int)WIRE_FLAG_STOP_REQUESTED == (int)ARCFACE__FLAG__FLAG_STOP_REQUESTED,
               "WIRE_FLAG_STOP_REQUESTED mirrors the proto");

/* Frames of a message without the identity: header, payload 0, payload 1. */
#define WIRE_FRAMES 3

const char *wire_status_str(WireStatus status) {
    switch (status) {
    case WIRE_OK: return "ok";
    case WIRE_AGAIN: return "no message";
    case WIRE_ERR_ZMQ: return "zeromq error";
    case WIRE_ERR_FRAMES: return "bad frame count";
    case WIRE_ERR_HEADER: return "bad header";
    case WIRE_ERR_VERSION: return "protocol version mismatch";
    case WIRE_ERR_TOKEN: return "job token mismatch";
    case WIRE_ERR_TYPE: return "unknown message type";
    case WIRE_ERR_SIZE: return "size disagrees with header";
    case WIRE_ERR_LIMIT: return "over configured limit";
    case WIRE_ERR_CHECKSUM: return "checksum mismatch";
    case WIRE_ERR_LABEL: return "label out of range";
    case WIRE_ERR_NONFINITE: return "non-finite value";
    }
    return "unknown status";
}

/* Bytes of payload 0 per row: int64 labels (FORWARD) or float loss (GRADIENT). */
static const char *type_name(uint32_t type) {
    return type == WIRE_FORWARD ? "forward" : type == WIRE_GRADIENT ? "gradient" : "stop";
}

static size_t frame0_row_bytes(uint32_t type) {
    return type == WIRE_FORWARD ? sizeof(int64_t) : sizeof(float);
}

void wire_message_init(WireMessage *msg, const WireLimits *lim) {
    CHECK(msg && lim, "wire_message_init needs a message and limits");
    CHECK(lim->max_rows > 0 && lim->dim > 0, "max_rows %u, dim %u", lim->max_rows, lim->dim);
    memset(msg, 0, sizeof *msg);
    size_t rows = lim->max_rows, dim = lim->dim;
    CHECK(dim <= SIZE_MAX / sizeof(float) / rows, "max_rows %zu x dim %zu overflows", rows, dim);
    msg->frame_capacity[0] = rows * sizeof(int64_t);
    msg->frame_capacity[1] = rows * dim * sizeof(float);
    msg->frame[0] = xcalloc_aligned(msg->frame_capacity[0], 1);
    msg->frame[1] = xcalloc_aligned(msg->frame_capacity[1], 1);
}

void wire_message_destroy(WireMessage *msg) {
    if (!msg) return;
    free(msg->frame[0]);
    free(msg->frame[1]);
    memset(msg, 0, sizeof *msg);
}

static void setopt_int(void *socket, int option, int value, const char *name) {
    CHECK(zmq_setsockopt(socket, option, &value, sizeof value) == 0, "zmq_setsockopt(%s, %d): %s",
          name, value, zmq_strerror(zmq_errno()));
}

void wire_socket_setup(void *socket, const WireLimits *lim, int timeout_ms, int heartbeat_ms) {
    CHECK(socket && lim, "wire_socket_setup needs a socket and limits");
    CHECK(heartbeat_ms > 0, "heartbeat interval %d ms", heartbeat_ms);
    CHECK(timeout_ms > 0, "timeout_ms %d: every wait must be bounded", timeout_ms);
    CHECK(lim->max_message_bytes > 0 && lim->max_message_bytes <= INT64_MAX,
          "max_message_bytes %zu", lim->max_message_bytes);
    setopt_int(socket, ZMQ_LINGER, 0, "ZMQ_LINGER");
    int64_t maxmsg = (int64_t)lim->max_message_bytes;
    CHECK(zmq_setsockopt(socket, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) == 0,
          "zmq_setsockopt(ZMQ_MAXMSGSIZE, %" PRId64 "): %s", maxmsg, zmq_strerror(zmq_errno()));
    setopt_int(socket, ZMQ_SNDTIMEO, timeout_ms, "ZMQ_SNDTIMEO");
    setopt_int(socket, ZMQ_RCVTIMEO, timeout_ms, "ZMQ_RCVTIMEO");
    /* The protocol is lock-step (one request and one reply per peer per step),
     * so a few queued messages per peer is plenty; a bound keeps a stalled
     * peer from growing the queue to HWM x max_message_bytes of memory. */
    setopt_int(socket, ZMQ_SNDHWM, WIRE_HWM, "ZMQ_SNDHWM");
    setopt_int(socket, ZMQ_RCVHWM, WIRE_HWM, "ZMQ_RCVHWM");
    setopt_int(socket, ZMQ_HEARTBEAT_IVL, heartbeat_ms, "ZMQ_HEARTBEAT_IVL");
    setopt_int(socket, ZMQ_HEARTBEAT_TIMEOUT, 3 * heartbeat_ms, "ZMQ_HEARTBEAT_TIMEOUT");
    setopt_int(socket, ZMQ_HEARTBEAT_TTL, 3 * heartbeat_ms, "ZMQ_HEARTBEAT_TTL");
    int type = 0;
    size_t len = sizeof type;
    CHECK(zmq_getsockopt(socket, ZMQ_TYPE, &type, &len) == 0, "zmq_getsockopt(ZMQ_TYPE): %s",
          zmq_strerror(zmq_errno()));
    if (type == ZMQ_ROUTER) setopt_int(socket, ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY");
}

/* ---- sending ------------------------------------------------------------ */

static int send_frame(void *socket, const void *data, size_t bytes, int more, const char *what,
                      char *err, size_t errlen) {
    if (zmq_send(socket, data, bytes, more ? ZMQ_SNDMORE : 0) >= 0) return 0;
    int e = zmq_errno();
    err_set(err, errlen, "sending %s (%zu bytes) failed: %s%s", what, bytes, zmq_strerror(e),
            e == EAGAIN ? " (peer not connected or not reading within the send timeout)" : "");
    return -1;
}

int wire_send(void *socket, const uint8_t *identity, size_t identity_len, const WireHeader *h,
              const void *frame0, size_t bytes0, const void *frame1, size_t bytes1, char *err,
              size_t errlen) {
    CHECK(socket && h, "wire_send needs a socket and a header");
    CHECK(h->type == WIRE_FORWARD || h->type == WIRE_GRADIENT || h->type == WIRE_STOP,
          "unknown message type %u", h->type);
    CHECK((h->type == WIRE_STOP) == (h->rows == 0), "%u rows in a message of type %u", h->rows, h->type);
    CHECK((h->flags & ~WIRE_KNOWN_FLAGS) == 0, "unknown flags 0x%x", h->flags);
    CHECK(identity_len <= WIRE_MAX_IDENTITY && (identity_len == 0 || identity),
          "identity of %zu bytes", identity_len);
    CHECK(bytes0 == (size_t)h->rows * frame0_row_bytes(h->type),
          "frame 0 has %zu bytes, header implies %zu", bytes0,
          (size_t)h->rows * frame0_row_bytes(h->type));
    CHECK(bytes1 == (size_t)h->rows * h->dim * sizeof(float),
          "frame 1 has %zu bytes, header implies %zu", bytes1,
          (size_t)h->rows * h->dim * sizeof(float));
    CHECK((bytes0 == 0 || frame0) && (bytes1 == 0 || frame1), "payload pointer is NULL");

    Arcface__Header pb = ARCFACE__HEADER__INIT;
    pb.version = WIRE_VERSION;
    pb.type = (Arcface__MsgType)h->type;
    pb.token = h->token;
    pb.step = h->step;
    pb.sender = h->sender;
    pb.rows = h->rows;
    pb.dim = h->dim;
    pb.dtype = ARCFACE__DTYPE__DTYPE_F32;
    pb.has_flags = h->flags != 0;
    pb.flags = h->flags;
    pb.checksum = crc32c_update(crc32c_update(0, frame0, bytes0), frame1, bytes1);

    uint8_t packed[WIRE_MAX_HEADER_BYTES];
    size_t need = arcface__header__get_packed_size(&pb);
    CHECK(need <= sizeof packed, "header needs %zu bytes", need);
    size_t got = arcface__header__pack(&pb, packed);
    CHECK(got == need, "arcface__header__pack wrote %zu bytes, get_packed_size said %zu", got,
          need);

    if (identity_len > 0 && send_frame(socket, identity, identity_len, 1, "identity frame", err,
                                       errlen) < 0)
        return -1;
    if (send_frame(socket, packed, got, 1, "header frame", err, errlen) < 0) return -1;
    if (send_frame(socket, frame0, bytes0, 1, "payload frame 0", err, errlen) < 0) return -1;
    if (send_frame(socket, frame1, bytes1, 0, "payload frame 1", err, errlen) < 0) return -1;
    return 0;
}

/* ---- receiving ---------------------------------------------------------- */

/* Compares without a data-dependent branch on the bytes, so response timing
 * does not tell a prober how many leading bytes of a guessed token matched. */
static int token_equal(uint64_t a, uint64_t b) {
    volatile uint64_t diff = a ^ b;
    return ((diff | (0 - diff)) >> 63) == 0;
}

/* 1 when the float bits are NaN or +-infinity (exponent all ones). Works on
 * unaligned bytes: ZeroMQ may hand out frames at any offset of its buffer. */
static size_t count_nonfinite(const uint8_t *p, size_t n, size_t *first) {
    size_t bad = 0;
    *first = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, p + 4 * i, 4);
        if ((bits & 0x7F800000u) == 0x7F800000u) {
            if (bad++ == 0) *first = i;
        }
    }
    return bad;
}

/* Receives every remaining frame of the current message: the first
 * WIRE_FRAMES + router are kept in parts[], later ones are counted and closed. */
static WireStatus recv_all(void *socket, int flags, zmq_msg_t *parts, int max_parts, int *nparts,
                           int *total, char *err, size_t errlen) {
    *nparts = 0;
    *total = 0;
    int more = 1;
    zmq_msg_t extra;
    while (more) {
        zmq_msg_t *m = *total < max_parts ? &parts[*total] : &extra;
        CHECK(zmq_msg_init(m) == 0, "zmq_msg_init: %s", zmq_strerror(zmq_errno()));
        /* Later frames of a multipart message arrive together with the first,
         * so only the first receive can wait or find nothing. */
        if (zmq_msg_recv(m, socket, *total == 0 ? flags : 0) < 0) {
            int e = zmq_errno();
            zmq_msg_close(m);
            if (*total == 0 && (e == EAGAIN || e == EINTR)) return WIRE_AGAIN;
            err_set(err, errlen, "receiving frame %d: %s", *total, zmq_strerror(e));
            return WIRE_ERR_ZMQ;
        }
        more = zmq_msg_more(m);
        if (m == &extra)
            zmq_msg_close(m);
        else
            (*nparts)++;
        (*total)++;
    }
    return WIRE_OK;
}

/* Checks the unpacked header against the limits; fills *h on the way. */
static WireStatus check_header(const Arcface__Header *pb, const WireLimits *lim, WireHeader *h,
                               char *err, size_t errlen) {
    h->type = (uint32_t)pb->type;
    h->token = pb->token;
    h->step = pb->step;
    h->sender = pb->sender;
    h->rows = pb->rows;
    h->dim = pb->dim;
    h->flags = pb->has_flags ? pb->flags : 0;
    if (pb->version != WIRE_VERSION) {
        err_set(err, errlen, "protocol version %u from rank %u, this build speaks %d", pb->version,
                pb->sender, WIRE_VERSION);
        return WIRE_ERR_VERSION;
    }
    if (!token_equal(pb->token, lim->token)) {
        err_set(err, errlen, "job token 0x%016" PRIx64 " from rank %u is not this job's "
                "(a stray process of another job?)", pb->token, pb->sender);
        return WIRE_ERR_TOKEN;
    }
    if (pb->type != ARCFACE__MSG_TYPE__MSG_FORWARD && pb->type != ARCFACE__MSG_TYPE__MSG_GRADIENT &&
        pb->type != ARCFACE__MSG_TYPE__MSG_STOP) {
        err_set(err, errlen, "unknown message type %d from rank %u", (int)pb->type, pb->sender);
        return WIRE_ERR_TYPE;
    }
    if (h->flags & ~WIRE_KNOWN_FLAGS) {
        err_set(err, errlen, "unknown flags 0x%x from rank %u (flags 0x%x)", h->flags & ~WIRE_KNOWN_FLAGS,
                pb->sender, h->flags);
        return WIRE_ERR_TYPE;
    }
    if (pb->dtype != ARCFACE__DTYPE__DTYPE_F32) {
        err_set(err, errlen, "unsupported dtype %d from rank %u (only f32 = %d)", (int)pb->dtype,
                pb->sender, ARCFACE__DTYPE__DTYPE_F32);
        return WIRE_ERR_TYPE;
    }
    if (pb->dim != lim->dim) {
        err_set(err, errlen, "dim %u from rank %u, expected %u", pb->dim, pb->sender, lim->dim);
        return WIRE_ERR_SIZE;
    }
    if (pb->type == ARCFACE__MSG_TYPE__MSG_STOP ? pb->rows != 0 : pb->rows == 0) {
        err_set(err, errlen, "%s message from rank %u has %u rows", pb->type == ARCFACE__MSG_TYPE__MSG_STOP ?
                "a stop" : "a data", pb->sender, pb->rows);
        return WIRE_ERR_SIZE;
    }
    if (pb->rows > lim->max_rows) {
        err_set(err, errlen, "%u rows from rank %u, limit is %u", pb->rows, pb->sender,
                lim->max_rows);
        return WIRE_ERR_LIMIT;
    }
    return WIRE_OK;
}

/* Validates the payload in place (it may be unaligned) and copies it into
 * msg's buffers once everything holds. */
static WireStatus check_payload(const uint8_t *p0, size_t n0, const uint8_t *p1, size_t n1,
                                uint32_t checksum, WireMessage *msg, const WireLimits *lim,
                                char *err, size_t errlen) {
    const WireHeader *h = &msg->header;
    uint32_t crc = crc32c_update(crc32c_update(0, p0, n0), p1, n1);
    if (crc != checksum) {
        err_set(err, errlen, "payload checksum 0x%08x, header says 0x%08x (rank %u, step %" PRIu64
                ", %zu + %zu bytes)", crc, checksum, h->sender, h->step, n0, n1);
        return WIRE_ERR_CHECKSUM;
    }
    if (h->type == WIRE_FORWARD) {
        for (size_t i = 0; i < h->rows; i++) {
            int64_t label;
            memcpy(&label, p0 + i * sizeof label, sizeof label);
            if (label < 0 || label >= lim->num_classes) {
                err_set(err, errlen, "label %" PRId64 " of row %zu from rank %u is outside [0, %"
                        PRId64 ")", label, i, h->sender, lim->num_classes);
                return WIRE_ERR_LABEL;
            }
        }
    } else {
        size_t first, bad = count_nonfinite(p0, h->rows, &first);
        if (bad) {
            err_set(err, errlen, "%zu non-finite loss values from rank %u, first at row %zu", bad,
                    h->sender, first);
            return WIRE_ERR_NONFINITE;
        }
    }
    size_t first, bad = count_nonfinite(p1, n1 / sizeof(float), &first);
    if (bad) {
        err_set(err, errlen, "%zu non-finite %s values from rank %u, first at row %zu column %zu",
                bad, h->type == WIRE_FORWARD ? "embedding" : "gradient", h->sender,
                first / h->dim, first % h->dim);
        return WIRE_ERR_NONFINITE;
    }
    memcpy(msg->frame[0], p0, n0);
    memcpy(msg->frame[1], p1, n1);
    msg->frame_bytes[0] = n0;
    msg->frame_bytes[1] = n1;
    return WIRE_OK;
}

/* Caller bugs common to wire_parse and wire_recv. */
static void check_buffers(const WireMessage *msg, const WireLimits *lim) {
    CHECK(msg && lim, "needs a message and limits");
    CHECK(lim->dim > 0 && lim->max_rows > 0, "limits: dim %u, max_rows %u", lim->dim,
          lim->max_rows);
    CHECK(msg->frame[0] && msg->frame[1] &&
          msg->frame_capacity[0] >= (size_t)lim->max_rows * sizeof(int64_t) &&
          msg->frame_capacity[1] / sizeof(float) / lim->dim >= lim->max_rows,
          "message buffers (%zu, %zu bytes) smaller than the limits (%u rows of dim %u)",
          msg->frame_capacity[0], msg->frame_capacity[1], lim->max_rows, lim->dim);
}

WireStatus wire_parse(const WireFrame *frames, int nframes, int router, WireMessage *msg,
                      const WireLimits *lim, char *err, size_t errlen) {
    check_buffers(msg, lim);
    CHECK(frames && nframes >= 1, "wire_parse needs at least one frame (%d)", nframes);
    if (err && errlen) err[0] = '\0';

    int expected = WIRE_FRAMES + (router ? 1 : 0);
    memset(&msg->header, 0, sizeof msg->header);
    msg->identity_len = 0;
    /* The routing id comes from ZeroMQ, not from the peer's bytes; keep it
     * even for a malformed message so the caller can say who sent it. */
    if (router) {
        size_t idlen = frames[0].size;
        if (idlen == 0 || idlen > WIRE_MAX_IDENTITY) {
            err_set(err, errlen, "identity frame has %zu bytes, expected 1..%d", idlen,
                    WIRE_MAX_IDENTITY);
            return WIRE_ERR_FRAMES;
        }
        memcpy(msg->identity, frames[0].data, idlen);
        msg->identity_len = idlen;
    }
    if (nframes != expected) {
        err_set(err, errlen, "message has %d frames, expected %d (%sheader, 2 payloads)", nframes,
                expected, router ? "identity, " : "");
        return WIRE_ERR_FRAMES;
    }
    size_t message_bytes = 0;
    for (int i = 0; i < expected; i++) message_bytes += frames[i].size;
    const WireFrame *hdr = &frames[router ? 1 : 0];
    const WireFrame *pay[2] = {hdr + 1, hdr + 2};

    size_t hbytes = hdr->size;
    if (hbytes == 0 || hbytes > WIRE_MAX_HEADER_BYTES) {
        err_set(err, errlen, "header frame has %zu bytes, expected 1..%d", hbytes,
                WIRE_MAX_HEADER_BYTES);
        return WIRE_ERR_HEADER;
    }
    Arcface__Header *pb = arcface__header__unpack(NULL, hbytes, hdr->data);
    if (!pb) {
        err_set(err, errlen, "header frame (%zu bytes) does not unpack as arcface.Header", hbytes);
        return WIRE_ERR_HEADER;
    }
    WireStatus st = check_header(pb, lim, &msg->header, err, errlen);
    if (st != WIRE_OK) goto done;

    const WireHeader *h = &msg->header;
    size_t want[2] = {(size_t)h->rows * frame0_row_bytes(h->type),
                      (size_t)h->rows * h->dim * sizeof(float)};
    for (int i = 0; i < 2; i++) {
        size_t got = pay[i]->size;
        if (got != want[i]) {
            err_set(err, errlen, "frame %d has %zu bytes, header implies %zu (%s, rows %u, dim %u, "
                    "rank %u)", i, got, want[i], type_name(h->type),
                    h->rows, h->dim, h->sender);
            st = WIRE_ERR_SIZE;
            goto done;
        }
    }
    if (message_bytes > lim->max_message_bytes) {
        err_set(err, errlen, "message of %zu bytes from rank %u (rows %u, dim %u) exceeds the "
                "limit of %zu", message_bytes, h->sender, h->rows, h->dim, lim->max_message_bytes);
        st = WIRE_ERR_LIMIT;
        goto done;
    }
    /* Sizes now match the header, and rows <= max_rows with dim == lim->dim,
     * so the copies below fit the buffers; check_buffers made sure. */
    st = check_payload(pay[0]->data, want[0], pay[1]->data, want[1], pb->checksum, msg, lim, err,
                       errlen);

done:
    arcface__header__free_unpacked(pb, NULL);
    return st;
}

WireStatus wire_recv(void *socket, int router, WireMessage *msg, const WireLimits *lim, int flags,
                     char *err, size_t errlen) {
    CHECK(socket && msg && lim, "wire_recv needs a socket, a message and limits");
    CHECK(flags == 0 || flags == ZMQ_DONTWAIT, "flags %d", flags);
    check_buffers(msg, lim);
    if (err && errlen) err[0] = '\0';

    enum { MAX_PARTS = 1 + WIRE_FRAMES };
    zmq_msg_t parts[MAX_PARTS];
    int nparts = 0, total = 0;
    int expected = WIRE_FRAMES + (router ? 1 : 0);
    WireStatus st = recv_all(socket, flags, parts, expected, &nparts, &total, err, errlen);
    if (st == WIRE_OK) {
        WireFrame frames[MAX_PARTS];
        for (int i = 0; i < nparts; i++)
            frames[i] = (WireFrame){zmq_msg_data(&parts[i]), zmq_msg_size(&parts[i])};
        st = wire_parse(frames, total, router, msg, lim, err, errlen);
    }
    for (int i = 0; i < nparts; i++) zmq_msg_close(&parts[i]);
    return st;
}
