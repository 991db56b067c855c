/* verify_set.c -- synthetic, .bin and pairs.txt verification sets, and scoring. */
#include "verify_set.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binset.h"
#include "check.h"
#include "image.h"
#include "pairs.h"
#include "synthetic.h"
#include "verify.h"

typedef enum { SET_SYNTHETIC, SET_BIN, SET_PAIRS } SetKind;

struct VerifySet {
    SetKind kind;
    char name[64];
    char protocol[160]; /* what verify_set_protocol says */
    int n_pairs;        /* the pairs scored: all of the source's, or one fold's */
    int *order;         /* (n_pairs) a fold's pairs as indices in the source; NULL = all, in order */
    float crop;
    uint64_t seed;
    SyntheticPair *synthetic; /* (n_pairs) */
    BinSet bin;
    PairList pairs;
};

/* The stem of a path: "/data/lfw.bin" -> "lfw". */
static void stem_of(char *out, size_t len, const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(out, len, "%.63s", base);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = '\0';
}

/* Cuts a trailing ":fold=K" off spec and returns K (>= 1), 0 when there is
 * none, -1 when K is not a positive integer. */
static int cut_fold(char *spec) {
    char *mark = strstr(spec, ":fold=");
    if (!mark) return 0;
    for (char *next; (next = strstr(mark + 1, ":fold=")) != NULL;) mark = next;
    const char *digits = mark + strlen(":fold=");
    long k = 0;
    if (!*digits) return -1;
    for (const char *c = digits; *c; c++) {
        if (*c < '0' || *c > '9' || k > 1000000) return -1;
        k = 10 * k + (*c - '0');
    }
    *mark = '\0';
    return k >= 1 ? (int)k : -1;
}

/* Pair i of the source (before any fold selection). */
static int source_same(const VerifySet *v, int i) {
    switch (v->kind) {
    case SET_SYNTHETIC: return v->synthetic[i].same;
    case SET_BIN: return v->bin.same[i];
    case SET_PAIRS: return v->pairs.same[i];
    }
    return 0;
}

/* Narrows an open set to fold k (1-based) of its source's folds (a pairs
 * file's own count, else 10 consecutive equal folds), reordered so that
 * 10-fold cross-validation inside the fold sees balanced parts. */
static int select_fold(VerifySet *v, int k, const char *spec, char *err, size_t errlen) {
    int n = v->n_pairs, folds = v->kind == SET_PAIRS ? v->pairs.n_folds : 10;
    if (k > folds) {
        snprintf(err, errlen, "verification set '%s': fold %d does not exist (the set has %d fold%s: 1 to %d)",
                 spec, k, folds, folds == 1 ? "" : "s", folds);
        return -1;
    }
    if (n % folds != 0) {
        snprintf(err, errlen, "verification set '%s': its %d pairs do not split into %d equal folds", spec, n,
                 folds);
        return -1;
    }
    int per_fold = n / folds, first = (k - 1) * per_fold;
    uint8_t *same = xcalloc_aligned((size_t)n, 1);
    for (int i = 0; i < n; i++) same[i] = (uint8_t)source_same(v, i);
    v->order = xcalloc_aligned((size_t)per_fold, sizeof *v->order);
    char why[256];
    int rc = verify_fold_order(v->order, same, first, per_fold, 10, why, sizeof why);
    free(same);
    if (rc != 0) {
        snprintf(err, errlen, "verification set '%s': fold %d: %s", spec, k, why);
        return -1;
    }
    v->n_pairs = per_fold;
    snprintf(v->protocol, sizeof v->protocol,
             "%d pairs: fold %d of %d only, threshold by 10-fold cross-validation within the fold", per_fold, k,
             folds);
    return 0;
}

int verify_set_open(VerifySet **out, const char *spec, const TrainConfig *cfg, char *err, size_t errlen) {
    *out = NULL;
    VerifySet *v = xcalloc_aligned(1, sizeof *v);
    v->crop = cfg->crop_fraction;
    v->seed = cfg->seed;
    char buf[CONFIG_STR];
    snprintf(buf, sizeof buf, "%s", spec);
    int fold = cut_fold(buf);
    if (fold < 0) {
        snprintf(err, errlen, "verification set '%s': ':fold=K' needs a positive fold number K", spec);
        verify_set_close(&v);
        return -1;
    }
    char *path = buf, *eq = strchr(buf, '='), *at;
    if (eq) {
        *eq = '\0';
        snprintf(v->name, sizeof v->name, "%.63s", buf);
        path = eq + 1;
    }
    at = strchr(path, '@');
    if (at) *at = '\0';
    if (!v->name[0]) {
        stem_of(v->name, sizeof v->name, path);
        if (fold) {
            size_t len = strlen(v->name);
            snprintf(v->name + len, sizeof v->name - len, "-fold%d", fold);
        }
    }
    int rc = 0;
    if (strcmp(path, "synthetic") == 0 && !at) {
        v->kind = SET_SYNTHETIC;
        v->n_pairs = cfg->verify_pairs;
        v->synthetic = xcalloc_aligned((size_t)v->n_pairs, sizeof *v->synthetic);
        rc = synthetic_pairs(v->synthetic, v->n_pairs, cfg->seed, cfg->synthetic_ids, cfg->synthetic_holdout_ids,
                             cfg->synthetic_images, err, errlen);
    } else if (at) {
        v->kind = SET_PAIRS;
        rc = pairs_load(&v->pairs, path, at + 1, err, errlen);
        v->n_pairs = rc == 0 ? v->pairs.n_pairs : 0;
    } else {
        size_t len = strlen(path);
        if (len < 4 || strcmp(path + len - 4, ".bin") != 0) {
            snprintf(err, errlen, "verification set '%s': expected synthetic, a .bin file, or "
                     "pairs.txt@image_root", spec);
            rc = -1;
        } else {
            v->kind = SET_BIN;
            rc = binset_load(&v->bin, path, err, errlen);
            v->n_pairs = rc == 0 ? v->bin.n_pairs : 0;
        }
    }
    if (rc == 0 && (v->n_pairs < 10 || v->n_pairs % 10 != 0)) {
        snprintf(err, errlen, "verification set '%s' has %d pairs; 10-fold accuracy needs a positive multiple "
                 "of 10", spec, v->n_pairs);
        rc = -1;
    }
    if (rc == 0)
        snprintf(v->protocol, sizeof v->protocol, "%d pairs: 10 folds, threshold chosen on the other 9",
                 v->n_pairs);
    if (rc == 0 && fold) rc = select_fold(v, fold, spec, err, errlen);
    if (rc != 0) {
        verify_set_close(&v);
        return -1;
    }
    *out = v;
    return 0;
}

void verify_set_close(VerifySet **pv) {
    VerifySet *v = pv ? *pv : NULL;
    if (!v) return;
    free(v->synthetic);
    free(v->order);
    binset_free(&v->bin);
    pairs_free(&v->pairs);
    free(v);
    *pv = NULL;
}

int verify_sets_open(VerifySet ***sets, int *n, const TrainConfig *cfg, char *err, size_t errlen) {
    *sets = NULL;
    *n = 0;
    char list[CONFIG_STR];
    snprintf(list, sizeof list, "%s", cfg->verify);
    int cap = 1;
    for (const char *c = list; *c; c++) cap += *c == ',';
    VerifySet **out = xcalloc_aligned((size_t)cap, sizeof *out);
    int count = 0;
    char *save = NULL;
    for (char *spec = strtok_r(list, ",", &save); spec; spec = strtok_r(NULL, ",", &save)) {
        if (!spec[0]) continue;
        if (verify_set_open(&out[count], spec, cfg, err, errlen) != 0) {
            verify_sets_close(&out, count);
            return -1;
        }
        count++;
    }
    *sets = out;
    *n = count;
    return 0;
}

void verify_sets_close(VerifySet ***sets, int n) {
    if (!sets || !*sets) return;
    for (int i = 0; i < n; i++) verify_set_close(&(*sets)[i]);
    free(*sets);
    *sets = NULL;
}

const char *verify_set_name(const VerifySet *v) { return v->name; }
int verify_set_pairs(const VerifySet *v) { return v->n_pairs; }

const char *verify_set_protocol(const VerifySet *v) { return v->protocol; }

int verify_set_same(const VerifySet *v, int pair) {
    CHECK(pair >= 0 && pair < v->n_pairs, "pair %d of %d", pair, v->n_pairs);
    return source_same(v, v->order ? v->order[pair] : pair);
}

int verify_set_image(const VerifySet *v, int pair, int side, DatasetScratch *s, uint8_t *rgb, char *err,
                     size_t errlen) {
    CHECK(pair >= 0 && pair < v->n_pairs && (side == 0 || side == 1), "pair %d side %d", pair, side);
    if (v->order) pair = v->order[pair];
    char why[512];
    switch (v->kind) {
    case SET_SYNTHETIC: {
        const SyntheticPair *p = &v->synthetic[pair];
        synthetic_render(rgb, v->seed, side ? p->id_b : p->id_a, side ? p->inst_b : p->inst_a);
        return 0;
    }
    case SET_BIN: {
        int i = 2 * pair + side;
        if (decode_to_face(v->bin.image[i], v->bin.image_len[i], &s->image, v->crop, rgb, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: image %d (pair %d): %s", v->name, i, pair, why);
            return -1;
        }
        return 0;
    }
    case SET_PAIRS: {
        const char *path = v->pairs.path[2 * pair + side];
        if (image_load_file(path, &s->file, &s->file_cap, &s->file_len, err, errlen) != 0) return -1;
        if (decode_to_face(s->file, s->file_len, &s->image, v->crop, rgb, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: %s", path, why);
            return -1;
        }
        return 0;
    }
    }
    return -1;
}

int verify_set_score(const VerifySet *v, IResNet *net, int first, int count, float *scores, char *err,
                     size_t errlen) {
    const int D = net->embedding_size;
    const size_t image_floats = (size_t)3 * FACE_SIZE * FACE_SIZE;
    /* Each pair needs 4 images in a batch: a, mirrored a, b, mirrored b. */
    int per_batch = net->max_batch / 4;
    CHECK(per_batch >= 1, "verification needs a batch of at least 4 images (max_batch %d)", net->max_batch);
    float *images = xcalloc_aligned((size_t)4 * per_batch * image_floats, sizeof(float));
    float *a = xcalloc_aligned(2 * (size_t)D, sizeof(float)), *b = a + D;
    uint8_t *rgb = xcalloc_aligned(image_floats, 1);
    DatasetScratch scratch;
    dataset_scratch_init(&scratch);
    int rc = 0;
    for (int start = 0; start < count && rc == 0; start += per_batch) {
        int n = count - start < per_batch ? count - start : per_batch;
        for (int i = 0; i < n && rc == 0; i++) {
            for (int side = 0; side < 2 && rc == 0; side++) {
                rc = verify_set_image(v, first + start + i, side, &scratch, rgb, err, errlen);
                if (rc != 0) break;
                image_to_tensor(images + (size_t)(4 * i + 2 * side) * image_floats, rgb, 0);
                image_to_tensor(images + (size_t)(4 * i + 2 * side + 1) * image_floats, rgb, 1);
            }
        }
        if (rc != 0) break;
        const float *emb = iresnet_forward(net, images, 4 * n, 0, 0, 0);
        for (int i = 0; i < n; i++) {
            const float *e = emb + (size_t)4 * i * D;
            for (int k = 0; k < D; k++) {
                a[k] = e[k] + e[D + k];
                b[k] = e[2 * D + k] + e[3 * D + k];
            }
            scores[start + i] = verify_cosine(a, b, D);
        }
    }
    dataset_scratch_free(&scratch);
    free(images);
    free(a);
    free(rgb);
    return rc;
}
