/* dump.c -- self-describing float array files, written atomically. */
#include "dump.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

int dump_read(const char *path, const char *kind, int64_t meta[4], float **data, size_t *count, char *err,
              size_t errlen) {
    *data = NULL;
    *count = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    long long size = fstat(fileno(f), &st) == 0 ? (long long)st.st_size : -1;
    char magic[8], got_kind[64] = {0};
    uint32_t kind_len = 0, crc = 0;
    uint64_t n = 0;
    float *values = NULL;
    const char *why = NULL;
    long long at = 0;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "AFDUMP01", 8) != 0) {
        why = "not a dump file (bad magic)";
    } else if ((at = 8, fread(&kind_len, 4, 1, f) != 1) || kind_len >= sizeof got_kind ||
               fread(got_kind, 1, kind_len, f) != kind_len) {
        why = "bad kind field";
    } else if (strcmp(got_kind, kind) != 0) {
        snprintf(err, errlen, "%s holds '%s', expected '%s'", path, got_kind, kind);
        fclose(f);
        return -1;
    } else if ((at = 12 + kind_len, fread(meta, 8, 4, f) != 4) || fread(&n, 8, 1, f) != 1 ||
               fread(&crc, 4, 1, f) != 1) {
        why = "truncated header";
    } else if ((at = 12 + kind_len + 44, (long long)(n * sizeof(float)) != size - at) || n > (uint64_t)size) {
        snprintf(err, errlen, "%s: header at offset %lld claims %llu floats but %lld bytes follow", path, at,
                 (unsigned long long)n, size - at);
        fclose(f);
        return -1;
    } else {
        values = malloc(n ? n * sizeof(float) : 1);
        if (!values || fread(values, sizeof(float), n, f) != n) why = "truncated data";
        else if (crc32c_update(0, values, n * sizeof(float)) != crc) why = "checksum mismatch: the data is corrupt";
    }
    fclose(f);
    if (why) {
        snprintf(err, errlen, "%s: offset %lld: %s", path, at, why);
        free(values);
        return -1;
    }
    *data = values;
    *count = n;
    return 0;
}
