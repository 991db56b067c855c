/* recordio_pack.h -- pack an image folder into an insightface training set
 * (PREFIX.rec, PREFIX.idx and `property`), laid out as insightface's
 * face2rec2.py writes MS1MV2 / MS1MV3 / Glint360K. */
#ifndef ARCFACE_RECORDIO_PACK_H
#define ARCFACE_RECORDIO_PACK_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t images;        /* image records written (keys 1..images) */
    int64_t identities;    /* classes, one identity record each */
    int64_t empty_dirs;    /* identity folders without images: skipped, no label */
    int64_t skipped_files; /* entries that are not images (by extension) or not files */
    uint64_t image_bytes;  /* sum of the image files' sizes */
    uint64_t rec_bytes;    /* size of the .rec */
} RecPackStats;

/* Packs root/<identity>/<image>: identities are the sub-directories of root
 * (names starting with '.' ignored) in byte-wise sorted order that hold at
 * least one image, labelled 0..C-1; images are the regular files (symlinks
 * followed) ending in .jpg .jpeg .png .ppm .pgm (any case), in sorted order,
 * stored byte for byte (not re-encoded). Writes, as face2rec2.py does:
 *   keys 1..N     the images in order, IRHeader{flag 2, label 0, id key, id2 0}
 *                 with labels [class, 1 (aligned)];
 *   key 0         the header, flag 2, labels [N+1, N+1+C], no payload,
 *                 written after the images;
 *   keys N+1..N+C one record per identity, flag 2, labels [first image key,
 *                 end image key), no payload;
 * into out_prefix.rec / out_prefix.idx, and "C,112,112\n" into `property` in
 * out_prefix's directory. Everything is written under temporary names and
 * renamed at the end, so on failure no output file is created or changed.
 * Keys and counts must stay exactly representable as float32 (< 2^24), as
 * insightface stores them as float labels. stats may be NULL. Returns 0, or -1
 * with a reason naming the path in err. */
int rec_pack_folder(const char *root, const char *out_prefix, RecPackStats *stats, char *err,
                    size_t errlen);

#endif
