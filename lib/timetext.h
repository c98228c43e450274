/* timetext: a time as text, in the forms restock shows: UTC for files that other
 * machines and tools read, the reader's local time for people. One place, so that
 * a module that needs a timestamp (the spool's files) does not depend on another
 * that happens to have one (the mail templates). */
#ifndef RESTOCK_TIMETEXT_H
#define RESTOCK_TIMETEXT_H

#include <stddef.h>
#include <time.h>

/* Room for every form below, with the NUL. */
#define TIMETEXT_SIZE 64

/* Each writes at most size bytes, NUL-terminated, and "?" when t cannot be shown
 * (a year past what struct tm holds) or size is too small. */

/* "2024-04-05T19:34:38Z": UTC in ISO 8601, the spool files' form. */
void timetext_utc(time_t t, char *out, size_t size);

/* "2026-12-07T02:40:00.123Z": us microseconds since the epoch, UTC in RFC 3339
 * with milliseconds (the API's times: a hold's expires_at). */
void timetext_utc_ms(long long us, char *out, size_t size);

/* "2026-12-07T02:40:00.123456Z": the same with microseconds (a webhook's
 * timestamp, docs/design.md §4.14). */
void timetext_utc_us(long long us, char *out, size_t size);

/* "2026-12-07 02:40:00.123456": the same as a DATETIME(6) literal's text (UTC,
 * as restock stores times). */
void timetext_sql_utc(long long us, char *out, size_t size);

/* "2025-01-14 10:00:00 KST": local time (TZ) with its zone, the emails' form. */
void timetext_local_zone(time_t t, char *out, size_t size);

/* "2025-01-14 10:00:00": local time without its zone, for columns of a table. */
void timetext_local(time_t t, char *out, size_t size);

/* "Tue, 14 Jan 2025 10:00:00 +0900": RFC 5322 date, local time with its offset, in
 * English whatever the locale (the Date header of an email). */
void timetext_rfc5322(time_t t, char *out, size_t size);

#endif
