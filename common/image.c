/* image.c -- uint8 HWC face crops to normalised fp32 CHW tensors. */
#include "image.h"

#include <stddef.h>

void image_to_tensor(float *out, const uint8_t *rgb, int flip) {
    const int S = IMAGE_SIZE;
    for (int c = 0; c < 3; c++) {
        float *plane = out + (size_t)c * S * S;
        for (int y = 0; y < S; y++) {
            const uint8_t *row = rgb + (size_t)y * S * 3;
            float *o = plane + (size_t)y * S;
            for (int x = 0; x < S; x++) {
                int sx = flip ? S - 1 - x : x;
                o[x] = ((float)row[sx * 3 + c] - 127.5f) * (1.0f / 128.0f);
            }
        }
    }
}
