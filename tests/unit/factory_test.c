/* Unit test of the factory driver: the request built from a factory-queue message
 * (the exact JSON of docs/design.md, its types, the callback URL, the factory URL), the
 * messages it refuses and why, and the outcomes decided before any request: a
 * malformed message or no factory URL is permanent, an unreachable database means
 * try again. The full delivery runs in the worker's integration tests. */
#include "config.h"

#include <stdlib.h>

#include <cjson/cJSON.h>

#include "factory.h"
#include "factory_msg.h"
#include "tap.h"

#define ORDER "5f0c8d9e-1a2b-4c3d-8e4f-000000000042"
#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* A message as the outbox fan-out writes it; %s are quantity and factory_api. */
#define MSG_FMT                                                                                    \
    "{\"event_id\":\"9d1e2f3a-0000-4000-8000-000000000001\",\"kind\":\"stock_empty\","             \
    "\"order_id\":\"" ORDER "\",\"product_id\":\"1a2b3c4d-0000-4000-8000-000000000002\","          \
    "\"sku\":\"CP-502101\",\"product_name\":\"부산도너츠\",\"quantity\":%s,"                  \
    "\"factory_id\":\"2b3c4d5e-0000-4000-8000-000000000003\",\"factory_identifier\":"              \
    "\"FF-500293\",\"factory_name\":\"부산도너츠 공장\",\"factory_api\":%s,\"token\":\"" TOKEN     \
    "\",\"created_at\":\"2024-05-01T12:00:00.000000Z\"}"

static char msg_buf[4096];

static const char *
msg(const char *quantity, const char *factory_api)
{
    snprintf(msg_buf, sizeof(msg_buf), MSG_FMT, quantity, factory_api);
    return msg_buf;
}

/* The message with one field's "key":value replaced by replacement (or removed
 * when replacement is ""). */
static const char *
msg_edit(const char *key, const char *replacement)
{
    cJSON *json = cJSON_Parse(msg("10", "null"));
    char *text;

    cJSON_DeleteItemFromObjectCaseSensitive(json, key);
    if (replacement[0] != '\0')
        cJSON_AddItemToObject(json, key, cJSON_Parse(replacement));
    text = cJSON_PrintUnformatted(json);
    snprintf(msg_buf, sizeof(msg_buf), "%s", text ? text : "");
    cJSON_free(text);
    cJSON_Delete(json);
    return msg_buf;
}

static int
build(const char *m, const char *default_api, char **url, char **body, errbuf *err)
{
    return factory_msg_request_body(m, strlen(m), "restock-test", "https://shop.example/",
                                    default_api, url, body, err);
}

static void
test_body(void)
{
    char *url = NULL, *body = NULL;
    errbuf err = {""};
    cJSON *json, *item;
    int fields = 0;

    ok(build(msg("10", "\"http://factory.example:8080/\""), "http://default.example", &url, &body,
             &err) == RS_OK,
       "a message builds a request (%s)", err.msg);
    is_str(url, "http://factory.example:8080/api/manufactures",
           "the factory's own API wins over the configured one");
    json = cJSON_Parse(body ? body : "");
    ok(cJSON_IsObject(json), "the body is a JSON object");
    cJSON_ArrayForEach(item, json) fields++;
    is_int(fields, 6, "the body has exactly the six fields of the factory API");
    is_str(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "MessageGroupId")),
           "stock-arrival-group", "MessageGroupId");
    is_str(
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "MessageAttributeProductId")),
        "CP-502101", "MessageAttributeProductId is the sku");
    item = cJSON_GetObjectItemCaseSensitive(json, "MessageAttributeProductCnt");
    ok(cJSON_IsNumber(item) && item->valuedouble == 10,
       "MessageAttributeProductCnt is the number 10");
    is_str(
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "MessageAttributeFactoryId")),
        "FF-500293", "MessageAttributeFactoryId is the factory identifier");
    is_str(
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "MessageAttributeRequester")),
        "restock-test", "MessageAttributeRequester is the configured requester");
    is_str(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "CallbackUrl")),
           "https://shop.example/callbacks/factory/" ORDER "?token=" TOKEN,
           "CallbackUrl is public_url/callbacks/factory/ORDER?token=TOKEN");
    ok(body != NULL && strstr(body, "\"MessageAttributeProductCnt\":10,") != NULL,
       "the quantity is written as an integer: %s", body ? body : "");
    ok(body != NULL && strstr(body, "부산도너츠") == NULL && strstr(body, "event_id") == NULL,
       "nothing else of the message goes to the factory");
    cJSON_Delete(json);
    free(url);
    free(body);
}

static void
test_variants(void)
{
    char *url = NULL, *body = NULL;
    errbuf err = {""};
    cJSON *json;

    ok(build(msg("\"10\"", "null"), "http://default.example:9000", &url, &body, &err) == RS_OK,
       "a quantity as a numeric string builds (%s)", err.msg);
    json = cJSON_Parse(body ? body : "");
    ok(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(json, "MessageAttributeProductCnt")) &&
           cJSON_GetNumberValue(
               cJSON_GetObjectItemCaseSensitive(json, "MessageAttributeProductCnt")) == 10,
       "a quantity \"10\" is sent as the number 10");
    is_str(url, "http://default.example:9000/api/manufactures",
           "factory_api null: the configured factory API");
    cJSON_Delete(json);
    free(url);
    free(body);

    ok(build(msg("1000000", "\"\""), "http://default.example//", &url, &body, &err) == RS_OK,
       "the largest quantity builds (%s)", err.msg);
    is_str(url, "http://default.example/api/manufactures",
           "factory_api \"\": the configured one, without its trailing slashes");
    free(url);
    free(body);

    ok(build(msg_edit("order_id", "\"5F0C8D9E-1A2B-4C3D-8E4F-000000000042\""), "http://d", &url,
             &body, &err) == RS_OK,
       "an upper-case order id builds");
    ok(body != NULL && strstr(body, "/callbacks/factory/" ORDER "?token=") != NULL,
       "the callback URL has the canonical (lower-case) order id");
    free(url);
    free(body);
}

/* Asserts that message m is refused with a message containing want (and never the
 * token). */
static void
refused(const char *m, const char *default_api, const char *want, const char *name)
{
    char *url = (char *)"x", *body = (char *)"x";
    errbuf err = {""};

    if (!ok(build(m, default_api, &url, &body, &err) == RS_ERR && url == NULL && body == NULL,
            "%s: refused", name))
        return;
    if (!ok(strstr(err.msg, want) != NULL && strstr(err.msg, TOKEN) == NULL,
            "%s: the error says \"%s\"", name, want))
        diag("error: %s", err.msg);
}

static void
test_refused(void)
{
    refused(msg("10", "null"), "", "no factory API configured for FF-500293",
            "no factory URL at all");
    refused(msg("10", "\"/\""), "", "no factory API configured for FF-500293",
            "a factory URL of slashes only");
    refused("{\"kind\":", "http://d", "malformed JSON", "malformed JSON");
    refused("[1,2]", "http://d", "object", "not an object");
    refused(msg_edit("order_id", ""), "http://d", "order_id is missing", "no order_id");
    refused(msg_edit("order_id", "\"42\""), "http://d", "order_id", "order_id not a UUID");
    refused(msg_edit("order_id", "42"), "http://d", "order_id", "order_id a number");
    refused(msg_edit("sku", ""), "http://d", "sku is missing", "no sku");
    refused(msg_edit("sku", "\"\""), "http://d", "sku", "empty sku");
    refused(msg_edit("factory_identifier", ""), "http://d", "factory_identifier is missing",
            "no factory identifier");
    refused(msg_edit("token", ""), "http://d", "token is missing", "no token");
    refused(msg_edit("token", "\"0123456789abcdef\""), "http://d", "token", "short token");
    refused(
        msg_edit("token", "\"0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\""),
        "http://d", "token", "upper-case token");
    refused(
        msg_edit("token", "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg\""),
        "http://d", "token", "token with a non-hex digit");
    refused(msg_edit("quantity", ""), "http://d", "quantity is missing", "no quantity");
    refused(msg("0", "null"), "http://d", "quantity", "quantity 0");
    refused(msg("-3", "null"), "http://d", "quantity", "negative quantity");
    refused(msg("1.5", "null"), "http://d", "quantity", "fractional quantity");
    refused(msg("\"ten\"", "null"), "http://d", "quantity", "quantity not numeric");
    refused(msg("\"10 \"", "null"), "http://d", "quantity", "quantity with a space");
    refused(msg("1000001", "null"), "http://d", "quantity", "quantity too large");
    refused(msg("true", "null"), "http://d", "quantity", "quantity true");
    refused(msg("10", "42"), "http://d", "factory_api", "factory_api a number");
    refused(msg_edit("kind", "\"stock_arrived\""), "http://d", "stock_empty", "another kind");
}

/* The driver's decisions that come before the database or the factory. */
static void
test_deliver(void)
{
    errbuf err = {""};
    conf *cf;
    db *conn = NULL;
    http *client = http_new(&err);
    order *orders = NULL;
    factory *f = NULL;
    const char *m;

    /* No database listens there: connecting fails at once. */
    setenv("RESTOCK_DB_HOST", "localhost", 1);
    setenv("RESTOCK_DB_SOCKET", "/nonexistent/restock-factory-test.sock", 1);
    setenv("RESTOCK_DB_TIMEOUT", "1", 1);
    setenv("RESTOCK_FACTORY_API", "", 1);
    setenv("RESTOCK_PUBLIC_URL", "http://shop.example", 1);
    unsetenv("RESTOCK_CONFIG");
    cf = conf_new(NULL, &err);
    if (!ok(cf != NULL && client != NULL, "configuration (%s)", err.msg))
        goto done;
    conn = db_new(cf, 0);
    orders = conn ? order_new(conn, &err) : NULL;
    f = orders ? factory_new(cf, orders, client, &err) : NULL;
    if (!ok(conn != NULL && f != NULL, "factory_new (%s)", f ? "" : err.msg))
        goto done;

    m = msg("10", "null");
    is_int(factory_deliver(f, m, strlen(m), &err), FACTORY_PERMANENT,
           "no factory URL anywhere: permanent");
    ok(strstr(err.msg, "no factory API configured for FF-500293") != NULL, "and says so: %s",
       err.msg);

    m = msg_edit("quantity", "\"many\"");
    is_int(factory_deliver(f, m, strlen(m), &err), FACTORY_PERMANENT,
           "a malformed message: permanent");
    ok(strstr(err.msg, "quantity") != NULL, "and says which field: %s", err.msg);

    m = msg("10", "\"http://127.0.0.1:9\"");
    is_int(factory_deliver(f, m, strlen(m), &err), FACTORY_BLOCKED,
           "the database unreachable: try again later, not counted as an attempt");
    ok(strstr(err.msg, "127.0.0.1:9") == NULL && strstr(err.msg, TOKEN) == NULL,
       "the database error, not a request that was made: %s", err.msg);
done:
    factory_destroy(&f);
    ok(f == NULL, "factory_destroy clears the pointer");
    factory_destroy(&f);
    order_destroy(&orders);
    db_destroy(&conn);
    http_destroy(&client);
    conf_destroy(&cf);
}

int
main(void)
{
    errbuf err = {""};

    if (http_global_init(&err) != RS_OK)
        diag("%s", err.msg);
    test_body();
    test_variants();
    test_refused();
    test_deliver();
    http_global_cleanup();
    return done_testing();
}
