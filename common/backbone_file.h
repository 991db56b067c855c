/* backbone_file.h -- backbone.bin, the trained backbone a run leaves for
 * inference: loaded into a ready IResNet, or written from one.
 *
 * The file is a dump (common/dump.h) of kind "backbone" with meta = (depth,
 * width, embedding size, floats of the parameter block) and data = the
 * parameter block as the network's ParamSet lays it out (every parameter in
 * PyTorch insightface-iresnet registration order, each tensor starting at a
 * multiple of 16 floats), then every BatchNorm's running mean and running
 * variance (in the same order as the layers). */
#ifndef ARCFACE_BACKBONE_FILE_H
#define ARCFACE_BACKBONE_FILE_H

#include <stddef.h>

#include "iresnet.h"

/* Reads path and builds the IResNet it describes for inference on up to
 * max_batch images at once (dropout 0, whole-batch BN groups), with the
 * file's parameters and running statistics. Returns the network (release with
 * iresnet_destroy), or NULL with err naming path and what is wrong: unreadable
 * or corrupt file, not a backbone, an unsupported architecture, or a value
 * count that does not match the architecture in the header. */
IResNet *backbone_load(const char *path, int max_batch, char *err, size_t errlen);

/* Writes net's parameters and running statistics to path in the format above
 * (atomically: a temporary file renamed into place). Returns 0, or -1 with
 * err naming the file. */
int backbone_save(const IResNet *net, const char *path, char *err, size_t errlen);

#endif
