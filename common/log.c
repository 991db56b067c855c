/* log.c -- leveled logging and the fatal-error path shared by every program. */
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static char g_prefix[64] = "[arcface]";
static LogLevel g_level = LOG_INFO;
static FatalHandler g_fatal_handler;

void log_set_role(const char *role, int rank) {
    if (rank < 0)
        snprintf(g_prefix, sizeof g_prefix, "[%s]", role);
    else
        snprintf(g_prefix, sizeof g_prefix, "[%s %d]", role, rank);
}

void log_set_level(LogLevel level) { g_level = level; }

const char *log_prefix(void) { return g_prefix; }

static const char *level_name(LogLevel level) {
    switch (level) {
    case LOG_DEBUG: return "debug: ";
    case LOG_INFO: return "";
    case LOG_WARN: return "warning: ";
    case LOG_ERROR: return "error: ";
    }
    return "";
}

void log_msg(LogLevel level, const char *fmt, ...) {
    if (level < g_level) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line so that lines of different ranks do not interleave. */
    fprintf(stderr, "%s %s%s\n", g_prefix, level_name(level), line);
}

void fatal_set_handler(FatalHandler handler) { g_fatal_handler = handler; }

static _Noreturn void fatal_finish(const char *file, int line, const char *cond, const char *fmt,
                                   va_list ap) {
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (cond)
        fprintf(stderr, "%s fatal: %s:%d: check failed: %s: %s\n", g_prefix, file, line, cond, msg);
    else
        fprintf(stderr, "%s fatal: %s:%d: %s\n", g_prefix, file, line, msg);
    fflush(stderr);
    if (g_fatal_handler) g_fatal_handler(1);
    exit(1);
}

void fatal_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fatal_finish(file, line, NULL, fmt, ap);
}

void fatal_check_at(const char *file, int line, const char *cond, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fatal_finish(file, line, cond, fmt, ap);
}

void *xcalloc_aligned(size_t count, size_t size) {
    CHECK(size == 0 || count <= SIZE_MAX / size, "allocation size overflow");
    size_t bytes = count * size;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p) FATAL("out of memory allocating %zu bytes", rounded);
    memset(p, 0, rounded);
    return p;
}
