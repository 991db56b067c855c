/* backbone_file.c -- backbone.bin to and from an IResNet. */
#include "backbone_file.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"

IResNet *backbone_load(const char *path, int max_batch, char *err, size_t errlen) {
    int64_t meta[4];
    float *values = NULL;
    size_t count = 0;
    if (dump_read(path, "backbone", meta, &values, &count, err, errlen) != 0) return NULL;
    IResNet *net = NULL;
    char why[512] = "";
    if (meta[0] < 1 || meta[0] > 1000 || meta[1] < 1 || meta[1] > 1 << 16 || meta[2] < 1 || meta[2] > 1 << 20) {
        snprintf(why, sizeof why, "implausible architecture in the header");
        goto error;
    }
    /* The seed only initialises values the file then overwrites. */
    net = iresnet_create((int)meta[0], (int)meta[1], (int)meta[2], 0.0f, max_batch, 0, 0, why, sizeof why);
    if (!net) goto error;
    if ((size_t)meta[3] != net->params.n_params || count != net->params.n_params + net->n_bn_buffers) {
        snprintf(why, sizeof why, "%zu values (%lld parameters), the architecture needs %zu parameters + %zu "
                 "BatchNorm statistics", count, (long long)meta[3], net->params.n_params, net->n_bn_buffers);
        goto error;
    }
    memcpy(net->params.params, values, net->params.n_params * sizeof(float));
    memcpy(net->bn_buffers, values + net->params.n_params, net->n_bn_buffers * sizeof(float));
    free(values);
    return net;

error:
    snprintf(err, errlen, "%s: IResNet-%lld width %lld embedding %lld: %s (is it a backbone.bin written by "
             "this version of arcface-worker?)", path, (long long)meta[0], (long long)meta[1],
             (long long)meta[2], why);
    free(values);
    iresnet_destroy(&net);
    return NULL;
}

int backbone_save(const IResNet *net, const char *path, char *err, size_t errlen) {
    size_t n = net->params.n_params + net->n_bn_buffers;
    float *all = malloc(n * sizeof(float));
    if (!all) {
        snprintf(err, errlen, "%s: out of memory for %zu values", path, n);
        return -1;
    }
    memcpy(all, net->params.params, net->params.n_params * sizeof(float));
    memcpy(all + net->params.n_params, net->bn_buffers, net->n_bn_buffers * sizeof(float));
    int64_t meta[4] = {net->depth, net->width, net->embedding_size, (int64_t)net->params.n_params};
    int rc = dump_write(path, "backbone", meta, all, n, err, errlen);
    free(all);
    return rc;
}
