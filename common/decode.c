/* decode.c -- format detection, JPEG through TurboJPEG, binary PGM/PPM, the
 * centred-crop area/bilinear resize to 112x112, and whole-file reading. PNG is
 * in png_decode.c. */
#include "decode.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "err.h"
#include "png_decode.h"
#include "synthetic.h"

/* Grows *buf to hold need bytes; its content is not kept. */
static int reserve(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap && *buf) return 0;
    uint8_t *p = malloc(need ? need : 1);
    if (!p) return -1;
    free(*buf);
    *buf = p;
    *cap = need;
    return 0;
}

static int size_ok(int64_t w, int64_t h) {
    return w >= 1 && h >= 1 && w <= DECODE_MAX_SIDE && h <= DECODE_MAX_SIDE && w * h <= DECODE_MAX_PIXELS;
}

void decode_image_free(DecodedImage *img) {
    if (!img) return;
    if (img->tj) tjDestroy(img->tj);
    free(img->rgb);
    free(img->work);
    free(img->raw);
    memset(img, 0, sizeof *img);
}

/* ---- JPEG ---------------------------------------------------------------- */

/* TurboJPEG 2.1 leaves a handle mid-header after a failed
 * tjDecompressHeader3 (the next image then fails with "Bogus DQT index" and
 * the like), so a handle that reported an error is replaced. */
static int jpeg_fail(DecodedImage *img) {
    tjDestroy(img->tj);
    img->tj = NULL;
    return -1;
}

static int jpeg_decode(const uint8_t *data, size_t len, DecodedImage *img, char *err, size_t errlen) {
    if (!img->tj) {
        img->tj = tjInitDecompress();
        if (!img->tj) return err_set(err, errlen, "cannot create a TurboJPEG decompressor: %s", tjGetErrorStr2(NULL));
    }
    tjhandle tj = img->tj;
    int w, h, subsamp, colourspace;
    if (tjDecompressHeader3(tj, data, (unsigned long)len, &w, &h, &subsamp, &colourspace) != 0) {
        err_set(err, errlen, "JPEG header: %s (corrupt or truncated file)", tjGetErrorStr2(tj));
        return jpeg_fail(img);
    }
    if (!size_ok(w, h))
        return err_set(err, errlen, "JPEG is %dx%d pixels: over the limit of %d per side and %lld Mpixel", w, h,
                    DECODE_MAX_SIDE, DECODE_MAX_PIXELS >> 20);
    size_t n = (size_t)w * (size_t)h;
    int cmyk = colourspace == TJCS_CMYK || colourspace == TJCS_YCCK;
    if (reserve(&img->rgb, &img->rgb_cap, n * 3) || (cmyk && reserve(&img->work, &img->work_cap, n * 4)))
        return err_set(err, errlen, "out of memory for a %dx%d JPEG", w, h);
    /* Warnings (truncated data, corrupt entropy-coded data) stop decoding and
     * are errors: the alternative is an image whose lower part is grey. */
    const int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
    int rc = cmyk ? tjDecompress2(tj, data, (unsigned long)len, img->work, w, 0, h, TJPF_CMYK, flags)
                  : tjDecompress2(tj, data, (unsigned long)len, img->rgb, w, 0, h, TJPF_RGB, flags);
    if (rc != 0) {
        int fatal = tjGetErrorCode(tj) == TJERR_FATAL;
        err_set(err, errlen, "JPEG %s: %s (corrupt or truncated file)", fatal ? "decoding failed" : "data is damaged",
             tjGetErrorStr2(tj));
        return jpeg_fail(img);
    }
    if (cmyk) { /* Adobe's inverted CMYK: 255 means no ink */
        const uint8_t *s = img->work;
        uint8_t *d = img->rgb;
        for (size_t i = 0; i < n; i++, s += 4, d += 3) {
            unsigned k = s[3];
            d[0] = (uint8_t)((s[0] * k + 127) / 255);
            d[1] = (uint8_t)((s[1] * k + 127) / 255);
            d[2] = (uint8_t)((s[2] * k + 127) / 255);
        }
    }
    img->width = w;
    img->height = h;
    img->grey = colourspace == TJCS_GRAY;
    return 0;
}

/* ---- PGM / PPM ----------------------------------------------------------- */

static int pnm_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Reads one header number at *pos, after whitespace and # comments. */
static int pnm_number(const uint8_t *data, size_t len, size_t *pos, uint32_t *v) {
    size_t i = *pos;
    for (;;) {
        while (i < len && pnm_space(data[i])) i++;
        if (i < len && data[i] == '#') {
            while (i < len && data[i] != '\n' && data[i] != '\r') i++;
            continue;
        }
        break;
    }
    if (i >= len || data[i] < '0' || data[i] > '9') return -1;
    uint64_t x = 0;
    while (i < len && data[i] >= '0' && data[i] <= '9') {
        x = x * 10 + (uint64_t)(data[i++] - '0');
        if (x > 0x7fffffffu) return -1;
    }
    *v = (uint32_t)x;
    *pos = i;
    return 0;
}

static int pnm_decode(const uint8_t *data, size_t len, DecodedImage *img, char *err, size_t errlen) {
    const int channels = data[1] == '6' ? 3 : 1;
    const char *kind = channels == 3 ? "PPM" : "PGM";
    size_t pos = 2;
    uint32_t w, h, maxval;
    if (pnm_number(data, len, &pos, &w) || pnm_number(data, len, &pos, &h) || pnm_number(data, len, &pos, &maxval))
        return err_set(err, errlen, "%s header: width, height and maxval not found (corrupt or truncated)", kind);
    if (pos >= len || !pnm_space(data[pos]))
        return err_set(err, errlen, "%s header: no whitespace after maxval (corrupt or truncated)", kind);
    pos++;
    if (w == 0 || h == 0) return err_set(err, errlen, "%s is %ux%u pixels (corrupt)", kind, w, h);
    if (!size_ok(w, h))
        return err_set(err, errlen, "%s is %ux%u pixels: over the limit of %d per side and %lld Mpixel", kind, w, h,
                    DECODE_MAX_SIDE, DECODE_MAX_PIXELS >> 20);
    if (maxval == 0 || maxval > 65535) return err_set(err, errlen, "%s maxval %u is not in 1..65535", kind, maxval);
    const size_t bytes = maxval > 255 ? 2 : 1;
    const size_t n = (size_t)w * h * (size_t)channels;
    if (len - pos < n * bytes)
        return err_set(err, errlen, "%s data ends after %zu of %zu pixel bytes: truncated file", kind, len - pos,
                    n * bytes);
    if (reserve(&img->rgb, &img->rgb_cap, (size_t)w * h * 3))
        return err_set(err, errlen, "out of memory for a %ux%u %s", w, h, kind);
    const uint8_t *s = data + pos;
    uint8_t *d = img->rgb;
    size_t bad = SIZE_MAX;
    if (bytes == 1) {
        uint8_t lut[256];
        for (unsigned v = 0; v < 256; v++) lut[v] = (uint8_t)(v <= maxval ? (v * 255 + maxval / 2) / maxval : 0);
        for (size_t i = 0; i < n; i++) {
            if (s[i] > maxval && bad == SIZE_MAX) bad = i;
            uint8_t v = lut[s[i]];
            if (channels == 1) d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = v;
            else d[i] = v;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint32_t v = (uint32_t)s[2 * i] << 8 | s[2 * i + 1];
            if (v > maxval && bad == SIZE_MAX) bad = i;
            uint8_t o = (uint8_t)(v <= maxval ? (v * 255 + maxval / 2) / maxval : 0);
            if (channels == 1) d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = o;
            else d[i] = o;
        }
    }
    if (bad != SIZE_MAX)
        return err_set(err, errlen, "%s sample %zu is above maxval %u (corrupt)", kind, bad, maxval);
    img->width = (int)w;
    img->height = (int)h;
    img->grey = channels == 1;
    return 0;
}

/* ---- format detection ---------------------------------------------------- */

int decode_image(const uint8_t *data, size_t len, DecodedImage *img, char *err, size_t errlen) {
    if (len == 0) return err_set(err, errlen, "empty image (0 bytes)");
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return jpeg_decode(data, len, img, err, errlen);
    if (len >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0) return png_decode(data, len, img, err, errlen);
    if (len >= 3 && data[0] == 'P' && (data[1] == '5' || data[1] == '6') && pnm_space(data[2]))
        return pnm_decode(data, len, img, err, errlen);
    char hex[40] = "";
    for (size_t i = 0, used = 0; i < len && i < 8; i++)
        used += (size_t)snprintf(hex + used, sizeof hex - used, "%s%02x", i ? " " : "", data[i]);
    const char *guess = "";
    if (len >= 4 && memcmp(data, "GIF8", 4) == 0) guess = ": GIF";
    else if (len >= 2 && memcmp(data, "BM", 2) == 0) guess = ": BMP?";
    else if (len >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0) guess = ": WebP";
    else if (len >= 4 && (memcmp(data, "II*\0", 4) == 0 || memcmp(data, "MM\0*", 4) == 0)) guess = ": TIFF";
    else if (len >= 2 && data[0] == 'P' && data[1] >= '1' && data[1] <= '4') guess = ": plain or 1-bit PNM";
    else if (len >= 2 && data[0] == 0xFF && data[1] == 0xD8) guess = ": damaged JPEG?";
    return err_set(err, errlen, "unsupported image format (first bytes %s%s; JPEG, PNG and binary PGM/PPM are "
                "supported)", hex, guess);
}

/* ---- crop and resize ----------------------------------------------------- */

/* Source taps of one output pixel along one axis: source pixels first .. last
 * with weights w_first, 1 (in between), w_last (w_first alone when
 * first == last), all scaled by norm. */
typedef struct {
    int first, last;
    float w_first, w_last;
} Taps;

/* Taps of the n = 112 outputs along an axis of `size` source pixels, for the
 * window [start, start + side). */
static float axis_taps(Taps *t, int size, double start, int side) {
    const int n = FACE_SIZE;
    const double scale = (double)side / n;
    if (side >= n) { /* area average: pixel i covers [i, i + 1) */
        for (int j = 0; j < n; j++) {
            /* (j * side) / n is exact whenever it is an integer */
            double a = start + (double)(j * side) / n, b = start + (double)((j + 1) * side) / n;
            int first = (int)floor(a), last = (int)ceil(b) - 1;
            if (first < 0) first = 0;
            if (last > size - 1) last = size - 1;
            if (last < first) last = first;
            t[j].first = first;
            t[j].last = last;
            if (first == last) {
                t[j].w_first = (float)(b - a);
                t[j].w_last = 0;
            } else {
                t[j].w_first = (float)(first + 1 - a);
                t[j].w_last = (float)(b - last);
            }
        }
        return (float)(1.0 / scale);
    }
    for (int j = 0; j < n; j++) { /* bilinear between pixel centres */
        double u = start + (j + 0.5) * scale - 0.5;
        if (u < 0) u = 0;
        if (u > size - 1) u = size - 1;
        int i0 = (int)floor(u);
        double f = u - i0;
        if (i0 >= size - 1 || f == 0) {
            t[j].first = t[j].last = i0;
            t[j].w_first = 1;
            t[j].w_last = 0;
        } else {
            t[j].first = i0;
            t[j].last = i0 + 1;
            t[j].w_first = (float)(1 - f);
            t[j].w_last = (float)f;
        }
    }
    return 1.0f;
}

/* Source columns per pass of the vertical filter: its float row buffer stays
 * on the stack (an output pixel's taps span at most 16384/112 + 2 columns). */
#define SPAN_MAX 1024

/* Vertical filter of source rows t->first .. t->last over n contiguous bytes
 * starting at src (stride bytes per row) into col. */
static void vertical(float *col, const uint8_t *src, size_t stride, const Taps *t, int n) {
    const uint8_t *p = src + (size_t)t->first * stride;
    const float wf = t->w_first;
    for (int k = 0; k < n; k++) col[k] = wf * p[k];
    if (t->last == t->first) return;
    for (int y = t->first + 1; y < t->last; y++) {
        p += stride;
        for (int k = 0; k < n; k++) col[k] += p[k];
    }
    p = src + (size_t)t->last * stride;
    const float wl = t->w_last;
    for (int k = 0; k < n; k++) col[k] += wl * p[k];
}

/* Horizontal filter of one channel for one output with taps t; col holds 3
 * floats per pixel, from source column x_first on. */
static inline float horizontal(const float *col, const Taps *t, int x_first) {
    const float *p = col + (size_t)(t->first - x_first) * 3;
    float v = t->w_first * p[0];
    if (t->last == t->first) return v;
    for (int i = t->first + 1; i < t->last; i++) v += p[3 * (i - t->first)];
    return v + t->w_last * p[3 * (t->last - t->first)];
}

static inline uint8_t to_byte(float v) {
    v += 0.5f;
    return (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : (int)v);
}

void resize_to_face(uint8_t *rgb112, const DecodedImage *img, float crop_fraction) {
    const int w = img->width, h = img->height, n = FACE_SIZE;
    const int small = w < h ? w : h;
    int side = (int)lround((double)crop_fraction * small);
    side = side < 1 ? 1 : side > small ? small : side;
    if (w == n && h == n && side == n) {
        memcpy(rgb112, img->rgb, (size_t)n * n * 3);
        return;
    }
    Taps tx[FACE_SIZE], ty[FACE_SIZE];
    const float norm = axis_taps(tx, w, (w - side) / 2.0, side) * axis_taps(ty, h, (h - side) / 2.0, side);
    float col[SPAN_MAX * 3];
    const size_t stride = (size_t)w * 3;
    for (int j0 = 0, j1; j0 < n; j0 = j1) { /* output columns j0 .. j1 - 1 read source columns x_first .. */
        const int x_first = tx[j0].first;
        for (j1 = j0 + 1; j1 < n && tx[j1].last - x_first < SPAN_MAX; j1++) continue;
        const int span = tx[j1 - 1].last - x_first + 1;
        for (int i = 0; i < n; i++) {
            vertical(col, img->rgb + (size_t)x_first * 3, stride, &ty[i], span * 3);
            uint8_t *o = rgb112 + ((size_t)i * n + (size_t)j0) * 3;
            if (img->grey) {
                for (int j = j0; j < j1; j++, o += 3) o[0] = o[1] = o[2] = to_byte(horizontal(col, &tx[j], x_first) * norm);
            } else {
                for (int j = j0; j < j1; j++, o += 3)
                    for (int c = 0; c < 3; c++) o[c] = to_byte(horizontal(col + c, &tx[j], x_first) * norm);
            }
        }
    }
}

int decode_to_face(const uint8_t *data, size_t len, DecodedImage *scratch, float crop_fraction, uint8_t *rgb112,
                   char *err, size_t errlen) {
    if (decode_image(data, len, scratch, err, errlen)) return -1;
    resize_to_face(rgb112, scratch, crop_fraction);
    return 0;
}

/* ---- files --------------------------------------------------------------- */

int image_load_file(const char *path, uint8_t **buf, size_t *cap, size_t *len, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, errlen, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return err_set(err, errlen, "%s: is a directory, not an image file", path);
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > IMAGE_FILE_MAX) {
        close(fd);
        return err_set(err, errlen, "%s: %lld bytes, over the image file limit of %u MiB", path,
                    (long long)st.st_size, IMAGE_FILE_MAX >> 20);
    }
    /* A regular file is read into a buffer one byte larger than its size, so
     * that growth while reading shows as more data, not as a short read. */
    const size_t limit = (size_t)IMAGE_FILE_MAX + 1;
    size_t want = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 65536, got = 0;
    for (;;) {
        if (*cap < want || !*buf) {
            size_t ncap = want < limit ? want : limit;
            uint8_t *p = realloc(*buf, ncap);
            if (!p) {
                close(fd);
                return err_set(err, errlen, "%s: out of memory for %zu bytes", path, ncap);
            }
            *buf = p;
            *cap = ncap;
        }
        ssize_t r = read(fd, *buf + got, *cap - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return err_set(err, errlen, "%s: read failed after %zu bytes: %s", path, got, strerror(e));
        }
        if (r == 0) break;
        got += (size_t)r;
        if (got > IMAGE_FILE_MAX) {
            close(fd);
            return err_set(err, errlen, "%s: over the image file limit of %u MiB", path, IMAGE_FILE_MAX >> 20);
        }
        if (got == *cap) want = 2 * *cap;
    }
    close(fd);
    *len = got;
    return 0;
}
