/* reference_layers.h -- naive loop versions of the heavy layers in common/layers.h.
 *
 * Written for obviousness, not speed: every output is a direct transcription of the
 * definition, accumulated in double. The fast kernels are tested against these; the
 * contracts (shapes, backward ADDS into gradients, NULL = not needed) are those of the
 * same-named functions in layers.h. */
#ifndef ARCFACE_REFERENCE_LAYERS_H
#define ARCFACE_REFERENCE_LAYERS_H

#include "layers.h"

void conv2d_forward_reference(float *out, const float *inp, const float *weight, int N,
                              const Conv2dShape *s);
void conv2d_backward_reference(float *dinp, float *dweight, const float *dout, const float *inp,
                               const float *weight, int N, const Conv2dShape *s);

void batchnorm_forward_train_reference(float *out, float *save_mean, float *save_invstd,
                                       float *running_mean, float *running_var, const float *inp,
                                       const float *gamma, const float *beta, int N, int C, int HW,
                                       int group, float eps, float momentum);
void batchnorm_backward_reference(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                  const float *inp, const float *gamma, const float *save_mean,
                                  const float *save_invstd, int N, int C, int HW, int group);

void linear_forward_reference(float *out, const float *inp, const float *weight, const float *bias,
                              int N, int C, int OC);
void linear_backward_reference(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int N, int C, int OC);

#endif
