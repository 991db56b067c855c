/* image.h -- turning a decoded 112x112 face crop into the network's input tensor. */
#ifndef ARCFACE_IMAGE_H
#define ARCFACE_IMAGE_H

#include <stdint.h>

#define IMAGE_SIZE 112

/* rgb is (112,112,3) uint8 HWC; out is (3,112,112) fp32 CHW with
 * out = (x - 127.5) / 128, mirrored horizontally (column x reads column
 * 111 - x) when flip != 0. out and rgb must not overlap. Can't fail.
 *
 * The divisor 128 is the project's choice, as in insightface's MXNet-era
 * recognition code (and its .bin evaluation); arcface_torch divides by 127.5
 * instead ((x/255 - 0.5) / 0.5), so inputs there span [-1, 1] and ours
 * [-0.9961, 0.9961]. Weights trained with one convention see a 0.4% input
 * scale change under the other; keep it consistent between training and
 * evaluation. */
void image_to_tensor(float *out, const uint8_t *rgb, int flip);

#endif
