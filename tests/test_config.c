/* test_config.c -- defaults, file and command-line parsing, every class of
 * error (with the key and file:line named), derived values, and the
 * config_print -> config_load_file round trip. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "log.h"
#include "testutil.h"

/* Every field, for a comparison that does not depend on struct padding. */
#define SCALAR_FIELDS(X)                                                                     \
    X(width) X(embedding_size) X(dropout) X(synthetic_ids) X(synthetic_images)               \
    X(synthetic_holdout_ids) X(verify_pairs) X(num_classes) X(batch_size) X(bn_group) X(s)  \
    X(lr) X(momentum) X(weight_decay) X(grad_clip) X(steps) X(warmup_steps) X(lr_power)     \
    X(seed) X(log_every) X(verify_every) X(threads) X(step_timeout) X(max_message_bytes)
#define FLOAT_OR_NAN_FIELDS(X) X(m1) X(m2) X(m3)
#define STRING_FIELDS(X) \
    X(network) X(dataset) X(loss) X(margin_fallback) X(margin_grad) X(output_dir) X(interface)

/* Counts differing fields, naming each. */
static int config_diff(const TrainConfig *a, const TrainConfig *b, const char *what) {
    int diffs = 0;
#define CMP_SCALAR(f)                                                                        \
    if (a->f != b->f) {                                                                      \
        fprintf(stderr, "%s: field %s differs\n", what, #f);                                 \
        diffs++;                                                                             \
    }
#define CMP_NAN(f)                                                                           \
    if (!(a->f == b->f || (isnan(a->f) && isnan(b->f)))) {                                   \
        fprintf(stderr, "%s: field %s differs (%.9g vs %.9g)\n", what, #f, a->f, b->f);       \
        diffs++;                                                                             \
    }
#define CMP_STRING(f)                                                                        \
    if (memcmp(a->f, b->f, sizeof a->f) != 0) {                                              \
        fprintf(stderr, "%s: field %s differs ('%s' vs '%s')\n", what, #f, a->f, b->f);      \
        diffs++;                                                                             \
    }
    SCALAR_FIELDS(CMP_SCALAR)
    FLOAT_OR_NAN_FIELDS(CMP_NAN)
    STRING_FIELDS(CMP_STRING)
#undef CMP_SCALAR
#undef CMP_NAN
#undef CMP_STRING
    return diffs;
}

static char g_files[16][64];
static int g_nfiles;

/* Writes text to a fresh temporary file and returns its path. */
static const char *temp_file(const char *text) {
    CHECK(g_nfiles < 16, "too many temp files");
    char *path = g_files[g_nfiles++];
    snprintf(path, 64, "/tmp/test_config_XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    FILE *f = fdopen(fd, "w");
    CHECK(f, "fdopen");
    fputs(text, f);
    CHECK(fclose(f) == 0, "fclose");
    return path;
}

static void test_defaults(void) {
    TrainConfig c;
    config_defaults(&c);
    EXPECT(strcmp(c.network, "r50") == 0 && c.width == 64 && c.embedding_size == 512 &&
               c.dropout == 0,
           "model defaults");
    EXPECT(strcmp(c.dataset, "synthetic") == 0 && c.synthetic_ids == 1000 &&
               c.synthetic_images == 40 && c.synthetic_holdout_ids == 100 &&
               c.verify_pairs == 1200 && c.num_classes == 0,
           "data defaults");
    EXPECT(c.batch_size == 128 && c.bn_group == 0, "batch defaults");
    EXPECT(strcmp(c.loss, "arcface") == 0 && c.s == 64 && isnan(c.m1) && isnan(c.m2) &&
               isnan(c.m3) && strcmp(c.margin_fallback, "auto") == 0 &&
               strcmp(c.margin_grad, "exact") == 0,
           "loss defaults");
    EXPECT(c.lr == 0.1f && c.momentum == 0.9f && c.weight_decay == 5e-4f && c.grad_clip == 5 &&
               c.steps == 1000 && c.warmup_steps == 0 && c.lr_power == 2,
           "optimiser defaults");
    EXPECT(c.seed == 1234 && c.log_every == 10 && c.verify_every == 0 && c.output_dir[0] == 0 &&
               c.threads == 0 && c.interface[0] == 0 && c.step_timeout == 300.0 &&
               c.max_message_bytes == 256 * 1024 * 1024,
           "run defaults");

    char err[512] = "";
    EXPECT(config_finalize(&c, err, sizeof err) == 0, "finalize defaults: %s", err);
    EXPECT(c.m1 == 1 && c.m2 == 0.5f && c.m3 == 0 && c.bn_group == 128, "arcface margins %g %g %g,"
           " bn_group %d", c.m1, c.m2, c.m3, c.bn_group);
    TrainConfig again = c;
    EXPECT(config_finalize(&again, err, sizeof err) == 0 &&
               config_diff(&c, &again, "finalize") == 0,
           "finalize is idempotent");

    static const struct {
        const char *loss;
        float m1, m2, m3;
    } cases[] = {{"cosface", 1, 0, 0.4f}, {"softmax", 1, 0, 0}, {"combined", 1, 0.3f, 0.2f}};
    for (int i = 0; i < 3; i++) {
        config_defaults(&c);
        EXPECT(config_set(&c, "loss", cases[i].loss, err, sizeof err) == 0, "%s", err);
        EXPECT(config_finalize(&c, err, sizeof err) == 0, "%s: %s", cases[i].loss, err);
        EXPECT(c.m1 == cases[i].m1 && c.m2 == cases[i].m2 && c.m3 == cases[i].m3,
               "%s margins %g %g %g", cases[i].loss, c.m1, c.m2, c.m3);
    }
}

static void test_file_parsing(void) {
    const char *path = temp_file("# a training run\n"
                                 "\n"
                                 "network = r18\n"
                                 "   width=32   \n"
                                 "\tlr\t=\t0.25   # trailing comment\n"
                                 "batch_size = 64\r\n"
                                 "   # indented comment = not a key\n"
                                 "loss = cosface\n"
                                 "m3 = 0.35\n"
                                 "output_dir = /tmp/run one\n"
                                 "seed = 18446744073709551615\n"
                                 "step_timeout = 2.5\n"
                                 "interface =\n"
                                 "num_classes = 5000000000"); /* no final newline */
    TrainConfig c;
    config_defaults(&c);
    char err[512] = "";
    EXPECT(config_load_file(&c, path, err, sizeof err) == 0, "load: %s", err);
    EXPECT(strcmp(c.network, "r18") == 0 && c.width == 32 && c.lr == 0.25f && c.batch_size == 64,
           "network %s width %d lr %g batch %d", c.network, c.width, c.lr, c.batch_size);
    EXPECT(strcmp(c.loss, "cosface") == 0 && c.m3 == 0.35f && isnan(c.m2), "loss %s m3 %g", c.loss,
           c.m3);
    EXPECT(strcmp(c.output_dir, "/tmp/run one") == 0, "output_dir '%s'", c.output_dir);
    EXPECT(c.seed == UINT64_MAX && c.step_timeout == 2.5 && c.interface[0] == 0 &&
               c.num_classes == 5000000000LL,
           "seed %llu step_timeout %g num_classes %lld", (unsigned long long)c.seed,
           c.step_timeout, (long long)c.num_classes);
    EXPECT(c.embedding_size == 512, "untouched keys keep their values");

    /* A file applies on top of what c already holds. */
    config_defaults(&c);
    config_set(&c, "embedding_size", "128", NULL, 0);
    EXPECT(config_load_file(&c, path, err, sizeof err) == 0 && c.embedding_size == 128 &&
               c.width == 32,
           "load over set values: embedding_size %d width %d", c.embedding_size, c.width);

    /* Command line: file first, then overrides (both spellings) beat it. */
    char *argv[] = {"prog", (char *)path, "lr=0.5", "--batch_size=32", " width = 16 ", "lr=0.125",
                    NULL};
    EXPECT(config_from_args(&c, 6, argv, err, sizeof err) == 0, "from_args: %s", err);
    EXPECT(c.lr == 0.125f && c.batch_size == 32 && c.width == 16 && strcmp(c.network, "r18") == 0,
           "overrides: lr %g batch %d width %d network %s", c.lr, c.batch_size, c.width, c.network);
    EXPECT(c.m1 == 1 && c.m2 == 0 && c.m3 == 0.35f && c.bn_group == 32, "finalized: %g %g %g %d",
           c.m1, c.m2, c.m3, c.bn_group);

    /* Overrides alone, no file. */
    char *argv2[] = {"prog", "--loss=softmax", "steps=10", NULL};
    EXPECT(config_from_args(&c, 3, argv2, err, sizeof err) == 0, "%s", err);
    EXPECT(strcmp(c.loss, "softmax") == 0 && c.steps == 10 && strcmp(c.network, "r50") == 0,
           "defaults under overrides");
    char *argv3[] = {"prog", NULL};
    EXPECT(config_from_args(&c, 1, argv3, err, sizeof err) == 0 && c.batch_size == 128,
           "no arguments: %s", err);
}

/* config_set must fail, name the key and needle, and leave c as it was. */
static void expect_set_fails(const char *key, const char *value, const char *needle) {
    TrainConfig c, before;
    config_defaults(&c);
    config_set(&c, "lr", "0.3", NULL, 0);
    before = c;
    char err[512] = "";
    int rc = config_set(&c, key, value, err, sizeof err);
    char quoted[80];
    snprintf(quoted, sizeof quoted, "key '%s'", key);
    EXPECT(rc == -1, "%s = '%s' accepted", key, value);
    EXPECT(strstr(err, quoted) && strstr(err, needle), "%s = '%s': err '%s' lacks \"%s\" or \"%s\"",
           key, value, err, quoted, needle);
    EXPECT(memcmp(&c, &before, sizeof c) == 0 && config_diff(&c, &before, "failed set") == 0,
           "%s = '%s': failed config_set changed the struct", key, value);
}

static void test_set_errors(void) {
    char long_value[400];
    memset(long_value, 'a', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';

    expect_set_fails("batch_sz", "3", "unknown key (did you mean 'batch_size'?)");
    expect_set_fails("zzzzzzzz", "3", "unknown key");
    /* wrong type / trailing garbage */
    expect_set_fails("batch_size", "12x", "expected an integer, got '12x'");
    expect_set_fails("batch_size", "12.0", "expected an integer");
    expect_set_fails("batch_size", "1e3", "expected an integer");
    expect_set_fails("batch_size", "", "expected an integer, got ''");
    expect_set_fails("batch_size", " 12", "expected an integer");
    expect_set_fails("batch_size", "12 ", "expected an integer");
    expect_set_fails("lr", "abc", "expected a number, got 'abc'");
    expect_set_fails("lr", "0.1x", "expected a number");
    expect_set_fails("m2", "big", "expected a number or auto");
    expect_set_fails("seed", "-1", "expected an integer, got '-1'");
    expect_set_fails("seed", "+5", "expected an integer");
    /* overflow */
    expect_set_fails("steps", "99999999999999999999", "does not fit in a 64-bit integer");
    expect_set_fails("batch_size", "-99999999999999999999", "does not fit");
    expect_set_fails("seed", "18446744073709551616", "does not fit in an unsigned 64-bit integer");
    expect_set_fails("width", "4294967304", "out of range [8, 512]"); /* 2^32 + 8: no int wrap */
    expect_set_fails("lr", "1e39", "out of the range of a float");
    expect_set_fails("step_timeout", "1e999", "out of the range of a double");
    expect_set_fails("lr", "nan", "not a finite number");
    expect_set_fails("lr", "inf", "not a finite number");
    expect_set_fails("lr", "auto", "expected a number"); /* auto is for margins only */
    /* out of range */
    expect_set_fails("width", "4", "4 is out of range [8, 512]");
    expect_set_fails("width", "100", "not a multiple of 8");
    expect_set_fails("embedding_size", "5000", "out of range");
    expect_set_fails("verify_pairs", "1210", "not a multiple of 20");
    expect_set_fails("dropout", "1", "out of range [0, 1)");
    expect_set_fails("dropout", "-0.1", "out of range");
    expect_set_fails("momentum", "1.0", "out of range");
    expect_set_fails("step_timeout", "0", "out of range (0, 604800]");
    expect_set_fails("batch_size", "0", "out of range [1, 65536]");
    expect_set_fails("steps", "-5", "out of range");
    /* enums and strings */
    expect_set_fails("network", "r51", "'r51' is not one of r18|r34|r50|r100");
    expect_set_fails("loss", "arcfce", "is not one of arcface|cosface|softmax|combined|sphereface");
    expect_set_fails("loss", "", "is not one of");
    expect_set_fails("margin_fallback", "THMM", "is not one of auto|thmm|easy|none");
    expect_set_fails("margin_grad", "exact ", "is not one of");
    expect_set_fails("output_dir", long_value, "399 characters, the limit is 255");
    expect_set_fails("output_dir", "/tmp/a#b", "'#'");
    expect_set_fails("interface", " eth0", "leading or trailing blanks");
    expect_set_fails("interface", "eth0\n", "control character");

    /* Good values at the edges are accepted. */
    TrainConfig c;
    config_defaults(&c);
    char err[512] = "";
    const char *ok[][2] = {{"width", "8"},         {"width", "512"},      {"dropout", "0.999"},
                           {"momentum", "0"},      {"m2", "auto"},        {"m2", "0"},
                           {"lr", "1e-8"},         {"lr", "0x1p-3"},      {"steps", "+7"},
                           {"step_timeout", "1e-3"}, {"seed", "0"},       {"output_dir", ""},
                           {"output_dir", "/data/x y=z"}, {"verify_pairs", "20"}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        EXPECT(config_set(&c, ok[i][0], ok[i][1], err, sizeof err) == 0, "%s = '%s': %s",
               ok[i][0], ok[i][1], err);
    EXPECT(c.lr == 0.125f && c.steps == 7 && strcmp(c.output_dir, "/data/x y=z") == 0,
           "edge values");
}

/* config_load_file must fail with "path:line: " and needle, leaving c as it was. */
static void expect_file_fails(const char *text, int line, const char *needle) {
    const char *path = temp_file(text);
    TrainConfig c, before;
    config_defaults(&c);
    before = c;
    char err[512] = "", where[96];
    snprintf(where, sizeof where, "%s:%d: ", path, line);
    EXPECT(config_load_file(&c, path, err, sizeof err) == -1, "file accepted: %s", text);
    EXPECT(strncmp(err, where, strlen(where)) == 0 && strstr(err, needle),
           "err '%s' lacks '%s' or '%s'", err, where, needle);
    EXPECT(config_diff(&c, &before, "failed load") == 0, "failed load changed the config");
}

static void test_file_errors(void) {
    expect_file_fails("lr = 0.1\nbatch_size = 12x\n", 2,
                      "key 'batch_size': expected an integer, got '12x'");
    expect_file_fails("# c\n\nlr = 0.1\nfoo = 3\n", 4, "key 'foo': unknown key");
    expect_file_fails("lr = 0.1\nwidth = 64\nlr = 0.2\n", 3,
                      "key 'lr': set twice (first on line 1)");
    expect_file_fails("lr 0.1\n", 1, "expected 'key = value', got 'lr 0.1'");
    expect_file_fails("lr = 0.1\n = 5\n", 2, "missing key");
    expect_file_fails("steps = 99999999999999999999\n", 1, "key 'steps': '99999999999999999999' "
                      "does not fit");
    expect_file_fails("network = r51 # typo\n", 1, "key 'network': 'r51' is not one of");
    expect_file_fails("dropout = 1.5\n", 1, "key 'dropout': 1.5 is out of range [0, 1)");
    expect_file_fails("lr = 0.1 0.2\n", 1, "key 'lr': expected a number, got '0.1 0.2'");
    char longline[5000];
    memset(longline, ' ', sizeof longline);
    memcpy(longline, "lr = 0.1\nseed = 1", 17);
    longline[sizeof longline - 2] = '\n';
    longline[sizeof longline - 1] = '\0';
    expect_file_fails(longline, 2, "line longer than");

    TrainConfig c;
    config_defaults(&c);
    char err[512] = "";
    EXPECT(config_load_file(&c, "/nonexistent/train.conf", err, sizeof err) == -1 &&
               strstr(err, "/nonexistent/train.conf: cannot open"),
           "missing file: %s", err);
}

/* config_from_args (including config_finalize) must fail naming needle. */
static void expect_args_fail(int argc, char **argv, const char *needle) {
    TrainConfig c, before;
    config_defaults(&c);
    before = c;
    char err[512] = "";
    EXPECT(config_from_args(&c, argc, argv, err, sizeof err) == -1, "args accepted (%s)", argv[1]);
    EXPECT(strstr(err, needle), "err '%s' lacks '%s'", err, needle);
    EXPECT(config_diff(&c, &before, "failed from_args") == 0, "failed from_args changed c");
}

#define ARGS(...) (int)(sizeof((char *[]){"prog", __VA_ARGS__}) / sizeof(char *)), \
                  (char *[]){"prog", __VA_ARGS__, NULL}

static void test_args_and_finalize_errors(void) {
    expect_args_fail(ARGS("lr=abc"), "override 'lr=abc': key 'lr': expected a number");
    expect_args_fail(ARGS("--batch_size=12x"), "override '--batch_size=12x': key 'batch_size'");
    expect_args_fail(ARGS("lr=0.1", "stray"), "argument 'stray' is not key=value");
    expect_args_fail(ARGS("--help"), "argument '--help' is not key=value");
    expect_args_fail(ARGS("/nonexistent.conf"), "/nonexistent.conf: cannot open");
    expect_args_fail(ARGS("nosuchkey=1"), "key 'nosuchkey': unknown key");
    const char *bad_file = temp_file("lr = 0.1\nlr = 0.2\n");
    expect_args_fail(ARGS((char *)bad_file, "lr=0.3"), ":2: key 'lr': set twice");

    /* Cross-key checks of config_finalize. */
    expect_args_fail(ARGS("bn_group=48"), "key 'bn_group': 48 does not divide batch_size 128");
    expect_args_fail(ARGS("batch_size=64", "bn_group=128"), "key 'bn_group'");
    expect_args_fail(ARGS("loss=cosface", "m2=0.5"), "key 'm2'");
    expect_args_fail(ARGS("loss=softmax", "m2=0.1"), "key 'm2'");
    expect_args_fail(ARGS("loss=softmax", "m3=0.1"), "key 'm3'");
    expect_args_fail(ARGS("loss=arcface", "m3=0.2"), "key 'm3'");
    expect_args_fail(ARGS("m1=2"), "key 'm1'");
    expect_args_fail(ARGS("loss=combined", "m1=1.35"), "key 'margin_fallback': thmm needs m1 = 1");
    expect_args_fail(ARGS("warmup_steps=1000"), "key 'warmup_steps': 1000 must be less than steps");
    expect_args_fail(ARGS("num_classes=10"), "key 'num_classes'");
    expect_args_fail(ARGS("max_message_bytes=100000"), "key 'max_message_bytes'");
    expect_args_fail(ARGS("exclude_pairs=pairs.txt", "exclude_fold=1"),
                     "key 'exclude_pairs': only dataset = folder can leave identities out (dataset is synthetic)");
    expect_args_fail(ARGS("dataset=rec", "data_path=t.rec", "exclude_list=names.txt"), "key 'exclude_list'");
    expect_args_fail(ARGS("dataset=folder", "data_path=/faces", "exclude_fold=2"),
                     "key 'exclude_fold': 2 names a fold of exclude_pairs, which is not set");
    expect_args_fail(ARGS("exclude_fold=-1"), "key 'exclude_fold'");

    /* ... and what they allow. */
    TrainConfig c;
    char err[512] = "";
    char **argv;
    int argc;
    struct {
        int argc;
        char **argv;
    } good[] = {
        {ARGS("loss=combined", "m2=0.5", "m3=0.35")},
        {ARGS("loss=combined", "m1=1.35", "margin_fallback=easy")},
        {ARGS("loss=cosface", "m2=0", "m3=0.35")},
        {ARGS("loss=arcface", "m2=0.3", "m3=0")},
        {ARGS("bn_group=32")},
        {ARGS("warmup_steps=999")},
        {ARGS("num_classes=2000")},
        {ARGS("dataset=folder", "data_path=/faces", "exclude_pairs=pairs.txt", "exclude_fold=3",
              "exclude_list=names.txt")},
        {ARGS("num_classes=2000")},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        argc = good[i].argc;
        argv = good[i].argv;
        EXPECT(config_from_args(&c, argc, argv, err, sizeof err) == 0, "%s %s: %s", argv[1],
               argc > 2 ? argv[2] : "", err);
    }
    EXPECT(c.num_classes == 2000, "num_classes");
}

/* config_print -> config_load_file gives the identical config. */
static void round_trip(const TrainConfig *c, const char *what) {
    char path[] = "/tmp/test_config_rt_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    FILE *f = fdopen(fd, "w");
    CHECK(f, "fdopen");
    config_print(c, f);
    CHECK(fclose(f) == 0, "fclose");
    TrainConfig back;
    config_defaults(&back);
    /* Start far from c so that a key config_print forgot shows up. */
    config_set(&back, "lr", "77", NULL, 0);
    config_set(&back, "output_dir", "elsewhere", NULL, 0);
    char err[512] = "";
    EXPECT(config_load_file(&back, path, err, sizeof err) == 0, "%s: reload: %s", what, err);
    EXPECT(config_diff(c, &back, what) == 0, "%s: round trip changed the config", what);
    unlink(path);
}

static void test_round_trip(void) {
    TrainConfig c;
    config_defaults(&c);
    round_trip(&c, "defaults (margins auto)");
    char err[512] = "";
    const char *sets[][2] = {
        {"network", "r100"},     {"width", "72"},        {"dropout", "0.1"},
        {"lr", "0.1"},           {"weight_decay", "1e-7"}, {"momentum", "0.899999976"},
        {"s", "30.000002"},      {"seed", "18446744073709551615"}, {"grad_clip", "1.00000012"},
        {"step_timeout", "0.1"}, {"output_dir", "/tmp/run dir/x=1"}, {"interface", "eth0"},
        {"loss", "combined"},    {"m2", "0.3"},        {"m3", "auto"},
        {"num_classes", "9999999999"}, {"steps", "123456789012"}, {"margin_grad", "straight"},
        {"batch_size", "96"},   {"bn_group", "32"},   {"max_message_bytes", "1000000"},
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        EXPECT(config_set(&c, sets[i][0], sets[i][1], err, sizeof err) == 0, "%s", err);
    round_trip(&c, "custom");
    EXPECT(config_finalize(&c, err, sizeof err) == 0, "%s", err);
    EXPECT(c.m2 == 0.3f && c.m3 == 0.2f, "combined: explicit m2 kept, m3 from the loss");
    round_trip(&c, "custom, finalized");
}

/* Help documents every key config_print writes, with its default. */
static void test_help(void) {
    char *printed = NULL, *help = NULL;
    size_t np = 0, nh = 0;
    FILE *p = open_memstream(&printed, &np), *h = open_memstream(&help, &nh);
    CHECK(p && h, "open_memstream");
    TrainConfig c;
    config_defaults(&c);
    config_print(&c, p);
    config_print_help(h);
    fclose(p);
    fclose(h);
    int keys = 0;
    for (char *line = strtok(printed, "\n"); line; line = strtok(NULL, "\n")) {
        char key[64], want[96];
        CHECK(sscanf(line, "%63s", key) == 1, "print line '%s'", line);
        snprintf(want, sizeof want, "\n  %s (", key);
        EXPECT(strstr(help, want), "help lacks key %s", key);
        keys++;
    }
    EXPECT(keys == 59, "config_print wrote %d keys", keys);
    EXPECT(strstr(help, "  width (int, default 64): [8, 512], a multiple of 8"), "help for width");
    EXPECT(strstr(help, "  dropout (float, default 0): [0, 1)"), "help for dropout");
    EXPECT(strstr(help, "  loss (enum, default arcface): arcface|cosface|softmax|combined"),
           "help for loss");
    free(printed);
    free(help);
}

/* Every preset in deploy/configs parses and finalises. */
static void test_presets(void) {
    const char *src = getenv("ARCFACE_SOURCE_DIR");
    if (!src) {
        fprintf(stderr, "ARCFACE_SOURCE_DIR unset: presets not checked\n");
        return;
    }
    const char *presets[] = {"demo.conf", "yaleb.conf", "ms1mv2_r50_arcface.conf", "glint360k_r100_cosface.conf",
                             "webface_r50.conf", "lfw_fold1.conf"};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        char path[1024], err[512];
        snprintf(path, sizeof path, "%s/deploy/configs/%s", src, presets[i]);
        TrainConfig c;
        config_defaults(&c);
        int rc = config_load_file(&c, path, err, sizeof err);
        if (rc == 0) rc = config_finalize(&c, err, sizeof err);
        EXPECT(rc == 0, "preset %s: %s", presets[i], err);
    }
}

int main(void) {
    log_set_role("test", -1);
    test_defaults();
    test_file_parsing();
    test_set_errors();
    test_file_errors();
    test_args_and_finalize_errors();
    test_round_trip();
    test_help();
    for (int i = 0; i < g_nfiles; i++) unlink(g_files[i]);
    test_presets();
    return test_finish("test_config");
}
