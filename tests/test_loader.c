/* test_loader.c -- the training input pipeline on an image folder with
 * corrupt files in it.
 *
 * 1. Batches hold exactly the images and labels of the documented order
 *    (shuffle of the epoch, positions of this worker), checked against
 *    dataset_load on the same samples, for two epochs.
 * 2. The content does not depend on the number of decoding threads, and two
 *    workers of batch B read exactly what one worker of batch 2B reads.
 * 3. Corrupt images (a truncated JPEG, garbage named .jpg) are skipped,
 *    counted and replaced by a real image, never by a blank one; with
 *    max_bad_images = 0 the first one stops the run with an error naming
 *    the file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "dataset.h"
#include "image.h"
#include "loader.h"
#include "log.h"
#include "rng.h"
#include "shuffle.h"
#include "synthetic.h"
#include "testutil.h"

#define IDS 3
#define PER_ID 6
static const size_t IMAGE_FLOATS = (size_t)3 * FACE_SIZE * FACE_SIZE;

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, len, f) == len && fclose(f) == 0, "cannot write %s", path);
}

/* root/id<k>/img<j>.jpg from synthetic renders; id1/img2.jpg is truncated and
 * id2/img5.jpg is not a JPEG at all. */
static void make_folder(const char *root) {
    tjhandle tj = tjInitCompress();
    uint8_t rgb[FACE_SIZE * FACE_SIZE * 3];
    mkdir(root, 0755);
    for (int k = 0; k < IDS; k++) {
        char dir[700];
        snprintf(dir, sizeof dir, "%.600s/id%d", root, k);
        mkdir(dir, 0755);
        for (int j = 0; j < PER_ID; j++) {
            char path[800];
            snprintf(path, sizeof path, "%.700s/img%d.jpg", dir, j);
            synthetic_render(rgb, 5, k, j);
            unsigned char *jpeg = NULL;
            unsigned long size = 0;
            CHECK(tjCompress2(tj, rgb, FACE_SIZE, 0, FACE_SIZE, TJPF_RGB, &jpeg, &size, TJSAMP_420, 95, 0) == 0,
                  "tjCompress2");
            if (k == 1 && j == 2) size /= 2;
            if (k == 2 && j == 5) write_file(path, "this is not an image", 20);
            else write_file(path, jpeg, size);
            tjFree(jpeg);
        }
    }
    tjDestroy(tj);
}

static TrainConfig folder_config(const char *root, int batch, int threads, int64_t max_bad) {
    TrainConfig c;
    char err[256];
    config_defaults(&c);
    CHECK(config_set(&c, "dataset", "folder", err, sizeof err) == 0, "%s", err);
    CHECK(config_set(&c, "data_path", root, err, sizeof err) == 0, "%s", err);
    c.batch_size = batch;
    c.bn_group = batch;
    c.decode_threads = threads;
    c.max_bad_images = max_bad;
    c.seed = 99;
    return c;
}

/* Runs `steps` steps of one worker and copies its batches out. */
static void run(const Dataset *ds, const TrainConfig *cfg, int worker, int workers, int steps, float *images,
                int64_t *labels, int64_t *bad) {
    Loader *l;
    char err[1024];
    CHECK(loader_start(&l, ds, cfg, worker, workers, 0, steps, err, sizeof err) == 0, "%s", err);
    for (int t = 0; t < steps; t++) {
        const float *im;
        const int64_t *lb;
        int rc = loader_get(l, t, 30, &im, &lb, err, sizeof err);
        EXPECT(rc == 0, "step %d: %s", t, err);
        if (rc != 0) break;
        memcpy(images + (size_t)t * cfg->batch_size * IMAGE_FLOATS, im, cfg->batch_size * IMAGE_FLOATS * sizeof(float));
        memcpy(labels + (size_t)t * cfg->batch_size, lb, cfg->batch_size * sizeof(int64_t));
        loader_release(l, t);
    }
    *bad = loader_bad_images(l);
    loader_stop(&l);
    EXPECT(l == NULL, "loader_stop clears the pointer");
}

int main(void) {
    log_set_level(LOG_ERROR); /* the skipped images would be reported on every run */
    char root[] = "/tmp/test_loader_XXXXXX";
    CHECK(mkdtemp(root) != NULL, "mkdtemp");
    char data[600];
    snprintf(data, sizeof data, "%s/faces", root);
    make_folder(data);

    const int B = 4, steps = 8; /* 18 images, 4 steps per epoch: two epochs */
    TrainConfig cfg = folder_config(data, B, 2, 100);
    Dataset *ds;
    char err[1024];
    EXPECT(dataset_open(&ds, &cfg, err, sizeof err) == 0, "%s", err);
    EXPECT(dataset_size(ds) == IDS * PER_ID && dataset_classes(ds) == IDS, "%lld images of %lld identities",
           (long long)dataset_size(ds), (long long)dataset_classes(ds));

    size_t total = (size_t)steps * B;
    float *images = calloc(total * IMAGE_FLOATS, sizeof(float)), *other = calloc(total * IMAGE_FLOATS, sizeof(float));
    int64_t *labels = calloc(total, sizeof(int64_t)), *other_labels = calloc(total, sizeof(int64_t)), bad = 0, bad2 = 0;
    run(ds, &cfg, 0, 1, steps, images, labels, &bad);

    /* 1. The documented order, corrupt samples replaced by the next candidate. */
    DatasetScratch scratch;
    dataset_scratch_init(&scratch);
    uint8_t rgb[FACE_SIZE * FACE_SIZE * 3];
    float *expect = malloc(IMAGE_FLOATS * sizeof(float));
    int64_t expected_bad = 0;
    int mismatches = 0, blank = 0;
    for (int t = 0; t < steps; t++) {
        int64_t epoch = t / 4;
        for (int i = 0; i < B; i++) {
            int64_t pos = (t % 4) * B + i, label = -1, sample = -1;
            for (int attempt = 0;; attempt++) {
                sample = (int64_t)shuffle_index((uint64_t)pos, IDS * PER_ID,
                                                rng_hash4(cfg.seed, RNG_DATA_ORDER, (uint64_t)epoch, (uint64_t)attempt));
                if (dataset_load(ds, sample, &scratch, rgb, &label, err, sizeof err) == 0) break;
                expected_bad++;
            }
            int flip = (int)(rng_hash4(cfg.seed, RNG_AUGMENT, (uint64_t)epoch, (uint64_t)sample) & 1);
            image_to_tensor(expect, rgb, flip);
            const float *got = images + ((size_t)t * B + i) * IMAGE_FLOATS;
            if (memcmp(got, expect, IMAGE_FLOATS * sizeof(float)) != 0 || labels[t * B + i] != label) mismatches++;
            float lo = got[0], hi = got[0];
            for (size_t k = 0; k < IMAGE_FLOATS; k++) lo = fminf(lo, got[k]), hi = fmaxf(hi, got[k]);
            blank += hi - lo < 0.1f;
        }
    }
    EXPECT(mismatches == 0, "%d of %zu batch entries differ from the documented order", mismatches, total);
    EXPECT(blank == 0, "%d blank images in the batches", blank);
    EXPECT(expected_bad > 0, "the two epochs should draw a corrupt file at least once");
    EXPECT(bad == expected_bad, "the loader counted %lld bad images, the order holds %lld", (long long)bad,
           (long long)expected_bad);

    /* 2a. One decoding thread gives the same batches as two. */
    TrainConfig one = folder_config(data, B, 1, 100);
    run(ds, &one, 0, 1, steps, other, other_labels, &bad2);
    EXPECT(memcmp(images, other, total * IMAGE_FLOATS * sizeof(float)) == 0 &&
           memcmp(labels, other_labels, total * sizeof(int64_t)) == 0, "1 and 2 decoding threads disagree");

    /* 2b. Two workers of batch 2 read what one worker of batch 4 reads. */
    TrainConfig half = folder_config(data, B / 2, 2, 100);
    float *w_images = calloc(total / 2 * IMAGE_FLOATS, sizeof(float));
    int64_t *w_labels = calloc(total / 2, sizeof(int64_t));
    for (int w = 0; w < 2; w++) {
        run(ds, &half, w, 2, steps, w_images, w_labels, &bad2);
        int differ = 0;
        for (int t = 0; t < steps; t++)
            for (int i = 0; i < B / 2; i++) {
                size_t mine = (size_t)t * (B / 2) + i, whole = (size_t)t * B + w * (B / 2) + i;
                differ += memcmp(w_images + mine * IMAGE_FLOATS, images + whole * IMAGE_FLOATS,
                                 IMAGE_FLOATS * sizeof(float)) != 0 || w_labels[mine] != labels[whole];
            }
        EXPECT(differ == 0, "worker %d of 2: %d samples differ from the one-worker batches", w, differ);
    }

    /* 2c. A loader started at step 3 (a resumed run) delivers the same batches from there on. */
    {
        Loader *late;
        CHECK(loader_start(&late, ds, &cfg, 0, 1, 3, steps, err, sizeof err) == 0, "%s", err);
        int differ = 0;
        for (int t = 3; t < steps; t++) {
            const float *im;
            const int64_t *lb;
            if (loader_get(late, t, 30, &im, &lb, err, sizeof err) != 0) {
                differ++;
                break;
            }
            differ += memcmp(im, images + (size_t)t * B * IMAGE_FLOATS, B * IMAGE_FLOATS * sizeof(float)) != 0;
            loader_release(late, t);
        }
        loader_stop(&late);
        EXPECT(differ == 0, "a loader starting at step 3 disagrees on %d steps", differ);
    }

    /* 3. With no tolerance the first corrupt image stops the run, naming the file. */
    TrainConfig strict = folder_config(data, B, 2, 0);
    Loader *l;
    CHECK(loader_start(&l, ds, &strict, 0, 1, 0, steps, err, sizeof err) == 0, "%s", err);
    int failed = 0;
    for (int t = 0; t < steps && !failed; t++) {
        const float *im;
        const int64_t *lb;
        if (loader_get(l, t, 30, &im, &lb, err, sizeof err) != 0) failed = 1;
        else loader_release(l, t);
    }
    loader_stop(&l);
    EXPECT(failed, "max_bad_images = 0 must stop the run at the first corrupt image");
    EXPECT(strstr(err, "max_bad_images") && (strstr(err, "id1/img2.jpg") || strstr(err, "id2/img5.jpg")),
           "the error names the limit and the file: %s", err);

    /* A set smaller than one global batch is refused. */
    TrainConfig big = folder_config(data, 32, 1, 0);
    EXPECT(loader_start(&l, ds, &big, 0, 1, 0, 1, err, sizeof err) != 0 && strstr(err, "fewer than one global batch"),
           "a batch larger than the set: %s", err);

    free(images), free(other), free(labels), free(other_labels), free(expect), free(w_images), free(w_labels);
    dataset_scratch_free(&scratch);
    dataset_close(&ds);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return test_finish("test_loader");
}
