/* eval.c -- arcface-eval: verification accuracy of a trained backbone.
 *
 *     arcface-eval BACKBONE.bin [CONFIG] [key=value ...]
 *
 * Loads the backbone a training run wrote (output_dir/backbone.bin), scores
 * every set of the `verify` key (synthetic, .bin files, pairs.txt@folder) with
 * flip-augmented embeddings and prints insightface's lines
 * "[lfw][0]Accuracy-Flip: 0.99500+-0.00300". One process, no MPI job needed;
 * batch_size sets the inference batch, threads the OpenBLAS threads. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backbone_file.h"
#include "config.h"
#include "iresnet.h"
#include "log.h"
#include "train_setup.h"
#include "verify.h"
#include "verify_set.h"

static int evaluate_set(const VerifySet *set, IResNet *net) {
    int n = verify_set_pairs(set);
    float *scores = calloc((size_t)n, sizeof(float));
    uint8_t *same = calloc((size_t)n, 1);
    char err[1024], line[256];
    int rc = verify_set_score(set, net, 0, n, scores, err, sizeof err);
    if (rc != 0) {
        log_error("%s", err);
    } else {
        for (int i = 0; i < n; i++) same[i] = (uint8_t)verify_set_same(set, i);
        VerifyResult r;
        rc = verify_kfold(&r, scores, same, n, 10, err, sizeof err);
        if (rc != 0) {
            log_error("%s: %s", verify_set_name(set), err);
        } else {
            verify_format(line, sizeof line, verify_set_name(set), 0, &r);
            printf("%s\n", line);
            printf("[%s][0]Threshold: %.4f", verify_set_name(set), r.threshold_mean);
            if (isfinite(r.tar_at_far_1e3)) printf(" TAR@FAR=1e-3: %.5f", r.tar_at_far_1e3);
            if (isfinite(r.tar_at_far_1e4)) printf(" TAR@FAR=1e-4: %.5f", r.tar_at_far_1e4);
            printf(" (%s)\n", verify_set_protocol(set));
        }
    }
    free(scores);
    free(same);
    return rc;
}

int main(int argc, char **argv) {
    log_set_role("eval", -1);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fprintf(argc < 2 ? stderr : stdout, "usage: arcface-eval BACKBONE.bin [CONFIG] [key=value ...]\n"
                "  scores the verification sets of the `verify` key (see arcface-ps --help)\n");
        return argc < 2 ? 2 : 0;
    }
    const char *backbone = argv[1];
    argv[1] = argv[0]; /* the rest is a training configuration */
    TrainConfig cfg;
    char err[1024];
    if (config_from_args(&cfg, argc - 1, argv + 1, err, sizeof err) != 0) {
        log_error("config: %s", err);
        return 2;
    }
    blas_setup(cfg.threads, 0);
    int batch = cfg.batch_size < 4 ? 4 : cfg.batch_size;
    IResNet *net = backbone_load(backbone, batch, err, sizeof err);
    if (!net) {
        log_error("%s", err);
        return 1;
    }
    log_info("IResNet-%d width %d, embedding %d, from %s", net->depth, net->width, net->embedding_size, backbone);

    VerifySet **sets;
    int n_sets, failed = 0;
    if (verify_sets_open(&sets, &n_sets, &cfg, err, sizeof err) != 0) {
        log_error("%s", err);
        iresnet_destroy(&net);
        return 1;
    }
    if (n_sets == 0) log_warn("no verification sets configured (key 'verify')");
    for (int i = 0; i < n_sets; i++) failed |= evaluate_set(sets[i], net) != 0;
    verify_sets_close(&sets, n_sets);
    iresnet_destroy(&net);
    return failed ? 1 : 0;
}
