/* align_list.c -- the landmark file parser and the batch alignment run. */
#define _GNU_SOURCE
#include "align_list.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "decode.h"
#include "fs_dirs.h"
#include "jpeg_encode.h"
#include "log.h"

#define FIELDS (1 + 2 * ALIGN_POINTS)

static const char *const point_names[ALIGN_POINTS] = {"left eye", "right eye", "nose tip", "left mouth corner",
                                                      "right mouth corner"};

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* A path that stays inside the folder it is joined to. */
static int check_relative(const char *path, char *err, size_t errlen) {
    if (path[0] == '/') {
        snprintf(err, errlen, "'%s' is an absolute path; paths are relative to the image root", path);
        return -1;
    }
    for (const char *p = path; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            snprintf(err, errlen, "'%s' has a '..' component; paths must stay inside the image root", path);
            return -1;
        }
        p += len + (slash != NULL);
    }
    return 0;
}

int align_parse_line(const char *line, AlignEntry *e, char *err, size_t errlen) {
    const char *field[FIELDS + 1];
    size_t flen[FIELDS + 1];
    int n = 0;
    const char *p = line;
    while (*p) {
        while (is_blank(*p)) p++;
        if (!*p) break;
        if (n == 0 && *p == '#') return 0;
        const char *start = p;
        while (*p && !is_blank(*p)) p++;
        if (n <= FIELDS) {
            field[n] = start;
            flen[n] = (size_t)(p - start);
        }
        n++;
    }
    if (n == 0) return 0;
    if (n != FIELDS) {
        snprintf(err, errlen, "expected a path and %d numbers (x y of 5 landmarks), found %d field%s", FIELDS - 1,
                 n, n == 1 ? "" : "s");
        return -1;
    }
    if (flen[0] >= sizeof e->path) {
        snprintf(err, errlen, "the path is longer than %d bytes", (int)sizeof e->path - 1);
        return -1;
    }
    char path[ALIGN_PATH_MAX];
    memcpy(path, field[0], flen[0]);
    path[flen[0]] = '\0';
    if (check_relative(path, err, errlen) != 0) return -1;
    double v[FIELDS - 1];
    for (int i = 1; i < FIELDS; i++) {
        char num[64];
        if (flen[i] >= sizeof num) {
            snprintf(err, errlen, "field %d (%s %c) is not a number: '%.40s...'", i + 1,
                     point_names[(i - 1) / 2], "xy"[(i - 1) % 2], field[i]);
            return -1;
        }
        memcpy(num, field[i], flen[i]);
        num[flen[i]] = '\0';
        char *end;
        errno = 0;
        v[i - 1] = strtod(num, &end);
        if (end == num || *end != '\0' || !isfinite(v[i - 1]) || errno == ERANGE) {
            snprintf(err, errlen, "field %d (%s %c) is not a finite number: '%s'", i + 1, point_names[(i - 1) / 2],
                     "xy"[(i - 1) % 2], num);
            return -1;
        }
    }
    memcpy(e->path, path, flen[0] + 1);
    for (int k = 0; k < ALIGN_POINTS; k++) {
        e->landmarks[k][0] = v[2 * k];
        e->landmarks[k][1] = v[2 * k + 1];
    }
    return 1;
}

/* out_dir/rel with the extension made .jpg (kept if .jpg or .jpeg). */
static int output_path(char *out, size_t outlen, const char *out_dir, const char *rel) {
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    const char *dot = strrchr(base, '.');
    int keep = dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0);
    int stem = dot && dot != base ? (int)(dot - rel) : (int)strlen(rel);
    int len = keep ? snprintf(out, outlen, "%s/%s", out_dir, rel)
                   : snprintf(out, outlen, "%s/%.*s.jpg", out_dir, stem, rel);
    return len >= 0 && (size_t)len < outlen ? 0 : -1;
}

/* mkdir -p of every folder above the file at path. */
static int make_parent_dirs(const char *path, char *err, size_t errlen) {
    char buf[2 * ALIGN_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash) return 0;
    *slash = '\0';
    return fs_make_dirs(buf, err, errlen);
}

typedef struct {
    DecodedImage img;
    uint8_t *file;
    size_t file_cap;
    uint8_t crop[ALIGN_SIZE * ALIGN_SIZE * 3];
} Scratch;

/* Reads, aligns and writes one entry. Returns 0, 1 for a bad entry (reason in
 * err), -1 for a failure to write (reason in err). */
static int align_one(const AlignEntry *e, const AlignOptions *opt, Scratch *s, double *rms, char *err,
                     size_t errlen) {
    char why[1024];
    double M[6];
    if (align_estimate(M, e->landmarks, rms, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", e->path, why);
        return 1;
    }
    char in[2 * ALIGN_PATH_MAX], out[2 * ALIGN_PATH_MAX];
    if (snprintf(in, sizeof in, "%s/%s", opt->root, e->path) >= (int)sizeof in ||
        output_path(out, sizeof out, opt->out_dir, e->path) != 0) {
        snprintf(err, errlen, "%s: path too long", e->path);
        return 1;
    }
    size_t len;
    if (image_load_file(in, &s->file, &s->file_cap, &len, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s", why);
        return 1;
    }
    if (decode_image(s->file, len, &s->img, why, sizeof why) != 0) {
        snprintf(err, errlen, "%.900s: %s", in, why);
        return 1;
    }
    align_warp(s->crop, ALIGN_SIZE, ALIGN_SIZE, s->img.rgb, s->img.width, s->img.height, 3, M);
    int channels = 3;
    if (s->img.grey) {
        for (int i = 0; i < ALIGN_SIZE * ALIGN_SIZE; i++) s->crop[i] = s->crop[3 * i];
        channels = 1;
    }
    if (make_parent_dirs(out, err, errlen) != 0) return -1;
    if (jpeg_write_file(out, s->crop, ALIGN_SIZE, ALIGN_SIZE, channels, opt->quality, err, errlen) != 0) return -1;
    return 0;
}

int align_list_run(const char *list_path, const AlignOptions *opt, AlignStats *stats, char *err, size_t errlen) {
    memset(stats, 0, sizeof *stats);
    int rc = -1;
    char *line = NULL;
    size_t line_cap = 0;
    Scratch *s = calloc(1, sizeof *s);
    FILE *f = fopen(list_path, "r");
    if (!s) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    if (!f) {
        snprintf(err, errlen, "cannot open the landmark file %s: %s", list_path, strerror(errno));
        goto done;
    }
    AlignEntry e;
    char why[2048];
    for (int64_t lineno = 1; getline(&line, &line_cap, f) >= 0; lineno++) {
        int r = align_parse_line(line, &e, why, sizeof why);
        if (r == 0) continue;
        double rms = 0;
        /* From here r is 0 (aligned), 1 (a bad entry) or -1 (cannot write). */
        r = r < 0 ? 1 : align_one(&e, opt, s, &rms, why, sizeof why);
        if (r < 0 || (r > 0 && !opt->skip_bad)) {
            snprintf(err, errlen, "%s:%lld: %s", list_path, (long long)lineno, why);
            goto done;
        }
        if (r > 0) {
            log_warn("skipped %s:%lld: %s", list_path, (long long)lineno, why);
            stats->skipped++;
            continue;
        }
        stats->aligned++;
        if (rms > stats->worst_rms) {
            stats->worst_rms = rms;
            stats->worst_line = lineno;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read the landmark file %s: %s", list_path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (f) fclose(f);
    free(line);
    if (s) {
        decode_image_free(&s->img);
        free(s->file);
        free(s);
    }
    return rc;
}
