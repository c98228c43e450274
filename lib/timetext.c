/* timetext: times as text (see timetext.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timetext.h"

static void
timetext_unknown(char *out, size_t size)
{
    if (size > 0)
        snprintf(out, size, "?");
}

/* t in UTC or local time, by a format that is one of the literals below. */
static void
timetext_format(time_t t, int local, const char *format, char *out, size_t size)
{
    struct tm tm;
    int ok = size > 0 && (local ? localtime_r(&t, &tm) : gmtime_r(&t, &tm)) != NULL;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    ok = ok && strftime(out, size, format, &tm) > 0;
#pragma GCC diagnostic pop
    if (!ok)
        timetext_unknown(out, size);
}

void
timetext_utc(time_t t, char *out, size_t size)
{
    timetext_format(t, 0, "%Y-%m-%dT%H:%M:%SZ", out, size);
}

void
timetext_local_zone(time_t t, char *out, size_t size)
{
    timetext_format(t, 1, "%Y-%m-%d %H:%M:%S %Z", out, size);
}

void
timetext_local(time_t t, char *out, size_t size)
{
    timetext_format(t, 1, "%Y-%m-%d %H:%M:%S", out, size);
}

void
timetext_rfc5322(time_t t, char *out, size_t size)
{
    /* Not strftime's %a and %b: they follow the locale, and the header must not. */
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    long off;
    int n;

    if (localtime_r(&t, &tm) == NULL) {
        timetext_unknown(out, size);
        return;
    }
    off = tm.tm_gmtoff / 60;
    n = snprintf(out, size, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday],
                 tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
    if (n < 0 || (size_t)n >= size)
        timetext_unknown(out, size);
}
