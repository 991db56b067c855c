/* config.c -- the training configuration: one table of keys (name, type,
 * default, range, meaning) drives defaults, parsing, printing and help. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "err.h"

typedef enum { T_INT, T_INT64, T_UINT64, T_FLOAT, T_DOUBLE, T_STRING, T_ENUM } KeyType;

typedef struct {
    const char *name;
    KeyType type;
    size_t offset;
    const char *def;      /* default, written as in a config file */
    int64_t imin, imax;   /* T_INT, T_INT64: inclusive range */
    int64_t multiple;     /* T_INT, T_INT64: value must be a multiple of this (0 = any) */
    double fmin, fmax;    /* T_FLOAT, T_DOUBLE: range ... */
    int fmin_open, fmax_open; /* ... with open ends where set */
    int auto_ok;          /* T_FLOAT: "auto" (NaN) is allowed, resolved by config_finalize */
    const char *allowed;  /* T_ENUM: "a|b|c" */
    const char *help;
} ConfigKey;

/* offsetof(TrainConfig, f), and a compile error when f is not of type T: the
 * table cannot silently write a float into an int. */
#define FIELD(f, T)                 \
    (offsetof(TrainConfig, f) +     \
     0 * sizeof(char[_Generic(((TrainConfig *)0)->f, T: 1, default: -1)]))

#define K_INT(f, d, lo, hi, mult, h) \
    {#f, T_INT, FIELD(f, int), d, .imin = lo, .imax = hi, .multiple = mult, .help = h}
#define K_INT64(f, d, lo, hi, h) \
    {#f, T_INT64, FIELD(f, int64_t), d, .imin = lo, .imax = hi, .help = h}
#define K_UINT64(f, d, h) {#f, T_UINT64, FIELD(f, uint64_t), d, .help = h}
#define K_FLOAT(f, d, lo, lo_open, hi, hi_open, h)                                         \
    {#f, T_FLOAT, FIELD(f, float), d, .fmin = lo, .fmax = hi, .fmin_open = lo_open,     \
     .fmax_open = hi_open, .help = h}
#define K_MARGIN(f, lo, hi, h)                                                             \
    {#f, T_FLOAT, FIELD(f, float), "auto", .fmin = lo, .fmax = hi, .auto_ok = 1, .help = h}
#define K_DOUBLE(f, d, lo, lo_open, hi, hi_open, h)                                        \
    {#f, T_DOUBLE, FIELD(f, double), d, .fmin = lo, .fmax = hi, .fmin_open = lo_open,   \
     .fmax_open = hi_open, .help = h}
#define K_STRING(f, d, h) {#f, T_STRING, FIELD(f, char *), d, .help = h}
#define K_ENUM(f, d, values, h) {#f, T_ENUM, FIELD(f, char *), d, .allowed = values, .help = h}

#define OPEN 1
#define CLOSED 0

static const ConfigKey KEYS[] = {
    /* model */
    K_ENUM(network, "r50", "r18|r34|r50|r100", "IResNet depth of the backbone"),
    K_INT(width, "64", 8, 512, 8, "channels of the first stage (insightface: 64)"),
    K_INT(embedding_size, "512", 2, 4096, 0, "length of the face embedding"),
    K_FLOAT(dropout, "0", 0, CLOSED, 1, OPEN, "dropout before the embedding FC (insightface: 0)"),
    /* data */
    K_ENUM(dataset, "synthetic", "synthetic|rec|folder",
           "training set: synthetic = built-in procedural faces; rec = insightface RecordIO "
           "(data_path = train.rec, train.idx beside it); folder = data_path/<identity>/<image>"),
    K_STRING(data_path, "", "train.rec (dataset = rec) or the image root (dataset = folder)"),
    K_INT(data_class_limit, "0", 0, 100000000, 0,
          "dataset = folder: train on the first N identities in sorted order only (counted after "
          "exclude_pairs and exclude_list); 0 = all"),
    K_STRING(exclude_pairs, "",
             "dataset = folder: an LFW pairs file (pairs.txt); the people named in fold exclude_fold "
             "are left out of training (labels stay dense over the kept identities); empty = none"),
    K_INT(exclude_fold, "0", 0, 1000000, 0,
          "the fold of exclude_pairs whose people are left out, 1-based as LFW numbers them; "
          "0 = the people of every fold"),
    K_STRING(exclude_list, "",
             "dataset = folder: a text file of identity folder names to leave out, one per line "
             "('#' comments, blank lines ignored); empty = none"),
    K_FLOAT(crop_fraction, "1", 0, OPEN, 1, CLOSED,
            "images not 112x112: keep the centred square of this fraction of the shorter side, "
            "then resize it to 112x112 (training and verification alike)"),
    K_INT(decode_threads, "2", 1, 256, 0, "background threads per worker decoding training images"),
    K_INT64(max_bad_images, "100", 0, INT64_C(1000000000000),
            "corrupt training images a worker skips (each reported) before the run fails"),
    K_STRING(verify, "synthetic",
             "comma-separated verification sets: synthetic, NAME=PATH.bin (insightface .bin), "
             "NAME=PAIRS.txt@IMAGE_ROOT (LFW pairs.txt); the name defaults to the file's stem; a suffix "
             ":fold=K scores fold K alone (thresholds by 10-fold cross-validation inside it)"),
    K_INT(synthetic_ids, "1000", 2, 100000000, 0, "training identities of the synthetic set"),
    K_INT(synthetic_images, "40", 2, 100000, 0, "images per synthetic identity"),
    K_INT(synthetic_holdout_ids, "100", 2, 1000000, 0,
          "held-out synthetic identities the verification pairs are drawn from"),
    K_INT(verify_pairs, "1200", 20, 10000000, 20,
          "verification pairs (10 folds, half same-identity)"),
    K_INT64(num_classes, "0", 0, INT64_C(10000000000),
            "classifier rows; 0 = the dataset's identity count"),
    /* batch */
    K_INT(batch_size, "128", 1, 65536, 0, "samples per worker and step"),
    K_INT(bn_group, "0", 0, 65536, 0,
          "samples per BatchNorm statistics group, must divide batch_size; 0 = batch_size"),
    /* loss */
    K_ENUM(loss, "arcface", "arcface|cosface|softmax|combined|sphereface",
           "target logit s*(cos(m1*theta + m2) - m3); combined allows any m1, m2, m3; "
           "sphereface = A-Softmax psi(theta) with integer m = m1 (1..5) and lambda annealing"),
    K_FLOAT(s, "64", 1, CLOSED, 1024, CLOSED, "logit scale"),
    K_MARGIN(m1, 1, 8, "multiplicative angular margin; auto = from loss (1)"),
    K_MARGIN(m2, 0, 3.14159265358979, "additive angular margin in radians; auto = from loss "
                                      "(arcface 0.5, combined 0.3, else 0)"),
    K_MARGIN(m3, 0, 1, "additive cosine margin; auto = from loss (cosface 0.4, combined 0.2, "
                       "else 0)"),
    K_ENUM(margin_fallback, "auto", "auto|thmm|easy|none",
           "when theta + m2 > pi: thmm = insightface's th/mm linear fallback (needs m1 = 1), "
           "easy = easy_margin (margin only where cos > 0), none = raw formula; "
           "auto = none for sphereface, thmm otherwise"),
    K_INT(normalize_embeddings, "1", 0, 1, 0,
          "1: logits from L2-normalised embeddings times s; 0: times the embedding's norm "
          "(original SphereFace, s unused)"),
    K_INT(normalize_weights, "1", 0, 1, 0,
          "1: classifier rows L2-normalised; 0: plain x.w logits (needs loss = softmax and "
          "normalize_embeddings = 0)"),
    K_DOUBLE(sphereface_lambda_base, "1000", 0, CLOSED, 1e9, CLOSED,
             "A-Softmax: lambda = max(lambda_min, base * (1 + gamma * iter)^-power)"),
    K_DOUBLE(sphereface_lambda_gamma, "0.12", 0, CLOSED, 1e6, CLOSED, "A-Softmax lambda gamma"),
    K_DOUBLE(sphereface_lambda_power, "1", 0, CLOSED, 100, CLOSED, "A-Softmax lambda power"),
    K_DOUBLE(sphereface_lambda_min, "5", 0, CLOSED, 1e9, CLOSED, "A-Softmax lambda floor"),
    K_FLOAT(sample_rate, "1", 0, OPEN, 1, CLOSED,
            "Partial FC: share of each server's negative classes used per step (positives always "
            "kept, the choice a hash of (seed, step, class)); 1 = all"),
    K_ENUM(margin_grad, "exact", "exact|straight",
           "gradient through the margin: exact = d/dcos of the margin function (MXNet, "
           "insightface before 2022), straight = straight-through (insightface 2022+)"),
    /* optimiser and schedule */
    K_FLOAT(lr, "0.1", 0, CLOSED, 100, CLOSED, "peak learning rate (SGD)"),
    K_FLOAT(momentum, "0.9", 0, CLOSED, 1, OPEN, "SGD momentum"),
    K_FLOAT(weight_decay, "5e-4", 0, CLOSED, 1, OPEN, "L2 weight decay"),
    K_FLOAT(grad_clip, "5", 0, CLOSED, 1e6, CLOSED,
            "max L2 norm of the backbone gradient; 0 = off"),
    K_INT64(steps, "1000", 1, INT64_C(1000000000000), "total training steps"),
    K_INT64(warmup_steps, "0", 0, INT64_C(1000000000000),
            "linear warm-up steps, less than steps"),
    K_ENUM(lr_schedule, "poly", "poly|step",
           "after warm-up: poly = polynomial decay to 0 at the last step (insightface's "
           "PolyScheduler); step = multiply by lr_decay at each epoch of lr_epochs"),
    K_STRING(lr_epochs, "", "lr_schedule = step: comma-separated epochs (ascending, may be "
                            "fractional) at which lr is multiplied by lr_decay, e.g. 10,18,22"),
    K_FLOAT(lr_decay, "0.1", 0, OPEN, 1, CLOSED, "lr_schedule = step: factor per milestone"),
    K_FLOAT(lr_power, "2", 0, CLOSED, 10, CLOSED,
            "polynomial decay exponent after warm-up (insightface: 2)"),
    /* run */
    K_UINT64(seed, "1234", "seed of every random draw"),
    K_INT(log_every, "10", 1, 1000000000, 0, "progress line every N steps"),
    K_INT(verify_every, "0", 0, 1000000000, 0, "verification every N steps; 0 = at the end only"),
    K_STRING(output_dir, "", "directory for checkpoints and logs; empty = write nothing"),
    K_INT64(checkpoint_every, "0", 0, INT64_C(1000000000000),
            "save a checkpoint every N steps (needs output_dir); the last step is always saved"),
    K_INT(keep_checkpoints, "3", 1, 1000000, 0, "complete checkpoints kept in output_dir (older ones removed)"),
    K_ENUM(resume, "auto", "auto|none",
           "auto = continue from the newest complete checkpoint in output_dir when there is one"),
    K_INT64(stop_at_step, "0", 0, INT64_C(1000000000000),
            "stop after this many steps with a checkpoint (the schedule still runs to steps); 0 = run to the end"),
    K_INT(threads, "0", 0, 1024, 0, "compute threads per process (SGEMMs and every layer); 0 = OPENBLAS_NUM_THREADS, else one per CPU"),
    /* distribution */
    K_STRING(interface, "",
             "IPv4 address or interface name (eth0) the servers bind; empty = the environment variable "
             "ARCFACE_INTERFACE, else auto: 127.0.0.1 when all ranks share a host, else the first "
             "non-loopback address"),
    K_ENUM(encrypt, "none", "none|curve",
           "curve = encrypt and authenticate the worker-server sockets with libzmq's CURVE (keys made per "
           "job, public keys shared over MPI); none = plain TCP, every message still checked for the job token"),
    K_DOUBLE(heartbeat_interval, "1", 0.01, CLOSED, 3600, CLOSED,
             "seconds between ZMTP heartbeats on the worker-server connections; a peer silent for 3 intervals "
             "is disconnected"),
    K_DOUBLE(step_timeout, "300", 0, OPEN, 604800, CLOSED,
             "seconds any wait of a step may take before the job is aborted"),
    K_INT64(max_message_bytes, "268435456", 4096, INT64_C(17179869184),
            "largest protocol message (ZMQ_MAXMSGSIZE); 268435456 = 256 MiB"),
};
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

/* Longest line of a config file. */
#define CONFIG_LINE 4096

typedef union {
    int64_t i;
    uint64_t u;
    float f;
    double d;
    char s[CONFIG_STR];
} Value;

static const ConfigKey *find_key(const char *name) {
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0) return &KEYS[i];
    return NULL;
}

/* Edit distance, capped: for "did you mean" on unknown keys. */
static int edit_distance(const char *a, const char *b) {
    enum { MAXLEN = 40 };
    size_t la = strlen(a), lb = strlen(b);
    if (la >= MAXLEN || lb >= MAXLEN) return MAXLEN;
    int row[MAXLEN + 1];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static void unknown_key_err(const char *name, char *err, size_t errlen) {
    const char *best = NULL;
    int best_d = 3; /* suggest only close matches */
    for (int i = 0; i < NKEYS; i++) {
        int d = edit_distance(name, KEYS[i].name);
        if (d < best_d) {
            best_d = d;
            best = KEYS[i].name;
        }
    }
    if (best)
        err_set(err, errlen, "key '%s': unknown key (did you mean '%s'?)", name, best);
    else
        err_set(err, errlen, "key '%s': unknown key (--help lists them)", name);
}

/* 1 when value is one of the '|'-separated words in allowed. */
static int enum_allows(const char *allowed, const char *value) {
    size_t n = strlen(value);
    for (const char *p = allowed; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

static int in_float_range(const ConfigKey *k, double v) {
    if (k->fmin_open ? !(v > k->fmin) : !(v >= k->fmin)) return 0;
    if (k->fmax_open ? !(v < k->fmax) : !(v <= k->fmax)) return 0;
    return 1;
}

static void format_range(const ConfigKey *k, char *out, size_t n) {
    switch (k->type) {
    case T_INT:
    case T_INT64:
        if (k->multiple)
            snprintf(out, n, "[%" PRId64 ", %" PRId64 "], a multiple of %" PRId64, k->imin, k->imax,
                     k->multiple);
        else
            snprintf(out, n, "[%" PRId64 ", %" PRId64 "]", k->imin, k->imax);
        break;
    case T_UINT64: snprintf(out, n, "[0, 2^64)"); break;
    case T_FLOAT:
    case T_DOUBLE:
        snprintf(out, n, "%c%.9g, %.9g%c%s", k->fmin_open ? '(' : '[', k->fmin, k->fmax,
                 k->fmax_open ? ')' : ']', k->auto_ok ? " or auto" : "");
        break;
    case T_STRING: snprintf(out, n, "up to %d characters", CONFIG_STR - 1); break;
    case T_ENUM: snprintf(out, n, "%s", k->allowed); break;
    }
}

/* Parses value for key k into *out. Returns 0, or -1 with the reason (without
 * the "key 'x': " prefix) in why. Strict: the whole string must be the value. */
static int parse_value(const ConfigKey *k, const char *value, Value *out, char *why, size_t n) {
    char range[128];
    format_range(k, range, sizeof range);
    char *end = NULL;
    memset(out, 0, sizeof *out);
    switch (k->type) {
    case T_INT:
    case T_INT64: {
        if (!*value || isspace((unsigned char)*value)) goto not_integer;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (end == value || *end) goto not_integer;
        if (errno == ERANGE) {
            err_set(why, n, "'%s' does not fit in a 64-bit integer", value);
            return -1;
        }
        if (v < k->imin || v > k->imax) {
            err_set(why, n, "%lld is out of range %s", v, range);
            return -1;
        }
        if (k->multiple && v % k->multiple != 0) {
            err_set(why, n, "%lld is not a multiple of %" PRId64, v, k->multiple);
            return -1;
        }
        out->i = v;
        return 0;
    }
    case T_UINT64: {
        /* strtoull would wrap "-1" to 2^64 - 1: refuse any sign. */
        if (!isdigit((unsigned char)*value)) goto not_integer;
        errno = 0;
        unsigned long long v = strtoull(value, &end, 10);
        if (*end) goto not_integer;
        if (errno == ERANGE) {
            err_set(why, n, "'%s' does not fit in an unsigned 64-bit integer", value);
            return -1;
        }
        out->u = v;
        return 0;
    }
    case T_FLOAT:
    case T_DOUBLE: {
        if (k->auto_ok && strcmp(value, "auto") == 0) {
            out->f = NAN;
            return 0;
        }
        if (!*value || isspace((unsigned char)*value)) goto not_number;
        errno = 0;
        double v;
        if (k->type == T_FLOAT)
            v = strtof(value, &end);
        else
            v = strtod(value, &end);
        if (end == value || *end) goto not_number;
        if (errno == ERANGE) { /* overflow, or underflow to a denormal or zero */
            err_set(why, n, "'%s' is out of the range of a %s", value,
                    k->type == T_FLOAT ? "float" : "double");
            return -1;
        }
        if (!isfinite(v)) {
            err_set(why, n, "'%s' is not a finite number", value);
            return -1;
        }
        if (!in_float_range(k, v)) {
            err_set(why, n, "%g is out of range %s", v, range);
            return -1;
        }
        if (k->type == T_FLOAT)
            out->f = (float)v;
        else
            out->d = v;
        return 0;
    }
    case T_STRING:
    case T_ENUM: {
        size_t len = strlen(value);
        if (len >= CONFIG_STR) {
            err_set(why, n, "value has %zu characters, the limit is %d", len, CONFIG_STR - 1);
            return -1;
        }
        if (k->type == T_ENUM && !enum_allows(k->allowed, value)) {
            err_set(why, n, "'%s' is not one of %s", value, k->allowed);
            return -1;
        }
        /* What config_print writes must read back the same: no '#' (a comment),
         * no control characters, no surrounding blanks (trimmed by the parser). */
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)value[i];
            if (ch == '#' || iscntrl(ch)) {
                err_set(why, n, "value contains %s at position %zu",
                        ch == '#' ? "'#' (which starts a comment)" : "a control character", i);
                return -1;
            }
        }
        if (len && (isspace((unsigned char)value[0]) || isspace((unsigned char)value[len - 1]))) {
            err_set(why, n, "value '%s' has leading or trailing blanks", value);
            return -1;
        }
        memcpy(out->s, value, len + 1);
        return 0;
    }
    }
    FATAL("unknown key type %d", (int)k->type);

not_integer:
    err_set(why, n, "expected an integer, got '%s'", value);
    return -1;
not_number:
    err_set(why, n, "expected a number%s, got '%s'", k->auto_ok ? " or auto" : "", value);
    return -1;
}

static void store_value(TrainConfig *c, const ConfigKey *k, const Value *v) {
    char *field = (char *)c + k->offset;
    switch (k->type) {
    case T_INT: {
        int x = (int)v->i;
        memcpy(field, &x, sizeof x);
        break;
    }
    case T_INT64: memcpy(field, &v->i, sizeof v->i); break;
    case T_UINT64: memcpy(field, &v->u, sizeof v->u); break;
    case T_FLOAT: memcpy(field, &v->f, sizeof v->f); break;
    case T_DOUBLE: memcpy(field, &v->d, sizeof v->d); break;
    case T_STRING:
    case T_ENUM: memcpy(field, v->s, CONFIG_STR); break; /* zero-padded: structs compare equal */
    }
}

void config_defaults(TrainConfig *c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < NKEYS; i++) {
        Value v;
        char why[256];
        CHECK(parse_value(&KEYS[i], KEYS[i].def, &v, why, sizeof why) == 0,
              "default of key '%s': %s", KEYS[i].name, why);
        store_value(c, &KEYS[i], &v);
    }
}

int config_set(TrainConfig *c, const char *key, const char *value, char *err, size_t errlen) {
    const ConfigKey *k = find_key(key);
    if (!k) {
        unknown_key_err(key, err, errlen);
        return -1;
    }
    Value v;
    char why[512];
    if (parse_value(k, value, &v, why, sizeof why) < 0) {
        err_set(err, errlen, "key '%s': %s", key, why);
        return -1;
    }
    store_value(c, k, &v);
    return 0;
}

/* Trims blanks at both ends in place; returns the new start. */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

int config_load_file(TrainConfig *c, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        err_set(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    TrainConfig tmp = *c; /* c changes only when the whole file is good */
    int set_on_line[NKEYS] = {0};
    char line[CONFIG_LINE];
    char why[1024];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
            err_set(err, errlen, "%s:%d: line longer than %d characters", path, lineno,
                    CONFIG_LINE - 2);
            goto error;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *s = trim(line);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            err_set(err, errlen, "%s:%d: expected 'key = value', got '%s'", path, lineno, s);
            goto error;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        if (!*key) {
            err_set(err, errlen, "%s:%d: missing key before '= %s'", path, lineno, value);
            goto error;
        }
        const ConfigKey *k = find_key(key);
        if (k && set_on_line[k - KEYS]) {
            err_set(err, errlen, "%s:%d: key '%s': set twice (first on line %d)", path, lineno,
                    key, set_on_line[k - KEYS]);
            goto error;
        }
        if (config_set(&tmp, key, value, why, sizeof why) < 0) {
            err_set(err, errlen, "%s:%d: %s", path, lineno, why);
            goto error;
        }
        set_on_line[k - KEYS] = lineno;
    }
    if (ferror(f)) {
        err_set(err, errlen, "%s:%d: read error: %s", path, lineno, strerror(errno));
        goto error;
    }
    fclose(f);
    *c = tmp;
    return 0;

error:
    fclose(f);
    return -1;
}

int config_from_args(TrainConfig *c, int argc, char **argv, char *err, size_t errlen) {
    TrainConfig tmp;
    config_defaults(&tmp);
    char why[1024];
    int i = 1;
    if (argc > 1 && !strchr(argv[1], '=') && argv[1][0] != '-') {
        if (config_load_file(&tmp, argv[1], err, errlen) < 0) return -1;
        i = 2;
    }
    /* Overrides apply in order; a key given twice takes the last value. */
    for (; i < argc; i++) {
        const char *arg = argv[i];
        const char *kv = strncmp(arg, "--", 2) == 0 ? arg + 2 : arg;
        const char *eq = strchr(kv, '=');
        if (!eq) {
            err_set(err, errlen, "argument '%s' is not key=value (only the first argument may "
                    "be a config file)", arg);
            return -1;
        }
        char key[128], value[CONFIG_LINE];
        size_t klen = (size_t)(eq - kv);
        if (klen >= sizeof key || strlen(eq + 1) >= sizeof value) {
            err_set(err, errlen, "override '%.64s...' is too long", arg);
            return -1;
        }
        memcpy(key, kv, klen);
        key[klen] = '\0';
        strcpy(value, eq + 1);
        if (config_set(&tmp, trim(key), trim(value), why, sizeof why) < 0) {
            err_set(err, errlen, "override '%s': %s", arg, why);
            return -1;
        }
    }
    if (config_finalize(&tmp, err, errlen) < 0) return -1;
    *c = tmp;
    return 0;
}

/* Margins (m1, m2, m3) each loss uses when they are "auto". */
static const struct {
    const char *loss;
    float m1, m2, m3;
} LOSS_MARGINS[] = {
    {"arcface", 1.0f, 0.5f, 0.0f},
    {"cosface", 1.0f, 0.0f, 0.4f},
    {"softmax", 1.0f, 0.0f, 0.0f},
    {"combined", 1.0f, 0.3f, 0.2f},
    {"sphereface", 4.0f, 0.0f, 0.0f},
};

int config_parse_epochs(const char *list, double *epochs, int max, char *err, size_t errlen) {
    int n = 0;
    const char *p = list;
    while (*p) {
        char *end;
        double e = strtod(p, &end);
        if (end == p || !(e > 0) || !isfinite(e) || (*end && *end != ',')) {
            err_set(err, errlen, "key 'lr_epochs': '%s' is not a comma-separated list of positive numbers",
                    list);
            return -1;
        }
        if (n == max) {
            err_set(err, errlen, "key 'lr_epochs': more than %d epochs", max);
            return -1;
        }
        if (n > 0 && e <= epochs[n - 1]) {
            err_set(err, errlen, "key 'lr_epochs': epochs must increase (%g after %g)", e, epochs[n - 1]);
            return -1;
        }
        epochs[n++] = e;
        if (*end == ',' && end[1] == '\0') {
            err_set(err, errlen, "key 'lr_epochs': '%s' ends with a comma", list);
            return -1;
        }
        p = *end ? end + 1 : end;
    }
    return n;
}

int config_finalize(TrainConfig *c, char *err, size_t errlen) {
    TrainConfig t = *c;
    int li = -1;
    for (int i = 0; i < (int)(sizeof LOSS_MARGINS / sizeof LOSS_MARGINS[0]); i++)
        if (strcmp(t.loss, LOSS_MARGINS[i].loss) == 0) li = i;
    if (li < 0) {
        err_set(err, errlen, "key 'loss': '%s' is not a known loss", t.loss);
        return -1;
    }
    if (isnan(t.m1)) t.m1 = LOSS_MARGINS[li].m1;
    if (isnan(t.m2)) t.m2 = LOSS_MARGINS[li].m2;
    if (isnan(t.m3)) t.m3 = LOSS_MARGINS[li].m3;
    /* A margin foreign to the chosen loss is most likely a mistake (a cosface
     * margin of 0.35 typed into m2); mixing margins is what "combined" is for. */
    int sphereface = strcmp(t.loss, "sphereface") == 0;
    if (sphereface && (t.m1 != floorf(t.m1) || t.m1 < 1 || t.m1 > 5)) {
        err_set(err, errlen, "key 'm1': sphereface needs an integer margin m1 in 1..5, got %g", t.m1);
        return -1;
    }
    if (strcmp(t.margin_fallback, "auto") == 0)
        snprintf(t.margin_fallback, sizeof t.margin_fallback, "%s", sphereface ? "none" : "thmm");
    if (strcmp(t.loss, "combined") != 0) {
        const char *bad = NULL;
        float v = 0;
        if (!sphereface && t.m1 != 1.0f) bad = "m1", v = t.m1;
        else if (strcmp(t.loss, "arcface") != 0 && t.m2 != 0.0f) bad = "m2", v = t.m2;
        else if (strcmp(t.loss, "cosface") != 0 && t.m3 != 0.0f) bad = "m3", v = t.m3;
        if (bad) {
            err_set(err, errlen, "key '%s': %s = %g does not belong to loss = %s (%s uses m1 = 1, "
                    "m2 = %g, m3 = %g); set loss = combined to mix margins", bad, bad, v, t.loss,
                    t.loss, LOSS_MARGINS[li].m2, LOSS_MARGINS[li].m3);
            return -1;
        }
    }
    if (strcmp(t.margin_fallback, "thmm") == 0 && t.m1 != 1.0f) {
        err_set(err, errlen, "key 'margin_fallback': thmm needs m1 = 1, but m1 = %g; use easy or "
                "none", t.m1);
        return -1;
    }
    if (sphereface && strcmp(t.margin_fallback, "none") != 0) {
        err_set(err, errlen, "key 'margin_fallback': sphereface's psi needs no fallback (use none or auto)");
        return -1;
    }
    if (!t.normalize_weights && (t.normalize_embeddings || strcmp(t.loss, "softmax") != 0)) {
        err_set(err, errlen, "key 'normalize_weights': raw classifier rows give plain x.w logits, which need "
                "loss = softmax and normalize_embeddings = 0");
        return -1;
    }
    if (t.bn_group == 0) t.bn_group = t.batch_size;
    if (t.batch_size % t.bn_group != 0) {
        err_set(err, errlen, "key 'bn_group': %d does not divide batch_size %d", t.bn_group,
                t.batch_size);
        return -1;
    }
    if (t.warmup_steps >= t.steps) {
        err_set(err, errlen, "key 'warmup_steps': %" PRId64 " must be less than steps (%" PRId64
                ")", t.warmup_steps, t.steps);
        return -1;
    }
    if (strcmp(t.lr_schedule, "step") == 0) {
        double epochs[CONFIG_MAX_LR_EPOCHS];
        int n = config_parse_epochs(t.lr_epochs, epochs, CONFIG_MAX_LR_EPOCHS, err, errlen);
        if (n < 0) return -1;
        if (n == 0) {
            err_set(err, errlen, "key 'lr_epochs': lr_schedule = step needs at least one epoch");
            return -1;
        }
    } else if (t.lr_epochs[0]) {
        err_set(err, errlen, "key 'lr_epochs': only used with lr_schedule = step");
        return -1;
    }
    if (t.stop_at_step >= t.steps) {
        err_set(err, errlen, "key 'stop_at_step': %" PRId64 " must be less than steps (%" PRId64 "); 0 = run to the end",
                t.stop_at_step, t.steps);
        return -1;
    }
    if (t.stop_at_step > 0 && !t.output_dir[0]) {
        err_set(err, errlen, "key 'stop_at_step': stopping early saves a checkpoint, which needs output_dir");
        return -1;
    }
    if (strcmp(t.dataset, "synthetic") != 0 && t.data_path[0] == '\0') {
        err_set(err, errlen, "key 'data_path': dataset = %s needs data_path (%s)", t.dataset,
                strcmp(t.dataset, "rec") == 0 ? "the train.rec file" : "the image root");
        return -1;
    }
    if (t.data_class_limit != 0 && strcmp(t.dataset, "folder") != 0) {
        err_set(err, errlen, "key 'data_class_limit': only dataset = folder can be limited to its "
                "first identities");
        return -1;
    }
    if ((t.exclude_pairs[0] || t.exclude_list[0]) && strcmp(t.dataset, "folder") != 0) {
        err_set(err, errlen, "key '%s': only dataset = folder can leave identities out (dataset is %s)",
                t.exclude_pairs[0] ? "exclude_pairs" : "exclude_list", t.dataset);
        return -1;
    }
    if (t.exclude_fold != 0 && !t.exclude_pairs[0]) {
        err_set(err, errlen, "key 'exclude_fold': %d names a fold of exclude_pairs, which is not set",
                t.exclude_fold);
        return -1;
    }
    if (strcmp(t.dataset, "synthetic") == 0 && t.num_classes != 0 &&
        t.num_classes < t.synthetic_ids) {
        err_set(err, errlen, "key 'num_classes': %" PRId64 " is fewer than synthetic_ids (%d); "
                "use 0 to take the dataset's count", t.num_classes, t.synthetic_ids);
        return -1;
    }
    /* The largest message is a FORWARD of batch_size rows: int64 labels and
     * float embeddings, plus header and identity frames (well under 1 KiB). */
    int64_t need = (int64_t)t.batch_size * (8 + 4 * (int64_t)t.embedding_size) + 1024;
    if (t.max_message_bytes < need) {
        err_set(err, errlen, "key 'max_message_bytes': %" PRId64 " is too small for batch_size %d "
                "x embedding_size %d (needs at least %" PRId64 ")", t.max_message_bytes,
                t.batch_size, t.embedding_size, need);
        return -1;
    }
    *c = t;
    return 0;
}

static void format_value(const TrainConfig *c, const ConfigKey *k, char *out, size_t n) {
    const char *field = (const char *)c + k->offset;
    switch (k->type) {
    case T_INT: {
        int x;
        memcpy(&x, field, sizeof x);
        snprintf(out, n, "%d", x);
        break;
    }
    case T_INT64: {
        int64_t x;
        memcpy(&x, field, sizeof x);
        snprintf(out, n, "%" PRId64, x);
        break;
    }
    case T_UINT64: {
        uint64_t x;
        memcpy(&x, field, sizeof x);
        snprintf(out, n, "%" PRIu64, x);
        break;
    }
    case T_FLOAT: {
        float x;
        memcpy(&x, field, sizeof x);
        if (isnan(x) && k->auto_ok) {
            snprintf(out, n, "auto");
            break;
        }
        /* The fewest digits that read back to the same float ("0.1", not
         * "0.100000001"); 9 always do. */
        for (int digits = 6; digits <= 9; digits++) {
            snprintf(out, n, "%.*g", digits, x);
            if (strtof(out, NULL) == x) break;
        }
        break;
    }
    case T_DOUBLE: {
        double x;
        memcpy(&x, field, sizeof x);
        for (int digits = 15; digits <= 17; digits++) {
            snprintf(out, n, "%.*g", digits, x);
            if (strtod(out, NULL) == x) break;
        }
        break;
    }
    case T_STRING:
    case T_ENUM: snprintf(out, n, "%s", field); break;
    }
}

void config_print(const TrainConfig *c, FILE *out) {
    char value[CONFIG_STR + 32];
    for (int i = 0; i < NKEYS; i++) {
        format_value(c, &KEYS[i], value, sizeof value);
        if (value[0])
            fprintf(out, "%s = %s\n", KEYS[i].name, value);
        else
            fprintf(out, "%s =\n", KEYS[i].name);
    }
}

static const char *type_name(KeyType t) {
    switch (t) {
    case T_INT: return "int";
    case T_INT64: return "int64";
    case T_UINT64: return "uint64";
    case T_FLOAT: return "float";
    case T_DOUBLE: return "double";
    case T_STRING: return "string";
    case T_ENUM: return "enum";
    }
    return "?";
}

void config_print_help(FILE *out) {
    fprintf(out, "Configuration keys: set them in a file as 'key = value' ('#' starts a comment)\n"
                 "or on the command line as key=value or --key=value (the command line wins).\n\n");
    for (int i = 0; i < NKEYS; i++) {
        const ConfigKey *k = &KEYS[i];
        char range[128];
        format_range(k, range, sizeof range);
        fprintf(out, "  %s (%s, default %s%s%s): %s\n      %s\n", k->name, type_name(k->type),
                *k->def ? "" : "\"", k->def, *k->def ? "" : "\"", range, k->help);
    }
}
