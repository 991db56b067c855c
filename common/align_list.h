/* align_list.h -- aligning a list of images given their 5 landmarks each: the
 * landmark file format and the batch run behind arcface-align.
 *
 * A landmark file has one line per image,
 *
 *     relative/path.jpg  x1 y1  x2 y2  x3 y3  x4 y4  x5 y5
 *
 * the path (no spaces; relative to the image root) then the left eye, right
 * eye, nose tip, left and right mouth corners in that image's pixels (OpenCV
 * convention: pixel centres at integers), separated by spaces or tabs. Lines
 * that are blank or whose first non-blank character is '#' are ignored. */
#ifndef ARCFACE_ALIGN_LIST_H
#define ARCFACE_ALIGN_LIST_H

#include <stddef.h>
#include <stdint.h>

#include "align.h"

#define ALIGN_PATH_MAX 4096

typedef struct {
    char path[ALIGN_PATH_MAX];
    double landmarks[ALIGN_POINTS][2];
} AlignEntry;

/* Parses one line of a landmark file (with or without its newline) into e.
 * Returns 1 for an entry, 0 for a blank or comment line (e unaltered), -1
 * with a reason in err: not 11 fields, a field that is not a finite number,
 * a path that is absolute, has a ".." component or is too long (outputs must
 * stay inside the output folder). Does not check the landmarks' geometry. */
int align_parse_line(const char *line, AlignEntry *e, char *err, size_t errlen);

typedef struct {
    const char *root;    /* image paths are relative to this folder */
    const char *out_dir; /* created if need be */
    int quality;         /* JPEG quality 1..100 */
    int skip_bad;        /* report bad entries as warnings and go on */
} AlignOptions;

typedef struct {
    int64_t aligned;  /* images written */
    int64_t skipped;  /* bad entries skipped (skip_bad only) */
    double worst_rms; /* largest landmark residual, 112x112 crop pixels */
    int64_t worst_line;
} AlignStats;

/* Aligns every image listed in list_path: decodes root/PATH (JPEG, PNG,
 * PGM/PPM), estimates the transform (align_estimate), warps to 112x112
 * (align_warp) and writes out_dir/PATH as JPEG -- with the extension
 * replaced by .jpg unless it is .jpg or .jpeg -- creating its folders, so
 * identity sub-folders are kept. Greyscale sources give greyscale JPEGs.
 *
 * A bad entry (a line align_parse_line rejects, degenerate landmarks, an
 * image that cannot be read or decoded) is an error "LIST:LINE: reason"; with
 * opt->skip_bad it is logged as a warning, counted in stats->skipped, and the
 * run goes on. Failing to read the list or to create or write an output is
 * always an error. Returns 0 when the whole list was processed, or -1 with the
 * reason in err; outputs written before an error stay. stats (not NULL) holds
 * the counts either way. */
int align_list_run(const char *list_path, const AlignOptions *opt, AlignStats *stats, char *err, size_t errlen);

#endif
