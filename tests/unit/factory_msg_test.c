/* Unit test of lib/factory_msg: the factory message as the outbox writes it is
 * the message the driver reads (every field back, ids canonical, factory_api
 * null or a URL), what is read of a malformed one for the operators, and how it
 * is shown to them (the token hidden). The request built from it is
 * tests/unit/factory_test's. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "factory_msg.h"
#include "tap.h"

#define ORDER "5f0c8d9e-1a2b-4c3d-8e4f-000000000042"
#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static struct factory_msg_order
order_of(const char *factory_api)
{
    return (struct factory_msg_order){
        .event_id = "9d1e2f3a-0000-4000-8000-000000000001",
        .order_id = ORDER,
        .product_id = "1a2b3c4d-0000-4000-8000-000000000002",
        .sku = "CP-502101",
        .product_name = "부산도너츠",
        .quantity = 10,
        .factory_id = "2b3c4d5e-0000-4000-8000-000000000003",
        .factory_identifier = "FF-500293",
        .factory_name = "부산도너츠 공장",
        .factory_api = factory_api,
        .token = TOKEN,
        .created_at = "2024-05-01 21:00:00 KST",
    };
}

/* The text of the message of order o (malloc'd), as the outbox puts it. */
static char *
text_of(struct factory_msg_order o)
{
    cJSON *m = factory_msg_new(&o);
    char *text = m ? cJSON_PrintUnformatted(m) : NULL;

    cJSON_Delete(m);
    return text;
}

static void
test_round_trip(void)
{
    char *text = text_of(order_of("http://factory.example:8080"));
    struct factory_msg m;
    errbuf err = {""};
    cJSON *json;

    ok(text != NULL, "a message is made");
    ok(factory_msg_parse(text, strlen(text), &m, &err) == RS_OK, "and read back (%s)", err.msg);
    is_str(m.order_id, ORDER, "its order");
    is_str(m.sku, "CP-502101", "its sku");
    is_int(m.quantity, 10, "its quantity");
    is_str(m.factory_identifier, "FF-500293", "its factory");
    is_str(m.factory_api, "http://factory.example:8080", "its factory's API");
    is_str(m.token, TOKEN, "its token");
    factory_msg_clear(&m);
    is_str(m.token, "", "a cleared message holds no token");
    json = cJSON_Parse(text);
    is_str(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "kind")), "stock_empty",
           "its kind is stock_empty");
    is_str(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "product_name")),
           "부산도너츠", "it names the product for people");
    is_int(cJSON_GetArraySize(json), 13, "thirteen fields");
    cJSON_Delete(json);
    free(text);

    text = text_of(order_of(NULL));
    json = cJSON_Parse(text ? text : "");
    ok(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(json, "factory_api")),
       "no API of its own: factory_api is null");
    ok(factory_msg_parse(text, strlen(text), &m, &err) == RS_OK && m.factory_api == NULL,
       "and read back as none (%s)", err.msg);
    factory_msg_clear(&m);
    cJSON_Delete(json);
    free(text);
}

static void
test_glance(void)
{
    const char *bad = "{\"order_id\":\"" ORDER "\",\"sku\":7,\"quantity\":\"ten\"}";
    struct factory_msg_glance g;
    char *text = text_of(order_of(NULL));

    factory_msg_glance(text, strlen(text), &g);
    ok(g.order_id && strcmp(g.order_id, ORDER) == 0 && g.sku && strcmp(g.sku, "CP-502101") == 0 &&
           g.has_quantity && g.quantity == 10 && g.factory_identifier &&
           strcmp(g.factory_identifier, "FF-500293") == 0,
       "a glance reads the order, sku, quantity and factory");
    factory_msg_glance_clear(&g);
    free(text);

    factory_msg_glance(bad, strlen(bad), &g);
    ok(g.order_id && strcmp(g.order_id, ORDER) == 0 && g.sku == NULL && !g.has_quantity &&
           g.factory_identifier == NULL,
       "of a malformed message, what has its type and nothing else");
    factory_msg_glance_clear(&g);

    factory_msg_glance("not json", 8, &g);
    ok(g.json == NULL && g.order_id == NULL && g.sku == NULL && !g.has_quantity,
       "of a text that is not JSON, nothing");
    factory_msg_glance_clear(&g);
}

static void
test_shown(void)
{
    char *text = text_of(order_of(NULL)), *shown;

    shown = text ? factory_msg_shown(text, strlen(text)) : NULL;
    ok(shown && strstr(shown, TOKEN) == NULL && strstr(shown, "\"token\":\t\"(hidden)\""),
       "shown to an operator, the token is hidden: %s", shown ? shown : "(none)");
    ok(shown && strstr(shown, "\"sku\":\t\"CP-502101\""), "and the rest is there");
    free(shown);
    free(text);
    ok(factory_msg_shown("not json", 8) == NULL, "a text that is not JSON is not shown as JSON");
    shown = factory_msg_shown("{\"template\":\"ad_pause\"}", 23);
    ok(shown && strstr(shown, "ad_pause") && !strstr(shown, "token"),
       "a message without a token is shown as it is");
    free(shown);
}

int
main(void)
{
    test_round_trip();
    test_glance();
    test_shown();
    return done_testing();
}
