/* batchnorm.c -- batch normalisation over (N,C,HW) with ghost-batch groups, as PyTorch's
 * BatchNorm1d/2d: training, inference and backward.
 *
 * Per-channel sums run in double: a group holds up to group*HW values (32*112*112 = 400k
 * in the stem) and float sums of that length lose digits the gradient checks can see.
 * Each sum keeps 8 independent lanes so the compiler vectorises it without -ffast-math;
 * the elementwise loops run over the contiguous HW of one (sample, channel) row.
 * Threads split the channels, so the bits do not depend on their number. */
#include <math.h>

#include "check.h"
#include "layers.h"
#include "parallel.h"

#define LANES 8

/* Sum of x[0..n). */
static double sum_row(const float *x, int n) {
    double acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += x[i + j];
    for (; i < n; i++) acc[0] += x[i];
    double s = 0;
    for (int j = 0; j < LANES; j++) s += acc[j];
    return s;
}

/* Sum of (x - mean)^2 over x[0..n). */
static double sum_sq_dev_row(const float *x, int n, double mean) {
    double acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            double d = x[i + j] - mean;
            acc[j] += d * d;
        }
    for (; i < n; i++) acc[0] += (x[i] - mean) * (x[i] - mean);
    double s = 0;
    for (int j = 0; j < LANES; j++) s += acc[j];
    return s;
}

/* *sum_dy += sum of dy, *sum_dyxc += sum of dy * (x - mean), over [0..n). */
static void sum_grad_row(const float *dy, const float *x, int n, double mean, double *sum_dy,
                         double *sum_dyxc) {
    double a[LANES] = {0}, b[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            a[j] += dy[i + j];
            b[j] += dy[i + j] * (x[i + j] - mean);
        }
    for (; i < n; i++) {
        a[0] += dy[i];
        b[0] += dy[i] * (x[i] - mean);
    }
    for (int j = 0; j < LANES; j++) {
        *sum_dy += a[j];
        *sum_dyxc += b[j];
    }
}

/* The arguments of one batch-norm call, for the per-channel bodies below: every
 * channel's statistics and outputs depend on that channel alone, so the channels
 * are what the threads split (parallel.h). */
typedef struct {
    float *out, *dinp, *dgamma, *dbeta;
    float *save_mean, *save_invstd, *running_mean, *running_var; /* written (training forward) */
    const float *mean, *invstd;                                  /* (groups, C) statistics read */
    const float *eval_mean, *eval_var;                           /* running statistics read */
    const float *inp, *dout, *gamma, *beta;
    int N, C, HW, group;
    float eps, momentum;
} BnCall;

/* y = (x - mean) * (gamma * invstd) + beta with the saved float statistics, so that
 * batchnorm_apply recomputes exactly what the training forward wrote. */
static void apply_channels(const BnCall *a, size_t c0, size_t c1) {
    const int C = a->C, HW = a->HW;
    for (int g = 0; g < a->N / a->group; g++) {
        for (size_t c = c0; c < c1; c++) {
            /* (x - mean) first: x*scale + shift would cancel when |mean| >> std. */
            const float m = a->mean[(size_t)g * C + c];
            const float scale = a->gamma[c] * a->invstd[(size_t)g * C + c], b = a->beta[c];
            for (int n = g * a->group; n < (g + 1) * a->group; n++) {
                const float *x = a->inp + ((size_t)n * C + c) * HW;
                float *y = a->out + ((size_t)n * C + c) * HW;
                for (int i = 0; i < HW; i++) y[i] = (x[i] - m) * scale + b;
            }
        }
    }
}

static void forward_train_channels(void *ctx, size_t c0, size_t c1) {
    const BnCall *a = ctx;
    const int C = a->C, HW = a->HW;
    const size_t M = (size_t)a->group * HW; /* values behind one channel's statistics */
    for (int g = 0; g < a->N / a->group; g++) {
        for (size_t c = c0; c < c1; c++) {
            double sum = 0;
            for (int n = g * a->group; n < (g + 1) * a->group; n++)
                sum += sum_row(a->inp + ((size_t)n * C + c) * HW, HW);
            const double mean = sum / (double)M;
            double ssd = 0;
            for (int n = g * a->group; n < (g + 1) * a->group; n++)
                ssd += sum_sq_dev_row(a->inp + ((size_t)n * C + c) * HW, HW, mean);
            const double var = ssd / (double)M;
            a->save_mean[(size_t)g * C + c] = (float)mean;
            a->save_invstd[(size_t)g * C + c] = (float)(1.0 / sqrt(var + a->eps));
            a->running_mean[c] = (float)((1.0 - a->momentum) * a->running_mean[c] + a->momentum * mean);
            a->running_var[c] = (float)((1.0 - a->momentum) * a->running_var[c] +
                                        a->momentum * ssd / (double)(M - 1));
        }
    }
    apply_channels(a, c0, c1);
}

static void check_groups(int N, int group) {
    /* No '%' in a CHECK condition: the condition's text becomes part of the format string. */
    CHECK(group > 0 && N / group * group == N, "batchnorm N=%d is not a multiple of group=%d", N,
          group);
}

void batchnorm_forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                             float *running_var, const float *inp, const float *gamma,
                             const float *beta, int N, int C, int HW, int group, float eps,
                             float momentum) {
    check_groups(N, group);
    /* PyTorch refuses this too: the unbiased variance of one value is undefined. */
    CHECK((size_t)group * HW > 1,
          "batchnorm needs more than one value per channel in training (group=%d HW=%d)", group, HW);
    BnCall a = {.out = out, .save_mean = save_mean, .save_invstd = save_invstd,
                .mean = save_mean, .invstd = save_invstd, .running_mean = running_mean, .running_var = running_var, .inp = inp,
                .gamma = gamma, .beta = beta, .N = N, .C = C, .HW = HW, .group = group,
                .eps = eps, .momentum = momentum};
    parallel_for((size_t)C, parallel_grain((size_t)N * HW), forward_train_channels, &a);
}

static void apply_body(void *ctx, size_t c0, size_t c1) { apply_channels(ctx, c0, c1); }

void batchnorm_apply(float *out, const float *inp, const float *gamma, const float *beta,
                     const float *save_mean, const float *save_invstd, int N, int C, int HW,
                     int group) {
    check_groups(N, group);
    BnCall a = {.out = out, .mean = save_mean, .invstd = save_invstd, .inp = inp, .gamma = gamma, .beta = beta, .N = N, .C = C, .HW = HW, .group = group};
    parallel_for((size_t)C, parallel_grain((size_t)N * HW), apply_body, &a);
}

static void forward_eval_channels(void *ctx, size_t c0, size_t c1) {
    const BnCall *a = ctx;
    for (size_t c = c0; c < c1; c++) {
        const float m = a->eval_mean[c], b = a->beta[c];
        const float scale = (float)(a->gamma[c] / sqrt((double)a->eval_var[c] + a->eps));
        for (int n = 0; n < a->N; n++) {
            const float *x = a->inp + ((size_t)n * a->C + c) * a->HW;
            float *y = a->out + ((size_t)n * a->C + c) * a->HW;
            for (int i = 0; i < a->HW; i++) y[i] = (x[i] - m) * scale + b;
        }
    }
}

void batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, int N, int C,
                            int HW, float eps) {
    BnCall a = {.out = out, .inp = inp, .gamma = gamma, .beta = beta,
                .eval_mean = running_mean, .eval_var = running_var,
                .N = N, .C = C, .HW = HW, .eps = eps};
    parallel_for((size_t)C, parallel_grain((size_t)N * HW), forward_eval_channels, &a);
}

/* With xhat = (x - mean) * invstd and y = gamma * xhat + beta over the M values of a group:
 *   dbeta  = sum dy,  dgamma = sum dy * xhat,
 *   dx     = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),
 * the last two terms coming from mean and variance depending on every x of the group. */
static void backward_channels(void *ctx, size_t c0, size_t c1) {
    const BnCall *a = ctx;
    const int C = a->C, HW = a->HW;
    const double M = (double)a->group * HW;
    for (int g = 0; g < a->N / a->group; g++) {
        for (size_t c = c0; c < c1; c++) {
            const float mean = a->mean[(size_t)g * C + c];
            const double invstd = a->invstd[(size_t)g * C + c];
            double sum_dy = 0, sum_dyxc = 0;
            for (int n = g * a->group; n < (g + 1) * a->group; n++) {
                size_t off = ((size_t)n * C + c) * HW;
                sum_grad_row(a->dout + off, a->inp + off, HW, mean, &sum_dy, &sum_dyxc);
            }
            if (a->dbeta) a->dbeta[c] += (float)sum_dy;
            if (a->dgamma) a->dgamma[c] += (float)(sum_dyxc * invstd);
            if (!a->dinp) continue;

            /* dx = k * (dy - mean(dy) - (x - mean) * q) with q = invstd^2 * mean(dy*(x-mean)). */
            const float k = (float)(a->gamma[c] * invstd);
            const float mdy = (float)(sum_dy / M);
            const float q = (float)(invstd * invstd * sum_dyxc / M);
            for (int n = g * a->group; n < (g + 1) * a->group; n++) {
                size_t off = ((size_t)n * C + c) * HW;
                const float *dy = a->dout + off, *x = a->inp + off;
                float *dx = a->dinp + off;
                for (int i = 0; i < HW; i++) dx[i] += k * (dy[i] - mdy - (x[i] - mean) * q);
            }
        }
    }
}

void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                        const float *inp, const float *gamma, const float *save_mean,
                        const float *save_invstd, int N, int C, int HW, int group) {
    check_groups(N, group);
    BnCall a = {.dinp = dinp, .dgamma = dgamma, .dbeta = dbeta, .dout = dout, .inp = inp,
                .gamma = gamma, .mean = save_mean, .invstd = save_invstd,
                .N = N, .C = C, .HW = HW, .group = group};
    parallel_for((size_t)C, parallel_grain((size_t)N * HW), backward_channels, &a);
}
