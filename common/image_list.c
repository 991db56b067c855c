/* image_list.c -- image paths from a folder tree or a list file. */
#include "image_list.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "check.h"

#define MAX_DEPTH 64

static int is_image_name(const char *name) {
    static const char *const exts[] = {".jpg", ".jpeg", ".png", ".ppm", ".pgm"};
    const char *dot = strrchr(name, '.');
    if (!dot || name[0] == '.') return 0;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot, exts[i]) == 0) return 1;
    return 0;
}

static char *join(const char *dir, const char *name) {
    size_t len = strlen(dir) + strlen(name) + 2;
    char *s = malloc(len);
    CHECK(s != NULL, "out of memory");
    snprintf(s, len, "%s%s%s", dir, dir[0] ? "/" : "", name);
    return s;
}

static void push(ImageList *l, int64_t *cap, char *path, char *name) {
    if (l->n == *cap) {
        *cap = *cap ? 2 * *cap : 1024;
        l->paths = realloc(l->paths, (size_t)*cap * sizeof *l->paths);
        l->names = realloc(l->names, (size_t)*cap * sizeof *l->names);
        CHECK(l->paths && l->names, "out of memory listing %lld images", (long long)*cap);
    }
    l->paths[l->n] = path;
    l->names[l->n] = name;
    l->n++;
}

/* Adds the images under root/rel (rel "" for root itself) to l as names
 * relative to root; paths are filled in later. */
static int walk(ImageList *l, int64_t *cap, const char *root, const char *rel, int depth, char *err,
                size_t errlen) {
    char *dir = rel[0] ? join(root, rel) : strdup(root);
    CHECK(dir != NULL, "out of memory");
    if (depth > MAX_DEPTH) {
        snprintf(err, errlen, "%s: more than %d folders deep (a symbolic link loop?)", dir, MAX_DEPTH);
        free(dir);
        return -1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot open folder %s: %s", dir, strerror(errno));
        free(dir);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *name = join(rel, e->d_name), *path = join(dir, e->d_name);
        struct stat st;
        int found = stat(path, &st) == 0;
        free(path);
        if (found && S_ISDIR(st.st_mode)) {
            rc = walk(l, cap, root, name, depth + 1, err, errlen);
            free(name);
        } else if (found && S_ISREG(st.st_mode) && is_image_name(e->d_name)) {
            push(l, cap, NULL, name);
        } else {
            free(name);
        }
    }
    closedir(d);
    free(dir);
    return rc;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int open_folder(ImageList *l, const char *source, char *err, size_t errlen) {
    char *root = strdup(source);
    CHECK(root != NULL, "out of memory");
    for (size_t len = strlen(root); len > 1 && root[len - 1] == '/'; len--) root[len - 1] = '\0';
    int64_t cap = 0;
    int rc = walk(l, &cap, root, "", 0, err, errlen);
    if (rc == 0 && l->n == 0) {
        snprintf(err, errlen, "%s holds no images (*.jpg, *.jpeg, *.png, *.ppm, *.pgm) in it or its sub-folders",
                 root);
        rc = -1;
    }
    if (rc == 0) {
        qsort(l->names, (size_t)l->n, sizeof *l->names, cmp_str);
        for (int64_t i = 0; i < l->n; i++) l->paths[i] = join(root, l->names[i]);
    }
    free(root);
    return rc;
}

static int open_list(ImageList *l, const char *list, char *err, size_t errlen) {
    FILE *f = fopen(list, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", list, strerror(errno));
        return -1;
    }
    /* Relative paths are relative to the list's folder. */
    char *dir = strdup(list);
    CHECK(dir != NULL, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir ? 1 : 0] = '\0';
    else dir[0] = '\0';
    int64_t cap = 0;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    while ((len = getline(&line, &line_cap, f)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0 || line[0] == '#') continue;
        char *name = strdup(line);
        CHECK(name != NULL, "out of memory");
        char *path = line[0] == '/' || !dir[0] ? strdup(line) : join(dir, line);
        CHECK(path != NULL, "out of memory");
        push(l, &cap, path, name);
    }
    int failed = ferror(f);
    free(line);
    free(dir);
    fclose(f);
    if (failed) {
        snprintf(err, errlen, "cannot read %s", list);
        return -1;
    }
    if (l->n == 0) {
        snprintf(err, errlen, "%s lists no images (one path per line)", list);
        return -1;
    }
    return 0;
}

int image_list_open(ImageList *l, const char *source, char *err, size_t errlen) {
    memset(l, 0, sizeof *l);
    struct stat st;
    if (stat(source, &st) != 0) {
        snprintf(err, errlen, "cannot open %s: %s", source, strerror(errno));
        return -1;
    }
    int rc = S_ISDIR(st.st_mode) ? open_folder(l, source, err, errlen) : open_list(l, source, err, errlen);
    if (rc != 0) image_list_free(l);
    return rc;
}

void image_list_free(ImageList *l) {
    if (!l) return;
    for (int64_t i = 0; i < l->n; i++) {
        free(l->paths[i]);
        free(l->names[i]);
    }
    free(l->paths);
    free(l->names);
    memset(l, 0, sizeof *l);
}
