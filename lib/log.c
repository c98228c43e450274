/* log: event lines on stderr (see log.h). */
#include "config.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static const char *log_program = "restock";
/* Atomic: a reload (SIGHUP) changes it while other threads write lines. */
static atomic_int log_min = LOG_LEVEL_INFO;
static const char *const log_names[] = {"debug", "info", "warn", "error"};

void
log_init(const char *program, enum log_level level)
{
    log_program = program;
    atomic_store_explicit(&log_min, (int)level, memory_order_relaxed);
}

void
log_set_level(enum log_level level)
{
    atomic_store_explicit(&log_min, (int)level, memory_order_relaxed);
}

int
log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(log_names) / sizeof(log_names[0])); i++)
        if (strcmp(name, log_names[i]) == 0)
            return i;
    return -1;
}

void
log_write(enum log_level level, const char *fmt, ...)
{
    char line[2048];
    int n;
    va_list ap;

    if ((int)level < atomic_load_explicit(&log_min, memory_order_relaxed))
        return;
    n = snprintf(line, sizeof(line), "%s %s ", log_names[level], log_program);
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2; /* a longer event is cut, never split over lines */
    for (int i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' '; /* one event, one line, whatever a value held */
    line[n++] = '\n';
    /* One write(2) so that lines of concurrent threads never interleave. Nothing
     * useful can be done when stderr is gone, hence the ignored result. */
    if (write(STDERR_FILENO, line, (size_t)n) < 0)
        return;
}
