/* log: one line per event on stderr, `level program key=value ...`, which
 * journald (or the test harness) collects. Thread-safe: each line is one write(2). */
#ifndef RESTOCK_LOG_H
#define RESTOCK_LOG_H

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Names the program in every line and sets the lowest level printed. */
void log_init(const char *program, enum log_level level);
/* Changes the lowest level printed (a reload), safe while other threads log. */
void log_set_level(enum log_level level);

/* Parses "debug", "info", "warn" or "error"; returns -1 for anything else. */
int log_level_parse(const char *name);

void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
