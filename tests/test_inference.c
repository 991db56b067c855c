/* test_inference.c -- the pieces of arcface-embed and arcface-verify.
 *
 * 1. backbone.bin: save and load give the same network (same embeddings);
 *    a truncated file, another dump kind and a missing file are errors
 *    naming the file.
 * 2. Embeddings files: the binary format round-trips exactly (paths with
 *    commas, quotes and spaces too) and its header is as documented; the CSV
 *    holds the same float32 values and quotes what needs quoting; a truncated
 *    file is rejected; an aborted writer leaves nothing.
 * 3. Image lists: a folder is listed recursively, images only, sorted by
 *    relative path; a list file skips comments and blank lines, drops '\r'
 *    and resolves relative paths against its own folder.
 * 4. face_embed: rows are unit length; with flip, an image and its mirror
 *    image get the same embedding and the embedding is the normalised sum of
 *    the two unflipped ones; a corrupt file is an error naming it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backbone_file.h"
#include "check.h"
#include "dump.h"
#include "embeddings_file.h"
#include "face_embed.h"
#include "image_list.h"
#include "random_backbone.h"
#include "testutil.h"

static char g_dir[64];

static void path_in(char *out, size_t len, const char *name) { snprintf(out, len, "%s/%s", g_dir, name); }

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, len, f) == len && fclose(f) == 0, "cannot write %s", path);
}

static void test_backbone_round_trip(void) {
    IResNet *net = test_random_iresnet(18, 2, 8, 2, 21);
    char path[128], err[1024];
    path_in(path, sizeof path, "backbone.bin");
    EXPECT(backbone_save(net, path, err, sizeof err) == 0, "save: %s", err);
    IResNet *back = backbone_load(path, 2, err, sizeof err);
    EXPECT(back != NULL, "load: %s", err);
    if (back) {
        EXPECT(back->depth == 18 && back->width == 2 && back->embedding_size == 8, "architecture");
        EXPECT(memcmp(back->params.params, net->params.params, net->params.n_params * sizeof(float)) == 0 &&
                   memcmp(back->bn_buffers, net->bn_buffers, net->n_bn_buffers * sizeof(float)) == 0,
               "same values");
        float *images = malloc(2 * FACE_TENSOR_FLOATS * sizeof(float));
        test_fill_uniform(images, 2 * FACE_TENSOR_FLOATS, -1, 1, 3);
        float a[16], b[16];
        memcpy(a, iresnet_forward(net, images, 2, 0, 0, 0), sizeof a);
        memcpy(b, iresnet_forward(back, images, 2, 0, 0, 0), sizeof b);
        EXPECT(memcmp(a, b, sizeof a) == 0, "same embeddings");
        free(images);
    }
    iresnet_destroy(&back);

    /* Truncated: the dump reader's checks name the file. */
    char cut[128];
    path_in(cut, sizeof cut, "cut.bin");
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "reopen");
    static uint8_t head[4096];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    write_bytes(cut, head, n);
    EXPECT(backbone_load(cut, 2, err, sizeof err) == NULL && strstr(err, "cut.bin"), "truncated: %s", err);

    /* A dump of another kind, and one whose values do not fit its header. */
    int64_t meta[4] = {18, 2, 8, 5};
    float values[5] = {0};
    path_in(cut, sizeof cut, "other.bin");
    CHECK(dump_write(cut, "classifier", meta, values, 5, err, sizeof err) == 0, "%s", err);
    EXPECT(backbone_load(cut, 2, err, sizeof err) == NULL && strstr(err, "other.bin"), "other kind: %s", err);
    CHECK(dump_write(cut, "backbone", meta, values, 5, err, sizeof err) == 0, "%s", err);
    EXPECT(backbone_load(cut, 2, err, sizeof err) == NULL && strstr(err, "other.bin") && strstr(err, "5 values"),
           "wrong count: %s", err);
    path_in(cut, sizeof cut, "absent.bin");
    EXPECT(backbone_load(cut, 2, err, sizeof err) == NULL && strstr(err, "absent.bin"), "missing: %s", err);
    iresnet_destroy(&net);
}

static void test_embeddings_files(void) {
    const int D = 5;
    const char *names[3] = {"a/one.jpg", "b/two, with comma.png", "c/\"quoted\" three.jpg"};
    float rows[3][5];
    test_fill_uniform(&rows[0][0], 15, -1, 1, 9);
    rows[1][2] = 1e-30f;
    rows[2][4] = -0.333333343f;
    char bin[128], csv[128], err[512];
    path_in(bin, sizeof bin, "e.bin");
    path_in(csv, sizeof csv, "e.csv");
    for (int format = 0; format < 2; format++) {
        EmbedWriter *w;
        EXPECT(embed_writer_open(&w, format ? csv : bin, format ? EMBED_FORMAT_CSV : EMBED_FORMAT_BIN, D, err,
                                 sizeof err) == 0, "open: %s", err);
        for (int i = 0; i < 3; i++) EXPECT(embed_writer_append(w, names[i], rows[i], err, sizeof err) == 0, "%s", err);
        EXPECT(embed_writer_close(&w, err, sizeof err) == 0 && w == NULL, "close: %s", err);
    }
    Embeddings e;
    EXPECT(embeddings_read(&e, bin, err, sizeof err) == 0, "read: %s", err);
    EXPECT(e.count == 3 && e.dim == D, "%lld x %d", (long long)e.count, e.dim);
    for (int i = 0; i < 3 && e.count == 3; i++) {
        EXPECT(strcmp(e.names[i], names[i]) == 0, "name %d: %s", i, e.names[i]);
        EXPECT(memcmp(e.rows + i * D, rows[i], sizeof rows[i]) == 0, "row %d", i);
    }
    embeddings_free(&e);

    /* The documented layout: header, rows at byte 32, then the names. */
    FILE *f = fopen(bin, "rb");
    static uint8_t buf[1024];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    uint32_t version, dim;
    uint64_t count, names_bytes;
    memcpy(&version, buf + 8, 4);
    memcpy(&dim, buf + 12, 4);
    memcpy(&count, buf + 16, 8);
    memcpy(&names_bytes, buf + 24, 8);
    size_t expect_names = strlen(names[0]) + strlen(names[1]) + strlen(names[2]) + 3;
    EXPECT(memcmp(buf, "AFEMBED\0", 8) == 0 && version == 1 && dim == 5 && count == 3 && names_bytes == expect_names,
           "header");
    EXPECT(n == 32 + 3 * 5 * 4 + expect_names && memcmp(buf + 32, rows, sizeof rows) == 0, "layout (%zu bytes)", n);

    /* Truncated by one byte. */
    char cut[128];
    path_in(cut, sizeof cut, "cut.emb");
    write_bytes(cut, buf, n - 1);
    EXPECT(embeddings_read(&e, cut, err, sizeof err) == -1 && strstr(err, "cut.emb"), "truncated: %s", err);

    /* CSV: header, RFC 4180 quoting, the same float32 values. */
    f = fopen(csv, "r");
    char line[1024];
    EXPECT(fgets(line, sizeof line, f) && strcmp(line, "path,e0,e1,e2,e3,e4\n") == 0, "CSV header %s", line);
    static const char *const quoted[3] = {"a/one.jpg,", "\"b/two, with comma.png\",",
                                          "\"c/\"\"quoted\"\" three.jpg\","};
    for (int i = 0; i < 3; i++) {
        EXPECT(fgets(line, sizeof line, f) != NULL, "line %d", i);
        EXPECT(strncmp(line, quoted[i], strlen(quoted[i])) == 0, "path field %d: %s", i, line);
        char *p = line + strlen(quoted[i]);
        for (int k = 0; k < D; k++) {
            float v = strtof(p, &p);
            EXPECT(v == rows[i][k], "CSV value %d,%d: %.9g vs %.9g", i, k, (double)v, (double)rows[i][k]);
            p++;
        }
    }
    fclose(f);

    /* An aborted writer leaves neither the file nor its temporary. */
    char gone[128], tmp[160];
    path_in(gone, sizeof gone, "aborted.bin");
    snprintf(tmp, sizeof tmp, "%s.tmp", gone);
    EmbedWriter *w;
    EXPECT(embed_writer_open(&w, gone, EMBED_FORMAT_BIN, D, err, sizeof err) == 0, "%s", err);
    embed_writer_append(w, names[0], rows[0], err, sizeof err);
    embed_writer_abort(&w);
    EXPECT(w == NULL && access(gone, F_OK) != 0 && access(tmp, F_OK) != 0, "abort removes the output");
}

static void touch(const char *rel) {
    char path[256];
    path_in(path, sizeof path, rel);
    write_bytes(path, "x", 1);
}

static void test_image_lists(void) {
    char dir[128], err[512];
    static const char *const dirs[] = {"tree", "tree/b", "tree/a", "tree/a/sub", "tree/.hidden", "tree/empty"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        path_in(dir, sizeof dir, dirs[i]);
        CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    }
    touch("tree/b/2.jpg");
    touch("tree/a/1.png");
    touch("tree/a/sub/0.JPG");
    touch("tree/.hidden/x.jpg");
    touch("tree/a/.dot.jpg");
    touch("tree/notes.txt");
    touch("tree/top.pgm");
    path_in(dir, sizeof dir, "tree/");
    ImageList l;
    EXPECT(image_list_open(&l, dir, err, sizeof err) == 0, "folder: %s", err);
    static const char *const expected[] = {"a/1.png", "a/sub/0.JPG", "b/2.jpg", "top.pgm"};
    EXPECT(l.n == 4, "%lld images", (long long)l.n);
    for (int64_t i = 0; i < l.n && l.n == 4; i++) {
        char want[256];
        snprintf(want, sizeof want, "%s/tree/%s", g_dir, expected[i]);
        EXPECT(strcmp(l.names[i], expected[i]) == 0 && strcmp(l.paths[i], want) == 0, "entry %lld: %s %s",
               (long long)i, l.names[i], l.paths[i]);
    }
    image_list_free(&l);
    path_in(dir, sizeof dir, "tree/empty");
    EXPECT(image_list_open(&l, dir, err, sizeof err) == -1 && strstr(err, "tree/empty") && l.n == 0,
           "an empty folder: %s", err);

    char list[128];
    path_in(list, sizeof list, "tree/list.txt");
    const char *text = "# comment\n\nb/2.jpg\r\n/abs/path.png\nname with space.jpg";
    write_bytes(list, text, strlen(text));
    EXPECT(image_list_open(&l, list, err, sizeof err) == 0, "list: %s", err);
    EXPECT(l.n == 3, "%lld listed", (long long)l.n);
    if (l.n == 3) {
        char want[256];
        snprintf(want, sizeof want, "%s/tree/b/2.jpg", g_dir);
        EXPECT(strcmp(l.names[0], "b/2.jpg") == 0 && strcmp(l.paths[0], want) == 0, "relative: %s", l.paths[0]);
        EXPECT(strcmp(l.paths[1], "/abs/path.png") == 0, "absolute: %s", l.paths[1]);
        EXPECT(strcmp(l.names[2], "name with space.jpg") == 0, "no final newline: %s", l.names[2]);
    }
    image_list_free(&l);
    path_in(list, sizeof list, "none.txt");
    EXPECT(image_list_open(&l, list, err, sizeof err) == -1 && strstr(err, "none.txt"), "missing list: %s", err);
}

/* A 112x112 colour PPM of noise and its mirror image. */
static void write_ppm_pair(const char *path, const char *mirror_path) {
    const int S = 112;
    static uint8_t rgb[112 * 112 * 3], mirrored[112 * 112 * 3];
    float noise[112 * 112 * 3];
    test_fill_uniform(noise, sizeof noise / sizeof noise[0], 0, 256, 17);
    for (int i = 0; i < S * S * 3; i++) rgb[i] = (uint8_t)noise[i];
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) memcpy(&mirrored[(y * S + x) * 3], &rgb[(y * S + S - 1 - x) * 3], 3);
    const uint8_t *images[2] = {rgb, mirrored};
    const char *paths[2] = {path, mirror_path};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(paths[i], "wb");
        CHECK(f != NULL, "create %s", paths[i]);
        fprintf(f, "P6\n112 112\n255\n");
        CHECK(fwrite(images[i], 1, sizeof rgb, f) == sizeof rgb && fclose(f) == 0, "write %s", paths[i]);
    }
}

static void test_face_embed(void) {
    const int D = 8;
    IResNet *net = test_random_iresnet(18, 2, D, 4, 31);
    char a[128], b[128], bad[128], err[1024];
    path_in(a, sizeof a, "face.ppm");
    path_in(b, sizeof b, "mirror.ppm");
    write_ppm_pair(a, b);
    float *rows = calloc(4 * FACE_TENSOR_FLOATS, sizeof(float));
    uint8_t rgb[112 * 112 * 3];
    DatasetScratch s;
    dataset_scratch_init(&s);
    float plain[2][8], flipped[2][8];
    for (int i = 0; i < 2; i++) {
        EXPECT(face_load_file(i ? b : a, 1.0f, &s, rgb, err, sizeof err) == 0, "load: %s", err);
        face_tensor(rows + (size_t)2 * i * FACE_TENSOR_FLOATS, rgb, 1);
    }
    face_embed(net, rows, 2, 1, 1, &flipped[0][0]);
    /* The same two images unflipped (rows 0 and 2 hold them). */
    memcpy(rows + FACE_TENSOR_FLOATS, rows + 2 * FACE_TENSOR_FLOATS, FACE_TENSOR_FLOATS * sizeof(float));
    face_embed(net, rows, 2, 0, 0, &plain[0][0]);
    double norm = 0, sum_norm = 0, mirror_diff = 0, sum_diff = 0;
    for (int k = 0; k < D; k++) {
        norm += (double)flipped[0][k] * flipped[0][k];
        sum_norm += ((double)plain[0][k] + plain[1][k]) * ((double)plain[0][k] + plain[1][k]);
        mirror_diff = fmax(mirror_diff, fabs(flipped[0][k] - flipped[1][k]));
    }
    for (int k = 0; k < D; k++)
        sum_diff = fmax(sum_diff, fabs(flipped[0][k] - (plain[0][k] + plain[1][k]) / sqrt(sum_norm)));
    EXPECT(fabs(norm - 1) < 1e-6, "unit length: %g", norm);
    EXPECT(mirror_diff < 1e-6, "image and mirror image agree with flip: %g", mirror_diff);
    EXPECT(sum_diff < 1e-6, "flip = normalised sum of both: %g", sum_diff);

    path_in(bad, sizeof bad, "bad.jpg");
    write_bytes(bad, "\xff\xd8\xff\xe0 not really", 15);
    EXPECT(face_load_file(bad, 1.0f, &s, rgb, err, sizeof err) == -1 && strstr(err, "bad.jpg"), "corrupt: %s", err);
    dataset_scratch_free(&s);
    free(rows);
    iresnet_destroy(&net);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/test_inference_XXXXXX");
    CHECK(mkdtemp(g_dir), "mkdtemp");
    test_backbone_round_trip();
    test_embeddings_files();
    test_image_lists();
    test_face_embed();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_finish("test_inference");
}
