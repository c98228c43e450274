/* factory_msg: the factory message and the factory request (see factory_msg.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "factory_msg.h"
#include "json.h"

#define FACTORY_MSG_KIND      "stock_empty"
#define FACTORY_MSG_FIELD_MAX 255
#define FACTORY_MSG_URL_MAX   2048
#define FACTORY_MSG_TOKEN_KEY "token"

/* Adds key: s, or null when s is NULL. 0 when out of memory. */
static int
factory_msg_add(cJSON *m, const char *key, const char *s)
{
    return (s != NULL ? cJSON_AddStringToObject(m, key, s) : cJSON_AddNullToObject(m, key)) != NULL;
}

cJSON *
factory_msg_new(const struct factory_msg_order *o)
{
    cJSON *m = cJSON_CreateObject();

    if (m == NULL || !factory_msg_add(m, "event_id", o->event_id) ||
        !factory_msg_add(m, "kind", FACTORY_MSG_KIND) ||
        !factory_msg_add(m, "order_id", o->order_id) ||
        !factory_msg_add(m, "product_id", o->product_id) || !factory_msg_add(m, "sku", o->sku) ||
        !factory_msg_add(m, "product_name", o->product_name) ||
        cJSON_AddNumberToObject(m, "quantity", (double)o->quantity) == NULL ||
        !factory_msg_add(m, "factory_id", o->factory_id) ||
        !factory_msg_add(m, "factory_identifier", o->factory_identifier) ||
        !factory_msg_add(m, "factory_name", o->factory_name) ||
        !factory_msg_add(m, "factory_api", o->factory_api) ||
        !factory_msg_add(m, FACTORY_MSG_TOKEN_KEY, o->token) ||
        !factory_msg_add(m, "created_at", o->created_at)) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

/* A required string field of 1 to max characters. */
static int
factory_msg_field(const cJSON *json, const char *key, size_t max, const char **out, errbuf *err)
{
    *out = NULL;
    if (json_opt_str(json, key, 1, max, out, err) != RS_OK)
        return RS_ERR;
    if (*out == NULL)
        return errbuf_set(err, "%s is missing", key);
    return RS_OK;
}

void
factory_msg_clear(struct factory_msg *m)
{
    cJSON_Delete(m->json);
    m->json = NULL;
    sodium_memzero(m->token, sizeof(m->token));
}

int
factory_msg_parse(const char *msg, size_t len, struct factory_msg *m, errbuf *err)
{
    const cJSON *api;
    const char *kind = NULL, *order_id = NULL, *token = NULL;

    memset(m, 0, sizeof(*m));
    if (json_parse_object(msg, len, &m->json, err) != RS_OK)
        return errbuf_prefix(err, "factory message");
    if (factory_msg_field(m->json, "kind", FACTORY_MSG_FIELD_MAX, &kind, err) != RS_OK ||
        factory_msg_field(m->json, "order_id", IDENT_TEXT - 1, &order_id, err) != RS_OK ||
        factory_msg_field(m->json, "sku", FACTORY_MSG_FIELD_MAX, &m->sku, err) != RS_OK ||
        factory_msg_field(m->json, "factory_identifier", FACTORY_MSG_FIELD_MAX,
                          &m->factory_identifier, err) != RS_OK ||
        factory_msg_field(m->json, FACTORY_MSG_TOKEN_KEY, TOKEN_HEX, &token, err) != RS_OK)
        goto fail;
    if (strcmp(kind, FACTORY_MSG_KIND) != 0) {
        errbuf_set(err, "kind is \"%.40s\", not " FACTORY_MSG_KIND, kind);
        goto fail;
    }
    if (ident_parse(order_id, m->id) != 0) {
        errbuf_set(err, "order_id \"%s\" is not a UUID", order_id);
        goto fail;
    }
    ident_format(m->id, sizeof(m->id), m->order_id);
    if (token_parse(token, strlen(token), m->token) != RS_OK) {
        /* Never quote the token, even a malformed one. */
        errbuf_set(err, "token of order %s is not %d lower-case hex digits", m->order_id,
                   TOKEN_HEX);
        goto fail;
    }
    m->quantity = 0;
    if (json_opt_int(m->json, "quantity", 1, FACTORY_MSG_QUANTITY_MAX, JSON_NUMERIC_STRING,
                     &m->quantity, err) != RS_OK)
        goto fail;
    if (m->quantity == 0) {
        errbuf_set(err, "quantity is missing");
        goto fail;
    }
    /* null or "" means: the factory has no API of its own, use the configured one. */
    api = cJSON_GetObjectItemCaseSensitive(m->json, "factory_api");
    if (api != NULL && !cJSON_IsNull(api) &&
        json_opt_str(m->json, "factory_api", 0, FACTORY_MSG_URL_MAX, &m->factory_api, err) != RS_OK)
        goto fail;
    return RS_OK;
fail:
    factory_msg_clear(m);
    return errbuf_prefix(err, "factory message");
}

/* s without the slashes at its end, as a length (for "%.*s"). */
static int
factory_msg_trim(const char *s)
{
    size_t n = strlen(s);

    while (n > 0 && s[n - 1] == '/')
        n--;
    return (int)n;
}

int
factory_msg_request(const struct factory_msg *m, const char *requester, const char *public_url,
                    const char *default_api, char **url, char **body, errbuf *err)
{
    const char *base =
        m->factory_api != NULL && m->factory_api[0] != '\0' ? m->factory_api : default_api;
    char *callback = NULL;
    cJSON *req = NULL;
    int ret = RS_ERR;

    *url = *body = NULL;
    if (base == NULL || factory_msg_trim(base) == 0)
        return errbuf_set(err,
                          "no factory API configured for %s (factory.api is empty and so is "
                          "factory_api)",
                          m->factory_identifier);
    if (public_url == NULL || factory_msg_trim(public_url) == 0)
        return errbuf_set(err, "public_url is empty: the factory could not call back");
    if (asprintf(&callback, "%.*s/callbacks/factory/%s?token=%s", factory_msg_trim(public_url),
                 public_url, m->order_id, m->token) < 0) {
        callback = NULL;
        errbuf_set(err, "out of memory");
        goto done;
    }
    req = cJSON_CreateObject();
    if (req == NULL ||
        cJSON_AddStringToObject(req, FACTORY_MSG_GROUP, FACTORY_MSG_GROUP_VALUE) == NULL ||
        cJSON_AddStringToObject(req, FACTORY_MSG_SKU, m->sku) == NULL ||
        cJSON_AddNumberToObject(req, FACTORY_MSG_QUANTITY, (double)m->quantity) == NULL ||
        cJSON_AddStringToObject(req, FACTORY_MSG_FACTORY, m->factory_identifier) == NULL ||
        cJSON_AddStringToObject(req, FACTORY_MSG_REQUESTER, requester ? requester : "") == NULL ||
        cJSON_AddStringToObject(req, FACTORY_MSG_CALLBACK_URL, callback) == NULL ||
        (*body = cJSON_PrintUnformatted(req)) == NULL) {
        errbuf_set(err, "out of memory");
        goto done;
    }
    if (asprintf(url, "%.*s/api/manufactures", factory_msg_trim(base), base) < 0) {
        *url = NULL;
        errbuf_set(err, "out of memory");
        goto done;
    }
    ret = RS_OK;
done:
    if (ret != RS_OK) {
        cJSON_free(*body);
        *body = NULL;
    }
    if (callback != NULL)
        sodium_memzero(callback, strlen(callback));
    free(callback);
    cJSON_Delete(req);
    return ret;
}

int
factory_msg_request_body(const char *msg, size_t len, const char *requester, const char *public_url,
                         const char *default_api, char **url, char **body, errbuf *err)
{
    struct factory_msg m;
    char *json_body = NULL;
    int ret;

    *url = *body = NULL;
    if (factory_msg_parse(msg, len, &m, err) != RS_OK)
        return RS_ERR;
    ret = factory_msg_request(&m, requester, public_url, default_api, url, &json_body, err);
    factory_msg_clear(&m);
    if (ret != RS_OK)
        return RS_ERR;
    /* cJSON allocates with its own hooks; the caller frees with free(). */
    *body = strdup(json_body);
    sodium_memzero(json_body, strlen(json_body));
    cJSON_free(json_body);
    if (*body == NULL) {
        free(*url);
        *url = NULL;
        return errbuf_set(err, "out of memory");
    }
    return RS_OK;
}

/* A string member of json, or NULL. */
static const char *
factory_msg_str(const cJSON *json, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, key));
}

void
factory_msg_glance(const char *msg, size_t len, struct factory_msg_glance *g)
{
    const cJSON *quantity;

    memset(g, 0, sizeof(*g));
    g->json = cJSON_ParseWithLength(msg, len);
    g->order_id = factory_msg_str(g->json, "order_id");
    g->sku = factory_msg_str(g->json, "sku");
    g->factory_identifier = factory_msg_str(g->json, "factory_identifier");
    quantity = cJSON_GetObjectItemCaseSensitive(g->json, "quantity");
    g->has_quantity = cJSON_IsNumber(quantity);
    g->quantity = g->has_quantity ? quantity->valueint : 0;
}

void
factory_msg_glance_clear(struct factory_msg_glance *g)
{
    cJSON_Delete(g->json);
    memset(g, 0, sizeof(*g));
}

char *
factory_msg_shown(const char *msg, size_t len)
{
    cJSON *json = cJSON_ParseWithLength(msg, len);
    char *text;

    if (json == NULL)
        return NULL;
    if (cJSON_HasObjectItem(json, FACTORY_MSG_TOKEN_KEY))
        cJSON_ReplaceItemInObjectCaseSensitive(json, FACTORY_MSG_TOKEN_KEY,
                                               cJSON_CreateString("(hidden)"));
    text = cJSON_Print(json);
    cJSON_Delete(json);
    return text;
}
