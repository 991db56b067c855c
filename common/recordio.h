/* recordio.h -- insightface / MXNet RecordIO: train.rec + train.idx + property,
 * read and written byte-compatibly with dmlc-core and mxnet.recordio.
 *
 * Framing (dmlc-core recordio): each record on disk is
 *     uint32 magic 0xCED7230A | uint32 lrec = cflag << 29 | length | data | zero pad to 4
 * all little-endian. A payload that holds the magic word at a 4-byte-aligned
 * offset is cut there into parts (cflag 1 first, 2 middle, 3 last; 0 means a
 * whole record) and the magic word itself is not stored: the reader puts it
 * back between parts. So the magic only ever appears in a file at the head of a
 * record, which lets readers resynchronise.
 *
 * Record content (mxnet.recordio.pack, struct 'IfQQ'): a 24-byte IRHeader
 * {uint32 flag, float label, uint64 id, uint64 id2}; when flag > 0, `flag`
 * float32 labels follow (and the header's label is 0), then the payload.
 *
 * The .idx file has one "key\toffset\n" line per record (offset of the
 * record's first magic word). insightface training sets (MS1MV2, MS1MV3,
 * Glint360K): record 0 has flag >= 2 and labels [a, b): images are keys
 * 1 .. a-1, each labelled by its header label (flag 0) or labels[0] (flag > 0);
 * keys a .. b-1 are identity records (labels [first image key, end key)).
 * When record 0 has flag 0 (mxnet im2rec output), every key of the .idx is an
 * image, in .idx line order. `property` beside the .rec holds
 * "num_classes,112,112" on its first line.
 *
 * Little-endian hosts only (checked at compile time). Every error message names
 * the file and the byte offset or line it concerns. */
#ifndef ARCFACE_RECORDIO_H
#define ARCFACE_RECORDIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define REC_MAGIC 0xCED7230Au
/* A record (IRHeader + labels + payload) must be shorter than this, as in dmlc. */
#define REC_MAX_RECORD ((size_t)1 << 29)
#define REC_HEADER_SIZE 24

typedef struct {
    uint32_t flag; /* number of float labels after the header (0: use label) */
    float label;
    uint64_t id, id2;
} IRHeader;

/* ---- framing ---------------------------------------------------------- */

/* Appends one record (len < REC_MAX_RECORD bytes of data) to f at its current
 * position, split into parts exactly as dmlc::RecordIOWriter does, and padded
 * to 4 bytes. The caller keeps f 4-byte aligned (it is, if only records are
 * written to it). Returns 0, or -1 with a reason in err (too long, write error);
 * after a write error the file content is undefined. */
int rec_write_record(FILE *f, const void *data, size_t len, char *err, size_t errlen);

/* Number of bytes rec_write_record writes for this data (framing, splits and
 * padding included). Can't fail. */
uint64_t rec_framed_size(const void *data, size_t len);

/* Reads the record whose first part starts at byte `offset` of the open file
 * fd (of size file_size; `name` is used in messages), re-joining multi-part
 * records, into *buf (realloc'ed and *cap updated as needed; *buf may start
 * NULL with *cap 0). On success *len is the record's length and, when
 * next_offset is not NULL, *next_offset the offset just past its last part.
 * Uses pread only: any number of threads may call it on one fd with
 * different buffers. Returns 0, or -1 with "name: record at offset X: ..." in
 * err (bad magic, truncated, broken part sequence, I/O error); *buf and *cap
 * stay valid (to be freed by the caller) either way. */
int rec_read_record_at(int fd, const char *name, uint64_t file_size, uint64_t offset, uint8_t **buf,
                       size_t *cap, size_t *len, uint64_t *next_offset, char *err, size_t errlen);

/* Called by rec_scan for each record in file order; data is valid only during
 * the call. Returns 0 to go on, 1 to stop the scan early (rec_scan then returns
 * 0), -1 to fail it (with a reason in err). */
typedef int (*RecScanFn)(void *ctx, uint64_t offset, const uint8_t *data, size_t len, char *err,
                         size_t errlen);

/* Reads every record of rec_path front to back through a large buffered
 * stream (no .idx needed) and calls fn on each. An empty file has no records.
 * Returns 0, or -1 with a reason naming the file and offset (or fn's reason). */
int rec_scan(const char *rec_path, RecScanFn fn, void *ctx, char *err, size_t errlen);

/* ---- record content ----------------------------------------------------- */

/* Splits one record (as returned by the readers) into its IRHeader, the
 * h->flag float labels (*labels NULL when flag is 0; they point into rec, so
 * they are aligned when rec is 4-byte aligned) and the payload after them
 * (*payload points into rec). labels, payload and payload_len may be NULL when
 * not wanted. Strict: len >= 24 and 24 + 4 * flag <= len. Returns 0, or -1
 * with a reason (without file name) in err. */
int rec_parse(const uint8_t *rec, size_t len, IRHeader *h, const float **labels,
              const uint8_t **payload, size_t *payload_len, char *err, size_t errlen);

/* Writes mxnet.recordio.pack(h, payload) into out (which must hold
 * rec_packed_size(h, payload_len) bytes): header, h->flag labels, payload.
 * Can't fail. */
void rec_pack(uint8_t *out, const IRHeader *h, const float *labels, const void *payload,
              size_t payload_len);
size_t rec_packed_size(const IRHeader *h, size_t payload_len);

/* ---- indexed reader (train.rec + train.idx + property) ------------------ */

typedef struct RecReader RecReader;

/* Opens rec_path with its index (idx_path, or NULL for rec_path with ".rec"
 * replaced by ".idx", or ".idx" appended) and the optional `property` file in
 * the same directory. Reads the whole .idx strictly (every line
 * "key<TAB>offset" of two unsigned integers, unique keys, offsets inside the
 * .rec) and record 0 to learn the layout (see the top of this file); checks
 * that every image key is in the index. Image labels are read with the
 * images, not at open. Returns 0 with *out set, or -1 with *out NULL and a
 * reason naming the file and line/offset. Close with rec_close. */
int rec_open(RecReader **out, const char *rec_path, const char *idx_path, char *err, size_t errlen);

/* Frees the reader and sets *r = NULL; accepts NULL and *r == NULL. */
void rec_close(RecReader **r);

size_t rec_num_images(const RecReader *r);
/* .idx key of image i (0 <= i < rec_num_images). */
uint64_t rec_image_key(const RecReader *r, size_t i);
/* Number of classes: from `property` when present, else from record 0's
 * identity range, else -1. */
int64_t rec_num_classes(const RecReader *r);
/* 1 with [*first, *end) the identity-record keys when record 0 is an
 * insightface header, 0 otherwise (then *first, *end are untouched). */
int rec_identity_range(const RecReader *r, uint64_t *first, uint64_t *end);
/* The paths in use, for messages. */
const char *rec_reader_path(const RecReader *r);
const char *rec_reader_idx_path(const RecReader *r);

/* Reads the raw record of .idx key `key` into *buf (grown as needed, see
 * rec_read_record_at) and sets *len. Thread-safe for concurrent callers with
 * different buffers. Returns 0, or -1 with a reason naming the file, key and
 * offset (unknown key, bad framing). */
int rec_read_key(RecReader *r, uint64_t key, uint8_t **buf, size_t *cap, size_t *len, char *err,
                 size_t errlen);

/* Reads image i (0 <= i < rec_num_images): *jpeg / *jpeg_len are the stored
 * image bytes (pointing into *buf, valid until the buffer is reused) and
 * *label its class (header label when flag is 0, else labels[0]; it must be
 * a non-negative integer, below rec_num_classes when that is known).
 * Thread-safe for concurrent callers with different buffers. Returns 0, or -1
 * with a reason naming the file, key and offset. */
int rec_read_image(RecReader *r, size_t i, uint8_t **buf, size_t *cap, const uint8_t **jpeg,
                   size_t *jpeg_len, int64_t *label, char *err, size_t errlen);

/* ---- writer -------------------------------------------------------------- */

typedef struct RecWriter RecWriter;

/* Starts writing rec_path and its index (idx_path, or NULL for the name
 * rec_open would derive). Both are written under temporary names beside the
 * final ones and only renamed into place by a committing rec_writer_close, so
 * a failed or abandoned pack leaves no half-written set (and keeps any old
 * one). Returns 0 with *out set, or -1 with a reason naming the path. */
int rec_writer_open(RecWriter **out, const char *rec_path, const char *idx_path, char *err,
                    size_t errlen);

/* Appends mxnet.recordio.pack(h, payload) under .idx key `key`: labels holds
 * h->flag floats (may be NULL when flag is 0). Keys are written as given (the
 * caller keeps them unique). Returns 0, or -1 with a reason naming the file
 * and key; the writer should then be closed without commit. */
int rec_writer_add(RecWriter *w, uint64_t key, const IRHeader *h, const float *labels,
                   const void *payload, size_t payload_len, char *err, size_t errlen);

/* Appends an already packed record (any bytes) under key. Same contract. */
int rec_writer_add_raw(RecWriter *w, uint64_t key, const void *data, size_t len, char *err,
                       size_t errlen);

/* Bytes written to the .rec so far (the offset the next record gets). */
uint64_t rec_writer_offset(const RecWriter *w);

/* commit != 0: flushes, fsyncs and renames both files into place; commit == 0:
 * deletes the temporary files. Frees the writer and sets *w = NULL (accepts
 * NULL and *w == NULL). Returns 0, or -1 with a reason (then nothing was put
 * in place unless the .rec rename succeeded and the .idx one failed, which
 * the message says). */
int rec_writer_close(RecWriter **w, int commit, char *err, size_t errlen);

#endif
