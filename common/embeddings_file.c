/* embeddings_file.c -- the binary and CSV embeddings files of arcface-embed. */
#include "embeddings_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"

struct EmbedWriter {
    EmbedFormat format;
    int dim;
    FILE *f;
    char path[4096], tmp[4096];
    uint64_t count;
    char *names; /* BIN: the NUL-terminated names, written after the rows */
    size_t names_len, names_cap;
};

typedef struct {
    char magic[8];
    uint32_t version, dim;
    uint64_t count, names_bytes;
} EmbedHeader;

_Static_assert(sizeof(EmbedHeader) == EMBED_HEADER_BYTES, "the header is 32 packed bytes");

static int write_failed(EmbedWriter *w, char *err, size_t errlen) {
    snprintf(err, errlen, "cannot write %s: %s", w->tmp, strerror(errno));
    return -1;
}

int embed_writer_open(EmbedWriter **out, const char *path, EmbedFormat format, int dim, char *err,
                      size_t errlen) {
    *out = NULL;
    EmbedWriter *w = xcalloc_aligned(1, sizeof *w);
    w->format = format;
    w->dim = dim;
    if (snprintf(w->path, sizeof w->path, "%s", path) >= (int)sizeof w->path ||
        snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path) >= (int)sizeof w->tmp) {
        snprintf(err, errlen, "output path too long: %s", path);
        free(w);
        return -1;
    }
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        snprintf(err, errlen, "cannot create %s: %s", w->tmp, strerror(errno));
        free(w);
        return -1;
    }
    int ok;
    if (format == EMBED_FORMAT_BIN) {
        EmbedHeader h = {.magic = EMBED_MAGIC, .version = EMBED_VERSION, .dim = (uint32_t)dim};
        ok = fwrite(&h, sizeof h, 1, w->f) == 1; /* count and names_bytes are filled in at the end */
    } else {
        ok = fputs("path", w->f) >= 0;
        for (int k = 0; k < dim && ok; k++) ok = fprintf(w->f, ",e%d", k) > 0;
        ok = ok && fputc('\n', w->f) != EOF;
    }
    if (!ok) {
        write_failed(w, err, errlen);
        embed_writer_abort(&w);
        return -1;
    }
    *out = w;
    return 0;
}

/* name as one CSV field: quoted, with quotes doubled, when it needs to be. */
static int csv_field(FILE *f, const char *name) {
    if (!strpbrk(name, ",\"\r\n")) return fputs(name, f) >= 0;
    if (fputc('"', f) == EOF) return 0;
    for (const char *p = name; *p; p++)
        if ((*p == '"' && fputc('"', f) == EOF) || fputc(*p, f) == EOF) return 0;
    return fputc('"', f) != EOF;
}

int embed_writer_append(EmbedWriter *w, const char *name, const float *row, char *err, size_t errlen) {
    if (w->format == EMBED_FORMAT_CSV) {
        int ok = csv_field(w->f, name);
        for (int k = 0; k < w->dim && ok; k++) ok = fprintf(w->f, ",%.9g", (double)row[k]) > 0;
        if (!ok || fputc('\n', w->f) == EOF) return write_failed(w, err, errlen);
        w->count++;
        return 0;
    }
    size_t len = strlen(name) + 1;
    if (w->names_len + len > w->names_cap) {
        size_t cap = w->names_cap ? 2 * w->names_cap : 1 << 16;
        while (cap < w->names_len + len) cap *= 2;
        char *names = realloc(w->names, cap);
        CHECK(names != NULL, "out of memory for %zu bytes of image paths", cap);
        w->names = names;
        w->names_cap = cap;
    }
    memcpy(w->names + w->names_len, name, len);
    w->names_len += len;
    if (fwrite(row, sizeof(float), (size_t)w->dim, w->f) != (size_t)w->dim) return write_failed(w, err, errlen);
    w->count++;
    return 0;
}

int embed_writer_close(EmbedWriter **pw, char *err, size_t errlen) {
    EmbedWriter *w = *pw;
    int ok = 1;
    if (w->format == EMBED_FORMAT_BIN) {
        EmbedHeader h = {.magic = EMBED_MAGIC, .version = EMBED_VERSION, .dim = (uint32_t)w->dim,
                         .count = w->count, .names_bytes = w->names_len};
        ok = (w->names_len == 0 || fwrite(w->names, 1, w->names_len, w->f) == w->names_len) &&
             fseek(w->f, 0, SEEK_SET) == 0 && fwrite(&h, sizeof h, 1, w->f) == 1;
    }
    ok = ok && fflush(w->f) == 0;
    if (!ok) {
        write_failed(w, err, errlen);
        embed_writer_abort(pw);
        return -1;
    }
    int rc = fclose(w->f);
    w->f = NULL;
    if (rc != 0) {
        write_failed(w, err, errlen);
        embed_writer_abort(pw);
        return -1;
    }
    if (rename(w->tmp, w->path) != 0) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", w->tmp, w->path, strerror(errno));
        embed_writer_abort(pw);
        return -1;
    }
    free(w->names);
    free(w);
    *pw = NULL;
    return 0;
}

void embed_writer_abort(EmbedWriter **pw) {
    EmbedWriter *w = pw ? *pw : NULL;
    if (!w) return;
    if (w->f) fclose(w->f);
    remove(w->tmp);
    free(w->names);
    free(w);
    *pw = NULL;
}

int embeddings_read(Embeddings *e, const char *path, char *err, size_t errlen) {
    memset(e, 0, sizeof *e);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    EmbedHeader h;
    if (fstat(fileno(f), &st) != 0 || fread(&h, sizeof h, 1, f) != 1) {
        snprintf(err, errlen, "%s: shorter than the %d-byte header", path, EMBED_HEADER_BYTES);
        goto error;
    }
    if (memcmp(h.magic, EMBED_MAGIC, 8) != 0 || h.version != EMBED_VERSION) {
        snprintf(err, errlen, "%s: not an embeddings file of version %d (magic or version differ)", path,
                 EMBED_VERSION);
        goto error;
    }
    /* Every size is checked against the file's before it is multiplied or allocated. */
    uint64_t size = (uint64_t)st.st_size - EMBED_HEADER_BYTES;
    if (h.dim == 0 || h.count > size / 4 / h.dim || h.names_bytes != size - h.count * h.dim * 4 ||
        h.names_bytes < h.count) {
        snprintf(err, errlen, "%s: %llu rows of %u floats and %llu bytes of names do not match the file's "
                 "%lld bytes (truncated?)", path, (unsigned long long)h.count, h.dim,
                 (unsigned long long)h.names_bytes, (long long)st.st_size);
        goto error;
    }
    e->count = (int64_t)h.count;
    e->dim = (int)h.dim;
    e->rows = malloc(h.count * h.dim * sizeof(float) + 1);
    e->name_block = malloc(h.names_bytes + 1);
    e->names = malloc(h.count * sizeof *e->names + 1);
    CHECK(e->rows && e->name_block && e->names, "out of memory reading %s", path);
    if (fread(e->rows, sizeof(float) * h.dim, h.count, f) != h.count ||
        fread(e->name_block, 1, h.names_bytes, f) != h.names_bytes) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
        goto error;
    }
    int64_t n = 0;
    uint64_t at = 0;
    while (n < e->count && at < h.names_bytes) {
        char *end = memchr(e->name_block + at, '\0', h.names_bytes - at);
        if (!end) break;
        e->names[n++] = e->name_block + at;
        at = (uint64_t)(end - e->name_block) + 1;
    }
    if (n != e->count || at != h.names_bytes) {
        snprintf(err, errlen, "%s: the name list does not hold exactly %lld NUL-terminated paths", path,
                 (long long)e->count);
        goto error;
    }
    fclose(f);
    return 0;

error:
    fclose(f);
    embeddings_free(e);
    return -1;
}

void embeddings_free(Embeddings *e) {
    if (!e) return;
    free(e->rows);
    free(e->names);
    free(e->name_block);
    memset(e, 0, sizeof *e);
}
