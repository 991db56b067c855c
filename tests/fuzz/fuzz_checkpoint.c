/* fuzz_checkpoint.c -- fuzz target for the checkpoint reader: ckpt_open (header
 * and table validation), every section read whole, as a range and as i64,
 * ckpt_verify, and the same file opened as a one-file classifier set with its
 * rows read back.
 *
 * Input: one control byte, then the file. The header and section CRCs would
 * stop almost every mutation at ckpt_open, so the control bits re-stamp what
 * the mutation broke: bit 0 each section's CRC (for sections inside the
 * file), bit 1 the header's file size, bit 2 the header CRC (after the other
 * two). The corpus also holds files with bad CRCs.
 *
 * The first range read of a section not yet verified streams the whole
 * section through a 4 MiB buffer to check its CRC (so does ckpt_verify), and
 * that malloc costs about 6 ms under ASan whatever the section's size, far
 * more than all the rest of an input. So every input has each section read
 * whole first and then as a range (only the range is read once the section
 * is verified); and one input in STREAM_ONE_IN of a fuzzing run (every input
 * of a thorough run: fuzz_pick) goes through a second reader too, which
 * streams: one section read as a range first (the one the control byte's top
 * five bits pick), then ckpt_verify. */
#include <string.h>

#include "checkpoint.h"
#include "crc32c.h"
#include "fuzz_util.h"

#define HEADER_SIZE 64
#define ENTRY_SIZE 128
#define CRC_AT 60
/* A fuzzing run takes the streaming CRC path on one input in this many. */
#define STREAM_ONE_IN 256

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* Re-stamps the fields selected by ctl in f[0..size) (see the top). */
static void restamp(uint8_t *f, size_t size, unsigned ctl) {
    if (size < HEADER_SIZE) return;
    uint32_t n;
    memcpy(&n, f + 12, 4);
    uint64_t table = get_u64(f + 16);
    int table_fits = table <= size && (size - table) / ENTRY_SIZE >= n;
    if ((ctl & 1) && table_fits) {
        for (uint32_t i = 0; i < n; i++) {
            uint8_t *e = f + table + (size_t)i * ENTRY_SIZE;
            uint64_t off = get_u64(e + 80), len = get_u64(e + 88);
            if (off <= size && len <= size - off) put_u32(e + 68, crc32c_update(0, f + off, len));
        }
    }
    if (ctl & 2) {
        uint64_t s = size;
        memcpy(f + 24, &s, 8);
    }
    if ((ctl & 4) && table_fits)
        put_u32(f + CRC_AT, crc32c_update(crc32c_update(0, f, CRC_AT), f + table,
                                          (size_t)n * ENTRY_SIZE));
}

/* Writes to buf a section name that r does not have: the fuzzer gives
 * sections any name, "no such section" too. */
static void absent_name(CkptReader *r, char *buf, size_t cap) {
    int n = ckpt_num_sections(r), taken = 1;
    for (unsigned k = 0; taken; k++) {
        snprintf(buf, cap, "no such section %u", k);
        taken = 0;
        for (int i = 0; i < n && !taken; i++) taken = strcmp(ckpt_section_name(r, i), buf) == 0;
    }
}

/* Reads every section of r whole, then (verified by that read) as a range,
 * and checks what the reader promises about both. Returns 1 when every whole
 * read succeeded, which leaves nothing for ckpt_verify to stream. */
static int read_sections(CkptReader *r, size_t file_size) {
    char err[1024];
    int n = ckpt_num_sections(r);
    FUZZ_ASSERT(n >= 0, "%d sections", n);
    int all_whole_ok = 1;
    for (int i = 0; i < n; i++) {
        const char *name = ckpt_section_name(r, i);
        FUZZ_ASSERT(name && name[0] && strlen(name) <= CKPT_NAME_MAX, "section %d name", i);
        int64_t count = ckpt_section_count(r, name);
        CkptDtype dtype = ckpt_section_dtype(r, name);
        size_t elem = ckpt_dtype_size(dtype);
        FUZZ_ASSERT(count >= 0 && elem > 0, "section '%s': count %lld, dtype %d", name,
                    (long long)count, (int)dtype);
        FUZZ_ASSERT((uint64_t)count * elem <= file_size, "section '%s' of %lld x %zu bytes in a "
                    "file of %zu", name, (long long)count, elem, file_size);
        size_t bytes = (size_t)count * elem;
        uint8_t *a = malloc(bytes ? bytes : 1), *b = malloc(bytes ? bytes : 1);
        FUZZ_ASSERT(a && b, "out of memory");
        int whole_ok = ckpt_read(r, name, dtype, b, (uint64_t)count, err, sizeof err) == 0;
        fuzz_note("checkpoint: section '%s' %s[%lld]: %s", name, ckpt_dtype_str(dtype),
                  (long long)count, whole_ok ? "read" : err);
        all_whole_ok &= whole_ok;
        /* After a failed whole read the section is still not verified and a
         * range read would stream it: left to stream_check. */
        if (whole_ok) {
            uint64_t first = (uint64_t)count / 3, part = (uint64_t)count / 2;
            int range_ok = ckpt_read_range(r, name, dtype, first, part, a, err, sizeof err) == 0;
            /* The CRC covers the whole section: both reads agree on it. */
            FUZZ_ASSERT(part == (uint64_t)count || range_ok,
                        "section '%s': range read failed after the whole read: %s", name, err);
            if (range_ok)
                FUZZ_ASSERT(memcmp(a, b + first * elem, part * elem) == 0,
                            "section '%s': range differs from the whole", name);
        }
        FUZZ_ASSERT(ckpt_read_range(r, name, dtype, (uint64_t)count, 1, a, err, sizeof err) != 0,
                    "read past section '%s'", name);
        FUZZ_ASSERT(ckpt_read(r, name, dtype, a, (uint64_t)count + 1, err, sizeof err) != 0,
                    "read of the wrong count from '%s'", name);
        CkptDtype other = dtype == CKPT_U8 ? CKPT_F32 : CKPT_U8;
        FUZZ_ASSERT(ckpt_read(r, name, other, a, (uint64_t)count, err, sizeof err) != 0,
                    "read of '%s' as the wrong dtype", name);
        if (dtype == CKPT_I64 && count == 1) {
            int64_t v;
            (void)ckpt_read_i64(r, name, &v, err, sizeof err);
        }
        free(a);
        free(b);
    }
    char missing[CKPT_NAME_MAX + 1];
    absent_name(r, missing, sizeof missing);
    FUZZ_ASSERT(ckpt_section_count(r, missing) == -1 && ckpt_section_dtype(r, missing) == 0,
                "missing section '%s' was found", missing);
    if (all_whole_ok)
        FUZZ_ASSERT(ckpt_verify(r, err, sizeof err) == 0,
                    "ckpt_verify after every section was read whole: %s", err);
    return all_whole_ok;
}

/* On a fresh reader r: a range read of section `pick` (mod the number of
 * sections), which streams it to check its CRC, must agree with its whole
 * read, and ckpt_verify, which streams every other section, must agree with
 * the whole reads of read_sections (all_whole_ok): a whole read fails only
 * on a CRC mismatch, ckpt_verify only on one too. */
static void stream_check(CkptReader *r, unsigned pick, int all_whole_ok) {
    char err[1024];
    int n = ckpt_num_sections(r);
    if (n > 0) {
        const char *name = ckpt_section_name(r, (int)(pick % (unsigned)n));
        int64_t count = ckpt_section_count(r, name);
        CkptDtype dtype = ckpt_section_dtype(r, name);
        size_t elem = ckpt_dtype_size(dtype), bytes = (size_t)count * elem;
        uint8_t *a = malloc(bytes ? bytes : 1), *b = malloc(bytes ? bytes : 1);
        FUZZ_ASSERT(a && b, "out of memory");
        uint64_t first = (uint64_t)count / 3, part = (uint64_t)count / 2;
        int range_ok = ckpt_read_range(r, name, dtype, first, part, a, err, sizeof err) == 0;
        int whole_ok = ckpt_read(r, name, dtype, b, (uint64_t)count, err, sizeof err) == 0;
        /* The CRC covers the whole section: both reads agree on it. */
        FUZZ_ASSERT(part == (uint64_t)count || range_ok == whole_ok,
                    "section '%s': range read %d, whole read %d", name, range_ok, whole_ok);
        if (range_ok && whole_ok)
            FUZZ_ASSERT(memcmp(a, b + first * elem, part * elem) == 0,
                        "section '%s': range differs from the whole", name);
        free(a);
        free(b);
    }
    int verify_ok = ckpt_verify(r, err, sizeof err) == 0;
    FUZZ_ASSERT(verify_ok == all_whole_ok, "ckpt_verify %s, but %s", verify_ok ? "passed" : err,
                all_whole_ok ? "every section read whole" : "a whole read failed");
}

/* Opens path as a one-file classifier set and reads its rows back; the read
 * of the second half after a failed (so not verified) first read streams, so
 * only when `stream` is set (see the top). */
static void read_classifier(const char *path, size_t file_size, int stream) {
    char err[1024];
    CkptClassifierSet *s = NULL;
    const char *paths[1] = {path};
    if (ckpt_classifier_open(&s, paths, 1, -1, err, sizeof err) != 0) {
        FUZZ_ASSERT(s == NULL && err[0], "failed open left a set or no reason");
        fuzz_note("checkpoint: classifier: %s", err);
        return;
    }
    int64_t rows = ckpt_classifier_num_classes(s), dim = ckpt_classifier_dim(s);
    FUZZ_ASSERT(rows >= 0 && dim >= 1 && (rows == 0 || (uint64_t)rows * (uint64_t)dim * 4 <= file_size),
                "%lld rows of dim %lld in a file of %zu bytes", (long long)rows, (long long)dim,
                file_size);
    fuzz_note("checkpoint: classifier of %lld rows, dim %lld", (long long)rows, (long long)dim);
    size_t n = (size_t)rows * (size_t)dim;
    float *w = malloc((n ? n : 1) * sizeof *w);
    FUZZ_ASSERT(w, "out of memory");
    int first_ok = ckpt_classifier_read_rows(s, CKPT_SEC_WEIGHT, 0, rows, w, err, sizeof err) == 0;
    if (first_ok || stream)
        (void)ckpt_classifier_read_rows(s, CKPT_SEC_WEIGHT, rows / 2, rows, w, err, sizeof err);
    (void)ckpt_classifier_read_rows(s, CKPT_SEC_MOMENTUM, 0, rows, w, err, sizeof err);
    FUZZ_ASSERT(ckpt_classifier_read_rows(s, CKPT_SEC_WEIGHT, 0, rows + 1, w, err, sizeof err) != 0,
                "read past the last row");
    free(w);
    ckpt_classifier_close(&s);
    FUZZ_ASSERT(s == NULL, "close left the pointer");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int stream = fuzz_pick(data, size, STREAM_ONE_IN);
    unsigned ctl = data[0];
    data++, size--;
    uint8_t *file = malloc(size ? size : 1);
    FUZZ_ASSERT(file, "out of memory");
    if (size) memcpy(file, data, size);
    restamp(file, size, ctl);
    const char *path = fuzz_write_file("fuzz.ckpt", file, size);
    free(file);

    char err[1024];
    CkptReader *r = NULL;
    if (ckpt_open(&r, path, err, sizeof err) == 0) {
        FUZZ_ASSERT(r && strcmp(ckpt_path(r), path) == 0, "open succeeded without a reader");
        int all_whole_ok = read_sections(r, size);
        ckpt_close(&r);
        FUZZ_ASSERT(r == NULL, "close left the pointer");
        if (stream) {
            FUZZ_ASSERT(ckpt_open(&r, path, err, sizeof err) == 0, "the file opened once, then "
                        "not: %s", err);
            stream_check(r, ctl >> 3, all_whole_ok);
            ckpt_close(&r);
        }
        read_classifier(path, size, stream);
    } else {
        FUZZ_ASSERT(r == NULL && err[0], "failed open left a reader or no reason");
        fuzz_note("checkpoint: %s", err);
    }
    return 0;
}
