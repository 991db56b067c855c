/* inflate.h -- zlib (RFC 1950) / deflate (RFC 1951) decompression into a
 * buffer of known size, as PNG needs it. No dependency on zlib. */
#ifndef ARCFACE_INFLATE_H
#define ARCFACE_INFLATE_H

#include <stddef.h>
#include <stdint.h>

/* Decompresses the zlib stream in[0..in_len) -- 2-byte header, deflate blocks
 * (stored, fixed and dynamic Huffman), big-endian Adler-32 -- into
 * out[0..out_len), which it must fill exactly. Bytes after the Adler-32 are
 * ignored.
 *
 * Returns 0, or -1 with a reason in err: a bad header (method other than
 * deflate, window over 32 KiB, check bits, preset dictionary), a malformed
 * block (reserved type, stored length not matching its complement, code
 * lengths over-subscribed or incomplete, no end-of-block code, a repeat with
 * nothing to repeat, code 286/287 or distance code 30/31), a distance
 * reaching before the start of the output, a stream that would write more or
 * fewer than out_len bytes, input ending early, or an Adler-32 mismatch. On
 * failure out holds unspecified bytes. Never reads outside in[0..in_len) nor
 * writes outside out[0..out_len). Thread-safe, no allocation. */
int inflate_zlib(uint8_t *out, size_t out_len, const uint8_t *in, size_t in_len, char *err, size_t errlen);

/* Adler-32 of p[0..n) continuing from adler (1 to start), as zlib computes it. */
uint32_t inflate_adler32(uint32_t adler, const uint8_t *p, size_t n);

#endif
