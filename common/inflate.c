/* inflate.c -- a strict deflate decoder: canonical Huffman codes decoded
 * through a 10-bit lookup table, longer codes bit by bit (as zlib's puff.c
 * does), every length and distance checked against the buffers. */
#include "inflate.h"

#include <stdio.h>
#include <string.h>

#include "err.h"

#define MAX_BITS 15   /* longest deflate code */
#ifndef INFLATE_FAST_BITS
#define INFLATE_FAST_BITS 10 /* codes up to this long take one table lookup (tests may lower it) */
#endif
#define FAST_BITS INFLATE_FAST_BITS
#define MAX_LITLEN 288
#define MAX_DIST 32

enum { CODES_CODELEN, CODES_LITLEN, CODES_DIST };

/* A canonical Huffman code. fast[] is indexed by the next FAST_BITS input bits
 * (in stream order, i.e. bit-reversed codes); an entry is symbol << 4 | length,
 * 0 when no code of length <= FAST_BITS starts with those bits. count[] and
 * symbol[] decode any code, as in puff.c. */
typedef struct {
    uint16_t fast[1u << FAST_BITS];
    uint16_t count[MAX_BITS + 1];
    uint16_t symbol[MAX_LITLEN];
} Huffman;

typedef struct {
    const uint8_t *in;
    size_t in_len, in_pos;
    uint64_t bits; /* unread input bits, next bit in bit 0 */
    int nbits;
    uint8_t *out;
    size_t out_len, out_pos;
    char *err;
    size_t errlen;
} Inflater;

static int truncated(Inflater *s) {
    return err_set(s->err, s->errlen, "deflate data ends early (after %zu of %zu output bytes): truncated stream",
                s->out_pos, s->out_len);
}

/* Tops the bit buffer up to at least 57 bits, or as many as the input has. */
static inline void refill(Inflater *s) {
    while (s->nbits <= 56 && s->in_pos < s->in_len) {
        s->bits |= (uint64_t)s->in[s->in_pos++] << s->nbits;
        s->nbits += 8;
    }
}

/* Reads n <= 32 bits into *v (first bit in bit 0). Returns 0, or -1 when the
 * input ends first. */
static inline int getbits(Inflater *s, int n, uint32_t *v) {
    if (s->nbits < n) {
        refill(s);
        if (s->nbits < n) {
            *v = 0;
            return truncated(s);
        }
    }
    *v = (uint32_t)(s->bits & ((1ull << n) - 1));
    s->bits >>= n;
    s->nbits -= n;
    return 0;
}

static unsigned reverse_bits(unsigned code, int len) {
    unsigned r = 0;
    for (int i = 0; i < len; i++, code >>= 1) r = (r << 1) | (code & 1);
    return r;
}

/* Builds h from n code lengths (0 = symbol unused). Returns 0, or -1 with a
 * reason for over-subscribed lengths and for incomplete ones, which zlib only
 * accepts as a literal/length or distance code of a single 1-bit code. An
 * empty code is accepted here; decoding with it fails. */
static int huffman_build(Huffman *h, const uint8_t *lens, int n, int kind, Inflater *s) {
    static const char *name[] = {"code length", "literal/length", "distance"};
    memset(h->count, 0, sizeof h->count);
    for (int i = 0; i < n; i++) h->count[lens[i]]++;
    h->count[0] = 0;
    int left = 1, max_len = 0;
    for (int len = 1; len <= MAX_BITS; len++) {
        left <<= 1;
        left -= h->count[len];
        if (left < 0)
            return err_set(s->err, s->errlen, "deflate: %s code lengths are over-subscribed (corrupt stream)",
                        name[kind]);
        if (h->count[len]) max_len = len;
    }
    if (left > 0 && max_len > 0 && (kind == CODES_CODELEN || max_len != 1))
        return err_set(s->err, s->errlen, "deflate: %s code lengths are incomplete (corrupt stream)", name[kind]);

    uint16_t offs[MAX_BITS + 2];
    offs[1] = 0;
    for (int len = 1; len <= MAX_BITS; len++) offs[len + 1] = (uint16_t)(offs[len] + h->count[len]);
    unsigned next_code[MAX_BITS + 1];
    unsigned code = 0;
    for (int len = 1; len <= MAX_BITS; len++) {
        code = (code + h->count[len - 1]) << 1;
        next_code[len] = code;
    }
    memset(h->fast, 0, sizeof h->fast);
    for (int sym = 0; sym < n; sym++) {
        int len = lens[sym];
        if (!len) continue;
        h->symbol[offs[len]++] = (uint16_t)sym;
        unsigned c = next_code[len]++;
        if (len > FAST_BITS) continue;
        uint16_t entry = (uint16_t)(sym << 4 | len);
        for (unsigned j = reverse_bits(c, len); j < (1u << FAST_BITS); j += 1u << len) h->fast[j] = entry;
    }
    return 0;
}

/* Decodes one symbol. Returns it, or -1 with a reason (input ends, or the
 * bits are no code of h). */
static inline int decode_symbol(Inflater *s, const Huffman *h) {
    if (s->nbits < MAX_BITS) refill(s);
    unsigned entry = h->fast[s->bits & ((1u << FAST_BITS) - 1)];
    if (entry) {
        int len = (int)(entry & 15);
        if (len > s->nbits) return truncated(s);
        s->bits >>= len;
        s->nbits -= len;
        return (int)(entry >> 4);
    }
    /* canonical decoding, most significant code bit first */
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= MAX_BITS; len++) {
        if (len > s->nbits) return truncated(s);
        code |= (int)((s->bits >> (len - 1)) & 1);
        int count = h->count[len];
        if (code - count < first) {
            s->bits >>= len;
            s->nbits -= len;
            return h->symbol[index + (code - first)];
        }
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    return err_set(s->err, s->errlen, "deflate: invalid Huffman code after %zu output bytes (corrupt stream)",
                s->out_pos);
}

static int stored_block(Inflater *s) {
    s->bits >>= s->nbits & 7; /* to a byte boundary */
    s->nbits -= s->nbits & 7;
    uint32_t len, nlen;
    if (getbits(s, 16, &len) || getbits(s, 16, &nlen)) return -1;
    if (len != (~nlen & 0xffffu))
        return err_set(s->err, s->errlen, "deflate: stored block length %u does not match its complement 0x%04x "
                    "(corrupt stream)", len, nlen);
    if (len > s->out_len - s->out_pos)
        return err_set(s->err, s->errlen, "deflate: more data than the expected %zu bytes", s->out_len);
    while (len && s->nbits >= 8) { /* whole bytes already in the bit buffer */
        s->out[s->out_pos++] = (uint8_t)s->bits;
        s->bits >>= 8;
        s->nbits -= 8;
        len--;
    }
    if (len > s->in_len - s->in_pos) return truncated(s);
    memcpy(s->out + s->out_pos, s->in + s->in_pos, len);
    s->out_pos += len;
    s->in_pos += len;
    return 0;
}

static const uint16_t LEN_BASE[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t LEN_EXTRA[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t DIST_BASE[30] = {1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
                                       193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t DIST_EXTRA[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

/* Decodes the literals and matches of one Huffman block up to end-of-block. */
static int codes_block(Inflater *s, const Huffman *litlen, const Huffman *dist) {
    for (;;) {
        int sym = decode_symbol(s, litlen);
        if (sym < 0) return -1;
        if (sym < 256) {
            if (s->out_pos == s->out_len)
                return err_set(s->err, s->errlen, "deflate: more data than the expected %zu bytes", s->out_len);
            s->out[s->out_pos++] = (uint8_t)sym;
            continue;
        }
        if (sym == 256) return 0;
        sym -= 257;
        if (sym >= 29)
            return err_set(s->err, s->errlen, "deflate: invalid length code %d (corrupt stream)", sym + 257);
        uint32_t extra, len, d;
        if (getbits(s, LEN_EXTRA[sym], &extra)) return -1;
        len = LEN_BASE[sym] + extra;
        int dsym = decode_symbol(s, dist);
        if (dsym < 0) return -1;
        if (dsym >= 30) return err_set(s->err, s->errlen, "deflate: invalid distance code %d (corrupt stream)", dsym);
        if (getbits(s, DIST_EXTRA[dsym], &extra)) return -1;
        d = DIST_BASE[dsym] + extra;
        if (d > s->out_pos)
            return err_set(s->err, s->errlen, "deflate: distance %u too far back (only %zu bytes written; corrupt "
                        "stream)", d, s->out_pos);
        if (len > s->out_len - s->out_pos)
            return err_set(s->err, s->errlen, "deflate: more data than the expected %zu bytes", s->out_len);
        uint8_t *o = s->out + s->out_pos;
        const uint8_t *from = o - d;
        if (d >= len) {
            memcpy(o, from, len);
        } else {
            for (uint32_t i = 0; i < len; i++) o[i] = from[i]; /* overlapping: repeats the last d bytes */
        }
        s->out_pos += len;
    }
}

static int fixed_codes(Huffman *litlen, Huffman *dist, Inflater *s) {
    uint8_t lens[MAX_LITLEN];
    int i = 0;
    for (; i < 144; i++) lens[i] = 8;
    for (; i < 256; i++) lens[i] = 9;
    for (; i < 280; i++) lens[i] = 7;
    for (; i < 288; i++) lens[i] = 8;
    if (huffman_build(litlen, lens, 288, CODES_LITLEN, s)) return -1;
    for (i = 0; i < 32; i++) lens[i] = 5; /* codes 30 and 31 exist but are invalid when used */
    return huffman_build(dist, lens, 32, CODES_DIST, s);
}

static int dynamic_codes(Huffman *litlen, Huffman *dist, Inflater *s) {
    static const uint8_t ORDER[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    uint32_t hlit, hdist, hclen;
    if (getbits(s, 5, &hlit) || getbits(s, 5, &hdist) || getbits(s, 4, &hclen)) return -1;
    hlit += 257;
    hdist += 1;
    hclen += 4;
    if (hlit > 286 || hdist > 30)
        return err_set(s->err, s->errlen, "deflate: %u literal/length or %u distance codes declared (at most 286 and "
                    "30; corrupt stream)", hlit, hdist);
    uint8_t lens[MAX_LITLEN + MAX_DIST];
    memset(lens, 0, 19);
    for (uint32_t i = 0; i < hclen; i++) {
        uint32_t v;
        if (getbits(s, 3, &v)) return -1;
        lens[ORDER[i]] = (uint8_t)v;
    }
    Huffman *codelen = dist; /* dist is free until the lengths are read */
    if (huffman_build(codelen, lens, 19, CODES_CODELEN, s)) return -1;
    uint32_t n = 0, total = hlit + hdist;
    while (n < total) {
        int sym = decode_symbol(s, codelen);
        if (sym < 0) return -1;
        if (sym < 16) {
            lens[n++] = (uint8_t)sym;
            continue;
        }
        uint32_t rep, v;
        uint8_t value = 0;
        if (sym == 16) {
            if (n == 0) return err_set(s->err, s->errlen, "deflate: code length repeat with no previous length");
            value = lens[n - 1];
            if (getbits(s, 2, &v)) return -1;
            rep = 3 + v;
        } else if (sym == 17) {
            if (getbits(s, 3, &v)) return -1;
            rep = 3 + v;
        } else {
            if (getbits(s, 7, &v)) return -1;
            rep = 11 + v;
        }
        if (rep > total - n)
            return err_set(s->err, s->errlen, "deflate: code length repeat runs past the %u lengths declared", total);
        memset(lens + n, value, rep);
        n += rep;
    }
    if (lens[256] == 0) return err_set(s->err, s->errlen, "deflate: no end-of-block code (corrupt stream)");
    if (huffman_build(litlen, lens, (int)hlit, CODES_LITLEN, s)) return -1;
    return huffman_build(dist, lens + hlit, (int)hdist, CODES_DIST, s);
}

uint32_t inflate_adler32(uint32_t adler, const uint8_t *p, size_t n) {
    uint32_t a = adler & 0xffffu, b = adler >> 16;
    while (n) {
        size_t chunk = n < 5552 ? n : 5552; /* largest run before b can overflow 32 bits */
        n -= chunk;
        while (chunk--) {
            a += *p++;
            b += a;
        }
        a %= 65521u;
        b %= 65521u;
    }
    return b << 16 | a;
}

int inflate_zlib(uint8_t *out, size_t out_len, const uint8_t *in, size_t in_len, char *err, size_t errlen) {
    if (in_len < 2) return err_set(err, errlen, "zlib stream of %zu bytes: truncated", in_len);
    unsigned cmf = in[0], flg = in[1];
    if ((cmf & 15) != 8 || (cmf >> 4) > 7 || (cmf << 8 | flg) % 31 != 0)
        return err_set(err, errlen, "bad zlib header 0x%02x 0x%02x (not a deflate stream, or corrupt)", cmf, flg);
    if (flg & 0x20) return err_set(err, errlen, "zlib stream needs a preset dictionary (not allowed here)");

    Inflater s = {.in = in, .in_len = in_len, .in_pos = 2, .out = out, .out_len = out_len, .err = err,
                  .errlen = errlen};
    Huffman litlen, dist;
    uint32_t final = 0;
    while (!final) {
        uint32_t type;
        if (getbits(&s, 1, &final) || getbits(&s, 2, &type)) return -1;
        int rc;
        if (type == 0) {
            rc = stored_block(&s);
        } else if (type == 1) {
            rc = fixed_codes(&litlen, &dist, &s);
            if (rc == 0) rc = codes_block(&s, &litlen, &dist);
        } else if (type == 2) {
            rc = dynamic_codes(&litlen, &dist, &s);
            if (rc == 0) rc = codes_block(&s, &litlen, &dist);
        } else {
            rc = err_set(err, errlen, "deflate: reserved block type 3 (corrupt stream)");
        }
        if (rc) return -1;
    }
    if (s.out_pos != out_len)
        return err_set(err, errlen, "deflate stream ends after %zu of the expected %zu bytes", s.out_pos, out_len);
    s.bits >>= s.nbits & 7;
    s.nbits -= s.nbits & 7;
    uint32_t stored = 0;
    for (int i = 0; i < 4; i++) {
        uint32_t byte;
        if (getbits(&s, 8, &byte))
            return err_set(err, errlen, "zlib stream ends before its Adler-32 checksum: truncated");
        stored = stored << 8 | byte;
    }
    uint32_t computed = inflate_adler32(1, out, out_len);
    if (stored != computed)
        return err_set(err, errlen, "zlib Adler-32 mismatch (stored 0x%08x, computed 0x%08x): corrupt data", stored,
                    computed);
    return 0;
}
