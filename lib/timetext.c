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

/* A time in microseconds since the epoch as seconds and the fraction's digits
 * (digits of 1 to 6), into out: the date and time in fmt, then ".fff", then tail. */
static void
timetext_utc_fraction(long long us, const char *fmt, int digits, const char *tail, char *out,
                      size_t size)
{
    long long sec = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    long long frac = us - sec * 1000000;
    size_t n;

    for (int d = digits; d < 6; d++)
        frac /= 10;
    timetext_format((time_t)sec, 0, fmt, out, size);
    n = strlen(out);
    if (strcmp(out, "?") != 0 &&
        snprintf(out + n, size - n, ".%0*lld%s", digits, frac, tail) >= (int)(size - n))
        snprintf(out, size, "?");
}

void
timetext_utc_ms(long long us, char *out, size_t size)
{
    timetext_utc_fraction(us, "%Y-%m-%dT%H:%M:%S", 3, "Z", out, size);
}

void
timetext_utc_us(long long us, char *out, size_t size)
{
    timetext_utc_fraction(us, "%Y-%m-%dT%H:%M:%S", 6, "Z", out, size);
}

void
timetext_sql_utc(long long us, char *out, size_t size)
{
    timetext_utc_fraction(us, "%Y-%m-%d %H:%M:%S", 6, "", out, size);
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
