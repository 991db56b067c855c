/* dump.c -- self-describing float array files, written atomically. */
#include "dump.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "crc32c.h"

int dump_write(const char *path, const char *kind, const int64_t meta[4], const float *data,
               size_t count, char *err, size_t errlen) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    uint32_t kind_len = (uint32_t)strlen(kind);
    uint64_t n = count;
    uint32_t crc = crc32c_update(0, data, count * sizeof(float));
    int ok = fwrite("AFDUMP01", 1, 8, f) == 8 && fwrite(&kind_len, 4, 1, f) == 1 &&
             fwrite(kind, 1, kind_len, f) == kind_len && fwrite(meta, 8, 4, f) == 4 &&
             fwrite(&n, 8, 1, f) == 1 && fwrite(&crc, 4, 1, f) == 1 &&
             fwrite(data, sizeof(float), count, f) == count;
    if (fclose(f) != 0) ok = 0;
    if (!ok) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        remove(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}
