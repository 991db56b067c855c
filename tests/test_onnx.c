/* test_onnx.c -- the ONNX export of an IResNet, read back with protobuf-c.
 *
 * 1. An IResNet-18 (narrow) exports to a model that unpacks, with IR version
 *    7 and opset 13, the documented 71 nodes (21 Conv, 31 BatchNormalization,
 *    9 PRelu, 8 Add, Flatten, Gemm), nodes in topological order (every input
 *    is the graph input, an initializer or an earlier output), every
 *    initializer used, every parameter and running statistic exported once
 *    and byte for byte, PRelu slopes (C, 1, 1), input "data" (N, 3, 112, 112)
 *    and output "embedding" (N, E) with N symbolic.
 * 2. Failing to write names the file and leaves nothing behind.
 * That the model computes what the C network computes is checked by
 * tests/integration_onnx.sh with onnx's checker and OpenCV's dnn.
 *
 * `test_onnx --write-backbone PATH DEPTH WIDTH EMBEDDING` writes a
 * randomised backbone.bin for that script and does nothing else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backbone_file.h"
#include "check.h"
#include "onnx.pb-c.h"
#include "onnx_export.h"
#include "random_backbone.h"
#include "testutil.h"

static char g_dir[64];

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    CHECK(buf != NULL, "out of memory");
    *len = fread(buf, 1, (size_t)n, f);
    fclose(f);
    return buf;
}

static int count_op(const Onnx__GraphProto *g, const char *op) {
    int n = 0;
    for (size_t i = 0; i < g->n_node; i++) n += strcmp(g->node[i]->op_type, op) == 0;
    return n;
}

static const Onnx__TensorProto *find_initializer(const Onnx__GraphProto *g, const char *name) {
    for (size_t i = 0; i < g->n_initializer; i++)
        if (strcmp(g->initializer[i]->name, name) == 0) return g->initializer[i];
    return NULL;
}

/* Checks a value info is float (N, dims...) with N symbolic. */
static void check_value_info(const Onnx__ValueInfoProto *v, const char *name, const int64_t *dims, int n_dims) {
    EXPECT(strcmp(v->name, name) == 0, "value %s, expected %s", v->name, name);
    const Onnx__TypeProto *t = v->type;
    EXPECT(t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, "%s is a tensor", name);
    if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE) return;
    EXPECT(t->tensor_type->elem_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, "%s is float", name);
    const Onnx__TensorShapeProto *s = t->tensor_type->shape;
    EXPECT(s && s->n_dim == (size_t)n_dims + 1, "%s has %d dims", name, n_dims + 1);
    if (!s || s->n_dim != (size_t)n_dims + 1) return;
    EXPECT(s->dim[0]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM, "%s: N is symbolic", name);
    for (int i = 0; i < n_dims; i++)
        EXPECT(s->dim[i + 1]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
                   s->dim[i + 1]->dim_value == dims[i],
               "%s dim %d", name, i + 1);
}

/* Every input defined before use, every initializer used at least once. */
static void check_topology(const Onnx__GraphProto *g) {
    size_t cap = g->n_initializer + g->n_node + 1, n_defined = 0;
    const char **defined = malloc(cap * sizeof *defined);
    int *used = calloc(g->n_initializer, sizeof *used);
    CHECK(defined && used, "out of memory");
    defined[n_defined++] = g->input[0]->name;
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *node = g->node[i];
        for (size_t k = 0; k < node->n_input; k++) {
            int found = 0;
            for (size_t j = 0; j < g->n_initializer && !found; j++)
                if (strcmp(g->initializer[j]->name, node->input[k]) == 0) found = ++used[j];
            for (size_t j = 0; j < n_defined && !found; j++) found = strcmp(defined[j], node->input[k]) == 0;
            EXPECT(found, "node %s: input %s is not defined before it", node->name, node->input[k]);
        }
        EXPECT(node->n_output == 1, "node %s has one output", node->name);
        defined[n_defined++] = node->output[0];
    }
    for (size_t j = 0; j < g->n_initializer; j++)
        EXPECT(used[j] == 1, "initializer %s used %d times", g->initializer[j]->name, used[j]);
    EXPECT(strcmp(g->node[g->n_node - 1]->output[0], "embedding") == 0, "the last node produces the output");
    free(defined);
    free(used);
}

static void test_r18_structure(void) {
    const int E = 16;
    IResNet *net = test_random_iresnet(18, 4, E, 2, 5);
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/r18.onnx", g_dir);
    EXPECT(onnx_export_iresnet(net, path, err, sizeof err) == 0, "export: %s", err);
    size_t len = 0;
    uint8_t *buf = read_file(path, &len);
    EXPECT(buf != NULL, "%s was written", path);
    Onnx__ModelProto *m = buf ? onnx__model_proto__unpack(NULL, len, buf) : NULL;
    EXPECT(m != NULL, "the model unpacks (%zu bytes)", len);
    if (!m) {
        free(buf);
        iresnet_destroy(&net);
        return;
    }
    EXPECT(m->ir_version == 7 && m->n_opset_import == 1 && m->opset_import[0]->version == 13,
           "IR %lld, opset %lld", (long long)m->ir_version, (long long)m->opset_import[0]->version);
    const Onnx__GraphProto *g = m->graph;
    EXPECT(g->n_node == 71 && onnx_export_node_count(net) == 71, "%zu nodes, counted %d", g->n_node,
           onnx_export_node_count(net));
    EXPECT(count_op(g, "Conv") == 21, "%d Conv", count_op(g, "Conv"));
    EXPECT(count_op(g, "BatchNormalization") == 31, "%d BN", count_op(g, "BatchNormalization"));
    EXPECT(count_op(g, "PRelu") == 9 && count_op(g, "Add") == 8, "PRelu and Add");
    EXPECT(count_op(g, "Flatten") == 1 && count_op(g, "Gemm") == 1, "Flatten and Gemm");
    EXPECT(g->n_input == 1 && g->n_output == 1, "one input, one output");
    int64_t in_dims[3] = {3, 112, 112}, out_dims[1] = {E};
    check_value_info(g->input[0], "data", in_dims, 3);
    check_value_info(g->output[0], "embedding", out_dims, 1);
    check_topology(g);

    size_t floats = 0;
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        EXPECT(t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && t->has_raw_data, "%s: raw float", t->name);
        size_t count = 1;
        for (size_t d = 0; d < t->n_dims; d++) count *= (size_t)t->dims[d];
        EXPECT(t->raw_data.len == 4 * count, "%s: %zu bytes for %zu values", t->name, t->raw_data.len, count);
        floats += count;
    }
    EXPECT(floats == iresnet_param_count(net) + net->n_bn_buffers, "%zu floats exported, the network has %zu + %zu",
           floats, iresnet_param_count(net), net->n_bn_buffers);
    const struct {
        const char *name;
        const float *data;
        size_t count;
    } samples[] = {
        {"layer2.0.downsample.0.weight", net->blocks[2].short_conv.weight, (size_t)8 * 4},
        {"layer3.1.bn2.running_var", net->blocks[5].bn2.running_var, 16},
        {"layer4.1.prelu.weight", net->blocks[7].prelu.alpha, 32},
        {"fc.weight", net->fc_weight, (size_t)E * net->fc_in},
        {"features.running_mean", net->features.running_mean, (size_t)E},
    };
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        const Onnx__TensorProto *t = find_initializer(g, samples[i].name);
        EXPECT(t != NULL, "initializer %s exists", samples[i].name);
        if (!t) continue;
        EXPECT(t->raw_data.len == 4 * samples[i].count &&
                   memcmp(t->raw_data.data, samples[i].data, t->raw_data.len) == 0,
               "%s holds the network's values", samples[i].name);
    }
    const Onnx__TensorProto *slope = find_initializer(g, "layer1.0.prelu.weight");
    EXPECT(slope && slope->n_dims == 3 && slope->dims[0] == 4 && slope->dims[1] == 1 && slope->dims[2] == 1,
           "PRelu slope is (C, 1, 1)");
    onnx__model_proto__free_unpacked(m, NULL);
    free(buf);
    iresnet_destroy(&net);
}

static void test_write_failure(void) {
    IResNet *net = test_random_iresnet(18, 2, 8, 2, 6);
    char path[128], err[512] = "";
    snprintf(path, sizeof path, "%s/missing/model.onnx", g_dir);
    EXPECT(onnx_export_iresnet(net, path, err, sizeof err) == -1, "writing into a missing folder fails");
    EXPECT(strstr(err, "missing/model.onnx") != NULL, "the error names the file: %s", err);
    iresnet_destroy(&net);
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "--write-backbone") == 0) {
        char err[512];
        IResNet *net = test_random_iresnet(atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), 2, 11);
        int rc = backbone_save(net, argv[2], err, sizeof err);
        if (rc != 0) fprintf(stderr, "%s\n", err);
        iresnet_destroy(&net);
        return rc == 0 ? 0 : 1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/test_onnx_XXXXXX");
    CHECK(mkdtemp(g_dir), "mkdtemp");
    test_r18_structure();
    test_write_failure();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_finish("test_onnx");
}
