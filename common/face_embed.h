/* face_embed.h -- embeddings of image files with a trained backbone, prepared
 * exactly as training and verification prepare faces: decode, centred crop of
 * crop_fraction, resize to 112x112 (common/decode.h), RGB planes,
 * (x - 127.5) / 128 (common/image.h); with flip, the embedding of the image
 * plus that of its mirror image, as verification scores pairs. */
#ifndef ARCFACE_FACE_EMBED_H
#define ARCFACE_FACE_EMBED_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "image.h"
#include "iresnet.h"

/* Floats of one network input image, (3, 112, 112). */
#define FACE_TENSOR_FLOATS ((size_t)3 * IMAGE_SIZE * IMAGE_SIZE)

/* Reads and decodes the image file at path into rgb112 ((112, 112, 3) uint8),
 * using s's buffers. Returns 0, or -1 with err naming path and what is wrong
 * (unreadable, not an image, truncated or corrupt). */
int face_load_file(const char *path, float crop_fraction, DatasetScratch *s, uint8_t *rgb112, char *err,
                   size_t errlen);

/* Writes the network input rows of one face into rows: its tensor, followed
 * with flip by the tensor of its mirror image (1 + flip rows of
 * FACE_TENSOR_FLOATS). Can't fail. */
void face_tensor(float *rows, const uint8_t *rgb112, int flip);

/* Runs net in inference mode on n faces laid out by face_tensor
 * (n * (1 + flip) rows; at most net->max_batch rows) and writes their n
 * embeddings to out (n, E): the network's output f(image), or with flip
 * f(image) + f(mirror), then L2-normalised when normalise is set (an all-zero
 * embedding stays zero). */
void face_embed(IResNet *net, const float *rows, int n, int flip, int normalise, float *out);

#endif
