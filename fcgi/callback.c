/* restock-callback: the FastCGI responder for the factory's callbacks,
 * POST /callbacks/factory/{order id}?token={secret}. It checks the order's token in
 * constant time against the stored hash, then in one transaction adds the
 * delivered quantity to the stock, marks the order fulfilled and writes the
 * stock_arrived event; after the commit it rings the doorbell. The legacy factory
 * calls back once, never retries and ignores the answer, so a repeated callback
 * changes nothing and still answers 200, and a transient database failure is
 * retried here before the callback is given up (503). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "db.h"
#include "ident.h"
#include "json.h"
#include "log.h"
#include "order.h"
#include "responder.h"
#include "token.h"

#define CALLBACK_PREFIX "/callbacks/factory/"

struct callback_app {
    const conf *cf;
    long quantity_max;
};

struct callback_thread {
    struct callback_app *app;
    db *conn;
    bus_pub *bell;
    order *orders;
};

static int
callback_app_init(const conf *cf, void **app_out, errbuf *err)
{
    struct callback_app *app = calloc(1, sizeof(*app));

    if (app == NULL)
        return errbuf_set(err, "out of memory");
    if (token_init(err) != RS_OK || db_library_init(err) != RS_OK) {
        free(app);
        return RS_ERR;
    }
    app->cf = cf;
    app->quantity_max = conf_int(cf, "callback_quantity_max");
    *app_out = app;
    return RS_OK;
}

static void
callback_app_fini(void *app)
{
    free(app);
    bus_shutdown(); /* every thread's doorbell is closed by now */
    db_library_end();
}

static void
callback_thread_fini(void *state)
{
    struct callback_thread *t = state;

    if (t != NULL) {
        order_destroy(&t->orders);
        bus_pub_destroy(&t->bell);
        db_destroy(&t->conn);
        free(t);
    }
    db_thread_end();
}

static int
callback_thread_init(void *app_ptr, void **state, errbuf *err)
{
    struct callback_app *app = app_ptr;
    struct callback_thread *t = NULL;

    if (db_thread_init(err) != RS_OK)
        goto fail;
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    t->app = app;
    t->conn = db_new(app->cf, 0);
    if (t->conn == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    t->bell = bus_pub_new(conf_str(app->cf, "bus_endpoint"), err);
    if (t->bell == NULL)
        goto fail;
    t->orders = order_new(t->conn, err);
    if (t->orders == NULL)
        goto fail;
    *state = t;
    return RS_OK;
fail:
    callback_thread_fini(t);
    return RS_ERR;
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

static void
callback_handle(responder_request *rq, void *state)
{
    struct callback_thread *t = state;
    const char *path = responder_path(rq), *body, *sku = NULL;
    char order_text[IDENT_TEXT], token[TOKEN_HEX + 1];
    unsigned char order_id[IDENT_BYTES];
    struct order_view view;
    struct order_fulfil_outcome outcome;
    long long delivered = 0;
    size_t body_len;
    int found;
    cJSON *json = NULL, *reply = NULL;
    errbuf err = {{0}};

    if (strncmp(path, CALLBACK_PREFIX, strlen(CALLBACK_PREFIX)) != 0 ||
        ident_parse(path + strlen(CALLBACK_PREFIX), order_id) != 0) {
        responder_reply_error(rq, 404, "unknown order: %s is not an order's callback URL", path);
        return;
    }
    ident_format(order_id, sizeof(order_id), order_text);
    if (strcmp(responder_method(rq), "POST") != 0) {
        responder_header(rq, "Allow", "POST");
        responder_reply_error(rq, 405, "method %s not allowed: use POST", responder_method(rq));
        return;
    }

    found = order_get(t->orders, order_text, &view, &err);
    if (found < 0) {
        log_error("event=callback_failed order=%s error=\"%s\"", order_text, err.msg);
        responder_reply_error(rq, 503, "database unavailable: the callback was not recorded");
        return;
    }
    if (found == 0) {
        log_warn("event=callback_rejected order=%s reason=unknown_order", order_text);
        responder_reply_error(rq, 404, "unknown order %s", order_text);
        return;
    }
    if (callback_token(responder_param(rq, "QUERY_STRING"), token) != RS_OK ||
        !token_verify(token, view.token_hash, view.token_hash_len)) {
        log_warn("event=callback_rejected order=%s reason=bad_token", order_text);
        responder_reply_error(rq, 403, "forbidden: missing or wrong token for order %s",
                              order_text);
        return;
    }
    body = responder_body(rq, &body_len);
    if (json_parse_object(body, body_len, &json, &err) != RS_OK) {
        responder_reply_error(rq, 400, "%s", err.msg);
        goto done;
    }
    if (!cJSON_HasObjectItem(json, "MessageAttributeProductCnt")) {
        responder_reply_error(rq, 400, "MessageAttributeProductCnt is missing");
        goto done;
    }
    if (json_opt_int(json, "MessageAttributeProductCnt", 1, t->app->quantity_max,
                     JSON_NUMERIC_STRING, &delivered, &err) != RS_OK) {
        responder_reply_error(rq, 400, "%s", err.msg);
        goto done;
    }
    /* The factory echoes the order: a callback naming another product is not one
     * of ours, whatever its token says. */
    if (json_opt_str(json, "MessageAttributeProductId", 1, 64, &sku, &err) != RS_OK) {
        responder_reply_error(rq, 400, "%s", err.msg);
        goto done;
    }
    if (sku != NULL && strcmp(sku, view.sku) != 0) {
        responder_reply_error(rq, 400,
                              "MessageAttributeProductId %s is not the product %s of order %s", sku,
                              view.sku, order_text);
        goto done;
    }

    if (order_fulfil(t->orders, order_text, delivered, &outcome, &err) != RS_OK) {
        log_error("event=callback_failed order=%s quantity=%lld error=\"%s\"", order_text,
                  delivered, err.msg);
        responder_reply_error(rq, 503, "database unavailable: the callback was not recorded");
        goto done;
    }

    reply = cJSON_CreateObject();
    if (reply == NULL) {
        responder_reply_error(rq, 500, "out of memory");
        goto done;
    }
    if (outcome.repeated) {
        log_info("event=callback_repeated order=%s", order_text);
        cJSON_AddStringToObject(reply, "message", "이미 입고 처리된 주문입니다");
        cJSON_AddStringToObject(reply, "order_id", order_text);
        cJSON_AddStringToObject(reply, "status", "fulfilled");
    } else {
        char message[96];
        log_info("event=stock_arrived order=%s sku=%s quantity=%lld stock=%lld outbox_event=%s",
                 order_text, view.sku, delivered, outcome.stock, outcome.event);
        if (bus_ring(t->bell, BUS_STOCK_ARRIVED, outcome.event) != RS_OK)
            log_warn("event=doorbell_dropped topic=%s outbox_event=%s", BUS_STOCK_ARRIVED,
                     outcome.event);
        snprintf(message, sizeof(message), "입고 완료! 남은 재고: %lld", outcome.stock);
        cJSON_AddStringToObject(reply, "message", message);
        cJSON_AddStringToObject(reply, "order_id", order_text);
        cJSON_AddStringToObject(reply, "sku", view.sku);
        cJSON_AddNumberToObject(reply, "delivered", (double)delivered);
        cJSON_AddNumberToObject(reply, "stock", (double)outcome.stock);
        cJSON_AddStringToObject(reply, "status", "fulfilled");
    }
    responder_reply_json(rq, 200, reply);
done:
    cJSON_Delete(reply);
    cJSON_Delete(json);
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
