/* train_setup.c -- configuration-derived objects shared by worker and server. */
#include "train_setup.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "parallel.h"

int margin_from_config(const TrainConfig *cfg, Margin *out, char *err, size_t errlen) {
    Margin m = {.s = cfg->s, .m1 = cfg->m1, .m2 = cfg->m2, .m3 = cfg->m3};
    m.fallback = strcmp(cfg->margin_fallback, "thmm") == 0   ? MARGIN_FALLBACK_THMM
                 : strcmp(cfg->margin_fallback, "easy") == 0 ? MARGIN_FALLBACK_EASY
                                                             : MARGIN_FALLBACK_NONE;
    m.grad = strcmp(cfg->margin_grad, "straight") == 0 ? MARGIN_GRAD_STRAIGHT : MARGIN_GRAD_EXACT;
    m.kind = strcmp(cfg->loss, "sphereface") == 0 ? MARGIN_SPHEREFACE : MARGIN_COMBINED;
    m.norm = cfg->normalize_embeddings ? MARGIN_NORM_BOTH
             : cfg->normalize_weights  ? MARGIN_NORM_WEIGHTS
                                       : MARGIN_NORM_NONE;
    margin_set_step(&m, cfg, 0);
    if (margin_check(&m, err, errlen) != 0) return -1;
    *out = m;
    return 0;
}

void margin_set_step(Margin *m, const TrainConfig *cfg, int64_t step) {
    if (m->kind != MARGIN_SPHEREFACE) return;
    m->lambda = sphereface_lambda(cfg->sphereface_lambda_base, cfg->sphereface_lambda_gamma,
                                  cfg->sphereface_lambda_power, cfg->sphereface_lambda_min, step + 1);
}

LrSchedule schedule_from_config(const TrainConfig *cfg, int64_t steps_per_epoch) {
    LrSchedule s = {.base_lr = cfg->lr, .warmup_steps = cfg->warmup_steps, .total_steps = cfg->steps,
                    .power = cfg->lr_power, .factor = cfg->lr_decay};
    if (strcmp(cfg->lr_schedule, "step") == 0) {
        _Static_assert(CONFIG_MAX_LR_EPOCHS <= LR_MAX_MILESTONES, "every configured epoch needs a milestone");
        double epochs[CONFIG_MAX_LR_EPOCHS];
        char err[256];
        int n = config_parse_epochs(cfg->lr_epochs, epochs, CONFIG_MAX_LR_EPOCHS, err, sizeof err);
        s.kind = LR_STEP;
        for (int i = 0; i < n; i++) s.milestones[s.n_milestones++] = llround(epochs[i] * (double)steps_per_epoch);
    }
    return s;
}

int config_depth(const TrainConfig *cfg) { return atoi(cfg->network + 1); }

void shard_range(int64_t num_classes, int p, int P, int64_t *start, int64_t *rows) {
    int64_t base = num_classes / P, extra = num_classes % P;
    *start = p * base + (p < extra ? p : extra);
    *rows = base + (p < extra ? 1 : 0);
}

void blas_setup(int threads, int log) {
    /* 0: what OpenBLAS would have used (OPENBLAS_NUM_THREADS, else one per CPU). */
    parallel_set_threads(threads > 0 ? threads : openblas_get_num_threads());
    /* OpenBLAS multiplies inside the compute threads (parallel.h): threads of its own would spin
     * through every pass between SGEMMs. */
    openblas_set_num_threads(1);
    if (!log) return;
    const char *core = openblas_get_corename();
    log_info("%d compute thread(s); OpenBLAS %s, core %s, one thread per call", parallel_threads(),
             openblas_get_config(), core);
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f");
    if (avx512 && strstr(core, "Haswell") != NULL)
        log_warn("this CPU has AVX-512 but OpenBLAS runs its Haswell (AVX2) kernels, about half "
                 "the SGEMM speed; OPENBLAS_CORETYPE=%s forces it: unset it or set SkylakeX",
                 getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
}

void print_usage(FILE *out) {
    fprintf(out, "usage: mpirun -np P arcface-ps [CONFIG] [key=value ...] : -np W arcface-worker [CONFIG] [key=value ...]\n\n");
    config_print_help(out);
}
