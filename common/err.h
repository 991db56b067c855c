/* err.h -- filling a caller's error buffer, as every library function that
 * reports failure with -1 does. */
#ifndef ARCFACE_ERR_H
#define ARCFACE_ERR_H

#include <stddef.h>

/* Formats the message into err (nothing when err is NULL or errlen is 0,
 * truncated to errlen) and returns -1, so a failing path reads
 * `return err_set(err, errlen, "...", ...);`. */
int err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
