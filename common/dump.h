/* dump.h -- float arrays written to and read from small self-describing files
 * (final weights for comparison and inspection).
 *
 * Layout, little-endian: magic "AFDUMP01", uint32 kind length + kind string,
 * int64 meta[4], uint64 count, uint32 CRC32C of the data, then count floats.
 * Written to "<path>.tmp" and renamed, so a reader never sees half a file. */
#ifndef ARCFACE_DUMP_H
#define ARCFACE_DUMP_H

#include <stddef.h>
#include <stdint.h>

/* Returns 0, or -1 with the path and the system error in err. */
int dump_write(const char *path, const char *kind, const int64_t meta[4], const float *data,
               size_t count, char *err, size_t errlen);

/* Reads a file written by dump_write whose kind must equal `kind`. On success
 * *data (malloc'ed, count floats) and meta are filled. Returns 0, or -1 with the
 * path, the byte offset and what is wrong (bad magic, other kind, truncated,
 * checksum mismatch) in err. */
int dump_read(const char *path, const char *kind, int64_t meta[4], float **data, size_t *count, char *err,
              size_t errlen);

#endif
