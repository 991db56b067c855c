/* align.c -- arcface-align: face photos plus 5 landmarks each into aligned
 * 112x112 ArcFace crops.
 *
 *     arcface-align LANDMARKS.txt OUT_DIR [--root DIR] [--quality Q] [--skip-bad]
 *
 * LANDMARKS.txt lists `relative/path.jpg x1 y1 ... x5 y5` per line (format in
 * common/align_list.h and docs/data.md); each image, read from DIR/path (DIR
 * defaults to the folder holding LANDMARKS.txt), is warped as insightface's
 * norm_crop does and written to OUT_DIR/path as JPEG, so OUT_DIR keeps the
 * identity sub-folders and feeds arcface-pack or dataset=folder directly.
 *
 * Exit status: 0 every entry aligned; 1 stopped at an error (outputs written
 * before it stay); 2 usage; 3 finished with --skip-bad but some entries were
 * skipped (each reported above the summary). No MPI. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "align_list.h"
#include "log.h"

static const char usage[] =
    "usage: arcface-align LANDMARKS.txt OUT_DIR [--root DIR] [--quality Q] [--skip-bad]\n"
    "  aligns every image of LANDMARKS.txt to the ArcFace 112x112 template and writes it\n"
    "  as JPEG to OUT_DIR/<its path> (extension .jpg).\n"
    "  LANDMARKS.txt: one line per image, '#' lines and blank lines ignored:\n"
    "      relative/path.jpg  x1 y1  x2 y2  x3 y3  x4 y4  x5 y5\n"
    "    left eye, right eye, nose tip, left and right mouth corner in image pixels\n"
    "    (as RetinaFace / SCRFD / MTCNN give them)\n"
    "  --root DIR     image paths are relative to DIR (default: the folder of LANDMARKS.txt)\n"
    "  --quality Q    JPEG quality 1..100 (default 95)\n"
    "  --skip-bad     report bad lines and unreadable images, skip them, go on; the exit\n"
    "                 status is then 3 if any were skipped\n";

int main(int argc, char **argv) {
    log_set_role("align", -1);
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    AlignOptions opt = {.root = NULL, .out_dir = NULL, .quality = 95, .skip_bad = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--skip-bad") == 0) {
            opt.skip_bad = 1;
        } else if (strcmp(a, "--root") == 0 && i + 1 < argc) {
            opt.root = argv[++i];
        } else if (strcmp(a, "--quality") == 0 && i + 1 < argc) {
            char *end;
            long q = strtol(argv[++i], &end, 10);
            if (*argv[i] == '\0' || *end != '\0' || q < 1 || q > 100) {
                fprintf(stderr, "arcface-align: --quality takes a whole number from 1 to 100, not '%s'\n", argv[i]);
                return 2;
            }
            opt.quality = (int)q;
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "arcface-align: unknown option or missing value: %s   (see --help)\n", a);
            return 2;
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "arcface-align: unexpected argument '%s'   (see --help)\n", a);
            return 2;
        }
    }
    if (npos != 2) {
        fprintf(stderr, "usage: arcface-align LANDMARKS.txt OUT_DIR [--root DIR] [--quality Q] [--skip-bad]"
                        "   (see --help)\n");
        return 2;
    }
    opt.out_dir = pos[1];
    char list_dir[4096];
    if (!opt.root) {
        snprintf(list_dir, sizeof list_dir, "%s", pos[0]);
        char *slash = strrchr(list_dir, '/');
        if (slash == list_dir)
            slash[1] = '\0';
        else if (slash)
            *slash = '\0';
        else
            snprintf(list_dir, sizeof list_dir, ".");
        opt.root = list_dir;
    }

    /* Aligning in place would replace the photos by their crops. */
    char *root_real = realpath(opt.root, NULL), *out_real = realpath(opt.out_dir, NULL);
    int same = root_real && out_real && strcmp(root_real, out_real) == 0;
    free(root_real);
    free(out_real);
    if (same) {
        log_error("OUT_DIR %s is the image root: the crops would overwrite the photos; choose another OUT_DIR",
                  opt.out_dir);
        return 2;
    }

    AlignStats st;
    char err[4096];
    int rc = align_list_run(pos[0], &opt, &st, err, sizeof err);
    if (rc != 0) {
        log_error("%s", err);
        log_error("stopped after aligning %lld images (they stay in %s); fix the problem above and run again, "
                  "or pass --skip-bad to skip bad entries",
                  (long long)st.aligned, opt.out_dir);
        return 1;
    }
    printf("aligned %lld images into %s", (long long)st.aligned, opt.out_dir);
    if (st.aligned > 0)
        printf("; largest landmark residual %.2f pixels (line %lld)", st.worst_rms, (long long)st.worst_line);
    printf("\n");
    if (st.skipped > 0) {
        printf("skipped %lld bad entries (listed above)\n", (long long)st.skipped);
        return 3;
    }
    return 0;
}
