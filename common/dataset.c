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
#include "pairs.h"
#include "recordio.h"
#include "synthetic.h"

typedef enum { KIND_SYNTHETIC, KIND_REC, KIND_FOLDER } Kind;

struct Dataset {
    Kind kind;
    int64_t n, classes;
    float crop;
    char description[1536];
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

/* Sorts names by strcmp and drops repeats (freeing them); returns the count. */
static int sort_unique(char **names, int n) {
    if (n > 1) qsort(names, (size_t)n, sizeof *names, cmp_str);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (k > 0 && strcmp(names[k - 1], names[i]) == 0)
            free(names[i]);
        else
            names[k++] = names[i];
    }
    return k;
}

static void append_name(char ***names, int *n, int *cap, const char *name) {
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        *names = realloc(*names, (size_t)*cap * sizeof **names);
        CHECK(*names != NULL, "out of memory");
    }
    (*names)[*n] = strdup(name);
    CHECK((*names)[*n] != NULL, "out of memory");
    (*n)++;
}

/* Adds the names of exclude_list: one per line, surrounding blanks trimmed,
 * blank lines and lines starting with '#' ignored. */
static int read_exclude_list(const char *path, char ***names, int *n, int *cap, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "key 'exclude_list': cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int line_no = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        line_no++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
            snprintf(err, errlen, "key 'exclude_list': %s:%d: line longer than %zu characters", path, line_no,
                     sizeof line - 2);
            rc = -1;
            break;
        }
        char *a = line, *b = line + len;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == '\n' || b[-1] == '\r' || b[-1] == ' ' || b[-1] == '\t')) b--;
        *b = '\0';
        if (!*a || *a == '#') continue;
        if (strchr(a, '/')) {
            snprintf(err, errlen, "key 'exclude_list': %s:%d: '%s' is not an identity folder name (it has a '/')",
                     path, line_no, a);
            rc = -1;
            break;
        }
        append_name(names, n, cap, a);
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "key 'exclude_list': read error on %s", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

/* The identity names cfg leaves out (the people of exclude_pairs' fold
 * exclude_fold, and the names of exclude_list), sorted and unique, as
 * malloc'ed strings; what describes where they come from, for the log.
 * Returns the count, or -1 with err. */
static int excluded_names(const TrainConfig *cfg, char ***out, char *what, size_t whatlen, char *err,
                          size_t errlen) {
    char **names = NULL;
    int n = 0, cap = 0;
    what[0] = '\0';
    if (cfg->exclude_pairs[0]) {
        PairList pl;
        char why[1024];
        if (pairs_load(&pl, cfg->exclude_pairs, NULL, why, sizeof why) != 0) {
            snprintf(err, errlen, "key 'exclude_pairs': %s", why);
            return -1;
        }
        if (cfg->exclude_fold > pl.n_folds) {
            snprintf(err, errlen, "key 'exclude_fold': %s has %d fold%s (1 to %d), there is no fold %d",
                     cfg->exclude_pairs, pl.n_folds, pl.n_folds == 1 ? "" : "s", pl.n_folds, cfg->exclude_fold);
            pairs_free(&pl);
            return -1;
        }
        int first = cfg->exclude_fold ? cfg->exclude_fold - 1 : 0;
        int last = cfg->exclude_fold ? cfg->exclude_fold : pl.n_folds;
        for (int f = first; f < last; f++) {
            const char **people;
            int n_people;
            CHECK(pairs_people_of_fold(&pl, f, &people, &n_people, why, sizeof why) == 0, "%s", why);
            for (int i = 0; i < n_people; i++) append_name(&names, &n, &cap, people[i]);
            free(people);
        }
        n = sort_unique(names, n);
        if (cfg->exclude_fold)
            snprintf(what, whatlen, "the %d people of fold %d of %s", n, cfg->exclude_fold, cfg->exclude_pairs);
        else
            snprintf(what, whatlen, "the %d people of all %d folds of %s", n, pl.n_folds, cfg->exclude_pairs);
        pairs_free(&pl);
    }
    if (cfg->exclude_list[0]) {
        int before = n;
        if (read_exclude_list(cfg->exclude_list, &names, &n, &cap, err, errlen) != 0) {
            free_names(names, n);
            return -1;
        }
        size_t used = strlen(what);
        snprintf(what + used, whatlen - used, "%sthe %d names of %s", used ? " and " : "", n - before,
                 cfg->exclude_list);
        n = sort_unique(names, n);
    }
    *out = names;
    return n;
}

static int find_name(char *const *sorted, int n, const char *name) {
    char *const *hit = n ? bsearch(&name, sorted, (size_t)n, sizeof *sorted, cmp_str) : NULL;
    return hit ? (int)(hit - sorted) : -1;
}

static int open_folder(Dataset *d, const TrainConfig *cfg, char *err, size_t errlen) {
    char **ids = NULL, **skip = NULL, what[1024];
    int n_listed = list_dir(cfg->data_path, 1, &ids, err, errlen);
    if (n_listed < 0) return -1;
    int n_skip = excluded_names(cfg, &skip, what, sizeof what, err, errlen);
    if (n_skip < 0) {
        free_names(ids, n_listed);
        return -1;
    }
    /* Keep the identities that are not excluded, in sorted order: labels stay
     * dense 0..n-1 over what is kept. */
    int n_ids = 0, skipped_ids = 0;
    int64_t skipped_images = 0;
    for (int c = 0; c < n_listed; c++) {
        if (find_name(skip, n_skip, ids[c]) < 0) {
            ids[n_ids++] = ids[c];
            continue;
        }
        char dir[4096], **files = NULL;
        snprintf(dir, sizeof dir, "%s/%s", cfg->data_path, ids[c]);
        int nf = list_dir(dir, 0, &files, err, errlen);
        free(ids[c]);
        if (nf < 0) {
            for (int k = c + 1; k < n_listed; k++) free(ids[k]);
            free_names(ids, n_ids);
            free_names(skip, n_skip);
            return -1;
        }
        free_names(files, nf);
        skipped_ids++;
        skipped_images += nf;
    }
    free_names(skip, n_skip);
    int n_all = n_ids;
    if (cfg->data_class_limit > 0 && cfg->data_class_limit < n_ids) n_ids = cfg->data_class_limit;
    int64_t cap = 0;
    for (int c = 0; c < n_ids; c++) {
        char dir[4096], **files = NULL;
        snprintf(dir, sizeof dir, "%s/%s", cfg->data_path, ids[c]);
        int nf = list_dir(dir, 0, &files, err, errlen);
        if (nf < 0) {
            free_names(ids, n_all);
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
    free_names(ids, n_all);
    d->classes = n_ids;
    if (d->n == 0) {
        snprintf(err, errlen, "%s holds no images in <identity>/<image> sub-folders (jpg, jpeg, png, ppm, pgm)%s",
                 cfg->data_path, n_skip ? " once the excluded identities are left out" : "");
        return -1;
    }
    int len = snprintf(d->description, sizeof d->description, "image folder %s (%lld images of %lld identities)",
                       cfg->data_path, (long long)d->n, (long long)d->classes);
    if (what[0] && len > 0 && (size_t)len < sizeof d->description)
        snprintf(d->description + len, sizeof d->description - (size_t)len,
                 "; left out %d identit%s (%lld images): %s; %d of these names match%s no folder", skipped_ids,
                 skipped_ids == 1 ? "y" : "ies", (long long)skipped_images, what, n_skip - skipped_ids,
                 n_skip - skipped_ids == 1 ? "es" : "");
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
