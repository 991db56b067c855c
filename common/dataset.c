/* dataset.c -- synthetic, RecordIO and image-folder training sets. */
#include "dataset.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "check.h"
#include "recordio.h"
#include "synthetic.h"

typedef enum { KIND_SYNTHETIC, KIND_REC, KIND_FOLDER } Kind;

struct Dataset {
    Kind kind;
    int64_t n, classes;
    float crop;
    char description[512];
    /* synthetic */
    uint64_t seed;
    int images_per_id;
    /* rec */
    RecReader *rec;
    char rec_path[CONFIG_STR];
    /* folder */
    char **paths;   /* (n) */
    int64_t *labels;/* (n) */
};

void dataset_scratch_init(DatasetScratch *s) { memset(s, 0, sizeof *s); }

void dataset_scratch_free(DatasetScratch *s) {
    decode_image_free(&s->image);
    free(s->file);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot || name[0] == '.') return 0;
    static const char *ext[] = {".jpg", ".jpeg", ".png", ".ppm", ".pgm"};
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (strcasecmp(dot, ext[i]) == 0) return 1;
    return 0;
}

/* Sorted names of the entries of dir that are directories (want_dirs) or
 * image files. Returns the count, or -1 with err. *names is malloc'ed. */
static int list_dir(const char *dir, int want_dirs, char ***names, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot open directory %s: %s", dir, strerror(errno));
        return -1;
    }
    int n = 0, cap = 0;
    char **out = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (want_dirs ? !S_ISDIR(st.st_mode) : !(S_ISREG(st.st_mode) && is_image_name(e->d_name))) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            out = realloc(out, (size_t)cap * sizeof *out);
            CHECK(out != NULL, "out of memory listing %s", dir);
        }
        out[n] = strdup(e->d_name);
        CHECK(out[n] != NULL, "out of memory");
        n++;
    }
    closedir(d);
    if (n > 1) qsort(out, (size_t)n, sizeof *out, cmp_str);
    *names = out;
    return n;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

static int open_folder(Dataset *d, const TrainConfig *cfg, char *err, size_t errlen) {
    char **ids = NULL;
    int n_ids = list_dir(cfg->data_path, 1, &ids, err, errlen);
    if (n_ids < 0) return -1;
    if (cfg->data_class_limit > 0 && cfg->data_class_limit < n_ids) n_ids = cfg->data_class_limit;
    int64_t cap = 0;
    for (int c = 0; c < n_ids; c++) {
        char dir[4096], **files = NULL;
        snprintf(dir, sizeof dir, "%s/%s", cfg->data_path, ids[c]);
        int nf = list_dir(dir, 0, &files, err, errlen);
        if (nf < 0) {
            free_names(ids, n_ids);
            return -1;
        }
        for (int f = 0; f < nf; f++) {
            if (d->n == cap) {
                cap = cap ? 2 * cap : 1024;
                d->paths = realloc(d->paths, (size_t)cap * sizeof *d->paths);
                d->labels = realloc(d->labels, (size_t)cap * sizeof *d->labels);
                CHECK(d->paths && d->labels, "out of memory listing %s", cfg->data_path);
            }
            size_t len = strlen(dir) + strlen(files[f]) + 2;
            d->paths[d->n] = malloc(len);
            CHECK(d->paths[d->n] != NULL, "out of memory");
            snprintf(d->paths[d->n], len, "%s/%s", dir, files[f]);
            d->labels[d->n] = c;
            d->n++;
        }
        free_names(files, nf);
    }
    free_names(ids, n_ids);
    d->classes = n_ids;
    if (d->n == 0) {
        snprintf(err, errlen, "%s holds no images in <identity>/<image> sub-folders (jpg, jpeg, png, ppm, pgm)",
                 cfg->data_path);
        return -1;
    }
    snprintf(d->description, sizeof d->description, "image folder %s (%lld images of %lld identities)",
             cfg->data_path, (long long)d->n, (long long)d->classes);
    return 0;
}

int dataset_open(Dataset **out, const TrainConfig *cfg, char *err, size_t errlen) {
    *out = NULL;
    Dataset *d = xcalloc_aligned(1, sizeof *d);
    d->crop = cfg->crop_fraction;
    d->seed = cfg->seed;
    int rc = 0;
    if (strcmp(cfg->dataset, "synthetic") == 0) {
        d->kind = KIND_SYNTHETIC;
        d->images_per_id = cfg->synthetic_images;
        d->classes = cfg->synthetic_ids;
        d->n = (int64_t)cfg->synthetic_ids * cfg->synthetic_images;
        snprintf(d->description, sizeof d->description, "synthetic faces (%lld identities x %d images)",
                 (long long)d->classes, d->images_per_id);
    } else if (strcmp(cfg->dataset, "rec") == 0) {
        d->kind = KIND_REC;
        snprintf(d->rec_path, sizeof d->rec_path, "%s", cfg->data_path);
        rc = rec_open(&d->rec, cfg->data_path, NULL, err, errlen);
        if (rc == 0) {
            d->n = (int64_t)rec_num_images(d->rec);
            d->classes = rec_num_classes(d->rec);
            if (d->classes <= 0) {
                snprintf(err, errlen, "%s: no identity count (no 'property' file beside it and no "
                         "identity range in record 0); set num_classes", cfg->data_path);
                rc = -1;
            }
            snprintf(d->description, sizeof d->description, "RecordIO %s (%lld images of %lld identities)",
                     cfg->data_path, (long long)d->n, (long long)d->classes);
        }
    } else {
        d->kind = KIND_FOLDER;
        rc = open_folder(d, cfg, err, errlen);
    }
    if (rc != 0) {
        dataset_close(&d);
        return -1;
    }
    *out = d;
    return 0;
}

void dataset_close(Dataset **pd) {
    Dataset *d = pd ? *pd : NULL;
    if (!d) return;
    rec_close(&d->rec);
    for (int64_t i = 0; d->paths && i < d->n; i++) free(d->paths[i]);
    free(d->paths);
    free(d->labels);
    free(d);
    *pd = NULL;
}

int64_t dataset_size(const Dataset *d) { return d->n; }
int64_t dataset_classes(const Dataset *d) { return d->classes; }
const char *dataset_describe(const Dataset *d) { return d->description; }

int dataset_load(const Dataset *d, int64_t i, DatasetScratch *s, uint8_t *rgb, int64_t *label,
                 char *err, size_t errlen) {
    CHECK(i >= 0 && i < d->n, "sample %lld outside [0, %lld)", (long long)i, (long long)d->n);
    char why[512];
    switch (d->kind) {
    case KIND_SYNTHETIC:
        *label = i / d->images_per_id;
        synthetic_render(rgb, d->seed, *label, i % d->images_per_id);
        return 0;
    case KIND_FOLDER:
        *label = d->labels[i];
        if (image_load_file(d->paths[i], &s->file, &s->file_cap, &s->file_len, err, errlen) != 0) return -1;
        if (decode_to_face(s->file, s->file_len, &s->image, d->crop, rgb, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: %s", d->paths[i], why);
            return -1;
        }
        return 0;
    case KIND_REC: {
        const uint8_t *payload;
        size_t payload_len;
        if (rec_read_image(d->rec, (size_t)i, &s->file, &s->file_cap, &payload, &payload_len, label, err,
                           errlen) != 0)
            return -1;
        if (*label < 0 || *label >= d->classes) {
            snprintf(err, errlen, "%s: image key %llu has label %lld outside [0, %lld)", d->rec_path,
                     (unsigned long long)rec_image_key(d->rec, (size_t)i), (long long)*label,
                     (long long)d->classes);
            return -1;
        }
        if (decode_to_face(payload, payload_len, &s->image, d->crop, rgb, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: image key %llu: %s", d->rec_path,
                     (unsigned long long)rec_image_key(d->rec, (size_t)i), why);
            return -1;
        }
        return 0;
    }
    }
    return -1;
}
