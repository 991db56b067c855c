/* fuzz_recordio.c -- fuzz target for the RecordIO reader: rec_open (the .idx
 * parser, record 0's layout, `property`), every image and identity record
 * through rec_read_image / rec_read_key, and rec_scan over the whole .rec.
 *
 * Input: a 2-byte little-endian .idx length and a byte whose low 7 bits are
 * the `property` length (0: no property file) and whose top bit asks for a
 * rec_scan too; then the .idx text, the property text and the rest as
 * train.rec. The three files go to a scratch directory.
 *
 * rec_scan mallocs a 4 MiB stream buffer whatever the file's size, which
 * costs about 6 ms under ASan (shadow poisoning and page faults), 50 times
 * the rest of an input. Nearly every corpus input sets the scan bit (scanning
 * adds coverage, and mutants inherit the bit), so the bit alone does not keep
 * that cost down: a fuzzing run scans one in SCAN_ONE_IN of the inputs that
 * ask, a thorough run all of them (fuzz_pick). */
#include <math.h>
#include <string.h>

#include "fuzz_util.h"
#include "recordio.h"

/* Records read per input, so one input stays fast. */
#define MAX_READS 256
/* A fuzzing run scans one in this many of the inputs that ask for a scan. */
#define SCAN_ONE_IN 128

typedef struct {
    size_t records;
    uint64_t last_offset;
} ScanState;

static int on_record(void *ctx, uint64_t offset, const uint8_t *data, size_t len, char *err,
                     size_t errlen) {
    ScanState *s = ctx;
    FUZZ_ASSERT(s->records == 0 || offset > s->last_offset, "scan went back to offset %llu",
                (unsigned long long)offset);
    s->records++;
    s->last_offset = offset;
    IRHeader h;
    const float *labels;
    const uint8_t *payload;
    size_t payload_len;
    char why[256];
    if (rec_parse(data, len, &h, &labels, &payload, &payload_len, why, sizeof why) == 0) {
        FUZZ_ASSERT(payload >= data && payload + payload_len == data + len,
                    "payload outside the record");
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < payload_len; i++) sink ^= payload[i];
        for (uint32_t i = 0; i < h.flag; i++) {
            uint32_t bits;
            memcpy(&bits, &labels[i], 4);
            sink ^= (uint8_t)bits;
        }
        (void)sink;
    }
    return s->records >= MAX_READS ? 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int picked = fuzz_pick(data, size, SCAN_ONE_IN);
    size_t idx_len = (size_t)fuzz_take_uint(&data, &size, 2);
    unsigned prop_byte = (unsigned)fuzz_take_uint(&data, &size, 1);
    size_t prop_len = prop_byte & 127;
    int scan = (prop_byte >> 7) && picked;
    if (idx_len > size) idx_len = size;
    fuzz_write_file("train.idx", data, idx_len);
    data += idx_len, size -= idx_len;
    if (prop_len > size) prop_len = size;
    if (prop_len) fuzz_write_file("property", data, prop_len);
    else fuzz_remove_file("property");
    data += prop_len, size -= prop_len;
    const char *rec_path = fuzz_write_file("train.rec", data, size);

    char err[1024];
    RecReader *r = NULL;
    uint8_t *buf = NULL;
    size_t cap = 0;
    if (rec_open(&r, rec_path, NULL, err, sizeof err) == 0) {
        FUZZ_ASSERT(r != NULL, "rec_open succeeded without a reader");
        int64_t classes = rec_num_classes(r);
        size_t n = rec_num_images(r);
        fuzz_note("recordio: %zu images, %lld classes", n, (long long)classes);
        for (size_t i = 0; i < n && i < MAX_READS; i++) {
            const uint8_t *jpeg;
            size_t jpeg_len;
            int64_t label;
            (void)rec_image_key(r, i);
            if (rec_read_image(r, i, &buf, &cap, &jpeg, &jpeg_len, &label, err, sizeof err) != 0) {
                fuzz_note("recordio: image %zu: %s", i, err);
                continue;
            }
            FUZZ_ASSERT(label >= 0 && (classes <= 0 || label < classes), "label %lld of %lld",
                        (long long)label, (long long)classes);
            FUZZ_ASSERT(jpeg_len > 0 && jpeg >= buf && jpeg + jpeg_len <= buf + cap,
                        "image bytes outside the buffer");
            volatile uint8_t sink = jpeg[0] ^ jpeg[jpeg_len - 1];
            (void)sink;
        }
        uint64_t first, end;
        if (rec_identity_range(r, &first, &end)) {
            FUZZ_ASSERT(first >= 1 && end >= first, "identity range [%llu, %llu)",
                        (unsigned long long)first, (unsigned long long)end);
            for (uint64_t k = first; k < end && k - first < MAX_READS; k++) {
                size_t len;
                if (rec_read_key(r, k, &buf, &cap, &len, err, sizeof err) == 0)
                    FUZZ_ASSERT(len <= cap, "record of %zu bytes in a buffer of %zu", len, cap);
            }
        }
        size_t len;
        (void)rec_read_key(r, 0, &buf, &cap, &len, err, sizeof err);
        (void)rec_read_key(r, UINT64_MAX, &buf, &cap, &len, err, sizeof err);
        rec_close(&r);
        FUZZ_ASSERT(r == NULL, "rec_close left the pointer");
    } else {
        FUZZ_ASSERT(r == NULL && err[0], "rec_open failed without a reason or left a reader");
        fuzz_note("recordio: %s", err);
    }
    free(buf);

    if (!scan) return 0;
    ScanState s = {0, 0};
    int rc = rec_scan(rec_path, on_record, &s, err, sizeof err);
    FUZZ_ASSERT(rc == 0 || err[0], "rec_scan failed without a reason");
    fuzz_note("recordio: scan: %zu records%s%s", s.records, rc ? ", then " : "", rc ? err : "");
    return 0;
}
