/* test_optim.c -- SGD, gradient clipping and the learning-rate schedule
 * against hand-computed values (PyTorch semantics). */
#include <math.h>

#include "optim.h"
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

int main(void) {
    test_sgd();
    test_clip();
    test_schedule();
    return test_finish("test_optim");
}
