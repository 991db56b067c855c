/* synthetic_sheet.c -- renders a contact sheet of the synthetic face set:
 * one row per identity, one column per instance, as a binary PPM.
 *
 *   gcc -std=gnu11 -O2 -Icommon tests/tools/synthetic_sheet.c common/synthetic.c -lm \
 *       -o /tmp/synthetic_sheet
 *   /tmp/synthetic_sheet sheet.ppm [seed=1] [identities=8] [instances=6] [first_id=0]
 *
 * docs/synthetic_sheet.png is this output converted to PNG. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synthetic.h"

#define GAP 2

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s out.ppm [seed] [identities] [instances] [first_id]\n", argv[0]);
        return 2;
    }
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    int ids = argc > 3 ? atoi(argv[3]) : 8;
    int insts = argc > 4 ? atoi(argv[4]) : 6;
    int64_t first = argc > 5 ? atoll(argv[5]) : 0;
    if (ids < 1 || insts < 1 || ids > 64 || insts > 64) {
        fprintf(stderr, "synthetic_sheet: identities and instances must be in 1..64\n");
        return 2;
    }
    int W = insts * (FACE_SIZE + GAP) + GAP, H = ids * (FACE_SIZE + GAP) + GAP;
    uint8_t *sheet = malloc((size_t)W * H * 3);
    uint8_t img[FACE_SIZE * FACE_SIZE * 3];
    if (!sheet) {
        fprintf(stderr, "synthetic_sheet: out of memory\n");
        return 1;
    }
    memset(sheet, 255, (size_t)W * H * 3);
    for (int i = 0; i < ids; i++)
        for (int j = 0; j < insts; j++) {
            synthetic_render(img, seed, first + i, j);
            for (int y = 0; y < FACE_SIZE; y++) {
                size_t row = (size_t)(GAP + i * (FACE_SIZE + GAP) + y) * W + GAP + j * (FACE_SIZE + GAP);
                memcpy(sheet + row * 3, img + (size_t)y * FACE_SIZE * 3, FACE_SIZE * 3);
            }
        }
    FILE *fp = fopen(argv[1], "wb");
    if (!fp) {
        perror(argv[1]);
        free(sheet);
        return 1;
    }
    fprintf(fp, "P6\n%d %d\n255\n", W, H);
    size_t wrote = fwrite(sheet, 1, (size_t)W * H * 3, fp);
    int bad = fclose(fp) != 0 || wrote != (size_t)W * H * 3;
    free(sheet);
    if (bad) {
        fprintf(stderr, "synthetic_sheet: failed writing %s\n", argv[1]);
        return 1;
    }
    return 0;
}
