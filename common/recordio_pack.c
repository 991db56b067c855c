/* recordio_pack.c -- image folder -> insightface RecordIO training set. */
#define _GNU_SOURCE
#include "recordio_pack.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "recordio.h"

/* Largest key or count a float32 label holds exactly. */
#define FLOAT_EXACT ((uint64_t)1 << 24)

typedef struct {
    char **names;
    size_t n;
} NameList;

static void names_free(NameList *l) {
    for (size_t i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    l->names = NULL;
    l->n = 0;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int is_image_name(const char *name) {
    static const char *const exts[] = {"jpg", "jpeg", "png", "ppm", "pgm"};
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot + 1, exts[i]) == 0) return 1;
    return 0;
}

/* Sorted names in dir: sub-directories (want_dirs) or image files; every other
 * entry (dot names excepted) counts in *skipped. */
static int list_dir(const char *dir, int want_dirs, NameList *out, int64_t *skipped, char *err,
                    size_t errlen) {
    out->names = NULL;
    out->n = 0;
    DIR *d = opendir(dir);
    if (!d) return err_set(err, errlen, "%s: %s", dir, strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    int rc = -1;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *path = join(dir, e->d_name);
        struct stat st;
        if (!path) {
            err_set(err, errlen, "%s: out of memory", dir);
            goto done;
        }
        int ok = stat(path, &st) == 0 && (want_dirs ? S_ISDIR(st.st_mode)
                                                    : S_ISREG(st.st_mode) && is_image_name(e->d_name));
        free(path);
        if (!ok) {
            (*skipped)++;
            errno = 0;
            continue;
        }
        if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(out->names, cap * sizeof *p);
            if (!p) {
                err_set(err, errlen, "%s: out of memory", dir);
                goto done;
            }
            out->names = p;
        }
        if (!(out->names[out->n] = strdup(e->d_name))) {
            err_set(err, errlen, "%s: out of memory", dir);
            goto done;
        }
        out->n++;
        errno = 0;
    }
    if (errno) {
        err_set(err, errlen, "%s: %s", dir, strerror(errno));
        goto done;
    }
    if (out->n) qsort(out->names, out->n, sizeof *out->names, cmp_name);
    rc = 0;
done:
    closedir(d);
    if (rc != 0) names_free(out);
    return rc;
}

/* Reads the whole file into *buf (grown as needed). */
static int read_file(const char *path, uint8_t **buf, size_t *cap, size_t *len, char *err,
                     size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, errlen, "%s: %s", path, strerror(errno));
    int rc = -1;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        err_set(err, errlen, "%s: %s", path, strerror(errno));
        goto done;
    }
    size_t n = (size_t)st.st_size;
    if ((uint64_t)st.st_size >= REC_MAX_RECORD - 64) {
        err_set(err, errlen, "%s: %llu bytes: too large for a RecordIO record (< 2^29 bytes)", path,
             (unsigned long long)st.st_size);
        goto done;
    }
    if (n > *cap) {
        uint8_t *p = realloc(*buf, n);
        if (!p) {
            err_set(err, errlen, "%s: out of memory for %zu bytes", path, n);
            goto done;
        }
        *buf = p;
        *cap = n;
    }
    if (n && fread(*buf, 1, n, f) != n) {
        err_set(err, errlen, "%s: read error: %s", path, ferror(f) ? strerror(errno) : "file shrank");
        goto done;
    }
    *len = n;
    rc = 0;
done:
    fclose(f);
    return rc;
}

/* Writes "classes,112,112\n" to a temporary file beside `property`. */
static int write_property(const char *tmp, int64_t classes, char *err, size_t errlen) {
    FILE *f = fopen(tmp, "w");
    if (!f) return err_set(err, errlen, "%s: %s", tmp, strerror(errno));
    int bad = fprintf(f, "%lld,112,112\n", (long long)classes) < 0;
    if (fclose(f) != 0 || bad) return err_set(err, errlen, "%s: write error: %s", tmp, strerror(errno));
    return 0;
}

typedef struct {
    uint64_t first, end; /* image keys of one identity */
} KeyRange;

int rec_pack_folder(const char *root, const char *out_prefix, RecPackStats *stats, char *err,
                    size_t errlen) {
    RecPackStats st = {0};
    NameList ids = {0}, images = {0};
    RecWriter *w = NULL;
    KeyRange *ranges = NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    char *rec = NULL, *idx = NULL, *prop = NULL, *prop_tmp = NULL;
    int rc = -1;

    size_t plen = strlen(out_prefix);
    const char *slash = strrchr(out_prefix, '/');
    size_t dirlen = slash ? (size_t)(slash - out_prefix) + 1 : 0;
    rec = malloc(plen + 5);
    idx = malloc(plen + 5);
    prop = malloc(dirlen + sizeof "property");
    prop_tmp = malloc(dirlen + sizeof "property" + 32);
    if (!rec || !idx || !prop || !prop_tmp) {
        err_set(err, errlen, "out of memory");
        goto done;
    }
    snprintf(rec, plen + 5, "%s.rec", out_prefix);
    snprintf(idx, plen + 5, "%s.idx", out_prefix);
    memcpy(prop, out_prefix, dirlen);
    memcpy(prop + dirlen, "property", sizeof "property");
    snprintf(prop_tmp, dirlen + sizeof "property" + 32, "%s.tmp.%ld", prop, (long)getpid());

    if (list_dir(root, 1, &ids, &st.skipped_files, err, errlen) != 0) goto done;
    if (ids.n == 0) {
        err_set(err, errlen, "%s: no identity sub-directories (expected root/<identity>/<image>)", root);
        goto done;
    }
    ranges = malloc(ids.n * sizeof *ranges);
    if (!ranges) {
        err_set(err, errlen, "out of memory for %zu identities", ids.n);
        goto done;
    }
    if (rec_writer_open(&w, rec, idx, err, errlen) != 0) goto done;

    uint64_t key = 1;
    for (size_t d = 0; d < ids.n; d++) {
        char *dir = join(root, ids.names[d]);
        if (!dir) {
            err_set(err, errlen, "out of memory");
            goto done;
        }
        int lrc = list_dir(dir, 0, &images, &st.skipped_files, err, errlen);
        if (lrc == 0 && images.n == 0) st.empty_dirs++;
        for (size_t i = 0; lrc == 0 && i < images.n; i++) {
            char *path = join(dir, images.names[i]);
            if (!path) {
                lrc = err_set(err, errlen, "out of memory");
                break;
            }
            float labels[2] = {(float)st.identities, 1.0f};
            IRHeader h = {.flag = 2, .label = 0.0f, .id = key, .id2 = 0};
            if (key >= FLOAT_EXACT)
                lrc = err_set(err, errlen,
                           "%s: image key %llu: too many images for insightface's float32 header "
                           "labels (keys must stay below 2^24)",
                           path, (unsigned long long)key);
            else if (read_file(path, &buf, &cap, &len, err, errlen) != 0)
                lrc = -1;
            else if (rec_writer_add(w, key, &h, labels, buf, len, err, errlen) != 0)
                lrc = -1;
            free(path);
            if (lrc != 0) break;
            st.image_bytes += len;
            key++;
        }
        if (lrc == 0 && images.n) {
            ranges[st.identities].first = key - images.n;
            ranges[st.identities].end = key;
            st.identities++;
        }
        names_free(&images);
        free(dir);
        if (lrc != 0) goto done;
    }
    st.images = (int64_t)(key - 1);
    if (st.images == 0) {
        err_set(err, errlen, "%s: no images (files ending in .jpg .jpeg .png .ppm .pgm) in its %zu "
             "sub-directories", root, ids.n);
        goto done;
    }
    uint64_t id_first = key, id_end = key + (uint64_t)st.identities;
    if (id_end >= FLOAT_EXACT) {
        err_set(err, errlen, "%s: %lld images + %lld identities: too many for insightface's float32 header "
             "labels (< 2^24)", root, (long long)st.images, (long long)st.identities);
        goto done;
    }
    float head_labels[2] = {(float)id_first, (float)id_end};
    IRHeader head = {.flag = 2, .label = 0.0f, .id = 0, .id2 = 0};
    if (rec_writer_add(w, 0, &head, head_labels, NULL, 0, err, errlen) != 0) goto done;
    for (int64_t c = 0; c < st.identities; c++) {
        float labels[2] = {(float)ranges[c].first, (float)ranges[c].end};
        IRHeader h = {.flag = 2, .label = 0.0f, .id = id_first + (uint64_t)c, .id2 = 0};
        if (rec_writer_add(w, h.id, &h, labels, NULL, 0, err, errlen) != 0) goto done;
    }
    st.rec_bytes = rec_writer_offset(w);
    if (write_property(prop_tmp, st.identities, err, errlen) != 0) goto done;
    if (rec_writer_close(&w, 1, err, errlen) != 0) goto done;
    if (rename(prop_tmp, prop) != 0) {
        err_set(err, errlen, "cannot rename %s to %s: %s (%s and %s are in place)", prop_tmp, prop,
             strerror(errno), rec, idx);
        goto done;
    }
    if (stats) *stats = st;
    rc = 0;
done:
    rec_writer_close(&w, 0, NULL, 0);
    if (rc != 0 && prop_tmp) unlink(prop_tmp);
    names_free(&ids);
    names_free(&images);
    free(ranges);
    free(buf);
    free(rec);
    free(idx);
    free(prop);
    free(prop_tmp);
    return rc;
}
