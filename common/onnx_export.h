/* onnx_export.h -- an IResNet as an ONNX model, for inference elsewhere
 * (onnxruntime, OpenCV's dnn, TensorRT, insightface's model_zoo).
 *
 * The graph is the network layer for layer, as insightface's PyTorch export
 * produces it, with the parameters stored in the file (raw little-endian
 * float32 initializers, named as PyTorch names them: "layer1.0.conv1.weight",
 * "bn1.running_mean", ...):
 *
 *   input  "data"       float (N, 3, 112, 112), N dynamic; RGB planes,
 *                       (pixel - 127.5) / 128 -- the training preprocessing
 *   stem   Conv BatchNormalization PRelu
 *   block  BatchNormalization Conv BatchNormalization PRelu Conv
 *          BatchNormalization [+ Conv BatchNormalization shortcut] Add
 *   head   BatchNormalization Flatten Gemm (fc, transB) BatchNormalization
 *          (the 1-d features BN on (N, E)); dropout is the identity at
 *          inference and has no node
 *   output "embedding"  float (N, E), NOT L2-normalised (as insightface's
 *                       exports); normalise before taking cosines
 *
 * PRelu slopes are (C, 1, 1) so they broadcast over (N, C, H, W). Opset 13,
 * IR version 7: accepted by onnx 1.12's checker and OpenCV 4.6's dnn. */
#ifndef ARCFACE_ONNX_EXPORT_H
#define ARCFACE_ONNX_EXPORT_H

#include <stddef.h>

#include "iresnet.h"

#define ONNX_EXPORT_OPSET 13
#define ONNX_EXPORT_IR_VERSION 7

/* Number of graph nodes onnx_export_iresnet writes for net (3 for the stem,
 * 7 per block plus 2 per shortcut, 4 for the head). Can't fail. */
int onnx_export_node_count(const IResNet *net);

/* Writes net (its parameters and BatchNorm running statistics, inference
 * mode) to path as an ONNX model, atomically (a temporary file renamed into
 * place). net is only read. Returns 0, or -1 with err naming the file and the
 * system error; nothing is left at path then. Allocation failure is fatal. */
int onnx_export_iresnet(const IResNet *net, const char *path, char *err, size_t errlen);

#endif
