/* dataset.h -- the training set behind one interface: the built-in synthetic
 * faces, an insightface RecordIO file, or an image folder.
 *
 * A dataset is a list of n samples, each an image with a class label, loaded
 * as 112x112 RGB by any number of threads at once (each with its own
 * DatasetScratch). Decoding errors are returned, never papered over: the
 * caller decides whether to skip the sample. */
#ifndef ARCFACE_DATASET_H
#define ARCFACE_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "decode.h"

typedef struct Dataset Dataset;

/* Per-thread buffers for dataset_load, grown on first use and reused. */
typedef struct {
    DecodedImage image;
    uint8_t *file;
    size_t file_cap, file_len;
} DatasetScratch;

void dataset_scratch_init(DatasetScratch *s);
void dataset_scratch_free(DatasetScratch *s);

/* Opens the training set cfg names (dataset, data_path, data_class_limit,
 * exclude_pairs, exclude_fold, exclude_list, crop_fraction, the synthetic
 * keys). A folder's identities are its sub-folders in strcmp order less the
 * excluded names; labels are dense over what is kept, and the description says
 * how many identities and images were left out and how many excluded names
 * matched no folder. Returns 0, or -1 with a reason naming the file (or key)
 * in err. */
int dataset_open(Dataset **out, const TrainConfig *cfg, char *err, size_t errlen);
void dataset_close(Dataset **d);

int64_t dataset_size(const Dataset *d);
/* Number of identities (labels are in [0, classes)). */
int64_t dataset_classes(const Dataset *d);
/* "synthetic", "train.rec (5822653 images)", ... for logs. */
const char *dataset_describe(const Dataset *d);

/* Loads sample i (0 <= i < size) as 112x112 RGB HWC into rgb and its label.
 * Returns 0, or -1 with err naming the file (and offset) and what is wrong.
 * Thread-safe for concurrent calls with different scratch buffers. */
int dataset_load(const Dataset *d, int64_t i, DatasetScratch *s, uint8_t *rgb, int64_t *label,
                 char *err, size_t errlen);

#endif
