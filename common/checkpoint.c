/* checkpoint.c -- checkpoint container files: the writer (temporary file,
 * fsync, rename) and the validating reader (format in docs/checkpoint.md). */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint_io.h"
#include "crc32c.h"
#include "err.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the checkpoint format is little-endian");
_Static_assert(sizeof(float) == 4, "f32 sections");

#define HEADER_SIZE 64
#define ENTRY_SIZE 128
#define ALIGN 64
#define CRC_AT 60               /* header CRC: the header's last 4 bytes */
#define IO_CHUNK ((size_t)4 << 20) /* CRC and write granularity, streaming buffer */
static const unsigned char MAGIC[8] = {0x89, 'A', 'F', 'C', 'K', 'P', 'T', '\n'};

typedef struct {
    char name[CKPT_NAME_MAX + 1];
    uint32_t dtype, crc;
    uint64_t count, offset, size;
    uint64_t entry_at; /* byte offset of the table entry, for messages */
    int verified;      /* reader: CRC checked */
} Section;

typedef unsigned long long ull;

const char *ckpt_dtype_str(CkptDtype dtype) {
    switch (dtype) {
    case CKPT_F32: return "f32";
    case CKPT_U8: return "u8";
    case CKPT_I64: return "i64";
    case CKPT_U64: return "u64";
    }
    return "dtype?";
}

size_t ckpt_dtype_size(CkptDtype dtype) {
    switch (dtype) {
    case CKPT_F32: return 4;
    case CKPT_U8: return 1;
    case CKPT_I64: return 8;
    case CKPT_U64: return 8;
    }
    return 0;
}

static uint64_t align_up(uint64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }
static uint32_t get_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get_u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

/* Header CRC: bytes [0, CRC_AT) of the header, then the whole table. */
static uint32_t header_crc(const unsigned char *header, const unsigned char *table, size_t table_len) {
    return crc32c_update(crc32c_update(0, header, CRC_AT), table, table_len);
}

/* Directory part of path ("." when it has none) into buf. */
static void parent_dir(char *buf, size_t buflen, const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(buf, buflen, ".");
    else if (slash == path) snprintf(buf, buflen, "/");
    else snprintf(buf, buflen, "%.*s", (int)(slash - path), path);
}

/* "<dir>/<name>" into buf (CKPT_PATH_MAX bytes). Returns 0, or -1 when it does not fit. */
int ckpt_io_path_join(char *buf, const char *dir, const char *name) {
    int len = snprintf(buf, CKPT_PATH_MAX, "%s/%s", dir, name);
    return len >= 0 && len < CKPT_PATH_MAX ? 0 : -1;
}

/* Makes a rename or unlink inside dir durable. EINVAL means the file system
 * cannot sync directories (some network ones), which is not an error here. */
int ckpt_io_fsync_dir(const char *dir, char *err, size_t errlen) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        err_set(err, errlen, "cannot open directory %s to sync it: %s", dir, strerror(errno));
        return -1;
    }
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL) {
        err_set(err, errlen, "cannot fsync directory %s: %s", dir, strerror(e));
        return -1;
    }
    return 0;
}

/* Writes n bytes at *offset, advancing it past what was written (so after a
 * failure it is where the write stopped). Returns 0, or -1 with errno set (EIO
 * for a write of 0 bytes). */
int ckpt_io_pwrite_all(int fd, const void *buf, size_t n, uint64_t *offset) {
    const char *p = buf;
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t k = pwrite(fd, p, chunk, (off_t)*offset);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) {
            errno = EIO;
            return -1;
        }
        p += k;
        n -= (size_t)k;
        *offset += (uint64_t)k;
    }
    return 0;
}

/* Reads n bytes at offset; 0, -1 with errno set, or 1 at end of file. */
static int pread_all(int fd, void *buf, size_t n, uint64_t offset) {
    char *p = buf;
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t k = pread(fd, p, chunk, (off_t)offset);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) return 1;
        p += k;
        n -= (size_t)k;
        offset += (uint64_t)k;
    }
    return 0;
}

/* ---- writer -------------------------------------------------------------- */

struct CkptWriter {
    int fd;
    int failed;
    uint64_t pos; /* end of the data written so far */
    Section *sections;
    int n, cap;
    char path[CKPT_PATH_MAX], tmp[CKPT_PATH_MAX];
};

static int writer_write(CkptWriter *w, const void *data, size_t n, char *err, size_t errlen) {
    if (ckpt_io_pwrite_all(w->fd, data, n, &w->pos) != 0) {
        err_set(err, errlen, "%s: cannot write temporary file %s at byte offset %llu: %s", w->path,
                w->tmp, (ull)w->pos, strerror(errno));
        w->failed = 1;
        return -1;
    }
    return 0;
}

static int writer_pad(CkptWriter *w, char *err, size_t errlen) {
    static const unsigned char zeros[ALIGN];
    return writer_write(w, zeros, (size_t)(align_up(w->pos) - w->pos), err, errlen);
}

int ckpt_writer_open(CkptWriter **out, const char *path, char *err, size_t errlen) {
    *out = NULL;
    CkptWriter *w = calloc(1, sizeof *w);
    if (!w) {
        err_set(err, errlen, "%s: out of memory", path);
        return -1;
    }
    w->fd = -1;
    int len = snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld", path, (long)getpid());
    if (len < 0 || (size_t)len >= sizeof w->tmp || path[0] == '\0') {
        err_set(err, errlen, "checkpoint path '%.200s' is empty or too long", path);
        free(w);
        return -1;
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        err_set(err, errlen, "%s: cannot create temporary file %s: %s", path, w->tmp, strerror(errno));
        free(w);
        return -1;
    }
    static const unsigned char header[HEADER_SIZE]; /* placeholder until commit */
    if (writer_write(w, header, sizeof header, err, errlen) != 0) {
        ckpt_writer_abort(&w);
        return -1;
    }
    *out = w;
    return 0;
}

static int writer_add(CkptWriter *w, const char *name, CkptDtype dtype, const void *data,
                      uint64_t count, char *err, size_t errlen) {
    size_t len = strlen(name), elem = ckpt_dtype_size(dtype);
    if (len == 0 || len > CKPT_NAME_MAX) {
        err_set(err, errlen, "%s: section name '%.80s' has %zu bytes, allowed 1..%d", w->path, name,
                len, CKPT_NAME_MAX);
        return -1;
    }
    if (elem == 0) {
        err_set(err, errlen, "%s: section '%s': unknown dtype %d", w->path, name, (int)dtype);
        return -1;
    }
    if (count > (UINT64_MAX / 2) / elem || (count > 0 && !data)) {
        err_set(err, errlen, "%s: section '%s': %llu elements %s", w->path, name, (ull)count,
                data ? "is too many" : "but no data");
        return -1;
    }
    for (int i = 0; i < w->n; i++) {
        if (strcmp(w->sections[i].name, name) == 0) {
            err_set(err, errlen, "%s: section '%s' added twice", w->path, name);
            return -1;
        }
    }
    if (w->n == CKPT_MAX_SECTIONS) {
        err_set(err, errlen, "%s: section '%s': a file holds at most %d sections", w->path, name,
                CKPT_MAX_SECTIONS);
        return -1;
    }
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        Section *grown = realloc(w->sections, (size_t)cap * sizeof *grown);
        if (!grown) {
            err_set(err, errlen, "%s: out of memory", w->path);
            return -1;
        }
        w->sections = grown;
        w->cap = cap;
    }
    if (writer_pad(w, err, errlen) != 0) return -1;
    Section *s = &w->sections[w->n];
    memset(s, 0, sizeof *s);
    memcpy(s->name, name, len + 1);
    s->dtype = (uint32_t)dtype;
    s->count = count;
    s->offset = w->pos;
    s->size = count * elem;
    const unsigned char *p = data;
    uint32_t crc = 0;
    for (uint64_t done = 0; done < s->size;) {
        size_t chunk = s->size - done < IO_CHUNK ? (size_t)(s->size - done) : IO_CHUNK;
        crc = crc32c_update(crc, p + done, chunk);
        if (writer_write(w, p + done, chunk, err, errlen) != 0) return -1;
        done += chunk;
    }
    s->crc = crc;
    w->n++;
    return 0;
}

int ckpt_writer_add(CkptWriter *w, const char *name, CkptDtype dtype, const void *data,
                    uint64_t count, char *err, size_t errlen) {
    if (w->failed) {
        err_set(err, errlen, "%s: the writer failed earlier; abort it", w->path);
        return -1;
    }
    if (writer_add(w, name, dtype, data, count, err, errlen) != 0) {
        w->failed = 1;
        return -1;
    }
    return 0;
}

int ckpt_writer_add_i64(CkptWriter *w, const char *name, int64_t value, char *err, size_t errlen) {
    return ckpt_writer_add(w, name, CKPT_I64, &value, 1, err, errlen);
}

int ckpt_writer_commit(CkptWriter **wp, char *err, size_t errlen) {
    CkptWriter *w = *wp;
    unsigned char *table = NULL;
    if (w->failed) {
        err_set(err, errlen, "%s: the writer failed earlier; nothing was committed", w->path);
        goto error;
    }
    if (writer_pad(w, err, errlen) != 0) goto error;
    uint64_t table_offset = w->pos;
    size_t table_len = (size_t)w->n * ENTRY_SIZE;
    table = calloc(1, table_len ? table_len : 1);
    if (!table) {
        err_set(err, errlen, "%s: out of memory", w->path);
        goto error;
    }
    for (int i = 0; i < w->n; i++) {
        const Section *s = &w->sections[i];
        unsigned char *e = table + (size_t)i * ENTRY_SIZE;
        memcpy(e, s->name, strlen(s->name)); /* NUL padding from calloc */
        put_u32(e + 64, s->dtype);
        put_u32(e + 68, s->crc);
        put_u64(e + 72, s->count);
        put_u64(e + 80, s->offset);
        put_u64(e + 88, s->size);
    }
    if (writer_write(w, table, table_len, err, errlen) != 0) goto error;
    unsigned char header[HEADER_SIZE] = {0};
    memcpy(header, MAGIC, sizeof MAGIC);
    put_u32(header + 8, CKPT_FORMAT_VERSION);
    put_u32(header + 12, (uint32_t)w->n);
    put_u64(header + 16, table_offset);
    put_u64(header + 24, w->pos);
    put_u32(header + CRC_AT, header_crc(header, table, table_len));
    uint64_t at = 0;
    if (ckpt_io_pwrite_all(w->fd, header, sizeof header, &at) != 0) {
        err_set(err, errlen, "%s: cannot write the header of temporary file %s: %s", w->path, w->tmp,
                strerror(errno));
        goto error;
    }
    if (fsync(w->fd) != 0) {
        err_set(err, errlen, "%s: cannot fsync temporary file %s: %s", w->path, w->tmp, strerror(errno));
        goto error;
    }
    int rc = close(w->fd);
    w->fd = -1;
    if (rc != 0) {
        err_set(err, errlen, "%s: cannot close temporary file %s: %s", w->path, w->tmp, strerror(errno));
        goto error;
    }
    if (rename(w->tmp, w->path) != 0) {
        err_set(err, errlen, "cannot rename %s to %s: %s", w->tmp, w->path, strerror(errno));
        goto error;
    }
    char dir[CKPT_PATH_MAX], why[CKPT_PATH_MAX + 128];
    parent_dir(dir, sizeof dir, w->path);
    rc = ckpt_io_fsync_dir(dir, why, sizeof why);
    if (rc != 0)
        err_set(err, errlen, "%s is in place but may not survive a power loss: %s", w->path, why);
    free(table);
    free(w->sections);
    free(w);
    *wp = NULL;
    return rc;
error:
    free(table);
    ckpt_writer_abort(wp);
    return -1;
}

void ckpt_writer_abort(CkptWriter **wp) {
    if (!wp || !*wp) return;
    CkptWriter *w = *wp;
    if (w->fd >= 0) close(w->fd);
    unlink(w->tmp);
    free(w->sections);
    free(w);
    *wp = NULL;
}

/* ---- reader -------------------------------------------------------------- */

struct CkptReader {
    int fd;
    int n;
    Section *sections;
    uint64_t table_offset;
    char path[CKPT_PATH_MAX];
};

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(Section *const *)a)->name, (*(Section *const *)b)->name);
}

static int cmp_offset(const void *a, const void *b) {
    uint64_t x = (*(Section *const *)a)->offset, y = (*(Section *const *)b)->offset;
    return (x > y) - (x < y);
}

/* Unique names, no overlapping data (empty sections overlap nothing). */
static int check_table_sets(CkptReader *r, char *err, size_t errlen) {
    if (r->n < 2) return 0;
    Section **order = malloc((size_t)r->n * sizeof *order);
    if (!order) {
        err_set(err, errlen, "%s: out of memory for %d sections", r->path, r->n);
        return -1;
    }
    int m = 0, rc = 0;
    for (int i = 0; i < r->n; i++) order[i] = &r->sections[i];
    qsort(order, (size_t)r->n, sizeof *order, cmp_name);
    for (int i = 1; i < r->n && rc == 0; i++) {
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            err_set(err, errlen, "%s: section '%s' appears twice (table entries at byte offsets %llu "
                    "and %llu)", r->path, order[i]->name, (ull)order[i - 1]->entry_at,
                    (ull)order[i]->entry_at);
            rc = -1;
        }
    }
    for (int i = 0; i < r->n; i++)
        if (r->sections[i].size > 0) order[m++] = &r->sections[i];
    qsort(order, (size_t)m, sizeof *order, cmp_offset);
    for (int i = 1; i < m && rc == 0; i++) {
        const Section *a = order[i - 1], *b = order[i];
        if (a->offset + a->size > b->offset) {
            err_set(err, errlen, "%s: sections '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap "
                    "(table entries at byte offsets %llu and %llu)", r->path, a->name,
                    (ull)a->offset, (ull)(a->offset + a->size), b->name, (ull)b->offset,
                    (ull)(b->offset + b->size), (ull)a->entry_at, (ull)b->entry_at);
            rc = -1;
        }
    }
    free(order);
    return rc;
}

/* Reads and validates header and table; sections filled on success. */
static int reader_load(CkptReader *r, char *err, size_t errlen) {
    const char *path = r->path;
    struct stat st;
    if (fstat(r->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        err_set(err, errlen, "%s: not a regular file", path);
        return -1;
    }
    uint64_t size = (uint64_t)st.st_size;
    unsigned char header[HEADER_SIZE];
    size_t have = size < HEADER_SIZE ? (size_t)size : HEADER_SIZE;
    if (pread_all(r->fd, header, have, 0) != 0) {
        err_set(err, errlen, "%s: cannot read the header at byte offset 0: %s", path, strerror(errno));
        return -1;
    }
    if (have < sizeof MAGIC || memcmp(header, MAGIC, sizeof MAGIC) != 0) {
        err_set(err, errlen, "%s: byte offset 0: bad magic, not a checkpoint file%s", path,
                have < sizeof MAGIC ? " (too short)" : "");
        return -1;
    }
    if (size < HEADER_SIZE) {
        err_set(err, errlen, "%s: truncated at byte %llu: the header needs %d bytes", path, (ull)size,
                HEADER_SIZE);
        return -1;
    }
    uint32_t version = get_u32(header + 8), n = get_u32(header + 12);
    uint64_t table_offset = get_u64(header + 16), file_size = get_u64(header + 24);
    if (version != CKPT_FORMAT_VERSION) {
        err_set(err, errlen, "%s: byte offset 8: format version %u, this build reads %d", path,
                version, CKPT_FORMAT_VERSION);
        return -1;
    }
    if (file_size != size) {
        err_set(err, errlen, "%s: byte offset 24: the header says the file has %llu bytes but it has "
                "%llu (truncated, appended to, or a corrupt header)", path, (ull)file_size, (ull)size);
        return -1;
    }
    if (table_offset < HEADER_SIZE || table_offset % ALIGN != 0 || table_offset > size ||
        (size - table_offset) / ENTRY_SIZE != n || (size - table_offset) % ENTRY_SIZE != 0) {
        err_set(err, errlen, "%s: byte offset 16: a table of %u sections at byte %llu does not end "
                "at the end of the file (byte %llu)", path, n, (ull)table_offset, (ull)size);
        return -1;
    }
    if (n > CKPT_MAX_SECTIONS) {
        err_set(err, errlen, "%s: byte offset 12: %u sections, at most %d are allowed", path, n,
                CKPT_MAX_SECTIONS);
        return -1;
    }
    size_t table_len = (size_t)n * ENTRY_SIZE;
    unsigned char *table = malloc(table_len ? table_len : 1);
    r->sections = calloc(n ? n : 1, sizeof *r->sections);
    if (!table || !r->sections) {
        err_set(err, errlen, "%s: out of memory for a table of %u sections", path, n);
        free(table);
        return -1;
    }
    int rc = pread_all(r->fd, table, table_len, table_offset);
    if (rc != 0) {
        err_set(err, errlen, "%s: cannot read the section table at byte offset %llu: %s", path,
                (ull)table_offset, rc > 0 ? "end of file" : strerror(errno));
        free(table);
        return -1;
    }
    uint32_t stored = get_u32(header + CRC_AT), computed = header_crc(header, table, table_len);
    if (stored != computed) {
        err_set(err, errlen, "%s: header CRC mismatch (stored 0x%08x at byte offset %d, computed "
                "0x%08x over the header and the table at [%llu, %llu)): the header or the section "
                "table is corrupt", path, stored, CRC_AT, computed, (ull)table_offset, (ull)size);
        free(table);
        return -1;
    }
    r->n = (int)n;
    r->table_offset = table_offset;
    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *e = table + (size_t)i * ENTRY_SIZE;
        Section *s = &r->sections[i];
        s->entry_at = table_offset + (uint64_t)i * ENTRY_SIZE;
        if (!memchr(e, '\0', CKPT_NAME_MAX + 1) || e[0] == '\0') {
            err_set(err, errlen, "%s: section table entry %u at byte offset %llu: the name is %s", path,
                    i, (ull)s->entry_at, e[0] ? "not NUL-terminated" : "empty");
            free(table);
            return -1;
        }
        memcpy(s->name, e, CKPT_NAME_MAX + 1);
        s->dtype = get_u32(e + 64);
        s->crc = get_u32(e + 68);
        s->count = get_u64(e + 72);
        s->offset = get_u64(e + 80);
        s->size = get_u64(e + 88);
        size_t elem = ckpt_dtype_size((CkptDtype)s->dtype);
        const char *why = NULL;
        if (elem == 0) why = "unknown dtype";
        else if (s->count > UINT64_MAX / elem || s->count * elem != s->size)
            why = "size is not count x element size";
        else if (s->offset % ALIGN != 0) why = "data offset is not a multiple of 64";
        else if (s->offset < HEADER_SIZE || s->offset > table_offset ||
                 s->size > table_offset - s->offset)
            why = "data lies outside the data area";
        if (why) {
            err_set(err, errlen, "%s: section '%s' (table entry at byte offset %llu): %s (dtype %u, "
                    "count %llu, data [%llu, +%llu), data area [%d, %llu))", path, s->name,
                    (ull)s->entry_at, why, s->dtype, (ull)s->count, (ull)s->offset, (ull)s->size,
                    HEADER_SIZE, (ull)table_offset);
            free(table);
            return -1;
        }
    }
    free(table);
    return check_table_sets(r, err, errlen);
}

int ckpt_open(CkptReader **out, const char *path, char *err, size_t errlen) {
    *out = NULL;
    CkptReader *r = calloc(1, sizeof *r);
    if (!r) {
        err_set(err, errlen, "%s: out of memory", path);
        return -1;
    }
    snprintf(r->path, sizeof r->path, "%s", path);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        err_set(err, errlen, "cannot open %s: %s", path, strerror(errno));
        free(r);
        return -1;
    }
    if (reader_load(r, err, errlen) != 0) {
        ckpt_close(&r);
        return -1;
    }
    *out = r;
    return 0;
}

void ckpt_close(CkptReader **rp) {
    if (!rp || !*rp) return;
    CkptReader *r = *rp;
    if (r->fd >= 0) close(r->fd);
    free(r->sections);
    free(r);
    *rp = NULL;
}

const char *ckpt_path(const CkptReader *r) { return r->path; }
int ckpt_num_sections(const CkptReader *r) { return r->n; }
const char *ckpt_section_name(const CkptReader *r, int i) { return r->sections[i].name; }

static Section *find_section(const CkptReader *r, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->sections[i].name, name) == 0) return &r->sections[i];
    return NULL;
}

int64_t ckpt_section_count(const CkptReader *r, const char *name) {
    const Section *s = find_section(r, name);
    return s ? (int64_t)s->count : -1;
}

CkptDtype ckpt_section_dtype(const CkptReader *r, const char *name) {
    const Section *s = find_section(r, name);
    return s ? (CkptDtype)s->dtype : (CkptDtype)0;
}

/* The section, when it exists with this dtype. */
static Section *lookup(CkptReader *r, const char *name, CkptDtype dtype, char *err, size_t errlen) {
    Section *s = find_section(r, name);
    if (!s) {
        err_set(err, errlen, "%s: no section '%s'", r->path, name);
        return NULL;
    }
    if (s->dtype != (uint32_t)dtype) {
        err_set(err, errlen, "%s: section '%s' (table entry at byte offset %llu) holds %s, read as %s",
                r->path, name, (ull)s->entry_at, ckpt_dtype_str((CkptDtype)s->dtype),
                ckpt_dtype_str(dtype));
        return NULL;
    }
    return s;
}

/* Reads bytes [from, from + n) of section s into dst. */
static int read_bytes(CkptReader *r, const Section *s, uint64_t from, void *dst, size_t n, char *err,
                      size_t errlen) {
    int rc = pread_all(r->fd, dst, n, s->offset + from);
    if (rc != 0) {
        err_set(err, errlen, "%s: section '%s': cannot read %zu bytes at byte offset %llu: %s", r->path,
                s->name, n, (ull)(s->offset + from), rc > 0 ? "end of file" : strerror(errno));
        return -1;
    }
    return 0;
}

static int check_crc(CkptReader *r, Section *s, uint32_t crc, char *err, size_t errlen) {
    if (crc != s->crc) {
        err_set(err, errlen, "%s: section '%s' at byte offset %llu (%llu bytes): CRC32C mismatch "
                "(table 0x%08x, data 0x%08x): the data is corrupt", r->path, s->name,
                (ull)s->offset, (ull)s->size, s->crc, crc);
        return -1;
    }
    s->verified = 1;
    return 0;
}

/* Extends *crc with bytes [from, to) of s, read through buf. */
static int stream_crc(CkptReader *r, const Section *s, uint64_t from, uint64_t to, uint32_t *crc,
                      unsigned char *buf, char *err, size_t errlen) {
    while (from < to) {
        size_t chunk = to - from < IO_CHUNK ? (size_t)(to - from) : IO_CHUNK;
        if (read_bytes(r, s, from, buf, chunk, err, errlen) != 0) return -1;
        *crc = crc32c_update(*crc, buf, chunk);
        from += chunk;
    }
    return 0;
}

int ckpt_read(CkptReader *r, const char *name, CkptDtype dtype, void *dst, uint64_t count,
              char *err, size_t errlen) {
    Section *s = lookup(r, name, dtype, err, errlen);
    if (!s) return -1;
    if (count != s->count) {
        err_set(err, errlen, "%s: section '%s' (table entry at byte offset %llu) holds %llu elements, "
                "the reader expects %llu", r->path, name, (ull)s->entry_at, (ull)s->count, (ull)count);
        return -1;
    }
    if (read_bytes(r, s, 0, dst, (size_t)s->size, err, errlen) != 0) return -1;
    return check_crc(r, s, crc32c_update(0, dst, (size_t)s->size), err, errlen);
}

int ckpt_read_range(CkptReader *r, const char *name, CkptDtype dtype, uint64_t first,
                    uint64_t count, void *dst, char *err, size_t errlen) {
    Section *s = lookup(r, name, dtype, err, errlen);
    if (!s) return -1;
    if (first > s->count || count > s->count - first) {
        err_set(err, errlen, "%s: section '%s' (table entry at byte offset %llu) holds %llu elements, "
                "cannot read [%llu, +%llu)", r->path, name, (ull)s->entry_at, (ull)s->count,
                (ull)first, (ull)count);
        return -1;
    }
    if (first == 0 && count == s->count) return ckpt_read(r, name, dtype, dst, count, err, errlen);
    size_t elem = ckpt_dtype_size(dtype);
    uint64_t lo = first * elem, hi = (first + count) * elem;
    if (read_bytes(r, s, lo, dst, (size_t)(hi - lo), err, errlen) != 0) return -1;
    if (s->verified) return 0;
    unsigned char *buf = malloc(IO_CHUNK);
    if (!buf) {
        err_set(err, errlen, "%s: out of memory", r->path);
        return -1;
    }
    uint32_t crc = 0;
    int rc = stream_crc(r, s, 0, lo, &crc, buf, err, errlen);
    if (rc == 0) {
        crc = crc32c_update(crc, dst, (size_t)(hi - lo));
        rc = stream_crc(r, s, hi, s->size, &crc, buf, err, errlen);
    }
    free(buf);
    return rc == 0 ? check_crc(r, s, crc, err, errlen) : -1;
}

int ckpt_read_i64(CkptReader *r, const char *name, int64_t *value, char *err, size_t errlen) {
    return ckpt_read(r, name, CKPT_I64, value, 1, err, errlen);
}

int ckpt_verify(CkptReader *r, char *err, size_t errlen) {
    unsigned char *buf = NULL;
    int rc = 0;
    for (int i = 0; i < r->n && rc == 0; i++) {
        Section *s = &r->sections[i];
        if (s->verified) continue;
        if (!buf && !(buf = malloc(IO_CHUNK))) {
            err_set(err, errlen, "%s: out of memory", r->path);
            return -1;
        }
        uint32_t crc = 0;
        rc = stream_crc(r, s, 0, s->size, &crc, buf, err, errlen);
        if (rc == 0) rc = check_crc(r, s, crc, err, errlen);
    }
    free(buf);
    return rc;
}

