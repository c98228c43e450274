/* restock-callback: the FastCGI responder for the factory's callbacks,
 * POST /callbacks/factory/{order id}?token={secret}. The legacy factory calls back
 * once, never retries and ignores the answer: nothing it sends may be lost.
 *
 * The token is checked without the database (token.h: the HMAC of the order id
 * under callback_key), and the body is read (delivery.h), before anything else.
 * With the database up, one transaction (order_fulfil) adds the delivered
 * quantity to the stock, marks the order fulfilled and writes the stock_arrived
 * event, and the answer is 200; after the commit the doorbell rings. A repeated
 * callback changes nothing and answers 200; more than ordered changes nothing and
 * answers 422 (operators get an alert). With the database down, a callback whose
 * keyed token is right is written durably into the spool queue `callback` and
 * answered 202: the worker applies it, through the same order_fulfil, once the
 * database is back. Orders made before keyed tokens (random token, hash stored)
 * are checked against the stored hash, which needs the database: for those an
 * outage still answers 503. 503 answers say the service is unavailable; what the
 * database said goes to the log. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "db.h"
#include "delivery.h"
#include "ident.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "order.h"
#include "responder.h"
#include "spool.h"
#include "token.h"
#include "utf8.h"

#define CALLBACK_PREFIX "/callbacks/factory/"

struct callback_app {
    const conf *cf;
    long quantity_max;
    token_keys keys;
    spool *stored; /* callbacks accepted while the database is down */
};

struct callback_thread {
    struct callback_app *app;
    delivery_agent *agent;
};

static int
callback_app_init(const conf *cf, void **app_out, errbuf *err)
{
    struct callback_app *app = calloc(1, sizeof(*app));

    if (app == NULL)
        return errbuf_set(err, "out of memory");
    /* Without a valid key no callback could be checked: refuse to start. */
    if (token_keys_load(cf, &app->keys, err) != RS_OK || db_library_init(err) != RS_OK) {
        token_keys_wipe(&app->keys);
        free(app);
        return RS_ERR;
    }
    app->stored = spool_new(conf_str(cf, "spool_dir"), DELIVERY_QUEUE, err);
    if (app->stored == NULL) {
        token_keys_wipe(&app->keys);
        db_library_end();
        free(app);
        return RS_ERR;
    }
    app->cf = cf;
    app->quantity_max = conf_int(cf, "callback_quantity_max");
    *app_out = app;
    return RS_OK;
}

static void
callback_app_fini(void *app_ptr)
{
    struct callback_app *app = app_ptr;

    spool_destroy(&app->stored);
    token_keys_wipe(&app->keys);
    free(app);
    bus_shutdown(); /* every thread's doorbell is closed by now */
    db_library_end();
}

static void
callback_thread_fini(void *state)
{
    struct callback_thread *t = state;

    if (t != NULL) {
        delivery_agent_destroy(&t->agent);
        free(t);
    }
}

static int
callback_thread_init(void *app_ptr, void **state, errbuf *err)
{
    struct callback_app *app = app_ptr;
    struct callback_thread *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return errbuf_set(err, "out of memory");
    t->app = app;
    t->agent = delivery_agent_new(app->cf, err);
    if (t->agent == NULL) {
        free(t);
        return RS_ERR;
    }
    *state = t;
    return RS_OK;
}

/* The token of the query string (token=...), copied into out; RS_ERR when it
 * is absent or not a token. */
static int
callback_token(const char *query, char out[TOKEN_HEX + 1])
{
    const char *p = query;

    out[0] = '\0';
    while (p != NULL && *p != '\0') {
        if (strncmp(p, "token=", 6) == 0)
            return token_parse(p + 6, strcspn(p + 6, "&"), out);
        p = strchr(p, '&');
        if (p != NULL)
            p++;
    }
    return RS_ERR;
}

/* The answer to an anonymous client when the database failed under a request:
 * the service is unavailable; what failed is logged, never told. */
static void
callback_unavailable(responder_request *rq)
{
    metrics_count(METRICS_CALLBACK_UNAVAILABLE);
    responder_header(rq, "Retry-After", "5");
    responder_reply_error(rq, 503, "service unavailable: the callback was not recorded");
}

/* The database is down and the token is the order's under our key: the
 * delivery goes to disk (fsync'd) for the worker, and the answer is 202. */
static void
callback_store(responder_request *rq, struct callback_thread *t, const struct delivery *d)
{
    char *text = delivery_format(d);
    cJSON *reply = NULL;
    errbuf err = {{0}};
    int put;

    if (text == NULL) {
        responder_reply_error(rq, 500, "out of memory");
        return;
    }
    /* Named by the order: a second callback of the same order while the first
     * waits is the same delivery (the factory calls once). */
    put = spool_put(t->app->stored, d->order_id, NULL, text, strlen(text), &err);
    free(text);
    if (put < 0) {
        log_error("event=callback_failed order=%s quantity=%lld error=\"%s\"", d->order_id,
                  d->quantity, err.msg);
        callback_unavailable(rq);
        return;
    }
    log_warn("event=callback_stored order=%s quantity=%lld queue=%s new=%d", d->order_id,
             d->quantity, DELIVERY_QUEUE, put);
    if (bus_ring(delivery_agent_bell(t->agent), DELIVERY_QUEUE, d->order_id) != RS_OK) {
        metrics_count(METRICS_DOORBELLS_DROPPED);
        log_warn("event=doorbell_dropped topic=%s order=%s", DELIVERY_QUEUE, d->order_id);
    }
    reply = cJSON_CreateObject();
    if (reply == NULL) {
        responder_reply_error(rq, 500, "out of memory");
        return;
    }
    cJSON_AddStringToObject(reply, "message", "입고 콜백을 접수했습니다. 곧 재고에 반영됩니다");
    cJSON_AddStringToObject(reply, "order_id", d->order_id);
    cJSON_AddNumberToObject(reply, "delivered", (double)d->quantity);
    cJSON_AddStringToObject(reply, "status", "accepted");
    cJSON_AddStringToObject(reply, "detail",
                            "accepted: stored durably, it will be applied when the database is "
                            "back");
    metrics_count(METRICS_CALLBACK_STORED);
    responder_reply_json(rq, 202, reply);
    cJSON_Delete(reply);
}

static void
callback_handle(responder_request *rq, void *state)
{
    struct callback_thread *t = state;
    const char *path = responder_path(rq), *body;
    char order_text[IDENT_TEXT], token[TOKEN_HEX + 1];
    unsigned char order_id[IDENT_BYTES];
    struct order_view view;
    struct order_fulfil_outcome outcome;
    struct delivery d;
    size_t body_len;
    int found, keyed, result;
    cJSON *reply = NULL;
    errbuf err = {{0}};

    if (strncmp(path, CALLBACK_PREFIX, strlen(CALLBACK_PREFIX)) != 0 ||
        ident_parse(path + strlen(CALLBACK_PREFIX), order_id) != 0) {
        metrics_count(METRICS_CALLBACK_NOT_FOUND);
        responder_reply_error(rq, 404, "unknown order: %.*s is not an order's callback URL",
                              (int)utf8_cut(path, strlen(path), 200), path);
        return;
    }
    ident_format(order_id, sizeof(order_id), order_text);
    if (strcmp(responder_method(rq), "POST") != 0) {
        metrics_count(METRICS_CALLBACK_BAD_REQUEST);
        responder_header(rq, "Allow", "POST");
        responder_reply_error(rq, 405, "method %.*s not allowed: use POST",
                              (int)utf8_cut(responder_method(rq), strlen(responder_method(rq)), 16),
                              responder_method(rq));
        return;
    }

    /* The key decides without the database; a token of an order made before keyed
     * tokens is checked against its stored hash below. */
    if (callback_token(responder_param(rq, "QUERY_STRING"), token) != RS_OK) {
        log_warn("event=callback_rejected order=%s reason=bad_token", order_text);
        metrics_count(METRICS_CALLBACK_FORBIDDEN);
        responder_reply_error(rq, 403, "forbidden: missing or wrong token for order %s",
                              order_text);
        return;
    }
    keyed = token_verify_order(&t->app->keys, order_text, token);
    body = responder_body(rq, &body_len);
    if (keyed && delivery_from_callback(order_text, body, body_len, t->app->quantity_max, &d,
                                        &err) != RS_OK) {
        metrics_count(METRICS_CALLBACK_BAD_REQUEST);
        responder_reply_error(rq, 400, "%s", err.msg);
        return;
    }

    found = order_get(delivery_agent_orders(t->agent), order_text, &view, &err);
    if (found < 0) {
        metrics_count(METRICS_DATABASE_ERRORS);
        log_error("event=callback_db_failed order=%s error=\"%s\"", order_text, err.msg);
        if (keyed)
            callback_store(rq, t, &d);
        else
            callback_unavailable(rq); /* a legacy token needs its stored hash */
        return;
    }
    if (found == 0) {
        log_warn("event=callback_rejected order=%s reason=unknown_order", order_text);
        metrics_count(METRICS_CALLBACK_NOT_FOUND);
        responder_reply_error(rq, 404, "unknown order %s", order_text);
        return;
    }
    if (!keyed &&
        !(view.token_legacy && token_verify(token, view.token_hash, view.token_hash_len))) {
        log_warn("event=callback_rejected order=%s reason=bad_token", order_text);
        metrics_count(METRICS_CALLBACK_FORBIDDEN);
        responder_reply_error(rq, 403, "forbidden: missing or wrong token for order %s",
                              order_text);
        return;
    }
    if (!keyed && delivery_from_callback(order_text, body, body_len, t->app->quantity_max, &d,
                                         &err) != RS_OK) {
        metrics_count(METRICS_CALLBACK_BAD_REQUEST);
        responder_reply_error(rq, 400, "%s", err.msg);
        return;
    }

    result = delivery_agent_apply(t->agent, &view, &d, 0, &outcome, &err);
    if (result == DELIVERY_WRONG_PRODUCT) {
        metrics_count(METRICS_CALLBACK_BAD_REQUEST);
        responder_reply_error(rq, 400, "%s", err.msg);
        return;
    }
    if (result < 0) {
        metrics_count(METRICS_DATABASE_ERRORS);
        log_error("event=callback_db_failed order=%s quantity=%lld error=\"%s\"", order_text,
                  d.quantity, err.msg);
        if (keyed)
            callback_store(rq, t, &d);
        else
            callback_unavailable(rq);
        return;
    }
    if (result == DELIVERY_REFUSED) {
        metrics_count(METRICS_CALLBACK_REFUSED);
        responder_reply_error(rq, 422,
                              "order %s was for %lld, the callback claims %lld: more than "
                              "ordered, nothing was applied (operators are told)",
                              order_text, outcome.ordered, d.quantity);
        return;
    }

    reply = cJSON_CreateObject();
    if (reply == NULL) {
        responder_reply_error(rq, 500, "out of memory");
        return;
    }
    if (result == DELIVERY_REPEATED) {
        cJSON_AddStringToObject(reply, "message", "이미 입고 처리된 주문입니다");
        cJSON_AddStringToObject(reply, "order_id", order_text);
        cJSON_AddStringToObject(reply, "status", "fulfilled");
    } else {
        char message[96];
        snprintf(message, sizeof(message), "입고 완료! 남은 재고: %lld", outcome.stock);
        cJSON_AddStringToObject(reply, "message", message);
        cJSON_AddStringToObject(reply, "order_id", order_text);
        cJSON_AddStringToObject(reply, "sku", view.sku);
        cJSON_AddNumberToObject(reply, "delivered", (double)d.quantity);
        cJSON_AddNumberToObject(reply, "ordered", (double)outcome.ordered);
        cJSON_AddStringToObject(reply, "delivery", d.quantity < outcome.ordered ? "short" : "full");
        cJSON_AddNumberToObject(reply, "stock", (double)outcome.stock);
        cJSON_AddStringToObject(reply, "status", "fulfilled");
    }
    metrics_count(result == DELIVERY_REPEATED ? METRICS_CALLBACK_REPEATED : METRICS_CALLBACK_OK);
    responder_reply_json(rq, 200, reply);
    cJSON_Delete(reply);
}

static const struct responder_program callback_program = {
    .name = "restock-callback",
    .socket_key = "callback_socket",
    .threads_key = "callback_threads",
    .app_init = callback_app_init,
    .app_fini = callback_app_fini,
    .thread_init = callback_thread_init,
    .thread_fini = callback_thread_fini,
    .handle = callback_handle,
};

int
main(int argc, char **argv)
{
    return responder_main(argc, argv, &callback_program);
}
