/* json: the small JSON documents of restock's APIs, on cJSON. Parsing a request
 * body into an object, and typed access to its optional fields, with the error
 * message a client needs to put its request right. */
#ifndef RESTOCK_JSON_H
#define RESTOCK_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "errbuf.h"

/* json_opt_int flags */
#define JSON_NUMERIC_STRING 1 /* "10" counts as 10 (the legacy factory mixes both) */

/* Parses text (len bytes, no NUL needed) that must be one JSON object, with only
 * white space after it. On failure *out is NULL and err says what is wrong. */
int json_parse_object(const char *text, size_t len, cJSON **out, errbuf *err);

/* An optional integer field from min to max. Absent: RS_OK and *out unchanged
 * (so the caller sets the default first). Any other type, a fraction or a
 * number out of range: RS_ERR saying which. */
int json_opt_int(const cJSON *obj, const char *key, long long min, long long max, int flags,
                 long long *out, errbuf *err);

/* An optional string field of min_chars to max_chars characters of valid UTF-8.
 * Absent: RS_OK and *out unchanged. *out points into obj. */
int json_opt_str(const cJSON *obj, const char *key, size_t min_chars, size_t max_chars,
                 const char **out, errbuf *err);

/* Characters in valid UTF-8 text, or -1 when s is not valid UTF-8: utf8_chars of
 * a C string, kept for its callers (fcgi/sales.c, workers/factory.c) until they
 * call utf8_chars; new code calls utf8.h. */

/* Compact text of json in buf when it fits, else in a new allocation; NULL when
 * out of memory. Free the result with json_print_free(result, buf). */
char *json_print(const cJSON *json, char *buf, size_t cap);
void json_print_free(char *text, const char *buf);

#endif
