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

#include <mysql.h>
#include <sodium.h>

#include "bus.h"
#include "db.h"
#include "ident.h"
#include "json.h"
#include "log.h"
#include "responder.h"

#define CALLBACK_PREFIX    "/callbacks/factory/"
#define CALLBACK_TOKEN_HEX (2 * 32)
/* Deadlocks and lock waits are resolved by running the transaction again. */
#define CALLBACK_TRIES 3

struct callback_app {
    const conf *cf;
    long quantity_max;
};

struct callback_thread {
    struct callback_app *app;
    db *conn;
    bus_pub *bell;
    db_stmt *find_order;
    db_stmt *lock_product;
    db_stmt *lock_order;
    db_stmt *add_stock;
    db_stmt *fulfil;
    db_stmt *insert_event;
};

/* What the transaction found and did. */
struct callback_outcome {
    int repeated; /* the order was fulfilled before: nothing changed */
    long long stock;
    long long delivered;
    char event[IDENT_TEXT];
};

static int
callback_app_init(const conf *cf, void **app_out, errbuf *err)
{
    struct callback_app *app = calloc(1, sizeof(*app));

    if (app == NULL)
        return errbuf_set(err, "out of memory");
    if (sodium_init() < 0) {
        free(app);
        return errbuf_set(err, "libsodium cannot initialise");
    }
    if (mysql_library_init(0, NULL, NULL) != 0) {
        free(app);
        return errbuf_set(err, "the MySQL client library cannot initialise");
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
    mysql_library_end();
}

static void
callback_thread_fini(void *state)
{
    struct callback_thread *t = state;

    if (t == NULL)
        return;
    bus_pub_destroy(&t->bell);
    db_destroy(&t->conn);
    free(t);
    mysql_thread_end();
}

static int
callback_thread_init(void *app_ptr, void **state, errbuf *err)
{
    struct callback_app *app = app_ptr;
    struct callback_thread *t = calloc(1, sizeof(*t));

    if (t == NULL || mysql_thread_init() != 0) {
        free(t);
        return errbuf_set(err, "out of memory");
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
    t->find_order =
        db_stmt_new(t->conn,
                    "SELECT r.token_hash, r.product_id, p.sku FROM replenishment_order r"
                    " JOIN product p ON p.product_id = r.product_id"
                    " WHERE r.order_id = ?",
                    DB_IDEMPOTENT);
    /* The product row first, then the order: the sold-out transaction of
     * restock-sales takes them in the same order, so the two cannot deadlock. */
    t->lock_product =
        db_stmt_new(t->conn, "SELECT stock FROM product WHERE product_id = ? FOR UPDATE", 0);
    t->lock_order = db_stmt_new(
        t->conn, "SELECT status FROM replenishment_order WHERE order_id = ? FOR UPDATE", 0);
    /* LAST_INSERT_ID(expr) hands the new stock back in the same round trip. */
    t->add_stock = db_stmt_new(
        t->conn, "UPDATE product SET stock = LAST_INSERT_ID(stock + ?) WHERE product_id = ?", 0);
    t->fulfil = db_stmt_new(t->conn,
                            "UPDATE replenishment_order SET status = 'fulfilled',"
                            " fulfilled_at = CURRENT_TIMESTAMP(6), delivered_quantity = ?"
                            " WHERE order_id = ?",
                            0);
    t->insert_event = db_stmt_new(t->conn,
                                  "INSERT INTO outbox (event_id, kind, order_id, product_id,"
                                  " quantity) VALUES (?, 'stock_arrived', ?, ?, ?)",
                                  0);
    if (!t->find_order || !t->lock_product || !t->lock_order || !t->add_stock || !t->fulfil ||
        !t->insert_event) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    *state = t;
    return RS_OK;
fail:
    callback_thread_fini(t);
    return RS_ERR;
}

/* The token of the query string (token=...), copied into out; -1 when absent or
 * not 64 hex characters. */
static int
callback_token(const char *query, char out[CALLBACK_TOKEN_HEX + 1])
{
    const char *p = query;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, "token=", 6) == 0) {
            size_t n = strcspn(p + 6, "&");
            if (n != CALLBACK_TOKEN_HEX)
                return -1;
            memcpy(out, p + 6, n);
            out[n] = '\0';
            for (size_t i = 0; i < n; i++)
                if (!((out[i] >= '0' && out[i] <= '9') || (out[i] >= 'a' && out[i] <= 'f') ||
                      (out[i] >= 'A' && out[i] <= 'F')))
                    return -1;
            return 0;
        }
        p = strchr(p, '&');
        if (p != NULL)
            p++;
    }
    return -1;
}

/* 1 when SHA-256 of token equals the stored hash. The comparison takes the same
 * time wherever the first difference is (sodium_memcmp), so that timing tells an
 * attacker nothing about the hash. */
static int
callback_token_matches(const char *token, const char *stored, size_t stored_len)
{
    unsigned char digest[crypto_hash_sha256_BYTES];

    if (stored == NULL || stored_len != sizeof(digest))
        return 0;
    crypto_hash_sha256(digest, (const unsigned char *)token, strlen(token));
    return sodium_memcmp(digest, stored, sizeof(digest)) == 0;
}

/* The stock transaction: RS_OK with the outcome, or RS_ERR (rolled back). */
static int
callback_fulfil(struct callback_thread *t, const unsigned char *order_id, const char *product_id,
                size_t product_len, long long delivered, struct callback_outcome *out, errbuf *err)
{
    unsigned char event_id[IDENT_BYTES];
    const char *status;
    long long rows;

    memset(out, 0, sizeof(*out));
    if (db_begin(t->conn, err) != RS_OK)
        return RS_ERR;
    rows = db_stmt_exec(t->lock_product, err, "b", product_id, product_len);
    if (rows < 0)
        goto fail;
    if (rows == 0 || !db_stmt_next(t->lock_product)) {
        errbuf_set(err, "the order's product is gone");
        goto fail;
    }
    out->stock = db_stmt_col_int(t->lock_product, 0);
    rows = db_stmt_exec(t->lock_order, err, "b", order_id, (size_t)IDENT_BYTES);
    if (rows < 0)
        goto fail;
    if (rows == 0 || !db_stmt_next(t->lock_order)) {
        errbuf_set(err, "the order is gone");
        goto fail;
    }
    status = db_stmt_col(t->lock_order, 0, NULL);
    if (status != NULL && strcmp(status, "fulfilled") == 0) {
        db_rollback(t->conn);
        out->repeated = 1;
        return RS_OK;
    }
    if (db_stmt_exec(t->add_stock, err, "ib", delivered, product_id, product_len) != 1)
        goto fail;
    out->stock = (long long)db_stmt_insert_id(t->add_stock);
    if (db_stmt_exec(t->fulfil, err, "ib", delivered, order_id, (size_t)IDENT_BYTES) != 1)
        goto fail;
    ident_new(event_id);
    if (db_stmt_exec(t->insert_event, err, "bbbi", event_id, sizeof(event_id), order_id,
                     (size_t)IDENT_BYTES, product_id, product_len, delivered) != 1)
        goto fail;
    if (db_commit(t->conn, err) != RS_OK)
        return RS_ERR;
    out->delivered = delivered;
    ident_format(event_id, sizeof(event_id), out->event);
    return RS_OK;
fail:
    db_rollback(t->conn);
    return RS_ERR;
}

static void
callback_handle(responder_request *rq, void *state)
{
    struct callback_thread *t = state;
    const char *path = responder_path(rq), *body, *sku = NULL, *stored;
    char order_text[IDENT_TEXT], token[CALLBACK_TOKEN_HEX + 1], product_id[IDENT_BYTES];
    char callback_sku[64];
    unsigned char order_id[IDENT_BYTES];
    struct callback_outcome outcome;
    long long delivered = 0, rows;
    size_t body_len, stored_len, product_len;
    cJSON *json = NULL, *reply = NULL;
    errbuf err = {{0}};
    int rc = RS_ERR;

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

    rows = db_stmt_exec(t->find_order, &err, "b", order_id, sizeof(order_id));
    if (rows < 0) {
        log_error("event=callback_failed order=%s error=\"%s\"", order_text, err.msg);
        responder_reply_error(rq, 503, "database unavailable: the callback was not recorded");
        return;
    }
    if (rows == 0 || !db_stmt_next(t->find_order)) {
        log_warn("event=callback_rejected order=%s reason=unknown_order", order_text);
        responder_reply_error(rq, 404, "unknown order %s", order_text);
        return;
    }
    stored = db_stmt_col(t->find_order, 0, &stored_len);
    if (callback_token(responder_param(rq, "QUERY_STRING"), token) != 0 ||
        !callback_token_matches(token, stored, stored_len)) {
        log_warn("event=callback_rejected order=%s reason=bad_token", order_text);
        responder_reply_error(rq, 403, "forbidden: missing or wrong token for order %s",
                              order_text);
        return;
    }
    /* Columns are overwritten by the next statement: keep what is needed. */
    {
        const char *p = db_stmt_col(t->find_order, 1, &product_len);
        if (p == NULL || product_len != sizeof(product_id)) {
            responder_reply_error(rq, 500, "order %s has no product", order_text);
            return;
        }
        memcpy(product_id, p, product_len);
        snprintf(callback_sku, sizeof(callback_sku), "%s",
                 db_stmt_col(t->find_order, 2, NULL) ? db_stmt_col(t->find_order, 2, NULL) : "");
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
    if (sku != NULL && strcmp(sku, callback_sku) != 0) {
        responder_reply_error(rq, 400,
                              "MessageAttributeProductId %s is not the product %s of order %s", sku,
                              callback_sku, order_text);
        goto done;
    }

    for (int attempt = 1; attempt <= CALLBACK_TRIES; attempt++) {
        rc = callback_fulfil(t, order_id, product_id, product_len, delivered, &outcome, &err);
        if (rc == RS_OK)
            break;
        log_warn("event=callback_retry order=%s attempt=%d error=\"%s\"", order_text, attempt,
                 err.msg);
    }
    if (rc != RS_OK) {
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
                 order_text, callback_sku, outcome.delivered, outcome.stock, outcome.event);
        if (bus_ring(t->bell, BUS_STOCK_ARRIVED, outcome.event) != RS_OK)
            log_warn("event=doorbell_dropped topic=%s outbox_event=%s", BUS_STOCK_ARRIVED,
                     outcome.event);
        snprintf(message, sizeof(message), "입고 완료! 남은 재고: %lld", outcome.stock);
        cJSON_AddStringToObject(reply, "message", message);
        cJSON_AddStringToObject(reply, "order_id", order_text);
        cJSON_AddStringToObject(reply, "sku", callback_sku);
        cJSON_AddNumberToObject(reply, "delivered", (double)outcome.delivered);
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
