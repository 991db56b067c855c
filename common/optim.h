/* optim.h -- parameter storage, SGD with momentum and weight decay, the
 * learning-rate schedule and gradient clipping.
 *
 * All parameters of a model live in one allocation; gradients and momentum
 * share its layout (as llm.c), so the optimiser is one loop per tensor and a
 * whole model is one contiguous range for MPI_Allreduce and checkpoints. */
#ifndef ARCFACE_OPTIM_H
#define ARCFACE_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char name[64];
    size_t offset, count; /* floats, into ParamSet.params */
    int trainable;        /* 0: frozen (never updated, no weight decay) */
} ParamTensor;

typedef struct {
    ParamTensor *tensors;
    int n_tensors, cap_tensors;
    size_t n_params;
    float *params, *grads, *momentum; /* n_params each, allocated by paramset_alloc */
} ParamSet;

/* Registers a tensor of count floats; returns its offset. Only before paramset_alloc. */
size_t paramset_add(ParamSet *p, const char *name, size_t count, int trainable);
/* Allocates params, grads and momentum (zeroed). */
void paramset_alloc(ParamSet *p);
void paramset_free(ParamSet *p);
void paramset_zero_grad(ParamSet *p);

/* PyTorch's SGD on every trainable tensor:
 *   g = grad + weight_decay * w;  v = momentum * v + g;  w -= lr * v. */
void sgd_step(ParamSet *p, float lr, float momentum, float weight_decay);

/* The same update on n consecutive parameters w with momentum v and gradient g
 * (three separate buffers): what sgd_step and the classifier shard both apply. */
void sgd_update(float *w, float *v, const float *g, size_t n, float lr, float momentum,
                float weight_decay);

/* L2 norm of the gradients of the trainable tensors (double accumulation). */
double grad_norm(const ParamSet *p);
/* torch.nn.utils.clip_grad_norm_: when the norm exceeds max_norm, scales the
 * gradients by max_norm / (norm + 1e-6). Returns the norm before clipping.
 * max_norm <= 0 disables clipping (the norm is still returned). */
double clip_grad_norm(ParamSet *p, double max_norm);

/* Learning-rate schedules, both with linear warmup (step counts completed
 * steps from 0):
 *   step < warmup: lr = base * step / warmup
 * then
 *   LR_POLY (insightface's PolyScheduler):
 *                  lr = base * (1 - (step - warmup) / (total - warmup))^power
 *   LR_STEP (insightface's MXNet-era lr_steps):
 *                  lr = base * factor^(number of milestones <= step) */
typedef enum { LR_POLY = 0, LR_STEP = 1 } LrKind;

#define LR_MAX_MILESTONES 16

typedef struct {
    LrKind kind;
    float base_lr;
    int64_t warmup_steps, total_steps;
    float power;                               /* LR_POLY */
    float factor;                              /* LR_STEP */
    int n_milestones;
    int64_t milestones[LR_MAX_MILESTONES];     /* LR_STEP: steps, ascending */
} LrSchedule;

float lr_at(const LrSchedule *s, int64_t step);

#endif
