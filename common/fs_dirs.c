/* fs_dirs.c -- mkdir -p. */
#include "fs_dirs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int fs_make_dirs(const char *path, char *err, size_t errlen) {
    char *buf = strdup(path);
    if (!buf) {
        snprintf(err, errlen, "out of memory creating %s", path);
        return -1;
    }
    size_t len = strlen(buf);
    int rc = 0;
    for (size_t i = 1; i <= len && rc == 0; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char saved = buf[i];
        buf[i] = '\0';
        struct stat st;
        if (mkdir(buf, 0755) != 0 && (errno != EEXIST || stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))) {
            snprintf(err, errlen, "cannot create directory %s: %s", buf,
                     errno == EEXIST ? "a file of that name exists" : strerror(errno));
            rc = -1;
        }
        buf[i] = saved;
    }
    free(buf);
    return rc;
}
