/* factory: the factory driver of the queue worker (see factory.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "factory.h"
#include "factory_msg.h"
#include "ident.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "token.h"
#include "utf8.h"

#define FACTORY_REF_MAX      64 /* the order's factory_ref */
#define FACTORY_ANSWER_SHOWN 200

struct factory {
    const conf *cf;
    order *orders;
    http *client;
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
    if (factory_msg_request(&m, conf_str(self->cf, "requester"), conf_str(self->cf, "public_url"),
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
