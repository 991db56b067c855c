/* embeddings_file.h -- face embeddings written by arcface-embed: one row of D
 * floats per image, with the image's path.
 *
 * Binary format (EMBED_FORMAT_BIN), little-endian:
 *
 *   offset 0   char[8]   magic "AFEMBED\0"
 *          8   uint32    version (1)
 *         12   uint32    dim D
 *         16   uint64    count N
 *         24   uint64    names_bytes
 *         32   float32   N x D rows, row i the embedding of image i
 *   32 + 4ND   char      the N paths, each ended by a NUL byte (names_bytes
 *                        in all), in row order
 *
 * Reading it with numpy takes four lines: docs/inference.md.
 *
 * CSV format (EMBED_FORMAT_CSV): a header line "path,e0,...,e{D-1}", then
 * one line per image, path (quoted as RFC 4180 when it holds a comma, a quote
 * or a line break) and D values printed with 9 significant digits, which
 * read back as exactly the float32 the binary format stores.
 *
 * Both are written to "<path>.tmp" and renamed by embeddings_close, so an
 * interrupted run never leaves a plausible-looking partial file. */
#ifndef ARCFACE_EMBEDDINGS_FILE_H
#define ARCFACE_EMBEDDINGS_FILE_H

#include <stddef.h>
#include <stdint.h>

#define EMBED_MAGIC "AFEMBED"
#define EMBED_VERSION 1
#define EMBED_HEADER_BYTES 32

typedef enum { EMBED_FORMAT_BIN, EMBED_FORMAT_CSV } EmbedFormat;

typedef struct EmbedWriter EmbedWriter;

/* Starts writing rows of dim floats to path (through path.tmp). Returns 0, or
 * -1 with err naming the file. */
int embed_writer_open(EmbedWriter **out, const char *path, EmbedFormat format, int dim, char *err,
                      size_t errlen);

/* Appends one row (dim floats) and the name (a path) it belongs to. Returns
 * 0, or -1 with err (a write error; the writer should then be aborted). */
int embed_writer_append(EmbedWriter *w, const char *name, const float *row, char *err, size_t errlen);

/* Finishes the file and renames it into place; *w is freed and set to NULL
 * either way. Returns 0, or -1 with err (nothing is left at the path then). */
int embed_writer_close(EmbedWriter **w, char *err, size_t errlen);

/* Drops the unfinished file; *w is freed and set to NULL. Accepts NULL. */
void embed_writer_abort(EmbedWriter **w);

/* A binary embeddings file read back whole. */
typedef struct {
    int64_t count;
    int dim;
    float *rows;   /* (count, dim) */
    char **names;  /* count pointers into one block */
    char *name_block;
} Embeddings;

/* Reads a binary file written by EmbedWriter. Returns 0, or -1 with err naming
 * the file and what is wrong (magic, version, truncated, sizes that do not add
 * up, a name list of the wrong length). */
int embeddings_read(Embeddings *e, const char *path, char *err, size_t errlen);
void embeddings_free(Embeddings *e);

#endif
