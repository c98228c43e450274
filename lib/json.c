/* json: request bodies and typed optional fields on cJSON (see json.h). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "utf8.h"

/* 1 when the number written in the n bytes at tok (valid JSON) is the value its
 * double holds, as far as integers go: "9.9999999999999999" is read as exactly
 * 10 and "9007199254740993" as ...992, and a field that takes integers would
 * take either for what it is not. Numbers whose double is no integer are left
 * to the field's own check; so are those too large for any field. */
static int
json_number_exact(const char *tok, size_t n)
{
    char digits[64], buf[80];
    size_t nd = 0, i = 0;
    long exp10 = 0, frac = 0;
    int neg = tok[0] == '-', in_frac = 0;
    double d;
    long long whole;

    if (n >= sizeof(buf))
        return 1; /* far beyond any field's range: the range check refuses it */
    memcpy(buf, tok, n);
    buf[n] = '\0';
    d = strtod(buf, NULL);
    if (!(d > -9.0e18 && d < 9.0e18) || d != (double)(long long)d)
        return 1;
    for (i = (size_t)neg; i < n && buf[i] != 'e' && buf[i] != 'E'; i++) {
        if (buf[i] == '.') {
            in_frac = 1;
            continue;
        }
        if (nd == 0 && buf[i] == '0')
            frac += in_frac; /* a leading zero: only its place counts */
        else if (nd < sizeof(digits))
            digits[nd++] = buf[i], frac += in_frac;
        else
            return 0; /* more digits than a double keeps */
    }
    if (i < n)
        exp10 = strtol(buf + i + 1, NULL, 10);
    exp10 -= frac;
    while (nd > 0 && digits[nd - 1] == '0')
        nd--, exp10++;
    if (nd == 0)
        return 1; /* zero */
    if (exp10 < 0 || (long)nd + exp10 > 18)
        return exp10 >= 0; /* a fraction where the double has none; or too large */
    whole = 0;
    for (size_t k = 0; k < nd; k++)
        whole = whole * 10 + (digits[k] - '0');
    for (long k = 0; k < exp10; k++)
        whole *= 10;
    return (long long)d == (neg ? -whole : whole);
}

/* What cJSON takes but no field may hold: a string with the escape \u0000 (C
 * strings end there: "CP-502101\u0000x" would buy CP-502101), and a number that
 * is not the integer its double says (json_number_exact). text is valid JSON. */
static int
json_check_text(const char *text, size_t len, errbuf *err)
{
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '"') {
            for (i++; i < len && text[i] != '"'; i++) {
                if (text[i] != '\\')
                    continue;
                if (i + 5 < len && memcmp(text + i + 1, "u0000", 5) == 0)
                    return errbuf_set(err,
                                      "a string holds \\u0000 (a NUL character) at byte %zu; "
                                      "no field may contain one",
                                      i);
                i++; /* the escaped character */
            }
        } else if (text[i] == '-' || (text[i] >= '0' && text[i] <= '9')) {
            size_t start = i;
            while (i + 1 < len && text[i + 1] != '\0' &&
                   strchr("0123456789+-.eE", text[i + 1]) != NULL)
                i++;
            if (!json_number_exact(text + start, i - start + 1))
                return errbuf_set(err,
                                  "the number %.*s at byte %zu has more digits than a number "
                                  "keeps (it would be read as another integer)",
                                  (int)(i - start + 1 > 40 ? 40 : i - start + 1), text + start,
                                  start);
        }
    }
    return RS_OK;
}

int
json_parse_object(const char *text, size_t len, cJSON **out, errbuf *err)
{
    const char *end = NULL;
    cJSON *json;

    *out = NULL;
    /* The length variant: the body is not NUL-terminated, and a NUL inside it must
     * not end the document early (the white-space check below catches that). */
    json = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (json == NULL) {
        size_t at = end != NULL && end >= text ? (size_t)(end - text) : 0;
        return errbuf_set(err, "malformed JSON at byte %zu", at > len ? len : at);
    }
    for (const char *p = end; p < text + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(json);
            return errbuf_set(err, "malformed JSON: unexpected data after the document at byte %zu",
                              (size_t)(p - text));
        }
    }
    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        return errbuf_set(err, "the body must be a JSON object");
    }
    if (json_check_text(text, (size_t)(end - text), err) != RS_OK) {
        cJSON_Delete(json);
        return RS_ERR;
    }
    *out = json;
    return RS_OK;
}

/* What a wrong value is, for "must be X, not <what>". */
static void
json_describe(const cJSON *item, char *buf, size_t cap)
{
    if (cJSON_IsString(item))
        snprintf(buf, cap, "a string (\"%.*s\")",
                 (int)utf8_cut(item->valuestring, strlen(item->valuestring), 40),
                 item->valuestring); /* never half a character */
    else if (cJSON_IsNumber(item))
        snprintf(buf, cap, "%.15g", item->valuedouble);
    else if (cJSON_IsTrue(item))
        snprintf(buf, cap, "true");
    else if (cJSON_IsFalse(item))
        snprintf(buf, cap, "false");
    else if (cJSON_IsNull(item))
        snprintf(buf, cap, "null");
    else if (cJSON_IsArray(item))
        snprintf(buf, cap, "an array");
    else
        snprintf(buf, cap, "an object");
}

/* A decimal integer string, nothing around it ("10", "-3"); -1 otherwise. */
static int
json_parse_decimal(const char *s, long long *out)
{
    char *end;
    long long v;

    if (s == NULL || *s == '\0' || (*s != '-' && (*s < '0' || *s > '9')))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s || (end == s + 1 && *s == '-'))
        return -1;
    *out = v;
    return 0;
}

int
json_opt_int(const cJSON *obj, const char *key, long long min, long long max, int flags,
             long long *out, errbuf *err)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    char what[80];
    long long v;

    if (item == NULL)
        return RS_OK;
    if (cJSON_IsNumber(item)) {
        double d = item->valuedouble;
        /* Range first (NaN fails it too), so that the conversion is defined;
         * then whole: 1.5 is no quantity. */
        if (!(d >= (double)min && d <= (double)max))
            goto wrong;
        v = (long long)d;
        if ((double)v != d)
            goto wrong;
    } else if ((flags & JSON_NUMERIC_STRING) && cJSON_IsString(item) &&
               json_parse_decimal(item->valuestring, &v) == 0) {
        if (v < min || v > max)
            goto wrong;
    } else {
        goto wrong;
    }
    *out = v;
    return RS_OK;

wrong:
    json_describe(item, what, sizeof(what));
    return errbuf_set(err, "%s must be an integer from %lld to %lld, not %s", key, min, max, what);
}

int
json_opt_str(const cJSON *obj, const char *key, size_t min_chars, size_t max_chars,
             const char **out, errbuf *err)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    char what[80];
    long n;

    if (item == NULL)
        return RS_OK;
    if (!cJSON_IsString(item)) {
        json_describe(item, what, sizeof(what));
        return errbuf_set(err, "%s must be a string of %zu to %zu characters, not %s", key,
                          min_chars, max_chars, what);
    }
    n = utf8_chars(item->valuestring, strlen(item->valuestring));
    if (n < 0)
        return errbuf_set(err, "%s must be valid UTF-8", key);
    if ((size_t)n < min_chars || (size_t)n > max_chars)
        return errbuf_set(err, "%s must be a string of %zu to %zu characters, not %ld", key,
                          min_chars, max_chars, n);
    *out = item->valuestring;
    return RS_OK;
}

char *
json_print(const cJSON *json, char *buf, size_t cap)
{
    /* cJSON's API takes non-const items although printing changes nothing. The
     * preallocated print saves an allocation per answer; cJSON asks for 5 bytes
     * of slack because it estimates number lengths. */
    if (buf != NULL && cap > 5 && cap <= INT_MAX &&
        cJSON_PrintPreallocated((cJSON *)json, buf, (int)cap - 5, 0))
        return buf;
    return cJSON_PrintUnformatted(json);
}

void
json_print_free(char *text, const char *buf)
{
    if (text != NULL && text != buf)
        cJSON_free(text);
}
