/* Unit test of timetext: each form of a time, in fixed zones, and what happens
 * when a time cannot be shown or does not fit. */
#include "config.h"

#include <limits.h>
#include <stdlib.h>
#include <time.h>

#include "tap.h"
#include "timetext.h"

typedef void form_fn(time_t t, char *out, size_t size);

/* Checks form(t) into a buffer of `size` bytes. */
static void
check(form_fn *form, time_t t, size_t size, const char *want, const char *name)
{
    char out[TIMETEXT_SIZE];

    form(t, out, size);
    is_str(out, want, name);
}

static void
zone(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

int
main(void)
{
    const time_t t = 1736816400; /* 2025-01-14 01:00:00 UTC */
    const size_t all = TIMETEXT_SIZE;

    zone("KST-9");
    check(timetext_utc, t, all, "2025-01-14T01:00:00Z", "UTC in ISO 8601");
    check(timetext_utc, 1712345678, all, "2024-04-05T19:34:38Z",
          "the created time of spool_msg.h's example");
    check(timetext_local_zone, t, all, "2025-01-14 10:00:00 KST", "local time with its zone");
    check(timetext_local, t, all, "2025-01-14 10:00:00", "local time without its zone");
    check(timetext_rfc5322, t, all, "Tue, 14 Jan 2025 10:00:00 +0900",
          "RFC 5322 date with the offset");
    check(timetext_rfc5322, 0, all, "Thu, 1 Jan 1970 09:00:00 +0900",
          "the day of the month is not padded");

    zone("EST5EDT");
    check(timetext_rfc5322, 1712345678, all, "Fri, 5 Apr 2024 15:34:38 -0400", "a negative offset");
    check(timetext_local_zone, 1712345678, all, "2024-04-05 15:34:38 EDT",
          "the zone's daylight name");
    check(timetext_utc, 1712345678, all, "2024-04-05T19:34:38Z", "UTC whatever TZ says");

    if (sizeof(time_t) > sizeof(int)) {
        /* A year past INT_MAX does not fit struct tm. */
        const time_t far = (time_t)LLONG_MAX;
        check(timetext_utc, far, all, "?", "a time past what struct tm holds is \"?\"");
        check(timetext_local_zone, far, all, "?", "in local time too");
        check(timetext_local, far, all, "?", "without the zone too");
        check(timetext_rfc5322, far, all, "?", "and as an RFC 5322 date");
    }
    check(timetext_utc, t, 8, "?", "a buffer too small gives \"?\", not half a time");
    check(timetext_local, t, 8, "?", "in local time too");
    check(timetext_rfc5322, t, 8, "?", "for every form");
    {
        char out[TIMETEXT_SIZE];

        timetext_utc_ms(1736816400123456LL, out, sizeof(out));
        is_str(out, "2025-01-14T01:00:00.123Z", "microseconds: RFC 3339 with milliseconds");
        timetext_sql_utc(1736816400123456LL, out, sizeof(out));
        is_str(out, "2025-01-14 01:00:00.123456", "and a DATETIME(6)'s text, UTC");
        timetext_utc_ms(1736816400000999LL, out, sizeof(out));
        is_str(out, "2025-01-14T01:00:00.000Z", "milliseconds cut, not rounded: never later");
        timetext_sql_utc(-1, out, sizeof(out));
        is_str(out, "1969-12-31 23:59:59.999999", "before the epoch: the second before");
        timetext_utc_ms(1736816400123456LL, out, 20);
        is_str(out, "?", "a buffer too small for the fraction gives \"?\"");
    }
    return done_testing();
}
