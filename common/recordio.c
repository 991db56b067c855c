/* recordio.c -- dmlc RecordIO framing, MXNet IRHeader records, the indexed
 * insightface reader and the atomic writer (see recordio.h for the format). */
#define _GNU_SOURCE
#include "recordio.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "err.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "recordio.c reads and writes little-endian data in place: little-endian hosts only"
#endif

#define LEN_MASK ((1u << 29) - 1u)
#define NO_OFFSET UINT64_MAX
#define SCAN_BUFFER (4u << 20)
#define WRITE_BUFFER (1u << 20)

static const uint8_t MAGIC_BYTES[4] = {0x0A, 0x23, 0xD7, 0xCE}; /* REC_MAGIC, little-endian */

typedef unsigned long long ull;

/* Appends " (key K)" to a message already in err. */
static void append_key(char *err, size_t errlen, uint64_t key) {
    if (!err || !errlen) return;
    size_t used = strlen(err);
    if (used < errlen) snprintf(err + used, errlen - used, " (key %llu)", (ull)key);
}

static uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t padded4(uint64_t n) { return (n + 3u) & ~(uint64_t)3u; }

/* Grows *buf to at least need bytes, keeping its content. */
static int grow(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap && *buf) return 0;
    size_t n = *cap > 4096 ? *cap : 4096;
    while (n < need) n *= 2;
    uint8_t *p = realloc(*buf, n);
    if (!p) return -1;
    *buf = p;
    *cap = n;
    return 0;
}

/* ---- framing: writing ------------------------------------------------------ */

static int write_part(FILE *f, uint32_t cflag, const uint8_t *data, size_t len) {
    uint32_t head[2] = {REC_MAGIC, (cflag << 29) | (uint32_t)len};
    if (fwrite(head, sizeof head, 1, f) != 1) return -1;
    if (len && fwrite(data, 1, len, f) != len) return -1;
    return 0;
}

/* dmlc::RecordIOWriter::WriteRecord: cut at every aligned magic word. */
static int frame_write(FILE *f, const void *data, size_t len, uint64_t *written, char *err,
                       size_t errlen) {
    if (len >= REC_MAX_RECORD)
        return err_set(err, errlen, "record of %zu bytes: RecordIO records must be shorter than 2^29 bytes",
                    len);
    const uint8_t *p = data;
    size_t lower = len & ~(size_t)3, start = 0;
    uint64_t n = 0;
    for (size_t i = 0; i < lower; i += 4) {
        if (memcmp(p + i, MAGIC_BYTES, 4) != 0) continue;
        if (write_part(f, start == 0 ? 1u : 2u, p + start, i - start) != 0) goto io_error;
        n += 8 + (i - start);
        start = i + 4;
    }
    if (write_part(f, start ? 3u : 0u, p + start, len - start) != 0) goto io_error;
    n += 8 + (len - start);
    static const uint8_t zeros[4] = {0, 0, 0, 0};
    size_t pad = (size_t)(padded4(len) - len);
    if (pad && fwrite(zeros, 1, pad, f) != pad) goto io_error;
    n += pad;
    if (written) *written = n;
    return 0;
io_error:
    return err_set(err, errlen, "write error: %s", strerror(errno));
}

int rec_write_record(FILE *f, const void *data, size_t len, char *err, size_t errlen) {
    return frame_write(f, data, len, NULL, err, errlen);
}

uint64_t rec_framed_size(const void *data, size_t len) {
    const uint8_t *p = data;
    uint64_t n = 8 + padded4(len);
    for (size_t i = 0; i + 4 <= (len & ~(size_t)3); i += 4)
        if (memcmp(p + i, MAGIC_BYTES, 4) == 0) n += 4; /* one more part header, minus the magic */
    return n;
}

/* ---- framing: reading ------------------------------------------------------ */

/* Where record bytes come from: pread on a descriptor (random access) or a
 * buffered stream read front to back (offsets then always follow on). */
typedef struct {
    int fd;
    FILE *stream;
    const char *name;
    uint64_t size;
} Source;

static int source_read(const Source *s, uint64_t off, void *dst, size_t n) {
    if (s->stream) {
        if (fread(dst, 1, n, s->stream) == n) return 0;
        if (!ferror(s->stream)) errno = ENODATA;
        return -1;
    }
    uint8_t *d = dst;
    while (n) {
        ssize_t got = pread(s->fd, d, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            if (got == 0) errno = ENODATA; /* the file shrank under us */
            return -1;
        }
        d += got;
        off += (uint64_t)got;
        n -= (size_t)got;
    }
    return 0;
}

/* Reads the record starting at offset (all its parts, with their padding). */
static int read_record(const Source *s, uint64_t offset, uint8_t **buf, size_t *cap, size_t *len,
                       uint64_t *next, char *err, size_t errlen) {
    uint64_t pos = offset;
    size_t total = 0;
    for (int part = 0;; part++) {
        char where[96] = "";
        if (part) snprintf(where, sizeof where, ": part %d at offset %llu", part + 1, (ull)pos);
        if (pos > s->size || s->size - pos < 8)
            return err_set(err, errlen,
                        "%s: truncated: record at offset %llu%s: its 8-byte header is cut by the end "
                        "of the file at %llu",
                        s->name, (ull)offset, where, (ull)s->size);
        uint8_t head[8];
        if (source_read(s, pos, head, 8) != 0)
            return err_set(err, errlen, "%s: record at offset %llu%s: read error: %s", s->name, (ull)offset,
                        where, strerror(errno));
        uint32_t magic = load_u32(head), lrec = load_u32(head + 4);
        if (magic != REC_MAGIC)
            return err_set(err, errlen, "%s: record at offset %llu%s: bad magic 0x%08x (expected 0x%08x)",
                        s->name, (ull)offset, where, magic, REC_MAGIC);
        uint32_t cflag = lrec >> 29, clen = lrec & LEN_MASK;
        if (part == 0 && cflag != 0 && cflag != 1)
            return err_set(err, errlen,
                        "%s: record at offset %llu: starts with a part of cflag %u (expected 0, a whole "
                        "record, or 1, the first of a multi-part record)",
                        s->name, (ull)offset, cflag);
        if (part > 0 && cflag != 2 && cflag != 3)
            return err_set(err, errlen,
                        "%s: record at offset %llu%s: multi-part record broken: cflag %u where a "
                        "middle (2) or last (3) part must follow",
                        s->name, (ull)offset, where, cflag);
        uint64_t body = padded4(clen);
        if (s->size - pos - 8 < body)
            return err_set(err, errlen,
                        "%s: truncated: record at offset %llu%s claims %u bytes, file ends at %llu",
                        s->name, (ull)offset, where, clen, (ull)s->size);
        if ((uint64_t)total + clen >= REC_MAX_RECORD)
            return err_set(err, errlen,
                        "%s: record at offset %llu%s: multi-part record longer than 2^29 bytes",
                        s->name, (ull)offset, where);
        if (grow(buf, cap, total + (size_t)body + 4) != 0)
            return err_set(err, errlen, "%s: record at offset %llu: out of memory for %llu bytes", s->name,
                        (ull)offset, (ull)(total + body + 4));
        if (body && source_read(s, pos + 8, *buf + total, (size_t)body) != 0)
            return err_set(err, errlen, "%s: record at offset %llu%s: read error: %s", s->name,
                        (ull)offset, where, strerror(errno));
        total += clen;
        pos += 8 + body;
        if (cflag == 0 || cflag == 3) break;
        memcpy(*buf + total, MAGIC_BYTES, 4); /* the magic word the writer cut out */
        total += 4;
    }
    *len = total;
    if (next) *next = pos;
    return 0;
}

int rec_read_record_at(int fd, const char *name, uint64_t file_size, uint64_t offset, uint8_t **buf,
                       size_t *cap, size_t *len, uint64_t *next_offset, char *err, size_t errlen) {
    Source s = {.fd = fd, .stream = NULL, .name = name, .size = file_size};
    return read_record(&s, offset, buf, cap, len, next_offset, err, errlen);
}

int rec_scan(const char *path, RecScanFn fn, void *ctx, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, errlen, "%s: %s", path, strerror(errno));
    int rc = -1;
    uint8_t *buf = NULL;
    size_t cap = 0, len;
    char *iobuf = malloc(SCAN_BUFFER);
    struct stat st;
    if (!iobuf || setvbuf(f, iobuf, _IOFBF, SCAN_BUFFER) != 0) {
        err_set(err, errlen, "%s: cannot set up a read buffer", path);
        goto done;
    }
    if (fstat(fileno(f), &st) != 0) {
        err_set(err, errlen, "%s: %s", path, strerror(errno));
        goto done;
    }
    Source s = {.fd = -1, .stream = f, .name = path, .size = (uint64_t)st.st_size};
    for (uint64_t off = 0, next; off < s.size; off = next) {
        if (read_record(&s, off, &buf, &cap, &len, &next, err, errlen) != 0) goto done;
        int r = fn(ctx, off, buf, len, err, errlen);
        if (r < 0) goto done;
        if (r > 0) break;
    }
    rc = 0;
done:
    fclose(f);
    free(iobuf);
    free(buf);
    return rc;
}

/* ---- record content -------------------------------------------------------- */

int rec_parse(const uint8_t *rec, size_t len, IRHeader *h, const float **labels,
              const uint8_t **payload, size_t *payload_len, char *err, size_t errlen) {
    if (len < REC_HEADER_SIZE)
        return err_set(err, errlen, "record of %zu bytes is shorter than the 24-byte IRHeader", len);
    memcpy(&h->flag, rec, 4);
    memcpy(&h->label, rec + 4, 4);
    memcpy(&h->id, rec + 8, 8);
    memcpy(&h->id2, rec + 16, 8);
    uint64_t label_bytes = 4 * (uint64_t)h->flag;
    if (label_bytes > len - REC_HEADER_SIZE)
        return err_set(err, errlen,
                    "IRHeader flag %u needs %llu bytes of labels but the record has %zu bytes after "
                    "its header",
                    h->flag, (ull)label_bytes, len - REC_HEADER_SIZE);
    if (labels) labels[0] = h->flag ? (const float *)(const void *)(rec + REC_HEADER_SIZE) : NULL;
    if (payload) *payload = rec + REC_HEADER_SIZE + label_bytes;
    if (payload_len) *payload_len = len - REC_HEADER_SIZE - (size_t)label_bytes;
    return 0;
}

size_t rec_packed_size(const IRHeader *h, size_t payload_len) {
    return REC_HEADER_SIZE + 4 * (size_t)h->flag + payload_len;
}

void rec_pack(uint8_t *out, const IRHeader *h, const float *labels, const void *payload,
              size_t payload_len) {
    memcpy(out, &h->flag, 4);
    memcpy(out + 4, &h->label, 4);
    memcpy(out + 8, &h->id, 8);
    memcpy(out + 16, &h->id2, 8);
    size_t nl = 4 * (size_t)h->flag;
    if (nl) memcpy(out + REC_HEADER_SIZE, labels, nl);
    if (payload_len) memcpy(out + REC_HEADER_SIZE + nl, payload, payload_len);
}

/* A float label that must be a whole non-negative number (class id or key). */
static int float_to_u64(float v, uint64_t *out) {
    if (!(v >= 0.0f) || !isfinite(v) || floorf(v) != v || v >= 18446744073709551616.0f) return -1;
    *out = (uint64_t)v;
    return 0;
}

/* ---- the index --------------------------------------------------------------- */

typedef struct {
    uint64_t key, offset;
} KeyOffset;

struct RecReader {
    char *path, *idx_path;
    int fd;
    uint64_t size;      /* of the .rec */
    size_t n_keys;      /* .idx lines */
    uint64_t *by_key;   /* dense keys: offset of key k, NO_OFFSET when absent */
    uint64_t table_len; /* entries of by_key */
    KeyOffset *sorted;  /* sparse keys: sorted by key */
    uint64_t *line_keys; /* keys in .idx line order (kept for the im2rec layout) */
    size_t n_images;
    int has_header;
    uint64_t id_first, id_end;
    int64_t num_classes;
};

static int parse_u64(const char **p, const char *end, uint64_t *v) {
    const char *s = *p;
    uint64_t x = 0;
    if (s == end || *s < '0' || *s > '9') return -1;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10) return -2;
        x = x * 10 + d;
    }
    *p = s;
    *v = x;
    return 0;
}

/* Parses "key\toffset" (line without its '\n'); on failure returns what is wrong. */
static const char *parse_idx_line(const char *line, size_t n, uint64_t *key, uint64_t *offset) {
    const char *p = line, *end = line + n;
    if (n && end[-1] == '\r') end--;
    if (p == end) return "empty line";
    int rc = parse_u64(&p, end, key);
    if (rc == -1) return "the key is not an unsigned integer";
    if (rc == -2) return "the key does not fit in 64 bits";
    if (p == end || *p != '\t') return "expected a tab after the key";
    p++;
    rc = parse_u64(&p, end, offset);
    if (rc == -1) return "the offset is not an unsigned integer";
    if (rc == -2) return "the offset does not fit in 64 bits";
    if (p != end) return "unexpected text after the offset";
    return NULL;
}

/* The start of a line for a message: printable ASCII, tabs shown as \t. */
static void quote_line(char *dst, size_t cap, const char *line, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < cap && i < 48; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == '\n' || c == '\r') break;
        if (c == '\t') {
            dst[o++] = '\\';
            dst[o++] = 't';
        } else {
            dst[o++] = (c >= 32 && c < 127) ? (char)c : '?';
        }
    }
    dst[o] = '\0';
}

/* Line numbers of the first and second occurrence of key (error path only). */
static void find_duplicate_lines(const char *idx_path, uint64_t key, size_t *first, size_t *second) {
    *first = *second = 0;
    FILE *f = fopen(idx_path, "r");
    if (!f) return;
    char *line = NULL;
    size_t lcap = 0, lineno = 0;
    ssize_t n;
    while ((n = getline(&line, &lcap, f)) > 0) {
        lineno++;
        uint64_t k, off;
        if (parse_idx_line(line, (size_t)n - (line[n - 1] == '\n'), &k, &off) || k != key) continue;
        if (!*first) {
            *first = lineno;
        } else {
            *second = lineno;
            break;
        }
    }
    free(line);
    fclose(f);
}

/* One pass over the .idx: pass 1 validates and counts, pass 2 fills the tables. */
static int idx_pass(RecReader *r, FILE *f, int pass, uint64_t *max_key, char *err, size_t errlen) {
    char *line = NULL;
    size_t lcap = 0, lineno = 0, count = 0;
    ssize_t n;
    int rc = -1;
    while ((n = getline(&line, &lcap, f)) > 0) {
        lineno++;
        size_t m = (size_t)n - (line[n - 1] == '\n');
        uint64_t key, off;
        const char *why = parse_idx_line(line, m, &key, &off);
        if (why) {
            char q[128];
            quote_line(q, sizeof q, line, m);
            err_set(err, errlen, "%s line %zu: %s: '%s' (expected 'key<TAB>offset')", r->idx_path, lineno,
                 why, q);
            goto done;
        }
        if (off >= r->size) {
            err_set(err, errlen, "%s line %zu: offset %llu past the end of %s (%llu bytes)", r->idx_path,
                 lineno, (ull)off, r->path, (ull)r->size);
            goto done;
        }
        if (pass == 1) {
            if (key > *max_key) *max_key = key;
        } else {
            if (count >= r->n_keys) {
                err_set(err, errlen, "%s: the file changed while it was read", r->idx_path);
                goto done;
            }
            if (r->by_key) {
                if (r->by_key[key] != NO_OFFSET) {
                    size_t first, second;
                    find_duplicate_lines(r->idx_path, key, &first, &second);
                    err_set(err, errlen, "%s line %zu: duplicate key %llu (first on line %zu)", r->idx_path,
                         lineno, (ull)key, first);
                    goto done;
                }
                r->by_key[key] = off;
            } else {
                r->sorted[count] = (KeyOffset){key, off};
            }
            r->line_keys[count] = key;
        }
        count++;
    }
    if (ferror(f)) {
        err_set(err, errlen, "%s: read error: %s", r->idx_path, strerror(errno));
        goto done;
    }
    if (pass == 1) r->n_keys = count;
    rc = 0;
done:
    free(line);
    return rc;
}

static int cmp_key(const void *a, const void *b) {
    uint64_t x = ((const KeyOffset *)a)->key, y = ((const KeyOffset *)b)->key;
    return (x > y) - (x < y);
}

static int load_index(RecReader *r, char *err, size_t errlen) {
    FILE *f = fopen(r->idx_path, "r");
    if (!f) return err_set(err, errlen, "%s: %s", r->idx_path, strerror(errno));
    int rc = -1;
    uint64_t max_key = 0;
    if (idx_pass(r, f, 1, &max_key, err, errlen) != 0) goto done;
    if (r->n_keys == 0) {
        err_set(err, errlen, "%s: empty index (no 'key<TAB>offset' lines)", r->idx_path);
        goto done;
    }
    /* insightface keys are 0..n-1: a table indexed by key; anything sparser is sorted. */
    if (max_key / 2 <= r->n_keys + 512) {
        r->table_len = max_key + 1;
        r->by_key = malloc(r->table_len * sizeof *r->by_key);
        if (r->by_key) memset(r->by_key, 0xff, r->table_len * sizeof *r->by_key);
    } else {
        r->sorted = malloc(r->n_keys * sizeof *r->sorted);
    }
    r->line_keys = malloc(r->n_keys * sizeof *r->line_keys);
    if ((!r->by_key && !r->sorted) || !r->line_keys) {
        err_set(err, errlen, "%s: out of memory for %zu index entries", r->idx_path, r->n_keys);
        goto done;
    }
    rewind(f);
    if (idx_pass(r, f, 2, &max_key, err, errlen) != 0) goto done;
    if (r->sorted) {
        qsort(r->sorted, r->n_keys, sizeof *r->sorted, cmp_key);
        for (size_t i = 1; i < r->n_keys; i++) {
            if (r->sorted[i].key != r->sorted[i - 1].key) continue;
            size_t first, second;
            find_duplicate_lines(r->idx_path, r->sorted[i].key, &first, &second);
            err_set(err, errlen, "%s line %zu: duplicate key %llu (first on line %zu)", r->idx_path, second,
                 (ull)r->sorted[i].key, first);
            goto done;
        }
    }
    rc = 0;
done:
    fclose(f);
    return rc;
}

static int lookup(const RecReader *r, uint64_t key, uint64_t *offset) {
    if (r->by_key) {
        if (key >= r->table_len || r->by_key[key] == NO_OFFSET) return 0;
        *offset = r->by_key[key];
        return 1;
    }
    size_t lo = 0, hi = r->n_keys;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->sorted[mid].key < key) lo = mid + 1;
        else hi = mid;
    }
    if (lo == r->n_keys || r->sorted[lo].key != key) return 0;
    *offset = r->sorted[lo].offset;
    return 1;
}

/* First line of `property` beside the .rec: "num_classes,height,width". */
static int load_property(RecReader *r, char *err, size_t errlen) {
    const char *slash = strrchr(r->path, '/');
    size_t dirlen = slash ? (size_t)(slash - r->path) + 1 : 0;
    char *path = malloc(dirlen + sizeof "property");
    if (!path) return err_set(err, errlen, "out of memory");
    memcpy(path, r->path, dirlen);
    memcpy(path + dirlen, "property", sizeof "property");
    int rc = -1;
    char *line = NULL;
    size_t lcap = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        rc = errno == ENOENT ? 0 : err_set(err, errlen, "%s: %s", path, strerror(errno));
        goto done;
    }
    ssize_t n = getline(&line, &lcap, f);
    uint64_t classes = 0, h = 0, w = 0;
    const char *p = line, *end = line + (n > 0 ? n : 0);
    while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ')) end--;
    if (n <= 0 || parse_u64(&p, end, &classes) || p == end || *p++ != ',' || parse_u64(&p, end, &h) ||
        p == end || *p++ != ',' || parse_u64(&p, end, &w) || p != end || classes == 0 ||
        classes > INT64_MAX) {
        char q[128];
        quote_line(q, sizeof q, n > 0 ? line : "", n > 0 ? (size_t)n : 0);
        err_set(err, errlen, "%s line 1: expected 'num_classes,height,width' (e.g. 85742,112,112), got '%s'",
             path, q);
        goto done;
    }
    r->num_classes = (int64_t)classes;
    rc = 0;
done:
    if (f) fclose(f);
    free(line);
    free(path);
    return rc;
}

/* Reads record 0 and decides the layout (insightface header or all images). */
static int load_layout(RecReader *r, char *err, size_t errlen) {
    uint64_t off0;
    r->n_images = r->n_keys;
    if (!lookup(r, 0, &off0)) return 0; /* no record 0: every key is an image */
    uint8_t *buf = NULL;
    size_t cap = 0, len;
    int rc = -1;
    IRHeader h;
    const float *labels;
    char why[256];
    if (rec_read_record_at(r->fd, r->path, r->size, off0, &buf, &cap, &len, NULL, err, errlen) != 0) {
        append_key(err, errlen, 0);
        goto done;
    }
    if (rec_parse(buf, len, &h, &labels, NULL, NULL, why, sizeof why) != 0) {
        err_set(err, errlen, "%s: record at offset %llu (key 0): %s", r->path, (ull)off0, why);
        goto done;
    }
    if (h.flag == 0) {
        rc = 0;
        goto done;
    }
    float lab[2] = {0, 0};
    memcpy(lab, labels, h.flag >= 2 ? 8 : 4);
    uint64_t a, b;
    if (h.flag < 2 || float_to_u64(lab[0], &a) || float_to_u64(lab[1], &b) || a < 1 || b < a) {
        err_set(err, errlen,
             "%s: record at offset %llu (key 0): an insightface header needs flag >= 2 and labels "
             "[first identity key >= 1, end key], got flag %u labels [%g, %g]",
             r->path, (ull)off0, h.flag, (double)lab[0], h.flag >= 2 ? (double)lab[1] : 0.0);
        goto done;
    }
    r->has_header = 1;
    r->id_first = a;
    r->id_end = b;
    if (a - 1 >= r->n_keys) {
        err_set(err, errlen, "%s: record 0 says images are keys 1..%llu but %s has only %zu lines", r->path,
             (ull)(a - 1), r->idx_path, r->n_keys);
        goto done;
    }
    r->n_images = (size_t)(a - 1);
    for (uint64_t k = 1, off; k < a; k++) {
        if (!lookup(r, k, &off)) {
            err_set(err, errlen, "%s: record 0 says images are keys 1..%llu but key %llu is not in %s",
                 r->path, (ull)(a - 1), (ull)k, r->idx_path);
            goto done;
        }
    }
    free(r->line_keys); /* image i is key i + 1 */
    r->line_keys = NULL;
    rc = 0;
done:
    free(buf);
    return rc;
}

static char *default_idx_path(const char *rec) {
    size_t n = strlen(rec);
    int ext = n >= 4 && strcmp(rec + n - 4, ".rec") == 0;
    char *p = malloc(n + 5);
    if (!p) return NULL;
    memcpy(p, rec, n - (ext ? 4 : 0));
    memcpy(p + n - (ext ? 4 : 0), ".idx", 5);
    return p;
}

int rec_open(RecReader **out, const char *path, const char *idx_path, char *err, size_t errlen) {
    *out = NULL;
    RecReader *r = calloc(1, sizeof *r);
    if (!r) return err_set(err, errlen, "%s: out of memory", path);
    r->fd = -1;
    r->num_classes = -1;
    r->path = strdup(path);
    r->idx_path = idx_path ? strdup(idx_path) : default_idx_path(path);
    if (!r->path || !r->idx_path) {
        err_set(err, errlen, "%s: out of memory", path);
        goto error;
    }
    struct stat st;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0 || fstat(r->fd, &st) != 0) {
        err_set(err, errlen, "%s: %s", path, strerror(errno));
        goto error;
    }
    r->size = (uint64_t)st.st_size;
    if (load_index(r, err, errlen) != 0 || load_layout(r, err, errlen) != 0 ||
        load_property(r, err, errlen) != 0)
        goto error;
    if (r->num_classes < 0 && r->has_header) r->num_classes = (int64_t)(r->id_end - r->id_first);
    *out = r;
    return 0;
error:
    rec_close(&r);
    return -1;
}

void rec_close(RecReader **pr) {
    RecReader *r = pr ? *pr : NULL;
    if (!r) return;
    if (r->fd >= 0) close(r->fd);
    free(r->path);
    free(r->idx_path);
    free(r->by_key);
    free(r->sorted);
    free(r->line_keys);
    free(r);
    *pr = NULL;
}

size_t rec_num_images(const RecReader *r) { return r->n_images; }
int64_t rec_num_classes(const RecReader *r) { return r->num_classes; }
const char *rec_reader_path(const RecReader *r) { return r->path; }
const char *rec_reader_idx_path(const RecReader *r) { return r->idx_path; }

uint64_t rec_image_key(const RecReader *r, size_t i) {
    return r->line_keys ? r->line_keys[i] : (uint64_t)i + 1;
}

int rec_identity_range(const RecReader *r, uint64_t *first, uint64_t *end) {
    if (!r->has_header) return 0;
    *first = r->id_first;
    *end = r->id_end;
    return 1;
}

static int read_key(RecReader *r, uint64_t key, uint8_t **buf, size_t *cap, size_t *len, uint64_t *off,
                    char *err, size_t errlen) {
    if (!lookup(r, key, off))
        return err_set(err, errlen, "%s: key %llu is not in %s", r->path, (ull)key, r->idx_path);
    if (rec_read_record_at(r->fd, r->path, r->size, *off, buf, cap, len, NULL, err, errlen) != 0) {
        append_key(err, errlen, key);
        return -1;
    }
    return 0;
}

int rec_read_key(RecReader *r, uint64_t key, uint8_t **buf, size_t *cap, size_t *len, char *err,
                 size_t errlen) {
    uint64_t off;
    return read_key(r, key, buf, cap, len, &off, err, errlen);
}

int rec_read_image(RecReader *r, size_t i, uint8_t **buf, size_t *cap, const uint8_t **jpeg,
                   size_t *jpeg_len, int64_t *label, char *err, size_t errlen) {
    if (i >= r->n_images)
        return err_set(err, errlen, "%s: image %zu outside [0, %zu)", r->path, i, r->n_images);
    uint64_t key = rec_image_key(r, i), off;
    size_t len;
    if (read_key(r, key, buf, cap, &len, &off, err, errlen) != 0) return -1;
    IRHeader h;
    const float *labels;
    char why[256];
    if (rec_parse(*buf, len, &h, &labels, jpeg, jpeg_len, why, sizeof why) != 0)
        return err_set(err, errlen, "%s: record at offset %llu (key %llu): %s", r->path, (ull)off, (ull)key,
                    why);
    float value = h.label;
    if (h.flag) memcpy(&value, labels, 4);
    uint64_t cls;
    if (float_to_u64(value, &cls) != 0 || cls > INT64_MAX)
        return err_set(err, errlen,
                    "%s: record at offset %llu (key %llu): label %g is not a class id (a whole number "
                    ">= 0)",
                    r->path, (ull)off, (ull)key, (double)value);
    if (r->num_classes > 0 && (int64_t)cls >= r->num_classes)
        return err_set(err, errlen, "%s: record at offset %llu (key %llu): label %llu outside [0, %lld)",
                    r->path, (ull)off, (ull)key, (ull)cls, (long long)r->num_classes);
    if (*jpeg_len == 0)
        return err_set(err, errlen, "%s: record at offset %llu (key %llu): no image bytes", r->path,
                    (ull)off, (ull)key);
    *label = (int64_t)cls;
    return 0;
}

/* ---- writer -------------------------------------------------------------------- */

struct RecWriter {
    char *path, *idx_path, *tmp, *idx_tmp;
    FILE *rec, *idx;
    char *iobuf;
    uint64_t offset;
    uint8_t *buf;
    size_t cap;
};

static char *tmp_name(const char *path) {
    size_t n = strlen(path) + 32;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s.tmp.%ld", path, (long)getpid());
    return p;
}

int rec_writer_open(RecWriter **out, const char *path, const char *idx_path, char *err,
                    size_t errlen) {
    *out = NULL;
    RecWriter *w = calloc(1, sizeof *w);
    if (!w) return err_set(err, errlen, "%s: out of memory", path);
    w->path = strdup(path);
    w->idx_path = idx_path ? strdup(idx_path) : default_idx_path(path);
    w->tmp = tmp_name(path);
    w->idx_tmp = w->idx_path ? tmp_name(w->idx_path) : NULL;
    w->iobuf = malloc(WRITE_BUFFER);
    if (!w->path || !w->idx_path || !w->tmp || !w->idx_tmp || !w->iobuf) {
        err_set(err, errlen, "%s: out of memory", path);
        goto error;
    }
    w->rec = fopen(w->tmp, "wb");
    if (!w->rec) {
        err_set(err, errlen, "%s: %s", w->tmp, strerror(errno));
        goto error;
    }
    setvbuf(w->rec, w->iobuf, _IOFBF, WRITE_BUFFER);
    w->idx = fopen(w->idx_tmp, "w");
    if (!w->idx) {
        err_set(err, errlen, "%s: %s", w->idx_tmp, strerror(errno));
        goto error;
    }
    *out = w;
    return 0;
error:
    rec_writer_close(&w, 0, NULL, 0);
    return -1;
}

uint64_t rec_writer_offset(const RecWriter *w) { return w->offset; }

int rec_writer_add_raw(RecWriter *w, uint64_t key, const void *data, size_t len, char *err,
                       size_t errlen) {
    uint64_t written;
    char why[256];
    if (frame_write(w->rec, data, len, &written, why, sizeof why) != 0)
        return err_set(err, errlen, "%s: record at offset %llu (key %llu): %s", w->tmp, (ull)w->offset,
                    (ull)key, why);
    if (fprintf(w->idx, "%llu\t%llu\n", (ull)key, (ull)w->offset) < 0)
        return err_set(err, errlen, "%s: write error: %s", w->idx_tmp, strerror(errno));
    w->offset += written;
    return 0;
}

int rec_writer_add(RecWriter *w, uint64_t key, const IRHeader *h, const float *labels,
                   const void *payload, size_t payload_len, char *err, size_t errlen) {
    if (h->flag && !labels)
        return err_set(err, errlen, "%s: key %llu: IRHeader flag %u without labels", w->path, (ull)key,
                    h->flag);
    if (payload_len >= REC_MAX_RECORD || 4 * (uint64_t)h->flag >= REC_MAX_RECORD ||
        rec_packed_size(h, payload_len) >= REC_MAX_RECORD)
        return err_set(err, errlen,
                    "%s: key %llu: record of %llu bytes: RecordIO records must be shorter than 2^29 "
                    "bytes",
                    w->path, (ull)key, (ull)(REC_HEADER_SIZE + 4 * (uint64_t)h->flag + payload_len));
    size_t n = rec_packed_size(h, payload_len);
    if (grow(&w->buf, &w->cap, n) != 0)
        return err_set(err, errlen, "%s: key %llu: out of memory", w->path, (ull)key);
    rec_pack(w->buf, h, labels, payload, payload_len);
    return rec_writer_add_raw(w, key, w->buf, n, err, errlen);
}

/* Flushes, syncs and closes *f (set to NULL); 0, or -1 with errno set. */
static int finish_file(FILE **f) {
    FILE *fp = *f;
    *f = NULL;
    int ok = fflush(fp) == 0 && !ferror(fp) && fsync(fileno(fp)) == 0;
    int saved = errno;
    if (fclose(fp) != 0) return -1;
    errno = saved;
    return ok ? 0 : -1;
}

int rec_writer_close(RecWriter **pw, int commit, char *err, size_t errlen) {
    RecWriter *w = pw ? *pw : NULL;
    if (!w) return 0;
    int rc = 0, rec_placed = 0;
    if (commit) {
        if (finish_file(&w->rec) != 0)
            rc = err_set(err, errlen, "%s: write error: %s", w->tmp, strerror(errno));
        else if (finish_file(&w->idx) != 0)
            rc = err_set(err, errlen, "%s: write error: %s", w->idx_tmp, strerror(errno));
        else if (rename(w->tmp, w->path) != 0)
            rc = err_set(err, errlen, "cannot rename %s to %s: %s", w->tmp, w->path, strerror(errno));
        else if ((rec_placed = 1, rename(w->idx_tmp, w->idx_path) != 0))
            rc = err_set(err, errlen, "cannot rename %s to %s: %s (%s is already in place, without its index)",
                      w->idx_tmp, w->idx_path, strerror(errno), w->path);
    }
    if (w->rec) fclose(w->rec);
    if (w->idx) fclose(w->idx);
    if (!commit || rc != 0) {
        if (w->tmp && !rec_placed) unlink(w->tmp);
        if (w->idx_tmp) unlink(w->idx_tmp);
    }
    free(w->path);
    free(w->idx_path);
    free(w->tmp);
    free(w->idx_tmp);
    free(w->iobuf);
    free(w->buf);
    free(w);
    *pw = NULL;
    return rc;
}
