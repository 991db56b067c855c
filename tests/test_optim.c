/* test_optim.c -- SGD, gradient clipping and the learning-rate schedule
 * against hand-computed values (PyTorch semantics). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "optim.h"
#include "train_setup.h"
#include "testutil.h"

static void test_sgd(void) {
    ParamSet p = {0};
    size_t a = paramset_add(&p, "a", 2, 1);
    size_t f = paramset_add(&p, "frozen", 1, 0);
    paramset_alloc(&p);
    p.params[a] = 1.0f, p.params[a + 1] = -2.0f, p.params[f] = 3.0f;
    p.grads[a] = 0.5f, p.grads[a + 1] = 0.25f, p.grads[f] = 1.0f;
    /* step 1: g = 0.5 + 0.1*1 = 0.6; v = 0.6; w = 1 - 0.1*0.6 = 0.94
     * step 2 (same grad): g = 0.5 + 0.1*0.94 = 0.594; v = 0.9*0.6 + 0.594 = 1.134; w = 0.94 - 0.1134 = 0.8266 */
    sgd_step(&p, 0.1f, 0.9f, 0.1f);
    EXPECT_NEAR(p.params[a], 0.94, 1e-6);
    sgd_step(&p, 0.1f, 0.9f, 0.1f);
    EXPECT_NEAR(p.params[a], 0.8266, 1e-6);
    /* second element: g1 = 0.25 - 0.2 = 0.05, w = -2.005; g2 = 0.25 - 0.2005 = 0.0495, v = 0.045 + 0.0495 = 0.0945, w = -2.01445 */
    EXPECT_NEAR(p.params[a + 1], -2.01445, 1e-6);
    EXPECT(p.params[f] == 3.0f, "a frozen tensor must not move (got %g)", p.params[f]);
    EXPECT(p.params[a] != 0 && (p.tensors[0].offset % 16) == 0 && (p.tensors[1].offset % 16) == 0,
           "tensors start on 64-byte boundaries");
    paramset_free(&p);
}

static void test_clip(void) {
    ParamSet p = {0};
    paramset_add(&p, "a", 2, 1);
    paramset_add(&p, "frozen", 1, 0);
    paramset_alloc(&p);
    p.grads[0] = 3.0f, p.grads[1] = 4.0f, p.grads[16] = 100.0f; /* frozen grad ignored */
    double norm = clip_grad_norm(&p, 10.0);
    EXPECT_NEAR(norm, 5.0, 1e-9);
    EXPECT(p.grads[0] == 3.0f, "no clipping below max_norm");
    norm = clip_grad_norm(&p, 1.0);
    EXPECT_NEAR(norm, 5.0, 1e-9);
    EXPECT_NEAR(p.grads[0], 3.0 / (5.0 + 1e-6), 1e-6);
    EXPECT_NEAR(p.grads[1], 4.0 / (5.0 + 1e-6), 1e-6);
    EXPECT_NEAR(grad_norm(&p), 1.0, 1e-5);
    paramset_free(&p);
}

static void test_schedule(void) {
    LrSchedule s = {.base_lr = 0.1f, .warmup_steps = 10, .total_steps = 110, .power = 2};
    EXPECT_NEAR(lr_at(&s, 0), 0.0, 1e-9);
    EXPECT_NEAR(lr_at(&s, 5), 0.05, 1e-7);
    EXPECT_NEAR(lr_at(&s, 10), 0.1, 1e-7);
    EXPECT_NEAR(lr_at(&s, 60), 0.1 * 0.25, 1e-7); /* (1 - 50/100)^2 */
    EXPECT_NEAR(lr_at(&s, 110), 0.0, 1e-9);
    LrSchedule nowarm = {.base_lr = 0.2f, .warmup_steps = 0, .total_steps = 4, .power = 1};
    EXPECT_NEAR(lr_at(&nowarm, 0), 0.2, 1e-7);
    EXPECT_NEAR(lr_at(&nowarm, 3), 0.05, 1e-7);
}

static void test_step_schedule(void) {
    LrSchedule s = {.kind = LR_STEP, .base_lr = 0.1f, .warmup_steps = 4, .total_steps = 100, .factor = 0.1f,
                    .n_milestones = 3, .milestones = {10, 18, 22}};
    EXPECT_NEAR(lr_at(&s, 2), 0.05, 1e-7); /* warmup */
    EXPECT_NEAR(lr_at(&s, 9), 0.1, 1e-7);
    EXPECT_NEAR(lr_at(&s, 10), 0.01, 1e-8);
    EXPECT_NEAR(lr_at(&s, 18), 0.001, 1e-9);
    EXPECT_NEAR(lr_at(&s, 99), 0.0001, 1e-10);
}

/* lr_epochs in a config become milestones in steps; bad lists name the key. */
static void test_schedule_from_config(void) {
    TrainConfig c;
    char err[256];
    config_defaults(&c);
    EXPECT(config_set(&c, "lr_schedule", "step", err, sizeof err) == 0, "%s", err);
    EXPECT(config_set(&c, "lr_epochs", "1,2.5", err, sizeof err) == 0, "%s", err);
    EXPECT(config_finalize(&c, err, sizeof err) == 0, "%s", err);
    LrSchedule s = schedule_from_config(&c, 10);
    EXPECT(s.kind == LR_STEP && s.n_milestones == 2 && s.milestones[0] == 10 && s.milestones[1] == 25,
           "milestones %d: %lld %lld", s.n_milestones, (long long)s.milestones[0], (long long)s.milestones[1]);
    const char *bad[] = {"2,1", "1,,2", "x", "0", "1,2,"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        TrainConfig t = c;
        snprintf(t.lr_epochs, sizeof t.lr_epochs, "%s", bad[i]);
        EXPECT(config_finalize(&t, err, sizeof err) != 0 && strstr(err, "lr_epochs"), "'%s' accepted (%s)", bad[i], err);
    }
    TrainConfig poly;
    config_defaults(&poly);
    EXPECT(config_set(&poly, "lr_epochs", "3", err, sizeof err) == 0, "%s", err);
    EXPECT(config_finalize(&poly, err, sizeof err) != 0 && strstr(err, "lr_epochs"), "lr_epochs with poly accepted");
}

int main(void) {
    test_sgd();
    test_clip();
    test_schedule();
    test_step_schedule();
    test_schedule_from_config();
    return test_finish("test_optim");
}
