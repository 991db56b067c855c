/* bench_decode.c -- single-thread throughput of the input pipeline on real
 * face JPEGs: decode_image + resize_to_face + image_to_tensor, i.e. JPEG bytes
 * in memory to the network's (3,112,112) float input.
 *
 * Usage: bench_decode [N [FACES_DIR [CROP]]]
 *   N          images per set (default 2000; the set's files are reused
 *              cyclically when it has fewer)
 *   FACES_DIR  holds lfw/ and yaleb/ (default $ARCFACE_SOURCE_DIR/../shared/
 *              data/faces, else ../shared/data/faces)
 *   CROP       crop_fraction (default 1)
 * Files are read into memory first: the figures exclude disk I/O. Prints one
 * line per set: images/s per thread and the time of each stage. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "decode.h"
#include "image.h"

typedef struct {
    uint8_t **data;
    size_t *len;
    int n;
} FileSet;

/* Reads up to limit .jpg files from root/<identity>/ into memory. */
static int load_set(FileSet *set, const char *root, int limit) {
    DIR *d = opendir(root);
    if (!d) return -1;
    set->data = calloc((size_t)limit, sizeof *set->data);
    set->len = calloc((size_t)limit, sizeof *set->len);
    set->n = 0;
    char err[1024], sub[4096], path[4400];
    struct dirent *e;
    while (set->n < limit && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(sub, sizeof sub, "%s/%s", root, e->d_name);
        DIR *ds = opendir(sub);
        if (!ds) continue;
        struct dirent *f;
        while (set->n < limit && (f = readdir(ds))) {
            size_t l = strlen(f->d_name);
            if (l < 4 || strcmp(f->d_name + l - 4, ".jpg") != 0) continue;
            snprintf(path, sizeof path, "%s/%s", sub, f->d_name);
            size_t cap = 0;
            if (image_load_file(path, &set->data[set->n], &cap, &set->len[set->n], err, sizeof err) != 0) {
                fprintf(stderr, "bench_decode: %s\n", err);
                continue;
            }
            set->n++;
        }
        closedir(ds);
    }
    closedir(d);
    return 0;
}

static void free_set(FileSet *set) {
    for (int i = 0; i < set->n; i++) free(set->data[i]);
    free(set->data);
    free(set->len);
}

static int bench(const char *name, const FileSet *set, int n, float crop) {
    DecodedImage img = {0};
    static uint8_t rgb[IMAGE_SIZE * IMAGE_SIZE * 3];
    static float tensor[3 * IMAGE_SIZE * IMAGE_SIZE];
    char err[512];
    double t_decode = 0, t_resize = 0, t_tensor = 0, checksum = 0;
    /* warm-up: grows the buffers, creates the TurboJPEG handle */
    if (decode_to_face(set->data[0], set->len[0], &img, crop, rgb, err, sizeof err) != 0) {
        fprintf(stderr, "bench_decode: %s: %s\n", name, err);
        return -1;
    }
    int w = img.width, h = img.height;
    double t0 = bench_now();
    for (int i = 0; i < n; i++) {
        int k = i % set->n;
        double a = bench_now();
        if (decode_image(set->data[k], set->len[k], &img, err, sizeof err) != 0) {
            fprintf(stderr, "bench_decode: %s image %d: %s\n", name, k, err);
            decode_image_free(&img);
            return -1;
        }
        double b = bench_now();
        resize_to_face(rgb, &img, crop);
        double c = bench_now();
        image_to_tensor(tensor, rgb, i & 1);
        double d = bench_now();
        t_decode += b - a;
        t_resize += c - b;
        t_tensor += d - c;
        checksum += tensor[i % (3 * IMAGE_SIZE * IMAGE_SIZE)];
    }
    double total = bench_now() - t0;
    printf("%-6s %dx%d JPEG, crop %g: %d images (%d distinct) in %.2f s: %.0f images/s per thread "
           "(decode %.3f ms, resize %.3f ms, to tensor %.3f ms per image) [checksum %.3f]\n",
           name, w, h, crop, n, set->n, total, n / total, 1e3 * t_decode / n, 1e3 * t_resize / n,
           1e3 * t_tensor / n, checksum);
    decode_image_free(&img);
    return 0;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    char root[2048];
    const char *src = getenv("ARCFACE_SOURCE_DIR");
    if (argc > 2)
        snprintf(root, sizeof root, "%s", argv[2]);
    else
        snprintf(root, sizeof root, "%s/../shared/data/faces", src ? src : ".");
    float crop = argc > 3 ? (float)atof(argv[3]) : 1.0f;
    if (n <= 0 || !(crop > 0 && crop <= 1)) {
        fprintf(stderr, "usage: bench_decode [N [FACES_DIR [CROP in (0,1]]]]\n");
        return 2;
    }
    const char *sets[] = {"lfw", "yaleb"};
    int ran = 0;
    for (int s = 0; s < 2; s++) {
        char dir[2100];
        snprintf(dir, sizeof dir, "%s/%s", root, sets[s]);
        FileSet set = {0};
        if (load_set(&set, dir, n) != 0 || set.n == 0) {
            fprintf(stderr, "bench_decode: no JPEGs under %s; skipped\n", dir);
            free_set(&set);
            continue;
        }
        if (bench(sets[s], &set, n, crop) != 0) return 1;
        free_set(&set);
        ran++;
    }
    return ran ? 0 : 77;
}
