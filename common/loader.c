/* loader.c -- background decoding of training batches into a ring. */
#include "loader.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "image.h"
#include "log.h"
#include "rng.h"
#include "shuffle.h"
#include "synthetic.h"

/* Tries to find a loadable substitute for a bad sample before giving up on the step. */
#define SUBSTITUTE_ATTEMPTS 16

typedef enum { SLOT_EMPTY, SLOT_FILLING, SLOT_READY } SlotState;

typedef struct {
    int64_t step;   /* the step this slot holds or will hold next */
    SlotState state;
    float *images;  /* (B, 3, 112, 112) */
    int64_t *labels;/* (B) */
} Slot;

typedef struct {
    Loader *loader;
    int index;
    pthread_t thread;
} DecodeThread;

struct Loader {
    const Dataset *ds;
    uint64_t seed;
    int worker, n_workers, B;
    int64_t n, steps_per_epoch, first_step, end_step;
    int64_t max_bad;
    int n_threads, n_slots;
    Slot *slots;
    DecodeThread *threads;
    pthread_mutex_t mu;
    pthread_cond_t changed;
    int stopping;
    int64_t bad;       /* samples skipped */
    char failure[1024];/* set once when the run must stop */
};

int64_t loader_epoch_of(const Loader *l, int64_t step) { return step / l->steps_per_epoch; }
int64_t loader_steps_per_epoch(const Loader *l) { return l->steps_per_epoch; }

int64_t loader_bad_images(Loader *l) {
    pthread_mutex_lock(&l->mu);
    int64_t bad = l->bad;
    pthread_mutex_unlock(&l->mu);
    return bad;
}

static uint64_t order_key(const Loader *l, int64_t epoch, int attempt) {
    return rng_hash4(l->seed, RNG_DATA_ORDER, (uint64_t)epoch, (uint64_t)attempt);
}

/* Counts a bad sample; returns 0 while under the limit, else records the failure. */
static int note_bad(Loader *l, const char *why) {
    pthread_mutex_lock(&l->mu);
    l->bad++;
    int64_t bad = l->bad;
    int over = bad > l->max_bad;
    if (over && !l->failure[0])
        snprintf(l->failure, sizeof l->failure, "%lld training images failed to load, more than "
                 "max_bad_images = %lld; the last: %s", (long long)bad, (long long)l->max_bad, why);
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->mu);
    if (!over) log_warn("skipped a training image (%lld so far): %s", (long long)bad, why);
    return over ? -1 : 0;
}

/* Fills slot s with the batch of its step. Returns -1 when the run must stop. */
static int fill_slot(Loader *l, Slot *s, DatasetScratch *scratch, uint8_t *rgb) {
    int64_t epoch = loader_epoch_of(l, s->step);
    int64_t first = (s->step % l->steps_per_epoch) * l->n_workers * l->B + (int64_t)l->worker * l->B;
    const size_t image_floats = (size_t)3 * FACE_SIZE * FACE_SIZE;
    for (int i = 0; i < l->B; i++) {
        int64_t pos = first + i;
        int loaded = 0;
        for (int attempt = 0; attempt < SUBSTITUTE_ATTEMPTS && !loaded; attempt++) {
            int64_t sample = (int64_t)shuffle_index((uint64_t)pos, (uint64_t)l->n, order_key(l, epoch, attempt));
            char err[768];
            int64_t label;
            if (dataset_load(l->ds, sample, scratch, rgb, &label, err, sizeof err) != 0) {
                if (note_bad(l, err) != 0) return -1;
                continue;
            }
            int flip = (int)(rng_hash4(l->seed, RNG_AUGMENT, (uint64_t)epoch, (uint64_t)sample) & 1);
            image_to_tensor(s->images + (size_t)i * image_floats, rgb, flip);
            s->labels[i] = label;
            loaded = 1;
        }
        if (!loaded) {
            pthread_mutex_lock(&l->mu);
            if (!l->failure[0])
                snprintf(l->failure, sizeof l->failure, "%d candidates in a row for position %lld of epoch "
                         "%lld failed to load", SUBSTITUTE_ATTEMPTS, (long long)pos, (long long)epoch);
            pthread_cond_broadcast(&l->changed);
            pthread_mutex_unlock(&l->mu);
            return -1;
        }
    }
    return 0;
}

static void *decode_main(void *arg) {
    DecodeThread *t = arg;
    Loader *l = t->loader;
    DatasetScratch scratch;
    dataset_scratch_init(&scratch);
    uint8_t *rgb = xcalloc_aligned((size_t)FACE_SIZE * FACE_SIZE * 3, 1);
    /* Thread k prepares steps first + k, first + k + T, ... in order; step t
     * lives in slot t mod n_slots, and n_slots = 2T, so no two threads share
     * a slot. */
    for (int64_t step = l->first_step + t->index; step < l->end_step; step += l->n_threads) {
        Slot *s = &l->slots[step % l->n_slots];
        pthread_mutex_lock(&l->mu);
        while (!l->stopping && !l->failure[0] && !(s->step == step && s->state == SLOT_EMPTY))
            pthread_cond_wait(&l->changed, &l->mu);
        int done = l->stopping || l->failure[0];
        if (!done) s->state = SLOT_FILLING;
        pthread_mutex_unlock(&l->mu);
        if (done) break;
        int rc = fill_slot(l, s, &scratch, rgb);
        pthread_mutex_lock(&l->mu);
        if (rc == 0) s->state = SLOT_READY;
        pthread_cond_broadcast(&l->changed);
        pthread_mutex_unlock(&l->mu);
        if (rc != 0) break;
    }
    free(rgb);
    dataset_scratch_free(&scratch);
    return NULL;
}

int loader_start(Loader **out, const Dataset *ds, const TrainConfig *cfg, int worker, int n_workers,
                 int64_t first_step, int64_t end_step, char *err, size_t errlen) {
    *out = NULL;
    int64_t n = dataset_size(ds), global = (int64_t)n_workers * cfg->batch_size;
    if (n / global < 1) {
        snprintf(err, errlen, "the training set has %lld samples, fewer than one global batch of %lld "
                 "(%d workers x batch_size %d)", (long long)n, (long long)global, n_workers, cfg->batch_size);
        return -1;
    }
    Loader *l = xcalloc_aligned(1, sizeof *l);
    l->ds = ds;
    l->seed = cfg->seed;
    l->worker = worker;
    l->n_workers = n_workers;
    l->B = cfg->batch_size;
    l->n = n;
    l->steps_per_epoch = n / global;
    l->first_step = first_step;
    l->end_step = end_step;
    l->max_bad = cfg->max_bad_images;
    l->n_threads = cfg->decode_threads;
    l->n_slots = 2 * l->n_threads;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->changed, NULL);
    l->slots = xcalloc_aligned((size_t)l->n_slots, sizeof *l->slots);
    for (int i = 0; i < l->n_slots; i++) {
        /* Slot i holds the steps congruent to i modulo the slot count. */
        l->slots[i].step = first_step + ((i - first_step % l->n_slots) + l->n_slots) % l->n_slots;
        l->slots[i].state = SLOT_EMPTY;
        l->slots[i].images = xcalloc_aligned((size_t)l->B * 3 * FACE_SIZE * FACE_SIZE, sizeof(float));
        l->slots[i].labels = xcalloc_aligned((size_t)l->B, sizeof(int64_t));
    }
    l->threads = xcalloc_aligned((size_t)l->n_threads, sizeof *l->threads);
    for (int i = 0; i < l->n_threads; i++) {
        l->threads[i].loader = l;
        l->threads[i].index = i;
        int rc = pthread_create(&l->threads[i].thread, NULL, decode_main, &l->threads[i]);
        CHECK(rc == 0, "pthread_create: %s", strerror(rc));
    }
    *out = l;
    return 0;
}

int loader_get(Loader *l, int64_t step, double timeout, const float **images, const int64_t **labels,
               char *err, size_t errlen) {
    Slot *s = &l->slots[step % l->n_slots];
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)timeout;
    pthread_mutex_lock(&l->mu);
    CHECK(s->step == step, "loader_get(%lld) out of order (slot holds step %lld)", (long long)step,
          (long long)s->step);
    int rc = 0;
    while (s->state != SLOT_READY && !l->failure[0] && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&l->changed, &l->mu, &deadline);
    int ok = s->state == SLOT_READY;
    if (!ok) {
        if (l->failure[0])
            snprintf(err, errlen, "%s", l->failure);
        else
            snprintf(err, errlen, "no training batch for step %lld after %.0f s: decoding is stuck or far "
                     "too slow", (long long)step, timeout);
    }
    pthread_mutex_unlock(&l->mu);
    if (!ok) return -1;
    *images = s->images;
    *labels = s->labels;
    return 0;
}

void loader_release(Loader *l, int64_t step) {
    Slot *s = &l->slots[step % l->n_slots];
    pthread_mutex_lock(&l->mu);
    CHECK(s->step == step && s->state == SLOT_READY, "loader_release(%lld) without loader_get", (long long)step);
    s->step += l->n_slots;
    s->state = SLOT_EMPTY;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->mu);
}

void loader_stop(Loader **pl) {
    Loader *l = pl ? *pl : NULL;
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stopping = 1;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->n_threads; i++) pthread_join(l->threads[i].thread, NULL);
    for (int i = 0; i < l->n_slots; i++) {
        free(l->slots[i].images);
        free(l->slots[i].labels);
    }
    free(l->slots);
    free(l->threads);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->changed);
    free(l);
    *pl = NULL;
}
