/* log.h -- leveled logging to stderr with the process role and rank as prefix. */
#ifndef ARCFACE_LOG_H
#define ARCFACE_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 } LogLevel;

/* Sets the "[role rank]" prefix of every line (role "worker", "ps", "test");
 * rank < 0 prints the role only. */
void log_set_role(const char *role, int rank);
void log_set_level(LogLevel level);
const char *log_prefix(void);

void log_msg(LogLevel level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
