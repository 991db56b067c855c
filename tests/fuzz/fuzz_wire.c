/* fuzz_wire.c -- fuzz target for the message validator (wire_parse, the part
 * of wire_recv after the frames are in memory).
 *
 * Input: one control byte, then the frames. Control bits: 0 router (an
 * identity frame first); 1..3 the message's frame count minus 1 (1..8; only
 * the first 3 + router are passed, as wire_recv keeps them); 4 re-stamp the
 * header's checksum (and token) after mutation, so inputs reach the label
 * and float checks; 5 a 300-byte max_message_bytes. Every frame but the last
 * is a 2-byte little-endian length and its bytes; the last takes the rest.
 * On WIRE_OK the message must satisfy everything wire.h promises. */
#include <math.h>
#include <string.h>

#include "arcface.pb-c.h"
#include "crc32c.h"
#include "fuzz_util.h"
#include "wire.h"

#define TOKEN 0x5ec2e7c0ffee1234ull
#define DIM 8
#define MAX_ROWS 16
#define NUM_CLASSES 100
#define MAX_FRAMES 8

static WireLimits limits(int small) {
    WireLimits lim = {.token = TOKEN, .dim = DIM, .max_rows = MAX_ROWS,
                      .num_classes = NUM_CLASSES, .max_message_bytes = small ? 300 : 4096};
    return lim;
}

/* Re-packs the header (when it unpacks) with the job's token and the CRC of
 * the payload frames that follow it. */
static size_t restamp(const uint8_t *hdr, size_t n, const WireFrame *p0, const WireFrame *p1,
                      uint8_t *out, size_t cap) {
    Arcface__Header *pb = arcface__header__unpack(NULL, n, hdr);
    if (!pb) return 0;
    pb->token = TOKEN;
    pb->checksum = crc32c_update(crc32c_update(0, p0->data, p0->size), p1->data, p1->size);
    size_t need = arcface__header__get_packed_size(pb), got = 0;
    if (need <= cap) got = arcface__header__pack(pb, out);
    arcface__header__free_unpacked(pb, NULL);
    return got;
}

static void check_ok(const WireMessage *msg, const WireLimits *lim, int router) {
    const WireHeader *h = &msg->header;
    FUZZ_ASSERT(h->token == lim->token && h->dim == lim->dim, "token or dim not checked");
    FUZZ_ASSERT(h->type == WIRE_FORWARD || h->type == WIRE_GRADIENT || h->type == WIRE_STOP,
                "type %u accepted", h->type);
    FUZZ_ASSERT((h->flags & ~WIRE_KNOWN_FLAGS) == 0, "flags 0x%x accepted", h->flags);
    FUZZ_ASSERT(h->type == WIRE_STOP ? h->rows == 0 : h->rows >= 1 && h->rows <= lim->max_rows,
                "rows %u accepted for type %u", h->rows, h->type);
    FUZZ_ASSERT(!router || (msg->identity_len >= 1 && msg->identity_len <= WIRE_MAX_IDENTITY),
                "identity of %zu bytes", msg->identity_len);
    size_t row0 = h->type == WIRE_FORWARD ? 8 : 4;
    FUZZ_ASSERT(msg->frame_bytes[0] == h->rows * row0 &&
                    msg->frame_bytes[1] == (size_t)h->rows * h->dim * 4,
                "payload sizes %zu, %zu for rows %u", msg->frame_bytes[0], msg->frame_bytes[1],
                h->rows);
    if (h->type == WIRE_FORWARD) {
        const int64_t *labels = msg->frame[0];
        for (uint32_t i = 0; i < h->rows; i++)
            FUZZ_ASSERT(labels[i] >= 0 && labels[i] < lim->num_classes, "label %lld accepted",
                        (long long)labels[i]);
    } else {
        const float *loss = msg->frame[0];
        for (uint32_t i = 0; i < h->rows; i++) FUZZ_ASSERT(isfinite(loss[i]), "loss not finite");
    }
    const float *x = msg->frame[1];
    for (size_t i = 0; i < (size_t)h->rows * h->dim; i++)
        FUZZ_ASSERT(isfinite(x[i]), "payload value %zu not finite", i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static WireMessage msg;
    static int ready;
    if (!ready) {
        WireLimits lim = limits(0);
        wire_message_init(&msg, &lim);
        ready = 1;
    }
    if (size < 1) return 0;
    unsigned ctl = data[0];
    data++, size--;
    int router = ctl & 1;
    int nframes = 1 + (int)((ctl >> 1) & 7);
    int expected = 3 + router;
    int kept = nframes < expected ? nframes : expected;

    WireFrame frames[MAX_FRAMES];
    for (int i = 0; i < kept; i++) {
        size_t n = size;
        if (i + 1 < kept) {
            n = (size_t)fuzz_take_uint(&data, &size, 2);
            if (n > size) n = size;
        }
        frames[i] = (WireFrame){data, n};
        data += n, size -= n;
    }

    uint8_t stamped[WIRE_MAX_HEADER_BYTES];
    int h = router;
    if ((ctl & 16) && kept == expected && frames[h].size <= WIRE_MAX_HEADER_BYTES) {
        size_t n = restamp(frames[h].data, frames[h].size, &frames[h + 1], &frames[h + 2], stamped,
                           sizeof stamped);
        if (n > 0) frames[h] = (WireFrame){stamped, n};
    }

    /* Copies of exactly the frames' sizes, so a read past a frame is caught. */
    WireFrame exact[MAX_FRAMES];
    for (int i = 0; i < kept; i++) {
        void *p = malloc(frames[i].size ? frames[i].size : 1);
        FUZZ_ASSERT(p, "out of memory");
        if (frames[i].size) memcpy(p, frames[i].data, frames[i].size);
        exact[i] = (WireFrame){p, frames[i].size};
    }
    WireLimits lim = limits(ctl & 32);
    char err[512];
    WireStatus st = wire_parse(exact, nframes, router, &msg, &lim, err, sizeof err);
    FUZZ_ASSERT(st != WIRE_AGAIN && st != WIRE_ERR_ZMQ, "wire_parse returned %s",
                wire_status_str(st));
    FUZZ_ASSERT(st == WIRE_OK || err[0], "%s without a reason", wire_status_str(st));
    fuzz_note("wire: %s: %s", wire_status_str(st), err);
    if (st == WIRE_OK) check_ok(&msg, &lim, router);
    for (int i = 0; i < kept; i++) free((void *)exact[i].data);
    return 0;
}
