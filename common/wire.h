/* wire.h -- framing and validation of worker <-> parameter-server messages.
 *
 * A message is multipart:
 *     [identity]  only on a ROUTER socket (added/consumed by ZeroMQ routing)
 *     [header]    packed arcface.Header (proto/arcface.proto)
 *     [payload 0] FORWARD: labels int64[rows]      GRADIENT: loss float[rows]
 *     [payload 1] FORWARD: embeddings float[rows*dim]  GRADIENT: dX float[rows*dim]
 * A STOP (worker -> server: the job ends after `step` steps) has rows 0 and
 * two empty payload frames.
 * Arrays are raw little-endian (the machine's; checked at compile time), and
 * the header carries a CRC32C over payload 0 then payload 1.
 *
 * wire_recv (wire_parse once the frames are in memory) trusts nothing the
 * peer sends: every size, the token, the version, the checksum, labels and
 * float values are checked before a byte is used, and a bad message is
 * consumed whole so the next one starts clean. One socket per thread, as
 * ZeroMQ requires. */
#ifndef ARCFACE_WIRE_H
#define ARCFACE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_VERSION 1

/* Message types; equal to arcface.MsgType's values. */
enum { WIRE_FORWARD = 1, WIRE_GRADIENT = 2, WIRE_STOP = 3 };

/* Header flag bits; equal to arcface.Flag's values. */
enum { WIRE_FLAG_STOP_REQUESTED = 1u };
#define WIRE_KNOWN_FLAGS ((uint32_t)WIRE_FLAG_STOP_REQUESTED)

/* Largest identity frame a ROUTER may hand us (ZeroMQ routing ids are 1..255
 * bytes) and largest header frame we are willing to unpack. */
#define WIRE_MAX_IDENTITY 256
#define WIRE_MAX_HEADER_BYTES 256

typedef enum {
    WIRE_OK = 0,
    WIRE_AGAIN,         /* no message (ZMQ_DONTWAIT, RCVTIMEO expired, EINTR); nothing consumed */
    WIRE_ERR_ZMQ,       /* a ZeroMQ call failed (context terminated, socket closed, ...) */
    WIRE_ERR_FRAMES,    /* wrong number of frames, or a bad identity frame */
    WIRE_ERR_HEADER,    /* header frame too large or does not unpack */
    WIRE_ERR_VERSION,   /* header version != WIRE_VERSION */
    WIRE_ERR_TOKEN,     /* job token differs: a message from another job */
    WIRE_ERR_TYPE,      /* unknown message type, dtype or flag bit */
    WIRE_ERR_SIZE,      /* dim != limits, rows == 0 (rows != 0 for STOP), or a frame size
                           disagrees with the header */
    WIRE_ERR_LIMIT,     /* rows > max_rows, or total size > max_message_bytes */
    WIRE_ERR_CHECKSUM,  /* CRC32C of the payload differs from the header's */
    WIRE_ERR_LABEL,     /* a FORWARD label outside [0, num_classes) */
    WIRE_ERR_NONFINITE, /* a NaN or infinity in a float payload */
} WireStatus;

/* Short lower-case name of a status ("ok", "bad checksum", ...). Never NULL. */
const char *wire_status_str(WireStatus status);

typedef struct {
    uint32_t type;   /* WIRE_FORWARD, WIRE_GRADIENT or WIRE_STOP */
    uint64_t token;  /* job token */
    uint64_t step;
    uint32_t sender; /* MPI rank of the sender */
    uint32_t rows;   /* samples */
    uint32_t dim;    /* floats per sample in payload 1 */
    uint32_t flags;  /* WIRE_FLAG_* bits */
} WireHeader;

/* What a receiver accepts. Both ends of a job use the same values. */
typedef struct {
    uint64_t token;
    uint32_t dim;              /* required header dim */
    uint32_t max_rows;         /* rows must be in [1, max_rows] */
    int64_t num_classes;       /* labels must be in [0, num_classes) */
    size_t max_message_bytes;  /* all frames together, identity and header included;
                                  also ZMQ_MAXMSGSIZE (which ZeroMQ applies per frame) */
} WireLimits;

/* A received message. frame[0] and frame[1] are 64-byte aligned buffers owned
 * by the message, allocated once by wire_message_init; after WIRE_OK they hold
 * the payload (frame_bytes[i] valid bytes): FORWARD frame[0] is int64_t labels,
 * GRADIENT frame[0] is float loss, frame[1] is float[rows*dim] either way. */
typedef struct {
    WireHeader header;
    uint8_t identity[WIRE_MAX_IDENTITY]; /* ROUTER side: the sender's routing id */
    size_t identity_len;
    void *frame[2];
    size_t frame_bytes[2];
    size_t frame_capacity[2];
} WireMessage;

/* Allocates the payload buffers for lim->max_rows samples of lim->dim floats:
 * frame[0] max_rows * 8 bytes (int64 labels or float loss), frame[1]
 * max_rows * dim * 4 bytes. Aborts (CHECK) on overflow or out of memory. */
void wire_message_init(WireMessage *msg, const WireLimits *lim);

/* Frees the buffers and zeroes *msg. Accepts a zeroed struct (and NULL). */
void wire_message_destroy(WireMessage *msg);

/* Sets the options every protocol socket needs, each one CHECKed:
 * ZMQ_LINGER 0 (close never blocks), ZMQ_MAXMSGSIZE = lim->max_message_bytes
 * (ZeroMQ drops the connection of a peer that sends a larger frame),
 * ZMQ_SNDTIMEO = ZMQ_RCVTIMEO = timeout_ms (> 0: no wait is infinite),
 * ZMQ_SNDHWM = ZMQ_RCVHWM = WIRE_HWM messages per peer, ZMTP heartbeats every
 * heartbeat_ms (> 0) with a 3x timeout (a dead peer's connection closes
 * within seconds), and on a ROUTER ZMQ_ROUTER_MANDATORY, so that a reply to a
 * vanished worker fails with EHOSTUNREACH instead of disappearing silently.
 * Call before bind/connect. */
#define WIRE_HWM 16
void wire_socket_setup(void *socket, const WireLimits *lim, int timeout_ms, int heartbeat_ms);

/* Sends one message: [identity] header frame0 frame1. identity_len 0 sends no
 * identity frame (DEALER); on a ROUTER pass the peer's routing id. Packs h
 * (with version WIRE_VERSION, dtype F32) and the CRC32C of frame0 then frame1.
 * The sizes must match h (caller bug otherwise, CHECKed): bytes0 = rows * 8
 * (FORWARD) or rows * 4 (GRADIENT), bytes1 = rows * dim * 4; a STOP has
 * rows 0 and no payload. The payload is
 * copied, so the buffers are the caller's again on return.
 * Returns 0, or -1 with the reason (zmq_strerror) in err: the send would have
 * blocked longer than ZMQ_SNDTIMEO (peer not connected or not reading), the
 * ROUTER peer is unknown (EHOSTUNREACH), or the context is gone. A failure
 * always happens on the first frame, so nothing partial is left queued; only
 * ETERM can interrupt later frames, and then the socket is unusable anyway. */
int wire_send(void *socket, const uint8_t *identity, size_t identity_len, const WireHeader *h,
              const void *frame0, size_t bytes0, const void *frame1, size_t bytes1, char *err,
              size_t errlen);

/* One frame of a received message, in memory (a zmq_msg_t's data and size). */
typedef struct {
    const void *data;
    size_t size;
} WireFrame;

/* Validates one already received multipart message and copies its payload
 * into msg: the checks and results of wire_recv below, as a pure function of
 * the bytes (no socket; only the header is unpacked, into a temporary).
 * nframes (>= 1) is how many frames the message had; frames holds its first
 * min(nframes, 3 + router) of them (a receiver may count the frames past
 * those without keeping them). Frames may be unaligned. wire_recv is a
 * receive followed by wire_parse. */
WireStatus wire_parse(const WireFrame *frames, int nframes, int router, WireMessage *msg,
                      const WireLimits *lim, char *err, size_t errlen);

/* Receives one message into msg (initialised by wire_message_init with limits
 * at least as large as lim: CHECKed). router = 1 expects the identity frame
 * first (ROUTER socket), 0 expects none (DEALER). flags is 0 (wait up to
 * ZMQ_RCVTIMEO) or ZMQ_DONTWAIT.
 *
 * Always consumes the whole multipart message, good or bad, so the next call
 * starts at the next message. Checks, in this order, before any payload byte
 * is used: frame count; identity length; header size and unpacking; version;
 * token (constant time); type, dtype and flags; dim == lim->dim; 1 <= rows <=
 * max_rows (rows == 0 for STOP);
 * each payload frame's size against the header; total size against
 * lim->max_message_bytes; checksum; FORWARD labels in [0, num_classes); all
 * floats finite. The step is not checked: the caller knows which it expects.
 *
 * Returns WIRE_OK with msg filled in; WIRE_AGAIN when no message came (nothing
 * consumed); otherwise the first failed check, with err naming it in numbers
 * ("frame 1 has 4096 bytes, header implies 8192 (rows 16, dim 64)"). After an
 * error msg->header holds what the header said (all zero if it did not unpack)
 * and msg->identity the sender's routing id, so the caller can log who sent
 * it; the payload buffers are left as they were. Never writes past
 * msg->frame_capacity. */
WireStatus wire_recv(void *socket, int router, WireMessage *msg, const WireLimits *lim, int flags,
                     char *err, size_t errlen);

#endif
