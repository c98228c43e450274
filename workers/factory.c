/* factory: the factory driver of the queue worker (see factory.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "factory.h"
#include "ident.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "token.h"
#include "utf8.h"

#define FACTORY_QUANTITY_MAX 1000000 /* product.reorder_quantity's upper bound */
#define FACTORY_FIELD_MAX    255
#define FACTORY_URL_MAX      2048
#define FACTORY_REF_MAX      64 /* the order's factory_ref */
#define FACTORY_ANSWER_SHOWN 200

struct factory {
    const conf *cf;
    order *orders;
    http *client;
};

/* The fields of a factory-queue message the driver needs; strings point into json. */
struct factory_msg {
    cJSON *json;
    const char *sku, *factory_identifier, *factory_api;
    char token[TOKEN_HEX + 1]; /* a secret: zeroed by factory_msg_clear */
    long long quantity;
    unsigned char id[IDENT_BYTES];
    char order_id[IDENT_TEXT]; /* canonical, as the callback responder reads it */
};

factory *
factory_new(const conf *cf, order *orders, http *client, errbuf *err)
{
    factory *self;

    /* The driver zeroes what holds a token with libsodium, which wants its
     * start-up before any other call. */
    if (token_init(err) != RS_OK)
        return NULL;
    self = calloc(1, sizeof(*self));
    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    self->cf = cf;
    self->orders = orders;
    self->client = client;
    return self;
}

void
factory_destroy(factory **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

/* A required string field of 1 to max characters. */
static int
factory_field(const cJSON *json, const char *key, size_t max, const char **out, errbuf *err)
{
    *out = NULL;
    if (json_opt_str(json, key, 1, max, out, err) != RS_OK)
        return RS_ERR;
    if (*out == NULL)
        return errbuf_set(err, "%s is missing", key);
    return RS_OK;
}

/* Deletes what factory_msg_parse made, the token zeroed. */
static void
factory_msg_clear(struct factory_msg *m)
{
    cJSON_Delete(m->json);
    m->json = NULL;
    sodium_memzero(m->token, sizeof(m->token));
}

/* Parses and checks a message; on RS_OK the caller clears it (factory_msg_clear). */
static int
factory_msg_parse(const char *msg, size_t len, struct factory_msg *m, errbuf *err)
{
    const cJSON *api;
    const char *kind = NULL, *order_id = NULL, *token = NULL;

    memset(m, 0, sizeof(*m));
    if (json_parse_object(msg, len, &m->json, err) != RS_OK)
        return errbuf_prefix(err, "factory message");
    if (factory_field(m->json, "kind", FACTORY_FIELD_MAX, &kind, err) != RS_OK ||
        factory_field(m->json, "order_id", IDENT_TEXT - 1, &order_id, err) != RS_OK ||
        factory_field(m->json, "sku", FACTORY_FIELD_MAX, &m->sku, err) != RS_OK ||
        factory_field(m->json, "factory_identifier", FACTORY_FIELD_MAX, &m->factory_identifier,
                      err) != RS_OK ||
        factory_field(m->json, "token", TOKEN_HEX, &token, err) != RS_OK)
        goto fail;
    if (strcmp(kind, "stock_empty") != 0) {
        errbuf_set(err, "kind is \"%.40s\", not stock_empty", kind);
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
    if (json_opt_int(m->json, "quantity", 1, FACTORY_QUANTITY_MAX, JSON_NUMERIC_STRING,
                     &m->quantity, err) != RS_OK)
        goto fail;
    if (m->quantity == 0) {
        errbuf_set(err, "quantity is missing");
        goto fail;
    }
    /* null or "" means: the factory has no API of its own, use the configured one. */
    api = cJSON_GetObjectItemCaseSensitive(m->json, "factory_api");
    if (api != NULL && !cJSON_IsNull(api) &&
        json_opt_str(m->json, "factory_api", 0, FACTORY_URL_MAX, &m->factory_api, err) != RS_OK)
        goto fail;
    return RS_OK;
fail:
    factory_msg_clear(m);
    return errbuf_prefix(err, "factory message");
}

/* s without the slashes at its end, as a length (for "%.*s"). */
static int
factory_trim(const char *s)
{
    size_t n = strlen(s);

    while (n > 0 && s[n - 1] == '/')
        n--;
    return (int)n;
}

/* Builds the request of a parsed message (see factory_request_body). */
static int
factory_build(const struct factory_msg *m, const char *requester, const char *public_url,
              const char *default_api, char **url, char **body, errbuf *err)
{
    const char *base =
        m->factory_api != NULL && m->factory_api[0] != '\0' ? m->factory_api : default_api;
    char *callback = NULL;
    cJSON *req = NULL;
    int ret = RS_ERR;

    *url = *body = NULL;
    if (base == NULL || factory_trim(base) == 0)
        return errbuf_set(err,
                          "no factory API configured for %s (factory.api is empty and so is "
                          "factory_api)",
                          m->factory_identifier);
    if (public_url == NULL || factory_trim(public_url) == 0)
        return errbuf_set(err, "public_url is empty: the factory could not call back");
    if (asprintf(&callback, "%.*s/callbacks/factory/%s?token=%s", factory_trim(public_url),
                 public_url, m->order_id, m->token) < 0) {
        callback = NULL;
        errbuf_set(err, "out of memory");
        goto done;
    }
    req = cJSON_CreateObject();
    if (req == NULL ||
        cJSON_AddStringToObject(req, "MessageGroupId", "stock-arrival-group") == NULL ||
        cJSON_AddStringToObject(req, "MessageAttributeProductId", m->sku) == NULL ||
        cJSON_AddNumberToObject(req, "MessageAttributeProductCnt", (double)m->quantity) == NULL ||
        cJSON_AddStringToObject(req, "MessageAttributeFactoryId", m->factory_identifier) == NULL ||
        cJSON_AddStringToObject(req, "MessageAttributeRequester", requester ? requester : "") ==
            NULL ||
        cJSON_AddStringToObject(req, "CallbackUrl", callback) == NULL ||
        (*body = cJSON_PrintUnformatted(req)) == NULL) {
        errbuf_set(err, "out of memory");
        goto done;
    }
    if (asprintf(url, "%.*s/api/manufactures", factory_trim(base), base) < 0) {
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
factory_request_body(const char *msg, size_t len, const char *requester, const char *public_url,
                     const char *default_api, char **url, char **body, errbuf *err)
{
    struct factory_msg m;
    char *json_body = NULL;
    int ret;

    *url = *body = NULL;
    if (factory_msg_parse(msg, len, &m, err) != RS_OK)
        return RS_ERR;
    ret = factory_build(&m, requester, public_url, default_api, url, &json_body, err);
    factory_msg_clear(&m);
    if (ret != RS_OK)
        return RS_ERR;
    /* cJSON allocates with its own hooks; the caller frees with free(). */
    *body = strdup(json_body);
    cJSON_free(json_body);
    if (*body == NULL) {
        free(*url);
        *url = NULL;
        return errbuf_set(err, "out of memory");
    }
    return RS_OK;
}

/* "factory FF-1 answered 404 to order X: <start of its answer>", without the
 * answer when it quotes the callback token. The factory's bytes go into logs,
 * alerts and the order's row: the first FACTORY_ANSWER_SHOWN characters, made valid
 * UTF-8 on one line with control characters shown as escapes (a factory answering
 * in EUC-KR, say), and cut where err is full at a whole character or escape. */
static void
factory_answer_error(const struct factory_msg *m, long status, const char *answer, errbuf *err)
{
    int n;

    errbuf_set(err, "factory %s answered HTTP %ld to order %s: ", m->factory_identifier, status,
               m->order_id);
    n = (int)strlen(err->msg);
    if (answer != NULL && strstr(answer, m->token) != NULL)
        snprintf(err->msg + n, sizeof(err->msg) - (size_t)n,
                 "(answer withheld: it quotes the callback token)");
    else if (answer != NULL)
        utf8_sanitize(answer, utf8_cut_chars(answer, strlen(answer), FACTORY_ANSWER_SHOWN),
                      err->msg + n, sizeof(err->msg) - (size_t)n);
}

/* The factory's id for the order, from {"data":{"id":…}}; NULL when absent. */
static char *
factory_ref(const char *answer)
{
    cJSON *json = answer != NULL ? cJSON_Parse(answer) : NULL;
    const char *id = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(json, "data"), "id"));
    char *ref = NULL;

    if (id != NULL && id[0] != '\0' && strlen(id) <= FACTORY_REF_MAX && utf8_valid(id, strlen(id)))
        ref = strdup(id);
    cJSON_Delete(json);
    return ref;
}

/* Counts a failed attempt in the order's row. The message's fate does not hang on
 * it, so a failure here is only logged. */
static void
factory_count_failure(factory *self, const struct factory_msg *m, const errbuf *why)
{
    errbuf err = {""};

    if (order_attempt_failed(self->orders, m->order_id, why->msg, &err) != RS_OK)
        log_warn("event=factory_attempt_not_recorded order=%s error=\"%s\"", m->order_id, err.msg);
}

enum factory_result
factory_deliver(factory *self, const char *msg, size_t len, errbuf *err)
{
    const char *const *headers;
    char idem[64 + IDENT_TEXT], *url = NULL, *body = NULL, *ref = NULL;
    const char *answer = NULL;
    struct factory_msg m;
    enum factory_result result = FACTORY_PERMANENT;
    enum order_status order_status;
    struct timespec began, ended;
    long status = 0;
    int sent;

    if (self->client == NULL) {
        errbuf_set(err, "the factory driver was made without an http client");
        return FACTORY_PERMANENT;
    }
    if (factory_msg_parse(msg, len, &m, err) != RS_OK)
        return FACTORY_PERMANENT;
    if (factory_build(&m, conf_str(self->cf, "requester"), conf_str(self->cf, "public_url"),
                      conf_str(self->cf, "factory_api"), &url, &body, err) != RS_OK)
        goto done;

    /* Only the first message of an order stores its token's hash; one already
     * sent or fulfilled is done. */
    switch (order_claim(self->orders, m.order_id, m.token, &order_status, err)) {
    case ORDER_CLAIMED:
        break;
    case ORDER_SETTLED:
        log_info("event=factory_skip order=%s factory=%s status=%s", m.order_id,
                 m.factory_identifier, order_status_name(order_status));
        result = FACTORY_SENT;
        goto done;
    case ORDER_REFUSED:
        goto done;
    default:
        result = FACTORY_BLOCKED; /* the factory was not asked: no attempt */
        goto done;
    }

    snprintf(idem, sizeof(idem), "Idempotency-Key: %s", m.order_id);
    headers = (const char *const[]){idem, NULL};
    clock_gettime(CLOCK_MONOTONIC, &began);
    sent = http_post_json(self->client, url, headers, body, conf_int(self->cf, "attempt_timeout"),
                          &status, &answer, err);
    clock_gettime(CLOCK_MONOTONIC, &ended);
    metrics_factory_request(sent == RS_OK ? status : 0,
                            (double)(ended.tv_sec - began.tv_sec) +
                                (double)(ended.tv_nsec - began.tv_nsec) / 1e9);
    if (sent != RS_OK) {
        errbuf_prefix(err, "order %s to factory %s", m.order_id, m.factory_identifier);
        /* A malformed URL stays malformed; everything else may pass. */
        result =
            http_last_failure(self->client) == HTTP_FAIL_URL ? FACTORY_PERMANENT : FACTORY_RETRY;
        if (result == FACTORY_RETRY)
            factory_count_failure(self, &m, err);
        goto done;
    }
    if (status >= 200 && status <= 299) {
        ref = factory_ref(answer);
        if (order_sent(self->orders, m.order_id, ref, err) != RS_OK) {
            /* The factory has the order but the row does not say so. Sending it again
             * is the safe side: the callback of a second copy changes nothing. */
            errbuf_prefix(err, "factory %s took order %s but marking it sent failed",
                          m.factory_identifier, m.order_id);
            result = FACTORY_RETRY;
            goto done;
        }
        log_info("event=factory_sent order=%s factory=%s sku=%s quantity=%lld status=%ld ref=%s",
                 m.order_id, m.factory_identifier, m.sku, m.quantity, status, ref ? ref : "-");
        result = FACTORY_SENT;
        goto done;
    }
    factory_answer_error(&m, status, answer, err);
    if (status == 408 || status == 429 || status >= 500 || status < 300) {
        result = FACTORY_RETRY;
        factory_count_failure(self, &m, err);
    }
done:
    free(ref);
    if (body != NULL)
        sodium_memzero(body, strlen(body));
    free(body);
    free(url);
    factory_msg_clear(&m);
    return result;
}
