/* pairs.c -- LFW pairs files: parsing, checking against the image folder,
 * and the people of each fold. */
#include "pairs.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "err.h"

#define MAX_FIELDS 5     /* more than 4 is an error; keep one to count past it */
#define MAX_NUMBER 99999999

/* One non-blank line, cut into NUL-terminated fields inside the file's text. */
typedef struct {
    char *field[MAX_FIELDS];
    int n_fields; /* all of them, even past MAX_FIELDS */
    int line;
} Line;

/* Reads the whole file, NUL-terminated. */
static int read_text(const char *path, char **text, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - 1 - n, f);
        if (n < cap - 1) break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) free(buf);
        buf = bigger;
        cap *= 2;
    }
    int read_error = ferror(f);
    fclose(f);
    if (!buf) return err_set(err, errlen, "%s: out of memory", path);
    if (read_error) {
        free(buf);
        return err_set(err, errlen, "%s: read error", path);
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n)) {
        free(buf);
        return err_set(err, errlen, "%s: contains a NUL byte: not a pairs text file", path);
    }
    *text = buf;
    *len = n;
    return 0;
}

/* Cuts text into lines and fields in place; blank lines are dropped. */
static int split_lines(char *text, size_t len, Line **lines, int *n_lines, const char *path, char *err,
                       size_t errlen) {
    size_t cap = 64;
    int n = 0, line_no = 0;
    Line *out = malloc(cap * sizeof *out);
    if (!out) return err_set(err, errlen, "%s: out of memory", path);
    char *p = text, *end = text + len;
    while (p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        char *next = eol ? eol + 1 : end;
        if (!eol) eol = end;
        *eol = '\0';
        line_no++;
        if (line_no == INT_MAX) {
            free(out);
            return err_set(err, errlen, "%s: too many lines", path);
        }
        Line l = {.line = line_no};
        for (char *q = p; q < eol;) {
            while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r')) *q++ = '\0';
            if (q == eol) break;
            if (l.n_fields < MAX_FIELDS) l.field[l.n_fields] = q;
            l.n_fields++;
            while (q < eol && *q != ' ' && *q != '\t' && *q != '\r') q++;
        }
        if (l.n_fields) {
            if ((size_t)n == cap) {
                Line *bigger = realloc(out, 2 * cap * sizeof *out);
                if (!bigger) {
                    free(out);
                    return err_set(err, errlen, "%s: out of memory", path);
                }
                out = bigger;
                cap *= 2;
            }
            out[n++] = l;
        }
        p = next;
    }
    *lines = out;
    *n_lines = n;
    return 0;
}

/* A positive decimal integer of at most 8 digits, or -1. */
static int parse_count(const char *s) {
    long v = 0;
    if (!*s) return -1;
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9') return -1;
        v = v * 10 + (*c - '0');
        if (v > MAX_NUMBER) return -1;
    }
    return v >= 1 ? (int)v : -1;
}

static int name_ok(const char *s) {
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && !strchr(s, '/');
}

static int decimal_digits(int v) {
    int d = 1;
    while (v >= 10) v /= 10, d++;
    return d;
}

int pairs_load(PairList *pl, const char *pairs_path, const char *image_root, char *err, size_t errlen) {
    memset(pl, 0, sizeof *pl);
    Line *lines = NULL;
    int n_lines = 0;
    size_t len = 0;
    char *text = NULL;
    if (read_text(pairs_path, &text, &len, err, errlen) != 0) return -1;
    pl->text = text;
    if (split_lines(text, len, &lines, &n_lines, pairs_path, err, errlen) != 0) goto error;
    if (n_lines == 0) {
        err_set(err, errlen, "%s: empty or blank file: expected a header line 'FOLDS PAIRS' (e.g. '10 300') or 'PAIRS'",
             pairs_path);
        goto error;
    }

    /* Header. */
    const Line *h = &lines[0];
    int folds = 1, half = -1;
    if (h->n_fields == 1) {
        half = parse_count(h->field[0]);
    } else if (h->n_fields == 2) {
        folds = parse_count(h->field[0]);
        half = parse_count(h->field[1]);
    }
    if (h->n_fields < 1 || h->n_fields > 2 || folds < 1 || half < 1) {
        err_set(err, errlen, "%s:%d: expected a header 'FOLDS PAIRS' (e.g. '10 300': 10 folds of 300 same and 300 "
             "different pairs) or 'PAIRS' (one fold), got %d field%s starting '%s'", pairs_path, h->line,
             h->n_fields, h->n_fields == 1 ? "" : "s", h->field[0]);
        goto error;
    }
    long long want = 2LL * folds * half;
    if (want != n_lines - 1) {
        err_set(err, errlen, "%s: the header (line %d) asks for %d fold%s of %d same + %d different pairs = %lld pair "
             "lines, but the file has %d", pairs_path, h->line, folds, folds == 1 ? "" : "s", half, half, want,
             n_lines - 1);
        goto error;
    }
    if (want > INT_MAX / 2) {
        err_set(err, errlen, "%s:%d: %lld pairs are too many", pairs_path, h->line, want);
        goto error;
    }
    int n = (int)want;
    pl->n_pairs = n;
    pl->n_folds = folds;
    pl->fold_pairs = 2 * half;
    pl->same = calloc((size_t)n, 1);
    pl->path = image_root ? calloc(2 * (size_t)n, sizeof *pl->path) : NULL;
    pl->person = calloc(2 * (size_t)n, sizeof *pl->person);
    pl->number = calloc(2 * (size_t)n, sizeof *pl->number);
    pl->line = calloc((size_t)n, sizeof *pl->line);
    if (!pl->same || (image_root && !pl->path) || !pl->person || !pl->number || !pl->line) {
        err_set(err, errlen, "%s: out of memory for %d pairs", pairs_path, n);
        goto error;
    }

    /* Pair lines. */
    for (int i = 0; i < n; i++) {
        const Line *l = &lines[i + 1];
        int in_fold = i % pl->fold_pairs, same = in_fold < half;
        int fields = same ? 3 : 4;
        if (l->n_fields != fields) {
            err_set(err, errlen, "%s:%d: expected a %s line '%s' (fold %d, pair %d of %d), got %d field%s", pairs_path,
                 l->line, same ? "same-person" : "different-person", same ? "Name i j" : "NameA i NameB j",
                 i / pl->fold_pairs + 1, in_fold + 1, pl->fold_pairs, l->n_fields, l->n_fields == 1 ? "" : "s");
            goto error;
        }
        const char *name[2] = {l->field[0], same ? l->field[0] : l->field[2]};
        const char *num[2] = {l->field[1], same ? l->field[2] : l->field[3]};
        for (int s = 0; s < 2; s++) {
            if (!name_ok(name[s])) {
                err_set(err, errlen, "%s:%d: '%s' cannot be a person's folder name", pairs_path, l->line, name[s]);
                goto error;
            }
            int v = parse_count(num[s]);
            if (v < 1) {
                err_set(err, errlen, "%s:%d: image number '%s' is not a positive integer (at most %d)", pairs_path,
                     l->line, num[s], MAX_NUMBER);
                goto error;
            }
            pl->person[2 * i + s] = name[s];
            pl->number[2 * i + s] = v;
        }
        pl->same[i] = (uint8_t)same;
        pl->line[i] = l->line;
    }

    if (!image_root) {
        free(lines);
        return 0;
    }

    /* Paths: IMAGE_ROOT/Name/Name_%04d.jpg, in one allocation. */
    size_t root_len = strlen(image_root);
    while (root_len > 1 && image_root[root_len - 1] == '/') root_len--;
    size_t total = 0;
    for (size_t j = 0; j < 2 * (size_t)n; j++) {
        int d = decimal_digits(pl->number[j]);
        total += root_len + 2 * strlen(pl->person[j]) + (size_t)(d < 4 ? 4 : d) + 8;
    }
    pl->path_text = malloc(total);
    if (!pl->path_text) {
        err_set(err, errlen, "%s: out of memory for image paths", pairs_path);
        goto error;
    }
    char *w = pl->path_text;
    int missing = 0, first_missing = -1;
    for (size_t j = 0; j < 2 * (size_t)n; j++) {
        size_t room = total - (size_t)(w - pl->path_text);
        int k = snprintf(w, room, "%.*s/%s/%s_%04d.jpg", (int)root_len, image_root, pl->person[j], pl->person[j],
                         pl->number[j]);
        pl->path[j] = w;
        w += k + 1;
        struct stat st;
        if (stat(pl->path[j], &st) != 0 || S_ISDIR(st.st_mode)) {
            if (!missing++) first_missing = (int)j;
        }
    }
    if (missing) {
        err_set(err, errlen, "%s:%d: %d of the %d images it names %s missing under %s; the first: %s", pairs_path,
             pl->line[first_missing / 2], missing, 2 * n, missing == 1 ? "is" : "are", image_root,
             pl->path[first_missing]);
        goto error;
    }
    free(lines);
    return 0;

error:
    free(lines);
    pairs_free(pl);
    return -1;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int pairs_people_of_fold(const PairList *pl, int fold, const char ***names, int *n_names, char *err,
                         size_t errlen) {
    *names = NULL;
    *n_names = 0;
    if (fold < 0 || fold >= pl->n_folds)
        return err_set(err, errlen, "fold %d does not exist (the pairs have %d fold%s: 0 to %d)", fold, pl->n_folds,
                    pl->n_folds == 1 ? "" : "s", pl->n_folds - 1);
    size_t first = 2 * (size_t)fold * (size_t)pl->fold_pairs, count = 2 * (size_t)pl->fold_pairs;
    const char **out = malloc(count * sizeof *out);
    if (!out) return err_set(err, errlen, "out of memory");
    memcpy(out, pl->person + first, count * sizeof *out);
    qsort(out, count, sizeof *out, cmp_names);
    size_t k = 0;
    for (size_t i = 0; i < count; i++)
        if (k == 0 || strcmp(out[k - 1], out[i]) != 0) out[k++] = out[i];
    *names = out;
    *n_names = (int)k;
    return 0;
}

void pairs_free(PairList *pl) {
    if (!pl) return;
    free(pl->same);
    free(pl->path);
    free(pl->person);
    free(pl->number);
    free(pl->line);
    free(pl->text);
    free(pl->path_text);
    memset(pl, 0, sizeof *pl);
}
