/* checkpoint_dir.c -- checkpoint directories (complete marker, listing,
 * keep-last-K pruning) and classifier rows read across the files of several
 * servers, for resuming on a different number of servers. */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint_io.h"
#include "err.h"
#include "fs_dirs.h"

typedef unsigned long long ull;

/* ---- checkpoint directories ---------------------------------------------- */

#define STEP_DIGITS 10
#define MAX_STEP 9999999999LL

int ckpt_dir_path(char *buf, size_t buflen, const char *output_dir, int64_t step) {
    if (step < 0 || step > MAX_STEP || output_dir[0] == '\0') return -1;
    int len = snprintf(buf, buflen, "%s/" CKPT_DIR_PREFIX "%010lld", output_dir, (long long)step);
    return len >= 0 && (size_t)len < buflen ? 0 : -1;
}

int ckpt_backbone_path(char *buf, size_t buflen, const char *dir) {
    int len = snprintf(buf, buflen, "%s/" CKPT_BACKBONE_FILE, dir);
    return len >= 0 && (size_t)len < buflen ? 0 : -1;
}

int ckpt_classifier_path(char *buf, size_t buflen, const char *dir, int p) {
    int len = snprintf(buf, buflen, "%s/classifier-%d.ckpt", dir, p);
    return len >= 0 && (size_t)len < buflen && p >= 0 ? 0 : -1;
}

int ckpt_dir_create(const char *output_dir, int64_t step, char *dir, size_t dirlen, char *err,
                    size_t errlen) {
    char marker[CKPT_PATH_MAX];
    if (ckpt_dir_path(dir, dirlen, output_dir, step) != 0 ||
        ckpt_io_path_join(marker, dir, CKPT_COMPLETE_FILE) != 0) {
        err_set(err, errlen, "checkpoint directory for step %lld in '%.200s': step out of range or "
                "path too long", (long long)step, output_dir);
        return -1;
    }
    if (fs_make_dirs(output_dir, err, errlen) != 0 || fs_make_dirs(dir, err, errlen) != 0) return -1;
    if (unlink(marker) != 0 && errno != ENOENT) {
        err_set(err, errlen, "cannot remove the old marker %s: %s", marker, strerror(errno));
        return -1;
    }
    if (ckpt_io_fsync_dir(dir, err, errlen) != 0 || ckpt_io_fsync_dir(output_dir, err, errlen) != 0) return -1;
    return 0;
}

/* Parses dir/COMPLETE. Returns 0 with *step and *files, or -1. */
static int read_marker(const char *dir, int64_t *step, int *files, char *err, size_t errlen) {
    char path[CKPT_PATH_MAX], text[256];
    FILE *f = ckpt_io_path_join(path, dir, CKPT_COMPLETE_FILE) == 0 ? fopen(path, "r") : NULL;
    if (!f) {
        err_set(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    int version = 0, used = -1;
    long long s = -1;
    if (sscanf(text, "arcface-checkpoint %d\nstep %lld\nclassifier_files %d\n%n", &version, &s, files,
               &used) != 3 || used != (int)n || version != CKPT_FORMAT_VERSION || s < 0 || *files < 0) {
        err_set(err, errlen, "%s: not a valid checkpoint marker", path);
        return -1;
    }
    *step = s;
    return 0;
}

int ckpt_dir_mark_complete(const char *dir, int64_t step, int classifier_files, char *err,
                           size_t errlen) {
    char path[CKPT_PATH_MAX], tmp[CKPT_PATH_MAX], text[128];
    CkptReader *r = NULL;
    for (int p = -1; p < classifier_files; p++) {
        int bad = p < 0 ? ckpt_backbone_path(path, sizeof path, dir)
                        : ckpt_classifier_path(path, sizeof path, dir, p);
        if (bad || ckpt_open(&r, path, err, errlen) != 0) {
            if (bad) err_set(err, errlen, "%s: path too long", dir);
            return -1;
        }
        ckpt_close(&r);
    }
    int len = snprintf(text, sizeof text, "arcface-checkpoint %d\nstep %lld\nclassifier_files %d\n",
                       CKPT_FORMAT_VERSION, (long long)step, classifier_files);
    char tmp_name[64];
    snprintf(tmp_name, sizeof tmp_name, CKPT_COMPLETE_FILE ".tmp.%ld", (long)getpid());
    if (ckpt_io_path_join(path, dir, CKPT_COMPLETE_FILE) != 0 || ckpt_io_path_join(tmp, dir, tmp_name) != 0) {
        err_set(err, errlen, "%s: path too long", dir);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_set(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    const char *failed = NULL;
    uint64_t at = 0;
    if (ckpt_io_pwrite_all(fd, text, (size_t)len, &at) != 0) failed = "write";
    else if (fsync(fd) != 0) failed = "fsync";
    int e = errno;
    if (close(fd) != 0 && !failed) failed = "close", e = errno;
    if (!failed && rename(tmp, path) != 0) failed = "rename", e = errno;
    if (failed) {
        err_set(err, errlen, "cannot %s %s: %s", failed, tmp, strerror(e));
        unlink(tmp);
        return -1;
    }
    return ckpt_io_fsync_dir(dir, err, errlen);
}

typedef struct {
    CkptDirEntry e;
    int complete;
} Found;

static int cmp_found(const void *a, const void *b) {
    int64_t x = ((const Found *)a)->e.step, y = ((const Found *)b)->e.step;
    return (x > y) - (x < y);
}

/* Every checkpoint-<10 digits> directory of output_dir, sorted by step. */
static int scan_dirs(const char *output_dir, Found **out, size_t *count, char *err, size_t errlen) {
    *out = NULL;
    *count = 0;
    DIR *d = opendir(output_dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        err_set(err, errlen, "cannot list %s: %s", output_dir, strerror(errno));
        return -1;
    }
    Found *items = NULL;
    size_t n = 0, cap = 0;
    const size_t plen = strlen(CKPT_DIR_PREFIX);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strncmp(name, CKPT_DIR_PREFIX, plen) != 0 || strlen(name) != plen + STEP_DIGITS ||
            strspn(name + plen, "0123456789") != STEP_DIGITS)
            continue;
        Found f = {.complete = 0};
        f.e.step = strtoll(name + plen, NULL, 10);
        struct stat st;
        if (ckpt_dir_path(f.e.path, sizeof f.e.path, output_dir, f.e.step) != 0 ||
            stat(f.e.path, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        int64_t marked = -1;
        f.complete = read_marker(f.e.path, &marked, &f.e.classifier_files, NULL, 0) == 0 &&
                     marked == f.e.step;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            Found *grown = realloc(items, cap * sizeof *grown);
            if (!grown) {
                err_set(err, errlen, "out of memory listing %s", output_dir);
                free(items);
                closedir(d);
                return -1;
            }
            items = grown;
        }
        items[n++] = f;
    }
    closedir(d);
    if (n) qsort(items, n, sizeof *items, cmp_found);
    *out = items;
    *count = n;
    return 0;
}

int ckpt_dir_list(const char *output_dir, CkptDirEntry **entries, size_t *count, char *err,
                  size_t errlen) {
    Found *found;
    size_t n, m = 0;
    *entries = NULL;
    *count = 0;
    if (scan_dirs(output_dir, &found, &n, err, errlen) != 0) return -1;
    for (size_t i = 0; i < n; i++)
        if (found[i].complete) m++;
    if (m == 0) {
        free(found);
        return 0;
    }
    CkptDirEntry *list = malloc(m * sizeof *list);
    if (!list) {
        err_set(err, errlen, "out of memory listing %s", output_dir);
        free(found);
        return -1;
    }
    m = 0;
    for (size_t i = 0; i < n; i++)
        if (found[i].complete) list[m++] = found[i].e;
    free(found);
    *entries = list;
    *count = m;
    return 0;
}

int ckpt_dir_latest(const char *output_dir, CkptDirEntry *latest, char *err, size_t errlen) {
    CkptDirEntry *list;
    size_t n;
    if (ckpt_dir_list(output_dir, &list, &n, err, errlen) != 0) return -1;
    if (n) *latest = list[n - 1];
    free(list);
    return n ? 1 : 0;
}

/* Removes a checkpoint directory: marker (made durable), files, directory. */
static int remove_checkpoint_dir(const char *dir, char *err, size_t errlen) {
    char path[CKPT_PATH_MAX];
    if (ckpt_io_path_join(path, dir, CKPT_COMPLETE_FILE) != 0) {
        err_set(err, errlen, "%s: path too long", dir);
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        err_set(err, errlen, "cannot remove %s: %s", path, strerror(errno));
        return -1;
    }
    if (ckpt_io_fsync_dir(dir, err, errlen) != 0) return -1;
    DIR *d = opendir(dir);
    if (!d) {
        err_set(err, errlen, "cannot list %s: %s", dir, strerror(errno));
        return -1;
    }
    /* Names first, unlinks after: removing entries while reading a directory
     * may make readdir skip some. */
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(names, cap * sizeof *grown);
            if (!grown) {
                rc = -1;
                break;
            }
            names = grown;
        }
        if (!(names[n] = strdup(de->d_name))) rc = -1;
        else n++;
    }
    closedir(d);
    if (rc != 0) err_set(err, errlen, "out of memory listing %s", dir);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && ckpt_io_path_join(path, dir, names[i]) == 0 && unlink(path) != 0) {
            err_set(err, errlen, "cannot remove %s: %s", path, strerror(errno));
            rc = -1;
        }
        free(names[i]);
    }
    free(names);
    if (rc == 0 && rmdir(dir) != 0) {
        err_set(err, errlen, "cannot remove directory %s: %s", dir, strerror(errno));
        rc = -1;
    }
    return rc;
}

int ckpt_dir_prune(const char *output_dir, int keep_last_k, char *err, size_t errlen) {
    if (keep_last_k < 1) {
        err_set(err, errlen, "keep_last_k is %d; at least the newest checkpoint must be kept",
                keep_last_k);
        return -1;
    }
    Found *found;
    size_t n, complete = 0, seen = 0;
    if (scan_dirs(output_dir, &found, &n, err, errlen) != 0) return -1;
    int64_t newest = -1;
    for (size_t i = 0; i < n; i++) {
        if (found[i].complete) {
            complete++;
            newest = found[i].e.step;
        }
    }
    int rc = 0, removed = 0;
    char why[CKPT_PATH_MAX + 128];
    for (size_t i = 0; i < n; i++) {
        const Found *f = &found[i];
        int drop;
        if (f->complete) drop = complete - seen++ > (size_t)keep_last_k; /* not among the last k */
        else drop = f->e.step < newest;
        if (!drop) continue;
        if (remove_checkpoint_dir(f->e.path, why, sizeof why) != 0) {
            if (rc == 0) err_set(err, errlen, "%s", why);
            rc = -1;
        }
        removed++;
    }
    free(found);
    if (removed && ckpt_io_fsync_dir(output_dir, rc == 0 ? err : NULL, errlen) != 0) rc = -1;
    return rc;
}

/* ---- classifier rows across files ---------------------------------------- */

int ckpt_classifier_write(const char *path, int64_t row_start, int64_t row_count, int64_t dim,
                          const float *weight, const float *momentum, char *err, size_t errlen) {
    if (row_start < 0 || row_count < 0 || dim < 1 || row_count > INT64_MAX / dim) {
        err_set(err, errlen, "%s: invalid classifier shape: rows [%lld, +%lld), dim %lld", path,
                (long long)row_start, (long long)row_count, (long long)dim);
        return -1;
    }
    uint64_t n = (uint64_t)row_count * (uint64_t)dim;
    CkptWriter *w = NULL;
    if (ckpt_writer_open(&w, path, err, errlen) != 0 ||
        ckpt_writer_add_i64(w, CKPT_SEC_ROW_START, row_start, err, errlen) != 0 ||
        ckpt_writer_add_i64(w, CKPT_SEC_ROW_COUNT, row_count, err, errlen) != 0 ||
        ckpt_writer_add_i64(w, CKPT_SEC_DIM, dim, err, errlen) != 0 ||
        ckpt_writer_add(w, CKPT_SEC_WEIGHT, CKPT_F32, weight, n, err, errlen) != 0 ||
        (momentum && ckpt_writer_add(w, CKPT_SEC_MOMENTUM, CKPT_F32, momentum, n, err, errlen) != 0)) {
        ckpt_writer_abort(&w);
        return -1;
    }
    return ckpt_writer_commit(&w, err, errlen);
}

typedef struct {
    CkptReader *r;
    int64_t start, rows;
} Shard;

struct CkptClassifierSet {
    int n;
    Shard *files; /* sorted by start */
    int64_t num_classes, dim;
};

static int cmp_shard(const void *a, const void *b) {
    const Shard *x = a, *y = b;
    if (x->start != y->start) return (x->start > y->start) - (x->start < y->start);
    return (x->rows > y->rows) - (x->rows < y->rows);
}

/* The section holds rows x dim floats in file f. */
static int check_rows_section(const CkptClassifierSet *s, const Shard *f, const char *section,
                              char *err, size_t errlen) {
    int64_t count = ckpt_section_count(f->r, section);
    CkptDtype dtype = ckpt_section_dtype(f->r, section);
    if (count != f->rows * s->dim || dtype != CKPT_F32) {
        err_set(err, errlen, "%s: section '%s' holds %lld %s values, rows [%lld, +%lld) x dim %lld "
                "need %lld f32", ckpt_path(f->r), section, (long long)count,
                count < 0 ? "(missing)" : ckpt_dtype_str(dtype), (long long)f->start,
                (long long)f->rows, (long long)s->dim, (long long)(f->rows * s->dim));
        return -1;
    }
    return 0;
}

/* Sorted files tile [0, num_classes) with one dim. */
static int check_tiling(CkptClassifierSet *s, int64_t num_classes, char *err, size_t errlen) {
    int64_t end = 0;
    for (int i = 0; i < s->n; i++) {
        const Shard *f = &s->files[i];
        const char *prev = i ? ckpt_path(s->files[i - 1].r) : "(none)";
        int64_t dim;
        if (ckpt_read_i64(f->r, CKPT_SEC_DIM, &dim, err, errlen) != 0) return -1;
        if (dim < 1) {
            err_set(err, errlen, "%s: section '" CKPT_SEC_DIM "' is %lld", ckpt_path(f->r),
                    (long long)dim);
            return -1;
        }
        if (i == 0) s->dim = dim;
        if (dim != s->dim) {
            err_set(err, errlen, "%s: dim %lld, but %s has dim %lld", ckpt_path(f->r), (long long)dim,
                    ckpt_path(s->files[0].r), (long long)s->dim);
            return -1;
        }
        if (f->start > end) {
            err_set(err, errlen, "classifier files leave rows [%lld, %lld) uncovered: %s ends at row "
                    "%lld, %s starts at row %lld", (long long)end, (long long)f->start, prev,
                    (long long)end, ckpt_path(f->r), (long long)f->start);
            return -1;
        }
        if (f->start < end) {
            err_set(err, errlen, "classifier files overlap: %s holds rows [%lld, %lld), %s already "
                    "holds rows up to %lld", ckpt_path(f->r), (long long)f->start,
                    (long long)(f->start + f->rows), prev, (long long)end);
            return -1;
        }
        if (f->rows > INT64_MAX / dim - end) {
            err_set(err, errlen, "%s: %lld rows of dim %lld is too many", ckpt_path(f->r),
                    (long long)f->rows, (long long)dim);
            return -1;
        }
        if (check_rows_section(s, f, CKPT_SEC_WEIGHT, err, errlen) != 0) return -1;
        end = f->start + f->rows;
    }
    if (s->n == 0 || (num_classes >= 0 && end != num_classes)) {
        err_set(err, errlen, "classifier files cover rows [0, %lld), expected [0, %lld)%s%s",
                (long long)end, (long long)num_classes, s->n ? "; the last is " : " (no files)",
                s->n ? ckpt_path(s->files[s->n - 1].r) : "");
        return -1;
    }
    s->num_classes = end;
    return 0;
}

int ckpt_classifier_open(CkptClassifierSet **out, const char *const *paths, int nfiles,
                         int64_t num_classes, char *err, size_t errlen) {
    *out = NULL;
    CkptClassifierSet *s = calloc(1, sizeof *s);
    if (!s || !(s->files = calloc(nfiles > 0 ? (size_t)nfiles : 1, sizeof *s->files))) {
        err_set(err, errlen, "out of memory for %d classifier files", nfiles);
        free(s);
        return -1;
    }
    for (int i = 0; i < nfiles; i++) {
        Shard *f = &s->files[i];
        if (ckpt_open(&f->r, paths[i], err, errlen) != 0) goto error;
        s->n++;
        if (ckpt_read_i64(f->r, CKPT_SEC_ROW_START, &f->start, err, errlen) != 0 ||
            ckpt_read_i64(f->r, CKPT_SEC_ROW_COUNT, &f->rows, err, errlen) != 0)
            goto error;
        if (f->start < 0 || f->rows < 0 || f->rows > INT64_MAX - f->start) {
            err_set(err, errlen, "%s: invalid row range [%lld, +%lld)", paths[i], (long long)f->start,
                    (long long)f->rows);
            goto error;
        }
    }
    qsort(s->files, (size_t)s->n, sizeof *s->files, cmp_shard);
    if (check_tiling(s, num_classes, err, errlen) != 0) goto error;
    *out = s;
    return 0;
error:
    ckpt_classifier_close(&s);
    return -1;
}

int ckpt_classifier_open_dir(CkptClassifierSet **out, const char *dir, int64_t num_classes,
                             char *err, size_t errlen) {
    *out = NULL;
    int64_t step;
    int files;
    if (read_marker(dir, &step, &files, err, errlen) != 0) return -1;
    char (*paths)[CKPT_PATH_MAX] = calloc(files > 0 ? (size_t)files : 1, sizeof *paths);
    const char **ptrs = calloc(files > 0 ? (size_t)files : 1, sizeof *ptrs);
    int rc = -1;
    if (!paths || !ptrs) {
        err_set(err, errlen, "out of memory for %d classifier paths", files);
    } else {
        rc = 0;
        for (int p = 0; p < files && rc == 0; p++) {
            rc = ckpt_classifier_path(paths[p], sizeof paths[p], dir, p);
            ptrs[p] = paths[p];
        }
        if (rc != 0) err_set(err, errlen, "%s: path too long", dir);
        else rc = ckpt_classifier_open(out, ptrs, files, num_classes, err, errlen);
    }
    free(paths);
    free(ptrs);
    return rc;
}

void ckpt_classifier_close(CkptClassifierSet **sp) {
    if (!sp || !*sp) return;
    CkptClassifierSet *s = *sp;
    for (int i = 0; i < s->n; i++) ckpt_close(&s->files[i].r);
    free(s->files);
    free(s);
    *sp = NULL;
}

int64_t ckpt_classifier_num_classes(const CkptClassifierSet *s) { return s->num_classes; }
int64_t ckpt_classifier_dim(const CkptClassifierSet *s) { return s->dim; }

int ckpt_classifier_read_rows(CkptClassifierSet *s, const char *section, int64_t a, int64_t b,
                              float *dst, char *err, size_t errlen) {
    if (a < 0 || a > b || b > s->num_classes) {
        err_set(err, errlen, "classifier rows [%lld, %lld) requested, the checkpoint holds [0, %lld)",
                (long long)a, (long long)b, (long long)s->num_classes);
        return -1;
    }
    for (int i = 0; i < s->n; i++) {
        const Shard *f = &s->files[i];
        int64_t lo = a > f->start ? a : f->start;
        int64_t hi = b < f->start + f->rows ? b : f->start + f->rows;
        if (lo >= hi) continue;
        if (check_rows_section(s, f, section, err, errlen) != 0 ||
            ckpt_read_range(f->r, section, CKPT_F32, (uint64_t)((lo - f->start) * s->dim),
                            (uint64_t)((hi - lo) * s->dim), dst + (lo - a) * s->dim, err,
                            errlen) != 0)
            return -1;
    }
    return 0;
}
