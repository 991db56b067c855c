/* check.h -- fatal errors for broken invariants and failed setup.
 *
 * Library code reports ordinary failures through return values; CHECK is for
 * what must never happen (a failed allocation at start-up, a violated shape
 * contract). It stays on under NDEBUG. The process-wide fatal handler lets an
 * MPI program turn every fatal error into MPI_Abort so the whole job ends. */
#ifndef ARCFACE_CHECK_H
#define ARCFACE_CHECK_H

#include <stddef.h>

/* Called by fatal() after the message is printed; must not return. The default
 * handler calls exit(1). */
typedef void (*FatalHandler)(int exit_code);
void fatal_set_handler(FatalHandler handler);

/* Prints "[role rank] fatal: file:line: message" to stderr and ends the process
 * through the fatal handler. */
_Noreturn void fatal_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like fatal_at, with the failed condition's text before the message. */
_Noreturn void fatal_check_at(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define FATAL(...) fatal_at(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) fatal_check_at(__FILE__, __LINE__, #cond, __VA_ARGS__);  \
    } while (0)

/* Allocation that never returns NULL: 64-byte aligned, zero-filled (which also
 * pre-faults the pages so the first training step does not pay for them).
 * Free with free(). */
void *xcalloc_aligned(size_t count, size_t size);

#endif
