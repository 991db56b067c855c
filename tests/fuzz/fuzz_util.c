/* fuzz_util.c -- the scratch directory and input helpers of the fuzz targets. */
#include "fuzz_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILES 8
#define PATH_CAP 4096

static char scratch[PATH_CAP];
static char paths[MAX_FILES][PATH_CAP];
static const char *names[MAX_FILES];

static void remove_scratch(void) {
    if (!scratch[0]) return;
    DIR *d = opendir(scratch);
    if (d) {
        struct dirent *e;
        char p[PATH_CAP + 256];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            int n = snprintf(p, sizeof p, "%s/%s", scratch, e->d_name);
            if (n > 0 && (size_t)n < sizeof p) unlink(p);
        }
        closedir(d);
    }
    rmdir(scratch);
    scratch[0] = '\0';
}

static const char *scratch_dir(void) {
    if (scratch[0]) return scratch;
    const char *base = getenv("TMPDIR");
    struct stat st;
    if (!base || !*base) base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    int n = snprintf(scratch, sizeof scratch, "%s/arcface-fuzz-XXXXXX", base);
    if (n < 0 || (size_t)n >= sizeof scratch || !mkdtemp(scratch)) {
        fprintf(stderr, "fuzz: cannot create a scratch directory under %s: %s\n", base,
                strerror(errno));
        abort();
    }
    atexit(remove_scratch);
    return scratch;
}

static const char *path_of(const char *name) {
    int i = 0;
    while (i < MAX_FILES && names[i] && strcmp(names[i], name) != 0) i++;
    if (i == MAX_FILES) {
        fprintf(stderr, "fuzz: more than %d scratch file names\n", MAX_FILES);
        abort();
    }
    if (!names[i]) {
        int n = snprintf(paths[i], PATH_CAP, "%s/%s", scratch_dir(), name);
        if (n < 0 || n >= PATH_CAP) {
            fprintf(stderr, "fuzz: scratch path for %s too long\n", name);
            abort();
        }
        names[i] = name;
    }
    return paths[i];
}

const char *fuzz_write_file(const char *name, const void *data, size_t len) {
    const char *path = path_of(name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const uint8_t *p = data;
    while (fd >= 0 && len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        p += n;
        len -= (size_t)n;
    }
    if (fd < 0 || len > 0 || close(fd) != 0) {
        fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
    return path;
}

const char *fuzz_remove_file(const char *name) {
    const char *path = path_of(name);
    unlink(path);
    return path;
}

uint64_t fuzz_take_uint(const uint8_t **data, size_t *size, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes && *size > 0; i++) {
        v |= (uint64_t)(*data)[0] << (8 * i);
        (*data)++;
        (*size)--;
    }
    return v;
}

void fuzz_note(const char *fmt, ...) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (!verbose) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
