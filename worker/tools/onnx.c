/* onnx.c -- arcface-onnx: a trained backbone as an ONNX model.
 *
 *     arcface-onnx BACKBONE.bin OUT.onnx
 *
 * Writes the backbone a training run left (output_dir/backbone.bin) as an
 * ONNX model (opset 13) for onnxruntime, OpenCV's dnn and the like: input
 * "data" (N, 3, 112, 112) float, RGB, (pixel - 127.5) / 128; output
 * "embedding" (N, E), not L2-normalised, as insightface's exports. The graph
 * is described in common/onnx_export.h, its use in docs/inference.md. */
#include <stdio.h>
#include <string.h>

#include "backbone_file.h"
#include "log.h"
#include "onnx_export.h"

int main(int argc, char **argv) {
    log_set_role("onnx", -1);
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: arcface-onnx BACKBONE.bin OUT.onnx\n"
               "  writes the backbone as an ONNX model (opset %d): input \"data\" (N, 3, 112, 112) float,\n"
               "  RGB, (pixel - 127.5) / 128; output \"embedding\" (N, E), not L2-normalised\n",
               ONNX_EXPORT_OPSET);
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: arcface-onnx BACKBONE.bin OUT.onnx   (see --help)\n");
        return 2;
    }
    char err[1024];
    IResNet *net = backbone_load(argv[1], 1, err, sizeof err);
    if (!net) {
        log_error("%s", err);
        return 1;
    }
    int rc = onnx_export_iresnet(net, argv[2], err, sizeof err);
    if (rc != 0) {
        log_error("%s", err);
    } else {
        printf("%s: IResNet-%d width %d, embedding %d; %d nodes, opset %d; input \"data\" (N, 3, 112, 112) "
               "RGB (x - 127.5) / 128, output \"embedding\" (N, %d), not normalised\n",
               argv[2], net->depth, net->width, net->embedding_size, onnx_export_node_count(net),
               ONNX_EXPORT_OPSET, net->embedding_size);
    }
    iresnet_destroy(&net);
    return rc == 0 ? 0 : 1;
}
