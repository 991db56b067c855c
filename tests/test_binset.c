/* test_binset.c -- the .bin reader on every form real sets were pickled in
 * (Python 2 protocol 2, Python 3 protocols 2 to 5, a hand-mixed stream), our
 * writer read back by us and by Python's pickle, and refusal -- with file,
 * offset and opcode named -- of everything else: other structures, other
 * GLOBALs, truncation at every cut point, bad lengths and memo indices, random
 * corruption. The Python cases run tests/tools/make_bins.py (found through
 * ARCFACE_SOURCE_DIR) and are skipped with a message without python3. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "binset.h"
#include "check.h"
#include "log.h"
#include "rng.h"
#include "testutil.h"

#define BIG_PAIRS 1203 /* 2406 images: APPENDS batches of 1000, 1000 and 406 */

static char g_dir[64];

/* ---- the expected set (the same formula as make_bins.py) ------------------ */

static size_t expected_len(size_t i) { return i % 499 == 11 ? 70000 + i : 1 + (i * 37) % 700; }

static uint8_t expected_byte(size_t i, size_t j) { return (uint8_t)((131 * i + 7 * j + (j >> 5)) & 0xff); }

static uint8_t expected_same(int p) { return (uint8_t)((7 * p + p / 3) % 2 == 0); }

typedef struct {
    uint8_t **image;
    size_t *len;
    uint8_t *same;
    int n_pairs;
} Expected;

static Expected expected_make(int n_pairs) {
    Expected e = {.n_pairs = n_pairs};
    size_t n = 2 * (size_t)n_pairs;
    e.image = calloc(n, sizeof *e.image);
    e.len = calloc(n, sizeof *e.len);
    e.same = calloc((size_t)n_pairs, 1);
    CHECK(e.image && e.len && e.same, "calloc");
    for (size_t i = 0; i < n; i++) {
        e.len[i] = expected_len(i);
        e.image[i] = malloc(e.len[i]);
        CHECK(e.image[i], "malloc");
        for (size_t j = 0; j < e.len[i]; j++) e.image[i][j] = expected_byte(i, j);
    }
    for (int p = 0; p < n_pairs; p++) e.same[p] = expected_same(p);
    return e;
}

static void expected_free(Expected *e) {
    for (size_t i = 0; i < 2 * (size_t)e->n_pairs; i++) free(e->image[i]);
    free(e->image);
    free(e->len);
    free(e->same);
}

/* Loads path and compares it with e; what names the case. */
static void expect_set(const char *path, const Expected *e, const char *what) {
    BinSet set;
    char err[512] = "";
    if (binset_load(&set, path, err, sizeof err) != 0) {
        EXPECT(0, "%s: load failed: %s", what, err);
        return;
    }
    EXPECT(set.n_pairs == e->n_pairs, "%s: %d pairs, expected %d", what, set.n_pairs, e->n_pairs);
    if (set.n_pairs == e->n_pairs) {
        int bad_images = 0, bad_flags = 0;
        for (size_t i = 0; i < 2 * (size_t)e->n_pairs; i++)
            if (set.image_len[i] != e->len[i] || memcmp(set.image[i], e->image[i], e->len[i]) != 0) {
                if (!bad_images) fprintf(stderr, "%s: image %zu: %zu bytes, expected %zu\n", what, i, set.image_len[i], e->len[i]);
                bad_images++;
            }
        for (int p = 0; p < e->n_pairs; p++) bad_flags += set.same[p] != e->same[p];
        EXPECT(bad_images == 0 && bad_flags == 0, "%s: %d images and %d flags differ", what, bad_images, bad_flags);
    }
    binset_free(&set);
}

/* ---- files and the Python tool ------------------------------------------------ */

static void path_in_dir(char *out, size_t len, const char *name) { snprintf(out, len, "%s/%s", g_dir, name); }

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f, "fopen %s", path);
    CHECK(len == 0 || fwrite(data, 1, len, f) == len, "fwrite");
    CHECK(fclose(f) == 0, "fclose");
}

static uint8_t *read_whole(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECK(f, "fopen %s", path);
    CHECK(fseek(f, 0, SEEK_END) == 0, "fseek");
    long n = ftell(f);
    CHECK(n >= 0 && fseek(f, 0, SEEK_SET) == 0, "ftell");
    uint8_t *buf = malloc((size_t)n + 1);
    CHECK(buf && fread(buf, 1, (size_t)n, f) == (size_t)n, "fread %s", path);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int have_python(void) { return system("python3 -c pass >/dev/null 2>&1") == 0; }

/* Runs tests/tools/make_bins.py with the formatted arguments; its exit code. */
static int run_tool(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_tool(const char *fmt, ...) {
    const char *src = getenv("ARCFACE_SOURCE_DIR");
    char script[600], cmd[2048], args[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(script, sizeof script, "%s/tests/tools/make_bins.py", src ? src : ".");
    if (!file_exists(script)) {
        EXPECT(0, "%s not found: set ARCFACE_SOURCE_DIR to the source tree", script);
        return -1;
    }
    snprintf(cmd, sizeof cmd, "python3 '%s' %s", script, args);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* ---- hand-assembled pickles ------------------------------------------------ */

typedef struct {
    uint8_t b[4096];
    size_t n;
} Buf;

static void put(Buf *b, const void *p, size_t n) {
    CHECK(b->n + n <= sizeof b->b, "test buffer full");
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void op(Buf *b, unsigned code) {
    uint8_t c = (uint8_t)code;
    put(b, &c, 1);
}
static void u8(Buf *b, unsigned v) { op(b, v); }
static void u32(Buf *b, uint32_t v) {
    for (int i = 0; i < 4; i++) u8(b, (v >> (8 * i)) & 0xff);
}
static void str(Buf *b, const char *s) { put(b, s, strlen(s)); }
static void short_bytes(Buf *b, const char *s) {
    op(b, 0x43);
    u8(b, (unsigned)strlen(s));
    str(b, s);
}
static void short_text(Buf *b, const char *s) {
    op(b, 0x8c);
    u8(b, (unsigned)strlen(s));
    str(b, s);
}

/* PROTO 2, EMPTY_LIST, MARK: the start of most streams below. */
static Buf start(void) {
    Buf b = {.n = 0};
    op(&b, 0x80);
    u8(&b, 2);
    op(&b, 0x5d);
    op(&b, 0x28);
    return b;
}

/* ... APPENDS, then [True], TUPLE2, STOP: the end of a one-pair stream. */
static void finish(Buf *b) {
    op(b, 0x65);
    op(b, 0x5d);
    op(b, 0x88);
    op(b, 0x61);
    op(b, 0x86);
    op(b, 0x2e);
}

/* Loads the stream as a file named name; returns the load's result and leaves
 * the message in err. A successful load is freed unless set is given. */
static int load_buf(const Buf *b, const char *name, BinSet *set, char *err, size_t errlen) {
    char path[256];
    path_in_dir(path, sizeof path, name);
    write_file(path, b->b, b->n);
    BinSet local;
    BinSet *s = set ? set : &local;
    err[0] = '\0';
    int rc = binset_load(s, path, err, errlen);
    if (!set) binset_free(s);
    return rc;
}

/* The load of b must fail with every fragment in err (NULL-terminated). */
static void expect_refused(const Buf *b, const char *name, ...) {
    char err[512];
    int rc = load_buf(b, name, NULL, err, sizeof err);
    EXPECT(rc == -1, "%s: accepted", name);
    EXPECT(strstr(err, name) != NULL, "%s: the message does not name the file: %s", name, err);
    va_list ap;
    va_start(ap, name);
    for (const char *frag; (frag = va_arg(ap, const char *));)
        EXPECT(strstr(err, frag) != NULL, "%s: '%s' not in: %s", name, frag, err);
    va_end(ap);
    if (rc == -1) fprintf(stderr, "  refused as expected: %s\n", err);
}

static void test_hand_streams(void) {
    char err[512];
    BinSet set;

    /* Valid oddities: an image referenced twice through the memo; one text
     * encoded twice (decoded once, in place); Python 3 protocol 2 bytes. */
    Buf b = start();
    short_bytes(&b, "\xff\xd8one");
    op(&b, 0x71), u8(&b, 0);
    op(&b, 0x68), u8(&b, 0);
    op(&b, 0x63), str(&b, "_codecs\nencode\n");
    op(&b, 0x71), u8(&b, 1);
    short_text(&b, "\xc3\xbf\xc3\x98\xc2\x80x"); /* U+00FF U+00D8 U+0080 'x' */
    op(&b, 0x71), u8(&b, 2);
    short_text(&b, "latin1");
    op(&b, 0x71), u8(&b, 3);
    op(&b, 0x86), op(&b, 0x52);
    op(&b, 0x68), u8(&b, 1);
    op(&b, 0x68), u8(&b, 2);
    op(&b, 0x68), u8(&b, 3);
    op(&b, 0x86), op(&b, 0x52);
    op(&b, 0x65);
    op(&b, 0x5d), op(&b, 0x28), op(&b, 0x89), op(&b, 0x88), op(&b, 0x65), op(&b, 0x86), op(&b, 0x2e);
    int rc = load_buf(&b, "oddities.bin", &set, err, sizeof err);
    EXPECT(rc == 0, "memo and repeated text: %s", err);
    if (rc == 0) {
        EXPECT(set.n_pairs == 2 && set.same[0] == 0 && set.same[1] == 1, "flags");
        EXPECT(set.image_len[0] == 5 && set.image_len[1] == 5 && memcmp(set.image[1], "\xff\xd8one", 5) == 0,
               "memo reference");
        EXPECT(set.image_len[2] == 4 && set.image_len[3] == 4 && memcmp(set.image[2], "\xff\xd8\x80x", 4) == 0 &&
                   memcmp(set.image[3], "\xff\xd8\x80x", 4) == 0,
               "latin-1 decoding");
        EXPECT(strcmp(set.name, "oddities") == 0, "name '%s'", set.name);
    }
    binset_free(&set);
    binset_free(&set); /* a freed (zeroed) set may be freed again */
    binset_free(NULL);

    /* Refusals, each named. */
    Buf e = {.n = 0};
    expect_refused(&e, "empty.bin", "empty file", NULL);

    b = start();
    op(&b, 0xff);
    expect_refused(&b, "unknown.bin", "offset 4", "unknown opcode 0xff", NULL);

    b = start();
    op(&b, 0x42), u32(&b, 1000), str(&b, "short");
    expect_refused(&b, "binbytes_past_end.bin", "offset 4", "BINBYTES", "length 1000 runs past the end", NULL);

    b = start();
    op(&b, 0x54), u32(&b, 0xfffffff0u), str(&b, "x");
    expect_refused(&b, "binstring_negative.bin", "BINSTRING", "negative length", NULL);

    b = start();
    op(&b, 0x8e), u32(&b, 5), u32(&b, 1), str(&b, "abcde"); /* 2^32 + 5 bytes */
    expect_refused(&b, "binbytes8_past_end.bin", "BINBYTES8", "runs past the end", NULL);

    b = start();
    short_bytes(&b, "a");
    op(&b, 0x68), u8(&b, 7);
    finish(&b);
    expect_refused(&b, "bad_memo.bin", "offset 7", "BINGET", "bad memo index", NULL);

    b = start();
    short_bytes(&b, "a");
    op(&b, 0x72), u32(&b, 0xfffffff0u);
    expect_refused(&b, "huge_memo.bin", "LONG_BINPUT", "impossible", NULL);

    b = start();
    op(&b, 0x63), str(&b, "os\nsystem\n");
    short_text(&b, "touch pwned");
    op(&b, 0x85), op(&b, 0x52);
    finish(&b);
    expect_refused(&b, "os_system.bin", "offset 4", "opcode 0x63 (GLOBAL 'os system') not allowed",
                   "list of bytes, list of bool", NULL);

    b = start();
    op(&b, 0x63), str(&b, "_codecs\nencode"); /* no final newline */
    expect_refused(&b, "global_cut.bin", "GLOBAL", "cut short", NULL);

    b = (Buf){.n = 0};
    str(&b, "(lp0\nS'a'\n");
    expect_refused(&b, "protocol0.bin", "offset 0", "MARK", "not a pickle of protocol 2", NULL);

    b = (Buf){.n = 0};
    op(&b, 0x80), u8(&b, 1);
    expect_refused(&b, "protocol1.bin", "pickle protocol 1", NULL);

    b = start();
    b.n--; /* no MARK */
    short_bytes(&b, "a"), short_bytes(&b, "b");
    finish(&b);
    expect_refused(&b, "appends_no_mark.bin", "APPENDS", "no MARK", NULL);

    b = start();
    short_bytes(&b, "a"), short_bytes(&b, "b");
    op(&b, 0x65);
    op(&b, 0x5d), op(&b, 0x88), op(&b, 0x61), op(&b, 0x86), op(&b, 0x28), op(&b, 0x2e);
    expect_refused(&b, "open_mark.bin", "STOP", "MARK left open", NULL);

    b = start();
    short_bytes(&b, "a"), short_bytes(&b, "b");
    op(&b, 0x65);
    op(&b, 0x86);
    expect_refused(&b, "underflow.bin", "TUPLE2", "needs 2 objects", NULL);

    b = start();
    short_bytes(&b, "a"), short_bytes(&b, "b");
    finish(&b);
    str(&b, "junk");
    expect_refused(&b, "trailing.bin", "4 bytes follow STOP", NULL);

    b = start();
    short_bytes(&b, "a"), short_bytes(&b, "b");
    op(&b, 0x65);
    op(&b, 0x5d), op(&b, 0x5d);
    expect_refused(&b, "three_lists.bin", "EMPTY_LIST", "a third list", NULL);

    b = start();
    short_bytes(&b, "a");
    op(&b, 0x63), str(&b, "_codecs\nencode\n");
    short_text(&b, "b"), short_text(&b, "utf-8");
    op(&b, 0x86), op(&b, 0x52);
    finish(&b);
    expect_refused(&b, "utf8_codec.bin", "REDUCE", "other than 'latin1'", NULL);

    b = start();
    short_bytes(&b, "a");
    op(&b, 0x63), str(&b, "_codecs\nencode\n");
    short_text(&b, "\xc4\x80"), short_text(&b, "latin1"); /* U+0100 */
    op(&b, 0x86), op(&b, 0x52);
    finish(&b);
    expect_refused(&b, "not_latin1.bin", "REDUCE", "not latin-1", "byte 0xc4", NULL);

    b = start();
    short_bytes(&b, "a");
    op(&b, 0x63), str(&b, "_codecs\nencode\n");
    short_text(&b, "ab\xc3"), short_text(&b, "latin1"); /* cut UTF-8 sequence */
    op(&b, 0x86), op(&b, 0x52);
    finish(&b);
    expect_refused(&b, "bad_utf8.bin", "REDUCE", "not latin-1", NULL);

    b = start();
    short_bytes(&b, "a");
    op(&b, 0x63), str(&b, "_codecs\nencode\n");
    finish(&b);
    expect_refused(&b, "encode_in_list.bin", "APPENDS", "list item is a _codecs.encode", NULL);

    b = start();
    short_bytes(&b, "a"), short_bytes(&b, "b");
    op(&b, 0x65);
    short_bytes(&b, "c");
    op(&b, 0x52);
    expect_refused(&b, "reduce_list.bin", "REDUCE", "calls a list", NULL);

    b = start();
    short_bytes(&b, "a"), short_bytes(&b, "b");
    op(&b, 0x65);
    op(&b, 0x88), op(&b, 0x88), op(&b, 0x61);
    expect_refused(&b, "append_to_bool.bin", "APPEND", "appends to a bool", NULL);

    b = start();
    short_bytes(&b, "a"), op(&b, 0x88);
    expect_refused(&b, "mixed.bin", "ends before STOP", NULL);
    finish(&b);
    expect_refused(&b, "mixed.bin", "APPENDS", "mixes bytes and bool", NULL);

    b = start();
    short_bytes(&b, "a"), short_bytes(&b, "b");
    op(&b, 0x65), op(&b, 0x2e);
    expect_refused(&b, "bare_list.bin", "STOP", "the pickled object is a list", NULL);

    b = start();
    op(&b, 0x65);
    op(&b, 0x5d), op(&b, 0x86), op(&b, 0x2e);
    expect_refused(&b, "no_images.bin", "no images", NULL);

    b = start();
    short_bytes(&b, "a"), short_bytes(&b, "b"), short_bytes(&b, "c"), short_bytes(&b, "d");
    finish(&b);
    expect_refused(&b, "count_mismatch.bin", "4 images make 2 pairs but issame_list has 1 flags", NULL);

    b = start();
    short_bytes(&b, "a"), short_bytes(&b, "b"), short_bytes(&b, "c");
    finish(&b);
    expect_refused(&b, "odd_images.bin", "odd number of images (3)", NULL);

    b = start();
    b.n--;
    op(&b, 0x95), u32(&b, 1000), u32(&b, 0);
    expect_refused(&b, "frame_past_end.bin", "FRAME", "runs past the end", NULL);

    char missing[256];
    path_in_dir(missing, sizeof missing, "does_not_exist.bin");
    rc = binset_load(&set, missing, err, sizeof err);
    EXPECT(rc == -1 && strstr(err, "does_not_exist.bin") && strstr(err, "cannot open"), "missing file: %s", err);
    EXPECT(set.n_pairs == 0 && set.blob == NULL, "a failed load leaves a zeroed set");
}

/* ---- our writer ------------------------------------------------------------- */

static void write_expected(const Expected *e, const char *path) {
    char err[512] = "";
    EXPECT(binset_write(path, (const uint8_t *const *)e->image, e->len, e->same, e->n_pairs, err, sizeof err) == 0,
           "write %s: %s", path, err);
}

static void test_writer(int python) {
    char path[256], tmp[300];
    /* 1 pair: lone APPENDs; 500: exactly one batch of 1000; BIG_PAIRS: three. */
    const int sizes[] = {1, 500, BIG_PAIRS};
    for (int k = 0; k < 3; k++) {
        Expected e = expected_make(sizes[k]);
        snprintf(path, sizeof path, "%s/ours_%d.bin", g_dir, sizes[k]);
        write_expected(&e, path);
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        EXPECT(!file_exists(tmp), "%s left behind", tmp);
        expect_set(path, &e, path);
        if (python) EXPECT(run_tool("check '%s' %d", path, sizes[k]) == 0, "python3 cannot read %s", path);
        expected_free(&e);
    }
    char err[512] = "";
    Expected e = expected_make(1);
    snprintf(path, sizeof path, "%s/no_such_dir/x.bin", g_dir);
    EXPECT(binset_write(path, (const uint8_t *const *)e.image, e.len, e.same, 1, err, sizeof err) == -1 &&
               strstr(err, "no_such_dir"),
           "write into a missing directory: %s", err);
    EXPECT(binset_write(path, (const uint8_t *const *)e.image, e.len, e.same, 0, err, sizeof err) == -1,
           "a set of 0 pairs is refused");
    expected_free(&e);
}

/* Every cut of the file at path must be refused cleanly. */
static void expect_cuts_refused(const char *path, size_t stride) {
    size_t len;
    uint8_t *data = read_whole(path, &len);
    char cut[256], err[512];
    snprintf(cut, sizeof cut, "%s/cut.bin", g_dir);
    int accepted = 0;
    size_t first_accepted = 0;
    for (size_t n = 0; n < len; n += (n < 64 || len - n < 64) ? 1 : stride) {
        write_file(cut, data, n);
        BinSet set;
        if (binset_load(&set, cut, err, sizeof err) == 0) {
            if (!accepted++) first_accepted = n;
        } else if (!strstr(err, "cut.bin")) {
            EXPECT(0, "cut at %zu: message does not name the file: %s", n, err);
        }
        binset_free(&set);
    }
    EXPECT(accepted == 0, "%s: %d truncated copies accepted (first: %zu of %zu bytes)", path, accepted,
           first_accepted, len);
    free(data);
}

/* Random corruption: any outcome but a crash (ASan/UBSan find those). */
static void fuzz(const char *path, int rounds, uint64_t seed) {
    size_t len;
    uint8_t *orig = read_whole(path, &len);
    uint8_t *data = malloc(len);
    CHECK(data, "malloc");
    char out[256], err[512];
    snprintf(out, sizeof out, "%s/fuzz.bin", g_dir);
    int accepted = 0;
    Rng rng = {.key = seed, .counter = 0};
    for (int r = 0; r < rounds; r++) {
        memcpy(data, orig, len);
        int flips = 1 + (int)rng_next_below(&rng, 4);
        for (int k = 0; k < flips; k++) data[rng_next_below(&rng, len)] = (uint8_t)rng_next_below(&rng, 256);
        size_t n = rng_next_below(&rng, 8) == 0 ? (size_t)rng_next_below(&rng, len) : len;
        write_file(out, data, n);
        BinSet set;
        err[0] = '\0';
        if (binset_load(&set, out, err, sizeof err) == 0) {
            accepted++;
            for (size_t i = 0; i < 2 * (size_t)set.n_pairs; i++)
                EXPECT(set.image[i] >= set.blob && set.image[i] + set.image_len[i] <= set.blob + set.blob_len,
                       "image %zu outside the blob", i);
        } else {
            EXPECT(err[0] != '\0', "a refusal without a message");
        }
        binset_free(&set);
    }
    fprintf(stderr, "  fuzz %s: %d of %d corrupted copies still load (flipped image bytes)\n", path, accepted,
            rounds);
    free(orig);
    free(data);
}

static void test_python_sets(void) {
    char dir[128], path[256];
    snprintf(dir, sizeof dir, "%s/py", g_dir);
    CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    EXPECT(run_tool("write '%s' %d", dir, BIG_PAIRS) == 0, "make_bins.py write failed");
    Expected e = expected_make(BIG_PAIRS);
    static const char *const forms[] = {"p2", "p3", "p4", "p5", "py2", "hand"};
    for (int k = 0; k < 6; k++) {
        snprintf(path, sizeof path, "%s/%s.bin", dir, forms[k]);
        expect_set(path, &e, path);
    }
    expected_free(&e);

    /* Small sets for truncation and corruption. */
    snprintf(dir, sizeof dir, "%s/small", g_dir);
    CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    EXPECT(run_tool("write '%s' 3", dir) == 0, "make_bins.py write failed");
    e = expected_make(3);
    for (int k = 0; k < 6; k++) {
        snprintf(path, sizeof path, "%s/%s.bin", dir, forms[k]);
        expect_set(path, &e, path);
        expect_cuts_refused(path, 7);
        fuzz(path, 400, 100 + (uint64_t)k);
    }
    expected_free(&e);

    /* Pickles that are not .bin sets. */
    snprintf(dir, sizeof dir, "%s/bad", g_dir);
    CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    EXPECT(run_tool("bad '%s'", dir) == 0, "make_bins.py bad failed");
    static const struct {
        const char *name, *frag1, *frag2;
    } bad[] = {
        {"dict", "opcode 0x7d (EMPTY_DICT) not allowed", "list of bytes, list of bool"},
        {"tuple3", "TUPLE3", "not allowed"},
        {"ints", "BININT1", "not allowed"},
        {"strs", "list item is a str", "list of bytes, list of bool"},
        {"odd", "odd number of images (3)", "STOP"},
        {"mismatch", "4 images make 2 pairs but issame_list has 1 flags", "offset"},
        {"system", "system') not allowed", "GLOBAL '"},
        {"bytearray", "BYTEARRAY8", "not allowed"},
        {"numpy", "GLOBAL 'numpy.core.multiarray _reconstruct') not allowed", "offset"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        snprintf(path, sizeof path, "%s/%s.bin", dir, bad[k].name);
        BinSet set;
        char err[512] = "";
        int rc = binset_load(&set, path, err, sizeof err);
        EXPECT(rc == -1, "%s accepted", path);
        EXPECT(strstr(err, path) && strstr(err, bad[k].frag1) && strstr(err, bad[k].frag2),
               "%s: expected '%s' and '%s' in: %s", bad[k].name, bad[k].frag1, bad[k].frag2, err);
        if (rc == -1) fprintf(stderr, "  refused as expected: %s\n", err);
        binset_free(&set);
    }
    snprintf(path, sizeof path, "%s/pwned", dir);
    EXPECT(!file_exists(path), "the os.system pickle ran");
}

int main(void) {
    log_set_role("test", -1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    snprintf(g_dir, sizeof g_dir, "/tmp/test_binset_XXXXXX");
    CHECK(mkdtemp(g_dir), "mkdtemp");
    int python = have_python();
    test_hand_streams();
    test_writer(python);
    char path[256];
    snprintf(path, sizeof path, "%s/ours_1.bin", g_dir);
    expect_cuts_refused(path, 1);
    fuzz(path, 400, 7);
    if (python)
        test_python_sets();
    else
        fprintf(stderr, "test_binset: python3 not found: skipping the Python-written sets and the pickle.load "
                "check of our writer\n");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (test_failures == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "test_binset: %.2f s\n", (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return test_finish("test_binset");
}
