/* test_checkpoint.c -- the checkpoint container and directories: round trip of
 * every dtype (checked also against the documented byte layout, parsed here
 * independently), a 5M-float section, classifier rows saved in 3 files read
 * back as the shards of 1..5 servers, refusal (naming file, section, offset) of
 * every flipped byte, every truncation, bad magic, other version, bad tables
 * and mismatched reads; atomic replace under failed writes (missing directory,
 * RLIMIT_FSIZE short write / EFBIG mid-section and at commit); listing that
 * ignores incomplete directories and keep-last-K pruning. */
#define _GNU_SOURCE /* nftw */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "checkpoint.h"
#include "crc32c.h"
#include "log.h"
#include "testutil.h"

static char g_dir[64];

/* ---- helpers ---------------------------------------------------------------- */

static void path_in(char *buf, size_t len, const char *name) {
    CHECK(snprintf(buf, len, "%s/%s", g_dir, name) < (int)len, "path too long");
}

/* "<dir>/<name>" into buf of CKPT_PATH_MAX bytes. */
static void join(char *buf, const char *dir, const char *name) {
    CHECK(snprintf(buf, CKPT_PATH_MAX, "%s/%s", dir, name) < CKPT_PATH_MAX, "path too long");
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    CHECK(f, "open %s", path);
    CHECK(fseek(f, 0, SEEK_END) == 0, "seek");
    long size = ftell(f);
    rewind(f);
    uint8_t *buf = malloc((size_t)size + 1);
    CHECK(buf && fread(buf, 1, (size_t)size, f) == (size_t)size, "read %s", path);
    fclose(f);
    *n = (size_t)size;
    return buf;
}

/* Writes a fresh file (unlinked first: ext4 flushes a file truncated and
 * rewritten in place at close, which made the loops below take seconds). */
static void spit(const char *path, const void *data, size_t n) {
    unlink(path);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, n, f) == n && fclose(f) == 0, "write %s", path);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Recomputes the header CRC after a deliberate edit of header or table. */
static void fix_header_crc(uint8_t *buf, size_t n) {
    uint64_t table = rd64(buf + 16);
    uint32_t crc = crc32c_update(crc32c_update(0, buf, 60), buf + table, n - table);
    memcpy(buf + 60, &crc, 4);
}

/* Opens path and reads every section in full: 0, or -1 with the reason. */
static int open_and_read_all(const char *path, char *err, size_t errlen) {
    CkptReader *r = NULL;
    if (ckpt_open(&r, path, err, errlen) != 0) return -1;
    int rc = 0;
    for (int i = 0; i < ckpt_num_sections(r) && rc == 0; i++) {
        const char *name = ckpt_section_name(r, i);
        CkptDtype dt = ckpt_section_dtype(r, name);
        uint64_t count = (uint64_t)ckpt_section_count(r, name);
        void *dst = malloc(count * ckpt_dtype_size(dt) + 1);
        CHECK(dst, "malloc");
        rc = ckpt_read(r, name, dt, dst, count, err, errlen);
        free(dst);
    }
    ckpt_close(&r);
    return rc;
}

/* Opening (and reading) path must fail with every needle in the message. */
static void expect_refused(const char *path, const char *what, const char *needle1,
                           const char *needle2) {
    char err[1024] = "";
    int rc = open_and_read_all(path, err, sizeof err);
    EXPECT(rc == -1, "%s: accepted", what);
    EXPECT(strstr(err, path) && (!needle1 || strstr(err, needle1)) && (!needle2 || strstr(err, needle2)),
           "%s: message '%s' lacks the path, '%s' or '%s'", what, err, needle1 ? needle1 : "",
           needle2 ? needle2 : "");
}

/* Number of entries of dir whose name contains `containing`. */
static int count_entries(const char *dir, const char *containing) {
    DIR *d = opendir(dir);
    CHECK(d, "opendir %s", dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) n += strstr(de->d_name, containing) != NULL;
    closedir(d);
    return n;
}

/* Byte offset of section `name`'s data, from the table of a file image. */
static uint64_t section_offset(const uint8_t *buf, size_t n, const char *name) {
    for (uint64_t e = rd64(buf + 16); e + 128 <= n; e += 128)
        if (strcmp((const char *)buf + e, name) == 0) return rd64(buf + e + 80);
    FATAL("no section %s", name);
}

/* ---- a small file with every dtype ------------------------------------------- */

#define NAME63 "a_name_of_exactly_sixty_three_bytes_for_the_longest_allowed_nme"
static float g_f32[100];
static const char g_text[] = "network = r50\nlr = 0.1\n\0embedded NUL, then more text\n";
static const int64_t g_i64[3] = {INT64_MIN, -1, INT64_MAX};
static const uint64_t g_u64[2] = {UINT64_MAX, 0x0123456789abcdefull};

static void write_small(const char *path) {
    char err[1024] = "";
    CkptWriter *w = NULL;
    int rc = ckpt_writer_open(&w, path, err, sizeof err);
    rc = rc || ckpt_writer_add(w, "weights", CKPT_F32, g_f32, 100, err, sizeof err);
    rc = rc || ckpt_writer_add(w, CKPT_SEC_CONFIG, CKPT_U8, g_text, sizeof g_text, err, sizeof err);
    rc = rc || ckpt_writer_add(w, "empty", CKPT_F32, NULL, 0, err, sizeof err);
    rc = rc || ckpt_writer_add(w, "ints", CKPT_I64, g_i64, 3, err, sizeof err);
    rc = rc || ckpt_writer_add(w, NAME63, CKPT_U64, g_u64, 2, err, sizeof err);
    rc = rc || ckpt_writer_add_i64(w, CKPT_SEC_STEP, 123456789012LL, err, sizeof err);
    rc = rc || ckpt_writer_commit(&w, err, sizeof err);
    CHECK(rc == 0 && !w, "write %s: %s", path, err);
}

static void test_round_trip(void) {
    test_fill_uniform(g_f32, 100, -3, 3, 11);
    uint32_t nan_bits = 0x7fc01234u, neg_zero = 0x80000000u;
    memcpy(&g_f32[7], &nan_bits, 4); /* payload bits must survive */
    memcpy(&g_f32[8], &neg_zero, 4);
    char path[256], err[1024] = "";
    path_in(path, sizeof path, "small.ckpt");
    write_small(path);
    EXPECT(count_entries(g_dir, ".tmp.") == 0, "a temporary file is left");

    CkptReader *r = NULL;
    EXPECT(ckpt_open(&r, path, err, sizeof err) == 0, "open: %s", err);
    if (!r) return;
    static const char *names[] = {"weights", "config", "empty", "ints", NAME63, "step"};
    EXPECT(ckpt_num_sections(r) == 6, "%d sections", ckpt_num_sections(r));
    for (int i = 0; i < 6 && i < ckpt_num_sections(r); i++)
        EXPECT(strcmp(ckpt_section_name(r, i), names[i]) == 0, "section %d is '%s'", i,
               ckpt_section_name(r, i));
    EXPECT(ckpt_section_count(r, "weights") == 100 && ckpt_section_dtype(r, "weights") == CKPT_F32 &&
               ckpt_section_count(r, "config") == (int64_t)sizeof g_text &&
               ckpt_section_dtype(r, "config") == CKPT_U8 && ckpt_section_count(r, "empty") == 0 &&
               ckpt_section_count(r, "nope") == -1 && ckpt_section_dtype(r, "nope") == 0,
           "counts and dtypes");
    float f[100];
    char text[sizeof g_text];
    int64_t i64[3], step = 0;
    uint64_t u64[2];
    EXPECT(ckpt_read(r, "weights", CKPT_F32, f, 100, err, sizeof err) == 0 &&
               memcmp(f, g_f32, sizeof f) == 0, "f32: %s", err);
    EXPECT(ckpt_read(r, "config", CKPT_U8, text, sizeof text, err, sizeof err) == 0 &&
               memcmp(text, g_text, sizeof text) == 0, "u8: %s", err);
    EXPECT(ckpt_read(r, "empty", CKPT_F32, NULL, 0, err, sizeof err) == 0, "empty: %s", err);
    EXPECT(ckpt_read(r, "ints", CKPT_I64, i64, 3, err, sizeof err) == 0 &&
               memcmp(i64, g_i64, sizeof i64) == 0, "i64: %s", err);
    EXPECT(ckpt_read(r, NAME63, CKPT_U64, u64, 2, err, sizeof err) == 0 &&
               memcmp(u64, g_u64, sizeof u64) == 0, "u64: %s", err);
    EXPECT(ckpt_read_i64(r, "step", &step, err, sizeof err) == 0 && step == 123456789012LL,
           "step %lld: %s", (long long)step, err);
    for (uint64_t first = 0; first <= 100; first += 9) {
        for (uint64_t n = 0; first + n <= 100; n += 13) {
            memset(f, 0, sizeof f);
            EXPECT(ckpt_read_range(r, "weights", CKPT_F32, first, n, f, err, sizeof err) == 0 &&
                       memcmp(f, g_f32 + first, n * 4) == 0, "range [%llu, +%llu): %s",
                   (unsigned long long)first, (unsigned long long)n, err);
        }
    }
    EXPECT(ckpt_read_range(r, "ints", CKPT_I64, 1, 2, i64, err, sizeof err) == 0 &&
               i64[0] == -1 && i64[1] == INT64_MAX, "i64 range: %s", err);
    EXPECT(ckpt_verify(r, err, sizeof err) == 0, "verify: %s", err);
    ckpt_close(&r);
    EXPECT(!r, "ckpt_close sets NULL");
    ckpt_close(&r);
    ckpt_close(NULL);

    /* The documented layout, parsed independently. */
    size_t n;
    uint8_t *b = slurp(path, &n);
    EXPECT(memcmp(b, "\x89" "AFCKPT\n", 8) == 0 && rd32(b + 8) == 1 && rd32(b + 12) == 6 &&
               rd64(b + 24) == n && rd64(b + 16) % 64 == 0 && rd64(b + 16) + 6 * 128 == n,
           "header fields");
    EXPECT(rd32(b + 60) == crc32c_update(crc32c_update(0, b, 60), b + rd64(b + 16), 6 * 128),
           "header CRC");
    uint64_t prev_end = 64;
    for (int i = 0; i < 6; i++) {
        const uint8_t *e = b + rd64(b + 16) + 128 * (size_t)i;
        uint64_t count = rd64(e + 72), off = rd64(e + 80), size = rd64(e + 88);
        EXPECT(strcmp((const char *)e, names[i]) == 0 && off % 64 == 0 && off >= prev_end &&
                   off - prev_end < 64 && rd32(e + 68) == crc32c_update(0, b + off, size) &&
                   size == count * ckpt_dtype_size((CkptDtype)rd32(e + 64)),
               "table entry %d", i);
        for (uint64_t k = prev_end; k < off; k++) EXPECT(b[k] == 0, "padding byte %llu", (unsigned long long)k);
        prev_end = off + size;
    }
    free(b);

    /* Writer refusals, each leaving no file behind. */
    static const struct {
        const char *name;
        int dtype;
        int null_data;
        const char *needle;
    } bad[] = {{"", CKPT_F32, 0, "allowed 1..63"},
               {NAME63 "x", CKPT_F32, 0, "has 64 bytes"},
               {"weights", CKPT_F32, 0, "added twice"},
               {"d", 9, 0, "unknown dtype 9"},
               {"d", CKPT_F32, 1, "no data"}};
    char bad_path[256];
    path_in(bad_path, sizeof bad_path, "refused.ckpt");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CkptWriter *w = NULL;
        CHECK(ckpt_writer_open(&w, bad_path, err, sizeof err) == 0, "%s", err);
        CHECK(ckpt_writer_add(w, "weights", CKPT_F32, g_f32, 10, err, sizeof err) == 0, "%s", err);
        err[0] = '\0';
        EXPECT(ckpt_writer_add(w, bad[i].name, (CkptDtype)bad[i].dtype, bad[i].null_data ? NULL : g_f32,
                               5, err, sizeof err) == -1 && strstr(err, bad[i].needle) &&
                   strstr(err, bad_path),
               "bad add %zu: '%s'", i, err);
        EXPECT(ckpt_writer_add(w, "later", CKPT_F32, g_f32, 1, err, sizeof err) == -1 &&
                   strstr(err, "failed earlier"), "add after a failure: '%s'", err);
        EXPECT(ckpt_writer_commit(&w, err, sizeof err) == -1 && !w && !exists(bad_path),
               "commit after a failure: '%s'", err);
    }
    EXPECT(count_entries(g_dir, "refused") == 0, "refused writes left files");
    CkptWriter *w = NULL;
    CHECK(ckpt_writer_open(&w, bad_path, err, sizeof err) == 0, "%s", err);
    ckpt_writer_abort(&w);
    EXPECT(!w && count_entries(g_dir, "refused") == 0, "abort left files");
    ckpt_writer_abort(&w);
    ckpt_writer_abort(NULL);
}

/* ---- a big section ------------------------------------------------------------- */

static void test_big(void) {
    const uint64_t n = 5u << 20; /* 5,242,880 floats, 20 MiB */
    float *x = malloc(n * 4), *y = malloc(n * 4);
    CHECK(x && y, "malloc");
    test_fill_uniform(x, n, -1, 1, 5);
    char path[256], err[1024] = "";
    path_in(path, sizeof path, "big.ckpt");
    CkptWriter *w = NULL;
    EXPECT(ckpt_writer_open(&w, path, err, sizeof err) == 0 &&
               ckpt_writer_add_i64(w, "before", 7, err, sizeof err) == 0 &&
               ckpt_writer_add(w, "big", CKPT_F32, x, n, err, sizeof err) == 0 &&
               ckpt_writer_add_i64(w, "after", 8, err, sizeof err) == 0 &&
               ckpt_writer_commit(&w, err, sizeof err) == 0, "write: %s", err);
    CkptReader *r = NULL;
    EXPECT(ckpt_open(&r, path, err, sizeof err) == 0, "open: %s", err);
    if (r) {
        uint64_t first = 3000001, count = 1234567; /* crosses the 4 MiB streaming chunks */
        EXPECT(ckpt_read_range(r, "big", CKPT_F32, first, count, y, err, sizeof err) == 0 &&
                   memcmp(y, x + first, count * 4) == 0, "lazy range read: %s", err);
        EXPECT(ckpt_read_range(r, "big", CKPT_F32, 17, 5, y, err, sizeof err) == 0 &&
                   memcmp(y, x + 17, 20) == 0, "verified range read: %s", err);
        EXPECT(ckpt_read(r, "big", CKPT_F32, y, n, err, sizeof err) == 0 && memcmp(x, y, n * 4) == 0,
               "full read: %s", err);
        int64_t v = 0;
        EXPECT(ckpt_read_i64(r, "after", &v, err, sizeof err) == 0 && v == 8, "after: %s", err);
        EXPECT(ckpt_verify(r, err, sizeof err) == 0, "verify: %s", err);
        ckpt_close(&r);
    }
    /* One flipped bit far from the range read is still caught by it. */
    size_t size;
    uint8_t *b = slurp(path, &size);
    b[size - 3 * 128 - 100] ^= 0x10; /* 36 bytes before the end of 'big' */
    spit(path, b, size);
    free(b);
    EXPECT(ckpt_open(&r, path, err, sizeof err) == 0, "open: %s", err);
    if (r) {
        EXPECT(ckpt_read_range(r, "big", CKPT_F32, 10, 10, y, err, sizeof err) == -1 &&
                   strstr(err, "section 'big'") && strstr(err, "CRC32C mismatch"),
               "range read of a corrupt section: '%s'", err);
        EXPECT(ckpt_verify(r, err, sizeof err) == -1 && strstr(err, "'big'"), "verify: '%s'", err);
        ckpt_close(&r);
    }
    free(x);
    free(y);
}

/* ---- corruption ------------------------------------------------------------------ */

static void test_corruption(void) {
    char path[256], bad[256], err[1024] = "", what[128];
    path_in(path, sizeof path, "small.ckpt");
    path_in(bad, sizeof bad, "bad.ckpt");
    size_t n;
    uint8_t *good = slurp(path, &n), *b = malloc(n + 1);
    CHECK(b, "malloc");
    uint64_t table = rd64(good + 16);

    /* Every byte flipped: refused, unless it is padding between sections. */
    uint8_t *meaning = calloc(n, 1); /* 1 header, 2 table, 3 section data */
    const char *owner[1 << 12] = {0};
    CHECK(meaning && n < (1 << 12), "small file");
    for (size_t i = 0; i < 64; i++) meaning[i] = 1;
    for (size_t i = table; i < n; i++) meaning[i] = 2;
    for (uint64_t e = table; e < n; e += 128) {
        for (uint64_t k = rd64(good + e + 80); k < rd64(good + e + 80) + rd64(good + e + 88); k++) {
            meaning[k] = 3;
            owner[k] = (const char *)good + e;
        }
    }
    int refused = 0, padding_ok = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(b, good, n);
        b[i] ^= (uint8_t)(1u << (i % 8));
        spit(bad, b, n);
        err[0] = '\0';
        int rc = open_and_read_all(bad, err, sizeof err);
        if (meaning[i] == 0) {
            padding_ok += rc == 0;
            continue;
        }
        snprintf(what, sizeof what, "byte %zu flipped", i);
        refused += rc == -1;
        EXPECT(rc == -1 && strstr(err, bad), "%s: '%s'", what, err);
        if (meaning[i] == 3) {
            char needle[128];
            snprintf(needle, sizeof needle, "section '%s' at byte offset", owner[i]);
            EXPECT(strstr(err, needle) && strstr(err, "CRC32C mismatch"), "%s: '%s'", what, err);
        } else if (meaning[i] == 2) {
            EXPECT(strstr(err, "header CRC mismatch"), "%s: '%s'", what, err);
        } else if (i < 8) {
            EXPECT(strstr(err, "byte offset 0: bad magic"), "%s: '%s'", what, err);
        } else if (i < 12) {
            EXPECT(strstr(err, "byte offset 8: format version"), "%s: '%s'", what, err);
        } else if (i >= 32) {
            EXPECT(strstr(err, "header CRC mismatch"), "%s: '%s'", what, err);
        }
    }
    size_t padding = 0;
    for (size_t i = 0; i < n; i++) padding += meaning[i] == 0;
    EXPECT(padding_ok == (int)padding && padding > 0, "padding flips: %d of %zu read fine", padding_ok,
           padding);
    fprintf(stderr, "  %d of %zu single-bit flips refused (the other %zu are in padding)\n", refused, n,
            padding);
    free(meaning);

    /* Truncated at every cut point, and one byte appended. */
    for (size_t cut = 0; cut < n; cut++) {
        spit(bad, good, cut);
        snprintf(what, sizeof what, "cut at %zu", cut);
        expect_refused(bad, what, cut < 8 ? "bad magic" : cut < 64 ? "truncated at byte" : "byte offset 24",
                       NULL);
    }
    memcpy(b, good, n);
    b[n] = 0;
    spit(bad, b, n + 1);
    char sizes[96];
    snprintf(sizes, sizeof sizes, "has %zu bytes but it has %zu", n, n + 1);
    expect_refused(bad, "appended byte", "byte offset 24", sizes);

    /* Wrong magic; another version (with a valid CRC). */
    memcpy(b, good, n);
    memcpy(b, "AFDUMP01", 8);
    spit(bad, b, n);
    expect_refused(bad, "dump file magic", "byte offset 0: bad magic", NULL);
    memcpy(b, good, n);
    b[8] = 2;
    fix_header_crc(b, n);
    spit(bad, b, n);
    expect_refused(bad, "version 2", "byte offset 8: format version 2, this build reads 1", NULL);

    /* Table entries that are wrong but carry a valid header CRC. Entry 0 is
     * 'weights' (f32 x 100), entry 1 'config', entry 3 'ints'. */
    uint8_t *e0 = b + table, *e1 = b + table + 128;
    char entry0[64];
    snprintf(entry0, sizeof entry0, "table entry at byte offset %llu", (unsigned long long)table);
    static const struct {
        int field, entry; /* byte offset within the entry, entry index */
        uint64_t value;
        int width;
        const char *needle;
    } edits[] = {
        {80, 0, 0, 8, "outside the data area"},                 /* offset 0: over the header */
        {80, 0, 1u << 20, 8, "outside the data area"},           /* past the end */
        {80, 0, UINT64_MAX - 63, 8, "outside the data area"},    /* wraps around */
        {88, 0, 404, 8, "size is not count x element size"},
        {72, 0, UINT64_MAX / 2, 8, "size is not count x element size"},
        {80, 0, 65, 8, "not a multiple of 64"},
        {64, 0, 7, 4, "unknown dtype"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        memcpy(b, good, n);
        uint8_t *e = b + table + 128 * (size_t)edits[i].entry;
        memcpy(e + edits[i].field, &edits[i].value, (size_t)edits[i].width);
        fix_header_crc(b, n);
        spit(bad, b, n);
        snprintf(what, sizeof what, "edit %zu", i);
        expect_refused(bad, what, edits[i].needle, "section 'weights' (table entry at byte offset");
    }
    /* The table says the data of 'weights' ends past the table: "pointing past the end". */
    memcpy(b, good, n);
    memcpy(e0 + 80, &table, 8);
    fix_header_crc(b, n);
    spit(bad, b, n);
    expect_refused(bad, "data at the table", entry0, "outside the data area");
    memcpy(b, good, n);
    memcpy(e1 + 80, e0 + 80, 8); /* config on top of weights */
    fix_header_crc(b, n);
    spit(bad, b, n);
    expect_refused(bad, "overlap", "'config' [", "overlap");
    memcpy(b, good, n);
    memcpy(e1, "weights", 8);
    fix_header_crc(b, n);
    spit(bad, b, n);
    expect_refused(bad, "duplicate", "section 'weights' appears twice", NULL);
    memcpy(b, good, n);
    memset(e1, 'x', 64);
    fix_header_crc(b, n);
    spit(bad, b, n);
    expect_refused(bad, "unterminated name", "not NUL-terminated", "entry 1 at byte offset");
    memcpy(b, good, n);
    uint32_t sections = 5;
    memcpy(b + 12, &sections, 4);
    fix_header_crc(b, n);
    spit(bad, b, n);
    expect_refused(bad, "section count", "byte offset 16", "does not end at the end of the file");

    /* Mismatched reads of a good file. */
    CkptReader *r = NULL;
    CHECK(ckpt_open(&r, path, err, sizeof err) == 0, "%s", err);
    float f[101];
    int64_t i64[4];
    EXPECT(ckpt_read(r, "weights", CKPT_I64, i64, 100, err, sizeof err) == -1 &&
               strstr(err, "section 'weights'") && strstr(err, "holds f32, read as i64") && strstr(err, path),
           "dtype mismatch: '%s'", err);
    EXPECT(ckpt_read(r, "weights", CKPT_F32, f, 99, err, sizeof err) == -1 &&
               strstr(err, "holds 100 elements, the reader expects 99"), "count mismatch: '%s'", err);
    EXPECT(ckpt_read(r, "weights", CKPT_F32, f, 101, err, sizeof err) == -1, "count 101 accepted");
    EXPECT(ckpt_read(r, "wieghts", CKPT_F32, f, 100, err, sizeof err) == -1 &&
               strstr(err, "no section 'wieghts'"), "missing section: '%s'", err);
    EXPECT(ckpt_read_range(r, "weights", CKPT_F32, 95, 6, f, err, sizeof err) == -1 &&
               strstr(err, "cannot read [95, +6)"), "range past the end: '%s'", err);
    EXPECT(ckpt_read_range(r, "weights", CKPT_F32, UINT64_MAX, 2, f, err, sizeof err) == -1,
           "wrapping range accepted");
    EXPECT(ckpt_read_range(r, "ints", CKPT_F32, 0, 1, f, err, sizeof err) == -1 &&
               strstr(err, "holds i64, read as f32"), "range dtype: '%s'", err);
    ckpt_close(&r);

    /* Not a checkpoint at all. */
    path_in(bad, sizeof bad, "missing.ckpt");
    EXPECT(ckpt_open(&r, bad, err, sizeof err) == -1 && !r && strstr(err, bad) &&
               strstr(err, "No such file"), "missing file: '%s'", err);
    EXPECT(ckpt_open(&r, g_dir, err, sizeof err) == -1 && strstr(err, "not a regular file"),
           "directory: '%s'", err);
    free(good);
    free(b);
}

/* ---- atomic replace ----------------------------------------------------------------- */

/* Tries to replace path with one section of `count` floats under a file size
 * limit; must fail with EFBIG at add (at_commit 0) or at commit (1). */
static void failed_replace(const char *path, uint64_t count, rlim_t limit, int at_commit) {
    float *x = calloc(count, 4);
    CHECK(x, "calloc");
    char err[1024] = "";
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0, "getrlimit");
    lim = old;
    lim.rlim_cur = limit;
    CkptWriter *w = NULL;
    CHECK(ckpt_writer_open(&w, path, err, sizeof err) == 0, "%s", err);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit: %s", strerror(errno));
    int add = ckpt_writer_add(w, "x", CKPT_F32, x, count, err, sizeof err);
    char add_err[1024];
    snprintf(add_err, sizeof add_err, "%s", err);
    int commit = ckpt_writer_commit(&w, err, sizeof err);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0, "restore rlimit");
    const char *msg = at_commit ? err : add_err; /* names both paths, the offset, the errno */
    char at[64];
    snprintf(at, sizeof at, "at byte offset %llu", (unsigned long long)limit);
    EXPECT(add == (at_commit ? 0 : -1) && commit == -1 && strstr(msg, path) && strstr(msg, ".tmp.") &&
               strstr(msg, at) && strstr(msg, strerror(EFBIG)),
           "limit %llu: add %d '%s', commit %d '%s'", (unsigned long long)limit, add, add_err, commit, err);
    EXPECT(!w, "commit leaves the writer freed");
    free(x);
}

static void test_atomicity(void) {
    char path[256], err[1024] = "";
    path_in(path, sizeof path, "atomic.ckpt");
    write_small(path);
    size_t n0, n1;
    uint8_t *before = slurp(path, &n0), *after;

    /* Beyond RLIMIT_FSIZE a write is cut short, the next one fails with EFBIG
     * (SIGXFSZ, which would end the process, ignored). */
    CHECK(signal(SIGXFSZ, SIG_IGN) != SIG_ERR, "ignore SIGXFSZ");
    failed_replace(path, 25000, 64 + 1000, 0); /* in the middle of a 100 KB section */
    failed_replace(path, 1024, 64, 0);         /* at its first byte */
    failed_replace(path, 1024, 64 + 4096, 1);  /* the data fits, the table does not */
    failed_replace(path, 1024, 64 + 4096 + 1, 1); /* 1 byte of the table fits */
    after = slurp(path, &n1);
    EXPECT(n0 == n1 && memcmp(before, after, n0) == 0, "a failed replace changed %s", path);
    free(after);
    EXPECT(count_entries(g_dir, "atomic.ckpt.tmp") == 0, "a failed replace left its temporary file");
    EXPECT(open_and_read_all(path, err, sizeof err) == 0, "old file unreadable: %s", err);

    /* A directory that does not exist. */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.ckpt", g_dir);
    CkptWriter *w = NULL;
    EXPECT(ckpt_writer_open(&w, missing, err, sizeof err) == -1 && !w && strstr(err, missing) &&
               strstr(err, strerror(ENOENT)), "missing directory: '%s'", err);
    /* Read-only directory (root ignores permissions, so only as non-root). */
    if (geteuid() != 0) {
        char ro[256], ro_file[300];
        path_in(ro, sizeof ro, "readonly");
        snprintf(ro_file, sizeof ro_file, "%s/x.ckpt", ro);
        CHECK(mkdir(ro, 0555) == 0, "mkdir");
        EXPECT(ckpt_writer_open(&w, ro_file, err, sizeof err) == -1 && strstr(err, strerror(EACCES)),
               "read-only directory: '%s'", err);
        chmod(ro, 0755);
    }

    /* A successful replace does replace, and abort changes nothing. */
    float x[3] = {1, 2, 3};
    CHECK(ckpt_writer_open(&w, path, err, sizeof err) == 0, "%s", err);
    CHECK(ckpt_writer_add(w, "x", CKPT_F32, x, 3, err, sizeof err) == 0, "%s", err);
    ckpt_writer_abort(&w);
    after = slurp(path, &n1);
    EXPECT(n0 == n1 && memcmp(before, after, n0) == 0, "abort changed %s", path);
    free(after);
    CHECK(ckpt_writer_open(&w, path, err, sizeof err) == 0, "%s", err);
    EXPECT(ckpt_writer_add(w, "x", CKPT_F32, x, 3, err, sizeof err) == 0 &&
               ckpt_writer_commit(&w, err, sizeof err) == 0, "replace: %s", err);
    CkptReader *r = NULL;
    float y[3] = {0};
    EXPECT(ckpt_open(&r, path, err, sizeof err) == 0 && ckpt_num_sections(r) == 1 &&
               ckpt_read(r, "x", CKPT_F32, y, 3, err, sizeof err) == 0 && y[2] == 3,
           "replaced file: %s", err);
    ckpt_close(&r);
    EXPECT(count_entries(g_dir, ".tmp.") == 0, "temporary files left");
    free(before);
}

/* ---- classifier rows across files ------------------------------------------------------ */

#define C 1001
#define D 7

static float g_w[C * D], g_m[C * D];

static void write_shards(const char *dir, const int64_t *starts, int n, int with_momentum) {
    char err[1024] = "", path[CKPT_PATH_MAX];
    for (int p = 0; p < n; p++) {
        CHECK(ckpt_classifier_path(path, sizeof path, dir, p) == 0, "path");
        int64_t rows = starts[p + 1] - starts[p];
        CHECK(ckpt_classifier_write(path, starts[p], rows, D, g_w + starts[p] * D,
                                    with_momentum ? g_m + starts[p] * D : NULL, err, sizeof err) == 0,
              "%s", err);
    }
}

/* Opening these files (paths in the given order) must fail naming needle. */
static void expect_tiling_refused(const char *const *paths, int n, int64_t classes, const char *needle) {
    CkptClassifierSet *s = NULL;
    char err[1024] = "";
    EXPECT(ckpt_classifier_open(&s, paths, n, classes, err, sizeof err) == -1 && !s && strstr(err, needle),
           "tiling '%s' not refused: '%s'", needle, err);
    ckpt_classifier_close(&s);
}

static void test_reshard(void) {
    test_fill_uniform(g_w, C * D, -1, 1, 21);
    test_fill_uniform(g_m, C * D, -0.1f, 0.1f, 22);
    char dir[256], err[1024] = "", p[4][CKPT_PATH_MAX];
    path_in(dir, sizeof dir, "shards");
    CHECK(mkdir(dir, 0755) == 0, "mkdir");
    static const int64_t starts[4] = {0, 333, 334, C}; /* a 1-row file in the middle */
    write_shards(dir, starts, 3, 1);
    for (int i = 0; i < 4; i++) ckpt_classifier_path(p[i], sizeof p[i], dir, i);
    const char *shuffled[3] = {p[2], p[0], p[1]};

    CkptClassifierSet *s = NULL;
    EXPECT(ckpt_classifier_open(&s, shuffled, 3, C, err, sizeof err) == 0, "open: %s", err);
    if (!s) return;
    EXPECT(ckpt_classifier_num_classes(s) == C && ckpt_classifier_dim(s) == D, "shape");
    float *buf = malloc(sizeof g_w);
    CHECK(buf, "malloc");
    for (int servers = 1; servers <= 5; servers++) {
        for (int q = 0; q < servers; q++) {
            int64_t a = (int64_t)C * q / servers, b = (int64_t)C * (q + 1) / servers;
            for (int which = 0; which < 2; which++) {
                const float *want = (which ? g_m : g_w) + a * D;
                memset(buf, 0xff, sizeof g_w);
                EXPECT(ckpt_classifier_read_rows(s, which ? CKPT_SEC_MOMENTUM : CKPT_SEC_WEIGHT, a, b, buf,
                                                 err, sizeof err) == 0 &&
                           memcmp(buf, want, (size_t)(b - a) * D * 4) == 0,
                       "%d servers, server %d rows [%lld, %lld) of %s: %s", servers, q, (long long)a,
                       (long long)b, which ? "momentum" : "weight", err);
            }
        }
    }
    static const int64_t ranges[][2] = {{0, 0}, {332, 335}, {333, 334}, {333, 333}, {1000, 1001},
                                        {0, C}, {334, 335}, {100, 900}};
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        int64_t a = ranges[i][0], b = ranges[i][1];
        EXPECT(ckpt_classifier_read_rows(s, CKPT_SEC_WEIGHT, a, b, buf, err, sizeof err) == 0 &&
                   memcmp(buf, g_w + a * D, (size_t)(b - a) * D * 4) == 0, "rows [%lld, %lld): %s",
               (long long)a, (long long)b, err);
    }
    EXPECT(ckpt_classifier_read_rows(s, CKPT_SEC_WEIGHT, 5, C + 1, buf, err, sizeof err) == -1 &&
               strstr(err, "holds [0, 1001)"), "rows past the end: '%s'", err);
    EXPECT(ckpt_classifier_read_rows(s, CKPT_SEC_WEIGHT, 7, 6, buf, err, sizeof err) == -1, "a > b");
    EXPECT(ckpt_classifier_read_rows(s, "nosuch", 0, 5, buf, err, sizeof err) == -1 &&
               strstr(err, "'nosuch'") && strstr(err, "(missing)"), "missing section: '%s'", err);
    ckpt_classifier_close(&s);
    EXPECT(!s, "close sets NULL");

    /* num_classes < 0 takes what the files cover. */
    EXPECT(ckpt_classifier_open(&s, shuffled, 3, -1, err, sizeof err) == 0 &&
               ckpt_classifier_num_classes(s) == C, "open with any num_classes: %s", err);
    ckpt_classifier_close(&s);

    /* Tiling errors. */
    const char *gap[2] = {p[0], p[2]}, *overlap[4] = {p[0], p[1], p[2], p[1]};
    expect_tiling_refused(shuffled, 3, 1000, "cover rows [0, 1001), expected [0, 1000)");
    expect_tiling_refused(gap, 2, C, "leave rows [333, 334) uncovered");
    expect_tiling_refused(gap + 1, 1, C, "leave rows [0, 334) uncovered");
    expect_tiling_refused(overlap, 4, C, "classifier files overlap");
    expect_tiling_refused(NULL, 0, C, "no files");
    /* Another dim in the middle file. */
    char odd[CKPT_PATH_MAX];
    snprintf(odd, sizeof odd, "%s/dim8.ckpt", dir);
    float row8[8] = {0};
    CHECK(ckpt_classifier_write(odd, 333, 1, 8, row8, row8, err, sizeof err) == 0, "%s", err);
    const char *mixed[3] = {p[0], odd, p[2]};
    expect_tiling_refused(mixed, 3, C, "dim 8");

    /* A file without momentum: weights read, momentum refused naming the file. */
    char nomo_dir[256];
    path_in(nomo_dir, sizeof nomo_dir, "shards_nomo");
    CHECK(mkdir(nomo_dir, 0755) == 0, "mkdir");
    write_shards(nomo_dir, starts, 3, 0);
    char q[3][CKPT_PATH_MAX];
    const char *qp[3];
    for (int i = 0; i < 3; i++) {
        ckpt_classifier_path(q[i], sizeof q[i], nomo_dir, i);
        qp[i] = q[i];
    }
    EXPECT(ckpt_classifier_open(&s, qp, 3, C, err, sizeof err) == 0, "%s", err);
    if (s) {
        EXPECT(ckpt_classifier_read_rows(s, CKPT_SEC_WEIGHT, 0, C, buf, err, sizeof err) == 0, "%s", err);
        EXPECT(ckpt_classifier_read_rows(s, CKPT_SEC_MOMENTUM, 0, 10, buf, err, sizeof err) == -1 &&
                   strstr(err, q[0]) && strstr(err, "'momentum'"), "no momentum: '%s'", err);
        ckpt_classifier_close(&s);
    }

    /* A corrupt weight in file 2: rows of files 0 and 1 still read, any row of
     * file 2 is refused naming the file and section. */
    size_t n;
    uint8_t *b = slurp(p[2], &n);
    b[section_offset(b, n, CKPT_SEC_WEIGHT) + 4 * D * 100 + 5] ^= 1; /* row 434 */
    char corrupt[CKPT_PATH_MAX];
    snprintf(corrupt, sizeof corrupt, "%s/corrupt.ckpt", dir);
    spit(corrupt, b, n);
    free(b);
    const char *with_corrupt[3] = {p[0], p[1], corrupt};
    EXPECT(ckpt_classifier_open(&s, with_corrupt, 3, C, err, sizeof err) == 0, "%s", err);
    if (s) {
        EXPECT(ckpt_classifier_read_rows(s, CKPT_SEC_WEIGHT, 0, 334, buf, err, sizeof err) == 0, "%s", err);
        EXPECT(ckpt_classifier_read_rows(s, CKPT_SEC_WEIGHT, 334, 335, buf, err, sizeof err) == -1 &&
                   strstr(err, corrupt) && strstr(err, "section 'weight'") && strstr(err, "CRC32C"),
               "corrupt rows: '%s'", err);
        EXPECT(ckpt_classifier_read_rows(s, CKPT_SEC_MOMENTUM, 0, C, buf, err, sizeof err) == 0 &&
                   memcmp(buf, g_m, sizeof g_m) == 0, "momentum beside a corrupt weight: %s", err);
        ckpt_classifier_close(&s);
    }
    free(buf);
}

/* ---- checkpoint directories -------------------------------------------------------------- */

/* A checkpoint of `step` in out (marked complete or not): backbone.ckpt with
 * every documented section, and g_w, g_m (filled by test_reshard) in 2
 * classifier files. */
static void save_checkpoint(const char *out, int64_t step, int complete) {
    char dir[CKPT_PATH_MAX], path[CKPT_PATH_MAX], err[1024] = "";
    CHECK(ckpt_dir_create(out, step, dir, sizeof dir, err, sizeof err) == 0, "%s", err);
    static const char config[] = "network = r18\nbatch_size = 64\n";
    uint64_t rng[4] = {1, 2, 3, (uint64_t)step};
    float params[10] = {0}, bn[6] = {0};
    params[0] = (float)step;
    CkptWriter *w = NULL;
    CHECK(ckpt_backbone_path(path, sizeof path, dir) == 0, "path");
    int rc = ckpt_writer_open(&w, path, err, sizeof err);
    rc = rc || ckpt_writer_add(w, CKPT_SEC_CONFIG, CKPT_U8, config, sizeof config - 1, err, sizeof err);
    rc = rc || ckpt_writer_add_i64(w, CKPT_SEC_STEP, step, err, sizeof err);
    rc = rc || ckpt_writer_add_i64(w, CKPT_SEC_EPOCH, step / 100, err, sizeof err);
    rc = rc || ckpt_writer_add_i64(w, CKPT_SEC_DATA_POSITION, step * 64, err, sizeof err);
    rc = rc || ckpt_writer_add(w, CKPT_SEC_RNG_STATE, CKPT_U64, rng, 4, err, sizeof err);
    rc = rc || ckpt_writer_add(w, CKPT_SEC_BACKBONE_PARAMS, CKPT_F32, params, 10, err, sizeof err);
    rc = rc || ckpt_writer_add(w, CKPT_SEC_BACKBONE_MOMENTUM, CKPT_F32, params, 10, err, sizeof err);
    rc = rc || ckpt_writer_add(w, CKPT_SEC_BN_BUFFERS, CKPT_F32, bn, 6, err, sizeof err);
    rc = rc || ckpt_writer_commit(&w, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    static const int64_t starts[3] = {0, 400, C};
    write_shards(dir, starts, 2, 1);
    if (complete) CHECK(ckpt_dir_mark_complete(dir, step, 2, err, sizeof err) == 0, "%s", err);
}

static void expect_steps(const char *out, const int64_t *steps, size_t n, const char *what) {
    CkptDirEntry *list = NULL;
    size_t count = 99;
    char err[1024] = "", got[256] = "";
    EXPECT(ckpt_dir_list(out, &list, &count, err, sizeof err) == 0, "%s: list: %s", what, err);
    for (size_t i = 0; i < count; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), " %lld", (long long)list[i].step);
    int same = count == n;
    for (size_t i = 0; same && i < n; i++) {
        char path[CKPT_PATH_MAX];
        ckpt_dir_path(path, sizeof path, out, steps[i]);
        same = list[i].step == steps[i] && strcmp(list[i].path, path) == 0 && list[i].classifier_files == 2;
    }
    EXPECT(same, "%s: listed steps:%s", what, got);
    free(list);
}

static void test_directories(void) {
    char out[256], err[1024] = "", path[CKPT_PATH_MAX], dir[CKPT_PATH_MAX];
    path_in(out, sizeof out, "run/out"); /* made with its parent by ckpt_dir_create */
    CkptDirEntry latest;
    EXPECT(ckpt_dir_latest(out, &latest, err, sizeof err) == 0, "no checkpoints yet: %s", err);
    expect_steps(out, NULL, 0, "missing output_dir");

    save_checkpoint(out, 100, 1);
    ckpt_dir_path(dir, sizeof dir, out, 100);
    EXPECT(strstr(dir, "/checkpoint-0000000100") != NULL, "dir name %s", dir);
    EXPECT(ckpt_dir_mark_complete(dir, 100, 3, err, sizeof err) == -1 && strstr(err, "classifier-2.ckpt"),
           "mark complete with a missing file: '%s'", err);
    expect_steps(out, (int64_t[]){100}, 1, "one checkpoint");

    /* Everything comes back. */
    CkptReader *r = NULL;
    ckpt_backbone_path(path, sizeof path, dir);
    EXPECT(ckpt_open(&r, path, err, sizeof err) == 0, "%s", err);
    if (r) {
        int64_t step = 0, epoch = 0, pos = 0;
        uint64_t rng[4];
        char config[64] = "";
        int64_t clen = ckpt_section_count(r, CKPT_SEC_CONFIG);
        EXPECT(clen > 0 && clen < 64 && ckpt_read(r, CKPT_SEC_CONFIG, CKPT_U8, config, (uint64_t)clen, err,
                                                  sizeof err) == 0 &&
                   strncmp(config, "network = r18\n", 14) == 0, "config: %s", err);
        EXPECT(ckpt_read_i64(r, CKPT_SEC_STEP, &step, err, sizeof err) == 0 && step == 100 &&
                   ckpt_read_i64(r, CKPT_SEC_EPOCH, &epoch, err, sizeof err) == 0 && epoch == 1 &&
                   ckpt_read_i64(r, CKPT_SEC_DATA_POSITION, &pos, err, sizeof err) == 0 && pos == 6400 &&
                   ckpt_read(r, CKPT_SEC_RNG_STATE, CKPT_U64, rng, 4, err, sizeof err) == 0 && rng[3] == 100 &&
                   ckpt_verify(r, err, sizeof err) == 0,
               "backbone scalars: %s", err);
        ckpt_close(&r);
    }
    CkptClassifierSet *s = NULL;
    float rows[3 * D];
    EXPECT(ckpt_classifier_open_dir(&s, dir, C, err, sizeof err) == 0 &&
               ckpt_classifier_read_rows(s, CKPT_SEC_MOMENTUM, 399, 402, rows, err, sizeof err) == 0 &&
               memcmp(rows, g_m + 399 * D, sizeof rows) == 0, "classifier from the directory: %s", err);
    ckpt_classifier_close(&s);

    /* Complete, incomplete and look-alike directories. */
    save_checkpoint(out, 300, 1);
    save_checkpoint(out, 200, 1);
    save_checkpoint(out, 50, 0);  /* interrupted, older than the newest complete one */
    save_checkpoint(out, 250, 0); /* likewise */
    save_checkpoint(out, 400, 0); /* newer: may be being written */
    save_checkpoint(out, 600, 1);
    ckpt_dir_path(dir, sizeof dir, out, 600);
    join(path, dir, CKPT_COMPLETE_FILE);
    const char *other = "arcface-checkpoint 1\nstep 601\nclassifier_files 2\n"; /* another step */
    spit(path, other, strlen(other));
    static const char *junk[] = {"checkpoint-abc", "checkpoint-00000001", "checkpoint-00000000700", "other"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", out, junk[i]);
        CHECK(mkdir(path, 0755) == 0, "mkdir %s", path);
        snprintf(path + strlen(path), sizeof path - strlen(path), "/" CKPT_COMPLETE_FILE);
        const char *text = "arcface-checkpoint 1\nstep 1\nclassifier_files 2\n";
        spit(path, text, strlen(text));
    }
    snprintf(path, sizeof path, "%s/checkpoint-0000000500", out); /* a file, not a directory */
    spit(path, "x", 1);
    expect_steps(out, (int64_t[]){100, 200, 300}, 3, "mixed directory");
    EXPECT(ckpt_dir_latest(out, &latest, err, sizeof err) == 1 && latest.step == 300 &&
               strstr(latest.path, "checkpoint-0000000300"), "latest %lld: %s", (long long)latest.step, err);

    /* Prune: keep 2 complete, drop incomplete ones older than 300. */
    EXPECT(ckpt_dir_prune(out, 2, err, sizeof err) == 0, "prune: %s", err);
    expect_steps(out, (int64_t[]){200, 300}, 2, "after prune 2");
    static const struct {
        int64_t step;
        int present;
    } after[] = {{50, 0}, {100, 0}, {200, 1}, {250, 0}, {300, 1}, {400, 1}, {600, 1}};
    for (size_t i = 0; i < sizeof after / sizeof after[0]; i++) {
        ckpt_dir_path(dir, sizeof dir, out, after[i].step);
        EXPECT(exists(dir) == after[i].present, "step %lld: present %d, expected %d",
               (long long)after[i].step, exists(dir), after[i].present);
    }
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", out, junk[i]);
        EXPECT(exists(path), "prune removed %s", path);
    }
    EXPECT(ckpt_dir_prune(out, 2, err, sizeof err) == 0, "second prune: %s", err);
    expect_steps(out, (int64_t[]){200, 300}, 2, "prune is idempotent");
    EXPECT(ckpt_dir_prune(out, 0, err, sizeof err) == -1 && strstr(err, "keep_last_k"), "k = 0: '%s'", err);
    EXPECT(ckpt_dir_prune(out, 1, err, sizeof err) == 0, "prune 1: %s", err);
    expect_steps(out, (int64_t[]){300}, 1, "after prune 1");

    /* Re-saving an existing step makes it incomplete until marked again. */
    char again[CKPT_PATH_MAX];
    EXPECT(ckpt_dir_create(out, 300, again, sizeof again, err, sizeof err) == 0, "%s", err);
    expect_steps(out, NULL, 0, "re-created step");
    EXPECT(ckpt_dir_mark_complete(again, 300, 2, err, sizeof err) == 0, "%s", err);
    expect_steps(out, (int64_t[]){300}, 1, "marked again");

    /* A directory that cannot be removed is reported, the rest still pruned. */
    save_checkpoint(out, 10, 0);
    save_checkpoint(out, 20, 0);
    ckpt_dir_path(dir, sizeof dir, out, 10);
    join(path, dir, "subdir");
    CHECK(mkdir(path, 0755) == 0, "mkdir");
    EXPECT(ckpt_dir_prune(out, 1, err, sizeof err) == -1 && strstr(err, "subdir"), "subdir: '%s'", err);
    ckpt_dir_path(path, sizeof path, out, 20);
    EXPECT(!exists(path), "prune gave up after the first failure");
    expect_steps(out, (int64_t[]){300}, 1, "after a failed prune");

    EXPECT(ckpt_dir_path(path, sizeof path, out, -1) == -1 && ckpt_dir_path(path, sizeof path, out,
                                                                           10000000000LL) == -1 &&
               ckpt_dir_path(path, 10, out, 1) == -1 && ckpt_dir_path(path, sizeof path, "", 1) == -1,
           "bad ckpt_dir_path arguments accepted");
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    return remove(path);
}

int main(void) {
    log_set_role("test", -1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    snprintf(g_dir, sizeof g_dir, "/tmp/test_checkpoint_XXXXXX");
    CHECK(mkdtemp(g_dir), "mkdtemp");
    test_round_trip();
    test_big();
    test_corruption();
    test_atomicity();
    test_reshard();
    test_directories();
    if (test_failures == 0 && nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "test_checkpoint: %.2f s\n",
            (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return test_finish("test_checkpoint");
}
