/* batchnorm.c -- batch normalisation over (N,C,HW) with ghost-batch groups, as PyTorch's
 * BatchNorm1d/2d: training, inference and backward.
 *
 * Per-channel sums run in double: a group holds up to group*HW values (32*112*112 = 400k
 * in the stem) and float sums of that length lose digits the gradient checks can see.
 * Each sum keeps 8 independent lanes so the compiler vectorises it without -ffast-math;
 * the elementwise loops run over the contiguous HW of one (sample, channel) row. */
#include <math.h>

#include "check.h"
#include "layers.h"

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

void batchnorm_forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                             float *running_var, const float *inp, const float *gamma,
                             const float *beta, int N, int C, int HW, int group, float eps,
                             float momentum) {
    /* No '%' in a CHECK condition: the condition's text becomes part of the format string. */
    CHECK(group > 0 && N / group * group == N, "batchnorm N=%d is not a multiple of group=%d", N,
          group);
    const size_t M = (size_t)group * HW; /* values behind one channel's statistics */
    /* PyTorch refuses this too: the unbiased variance of one value is undefined. */
    CHECK(M > 1, "batchnorm needs more than one value per channel in training (group=%d HW=%d)",
          group, HW);
    for (int g = 0; g < N / group; g++) {
        for (int c = 0; c < C; c++) {
            double sum = 0;
            for (int n = g * group; n < (g + 1) * group; n++)
                sum += sum_row(inp + ((size_t)n * C + c) * HW, HW);
            const double mean = sum / (double)M;
            double ssd = 0;
            for (int n = g * group; n < (g + 1) * group; n++)
                ssd += sum_sq_dev_row(inp + ((size_t)n * C + c) * HW, HW, mean);
            const double var = ssd / (double)M;
            const double invstd = 1.0 / sqrt(var + eps);
            save_mean[(size_t)g * C + c] = (float)mean;
            save_invstd[(size_t)g * C + c] = (float)invstd;
            running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
            running_var[c] =
                (float)((1.0 - momentum) * running_var[c] + momentum * ssd / (double)(M - 1));

            const float m = (float)mean, scale = (float)(gamma[c] * invstd), b = beta[c];
            for (int n = g * group; n < (g + 1) * group; n++) {
                const float *x = inp + ((size_t)n * C + c) * HW;
                float *y = out + ((size_t)n * C + c) * HW;
                /* (x - mean) first: x*scale + shift would cancel when |mean| >> std. */
                for (int i = 0; i < HW; i++) y[i] = (x[i] - m) * scale + b;
            }
        }
    }
}

void batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, int N, int C,
                            int HW, float eps) {
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            const float m = running_mean[c], b = beta[c];
            const float scale = (float)(gamma[c] / sqrt((double)running_var[c] + eps));
            const float *x = inp + ((size_t)n * C + c) * HW;
            float *y = out + ((size_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++) y[i] = (x[i] - m) * scale + b;
        }
    }
}

/* With xhat = (x - mean) * invstd and y = gamma * xhat + beta over the M values of a group:
 *   dbeta  = sum dy,  dgamma = sum dy * xhat,
 *   dx     = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),
 * the last two terms coming from mean and variance depending on every x of the group. */
void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                        const float *inp, const float *gamma, const float *save_mean,
                        const float *save_invstd, int N, int C, int HW, int group) {
    CHECK(group > 0 && N / group * group == N, "batchnorm N=%d is not a multiple of group=%d", N,
          group);
    const double M = (double)group * HW;
    for (int g = 0; g < N / group; g++) {
        for (int c = 0; c < C; c++) {
            const float mean = save_mean[(size_t)g * C + c];
            const double invstd = save_invstd[(size_t)g * C + c];
            double sum_dy = 0, sum_dyxc = 0;
            for (int n = g * group; n < (g + 1) * group; n++) {
                size_t off = ((size_t)n * C + c) * HW;
                sum_grad_row(dout + off, inp + off, HW, mean, &sum_dy, &sum_dyxc);
            }
            if (dbeta) dbeta[c] += (float)sum_dy;
            if (dgamma) dgamma[c] += (float)(sum_dyxc * invstd);
            if (!dinp) continue;

            /* dx = k * (dy - mean(dy) - (x - mean) * q) with q = invstd^2 * mean(dy*(x-mean)). */
            const float k = (float)(gamma[c] * invstd);
            const float mdy = (float)(sum_dy / M);
            const float q = (float)(invstd * invstd * sum_dyxc / M);
            for (int n = g * group; n < (g + 1) * group; n++) {
                size_t off = ((size_t)n * C + c) * HW;
                const float *dy = dout + off, *x = inp + off;
                float *dx = dinp + off;
                for (int i = 0; i < HW; i++) dx[i] += k * (dy[i] - mdy - (x[i] - mean) * q);
            }
        }
    }
}
