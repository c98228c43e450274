/* Unit test of json: body parsing and the typed optional fields with their messages. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "tap.h"
#include "utf8.h"

static cJSON *
parse(const char *text, errbuf *err)
{
    cJSON *json = NULL;

    err->msg[0] = '\0';
    if (json_parse_object(text, strlen(text), &json, err) != RS_OK)
        return NULL;
    return json;
}

static void
test_parse(void)
{
    errbuf err;
    cJSON *json;
    char with_nul[] = "{}\0{}";

    json = parse(" {\"sku\":\"CP-502101\",\"quantity\":2}\r\n", &err);
    ok(json != NULL, "an object with white space around it parses");
    cJSON_Delete(json);
    ok(parse("{\"sku\":", &err) == NULL, "truncated JSON is rejected");
    /* Where exactly is cJSON's reckoning; that a place is named is ours. */
    ok(strncmp(err.msg, "malformed JSON at byte ", 23) == 0, "the message says where it broke");
    ok(parse("[1,2]", &err) == NULL, "an array is rejected");
    is_str(err.msg, "the body must be a JSON object", "the message says an object is expected");
    ok(parse("\"x\"", &err) == NULL, "a string is rejected");
    ok(parse("{} {}", &err) == NULL, "two documents are rejected");
    ok(strstr(err.msg, "after the document") != NULL, "the message names the trailing data");
    ok(json_parse_object(with_nul, sizeof(with_nul) - 1, &json, &err) == RS_ERR && json == NULL,
       "a NUL byte inside the body does not end it");
    ok(json_parse_object("{\"a\":1}garbage", 7, &json, &err) == RS_OK,
       "only len bytes are read (the text needs no NUL)");
    cJSON_Delete(json);
    ok(parse("", &err) == NULL, "an empty text is malformed");
}

static void
test_int(void)
{
    errbuf err;
    cJSON *json = parse("{\"q\":7,\"zero\":0,\"big\":1001,\"half\":1.5,\"s\":\"2\",\"neg\":\"-3\","
                        "\"sx\":\"2x\",\"t\":true,\"n\":null,\"a\":[1],\"e\":1e400,\"whole\":3.0}",
                        &err);
    long long v = 42;

    ok(json != NULL, "fixture parses");
    ok(json_opt_int(json, "missing", 1, 1000, 0, &v, &err) == RS_OK && v == 42,
       "an absent field keeps the default");
    ok(json_opt_int(json, "q", 1, 1000, 0, &v, &err) == RS_OK && v == 7, "an integer is read");
    ok(json_opt_int(json, "whole", 1, 1000, 0, &v, &err) == RS_OK && v == 3,
       "3.0 is the integer 3");
    ok(json_opt_int(json, "zero", 1, 1000, 0, &v, &err) == RS_ERR, "0 is below the range");
    is_str(err.msg, "zero must be an integer from 1 to 1000, not 0", "message for 0");
    ok(json_opt_int(json, "big", 1, 1000, 0, &v, &err) == RS_ERR, "1001 is above the range");
    is_str(err.msg, "big must be an integer from 1 to 1000, not 1001", "message for 1001");
    ok(json_opt_int(json, "half", 1, 1000, 0, &v, &err) == RS_ERR, "1.5 is no integer");
    is_str(err.msg, "half must be an integer from 1 to 1000, not 1.5", "message for 1.5");
    ok(json_opt_int(json, "s", 1, 1000, 0, &v, &err) == RS_ERR, "a string is no integer");
    is_str(err.msg, "s must be an integer from 1 to 1000, not a string (\"2\")",
           "message for a string");
    ok(json_opt_int(json, "t", 1, 1000, 0, &v, &err) == RS_ERR, "true is no integer");
    ok(json_opt_int(json, "n", 1, 1000, 0, &v, &err) == RS_ERR, "null is no integer");
    ok(json_opt_int(json, "a", 1, 1000, 0, &v, &err) == RS_ERR, "an array is no integer");
    is_str(err.msg, "a must be an integer from 1 to 1000, not an array", "message for an array");
    ok(json_opt_int(json, "e", 1, 1000, 0, &v, &err) == RS_ERR, "an infinite number is refused");
    v = 0;
    ok(json_opt_int(json, "s", 1, 1000, JSON_NUMERIC_STRING, &v, &err) == RS_OK && v == 2,
       "with JSON_NUMERIC_STRING \"2\" is 2");
    ok(json_opt_int(json, "neg", -5, 5, JSON_NUMERIC_STRING, &v, &err) == RS_OK && v == -3,
       "a negative numeric string is read");
    ok(json_opt_int(json, "neg", 1, 5, JSON_NUMERIC_STRING, &v, &err) == RS_ERR,
       "a numeric string out of range is refused");
    ok(json_opt_int(json, "sx", 1, 1000, JSON_NUMERIC_STRING, &v, &err) == RS_ERR,
       "\"2x\" is no numeric string");
    cJSON_Delete(json);
}

static void
test_str(void)
{
    errbuf err;
    cJSON *json = parse("{\"sku\":\"CP-502101\",\"empty\":\"\",\"n\":5,\"ko\":\"부산도너츠\","
                        "\"long\":\"123456789012345678901234567890123\"}",
                        &err);
    cJSON *bad = cJSON_CreateObject();
    const char *s = "default";

    ok(json != NULL && bad != NULL, "fixtures made");
    ok(json_opt_str(json, "missing", 1, 32, &s, &err) == RS_OK && strcmp(s, "default") == 0,
       "an absent field keeps the default");
    ok(json_opt_str(json, "sku", 1, 32, &s, &err) == RS_OK && strcmp(s, "CP-502101") == 0,
       "a string is read");
    ok(json_opt_str(json, "ko", 1, 5, &s, &err) == RS_OK, "Korean counts in characters, not bytes");
    ok(json_opt_str(json, "ko", 1, 4, &s, &err) == RS_ERR, "five characters exceed four");
    ok(json_opt_str(json, "empty", 1, 32, &s, &err) == RS_ERR, "an empty string is too short");
    is_str(err.msg, "empty must be a string of 1 to 32 characters, not 0", "message for empty");
    ok(json_opt_str(json, "long", 1, 32, &s, &err) == RS_ERR, "33 characters are too many");
    ok(json_opt_str(json, "n", 1, 32, &s, &err) == RS_ERR, "a number is no string");
    is_str(err.msg, "n must be a string of 1 to 32 characters, not 5", "message for a number");
    cJSON_AddStringToObject(bad, "x", "\xff\xfe");
    ok(json_opt_str(bad, "x", 1, 32, &s, &err) == RS_ERR, "invalid UTF-8 is refused");
    is_str(err.msg, "x must be valid UTF-8", "message for invalid UTF-8");
    is_int(utf8_chars("\xed\xa0\x80", strlen("\xed\xa0\x80")), -1,
           "a UTF-16 surrogate is not UTF-8");
    is_int(utf8_chars("\xc0\xaf", strlen("\xc0\xaf")), -1, "an overlong form is not UTF-8");
    is_int(utf8_chars("a\xf0\x9f\x8d\xa9", strlen("a\xf0\x9f\x8d\xa9")), 2,
           "a four-byte character counts once");
    cJSON_Delete(bad);
    cJSON_Delete(json);
}

static void
test_print(void)
{
    cJSON *json = cJSON_CreateObject();
    char small[8], big[256];
    char *text;

    cJSON_AddStringToObject(json, "message", "구매 완료! 남은 재고: 2");
    cJSON_AddNumberToObject(json, "remaining", 2);
    text = json_print(json, big, sizeof(big));
    ok(text == big, "printed into the caller's buffer when it fits");
    is_str(text, "{\"message\":\"구매 완료! 남은 재고: 2\",\"remaining\":2}",
           "compact, Korean unescaped, integers without fraction");
    json_print_free(text, big);
    text = json_print(json, small, sizeof(small));
    ok(text != NULL && text != small, "allocated when the buffer is too small");
    is_str(text, "{\"message\":\"구매 완료! 남은 재고: 2\",\"remaining\":2}",
           "the allocated text is the same");
    json_print_free(text, small);
    cJSON_Delete(json);
}

/* What cJSON takes but a field must not: the NUL escape and numbers whose double
 * is another integer than the one written. */
static void
test_refused_text(void)
{
    static const char *const refused[] = {
        "{\"sku\":\"CP-502101\\u0000x\"}",      "{\"a\":{\"b\":[\"\\u0000\"]}}",
        "{\"quantity\":9.9999999999999999}",    "{\"quantity\":9007199254740993}",
        "{\"quantity\":1.00000000000000001e1}", "{\"q\":-2.9999999999999999}",
    };
    static const char *const taken[] = {
        "{\"sku\":\"a\\\\u0000\"}", /* an escaped backslash, then the text u0000 */
        "{\"s\":\"\\u0001\\\"\\u00e9\"}",
        "{\"q\":10.0}",
        "{\"q\":1e1}",
        "{\"q\":100e-1}",
        "{\"q\":0.000}",
        "{\"q\":-0}",
        "{\"q\":1.5}",
        "{\"q\":9007199254740992}",
        "{\"q\":1e400}",
        "{\"q\":0.05}",
        "{\"s\":\"9.9999999999999999\"}",
    };
    errbuf err;
    cJSON *json;

    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        json = parse(refused[i], &err);
        ok(json == NULL && err.msg[0] != '\0', "refused: %s (%s)", refused[i], err.msg);
        cJSON_Delete(json);
    }
    json = parse(refused[0], &err);
    ok(strstr(err.msg, "\\u0000") != NULL, "the message names the NUL escape");
    json = parse(refused[2], &err);
    ok(strstr(err.msg, "9.9999999999999999") != NULL, "the message names the number");
    for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
        json = parse(taken[i], &err);
        ok(json != NULL, "taken: %s", taken[i]);
        cJSON_Delete(json);
    }
}

int
main(void)
{
    test_parse();
    test_refused_text();
    test_int();
    test_str();
    test_print();
    return done_testing();
}
