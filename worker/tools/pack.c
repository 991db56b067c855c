/* pack.c -- arcface-pack: an image folder into an insightface training set.
 *
 *     arcface-pack IMAGE_ROOT OUT_PREFIX
 *
 * Packs IMAGE_ROOT/<identity>/<image> (identities in sorted order -> labels
 * 0..C-1, images in sorted order, bytes stored as they are) into
 * OUT_PREFIX.rec, OUT_PREFIX.idx and `property` beside them, laid out as
 * insightface's face2rec2.py writes MS1MV2 (see common/recordio_pack.h), so
 * insightface / MXNet read it and so does `dataset = rec`. No MPI. */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "recordio_pack.h"

int main(int argc, char **argv) {
    log_set_role("pack", -1);
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: arcface-pack IMAGE_ROOT OUT_PREFIX\n"
               "  packs IMAGE_ROOT/<identity>/<image>.{jpg,jpeg,png,ppm,pgm} into OUT_PREFIX.rec,\n"
               "  OUT_PREFIX.idx and a `property` file beside them (insightface RecordIO)\n");
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: arcface-pack IMAGE_ROOT OUT_PREFIX   (see --help)\n");
        return 2;
    }
    RecPackStats st;
    char err[1024];
    if (rec_pack_folder(argv[1], argv[2], &st, err, sizeof err) != 0) {
        log_error("%s", err);
        log_error("nothing was written; fix the problem above and run arcface-pack again");
        return 1;
    }
    printf("packed %lld images of %lld identities (%llu image bytes) into %s.rec (%llu bytes) and "
           "%s.idx\n",
           (long long)st.images, (long long)st.identities, (unsigned long long)st.image_bytes, argv[2],
           (unsigned long long)st.rec_bytes, argv[2]);
    printf("property: %lld,112,112; skipped %lld non-image entries and %lld identity folders "
           "without images\n",
           (long long)st.identities, (long long)st.skipped_files, (long long)st.empty_dirs);
    return 0;
}
