/* test_layers.c -- the layer kernels of common/layers.h against naive references,
 * finite differences and hand-computed values.
 *
 * 1. conv2d fast (im2col + SGEMM) vs the naive loops, forward and backward, over
 *    kernel sizes 1..7, strides 1-2, pads 0-2, non-square images, the 1x1 paths.
 * 2. Central-difference gradient checks of every gradient every layer produces.
 * 3. BatchNorm eval mode and running statistics against values worked out by hand.
 * 4. Dropout masks: determinism, slicing by first_sample, the documented formula, keep rate.
 * Every backward call starts from non-zero gradient buffers, so "backward adds" is
 * checked everywhere too. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "layers.h"
#include "parallel.h"
#include "reference_layers.h"
#include "rng.h"
#include "testutil.h"

/* Exact-size heap buffers (not rounded up) so AddressSanitizer sees any overrun. */
static float *zeros(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    CHECK(p, "out of memory");
    return p;
}

static float *uniform(size_t n, float lo, float hi, uint64_t seed) {
    float *p = zeros(n);
    test_fill_uniform(p, n, lo, hi, seed);
    return p;
}

static float *copy_of(const float *x, size_t n) {
    float *p = zeros(n);
    memcpy(p, x, n * sizeof(float));
    return p;
}

/* Values with |x| in [0.1, 1) and random sign: far enough from the kinks of ReLU and PReLU
 * that a finite-difference step of 1e-2 never crosses one. */
static float *away_from_zero(size_t n, uint64_t seed) {
    float *p = uniform(n, 0.1f, 1.0f, seed);
    for (size_t i = 0; i < n; i++)
        if (rng_hash4(seed, i, 3, 0) & 1) p[i] = -p[i];
    return p;
}

/* ---- finite-difference harness ----
 *
 * loss = sum(out * w) with fixed random w, accumulated in double, so dloss/dout = w is
 * what the backward pass receives. For a sample of entries x[i] the check compares the
 * analytic gradient with (loss(x+h) - loss(x-h)) / (actual step), the step measured after
 * rounding x +- h to float. The error measure is |a - n| / max(|a| + |n|, 0.1 * max|grad|):
 * relative on entries with non-tiny gradients, absolute (in units of the largest gradient)
 * on the tiny ones, whose numeric value is mostly float noise.
 *
 * Tolerances. Where the loss is linear in the perturbed tensor (conv, linear, add, dropout,
 * PReLU away from its kink, BN's gamma and beta) the difference quotient is exact up to
 * float rounding of out: errors seen are below 1e-4, so TOL_LINEAR = 1e-3 with h = 1e-2.
 * BN's input gradient has curvature and every output of the group moves with each input:
 * h = 1e-3 balances truncation against rounding, errors seen are up to 2e-3, TOL_CURVED
 * = 1e-2. Broken gradients tried while writing this (a sign flipped, BN's variance or mean
 * term dropped, invstd missing a power, a col2im column skipped, beta=0 instead of
 * accumulating) give errors from 0.05 to 1. */
#define TOL_LINEAR 1e-3
#define TOL_CURVED 1e-2

typedef void (*ForwardFn)(void *ctx);

typedef struct {
    ForwardFn forward; /* recomputes out from the current inputs */
    void *ctx;
    const float *out;
    const float *w;
    size_t n_out;
} Loss;

static double loss_eval(const Loss *L) {
    L->forward(L->ctx);
    double s = 0;
    for (size_t i = 0; i < L->n_out; i++) s += (double)L->out[i] * L->w[i];
    return s;
}

#define GRAD_SAMPLES 48

/* The k-th entry to check: all of them when few, else both ends and random ones between. */
static size_t sample_index(size_t k, size_t n) {
    if (n <= GRAD_SAMPLES || k == 0) return k;
    if (k == 1) return n - 1;
    return rng_hash4(1234, k, n, 0) % n;
}

static void check_grad(const char *what, const Loss *L, float *x, const float *grad, size_t n,
                       float h, double tol) {
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(grad[i]));
    EXPECT(scale > 0, "%s: gradient is identically zero", what);
    double worst = 0;
    size_t worst_i = 0;
    double worst_a = 0, worst_n = 0;
    size_t count = n < GRAD_SAMPLES ? n : GRAD_SAMPLES;
    for (size_t k = 0; k < count; k++) {
        const size_t i = sample_index(k, n);
        const float saved = x[i];
        x[i] = saved + h;
        const double xp = x[i], lp = loss_eval(L);
        x[i] = saved - h;
        const double xm = x[i], lm = loss_eval(L);
        x[i] = saved;
        const double numeric = (lp - lm) / (xp - xm);
        const double err = test_grad_rel_err(grad[i], numeric, 0.1 * scale);
        if (!(err <= worst)) {
            worst = isnan(err) ? INFINITY : err;
            worst_i = i;
            worst_a = grad[i];
            worst_n = numeric;
        }
    }
    L->forward(L->ctx); /* leave out consistent with the unperturbed inputs */
    EXPECT(worst < tol, "%s: worst error %.3g at %zu: analytic %.7g, numeric %.7g", what, worst,
           worst_i, worst_a, worst_n);
    if (getenv("TEST_VERBOSE")) fprintf(stderr, "  %-36s worst rel err %.2e\n", what, worst);
}

/* Gradient buffers start from random values (backward must add to them); after the
 * backward pass end_accum leaves only what the pass added. */
static float *start_accum(float *g, size_t n, uint64_t seed) {
    test_fill_uniform(g, n, -0.5f, 0.5f, seed);
    return copy_of(g, n);
}

static void end_accum(float *g, float *prior, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] -= prior[i];
    free(prior);
}

/* ---- conv2d ---- */

typedef struct {
    int N, C, H, W, OC, K, stride, pad;
} ConvCase;

static void test_conv_vs_reference(const ConvCase *cc) {
    const Conv2dShape s = conv2d_shape(cc->C, cc->H, cc->W, cc->OC, cc->K, cc->stride, cc->pad);
    EXPECT(s.OH == (cc->H + 2 * cc->pad - cc->K) / cc->stride + 1 &&
               s.OW == (cc->W + 2 * cc->pad - cc->K) / cc->stride + 1,
           "conv2d_shape OH=%d OW=%d", s.OH, s.OW);
    const size_t n_in = (size_t)cc->N * s.C * s.H * s.W, n_w = (size_t)s.OC * s.C * s.K * s.K;
    const size_t n_out = (size_t)cc->N * s.OC * s.OH * s.OW, n_ws = conv2d_workspace_floats(&s, cc->N);
    if (s.K == 1 && s.stride == 1 && s.pad == 0)
        EXPECT(n_ws == 0, "1x1 s1 p0 conv asks for %zu floats of workspace", n_ws);
    float *inp = uniform(n_in, -1, 1, 1), *weight = uniform(n_w, -1, 1, 2);
    float *dout = uniform(n_out, -1, 1, 3);
    float *out = zeros(n_out), *out_ref = zeros(n_out);
    float *ws = n_ws ? zeros(n_ws) : NULL; /* NULL also checks the no-workspace claim */

    conv2d_forward(out, inp, weight, cc->N, &s, ws);
    conv2d_forward_reference(out_ref, inp, weight, cc->N, &s);
    size_t at;
    double d = test_max_rel_diff(out, out_ref, n_out, &at);
    EXPECT(d < 1e-5, "conv K=%d s=%d p=%d %dx%d forward differs by %.3g at %zu", s.K, s.stride,
           s.pad, s.H, s.W, d, at);

    /* Same non-zero starting gradients for both, so accumulation is compared too. */
    float *dinp = uniform(n_in, -1, 1, 4), *dweight = uniform(n_w, -1, 1, 5);
    float *dinp_ref = copy_of(dinp, n_in), *dweight_ref = copy_of(dweight, n_w);
    conv2d_backward(dinp, dweight, dout, inp, weight, cc->N, &s, ws);
    conv2d_backward_reference(dinp_ref, dweight_ref, dout, inp, weight, cc->N, &s);
    d = test_max_rel_diff(dinp, dinp_ref, n_in, &at);
    EXPECT(d < 1e-5, "conv K=%d s=%d p=%d %dx%d dinp differs by %.3g at %zu", s.K, s.stride, s.pad,
           s.H, s.W, d, at);
    d = test_max_rel_diff(dweight, dweight_ref, n_w, &at);
    EXPECT(d < 1e-5, "conv K=%d s=%d p=%d %dx%d dweight differs by %.3g at %zu", s.K, s.stride,
           s.pad, s.H, s.W, d, at);

    /* The stem's case: no input gradient wanted, dweight unaffected; and the converse. */
    float *dweight2 = uniform(n_w, -1, 1, 5), *dinp2 = uniform(n_in, -1, 1, 4);
    conv2d_backward(NULL, dweight2, dout, inp, weight, cc->N, &s, ws);
    d = test_max_rel_diff(dweight2, dweight, n_w, &at);
    EXPECT(d < 1e-6, "conv dweight with dinp=NULL differs by %.3g", d);
    conv2d_backward(dinp2, NULL, dout, inp, weight, cc->N, &s, ws);
    d = test_max_rel_diff(dinp2, dinp, n_in, &at);
    EXPECT(d < 1e-6, "conv dinp with dweight=NULL differs by %.3g", d);

    free(inp), free(weight), free(dout), free(out), free(out_ref), free(ws);
    free(dinp), free(dweight), free(dinp_ref), free(dweight_ref), free(dweight2), free(dinp2);
}

typedef struct {
    float *out, *inp, *weight, *ws;
    int N;
    Conv2dShape s;
} ConvCtx;

static void conv_fwd(void *p) {
    ConvCtx *c = p;
    conv2d_forward(c->out, c->inp, c->weight, c->N, &c->s, c->ws);
}

static void test_conv_grad(const ConvCase *cc) {
    ConvCtx c = {.N = cc->N};
    c.s = conv2d_shape(cc->C, cc->H, cc->W, cc->OC, cc->K, cc->stride, cc->pad);
    const size_t n_in = (size_t)cc->N * c.s.C * c.s.H * c.s.W;
    const size_t n_w = (size_t)c.s.OC * c.s.C * c.s.K * c.s.K;
    const size_t n_out = (size_t)cc->N * c.s.OC * c.s.OH * c.s.OW;
    c.inp = uniform(n_in, -1, 1, 11), c.weight = uniform(n_w, -1, 1, 12);
    c.out = zeros(n_out), c.ws = zeros(conv2d_workspace_floats(&c.s, cc->N));
    float *w = uniform(n_out, -1, 1, 13);
    float *dinp = zeros(n_in), *dweight = zeros(n_w);
    float *p_in = start_accum(dinp, n_in, 14), *p_w = start_accum(dweight, n_w, 15);
    conv_fwd(&c);
    conv2d_backward(dinp, dweight, w, c.inp, c.weight, c.N, &c.s, c.ws);
    end_accum(dinp, p_in, n_in), end_accum(dweight, p_w, n_w);
    Loss L = {conv_fwd, &c, c.out, w, n_out};
    char name[96];
    snprintf(name, sizeof name, "conv K=%d s=%d p=%d dinp", cc->K, cc->stride, cc->pad);
    check_grad(name, &L, c.inp, dinp, n_in, 1e-2f, TOL_LINEAR);
    snprintf(name, sizeof name, "conv K=%d s=%d p=%d dweight", cc->K, cc->stride, cc->pad);
    check_grad(name, &L, c.weight, dweight, n_w, 1e-2f, TOL_LINEAR);
    free(c.inp), free(c.weight), free(c.out), free(c.ws), free(w), free(dinp), free(dweight);
}

/* ---- batchnorm ---- */

typedef struct {
    float *out, *mean, *invstd, *rmean, *rvar, *inp, *gamma, *beta;
    int N, C, HW, group;
} BnCtx;

static void bn_fwd(void *p) {
    BnCtx *b = p;
    batchnorm_forward_train(b->out, b->mean, b->invstd, b->rmean, b->rvar, b->inp, b->gamma,
                            b->beta, b->N, b->C, b->HW, b->group, 1e-5f, 0.1f);
}

static void test_bn_grad(int N, int C, int HW, int group, int frozen_gamma) {
    BnCtx b = {.N = N, .C = C, .HW = HW, .group = group};
    const size_t n = (size_t)N * C * HW, n_stat = (size_t)(N / group) * C;
    /* An offset mean and gammas far from 1 so neither term of the gradient hides. */
    b.inp = uniform(n, -1, 2, 21), b.gamma = uniform(C, 0.5f, 1.5f, 22);
    b.beta = uniform(C, -0.5f, 0.5f, 23), b.out = zeros(n);
    b.mean = zeros(n_stat), b.invstd = zeros(n_stat);
    b.rmean = zeros(C), b.rvar = uniform(C, 1, 1, 0);
    float *w = uniform(n, -1, 1, 24);
    float *dinp = zeros(n), *dgamma = zeros(C), *dbeta = zeros(C);
    float *p_in = start_accum(dinp, n, 25), *p_g = start_accum(dgamma, C, 26);
    float *p_b = start_accum(dbeta, C, 27);
    bn_fwd(&b);
    batchnorm_backward(dinp, frozen_gamma ? NULL : dgamma, dbeta, w, b.inp, b.gamma, b.mean,
                       b.invstd, N, C, HW, group);
    end_accum(dinp, p_in, n), end_accum(dgamma, p_g, C), end_accum(dbeta, p_b, C);
    Loss L = {bn_fwd, &b, b.out, w, n};
    char name[96];
    const char *kind = HW == 1 ? "1d" : "2d";
    snprintf(name, sizeof name, "bn%s N=%d group=%d%s dinp", kind, N, group,
             frozen_gamma ? " frozen" : "");
    check_grad(name, &L, b.inp, dinp, n, 1e-3f, TOL_CURVED);
    snprintf(name, sizeof name, "bn%s N=%d group=%d%s dbeta", kind, N, group,
             frozen_gamma ? " frozen" : "");
    check_grad(name, &L, b.beta, dbeta, C, 1e-2f, TOL_LINEAR);
    if (frozen_gamma) {
        for (int c = 0; c < C; c++) EXPECT(dgamma[c] == 0, "frozen gamma got a gradient");
    } else {
        snprintf(name, sizeof name, "bn%s N=%d group=%d dgamma", kind, N, group);
        check_grad(name, &L, b.gamma, dgamma, C, 1e-2f, TOL_LINEAR);
    }
    free(b.inp), free(b.gamma), free(b.beta), free(b.out), free(b.mean), free(b.invstd);
    free(b.rmean), free(b.rvar), free(w), free(dinp), free(dgamma), free(dbeta);
}

/* The fast kernel against the textbook chain rule on a size that exercises the vector
 * lanes and their remainders (HW = 37). */
static void test_bn_vs_reference(void) {
    const int N = 6, C = 4, HW = 37, group = 3;
    const size_t n = (size_t)N * C * HW, n_stat = (size_t)(N / group) * C;
    float *inp = uniform(n, -3, 5, 31), *gamma = uniform(C, 0.5f, 1.5f, 32);
    float *beta = uniform(C, -1, 1, 33), *dout = uniform(n, -1, 1, 34);
    float *out = zeros(n), *out_r = zeros(n);
    float *mean = zeros(n_stat), *mean_r = zeros(n_stat);
    float *invstd = zeros(n_stat), *invstd_r = zeros(n_stat);
    float *rm = uniform(C, -1, 1, 35), *rv = uniform(C, 0.5f, 2, 36);
    float *rm_r = copy_of(rm, C), *rv_r = copy_of(rv, C);
    batchnorm_forward_train(out, mean, invstd, rm, rv, inp, gamma, beta, N, C, HW, group, 1e-5f,
                            0.1f);
    batchnorm_forward_train_reference(out_r, mean_r, invstd_r, rm_r, rv_r, inp, gamma, beta, N, C,
                                      HW, group, 1e-5f, 0.1f);
    EXPECT(test_max_rel_diff(out, out_r, n, NULL) < 1e-5, "bn forward vs reference");
    EXPECT(test_max_rel_diff(mean, mean_r, n_stat, NULL) < 1e-6, "bn save_mean vs reference");
    EXPECT(test_max_rel_diff(invstd, invstd_r, n_stat, NULL) < 1e-6, "bn save_invstd vs reference");
    EXPECT(test_max_rel_diff(rm, rm_r, C, NULL) < 1e-6, "bn running_mean vs reference");
    EXPECT(test_max_rel_diff(rv, rv_r, C, NULL) < 1e-6, "bn running_var vs reference");

    float *dinp = uniform(n, -1, 1, 37), *dgamma = uniform(C, -1, 1, 38);
    float *dbeta = uniform(C, -1, 1, 39);
    float *dinp_r = copy_of(dinp, n), *dgamma_r = copy_of(dgamma, C), *dbeta_r = copy_of(dbeta, C);
    batchnorm_backward(dinp, dgamma, dbeta, dout, inp, gamma, mean, invstd, N, C, HW, group);
    batchnorm_backward_reference(dinp_r, dgamma_r, dbeta_r, dout, inp, gamma, mean, invstd, N, C,
                                 HW, group);
    EXPECT(test_max_rel_diff(dinp, dinp_r, n, NULL) < 1e-5, "bn dinp vs reference");
    EXPECT(test_max_rel_diff(dgamma, dgamma_r, C, NULL) < 1e-5, "bn dgamma vs reference");
    EXPECT(test_max_rel_diff(dbeta, dbeta_r, C, NULL) < 1e-5, "bn dbeta vs reference");
    /* Gradients not wanted are skipped without changing the others. */
    float *dgamma2 = uniform(C, -1, 1, 38);
    batchnorm_backward(NULL, dgamma2, NULL, dout, inp, gamma, mean, invstd, N, C, HW, group);
    EXPECT(test_max_rel_diff(dgamma2, dgamma, C, NULL) < 1e-6, "bn dgamma alone");
    free(dgamma2);
    float *bufs[] = {inp, gamma, beta, dout, out,  out_r,  mean,  mean_r, invstd,   invstd_r,
                     rm,  rv,    rm_r, rv_r, dinp, dgamma, dbeta, dinp_r, dgamma_r, dbeta_r};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
}

/* Small enough to work out on paper. One channel, HW = 2, N = 4 in two groups of 2:
 * group 0 holds {1,3,5,7}: mean 4, biased var 5, unbiased 20/3;
 * group 1 holds {2,2,4,4}: mean 3, biased var 1, unbiased 4/3.
 * eps = 1 makes the normalisers sqrt(6) and sqrt(2). With momentum 0.1 from (0, 1):
 * after group 0: mean 0.4,                var 0.9 + 0.1*20/3 = 1.5666...;
 * after group 1: mean 0.9*0.4 + 0.3 = 0.66, var 0.9*1.5666... + 0.1*4/3 = 1.54333... */
static void test_bn_hand_values(void) {
    const float inp[8] = {1, 3, 5, 7, 2, 2, 4, 4};
    const float gamma[1] = {2}, beta[1] = {0.5f};
    float out[8], mean[2], invstd[2], rm[1] = {0}, rv[1] = {1};
    batchnorm_forward_train(out, mean, invstd, rm, rv, inp, gamma, beta, 4, 1, 2, 2, 1.0f, 0.1f);
    EXPECT_NEAR(mean[0], 4.0, 1e-6);
    EXPECT_NEAR(mean[1], 3.0, 1e-6);
    EXPECT_NEAR(invstd[0], 1 / sqrt(6.0), 1e-6);
    EXPECT_NEAR(invstd[1], 1 / sqrt(2.0), 1e-6);
    EXPECT_NEAR(rm[0], 0.66, 1e-6);
    EXPECT_NEAR(rv[0], 1.5433333333, 1e-6);
    EXPECT_NEAR(out[0], 2 * -3 / sqrt(6.0) + 0.5, 1e-5);
    EXPECT_NEAR(out[3], 2 * 3 / sqrt(6.0) + 0.5, 1e-5);
    EXPECT_NEAR(out[4], 2 * -1 / sqrt(2.0) + 0.5, 1e-5);
    EXPECT_NEAR(out[7], 2 * 1 / sqrt(2.0) + 0.5, 1e-5);

    /* Eval: channel 0 has running (1, 3), channel 1 (-2, 0); eps = 1 makes the
     * normalisers 2 and 1, so out = (x - mean) / 2 * 2 + 0.5 and (x + 2) * 0.5 - 1. */
    const float x[4] = {1, 5, -2, 2}, g2[2] = {2, 0.5f}, b2[2] = {0.5f, -1};
    const float rm2[2] = {1, -2}, rv2[2] = {3, 0};
    float y[4];
    batchnorm_forward_eval(y, x, g2, b2, rm2, rv2, 1, 2, 2, 1.0f);
    EXPECT_NEAR(y[0], 0.5, 1e-6);
    EXPECT_NEAR(y[1], 4.5, 1e-6);
    EXPECT_NEAR(y[2], -1.0, 1e-6);
    EXPECT_NEAR(y[3], 1.0, 1e-6);
    EXPECT(rm2[0] == 1 && rm2[1] == -2 && rv2[0] == 3 && rv2[1] == 0, "eval changed running stats");
}

/* ---- pointwise and linear gradient checks ---- */

typedef struct {
    float *out, *a, *b, *mask;
    int N, C, HW;
} PwCtx;

static void prelu_fwd(void *p) {
    PwCtx *c = p;
    prelu_forward(c->out, c->a, c->b, c->N, c->C, c->HW);
}
static void relu_fwd(void *p) {
    PwCtx *c = p;
    relu_forward(c->out, c->a, (size_t)c->N * c->C * c->HW);
}
static void add_fwd(void *p) {
    PwCtx *c = p;
    add_forward(c->out, c->a, c->b, (size_t)c->N * c->C * c->HW);
}
/* Same seed, step and samples every call: the mask is fixed, the layer linear. */
static void dropout_fwd(void *p) {
    PwCtx *c = p;
    dropout_forward(c->out, c->mask, c->a, c->N, c->C * c->HW, 0.4f, 9, 3, 17);
}

static void test_pointwise_grads(void) {
    const int N = 3, C = 4, HW = 11;
    const size_t n = (size_t)N * C * HW;
    PwCtx c = {.N = N, .C = C, .HW = HW, .out = zeros(n), .mask = zeros(n)};
    float *w = uniform(n, -1, 1, 41), *da = zeros(n), *db = zeros(n);
    Loss L = {NULL, &c, c.out, w, n};

    /* PReLU: a is the input, b the slopes. */
    c.a = away_from_zero(n, 42), c.b = uniform(C, 0.1f, 0.5f, 43);
    float *pa = start_accum(da, n, 44), *pb = start_accum(db, C, 45);
    prelu_fwd(&c);
    prelu_backward(da, db, w, c.a, c.b, N, C, HW);
    end_accum(da, pa, n), end_accum(db, pb, C);
    L.forward = prelu_fwd;
    check_grad("prelu dinp", &L, c.a, da, n, 1e-2f, TOL_LINEAR);
    check_grad("prelu dalpha", &L, c.b, db, C, 1e-2f, TOL_LINEAR);
    free(c.b);

    pa = start_accum(da, n, 46);
    relu_fwd(&c);
    relu_backward(da, w, c.a, n);
    end_accum(da, pa, n);
    L.forward = relu_fwd;
    check_grad("relu dinp", &L, c.a, da, n, 1e-2f, TOL_LINEAR);
    /* ReLU's output may stand in for its input in backward (documented). */
    float *dx_out = zeros(n), *dx_in = zeros(n);
    relu_backward(dx_in, w, c.a, n);
    relu_backward(dx_out, w, c.out, n);
    EXPECT(memcmp(dx_in, dx_out, n * sizeof(float)) == 0, "relu backward from out != from inp");
    free(dx_out), free(dx_in);

    c.b = uniform(n, -1, 1, 47);
    pa = start_accum(da, n, 48), pb = start_accum(db, n, 49);
    add_fwd(&c);
    add_backward(da, db, w, n);
    end_accum(da, pa, n), end_accum(db, pb, n);
    L.forward = add_fwd;
    check_grad("add da", &L, c.a, da, n, 1e-2f, TOL_LINEAR);
    check_grad("add db", &L, c.b, db, n, 1e-2f, TOL_LINEAR);

    pa = start_accum(da, n, 50);
    dropout_fwd(&c);
    dropout_backward(da, w, c.mask, N, C * HW);
    end_accum(da, pa, n);
    L.forward = dropout_fwd;
    check_grad("dropout dinp", &L, c.a, da, n, 1e-2f, TOL_LINEAR);

    free(c.a), free(c.b), free(c.out), free(c.mask), free(w), free(da), free(db);
}

typedef struct {
    float *out, *inp, *weight, *bias;
    int N, C, OC;
} LinCtx;

static void linear_fwd(void *p) {
    LinCtx *l = p;
    linear_forward(l->out, l->inp, l->weight, l->bias, l->N, l->C, l->OC);
}

static void test_linear(void) {
    LinCtx l = {.N = 5, .C = 13, .OC = 7};
    const size_t n_in = (size_t)l.N * l.C, n_w = (size_t)l.OC * l.C, n_out = (size_t)l.N * l.OC;
    l.inp = uniform(n_in, -1, 1, 51), l.weight = uniform(n_w, -1, 1, 52);
    l.bias = uniform(l.OC, -1, 1, 53), l.out = zeros(n_out);
    float *w = uniform(n_out, -1, 1, 54), *ref = zeros(n_out);

    for (int with_bias = 0; with_bias < 2; with_bias++) {
        float *bias = with_bias ? l.bias : NULL;
        test_fill_uniform(l.out, n_out, -9, 9, 55); /* forward must overwrite */
        linear_forward(l.out, l.inp, l.weight, bias, l.N, l.C, l.OC);
        linear_forward_reference(ref, l.inp, l.weight, bias, l.N, l.C, l.OC);
        EXPECT(test_max_rel_diff(l.out, ref, n_out, NULL) < 1e-5, "linear forward bias=%d",
               with_bias);
    }

    float *dinp = zeros(n_in), *dweight = zeros(n_w), *dbias = zeros(l.OC);
    float *p_in = start_accum(dinp, n_in, 56), *p_w = start_accum(dweight, n_w, 57);
    float *p_b = start_accum(dbias, l.OC, 58);
    float *dinp_r = copy_of(dinp, n_in), *dweight_r = copy_of(dweight, n_w);
    float *dbias_r = copy_of(dbias, l.OC);
    linear_backward(dinp, dweight, dbias, w, l.inp, l.weight, l.N, l.C, l.OC);
    linear_backward_reference(dinp_r, dweight_r, dbias_r, w, l.inp, l.weight, l.N, l.C, l.OC);
    EXPECT(test_max_rel_diff(dinp, dinp_r, n_in, NULL) < 1e-5, "linear dinp vs reference");
    EXPECT(test_max_rel_diff(dweight, dweight_r, n_w, NULL) < 1e-5, "linear dweight vs reference");
    EXPECT(test_max_rel_diff(dbias, dbias_r, l.OC, NULL) < 1e-5, "linear dbias vs reference");
    end_accum(dinp, p_in, n_in), end_accum(dweight, p_w, n_w), end_accum(dbias, p_b, l.OC);

    Loss L = {linear_fwd, &l, l.out, w, n_out};
    check_grad("linear dinp", &L, l.inp, dinp, n_in, 1e-2f, TOL_LINEAR);
    check_grad("linear dweight", &L, l.weight, dweight, n_w, 1e-2f, TOL_LINEAR);
    check_grad("linear dbias", &L, l.bias, dbias, l.OC, 1e-2f, TOL_LINEAR);
    free(l.inp), free(l.weight), free(l.bias), free(l.out), free(w), free(ref);
    free(dinp), free(dweight), free(dbias), free(dinp_r), free(dweight_r), free(dbias_r);
}

/* ---- dropout masks ---- */

static void test_dropout_masks(void) {
    const int N = 6, F = 37;
    const float p = 0.3f, keep_scale = 1.0f / (1.0f - p);
    const size_t n = (size_t)N * F;
    float *inp = uniform(n, -1, 1, 61), *out = zeros(n), *mask = zeros(n), *mask2 = zeros(n);
    dropout_forward(out, mask, inp, N, F, p, 42, 7, 100);

    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        bad += !(mask[i] == 0.0f || mask[i] == keep_scale);
        bad += out[i] != inp[i] * mask[i];
    }
    EXPECT(bad == 0, "%d mask values not in {0, 1/(1-p)} or out != inp * mask", bad);

    /* The formula documented in pointwise.c, element by element. */
    int off_formula = 0;
    for (int s = 0; s < N; s++)
        for (int f = 0; f < F; f++) {
            uint64_t h = rng_hash4(42, 7, ((uint64_t)RNG_DROPOUT << 56) | (100 + (uint64_t)s), f);
            off_formula += (mask[(size_t)s * F + f] != 0) != (rng_uniform(h) >= p);
        }
    EXPECT(off_formula == 0, "%d mask entries differ from the documented formula", off_formula);

    dropout_forward(out, mask2, inp, N, F, p, 42, 7, 100);
    EXPECT(memcmp(mask, mask2, n * sizeof(float)) == 0, "same seed/step/samples, different mask");

    /* A worker holding samples 103..105 draws the same masks for them. */
    memset(mask2, 0, n * sizeof(float));
    dropout_forward(out, mask2, inp + 3 * F, 3, F, p, 42, 7, 103);
    EXPECT(memcmp(mask + 3 * F, mask2, 3 * F * sizeof(float)) == 0,
           "mask slice at first_sample=103 differs");

    dropout_forward(out, mask2, inp, N, F, p, 42, 8, 100);
    EXPECT(memcmp(mask, mask2, n * sizeof(float)) != 0, "step 7 and 8 drew the same mask");

    /* p == 0 is the identity. */
    dropout_forward(out, mask2, inp, N, F, 0.0f, 42, 7, 100);
    EXPECT(memcmp(out, inp, n * sizeof(float)) == 0, "p=0 dropout changed the input");
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += mask2[i] != 1.0f;
    EXPECT(bad == 0, "p=0 mask has %d entries != 1", bad);
    free(inp), free(out), free(mask), free(mask2);

    /* Keep rate over 64k draws: sd = sqrt(0.25*0.75/65536) = 0.0017, tolerance ~6 sd. */
    const int NB = 64, FB = 1024;
    float *big = uniform((size_t)NB * FB, -1, 1, 62), *bout = zeros((size_t)NB * FB);
    float *bmask = zeros((size_t)NB * FB);
    dropout_forward(bout, bmask, big, NB, FB, 0.25f, 5, 1, 0);
    size_t kept = 0;
    for (size_t i = 0; i < (size_t)NB * FB; i++) kept += bmask[i] != 0;
    const double rate = (double)kept / ((double)NB * FB);
    EXPECT_NEAR(rate, 0.75, 0.01);
    free(big), free(bout), free(bmask);
}

/* Every layer against its reference and its finite differences. */
static void test_all_layers(void) {
    static const ConvCase conv_cases[] = {
        /* N  C   H   W  OC  K  s  p */
        {2, 3, 7, 9, 4, 1, 1, 0},   /* 1x1 s1 p0: SGEMM straight on the input */
        {3, 5, 8, 6, 7, 1, 2, 0},   /* 1x1 s2: IResNet's downsampling shortcut */
        {1, 4, 9, 7, 3, 1, 1, 1},   /* 1x1 padded: through im2col */
        {1, 3, 9, 7, 4, 3, 1, 1},   /* IResNet's 3x3 */
        {2, 4, 10, 11, 5, 3, 2, 1}, /* IResNet's strided 3x3 */
        {3, 2, 8, 10, 3, 3, 1, 0},
        {2, 3, 5, 4, 2, 3, 2, 2}, /* more padding than image at the edges */
        {2, 2, 12, 9, 3, 5, 1, 2},
        {1, 2, 9, 11, 3, 5, 2, 0}, /* (W - K) not a multiple of the stride */
        {1, 2, 3, 3, 2, 5, 1, 1},  /* kernel larger than the image */
        {2, 3, 11, 8, 2, 7, 1, 1},
        {5, 3, 24, 24, 4, 3, 1, 1}, /* 576 pixels: 3 images per SGEMM, then the last 2 */
        {3, 2, 40, 40, 3, 3, 1, 1}, /* 1600 pixels: one image per SGEMM */
        {7, 3, 16, 20, 5, 3, 2, 1}, /* 80 pixels: all 7 images in one SGEMM */
        {1, 3, 16, 13, 4, 7, 2, 2},
        {2, 16, 14, 14, 32, 3, 2, 1}, /* a real layer's channel counts */
    };
    for (size_t i = 0; i < sizeof conv_cases / sizeof *conv_cases; i++)
        test_conv_vs_reference(&conv_cases[i]);

    static const ConvCase conv_grad_cases[] = {
        {2, 3, 7, 6, 4, 3, 2, 1},
        {2, 3, 5, 7, 2, 1, 1, 0},
        {1, 3, 6, 5, 2, 1, 2, 0},
        {1, 2, 8, 7, 3, 5, 1, 2},
    };
    for (size_t i = 0; i < sizeof conv_grad_cases / sizeof *conv_grad_cases; i++)
        test_conv_grad(&conv_grad_cases[i]);

    /* N, C, HW, group, frozen gamma */
    test_bn_grad(4, 3, 10, 2, 0); /* 2d, ghost groups */
    test_bn_grad(4, 3, 10, 2, 1);
    test_bn_grad(3, 2, 12, 3, 0); /* 2d, one group */
    test_bn_grad(6, 5, 1, 3, 0);  /* 1d, ghost groups */
    test_bn_grad(6, 5, 1, 3, 1);
    test_bn_grad(8, 4, 1, 8, 1); /* IResNet's final BatchNorm1d */
    test_bn_vs_reference();
    test_bn_hand_values();

    test_pointwise_grads();
    test_linear();
    test_dropout_masks();
}

int main(void) {
    /* Once on the calling thread, then split three ways down to single indices,
     * which is what shapes this small need to reach every thread's share. */
    test_all_layers();
    parallel_set_threads(3);
    parallel_ignore_grain(1);
    test_all_layers();
    return test_finish("test_layers");
}
