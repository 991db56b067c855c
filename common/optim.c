/* optim.c -- parameter storage, SGD, gradient clipping, learning-rate schedule. */
#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "parallel.h"

size_t paramset_add(ParamSet *p, const char *name, size_t count, int trainable) {
    CHECK(p->params == NULL, "paramset_add after paramset_alloc (%s)", name);
    if (p->n_tensors == p->cap_tensors) {
        p->cap_tensors = p->cap_tensors ? 2 * p->cap_tensors : 64;
        p->tensors = realloc(p->tensors, (size_t)p->cap_tensors * sizeof *p->tensors);
        CHECK(p->tensors != NULL, "out of memory");
    }
    ParamTensor *t = &p->tensors[p->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    /* Tensors start on 16-float (64-byte) boundaries so every kernel sees aligned rows. */
    t->offset = (p->n_params + 15) / 16 * 16;
    t->count = count;
    t->trainable = trainable;
    p->n_params = t->offset + count;
    return t->offset;
}

void paramset_alloc(ParamSet *p) {
    p->params = xcalloc_aligned(p->n_params, sizeof(float));
    p->grads = xcalloc_aligned(p->n_params, sizeof(float));
    p->momentum = xcalloc_aligned(p->n_params, sizeof(float));
}

void paramset_free(ParamSet *p) {
    if (!p) return;
    free(p->tensors);
    free(p->params);
    free(p->grads);
    free(p->momentum);
    memset(p, 0, sizeof *p);
}

void paramset_zero_grad(ParamSet *p) { parallel_zero(p->grads, p->n_params); }

typedef struct {
    float *w, *v;
    const float *g;
    float lr, momentum, weight_decay;
} SgdCall;

/* Fixed-length inner loops vectorise at -O2 (GCC's very-cheap cost model). */
#define SGD_BLOCK 16

void sgd_update(float *w, float *v, const float *g, size_t n, float lr, float momentum,
                float weight_decay) {
    size_t i = 0;
    for (; i + SGD_BLOCK <= n; i += SGD_BLOCK)
#pragma GCC ivdep /* three separate buffers */
        for (int k = 0; k < SGD_BLOCK; k++) {
            v[i + k] = momentum * v[i + k] + (g[i + k] + weight_decay * w[i + k]);
            w[i + k] -= lr * v[i + k];
        }
    for (; i < n; i++) {
        v[i] = momentum * v[i] + (g[i] + weight_decay * w[i]);
        w[i] -= lr * v[i];
    }
}

static void sgd_range(void *ctx, size_t begin, size_t end) {
    const SgdCall *a = ctx;
    sgd_update(a->w + begin, a->v + begin, a->g + begin, end - begin, a->lr, a->momentum,
               a->weight_decay);
}

void sgd_step(ParamSet *p, float lr, float momentum, float weight_decay) {
    for (int t = 0; t < p->n_tensors; t++) {
        const ParamTensor *pt = &p->tensors[t];
        if (!pt->trainable) continue;
        SgdCall a = {.w = p->params + pt->offset, .v = p->momentum + pt->offset,
                     .g = p->grads + pt->offset, .lr = lr, .momentum = momentum,
                     .weight_decay = weight_decay};
        parallel_for(pt->count, parallel_grain(1), sgd_range, &a);
    }
}

double grad_norm(const ParamSet *p) {
    double sum = 0;
    for (int t = 0; t < p->n_tensors; t++) {
        const ParamTensor *pt = &p->tensors[t];
        if (!pt->trainable) continue;
        const float *g = p->grads + pt->offset;
        for (size_t i = 0; i < pt->count; i++) sum += (double)g[i] * g[i];
    }
    return sqrt(sum);
}

double clip_grad_norm(ParamSet *p, double max_norm) {
    double norm = grad_norm(p);
    if (max_norm > 0 && norm > max_norm) {
        float scale = (float)(max_norm / (norm + 1e-6));
        for (int t = 0; t < p->n_tensors; t++) {
            const ParamTensor *pt = &p->tensors[t];
            if (!pt->trainable) continue;
            float *g = p->grads + pt->offset;
            for (size_t i = 0; i < pt->count; i++) g[i] *= scale;
        }
    }
    return norm;
}

float lr_at(const LrSchedule *s, int64_t step) {
    if (step < s->warmup_steps) return s->base_lr * (float)step / (float)s->warmup_steps;
    if (s->kind == LR_STEP) {
        double lr = s->base_lr;
        for (int i = 0; i < s->n_milestones; i++)
            if (step >= s->milestones[i]) lr *= s->factor;
        return (float)lr;
    }
    int64_t span = s->total_steps - s->warmup_steps;
    if (span <= 0) return s->base_lr;
    double progress = (double)(step - s->warmup_steps) / (double)span;
    if (progress > 1) progress = 1;
    return (float)(s->base_lr * pow(1.0 - progress, s->power));
}
