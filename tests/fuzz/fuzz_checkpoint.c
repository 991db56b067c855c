/* fuzz_checkpoint.c -- fuzz target for the checkpoint reader: ckpt_open (header
 * and table validation), every section read whole, as a range and as i64,
 * ckpt_verify, and the same file opened as a one-file classifier set with its
 * rows read back.
 *
 * Input: one control byte, then the file. The header and section CRCs would
 * stop almost every mutation at ckpt_open, so the control bits re-stamp what
 * the mutation broke: bit 0 each section's CRC (for sections inside the
 * file), bit 1 the header's file size, bit 2 the header CRC (after the other
 * two). The corpus also holds files with bad CRCs. */
#include <string.h>

#include "checkpoint.h"
#include "crc32c.h"
#include "fuzz_util.h"

#define HEADER_SIZE 64
#define ENTRY_SIZE 128
#define CRC_AT 60

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

static void read_sections(CkptReader *r, size_t file_size) {
    char err[1024];
    int n = ckpt_num_sections(r);
    FUZZ_ASSERT(n >= 0, "%d sections", n);
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
        uint64_t first = (uint64_t)count / 3, part = (uint64_t)count / 2;
        int range_ok = ckpt_read_range(r, name, dtype, first, part, a, err, sizeof err) == 0;
        int whole_ok = ckpt_read(r, name, dtype, b, (uint64_t)count, err, sizeof err) == 0;
        fuzz_note("checkpoint: section '%s' %s[%lld]: %s", name, ckpt_dtype_str(dtype),
                  (long long)count, whole_ok ? "read" : err);
        /* The CRC covers the whole section: both reads agree on it. */
        FUZZ_ASSERT(part == (uint64_t)count || range_ok == whole_ok,
                    "section '%s': range read %d, whole read %d", name, range_ok, whole_ok);
        if (range_ok && whole_ok)
            FUZZ_ASSERT(memcmp(a, b + first * elem, part * elem) == 0,
                        "section '%s': range differs from the whole", name);
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
    FUZZ_ASSERT(ckpt_section_count(r, "no such section") == -1 &&
                    ckpt_section_dtype(r, "no such section") == 0,
                "a missing section was found");
    (void)ckpt_verify(r, err, sizeof err);
}

static void read_classifier(const char *path, size_t file_size) {
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
    (void)ckpt_classifier_read_rows(s, CKPT_SEC_WEIGHT, 0, rows, w, err, sizeof err);
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
        read_sections(r, size);
        ckpt_close(&r);
        FUZZ_ASSERT(r == NULL, "close left the pointer");
        read_classifier(path, size);
    } else {
        FUZZ_ASSERT(r == NULL && err[0], "failed open left a reader or no reason");
        fuzz_note("checkpoint: %s", err);
    }
    return 0;
}
