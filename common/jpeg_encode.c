/* jpeg_encode.c -- JPEG files from pixels with TurboJPEG's tjCompress2. */
#include "jpeg_encode.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

int jpeg_write_file(const char *path, const uint8_t *pixels, int width, int height, int channels, int quality,
                    char *err, size_t errlen) {
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3) || quality < 1 || quality > 100) {
        snprintf(err, errlen, "%s: cannot encode a %dx%d image with %d channels at quality %d", path, width,
                 height, channels, quality);
        return -1;
    }
    int rc = -1;
    unsigned char *jpeg = NULL;
    unsigned long size = 0;
    FILE *f = NULL;
    tjhandle tj = tjInitCompress();
    if (!tj) {
        snprintf(err, errlen, "%s: cannot create a TurboJPEG compressor: %s", path, tjGetErrorStr2(NULL));
        goto done;
    }
    if (tjCompress2(tj, pixels, width, 0, height, channels == 3 ? TJPF_RGB : TJPF_GRAY, &jpeg, &size,
                    channels == 3 ? TJSAMP_420 : TJSAMP_GRAY, quality, TJFLAG_ACCURATEDCT) != 0) {
        snprintf(err, errlen, "%s: JPEG compression failed: %s", path, tjGetErrorStr2(tj));
        goto done;
    }
    f = fopen(path, "wb");
    if (!f) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        goto done;
    }
    if (fwrite(jpeg, 1, size, f) != size || fflush(f) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (f && fclose(f) != 0 && rc == 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        rc = -1;
    }
    if (f && rc != 0) unlink(path);
    if (jpeg) tjFree(jpeg);
    if (tj) tjDestroy(tj);
    return rc;
}
