/* png_decode.c -- PNG chunks, scanline filters, Adam7 and sample conversion to 8-bit
 * RGB; the zlib data goes to inflate.c. */
#include "png_decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "inflate.h"

/* Deflate's best ratio is 1032:1 (a 258-byte match in 2 bits); an IHDR
 * promising more than that is rejected before anything is allocated. */
#define MAX_DEFLATE_RATIO 1032u

enum { PNG_GREY = 0, PNG_RGB = 2, PNG_PALETTE = 3, PNG_GREY_ALPHA = 4, PNG_RGBA = 6 };

typedef struct {
    uint32_t width, height;
    int depth, colour, interlace, channels;
    int palette_n; /* 0: no PLTE seen */
    uint8_t palette[256 * 3];
} PngInfo;

static const uint32_t CRC_TABLE[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu,
    0xe963a535u, 0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u,
    0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u,
    0xf3b97148u, 0x84be41deu, 0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u,
    0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u,
    0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u, 0xa2677172u,
    0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u,
    0x26d930acu, 0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u,
    0xcfba9599u, 0xb8bda50fu, 0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u,
    0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du, 0x76dc4190u, 0x01db7106u,
    0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu, 0x9fbfe4a5u, 0xe8b8d433u,
    0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du,
    0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u,
    0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u,
    0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u,
    0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au, 0x346ed9fcu, 0xad678846u, 0xda60b8d0u,
    0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u, 0x5005713cu, 0x270241aau,
    0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
    0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au,
    0xead54739u, 0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u,
    0x0d6d6a3eu, 0x7a6a5aa8u, 0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u,
    0xf00f9344u, 0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu,
    0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u, 0x10da7a5au, 0x67dd4accu,
    0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u, 0xa1d1937eu,
    0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u,
    0x316e8eefu, 0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u,
    0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u,
    0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du,
    0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au, 0x9c0906a9u, 0xeb0e363fu,
    0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u,
    0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u,
    0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u,
    0x616bffd3u, 0x166ccf45u, 0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u,
    0xa7672661u, 0xd06016f7u, 0x4969474du, 0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu,
    0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
    0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u, 0xcdd70693u,
    0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
};

uint32_t png_crc32(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = CRC_TABLE[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

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

/* The chunk type as text, or in hex when it is not four letters. */
static void chunk_name(char out[16], const uint8_t *type) {
    int letters = 1;
    for (int i = 0; i < 4; i++)
        letters &= (type[i] >= 'A' && type[i] <= 'Z') || (type[i] >= 'a' && type[i] <= 'z');
    if (letters)
        snprintf(out, 16, "%c%c%c%c", type[0], type[1], type[2], type[3]);
    else
        snprintf(out, 16, "%02x%02x%02x%02x", type[0], type[1], type[2], type[3]);
}

static int parse_ihdr(PngInfo *p, const uint8_t *d, uint32_t len, char *err, size_t errlen) {
    if (len != 13) return err_set(err, errlen, "PNG IHDR chunk has %u bytes, not 13 (corrupt)", len);
    p->width = be32(d);
    p->height = be32(d + 4);
    p->depth = d[8];
    p->colour = d[9];
    p->interlace = d[12];
    if (p->width == 0 || p->height == 0 || p->width > 0x7fffffffu || p->height > 0x7fffffffu)
        return err_set(err, errlen, "PNG IHDR: invalid size %ux%u (corrupt)", p->width, p->height);
    if (p->width > DECODE_MAX_SIDE || p->height > DECODE_MAX_SIDE ||
        (int64_t)p->width * p->height > DECODE_MAX_PIXELS)
        return err_set(err, errlen, "PNG is %ux%u pixels: over the limit of %d per side and %lld Mpixel", p->width,
                    p->height, DECODE_MAX_SIDE, DECODE_MAX_PIXELS >> 20);
    int ok;
    switch (p->colour) {
    case PNG_GREY: ok = p->depth == 1 || p->depth == 2 || p->depth == 4 || p->depth == 8 || p->depth == 16; break;
    case PNG_PALETTE: ok = p->depth == 1 || p->depth == 2 || p->depth == 4 || p->depth == 8; break;
    case PNG_RGB: case PNG_GREY_ALPHA: case PNG_RGBA: ok = p->depth == 8 || p->depth == 16; break;
    default: return err_set(err, errlen, "PNG IHDR: unknown colour type %d (corrupt)", p->colour);
    }
    if (!ok) return err_set(err, errlen, "PNG IHDR: bit depth %d is invalid for colour type %d", p->depth, p->colour);
    if (d[10] != 0 || d[11] != 0)
        return err_set(err, errlen, "PNG IHDR: unknown compression method %d or filter method %d", d[10], d[11]);
    if (p->interlace > 1) return err_set(err, errlen, "PNG IHDR: unknown interlace method %d", p->interlace);
    static const int CHANNELS[7] = {1, 0, 3, 1, 2, 0, 4};
    p->channels = CHANNELS[p->colour];
    return 0;
}

/* Adam7 passes; a non-interlaced image is the single pass {0, 0, 1, 1}. */
static const int PASS_X0[7] = {0, 4, 0, 2, 0, 1, 0}, PASS_Y0[7] = {0, 0, 4, 0, 2, 0, 1};
static const int PASS_DX[7] = {8, 8, 4, 4, 2, 2, 1}, PASS_DY[7] = {8, 8, 8, 4, 4, 2, 2};

static uint32_t pass_extent(uint32_t size, int start, int step) {
    return size > (uint32_t)start ? (size - (uint32_t)start + (uint32_t)step - 1) / (uint32_t)step : 0;
}

static uint64_t row_bytes(const PngInfo *p, uint32_t width) {
    return ((uint64_t)width * (uint64_t)p->channels * (uint64_t)p->depth + 7) / 8;
}

static int paeth(int a, int b, int c) {
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Undoes the filter of one scanline in place; prev is the previous unfiltered
 * scanline of the same pass, NULL for the first (all zeros). */
static void unfilter(uint8_t *row, const uint8_t *prev, size_t n, size_t bpp, int type) {
    size_t i;
    switch (type) {
    case 1:
        for (i = bpp; i < n; i++) row[i] = (uint8_t)(row[i] + row[i - bpp]);
        break;
    case 2:
        if (prev)
            for (i = 0; i < n; i++) row[i] = (uint8_t)(row[i] + prev[i]);
        break;
    case 3:
        if (prev) {
            for (i = 0; i < bpp; i++) row[i] = (uint8_t)(row[i] + (prev[i] >> 1));
            for (; i < n; i++) row[i] = (uint8_t)(row[i] + ((row[i - bpp] + prev[i]) >> 1));
        } else {
            for (i = bpp; i < n; i++) row[i] = (uint8_t)(row[i] + (row[i - bpp] >> 1));
        }
        break;
    case 4:
        if (prev) {
            for (i = 0; i < bpp; i++) row[i] = (uint8_t)(row[i] + prev[i]);
            for (; i < n; i++) row[i] = (uint8_t)(row[i] + paeth(row[i - bpp], prev[i], prev[i - bpp]));
        } else {
            for (i = bpp; i < n; i++) row[i] = (uint8_t)(row[i] + row[i - bpp]);
        }
        break;
    default:
        break;
    }
}

/* Sample x of a row of depth-bit samples (depth < 8), most significant first. */
static inline unsigned subbyte(const uint8_t *row, uint32_t x, int depth) {
    uint32_t bit = x * (uint32_t)depth;
    return (row[bit >> 3] >> (8 - depth - (int)(bit & 7))) & ((1u << depth) - 1);
}

/* Converts the n pixels of an unfiltered scanline to RGB at dst, step bytes
 * apart. Fails only on a palette index past the palette. */
static int convert_row(uint8_t *dst, size_t step, const uint8_t *row, uint32_t n, const PngInfo *p, char *err,
                       size_t errlen) {
    const int d = p->depth;
    const size_t s = d == 16 ? 2 : 1; /* bytes per sample; 16-bit keeps the high (first) byte */
    switch (p->colour) {
    case PNG_GREY:
    case PNG_GREY_ALPHA:
        if (d < 8) {
            const unsigned scale = 255u / ((1u << d) - 1);
            for (uint32_t x = 0; x < n; x++, dst += step) dst[0] = dst[1] = dst[2] = (uint8_t)(subbyte(row, x, d) * scale);
        } else {
            const size_t px = s * (size_t)p->channels;
            for (uint32_t x = 0; x < n; x++, dst += step, row += px) dst[0] = dst[1] = dst[2] = row[0];
        }
        return 0;
    case PNG_RGB:
    case PNG_RGBA: {
        const size_t px = s * (size_t)p->channels;
        for (uint32_t x = 0; x < n; x++, dst += step, row += px) {
            dst[0] = row[0];
            dst[1] = row[s];
            dst[2] = row[2 * s];
        }
        return 0;
    }
    default: /* PNG_PALETTE */
        for (uint32_t x = 0; x < n; x++, dst += step) {
            unsigned i = d == 8 ? row[x] : subbyte(row, x, d);
            if (i >= (unsigned)p->palette_n)
                return err_set(err, errlen, "PNG palette index %u at pixel %u is past the %d-colour palette (corrupt)", i,
                            x, p->palette_n);
            memcpy(dst, p->palette + 3 * i, 3);
        }
        return 0;
    }
}

/* Unfilters the inflated scanlines in raw and converts them to img->rgb. */
static int expand(DecodedImage *img, uint8_t *raw, const PngInfo *p, char *err, size_t errlen) {
    const size_t bpp = (size_t)(p->channels * p->depth + 7) / 8;
    const int passes = p->interlace ? 7 : 1;
    for (int k = 0; k < passes; k++) {
        int x0 = p->interlace ? PASS_X0[k] : 0, y0 = p->interlace ? PASS_Y0[k] : 0;
        int dx = p->interlace ? PASS_DX[k] : 1, dy = p->interlace ? PASS_DY[k] : 1;
        uint32_t pw = pass_extent(p->width, x0, dx), ph = pass_extent(p->height, y0, dy);
        if (pw == 0 || ph == 0) continue; /* an empty pass has no scanlines, not even filter bytes */
        size_t rb = (size_t)row_bytes(p, pw);
        const uint8_t *prev = NULL;
        for (uint32_t r = 0; r < ph; r++, raw += rb + 1) {
            int type = raw[0];
            if (type > 4)
                return err_set(err, errlen, "PNG scanline %u%s has unknown filter type %d (corrupt)", r,
                            p->interlace ? " of an Adam7 pass" : "", type);
            uint8_t *row = raw + 1;
            unfilter(row, prev, rb, bpp, type);
            prev = row;
            size_t y = (size_t)y0 + (size_t)r * (size_t)dy;
            uint8_t *dst = img->rgb + (y * p->width + (size_t)x0) * 3;
            if (convert_row(dst, (size_t)dx * 3, row, pw, p, err, errlen)) return -1;
        }
    }
    return 0;
}

int png_decode(const uint8_t *data, size_t len, DecodedImage *img, char *err, size_t errlen) {
    static const uint8_t SIGNATURE[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    if (len < 8 || memcmp(data, SIGNATURE, 8) != 0) return err_set(err, errlen, "not a PNG file (bad signature)");
    PngInfo p;
    memset(&p, 0, sizeof p);
    int have_ihdr = 0, idat_done = 0;
    const uint8_t *idat = NULL; /* points into data while there is a single IDAT chunk */
    size_t idat_len = 0, pos = 8;
    char name[16];
    for (;;) {
        if (len - pos < 12)
            return err_set(err, errlen, "PNG data ends at byte %zu before %s: truncated file", len,
                        have_ihdr ? "the IEND chunk" : "an IHDR chunk");
        uint32_t clen = be32(data + pos);
        const uint8_t *type = data + pos + 4, *body = data + pos + 8;
        chunk_name(name, type);
        if (clen > 0x7fffffffu || clen > len - pos - 12)
            return err_set(err, errlen, "PNG chunk '%s' at byte %zu: its %u bytes run past the end of the data (%zu "
                        "bytes): truncated file", name, pos, clen, len);
        uint32_t stored = be32(body + clen), computed = png_crc32(0, type, (size_t)clen + 4);
        if (stored != computed)
            return err_set(err, errlen, "PNG chunk '%s' at byte %zu: CRC mismatch (stored 0x%08x, computed 0x%08x): "
                        "corrupt file", name, pos, stored, computed);
        int is_idat = memcmp(type, "IDAT", 4) == 0;
        if (!have_ihdr && memcmp(type, "IHDR", 4) != 0)
            return err_set(err, errlen, "PNG: first chunk is '%s', not IHDR (corrupt)", name);
        if (idat && !is_idat) idat_done = 1;
        if (memcmp(type, "IHDR", 4) == 0) {
            if (have_ihdr) return err_set(err, errlen, "PNG: second IHDR chunk at byte %zu (corrupt)", pos);
            if (parse_ihdr(&p, body, clen, err, errlen)) return -1;
            have_ihdr = 1;
        } else if (memcmp(type, "PLTE", 4) == 0) {
            if (idat) return err_set(err, errlen, "PNG: PLTE chunk after image data (corrupt)");
            if (p.palette_n) return err_set(err, errlen, "PNG: second PLTE chunk (corrupt)");
            if (clen % 3 != 0 || clen == 0 || clen > 768)
                return err_set(err, errlen, "PNG: PLTE chunk of %u bytes (not 1..256 RGB entries; corrupt)", clen);
            memcpy(p.palette, body, clen);
            p.palette_n = (int)(clen / 3);
        } else if (is_idat) {
            if (idat_done) return err_set(err, errlen, "PNG: IDAT chunks are not consecutive (corrupt)");
            if (!idat) {
                idat = body;
                idat_len = clen;
            } else {
                if (idat != img->work) { /* a second IDAT: collect them all in work */
                    if (reserve(&img->work, &img->work_cap, idat_len + clen))
                        return err_set(err, errlen, "out of memory for %zu bytes of PNG data", idat_len + clen);
                    memcpy(img->work, idat, idat_len);
                    idat = img->work;
                } else if (idat_len + clen > img->work_cap) {
                    size_t cap = 2 * (idat_len + clen);
                    uint8_t *w = realloc(img->work, cap);
                    if (!w) return err_set(err, errlen, "out of memory for %zu bytes of PNG data", cap);
                    img->work = w;
                    img->work_cap = cap;
                    idat = w;
                }
                memcpy(img->work + idat_len, body, clen);
                idat_len += clen;
            }
        } else if (memcmp(type, "IEND", 4) == 0) {
            break;
        } else if (type[0] & 0x20) {
            /* ancillary (tRNS, gAMA, tEXt, ...): nothing we use */
        } else {
            return err_set(err, errlen, "PNG: unknown critical chunk '%s' at byte %zu", name, pos);
        }
        pos += (size_t)clen + 12;
    }
    if (!idat) return err_set(err, errlen, "PNG has no IDAT chunk (corrupt)");
    if (p.colour == PNG_PALETTE && !p.palette_n) return err_set(err, errlen, "PNG palette image without PLTE (corrupt)");

    uint64_t raw_len = 0;
    for (int k = 0; k < (p.interlace ? 7 : 1); k++) {
        uint32_t pw = p.interlace ? pass_extent(p.width, PASS_X0[k], PASS_DX[k]) : p.width;
        uint32_t ph = p.interlace ? pass_extent(p.height, PASS_Y0[k], PASS_DY[k]) : p.height;
        if (pw && ph) raw_len += (uint64_t)ph * (1 + row_bytes(&p, pw));
    }
    if (raw_len > (uint64_t)idat_len * MAX_DEFLATE_RATIO + 64)
        return err_set(err, errlen, "PNG: %zu bytes of image data cannot hold %ux%u pixels: truncated or corrupt",
                    idat_len, p.width, p.height);
    size_t rgb_len = (size_t)p.width * p.height * 3;
    if (reserve(&img->raw, &img->raw_cap, (size_t)raw_len) || reserve(&img->rgb, &img->rgb_cap, rgb_len))
        return err_set(err, errlen, "out of memory for a %ux%u PNG", p.width, p.height);
    char why[256];
    if (inflate_zlib(img->raw, (size_t)raw_len, idat, idat_len, why, sizeof why))
        return err_set(err, errlen, "PNG image data: %s", why);
    img->width = (int)p.width;
    img->height = (int)p.height;
    img->grey = p.colour == PNG_GREY || p.colour == PNG_GREY_ALPHA;
    return expand(img, img->raw, &p, err, errlen);
}
