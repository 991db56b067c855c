/* config.h -- the training configuration: one "key = value" file plus
 * command-line overrides "key=value". Every key, its type, default, range and
 * meaning live in one table in config.c (printed by config_print_help); an
 * unknown key, a value of the wrong type or out of range is an error that
 * names the key (and the file and line). */
#ifndef ARCFACE_CONFIG_H
#define ARCFACE_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#define CONFIG_STR 256
/* Most milestones lr_epochs may list. */
#define CONFIG_MAX_LR_EPOCHS 16

typedef struct {
    /* model */
    char network[CONFIG_STR]; /* r18 | r34 | r50 | r100 */
    int width;                /* channels of the first stage (insightface: 64) */
    int embedding_size;       /* 512 */
    float dropout;            /* before the embedding FC (insightface: 0) */
    /* data */
    char dataset[CONFIG_STR]; /* synthetic | rec | folder */
    char data_path[CONFIG_STR];
    int data_class_limit;     /* folder: first N identities only; 0 = all */
    char exclude_pairs[CONFIG_STR]; /* folder: leave out the people of this LFW pairs file ... */
    int exclude_fold;         /* ... of its fold K (1-based); 0 = of every fold */
    char exclude_list[CONFIG_STR];  /* folder: leave out the identities named in this file */
    float crop_fraction;      /* centred square kept before resizing to 112x112 */
    int decode_threads;
    int64_t max_bad_images;
    char verify[CONFIG_STR];  /* comma-separated verification set specs */
    int synthetic_ids;        /* training identities of the synthetic set */
    int synthetic_images;     /* images per synthetic identity */
    int synthetic_holdout_ids;/* held-out identities for verification pairs */
    int verify_pairs;         /* held-out pairs, a multiple of 20 (10 folds, half same) */
    int64_t num_classes;      /* derived from the dataset when 0 */
    /* batch */
    int batch_size;           /* per worker */
    int bn_group;             /* samples per BatchNorm statistics group; 0 = batch_size */
    /* loss */
    char loss[CONFIG_STR];    /* arcface | cosface | softmax | combined | sphereface */
    float s;                  /* scale */
    float m1, m2, m3;         /* NaN until finalised from the loss' defaults */
    char margin_fallback[CONFIG_STR]; /* thmm | easy | none (auto until finalised) */
    int normalize_embeddings, normalize_weights;
    double sphereface_lambda_base, sphereface_lambda_gamma, sphereface_lambda_power, sphereface_lambda_min;
    char margin_grad[CONFIG_STR];     /* exact | straight */
    float sample_rate;                /* Partial FC; 1 = full softmax */
    /* optimiser and schedule */
    float lr, momentum, weight_decay;
    float grad_clip;          /* max L2 norm of the backbone gradient; 0 = off */
    int64_t steps;            /* total training steps */
    int64_t warmup_steps;
    char lr_schedule[CONFIG_STR]; /* poly | step */
    char lr_epochs[CONFIG_STR];   /* step: comma-separated epochs */
    float lr_decay;               /* step: factor per milestone */
    float lr_power;           /* polynomial decay exponent (insightface: 2) */
    /* run */
    uint64_t seed;
    int log_every;            /* progress line every N steps */
    int verify_every;         /* verification every N steps; 0 = at the end only */
    char output_dir[CONFIG_STR]; /* "" = write nothing */
    int64_t checkpoint_every;    /* 0 = only the last step */
    int keep_checkpoints;
    char resume[CONFIG_STR];     /* auto | none */
    int64_t stop_at_step;        /* 0 = run to steps */
    int threads;              /* OpenBLAS threads per process; 0 = library default */
    /* distribution */
    char interface[CONFIG_STR]; /* address or interface name the servers bind; "" = auto */
    char encrypt[CONFIG_STR]; /* none | curve */
    double heartbeat_interval; /* seconds between ZMTP heartbeats */
    double step_timeout;      /* seconds any wait of a step may take */
    int64_t max_message_bytes;
} TrainConfig;

/* Sets every key to its default. Can't fail. */
void config_defaults(TrainConfig *c);

/* Applies one key = value. Returns 0, or -1 with "key 'x': reason" in err
 * (c is unaltered then). */
int config_set(TrainConfig *c, const char *key, const char *value, char *err, size_t errlen);

/* Reads a "key = value" file ('#' comments, blank lines). Returns 0, or -1 with
 * "path:line: ..." in err. */
int config_load_file(TrainConfig *c, const char *path, char *err, size_t errlen);

/* argv[0] is the program; then an optional config file (an argument without '=')
 * followed by key=value overrides (also accepted as --key=value). Applies
 * defaults first, then the file, then the overrides, then config_finalize. */
int config_from_args(TrainConfig *c, int argc, char **argv, char *err, size_t errlen);

/* Resolves derived values (margins from the loss, bn_group) and checks the
 * keys against each other. Returns 0 or -1 with the reason in err. */
int config_finalize(TrainConfig *c, char *err, size_t errlen);

/* Parses lr_epochs ("10,18,22", ascending positive numbers) into epochs[0..max).
 * Returns the count, or -1 with a reason naming the key. */
int config_parse_epochs(const char *list, double *epochs, int max, char *err, size_t errlen);

/* Writes every key as "key = value", in table order, loadable by config_load_file. */
void config_print(const TrainConfig *c, FILE *out);
/* Writes every key with its type, default, range and description. */
void config_print_help(FILE *out);

#endif
