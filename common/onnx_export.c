/* onnx_export.c -- IResNet to ONNX with protobuf-c and the vendored schema
 * (proto/onnx.proto). The messages point into the network's own arrays, so
 * even IResNet-100 is written without copying its weights. */
#include "onnx_export.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "onnx.pb-c.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ONNX raw_data is little-endian; this writer stores the floats as they are in memory"
#endif

/* Every message, string and array of one export, freed together. */
typedef struct {
    void **blocks;
    size_t n, cap;
} Arena;

static void *arena_alloc(Arena *a, size_t size) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 256;
        a->blocks = realloc(a->blocks, a->cap * sizeof *a->blocks);
        CHECK(a->blocks != NULL, "out of memory building the ONNX graph");
    }
    void *p = calloc(1, size ? size : 1);
    CHECK(p != NULL, "out of memory building the ONNX graph");
    return a->blocks[a->n++] = p;
}

static void arena_free(Arena *a) {
    for (size_t i = 0; i < a->n; i++) free(a->blocks[i]);
    free(a->blocks);
    memset(a, 0, sizeof *a);
}

static char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *arena_printf(Arena *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    CHECK(n >= 0, "bad format %s", fmt);
    char *s = arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Growable array of message pointers (nodes or initializers). */
typedef struct {
    void **items;
    size_t n, cap;
} PtrList;

static void ptrlist_push(Arena *a, PtrList *l, void *item) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        void **items = arena_alloc(a, cap * sizeof *items);
        if (l->n) memcpy(items, l->items, l->n * sizeof *items);
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = item;
}

typedef struct {
    Arena arena;
    const IResNet *net;
    PtrList nodes, initializers;
} Graph;

/* ---- initializers and nodes ---- */

/* The PyTorch name of the parameter tensor at offset. */
static const char *param_name(const IResNet *net, size_t offset) {
    for (int t = 0; t < net->params.n_tensors; t++)
        if (net->params.tensors[t].offset == offset) return net->params.tensors[t].name;
    FATAL("no parameter tensor at offset %zu", offset);
}

/* A float32 initializer holding data (not copied: it must outlive the pack). */
static void add_initializer(Graph *g, const char *name, const float *data, const int64_t *dims, int n_dims) {
    Onnx__TensorProto *t = arena_alloc(&g->arena, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = arena_printf(&g->arena, "%s", name);
    t->n_dims = (size_t)n_dims;
    t->dims = arena_alloc(&g->arena, (size_t)n_dims * sizeof *t->dims);
    size_t count = 1;
    for (int i = 0; i < n_dims; i++) {
        t->dims[i] = dims[i];
        count *= (size_t)dims[i];
    }
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->has_raw_data = 1;
    t->raw_data.len = count * sizeof(float);
    t->raw_data.data = (uint8_t *)(uintptr_t)data;
    ptrlist_push(&g->arena, &g->initializers, t);
}

/* A node named `name` whose single output is also called `name`. */
static Onnx__NodeProto *add_node(Graph *g, const char *op, const char *name, const char *const *inputs,
                                 int n_inputs) {
    Onnx__NodeProto *node = arena_alloc(&g->arena, sizeof *node);
    onnx__node_proto__init(node);
    node->op_type = arena_printf(&g->arena, "%s", op);
    node->name = arena_printf(&g->arena, "%s", name);
    node->n_input = (size_t)n_inputs;
    node->input = arena_alloc(&g->arena, (size_t)n_inputs * sizeof *node->input);
    for (int i = 0; i < n_inputs; i++) node->input[i] = arena_printf(&g->arena, "%s", inputs[i]);
    node->n_output = 1;
    node->output = arena_alloc(&g->arena, sizeof *node->output);
    node->output[0] = node->name;
    ptrlist_push(&g->arena, &g->nodes, node);
    return node;
}

static Onnx__AttributeProto *add_attribute(Graph *g, Onnx__NodeProto *node, const char *name) {
    Onnx__AttributeProto *a = arena_alloc(&g->arena, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = arena_printf(&g->arena, "%s", name);
    Onnx__AttributeProto **list = arena_alloc(&g->arena, (node->n_attribute + 1) * sizeof *list);
    if (node->n_attribute) memcpy(list, node->attribute, node->n_attribute * sizeof *list);
    list[node->n_attribute++] = a;
    node->attribute = list;
    return a;
}

static void attribute_int(Graph *g, Onnx__NodeProto *node, const char *name, int64_t v) {
    Onnx__AttributeProto *a = add_attribute(g, node, name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
}

static void attribute_float(Graph *g, Onnx__NodeProto *node, const char *name, float v) {
    Onnx__AttributeProto *a = add_attribute(g, node, name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1;
    a->f = v;
}

static void attribute_ints(Graph *g, Onnx__NodeProto *node, const char *name, const int64_t *v, int n) {
    Onnx__AttributeProto *a = add_attribute(g, node, name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)n;
    a->ints = arena_alloc(&g->arena, (size_t)n * sizeof *a->ints);
    memcpy(a->ints, v, (size_t)n * sizeof *a->ints);
}

/* ---- layers: each returns the name of its output ---- */

static const char *emit_conv(Graph *g, const Conv *conv, const char *name, const char *input) {
    const Conv2dShape *s = &conv->shape;
    const char *weight = param_name(g->net, conv->offset);
    int64_t dims[4] = {s->OC, s->C, s->K, s->K};
    add_initializer(g, weight, conv->weight, dims, 4);
    const char *inputs[2] = {input, weight};
    Onnx__NodeProto *node = add_node(g, "Conv", name, inputs, 2);
    int64_t kernel[2] = {s->K, s->K}, strides[2] = {s->stride, s->stride};
    int64_t pads[4] = {s->pad, s->pad, s->pad, s->pad};
    attribute_ints(g, node, "kernel_shape", kernel, 2);
    attribute_ints(g, node, "strides", strides, 2);
    attribute_ints(g, node, "pads", pads, 4);
    return node->output[0];
}

static const char *emit_bn(Graph *g, const BatchNorm *bn, const char *name, const char *input) {
    char *names[4];
    const float *data[4] = {bn->gamma, bn->beta, bn->running_mean, bn->running_var};
    static const char *const suffix[4] = {"weight", "bias", "running_mean", "running_var"};
    int64_t dims[1] = {bn->C};
    for (int i = 0; i < 4; i++) {
        names[i] = arena_printf(&g->arena, "%s.%s", name, suffix[i]);
        add_initializer(g, names[i], data[i], dims, 1);
    }
    const char *inputs[5] = {input, names[0], names[1], names[2], names[3]};
    Onnx__NodeProto *node = add_node(g, "BatchNormalization", name, inputs, 5);
    attribute_float(g, node, "epsilon", g->net->bn_eps);
    return node->output[0];
}

static const char *emit_prelu(Graph *g, const PRelu *pr, const char *name, const char *input) {
    const char *slope = param_name(g->net, pr->offset);
    int64_t dims[3] = {pr->C, 1, 1};
    add_initializer(g, slope, pr->alpha, dims, 3);
    const char *inputs[2] = {input, slope};
    return add_node(g, "PRelu", name, inputs, 2)->output[0];
}

static const char *emit_block(Graph *g, const IBasicBlock *blk, const char *prefix, const char *input) {
    Arena *a = &g->arena;
    const char *x = emit_bn(g, &blk->bn1, arena_printf(a, "%s.bn1", prefix), input);
    x = emit_conv(g, &blk->conv1, arena_printf(a, "%s.conv1", prefix), x);
    x = emit_bn(g, &blk->bn2, arena_printf(a, "%s.bn2", prefix), x);
    x = emit_prelu(g, &blk->prelu, arena_printf(a, "%s.prelu", prefix), x);
    x = emit_conv(g, &blk->conv2, arena_printf(a, "%s.conv2", prefix), x);
    x = emit_bn(g, &blk->bn3, arena_printf(a, "%s.bn3", prefix), x);
    const char *identity = input;
    if (blk->has_shortcut) {
        identity = emit_conv(g, &blk->short_conv, arena_printf(a, "%s.downsample.0", prefix), input);
        identity = emit_bn(g, &blk->short_bn, arena_printf(a, "%s.downsample.1", prefix), identity);
    }
    const char *inputs[2] = {x, identity};
    return add_node(g, "Add", prefix, inputs, 2)->output[0];
}

/* The graph's input and output: float (N, dims...) with N symbolic. */
static Onnx__ValueInfoProto *value_info(Arena *a, const char *name, const int64_t *dims, int n_dims) {
    Onnx__TensorShapeProto *shape = arena_alloc(a, sizeof *shape);
    onnx__tensor_shape_proto__init(shape);
    shape->n_dim = (size_t)n_dims + 1;
    shape->dim = arena_alloc(a, shape->n_dim * sizeof *shape->dim);
    for (size_t i = 0; i < shape->n_dim; i++) {
        Onnx__TensorShapeProto__Dimension *d = arena_alloc(a, sizeof *d);
        onnx__tensor_shape_proto__dimension__init(d);
        if (i == 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = arena_printf(a, "N");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i - 1];
        }
        shape->dim[i] = d;
    }
    Onnx__TypeProto__Tensor *tensor = arena_alloc(a, sizeof *tensor);
    onnx__type_proto__tensor__init(tensor);
    tensor->has_elem_type = 1;
    tensor->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tensor->shape = shape;
    Onnx__TypeProto *type = arena_alloc(a, sizeof *type);
    onnx__type_proto__init(type);
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tensor;
    Onnx__ValueInfoProto *v = arena_alloc(a, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = arena_printf(a, "%s", name);
    v->type = type;
    return v;
}

/* Fills model with the whole network; every part lives in g->arena. */
static void build_model(Graph *g, Onnx__ModelProto *model) {
    const IResNet *net = g->net;
    Arena *a = &g->arena;
    const char *x = emit_conv(g, &net->stem_conv, "conv1", "data");
    x = emit_bn(g, &net->stem_bn, "bn1", x);
    x = emit_prelu(g, &net->stem_prelu, "prelu", x);
    int stage_blocks[4];
    CHECK(iresnet_stage_blocks(net->depth, stage_blocks) == 0, "depth %d", net->depth);
    for (int s = 0, b = 0; s < 4; s++)
        for (int i = 0; i < stage_blocks[s]; i++, b++)
            x = emit_block(g, &net->blocks[b], arena_printf(a, "layer%d.%d", s + 1, i), x);
    x = emit_bn(g, &net->head_bn, "bn2", x);
    Onnx__NodeProto *flatten = add_node(g, "Flatten", "flatten", &x, 1);
    attribute_int(g, flatten, "axis", 1);
    const char *fc_weight = param_name(net, net->fc_weight_offset), *fc_bias = param_name(net, net->fc_bias_offset);
    int64_t weight_dims[2] = {net->embedding_size, net->fc_in}, bias_dims[1] = {net->embedding_size};
    add_initializer(g, fc_weight, net->fc_weight, weight_dims, 2);
    add_initializer(g, fc_bias, net->fc_bias, bias_dims, 1);
    const char *fc_inputs[3] = {flatten->output[0], fc_weight, fc_bias};
    Onnx__NodeProto *fc = add_node(g, "Gemm", "fc", fc_inputs, 3);
    attribute_int(g, fc, "transB", 1);
    const char *features = emit_bn(g, &net->features, "features", fc->output[0]);
    Onnx__NodeProto *last = g->nodes.items[g->nodes.n - 1];
    CHECK(strcmp(last->output[0], features) == 0, "the features BN must be the last node");
    last->output[0] = arena_printf(a, "embedding");
    CHECK((int)g->nodes.n == onnx_export_node_count(net), "%zu nodes, expected %d", g->nodes.n,
          onnx_export_node_count(net));

    Onnx__GraphProto *graph = arena_alloc(a, sizeof *graph);
    onnx__graph_proto__init(graph);
    graph->name = arena_printf(a, "iresnet%d", net->depth);
    graph->doc_string = arena_printf(a,
        "IResNet-%d width %d, embedding %d. Input data: (N, 3, 112, 112) float, RGB planes, "
        "(pixel - 127.5) / 128. Output embedding: (N, %d), not L2-normalised.",
        net->depth, net->width, net->embedding_size, net->embedding_size);
    graph->n_node = g->nodes.n;
    graph->node = (Onnx__NodeProto **)g->nodes.items;
    graph->n_initializer = g->initializers.n;
    graph->initializer = (Onnx__TensorProto **)g->initializers.items;
    int64_t input_dims[3] = {3, IRESNET_INPUT, IRESNET_INPUT}, output_dims[1] = {net->embedding_size};
    graph->n_input = 1;
    graph->input = arena_alloc(a, sizeof *graph->input);
    graph->input[0] = value_info(a, "data", input_dims, 3);
    graph->n_output = 1;
    graph->output = arena_alloc(a, sizeof *graph->output);
    graph->output[0] = value_info(a, "embedding", output_dims, 1);

    Onnx__OperatorSetIdProto *opset = arena_alloc(a, sizeof *opset);
    onnx__operator_set_id_proto__init(opset);
    opset->domain = arena_printf(a, "%s", "");
    opset->has_version = 1;
    opset->version = ONNX_EXPORT_OPSET;
    onnx__model_proto__init(model);
    model->has_ir_version = 1;
    model->ir_version = ONNX_EXPORT_IR_VERSION;
    model->n_opset_import = 1;
    model->opset_import = arena_alloc(a, sizeof *model->opset_import);
    model->opset_import[0] = opset;
    model->producer_name = arena_printf(a, "arcface-ps");
    model->producer_version = arena_printf(a, "1");
    model->graph = graph;
}

int onnx_export_node_count(const IResNet *net) {
    int n = 3 + 4;
    for (int b = 0; b < net->n_blocks; b++) n += net->blocks[b].has_shortcut ? 9 : 7;
    return n;
}

/* ---- writing ---- */

/* A protobuf-c output buffer that appends to a file. */
typedef struct {
    ProtobufCBuffer base;
    FILE *f;
    size_t written;
    int failed;
} FileSink;

static void file_sink_append(ProtobufCBuffer *buffer, size_t len, const uint8_t *data) {
    FileSink *sink = (FileSink *)buffer;
    if (sink->failed) return;
    if (fwrite(data, 1, len, sink->f) != len) sink->failed = 1;
    else sink->written += len;
}

int onnx_export_iresnet(const IResNet *net, const char *path, char *err, size_t errlen) {
    Graph g = {.net = net};
    Onnx__ModelProto model;
    build_model(&g, &model);
    size_t expected = onnx__model_proto__get_packed_size(&model);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rc = -1;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    FileSink sink = {.base = {.append = file_sink_append}, .f = f};
    size_t packed = onnx__model_proto__pack_to_buffer(&model, &sink.base);
    int write_errno = errno;
    if (fclose(f) != 0 && !sink.failed) {
        sink.failed = 1;
        write_errno = errno;
    }
    if (sink.failed) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(write_errno));
        remove(tmp);
        goto done;
    }
    CHECK(packed == expected && sink.written == expected, "ONNX model packed to %zu bytes, %zu written, "
          "%zu expected", packed, sink.written, expected);
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        remove(tmp);
        goto done;
    }
    rc = 0;
done:
    arena_free(&g.arena);
    return rc;
}
