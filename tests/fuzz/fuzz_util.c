/* fuzz_util.c -- the scratch directory and input helpers of the fuzz targets. */
#include "fuzz_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"

#define MAX_FILES 8
#define PATH_CAP 4096

/* A scratch file. One that was written stays open with its current length:
 * rewriting it is then a pwrite (and an ftruncate when it shrinks) instead of
 * an open, truncate, write and close, which at thousands of inputs a second
 * was a visible share of each input's time. */
typedef struct {
    const char *name; /* NULL: slot unused */
    char path[PATH_CAP];
    int is_open, fd;
    size_t len;
} ScratchFile;

static char scratch[PATH_CAP];
static ScratchFile files[MAX_FILES];

static int thorough = -1; /* -1: not known yet (see fuzz_thorough) */

static void close_file(ScratchFile *f) {
    if (f->is_open) close(f->fd);
    f->is_open = 0;
    f->len = 0;
}

static void remove_scratch(void) {
    for (int i = 0; i < MAX_FILES; i++) close_file(&files[i]);
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

/* The file called `name`, its path set on first use. */
static ScratchFile *file_of(const char *name) {
    int i = 0;
    while (i < MAX_FILES && files[i].name && strcmp(files[i].name, name) != 0) i++;
    if (i == MAX_FILES) {
        fprintf(stderr, "fuzz: more than %d scratch file names\n", MAX_FILES);
        abort();
    }
    ScratchFile *f = &files[i];
    if (!f->name) {
        int n = snprintf(f->path, PATH_CAP, "%s/%s", scratch_dir(), name);
        if (n < 0 || n >= PATH_CAP) {
            fprintf(stderr, "fuzz: scratch path for %s too long\n", name);
            abort();
        }
        f->name = name;
    }
    return f;
}

const char *fuzz_write_file(const char *name, const void *data, size_t len) {
    ScratchFile *f = file_of(name);
    if (!f->is_open) {
        f->fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        f->is_open = f->fd >= 0;
        f->len = 0;
    }
    const uint8_t *p = data;
    size_t left = len;
    off_t at = 0;
    while (f->is_open && left > 0) {
        ssize_t n = pwrite(f->fd, p, left, at);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        p += n;
        at += n;
        left -= (size_t)n;
    }
    if (!f->is_open || left > 0 || (len < f->len && ftruncate(f->fd, (off_t)len) != 0)) {
        fprintf(stderr, "fuzz: cannot write %s: %s\n", f->path, strerror(errno));
        abort();
    }
    f->len = len;
    return f->path;
}

const char *fuzz_remove_file(const char *name) {
    ScratchFile *f = file_of(name);
    close_file(f);
    unlink(f->path);
    return f->path;
}

void fuzz_set_thorough(void) { thorough = 1; }

int fuzz_thorough(void) {
    if (thorough < 0) {
        const char *e = getenv("FUZZ_THOROUGH");
        thorough = e && *e && strcmp(e, "0") != 0;
    }
    return thorough;
}

uint32_t fuzz_hash(const uint8_t *data, size_t size) { return crc32c_update(0, data, size); }

int fuzz_pick(const uint8_t *data, size_t size, unsigned one_in) {
    return fuzz_thorough() || one_in <= 1 || fuzz_hash(data, size) % one_in == 0;
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
