/* test_recordio.c -- insightface RecordIO: pack an image folder and read it
 * back (bytes, labels, keys, identity records, multi-part records, threads);
 * compatibility with tests/tools/mxrecordio.py (a stdlib re-implementation of
 * MXNet's recordio and insightface's face2rec2 layout) in both directions; and
 * malformed files, each rejected with an error naming the file and the offset
 * or line. Needs ARCFACE_SOURCE_DIR to find the Python tool (skipped, with a
 * message, when python3 is missing). */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "log.h"
#include "recordio.h"
#include "recordio_pack.h"
#include "testutil.h"

static char g_dir[64];
static const uint8_t MAGIC[4] = {0x0A, 0x23, 0xD7, 0xCE};

/* g_dir/name in one of 8 rotating buffers. */
static const char *tpath(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *tpath(const char *fmt, ...) {
    static char bufs[8][512];
    static int next;
    char *p = bufs[next++ & 7], name[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    snprintf(p, 512, "%s/%s", g_dir, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot create %s", path);
    CHECK(len == 0 || fwrite(data, 1, len, f) == len, "write %s", path);
    CHECK(fclose(f) == 0, "close %s", path);
}

static uint8_t *read_bytes(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    CHECK(p && fread(p, 1, (size_t)n, f) == (size_t)n, "read %s", path);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static int file_exists(const char *path) { return access(path, F_OK) == 0; }

static void make_dir(const char *path) { CHECK(mkdir(path, 0777) == 0, "mkdir %s", path); }

static void fill_random(uint8_t *p, size_t n, uint64_t seed) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
}

/* rc must be -1 and err must contain every needle (NULL-terminated list). */
static void vexpect_fail(int rc, const char *err, const char *what, va_list ap) {
    EXPECT(rc == -1, "%s: accepted (rc %d)", what, rc);
    for (const char *needle; (needle = va_arg(ap, const char *)) != NULL;)
        EXPECT(rc == -1 && strstr(err, needle), "%s: error '%s' lacks '%s'", what, err, needle);
}

static void expect_fail(int rc, const char *err, const char *what, ...) {
    va_list ap;
    va_start(ap, what);
    vexpect_fail(rc, err, what, ap);
    va_end(ap);
}

/* ---- (a) pack an image folder and read it back --------------------------------- */

typedef struct {
    const char *dir, *name;
    int label;
    size_t len;
    uint8_t data[5000];
} TestImage;

static TestImage g_images[9] = {
    {"id_a", "01.jpg", 0, 100, {0}},   {"id_a", "02.jpeg", 0, 1, {0}},   {"id_a", "03.png", 0, 12, {0}},
    {"id_b", "magic.jpg", 1, 64, {0}}, {"id_b", "unaligned.JPG", 1, 11, {0}},
    {"id_c", "a.PGM", 2, 7, {0}},      {"id_c", "b.ppm", 2, 3, {0}},      {"id_c", "c.Png", 2, 33, {0}},
    {"id_c", "d.jpg", 2, 5000, {0}},
};
#define N_IMAGES 9

static void build_folder(const char *root) {
    make_dir(root);
    const char *dirs[] = {"id_a", "id_b", "id_c", "empty_id", ".hidden"};
    for (int i = 0; i < 5; i++) make_dir(tpath("img/%s", dirs[i]));
    for (int i = 0; i < N_IMAGES; i++) {
        TestImage *t = &g_images[i];
        fill_random(t->data, t->len, (uint64_t)i + 1);
        if (strcmp(t->name, "magic.jpg") == 0) { /* aligned in the record: split into 4 parts */
            memcpy(t->data, MAGIC, 4);
            memcpy(t->data + 8, MAGIC, 4);
            memcpy(t->data + 60, MAGIC, 4);
        }
        if (strcmp(t->name, "unaligned.JPG") == 0) { /* never aligned: one part */
            memcpy(t->data + 1, MAGIC, 4);
            memcpy(t->data + 6, MAGIC, 4);
        }
        write_bytes(tpath("img/%s/%s", t->dir, t->name), t->data, t->len);
    }
    write_bytes(tpath("img/id_b/x.txt"), "text", 4);
    write_bytes(tpath("img/empty_id/readme.md"), "text", 4);
    write_bytes(tpath("img/list.txt"), "text", 4);
    write_bytes(tpath("img/.hidden/z.jpg"), "zzzz", 4);
}

/* Checks every image, record 0 and the identity records of a face2rec2-style set. */
static void check_insightface_set(const char *rec, int image_flag_alternates) {
    RecReader *r = NULL;
    char err[512] = "";
    EXPECT(rec_open(&r, rec, NULL, err, sizeof err) == 0, "open %s: %s", rec, err);
    if (!r) return;
    EXPECT(rec_num_images(r) == N_IMAGES && rec_num_classes(r) == 3, "%s: %zu images, %lld classes", rec,
           rec_num_images(r), (long long)rec_num_classes(r));
    uint64_t first = 0, end = 0;
    EXPECT(rec_identity_range(r, &first, &end) == 1 && first == 10 && end == 13, "identity range [%llu, %llu)",
           (unsigned long long)first, (unsigned long long)end);
    uint8_t *buf = NULL;
    size_t cap = 0, len, plen;
    const uint8_t *payload;
    const float *labels;
    IRHeader h;
    for (size_t i = 0; i < N_IMAGES; i++) {
        int64_t label = -1;
        EXPECT(rec_image_key(r, i) == i + 1, "image %zu key %llu", i, (unsigned long long)rec_image_key(r, i));
        EXPECT(rec_read_image(r, i, &buf, &cap, &payload, &plen, &label, err, sizeof err) == 0, "%s", err);
        EXPECT(label == g_images[i].label && plen == g_images[i].len &&
                   memcmp(payload, g_images[i].data, plen) == 0,
               "%s: image %zu: label %lld, %zu bytes", rec, i, (long long)label, plen);
        EXPECT(rec_read_key(r, i + 1, &buf, &cap, &len, err, sizeof err) == 0 &&
                   rec_parse(buf, len, &h, &labels, &payload, &plen, err, sizeof err) == 0,
               "%s", err);
        if (image_flag_alternates && i % 2 == 0)
            EXPECT(h.flag == 0 && h.label == (float)g_images[i].label && labels == NULL, "flag-0 image %zu", i);
        else
            EXPECT(h.flag == 2 && h.label == 0 && labels[0] == (float)g_images[i].label && labels[1] == 1.0f,
                   "image %zu: flag %u labels", i, h.flag);
        EXPECT(h.id == i + 1 && h.id2 == 0, "image %zu id %llu", i, (unsigned long long)h.id);
    }
    EXPECT(rec_read_key(r, 0, &buf, &cap, &len, err, sizeof err) == 0 &&
               rec_parse(buf, len, &h, &labels, &payload, &plen, err, sizeof err) == 0,
           "%s", err);
    EXPECT(h.flag == 2 && h.label == 0 && labels[0] == 10 && labels[1] == 13 && h.id == 0 && plen == 0,
           "record 0: flag %u", h.flag);
    static const float ranges[3][2] = {{1, 4}, {4, 6}, {6, 10}};
    for (uint64_t c = 0; c < 3; c++) {
        EXPECT(rec_read_key(r, 10 + c, &buf, &cap, &len, err, sizeof err) == 0 &&
                   rec_parse(buf, len, &h, &labels, &payload, &plen, err, sizeof err) == 0,
               "%s", err);
        EXPECT(h.flag == 2 && h.id == 10 + c && labels[0] == ranges[c][0] && labels[1] == ranges[c][1] &&
                   plen == 0,
               "identity record %llu", (unsigned long long)(10 + c));
    }
    EXPECT(rec_read_key(r, 13, &buf, &cap, &len, err, sizeof err) == -1 && strstr(err, "key 13 is not in"),
           "unknown key: %s", err);
    free(buf);
    rec_close(&r);
    EXPECT(r == NULL, "rec_close sets NULL");
    rec_close(&r);
    rec_close(NULL);
}

typedef struct {
    RecReader *r;
    int failures;
} ThreadArg;

static void *reader_thread(void *p) {
    ThreadArg *a = p;
    uint8_t *buf = NULL;
    size_t cap = 0, plen;
    const uint8_t *payload;
    char err[256];
    for (int loop = 0; loop < 40; loop++)
        for (size_t i = 0; i < N_IMAGES; i++) {
            int64_t label;
            if (rec_read_image(a->r, (i * 7 + (size_t)loop) % N_IMAGES, &buf, &cap, &payload, &plen, &label,
                               err, sizeof err) != 0)
                a->failures++;
            else {
                const TestImage *t = &g_images[(i * 7 + (size_t)loop) % N_IMAGES];
                if (label != t->label || plen != t->len || memcmp(payload, t->data, plen) != 0) a->failures++;
            }
        }
    free(buf);
    return NULL;
}

typedef struct {
    uint64_t offsets[32];
    int n;
    size_t total;
} ScanLog;

static int scan_cb(void *ctx, uint64_t offset, const uint8_t *data, size_t len, char *err, size_t errlen) {
    ScanLog *s = ctx;
    if (s->n < 32) s->offsets[s->n] = offset;
    s->n++;
    s->total += len;
    return 0;
}

static void test_pack_round_trip(void) {
    build_folder(tpath("img"));
    make_dir(tpath("out"));
    RecPackStats st;
    char err[512] = "";
    EXPECT(rec_pack_folder(tpath("img"), tpath("out/train"), &st, err, sizeof err) == 0, "pack: %s", err);
    EXPECT(st.images == 9 && st.identities == 3 && st.empty_dirs == 1 && st.skipped_files == 3,
           "stats: %lld images %lld ids %lld empty %lld skipped", (long long)st.images, (long long)st.identities,
           (long long)st.empty_dirs, (long long)st.skipped_files);
    size_t len;
    char *prop = (char *)read_bytes(tpath("out/property"), &len);
    EXPECT(len == 10 && memcmp(prop, "3,112,112\n", 10) == 0, "property '%.*s'", (int)len, prop);
    free(prop);
    check_insightface_set(tpath("out/train.rec"), 0);

    /* .idx: images, then record 0, then the identities, at increasing offsets. */
    char *idx = (char *)read_bytes(tpath("out/train.idx"), &len);
    idx[len] = '\0';
    static const unsigned want_keys[13] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 10, 11, 12};
    unsigned long long key, off, offsets[13] = {0};
    int n = 0, used;
    for (const char *p = idx; n < 13 && sscanf(p, "%llu\t%llu\n%n", &key, &off, &used) == 2; p += used, n++) {
        EXPECT(key == want_keys[n] && (n == 0 ? off == 0 : off > offsets[n - 1]), "idx line %d: %llu %llu",
               n + 1, key, off);
        offsets[n] = off;
    }
    EXPECT(n == 13, "idx has %d lines", n);
    free(idx);

    /* Raw framing: the magic word only ever starts a part; one 4-part record. */
    uint8_t *rec = read_bytes(tpath("out/train.rec"), &len);
    EXPECT(len == st.rec_bytes, ".rec %zu bytes, stats %llu", len, (unsigned long long)st.rec_bytes);
    int parts[4] = {0, 0, 0, 0}, stray = 0;
    size_t next_head = 0;
    for (size_t p = 0; p + 8 <= len; p += 4) {
        int magic = memcmp(rec + p, MAGIC, 4) == 0;
        if (p == next_head) {
            uint32_t lrec;
            memcpy(&lrec, rec + p + 4, 4);
            EXPECT(magic && (lrec >> 29) < 4, "part at %zu", p);
            parts[(lrec >> 29) & 3]++;
            next_head = p + 8 + (((lrec & 0x1FFFFFFFu) + 3) & ~3u);
        } else if (magic) {
            stray++;
        }
    }
    EXPECT(next_head == len && stray == 0, "framing walk ends at %zu of %zu, %d stray magic words", next_head, len,
           stray);
    EXPECT(parts[0] == 12 && parts[1] == 1 && parts[2] == 2 && parts[3] == 1, "cflags %d %d %d %d", parts[0],
           parts[1], parts[2], parts[3]);
    free(rec);

    ScanLog s = {{0}, 0, 0};
    EXPECT(rec_scan(tpath("out/train.rec"), scan_cb, &s, err, sizeof err) == 0 && s.n == 13, "scan: %d: %s",
           s.n, err);
    for (int i = 0; i < 13 && i < s.n; i++)
        EXPECT(s.offsets[i] == offsets[i], "scan offset %d: %llu vs .idx %llu", i, (unsigned long long)s.offsets[i],
               offsets[i]);

    /* Several threads share one reader. */
    RecReader *r = NULL;
    EXPECT(rec_open(&r, tpath("out/train.rec"), tpath("out/train.idx"), err, sizeof err) == 0, "%s", err);
    if (r) {
        pthread_t th[4];
        ThreadArg args[4];
        for (int i = 0; i < 4; i++) {
            args[i] = (ThreadArg){r, 0};
            CHECK(pthread_create(&th[i], NULL, reader_thread, &args[i]) == 0, "pthread_create");
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            EXPECT(args[i].failures == 0, "thread %d: %d failures", i, args[i].failures);
        }
        rec_close(&r);
    }

    /* A failed pack leaves nothing behind. */
    make_dir(tpath("noimg"));
    make_dir(tpath("noimg/someone"));
    make_dir(tpath("out2"));
    expect_fail(rec_pack_folder(tpath("noimg"), tpath("out2/train"), NULL, err, sizeof err), err, "no images",
                tpath("noimg"), "no images", NULL);
    expect_fail(rec_pack_folder(tpath("out2"), tpath("out2/train"), NULL, err, sizeof err), err, "no identities",
                "no identity sub-directories", NULL);
    expect_fail(rec_pack_folder(tpath("img"), tpath("missing/train"), NULL, err, sizeof err), err, "no out dir",
                tpath("missing/train.rec"), NULL);
    expect_fail(rec_pack_folder(tpath("nonexistent"), tpath("out2/train"), NULL, err, sizeof err), err,
                "no root", tpath("nonexistent"), NULL);
    DIR *d = opendir(tpath("out2"));
    int entries = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) entries += e->d_name[0] != '.';
    if (d) closedir(d);
    EXPECT(entries == 0, "failed packs left %d files in out2", entries);

    RecWriter *w = NULL;
    EXPECT(rec_writer_open(&w, tpath("out2/abort.rec"), NULL, err, sizeof err) == 0, "%s", err);
    EXPECT(rec_writer_add_raw(w, 0, "abcd", 4, err, sizeof err) == 0, "%s", err);
    EXPECT(rec_writer_close(&w, 0, err, sizeof err) == 0 && w == NULL, "abort");
    EXPECT(!file_exists(tpath("out2/abort.rec")) && !file_exists(tpath("out2/abort.idx")), "abort left files");
    EXPECT(rec_writer_close(&w, 1, err, sizeof err) == 0, "close NULL");
}

/* ---- (b) the framing and the set layout against the Python reference ------------ */

#define N_PAYLOADS 24

/* Edge cases of the framing: every length mod 4, the magic alone, at the
 * start, the end, back to back, unaligned, and long random records. */
static size_t make_payload(int i, uint8_t *p) {
    size_t n;
    switch (i) {
    case 10: memcpy(p, MAGIC, 4); return 4;
    case 11: memcpy(p, MAGIC, 4); p[4] = 1; return 5;
    case 12: p[0] = 1; memcpy(p + 1, MAGIC, 4); return 5;
    case 13: memcpy(p, MAGIC, 4); memcpy(p + 4, MAGIC, 4); return 8;
    case 14: memcpy(p, "abcd", 4); memcpy(p + 4, MAGIC, 4); return 8;
    case 15: fill_random(p, 12, 15); memcpy(p + 8, MAGIC, 4); return 12;
    case 16: memcpy(p, MAGIC, 4); p[4] = 7; p[5] = 9; return 6;
    case 17: fill_random(p, 1000, 17); memcpy(p, MAGIC, 4); memcpy(p + 100, MAGIC, 4);
             memcpy(p + 996, MAGIC, 4); memcpy(p + 2, MAGIC, 4); return 1000;
    case 18: fill_random(p, 1003, 18); memcpy(p + 500, MAGIC, 4); memcpy(p + 999, MAGIC, 4); return 1003;
    default:
        n = i < 10 ? (size_t)i : (size_t)(4090 + i);
        fill_random(p, n, (uint64_t)i);
        return n;
    }
}

static char *hex_line(const uint8_t *p, size_t n) {
    char *s = malloc(2 * n + 2);
    for (size_t i = 0; i < n; i++) snprintf(s + 2 * i, 3, "%02x", p[i]);
    s[2 * n] = '\n';
    s[2 * n + 1] = '\0';
    return s;
}

static int have_python(void) { return system("python3 -c pass >/dev/null 2>&1") == 0; }

/* Runs tests/tools/mxrecordio.py with the formatted arguments; its exit code. */
static int run_tool(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_tool(const char *fmt, ...) {
    const char *src = getenv("ARCFACE_SOURCE_DIR");
    char script[600], cmd[2048], args[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    if (src) {
        snprintf(script, sizeof script, "%s/tests/tools/mxrecordio.py", src);
    } else { /* beside this file: __FILE__ is absolute under CMake */
        const char *slash = strrchr(__FILE__, '/');
        snprintf(script, sizeof script, "%.*stools/mxrecordio.py", slash ? (int)(slash - __FILE__ + 1) : 0,
                 __FILE__);
    }
    if (!file_exists(script)) {
        EXPECT(0, "%s not found: set ARCFACE_SOURCE_DIR to the source tree", script);
        return -1;
    }
    snprintf(cmd, sizeof cmd, "python3 '%s' %s", script, args);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_framing(int python) {
    static uint8_t payloads[N_PAYLOADS][4200];
    size_t lens[N_PAYLOADS];
    FILE *list = fopen(tpath("payloads.txt"), "w"), *raw = fopen(tpath("c2.rec"), "wb");
    CHECK(list && raw, "create files");
    RecWriter *w = NULL;
    char err[512] = "";
    CHECK(rec_writer_open(&w, tpath("c.rec"), NULL, err, sizeof err) == 0, "%s", err);
    uint64_t framed = 0;
    for (int i = 0; i < N_PAYLOADS; i++) {
        lens[i] = make_payload(i, payloads[i]);
        char *h = hex_line(payloads[i], lens[i]);
        fputs(h, list);
        free(h);
        EXPECT(rec_writer_add_raw(w, (uint64_t)i, payloads[i], lens[i], err, sizeof err) == 0, "%s", err);
        EXPECT(rec_write_record(raw, payloads[i], lens[i], err, sizeof err) == 0, "%s", err);
        framed += rec_framed_size(payloads[i], lens[i]);
    }
    EXPECT(rec_writer_offset(w) == framed, "rec_framed_size %llu vs %llu", (unsigned long long)framed,
           (unsigned long long)rec_writer_offset(w));
    EXPECT(rec_writer_close(&w, 1, err, sizeof err) == 0, "%s", err);
    fclose(list);
    fclose(raw);

    /* Read back: sequential scan and random access by the .idx offsets. */
    size_t len, clen;
    uint8_t *c = read_bytes(tpath("c.rec"), &clen);
    char *idx = (char *)read_bytes(tpath("c.idx"), &len);
    idx[len] = '\0';
    int fd = open(tpath("c.rec"), O_RDONLY);
    uint8_t *buf = NULL;
    size_t cap = 0, rlen;
    unsigned long long key, off;
    int n = 0, used;
    for (const char *p = idx; sscanf(p, "%llu\t%llu\n%n", &key, &off, &used) == 2; p += used, n++) {
        uint64_t next;
        EXPECT(rec_read_record_at(fd, "c.rec", clen, off, &buf, &cap, &rlen, &next, err, sizeof err) == 0 &&
                   rlen == lens[key] && (rlen == 0 || memcmp(buf, payloads[key], rlen) == 0),
               "record %llu: %s", key, err);
    }
    EXPECT(n == N_PAYLOADS, "c.idx has %d lines", n);
    ScanLog s = {{0}, 0, 0};
    size_t total = 0;
    for (int i = 0; i < N_PAYLOADS; i++) total += lens[i];
    EXPECT(rec_scan(tpath("c.rec"), scan_cb, &s, err, sizeof err) == 0 && s.n == N_PAYLOADS && s.total == total,
           "scan %d records, %zu bytes: %s", s.n, s.total, err);
    close(fd);
    free(buf);
    free(idx);

    int framed_by_python = python && run_tool("frame %s %s", tpath("payloads.txt"), tpath("py.rec")) == 0;
    EXPECT(!python || framed_by_python, "python frame");
    if (framed_by_python) {
        size_t plen, c2len;
        uint8_t *py = read_bytes(tpath("py.rec"), &plen), *c2 = read_bytes(tpath("c2.rec"), &c2len);
        EXPECT(plen == clen && memcmp(py, c, clen) == 0, "c.rec differs from MXNet's framing (%zu vs %zu bytes)",
               clen, plen);
        EXPECT(c2len == clen && memcmp(c2, c, clen) == 0, "rec_write_record differs from the writer");
        char *pyidx = (char *)read_bytes(tpath("py.idx"), &plen), *cidx = (char *)read_bytes(tpath("c.idx"), &len);
        EXPECT(plen == len && memcmp(pyidx, cidx, len) == 0, "c.idx differs from MXNet's");
        free(py), free(c2), free(pyidx), free(cidx);
        EXPECT(run_tool("readframe %s %s", tpath("payloads.txt"), tpath("c.rec")) == 0,
               "python reads c.rec");
    }
    free(c);
}

static void test_python_sets(void) {
    FILE *f = fopen(tpath("list.txt"), "w");
    CHECK(f, "list.txt");
    for (int i = 0; i < N_IMAGES; i++) {
        char *h = hex_line(g_images[i].data, g_images[i].len);
        fprintf(f, "%d\t%s", g_images[i].label, h);
        free(h);
    }
    fclose(f);
    /* C -> Python: our pack output read as MXFaceDataset does, and compared
     * byte for byte with face2rec2's. */
    EXPECT(run_tool("checkset %s %s", tpath("list.txt"), tpath("out/train")) == 0,
           "python checkset of arcface pack output");
    /* Python -> C: face2rec2 layout with both image label styles. */
    make_dir(tpath("py"));
    EXPECT(run_tool("makeset %s %s", tpath("list.txt"), tpath("py/train")) == 0,
           "python makeset");
    check_insightface_set(tpath("py/train.rec"), 1);
    /* Python -> C: im2rec layout, every key an image in .idx line order. */
    make_dir(tpath("plain"));
    EXPECT(run_tool("makeset --plain %s %s", tpath("list.txt"), tpath("plain/train")) ==
               0,
           "python makeset --plain");
    RecReader *r = NULL;
    char err[512] = "";
    EXPECT(rec_open(&r, tpath("plain/train.rec"), NULL, err, sizeof err) == 0, "%s", err);
    if (!r) return;
    uint64_t a, b;
    EXPECT(rec_num_images(r) == N_IMAGES && rec_num_classes(r) == -1 && rec_identity_range(r, &a, &b) == 0,
           "plain: %zu images, %lld classes", rec_num_images(r), (long long)rec_num_classes(r));
    uint8_t *buf = NULL;
    size_t cap = 0, plen;
    const uint8_t *payload;
    for (size_t i = 0; i < N_IMAGES; i++) {
        int64_t label;
        const TestImage *t = &g_images[N_IMAGES - 1 - i];
        EXPECT(rec_image_key(r, i) == N_IMAGES - 1 - i, "plain image %zu key", i);
        EXPECT(rec_read_image(r, i, &buf, &cap, &payload, &plen, &label, err, sizeof err) == 0 &&
                   label == t->label && plen == t->len && memcmp(payload, t->data, plen) == 0,
               "plain image %zu: %s", i, err);
    }
    free(buf);
    rec_close(&r);
}


/* ---- (c) malformed files --------------------------------------------------------- */

typedef struct {
    uint32_t h0_flag;
    float h0_labels[2];
    const uint8_t *rec2; /* raw record for key 2; NULL: a normal image */
    size_t len2;
    int omit_key; /* key left out, -1: none */
} SetSpec;

static const SetSpec BASE = {2, {4, 6}, NULL, 0, -1};

/* bad/<name>.rec + .idx: record 0 (the header) first, then images keys 1..3
 * (flag 0 label 0, 16 bytes; flag 2 [1, 1], 40 bytes; flag 0 label 1, 50 bytes). */
static void build_set(const char *name, const SetSpec *s, uint64_t off[4]) {
    RecWriter *w = NULL;
    char err[512];
    CHECK(rec_writer_open(&w, tpath("bad/%s.rec", name), NULL, err, sizeof err) == 0, "%s", err);
    uint8_t img[64];
    fill_random(img, sizeof img, 99);
    for (int k = 0; k < 4; k++) {
        off[k] = rec_writer_offset(w);
        if (k == s->omit_key) continue;
        IRHeader h = {0, 0.0f, (uint64_t)k, 0};
        float labels[2] = {1, 1};
        int rc;
        if (k == 0) {
            h.flag = s->h0_flag;
            rc = rec_writer_add(w, 0, &h, s->h0_labels, NULL, 0, err, sizeof err);
        } else if (k == 2 && s->rec2) {
            rc = rec_writer_add_raw(w, 2, s->rec2, s->len2, err, sizeof err);
        } else if (k == 2) {
            h.flag = 2;
            rc = rec_writer_add(w, 2, &h, labels, img, 40, err, sizeof err);
        } else {
            h.label = k == 1 ? 0.0f : 1.0f;
            rc = rec_writer_add(w, (uint64_t)k, &h, NULL, img, k == 1 ? 16 : 50, err, sizeof err);
        }
        CHECK(rc == 0, "%s", err);
    }
    CHECK(rec_writer_close(&w, 1, err, sizeof err) == 0, "%s", err);
}

static void write_variant(const char *name, const uint8_t *rec, size_t len, const char *idx) {
    write_bytes(tpath("bad/%s.rec", name), rec, len);
    write_bytes(tpath("bad/%s.idx", name), idx, strlen(idx));
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static void expect_open_fails(const char *name, ...) {
    RecReader *r = NULL;
    char err[512] = "";
    int rc = rec_open(&r, tpath("bad/%s.rec", name), NULL, err, sizeof err);
    va_list ap;
    va_start(ap, name);
    vexpect_fail(rc, err, name, ap);
    va_end(ap);
    EXPECT(r == NULL, "%s: failed open left a reader", name);
    rec_close(&r);
}

/* bad/<name> opens, but reading image i fails; so does scanning the .rec when scan is set. */
static void expect_image_fails(const char *name, size_t i, int scan, ...) {
    RecReader *r = NULL;
    char err[512] = "";
    EXPECT(rec_open(&r, tpath("bad/%s.rec", name), NULL, err, sizeof err) == 0, "%s: %s", name, err);
    if (!r) return;
    uint8_t *buf = NULL;
    size_t cap = 0, plen;
    const uint8_t *payload;
    int64_t label;
    va_list ap;
    va_start(ap, scan);
    vexpect_fail(rec_read_image(r, i, &buf, &cap, &payload, &plen, &label, err, sizeof err), err, name, ap);
    va_end(ap);
    if (scan) {
        ScanLog s = {{0}, 0, 0};
        va_start(ap, scan);
        vexpect_fail(rec_scan(tpath("bad/%s.rec", name), scan_cb, &s, err, sizeof err), err, name, ap);
        va_end(ap);
    }
    free(buf);
    rec_close(&r);
}

static void test_malformed(void) {
    make_dir(tpath("bad"));
    uint64_t off[4];
    char err[512], n1[256], n2[256];
    build_set("base", &BASE, off);
    CHECK(off[0] == 0 && off[1] == 40 && off[2] == 88 && off[3] == 168, "base layout %llu %llu %llu",
          (unsigned long long)off[1], (unsigned long long)off[2], (unsigned long long)off[3]);
    size_t size, idx_len;
    uint8_t *base = read_bytes(tpath("bad/base.rec"), &size);
    char *idx = (char *)read_bytes(tpath("bad/base.idx"), &idx_len);
    idx[idx_len] = '\0';
    CHECK(size == 252, "base size %zu", size);
    uint8_t *v = malloc(size);

    RecReader *r = NULL;
    EXPECT(rec_open(&r, tpath("bad/base.rec"), NULL, err, sizeof err) == 0 && rec_num_images(r) == 3 &&
               rec_num_classes(r) == 2,
           "base: %s", err);
    rec_close(&r);
    write_variant("crlf", base, size, "0\t0\r\n1\t40\r\n2\t88\r\n3\t168");
    EXPECT(rec_open(&r, tpath("bad/crlf.rec"), NULL, err, sizeof err) == 0, "CRLF .idx: %s", err);
    rec_close(&r);

    /* Truncated .rec: mid-record and mid-header. */
    write_variant("cut_record", base, 188, idx);
    expect_image_fails("cut_record", 2, 1, "cut_record.rec: truncated: record at offset 168 claims 74 bytes, "
                       "file ends at 188", NULL);
    write_variant("cut_header", base, 172, idx);
    expect_image_fails("cut_header", 2, 1, "cut_header.rec: truncated: record at offset 168: its 8-byte header "
                       "is cut by the end of the file at 172", NULL);

    /* .idx problems. */
    write_variant("idx_past", base, size, "0\t0\n1\t40\n2\t999999\n3\t168\n");
    expect_open_fails("idx_past", "idx_past.idx line 3: offset 999999 past the end of",
                      "idx_past.rec (252 bytes)", NULL);
    static const struct {
        const char *name, *text, *needle;
    } idx_cases[] = {
        {"idx_garbage", "0\t0\n1\tabc\n", "idx_garbage.idx line 2: the offset is not an unsigned integer: '1\\tabc'"},
        {"idx_notab", "0\t0\n1 40\n", "idx_notab.idx line 2: expected a tab after the key"},
        {"idx_dup", "0\t0\n1\t40\n2\t88\n1\t40\n", "idx_dup.idx line 4: duplicate key 1 (first on line 2)"},
        {"idx_blank", "0\t0\n\n1\t40\n", "idx_blank.idx line 2: empty line"},
        {"idx_trailing", "0\t0\n1\t40 x\n", "idx_trailing.idx line 2: unexpected text after the offset"},
        {"idx_negative", "-1\t0\n", "idx_negative.idx line 1: the key is not an unsigned integer"},
        {"idx_overflow", "0\t0\n99999999999999999999\t0\n", "idx_overflow.idx line 2: the key does not fit"},
        {"idx_sparse_dup", "0\t0\n1\t40\n2\t88\n3\t168\n5000000000000\t40\n5000000000000\t88\n",
         "idx_sparse_dup.idx line 6: duplicate key 5000000000000 (first on line 5)"},
        {"idx_empty", "", "idx_empty.idx: empty index"},
        {"idx_missing", "0\t0\n1\t40\n7\t88\n3\t168\n", "images are keys 1..3 but key 2 is not in"},
        {"idx_few", "0\t0\n1\t40\n", "keys 1..3 but"},
    };
    for (size_t i = 0; i < sizeof idx_cases / sizeof idx_cases[0]; i++) {
        write_variant(idx_cases[i].name, base, size, idx_cases[i].text);
        expect_open_fails(idx_cases[i].name, idx_cases[i].needle, NULL);
    }
    write_variant("idx_sparse", base, size, "0\t0\n1\t40\n2\t88\n3\t168\n5000000000000\t40\n");
    EXPECT(rec_open(&r, tpath("bad/idx_sparse.rec"), NULL, err, sizeof err) == 0 && rec_num_images(r) == 3,
           "sparse keys: %s", err);
    uint8_t *buf = NULL;
    size_t cap = 0, len;
    EXPECT(r && rec_read_key(r, 5000000000000ull, &buf, &cap, &len, err, sizeof err) == 0 && len == 40,
           "sparse key: %s", err);
    rec_close(&r);

    /* Framing problems. */
    static const struct {
        const char *name;
        size_t at;
        uint32_t value;
        size_t image;
        const char *needle;
    } patches[] = {
        {"bad_magic", 88, 0x12345678u, 1, "bad_magic.rec: record at offset 88: bad magic 0x12345678"},
        {"long_lrec", 172, 5000, 2, "long_lrec.rec: truncated: record at offset 168 claims 5000 bytes, file ends at 252"},
        {"huge_lrec", 172, 0x1FFFFFFFu, 2, "huge_lrec.rec: truncated: record at offset 168 claims 536870911 bytes"},
        {"cflag2_first", 92, (2u << 29) | 72, 1, "cflag2_first.rec: record at offset 88: starts with a part of cflag 2"},
        {"cflag3_first", 92, (3u << 29) | 72, 1, "record at offset 88: starts with a part of cflag 3"},
        {"cflag5", 92, (5u << 29) | 72, 1, "record at offset 88: starts with a part of cflag 5"},
    };
    for (size_t i = 0; i < sizeof patches / sizeof patches[0]; i++) {
        memcpy(v, base, size);
        put32(v + patches[i].at, patches[i].value);
        write_variant(patches[i].name, v, size, idx);
        expect_image_fails(patches[i].name, patches[i].image, 1, patches[i].needle, NULL);
    }
    memcpy(v, base, size);
    put32(v, 0xDEADBEEFu);
    write_variant("bad_magic0", v, size, idx);
    expect_open_fails("bad_magic0", "bad_magic0.rec: record at offset 0: bad magic 0xdeadbeef", "(key 0)", NULL);

    /* Record content problems (key 2, offset 88). */
    uint8_t raw[64] = {0};
    IRHeader h = {0, 1.0f, 2, 0};
    static const struct {
        const char *name;
        uint32_t flag;
        float label;
        size_t len;
        const char *needle;
    } contents[] = {
        {"short_header", 0, 1, 10, "record at offset 88 (key 2): record of 10 bytes is shorter than the 24-byte IRHeader"},
        {"big_flag", 1000, 0, 40, "record at offset 88 (key 2): IRHeader flag 1000 needs 4000 bytes of labels but "
                                  "the record has 16 bytes after its header"},
        {"frac_label", 0, 0.5f, 32, "(key 2): label 0.5 is not a class id"},
        {"neg_label", 0, -1, 32, "(key 2): label -1 is not a class id"},
        {"nan_label", 0, NAN, 32, "(key 2): label nan is not a class id"},
        {"big_label", 0, 7, 32, "(key 2): label 7 outside [0, 2)"},
        {"no_bytes", 0, 1, 24, "record at offset 88 (key 2): no image bytes"},
        {"flag_label", 1, 0, 32, "(key 2): label 3.5 is not a class id"},
    };
    for (size_t i = 0; i < sizeof contents / sizeof contents[0]; i++) {
        SetSpec spec = BASE;
        h.flag = 0;
        h.label = contents[i].label;
        float lab = 3.5f;
        memset(raw, 0, sizeof raw);
        rec_pack(raw, &h, NULL, NULL, 0);
        memcpy(raw, &contents[i].flag, 4); /* flag 1000 claims more labels than there are */
        if (contents[i].flag == 1) memcpy(raw + 24, &lab, 4);
        spec.rec2 = raw;
        spec.len2 = contents[i].len;
        build_set(contents[i].name, &spec, off);
        snprintf(n1, sizeof n1, "%s.rec", contents[i].name);
        expect_image_fails(contents[i].name, 1, 0, n1, contents[i].needle, NULL);
    }

    /* A multi-part record (magic at record offset 28) reads; with its last part's cflag broken it fails. */
    h = (IRHeader){0, 1.0f, 2, 0};
    rec_pack(raw, &h, NULL, "abcd\x0A\x23\xD7\xCE", 8);
    SetSpec spec = BASE;
    spec.rec2 = raw;
    spec.len2 = 32;
    build_set("multipart", &spec, off);
    const uint8_t *payload;
    size_t plen;
    int64_t label;
    EXPECT(rec_open(&r, tpath("bad/multipart.rec"), NULL, err, sizeof err) == 0 &&
               rec_read_image(r, 1, &buf, &cap, &payload, &plen, &label, err, sizeof err) == 0 && plen == 8 &&
               memcmp(payload, "abcd\x0A\x23\xD7\xCE", 8) == 0 && label == 1,
           "multi-part image: %s", err);
    rec_close(&r);
    uint8_t *mp = read_bytes(tpath("bad/multipart.rec"), &len);
    char *mpidx = (char *)read_bytes(tpath("bad/multipart.idx"), &idx_len);
    mpidx[idx_len] = '\0';
    uint32_t lrec;
    memcpy(&lrec, mp + 92, 4);
    EXPECT(lrec == ((1u << 29) | 28), "first part lrec 0x%08x", lrec);
    put32(mp + 124 + 4, 0); /* the last part claims to be a whole record */
    write_variant("broken_parts", mp, len, mpidx);
    expect_image_fails("broken_parts", 1, 1, "broken_parts.rec: record at offset 88: part 2 at offset 124: "
                       "multi-part record broken: cflag 0", NULL);
    /* First part at the very end of a file. */
    int fd = open(tpath("bad/multipart.rec"), O_RDONLY);
    snprintf(n2, sizeof n2, "cut.rec: truncated: record at offset 88: part 2 at offset 124: its 8-byte header");
    expect_fail(rec_read_record_at(fd, "cut.rec", 124, 88, &buf, &cap, &len, NULL, err, sizeof err), err,
                "cut after part 1", n2, NULL);
    close(fd);
    free(mp);
    free(mpidx);

    /* Bad record 0 headers. */
    static const struct {
        const char *name;
        uint32_t flag;
        float a, b;
        const char *needle;
    } headers[] = {
        {"hdr_flag1", 1, 4, 0, "record at offset 0 (key 0): an insightface header needs flag >= 2"},
        {"hdr_zero", 2, 0, 5, "got flag 2 labels [0, 5]"},
        {"hdr_frac", 2, 4.5f, 6, "got flag 2 labels [4.5, 6]"},
        {"hdr_reverse", 2, 4, 3, "got flag 2 labels [4, 3]"},
        {"hdr_beyond", 2, 50, 52, "hdr_beyond.rec: record 0 says images are keys 1..49 but"},
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        spec = BASE;
        spec.h0_flag = headers[i].flag;
        spec.h0_labels[0] = headers[i].a;
        spec.h0_labels[1] = headers[i].b;
        build_set(headers[i].name, &spec, off);
        expect_open_fails(headers[i].name, headers[i].needle, NULL);
    }

    /* property beside the .rec. */
    make_dir(tpath("bad/prop"));
    build_set("prop/train", &BASE, off);
    static const char *bad_props[] = {"abc\n", "5,112\n", "0,112,112\n", "", "5,112,112,3\n", "-5,112,112\n"};
    for (size_t i = 0; i < sizeof bad_props / sizeof bad_props[0]; i++) {
        write_bytes(tpath("bad/prop/property"), bad_props[i], strlen(bad_props[i]));
        expect_open_fails("prop/train", "prop/property line 1: expected 'num_classes,height,width'", NULL);
    }
    write_bytes(tpath("bad/prop/property"), "5,112,112\r\nshuffled\n", 20);
    EXPECT(rec_open(&r, tpath("bad/prop/train.rec"), NULL, err, sizeof err) == 0 && rec_num_classes(r) == 5,
           "property with more lines: %s", err);
    rec_close(&r);

    /* Missing files, rec_parse edges, oversized records. */
    expect_open_fails("nope", "bad/nope.rec: No such file", NULL);
    write_bytes(tpath("bad/noidx.rec"), base, size);
    expect_open_fails("noidx", "bad/noidx.idx: No such file", NULL);
    const float *labels;
    expect_fail(rec_parse(base + 8, 23, &h, &labels, &payload, &plen, err, sizeof err), err, "23 bytes",
                "record of 23 bytes is shorter than the 24-byte IRHeader", NULL);
    memset(raw, 0, sizeof raw);
    raw[0] = 1; /* flag 1 */
    expect_fail(rec_parse(raw, 27, &h, &labels, &payload, &plen, err, sizeof err), err, "flag 1 in 27 bytes",
                "flag 1 needs 4 bytes", NULL);
    EXPECT(rec_parse(raw, 28, &h, &labels, &payload, &plen, err, sizeof err) == 0 && labels == (void *)(raw + 24) &&
               plen == 0,
           "flag 1 in 28 bytes: %s", err);
    FILE *f = fopen(tpath("bad/huge.rec"), "wb");
    expect_fail(rec_write_record(f, raw, REC_MAX_RECORD, err, sizeof err), err, "2^29 bytes",
                "shorter than 2^29 bytes", NULL);
    fclose(f);
    free(buf);
    free(v);
    free(base);
    free(idx);
}

/* Random corruption of a set with a multi-part record: every call returns 0
 * or -1 with a message, never crashes or reads out of bounds (ASan). */
static void test_fuzz(void) {
    size_t size, idx_len;
    uint8_t *good = read_bytes(tpath("bad/multipart.rec"), &size);
    char *gidx = (char *)read_bytes(tpath("bad/multipart.idx"), &idx_len);
    gidx[idx_len] = '\0';
    uint8_t *v = malloc(size), x[8];
    char *idx = malloc(idx_len + 1), err[512];
    uint8_t *buf = NULL;
    size_t cap = 0, plen;
    int opened = 0;
    for (int it = 0; it < 400; it++) {
        memcpy(v, good, size);
        memcpy(idx, gidx, idx_len + 1);
        size_t len = size;
        fill_random(x, sizeof x, (uint64_t)it + 1000);
        if (it % 3 == 0) {
            for (int k = 0; k < 1 + it % 4; k++) v[(x[k] * 7 + x[k + 1]) % size] ^= (uint8_t)(1u << (x[k + 2] & 7));
        } else if (it % 3 == 1) {
            len = (size_t)(x[0] | x[1] << 8) % size;
        } else {
            idx[(x[0] | x[1] << 8) % idx_len] = "0123456789\t\n x"[x[2] % 15];
        }
        write_variant("fuzz", v, len, idx);
        RecReader *r = NULL;
        err[0] = '\0';
        if (rec_open(&r, tpath("bad/fuzz.rec"), NULL, err, sizeof err) == 0) {
            opened++;
            for (size_t i = 0; i < rec_num_images(r); i++) {
                const uint8_t *payload;
                int64_t label;
                err[0] = '\0';
                if (rec_read_image(r, i, &buf, &cap, &payload, &plen, &label, err, sizeof err) != 0)
                    EXPECT(strstr(err, "fuzz.rec"), "fuzz %d image %zu: error '%s'", it, i, err);
            }
            rec_close(&r);
        } else {
            EXPECT(strstr(err, "fuzz.") && r == NULL, "fuzz %d: error '%s'", it, err);
        }
        ScanLog s = {{0}, 0, 0};
        err[0] = '\0';
        if (rec_scan(tpath("bad/fuzz.rec"), scan_cb, &s, err, sizeof err) != 0)
            EXPECT(strstr(err, "fuzz.rec: ") && strstr(err, "offset"), "fuzz %d scan: '%s'", it, err);
    }
    EXPECT(opened > 50, "only %d of 400 corrupted sets opened", opened);
    free(good), free(gidx), free(v), free(idx), free(buf);
}

int main(void) {
    log_set_role("test", -1);
    snprintf(g_dir, sizeof g_dir, "/tmp/test_recordio_XXXXXX");
    CHECK(mkdtemp(g_dir), "mkdtemp");
    int python = have_python();
    test_pack_round_trip();
    test_framing(python);
    if (python) test_python_sets();
    else fprintf(stderr, "test_recordio: python3 not found: skipping the MXNet reference comparisons\n");
    test_malformed();
    test_fuzz();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (test_failures) fprintf(stderr, "test_recordio: keeping %s for inspection\n", g_dir);
    else if (system(cmd) != 0) fprintf(stderr, "test_recordio: could not remove %s\n", g_dir);
    return test_finish("test_recordio");
}
