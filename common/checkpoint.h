/* checkpoint.h -- checkpoint files (a checksummed container of named arrays)
 * and the checkpoint directories built from them; docs/checkpoint.md has the
 * byte layout and the guarantees.
 *
 * Container, little-endian: a 64-byte header (magic, format version, section
 * count, table offset, file size, CRC32C of header and table), the sections'
 * data each at a 64-byte aligned offset, then the section table (128 bytes per
 * section: name, dtype, CRC32C of the data, element count, offset, size). The
 * writer streams each section straight from the caller's array into
 * "<path>.tmp.<pid>" and writes the table and header at commit, then fsyncs and
 * renames over path: a reader sees the old file or the new one, never a mix.
 *
 * Directory: <output_dir>/checkpoint-<step, 10 digits>/ holds backbone.ckpt,
 * classifier-<p>.ckpt for each server p (its global row range and rows) and,
 * written last, COMPLETE. A directory without COMPLETE does not exist as far as
 * ckpt_dir_list is concerned. The classifier rows can be read back as any
 * global row range, whatever the number of files they were saved in.
 *
 * Every error message names the file, and where it applies the section and the
 * byte offset. Little-endian hosts only (checked at compile time). */
#ifndef ARCFACE_CHECKPOINT_H
#define ARCFACE_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#define CKPT_FORMAT_VERSION 1
#define CKPT_NAME_MAX 63          /* longest section name, in bytes */
#define CKPT_MAX_SECTIONS 65536 /* sections per file */
#define CKPT_PATH_MAX 4096

typedef enum { CKPT_F32 = 1, CKPT_U8 = 2, CKPT_I64 = 3, CKPT_U64 = 4 } CkptDtype;

/* "f32", "u8", "i64", "u64", or "dtype?" for anything else. Can't fail. */
const char *ckpt_dtype_str(CkptDtype dtype);
/* 4, 1, 8, 8, or 0 for an unknown dtype. */
size_t ckpt_dtype_size(CkptDtype dtype);

/* ---- writer -------------------------------------------------------------- */

typedef struct CkptWriter CkptWriter;

/* Creates "<path>.tmp.<pid>" (truncating a leftover of that name) for a new
 * checkpoint file at path; nothing at path is touched until commit. One writer
 * per path at a time in a process. Returns 0 with *out set, or -1 with *out
 * NULL and the temporary path and the system error in err. */
int ckpt_writer_open(CkptWriter **out, const char *path, char *err, size_t errlen);

/* Appends a section: count elements of dtype at data (may be NULL when count
 * is 0), written before the call returns, so data may change afterwards.
 * name: 1..CKPT_NAME_MAX bytes, unique within the file. Returns 0, or -1 with
 * the reason in err (bad name or dtype; a write error naming the temporary
 * path, byte offset and errno text, e.g. ENOSPC or EFBIG). After a failure the
 * writer only accepts ckpt_writer_abort (commit fails too). */
int ckpt_writer_add(CkptWriter *w, const char *name, CkptDtype dtype, const void *data,
                    uint64_t count, char *err, size_t errlen);

/* A one-element i64 section (step, epoch, row_start...). Same contract. */
int ckpt_writer_add_i64(CkptWriter *w, const char *name, int64_t value, char *err, size_t errlen);

/* Writes the table and header, fsyncs the file, renames it over path and
 * fsyncs the directory. Frees the writer and sets *w = NULL whatever happens.
 * Returns 0, or -1 with the path and errno text in err; then the temporary file
 * is removed and the file previously at path (if any) is unchanged -- except
 * when only the final directory fsync fails, which the message says: the new
 * file is then in place but may not survive a power loss. */
int ckpt_writer_commit(CkptWriter **w, char *err, size_t errlen);

/* Removes the temporary file, frees the writer and sets *w = NULL. Accepts
 * NULL and *w == NULL. Can't fail. */
void ckpt_writer_abort(CkptWriter **w);

/* ---- reader -------------------------------------------------------------- */

typedef struct CkptReader CkptReader;

/* Opens and validates a checkpoint file: magic, format version ("format
 * version N, this build reads M"), file size against the header, header CRC
 * (over the header and the section table), then every table entry (name
 * NUL-terminated and unique, known dtype, size = count x element size, offset
 * 64-byte aligned, data inside the data area, no two sections overlapping).
 * Section data is not read here: its CRC is checked by the reads. Returns 0
 * with *out set, or -1 with *out NULL and a reason naming the file and byte
 * offset (and section) in err. A reader is used by one thread at a time. */
int ckpt_open(CkptReader **out, const char *path, char *err, size_t errlen);

/* Closes the file, frees the reader and sets *r = NULL; accepts NULL and
 * *r == NULL. */
void ckpt_close(CkptReader **r);

const char *ckpt_path(const CkptReader *r);
int ckpt_num_sections(const CkptReader *r);
/* Name of section i (0 <= i < ckpt_num_sections), in file order. */
const char *ckpt_section_name(const CkptReader *r, int i);
/* Element count of section `name`, or -1 when the file has no such section. */
int64_t ckpt_section_count(const CkptReader *r, const char *name);
/* Dtype of section `name`, or 0 when the file has no such section. */
CkptDtype ckpt_section_dtype(const CkptReader *r, const char *name);

/* Reads the whole section `name` into dst, which holds exactly count elements
 * of dtype: both must match the file. Verifies the section CRC over the bytes
 * read. Returns 0, or -1 with file, section and byte offset in err (missing
 * section, dtype or count mismatch, I/O error, truncated, CRC mismatch); dst's
 * content is then undefined. */
int ckpt_read(CkptReader *r, const char *name, CkptDtype dtype, void *dst, uint64_t count,
              char *err, size_t errlen);

/* Reads elements [first, first + count) of section `name` (of dtype, any
 * dtype) into dst. A section's CRC covers all of it, so the first range read
 * of a section streams the whole section once (4 MiB at a time, the requested
 * range straight into dst) and checks its CRC; later range reads of that
 * section through this reader only read their range. Reading the whole
 * section costs one pass either way. Same failures as ckpt_read, plus a range
 * outside the section. */
int ckpt_read_range(CkptReader *r, const char *name, CkptDtype dtype, uint64_t first,
                    uint64_t count, void *dst, char *err, size_t errlen);

/* A one-element i64 section into *value. Same contract as ckpt_read. */
int ckpt_read_i64(CkptReader *r, const char *name, int64_t *value, char *err, size_t errlen);

/* Checks the CRC of every section not yet verified (one pass over the file).
 * Returns 0, or -1 naming the first bad section. */
int ckpt_verify(CkptReader *r, char *err, size_t errlen);

/* ---- checkpoint directories ---------------------------------------------- */

#define CKPT_DIR_PREFIX "checkpoint-"
#define CKPT_BACKBONE_FILE "backbone.ckpt"
#define CKPT_COMPLETE_FILE "COMPLETE"

/* Section names of backbone.ckpt (the trainer may add more). */
#define CKPT_SEC_CONFIG "config"                       /* u8: the configuration text */
#define CKPT_SEC_STEP "step"                           /* i64[1]: steps completed */
#define CKPT_SEC_EPOCH "epoch"                         /* i64[1] */
#define CKPT_SEC_DATA_POSITION "data_position"         /* i64: position in the epoch's order */
#define CKPT_SEC_RNG_STATE "rng_state"                 /* u64: RNG state words */
#define CKPT_SEC_BACKBONE_PARAMS "backbone.params"     /* f32 */
#define CKPT_SEC_BACKBONE_MOMENTUM "backbone.momentum" /* f32 */
#define CKPT_SEC_BN_BUFFERS "backbone.bn_buffers"      /* f32: BN running means, variances */

/* Section names of classifier-<p>.ckpt. */
#define CKPT_SEC_ROW_START "row_start" /* i64[1]: first global row (class id) */
#define CKPT_SEC_ROW_COUNT "row_count" /* i64[1]: rows in this file (may be 0) */
#define CKPT_SEC_DIM "dim"             /* i64[1]: floats per row */
#define CKPT_SEC_WEIGHT "weight"       /* f32[row_count * dim] */
#define CKPT_SEC_MOMENTUM "momentum"   /* f32[row_count * dim] */

typedef struct {
    int64_t step;
    int classifier_files; /* from COMPLETE */
    char path[CKPT_PATH_MAX]; /* <output_dir>/checkpoint-<step> */
} CkptDirEntry;

/* "<output_dir>/checkpoint-%010lld" into buf. Returns 0, or -1 when it does
 * not fit or step is outside [0, 9999999999]. */
int ckpt_dir_path(char *buf, size_t buflen, const char *output_dir, int64_t step);
/* "<dir>/backbone.ckpt", "<dir>/classifier-<p>.ckpt". Return 0, or -1 when the
 * result does not fit. */
int ckpt_backbone_path(char *buf, size_t buflen, const char *dir);
int ckpt_classifier_path(char *buf, size_t buflen, const char *dir, int p);

/* Makes output_dir (with missing parents) and its checkpoint-<step> directory,
 * and removes a COMPLETE marker a previous run may have left there, so the
 * directory reads as incomplete until ckpt_dir_mark_complete. Every process
 * that writes a file of the checkpoint may call it (concurrent calls are
 * harmless), before writing. The directory path goes to dir. Returns 0, or -1
 * with the path and errno text. */
int ckpt_dir_create(const char *output_dir, int64_t step, char *dir, size_t dirlen, char *err,
                    size_t errlen);

/* Called once, after every process has committed its file: checks that
 * backbone.ckpt and classifier-0 .. classifier-<files-1>.ckpt open (header and
 * table valid), then writes COMPLETE (text: format line, step, classifier file
 * count) atomically and durably. Returns 0, or -1 naming what is missing or
 * broken (then the directory stays incomplete). */
int ckpt_dir_mark_complete(const char *dir, int64_t step, int classifier_files, char *err,
                           size_t errlen);

/* The complete checkpoints in output_dir (directories named checkpoint- and
 * 10 digits holding a COMPLETE marker that names the same step), sorted by
 * step, into *entries (malloc'ed, free with free(); NULL when *count is 0). A
 * missing output_dir has none. Returns 0, or -1 with the reason (output_dir
 * unreadable). */
int ckpt_dir_list(const char *output_dir, CkptDirEntry **entries, size_t *count, char *err,
                  size_t errlen);

/* The complete checkpoint with the highest step into *latest. Returns 1 when
 * there is one, 0 when there is none, -1 on error (reason in err). */
int ckpt_dir_latest(const char *output_dir, CkptDirEntry *latest, char *err, size_t errlen);

/* Keeps the keep_last_k (>= 1) newest complete checkpoints and removes the
 * older complete ones and every incomplete one older than the newest complete
 * one (debris of interrupted saves); incomplete ones newer than it may be
 * being written and stay. A directory is removed marker first (so it never
 * looks complete while half deleted), then its files, then itself; it must
 * hold only files. Returns 0, or -1 naming the path that could not be removed
 * (the rest of the pruning is still attempted). */
int ckpt_dir_prune(const char *output_dir, int keep_last_k, char *err, size_t errlen);

/* ---- classifier rows across files ---------------------------------------- */

/* Writes a classifier file: row_start, row_count, dim, weight and (unless
 * momentum is NULL) momentum, each (row_count, dim). Atomic like any
 * checkpoint file. Returns 0, or -1 with the reason. */
int ckpt_classifier_write(const char *path, int64_t row_start, int64_t row_count, int64_t dim,
                          const float *weight, const float *momentum, char *err, size_t errlen);

typedef struct CkptClassifierSet CkptClassifierSet;

/* Opens the nfiles classifier files at paths (any order), reads each one's
 * row_start, row_count and dim, and checks that sorted by row_start they tile
 * [0, num_classes) exactly (no gap, no overlap; files of 0 rows allowed), with
 * one dim, and that each weight section holds row_count x dim floats.
 * num_classes < 0 accepts the total the files give. Returns 0 with *out set,
 * or -1 with *out NULL and a reason naming the file(s) and rows. */
int ckpt_classifier_open(CkptClassifierSet **out, const char *const *paths, int nfiles,
                         int64_t num_classes, char *err, size_t errlen);

/* The same for the classifier files of a complete checkpoint directory (the
 * count comes from its COMPLETE marker). */
int ckpt_classifier_open_dir(CkptClassifierSet **out, const char *dir, int64_t num_classes,
                             char *err, size_t errlen);

void ckpt_classifier_close(CkptClassifierSet **s);
int64_t ckpt_classifier_num_classes(const CkptClassifierSet *s);
int64_t ckpt_classifier_dim(const CkptClassifierSet *s);

/* Reads global rows [a, b) of section `section` (CKPT_SEC_WEIGHT or
 * CKPT_SEC_MOMENTUM; any f32 section of row_count x dim floats) into dst,
 * (b - a) x dim floats, taking each row from the file that holds it. 0 <= a <=
 * b <= num_classes. Each file's section is CRC-checked the first time it is
 * touched (ckpt_read_range). Returns 0, or -1 with the file, section and
 * offset in err. */
int ckpt_classifier_read_rows(CkptClassifierSet *s, const char *section, int64_t a, int64_t b,
                              float *dst, char *err, size_t errlen);

#endif
