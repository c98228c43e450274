/* restock-sales: the Sales API behind nginx (docs/design.md §4.1): the
 * products, checkout by one atomic UPDATE for all the concurrent checkouts of a
 * product (lib/combiner), a checkout with an Idempotency-Key in a transaction
 * of its own that stores its answer (lib/checkout_key), in the scope of the
 * API client that sent it (lib/api_client: Authorization: Bearer), and a
 * health check.
 * Each responder thread has its own database connection and prepared
 * statements. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "api_client.h"
#include "bus.h"
#include "checkout_key.h"
#include "combiner.h"
#include "db.h"
#include "ident.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "order.h"
#include "responder.h"
#include "row.h"
#include "utf8.h"

#define SALES_SKU_MAX      32 /* product.sku is VARCHAR(32) */
#define SALES_QUANTITY_MAX 1000

/* Shared by all threads, read-only once they run. */
struct sales_app {
    const conf *cf;
    const char *default_sku;
    combiner *checkouts; /* per sku: the checkouts that wait for one statement */
    long key_retention;  /* seconds a keyed checkout's answer is replayed */
    int require_client;  /* checkout_require_client: no anonymous checkout */
};

struct sales_thread {
    const struct sales_app *app;
    db *conn;
    db_stmt *product;    /* one product by sku */
    db_stmt *products;   /* all, by sku */
    db_stmt *buy;        /* the atomic decrement */
    db_stmt *lock;       /* the stock under its row lock, when a batch does not fit */
    order *orders;       /* opens the order at the reorder point, marks the sell-out */
    checkout_key *keys;  /* the stored answers of keyed checkouts */
    api_client *clients; /* the API clients' keys */
    bus_pub *bell;       /* rings the outbox events after their commit */
    int db_down;         /* to log the database going away and coming back once */
};

#define SALES_PRODUCT_COLUMNS "product_id, sku, name, price, stock, factory_id, ad_id"

/* -- database failures ----------------------------------------------------------- */

/* Answers 503 for a failed statement: the database is down or failing. The
 * client, anonymous, is told the service is unavailable; what the database
 * said (its server, user, socket, name, SQL) goes to the log, once per outage. */
static void
sales_unavailable(struct sales_thread *th, responder_request *rq, const errbuf *err)
{
    metrics_count(METRICS_DATABASE_ERRORS);
    if (!th->db_down)
        log_error("event=database_unavailable error=\"%s\"", err->msg);
    th->db_down = 1;
    responder_header(rq, "Retry-After", "5");
    responder_reply_error(rq, 503, "service unavailable: try again shortly");
}

static void
sales_db_answered(struct sales_thread *th)
{
    if (th->db_down)
        log_info("event=database_back");
    th->db_down = 0;
}

/* -- products ---------------------------------------------------------------------- */

/* The product JSON of the current row of a SALES_PRODUCT_COLUMNS statement. */
static cJSON *
sales_product_json(db_stmt *st)
{
    cJSON *obj = cJSON_CreateObject();
    const char *sku = db_stmt_col(st, 1, NULL), *name = db_stmt_col(st, 2, NULL);
    int ok = obj != NULL;

    ok = ok && row_add_ident(obj, "product_id", st, 0);
    ok = ok && cJSON_AddStringToObject(obj, "sku", sku ? sku : "") != NULL;
    ok = ok && cJSON_AddStringToObject(obj, "name", name ? name : "") != NULL;
    ok = ok && cJSON_AddNumberToObject(obj, "price", (double)db_stmt_col_int(st, 3)) != NULL;
    ok = ok && cJSON_AddNumberToObject(obj, "stock", (double)db_stmt_col_int(st, 4)) != NULL;
    ok = ok && row_add_ident(obj, "factory_id", st, 5);
    ok = ok && row_add_ident(obj, "ad_id", st, 6);
    if (!ok) {
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

/* {"message":…}, or NULL when out of memory. */
static cJSON *
sales_message_json(const char *message)
{
    cJSON *json = cJSON_CreateObject();

    if (json != NULL && cJSON_AddStringToObject(json, "message", message) == NULL)
        cJSON_Delete(json), json = NULL;
    return json;
}

/* Answers json (and frees it); NULL was out of memory. */
static void
sales_reply_answer(responder_request *rq, int status, cJSON *json)
{
    if (json != NULL)
        responder_reply_json(rq, status, json);
    else
        responder_reply_error(rq, 500, "out of memory");
    cJSON_Delete(json);
}

static void
sales_reply_message(responder_request *rq, int status, const char *message)
{
    sales_reply_answer(rq, status, sales_message_json(message));
}

static void
sales_reply_product(struct sales_thread *th, responder_request *rq, const char *sku)
{
    errbuf err = {{0}};
    long long rows;
    cJSON *json;

    /* No sku longer than the column can exist: no need to ask. */
    if (utf8_chars(sku, strlen(sku)) < 1 || utf8_chars(sku, strlen(sku)) > SALES_SKU_MAX) {
        sales_reply_message(rq, 404, "상품 없음");
        return;
    }
    rows = db_stmt_exec(th->product, &err, "s", sku);
    if (rows < 0) {
        sales_unavailable(th, rq, &err);
        return;
    }
    sales_db_answered(th);
    if (rows == 0 || !db_stmt_next(th->product)) {
        sales_reply_message(rq, 404, "상품 없음");
        return;
    }
    json = sales_product_json(th->product);
    if (json == NULL)
        responder_reply_error(rq, 500, "out of memory");
    else
        responder_reply_json(rq, 200, json);
    cJSON_Delete(json);
}

static void
sales_donut(struct sales_thread *th, responder_request *rq)
{
    sales_reply_product(th, rq, th->app->default_sku);
}

static void
sales_product(struct sales_thread *th, responder_request *rq)
{
    sales_reply_product(th, rq, responder_path(rq) + strlen("/products/"));
}

static void
sales_products(struct sales_thread *th, responder_request *rq)
{
    errbuf err = {{0}};
    cJSON *list;
    long long rows;

    rows = db_stmt_exec(th->products, &err, "");
    if (rows < 0) {
        sales_unavailable(th, rq, &err);
        return;
    }
    sales_db_answered(th);
    list = cJSON_CreateArray();
    while (list != NULL && db_stmt_next(th->products)) {
        cJSON *item = sales_product_json(th->products);
        if (item == NULL || !cJSON_AddItemToArray(list, item)) {
            cJSON_Delete(item);
            cJSON_Delete(list);
            list = NULL;
        }
    }
    if (list == NULL)
        responder_reply_error(rq, 500, "out of memory");
    else
        responder_reply_json(rq, 200, list);
    cJSON_Delete(list);
}

/* -- checkout ---------------------------------------------------------------------- */

/* {"message":"<prefix> 남은 재고: N","sku":…,"remaining":N[,"replenishment":…]},
 * or NULL when out of memory. */
static cJSON *
sales_checkout_json(const char *prefix, const char *sku, long long remaining,
                    const char *replenishment)
{
    char message[128];
    cJSON *json = cJSON_CreateObject();
    int ok = json != NULL;

    snprintf(message, sizeof(message), "%s 남은 재고: %lld", prefix, remaining);
    ok = ok && cJSON_AddStringToObject(json, "message", message) != NULL;
    ok = ok && cJSON_AddStringToObject(json, "sku", sku) != NULL;
    ok = ok && cJSON_AddNumberToObject(json, "remaining", (double)remaining) != NULL;
    if (replenishment != NULL)
        ok = ok && cJSON_AddStringToObject(json, "replenishment", replenishment) != NULL;
    if (!ok) {
        cJSON_Delete(json);
        return NULL;
    }
    return json;
}

/* The word the 409 answer carries in "replenishment" for an order_refused
 * result: only what is true (NULL: no field, nothing is on order). */
static const char *
sales_replenishment(int state)
{
    switch (state) {
    case ORDER_OPENED:
    case ORDER_PENDING:
        return "requested";
    case ORDER_RESTOCKED:
        return "restocked";
    case ORDER_NO_FACTORY:
        return "unavailable";
    default:
        return NULL;
    }
}

/* After the commit, never before: the worker must find the row it is woken
 * for. A lost doorbell costs one sweep interval, not the order. */
static void
sales_ring(struct sales_thread *th, const struct order_open_outcome *out)
{
    if (out->event[0] != '\0' && bus_ring(th->bell, BUS_STOCK_EMPTY, out->event) != RS_OK) {
        metrics_count(METRICS_DOORBELLS_DROPPED);
        log_warn("event=doorbell_dropped topic=%s outbox_event=%s", BUS_STOCK_EMPTY, out->event);
    }
}

/* What one sale's result triggers: the sale of quantity left remaining of sku,
 * and crossed says whether it took the stock from above the reorder point to or
 * below it (the UPDATE decided that on the row it changed). Only that sale and
 * the one that empties the shelf do more: order.c opens the order (crossing)
 * and marks it sold out (stock 0), in one transaction. The sale itself is
 * committed whatever happens here: a failure is logged, and the worker's sweep
 * opens the order of a product at or below its point. (One call per sale; a
 * batch of checkouts calls it for each member.) */
static void
sales_after_sale(struct sales_thread *th, const char *sku, long long quantity, long long remaining,
                 int crossed)
{
    errbuf err = {{0}};
    struct order_open_outcome out;

    if (!crossed && remaining > 0)
        return;
    if (remaining == 0)
        metrics_count(METRICS_SELLOUTS);
    if (order_reorder(th->orders, sku, &out, &err) < 0) {
        log_error("event=reorder_failed sku=%s quantity=%lld remaining=%lld error=\"%s\"", sku,
                  quantity, remaining, err.msg);
        return;
    }
    sales_ring(th, &out);
}

/* A refused checkout's answer, and what to ring once it is committed. */
struct sales_refusal {
    int status;  /* 404 or 409 */
    cJSON *json; /* the answer's body; NULL when out of memory */
    struct order_open_outcome out;
};

/* The checkout changed no row: the product is unknown (404) or has less than
 * quantity left (409). While sold out, order.c counts the customer turned away
 * (and opens the order if none is: a crash after the emptying sale, or the
 * first version's policy, reorder_point -1). Asking more than remains while
 * stock is above 0 is neither a sell-out nor an order. If the database fails the
 * answer is 503, not 409 (RS_ERR): nothing was decided. Inside a keyed
 * checkout's transaction, order.c's joins it (db.h: a savepoint). */
static int
sales_refusal(struct sales_thread *th, const char *sku, long long quantity, struct sales_refusal *r,
              errbuf *err)
{
    int state = order_refused(th->orders, sku, quantity, &r->out, err);

    if (state < 0)
        return RS_ERR;
    if (state == ORDER_NO_PRODUCT) {
        r->status = 404;
        r->json = sales_message_json("상품 없음");
        return RS_OK;
    }
    r->status = 409;
    r->json = sales_checkout_json("구매 실패!", sku, r->out.remaining, sales_replenishment(state));
    return RS_OK;
}

/* After the refusal's commit: counted, and its outbox event rung. */
static void
sales_refusal_done(struct sales_thread *th, const struct sales_refusal *r)
{
    metrics_count(r->status == 404 ? METRICS_CHECKOUT_NOT_FOUND : METRICS_CHECKOUT_REFUSED);
    sales_ring(th, &r->out);
}

static void
sales_refused(struct sales_thread *th, responder_request *rq, const char *sku, long long quantity)
{
    errbuf err = {{0}};
    struct sales_refusal r = {0};

    if (sales_refusal(th, sku, quantity, &r, &err) != RS_OK) {
        metrics_count(METRICS_CHECKOUT_UNAVAILABLE);
        sales_unavailable(th, rq, &err);
        return;
    }
    sales_refusal_done(th, &r);
    sales_reply_answer(rq, r.status, r.json);
}

/* One checkout in a batch of the checkouts of one sku (lib/combiner): what it
 * asks for, and what the batch's statement gave it. */
struct sales_buy {
    combiner_item item; /* first: the batch's items are sales_buys */
    const char *sku;
    long long quantity;
    int failed;          /* the statement failed: err says why, nothing was sold */
    int sold;            /* else: sold, or not (too few left, or no such sku) */
    long long remaining; /* when sold: the stock this very sale left */
    int crossed;         /* this sale ends the batch's take, which crossed the reorder
                            point: its thread does what that triggers */
    errbuf err;
};

/* The one statement that sells: n units of sku, if that many are left. The row
 * lock makes the statements of one sku queue in the database, the WHERE never
 * lets stock go below zero, and LAST_INSERT_ID(expr) hands back what this very
 * update did in the same round trip (see sales_thread_init): twice the stock
 * left, plus 1 when it crossed the reorder point. Rows changed, or RS_ERR. */
static long long
sales_take(struct sales_thread *th, const char *sku, long long n, errbuf *err)
{
    return db_stmt_exec(th->buy, err, "iiisi", n, n, n, sku, n);
}

/* The batch's take crossed the reorder point (crossed): the last member sold,
 * whose remaining is the stock the take left, carries what that triggers, so
 * that it happens once per batch, in that member's own thread. */
static void
sales_batch_crossed(combiner_item *batch, int crossed)
{
    struct sales_buy *last = NULL;

    for (combiner_item *it = batch; it != NULL; it = it->next)
        if (((struct sales_buy *)it)->sold)
            last = (struct sales_buy *)it;
    if (last != NULL)
        last->crossed = crossed;
}

static void
sales_batch_fail(combiner_item *batch, const errbuf *err)
{
    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct sales_buy *b = (struct sales_buy *)it;
        b->failed = 1;
        b->err = *err;
    }
}

/* The batch's total did not fit in the stock (or the sku is unknown): the sell-out
 * boundary, rare. Under the row's lock, each checkout in arrival order takes its
 * whole quantity if what is left covers it, or nothing; then one UPDATE takes
 * what was given, and the commit releases the row. Any failure rolls back:
 * nothing sold. RS_ERR with err when it failed. */
static int
sales_batch_allocate_tx(struct sales_thread *th, combiner_item *batch, const char *sku, errbuf *err)
{
    long long rows, stock, left, taken;

    if (db_begin(th->conn, err) != RS_OK)
        goto fail;
    rows = db_stmt_exec(th->lock, err, "s", sku);
    if (rows < 0)
        goto fail;
    if (rows == 0 || !db_stmt_next(th->lock)) {
        /* No such product: nobody bought; each member's sold-out path says 404. */
        db_rollback(th->conn);
        for (combiner_item *it = batch; it != NULL; it = it->next)
            ((struct sales_buy *)it)->sold = 0;
        return RS_OK;
    }
    stock = left = db_stmt_col_int(th->lock, 0);
    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct sales_buy *b = (struct sales_buy *)it;
        b->crossed = 0; /* of an earlier attempt, rolled back */
        b->sold = b->quantity <= left;
        if (b->sold) {
            left -= b->quantity;
            b->remaining = left;
        }
    }
    taken = stock - left;
    if (taken > 0) {
        rows = sales_take(th, sku, taken, err);
        if (rows < 0)
            goto fail;
        if (rows != 1) {
            /* Not the sku: it is the client's text, and this goes to the log. */
            errbuf_set(err, "a product's stock changed under its row lock");
            goto fail;
        }
        sales_batch_crossed(batch, db_stmt_insert_id(th->buy) % 2);
    }
    if (db_commit(th->conn, err) != RS_OK)
        goto fail;
    return RS_OK;

fail:
    db_rollback(th->conn);
    return RS_ERR;
}

/* The allocation, run again while the database rolled it back (a deadlock, a
 * Galera certification failure of a two-writer hot row): nothing
 * was sold, so that a conflict is never answered 503. Another failure: every
 * member 503. */
static void
sales_batch_allocate(struct sales_thread *th, combiner_item *batch, const char *sku)
{
    errbuf err = {{0}};
    int rc, attempts = 0;

    do
        rc = sales_batch_allocate_tx(th, batch, sku, &err);
    while (rc != RS_OK && db_retry(th->conn, &attempts));
    if (rc != RS_OK)
        sales_batch_fail(batch, &err);
}

/* One statement for the whole batch, run by its leader on its own connection.
 * The common case, every quantity fits: one UPDATE takes the total, and
 * LAST_INSERT_ID(expr) hands back the stock it left; each member's remaining is
 * then the stock after the members before it and itself, in arrival order, so
 * that no two buyers are told the same remaining. */
static void
sales_batch_run(void *ctx, combiner_item *batch, size_t n)
{
    struct sales_thread *th = ctx;
    const char *sku = ((struct sales_buy *)batch)->sku;
    long long total = 0, rows, left;
    errbuf err = {{0}};

    (void)n;
    for (combiner_item *it = batch; it != NULL; it = it->next)
        total += ((struct sales_buy *)it)->quantity;
    rows = sales_take(th, sku, total, &err);
    if (rows < 0) {
        sales_batch_fail(batch, &err);
        return;
    }
    if (rows == 0) {
        /* Alone, the one checkout did not fit: sold out, without a transaction. */
        if (batch->next == NULL)
            ((struct sales_buy *)batch)->sold = 0;
        else
            sales_batch_allocate(th, batch, sku);
        return;
    }
    left = (long long)(db_stmt_insert_id(th->buy) / 2) + total;
    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct sales_buy *b = (struct sales_buy *)it;
        left -= b->quantity;
        b->sold = 1;
        b->remaining = left;
    }
    sales_batch_crossed(batch, db_stmt_insert_id(th->buy) % 2);
}

/* What one checkout's outcome answers, the same whether it was alone or in a
 * batch: sold → what the sale triggers (sales_after_sale), then 200 with the
 * stock it left; not sold → 404 or 409 (sales_refused). */
static void
sales_checkout_result(struct sales_thread *th, responder_request *rq, const struct sales_buy *buy)
{
    if (buy->sold) {
        metrics_count(METRICS_CHECKOUT_SOLD);
        sales_after_sale(th, buy->sku, buy->quantity, buy->remaining, buy->crossed);
        sales_reply_answer(rq, 200,
                           sales_checkout_json("구매 완료!", buy->sku, buy->remaining, NULL));
    } else {
        sales_refused(th, rq, buy->sku, buy->quantity);
    }
}

/* The keyed checkout's transaction: claims the key's row (a request with the
 * same key in flight holds it: this one waits, then finds it taken), runs the
 * same sale statement as the combined path, and stores the answer, 200 or 409,
 * with the row before the commit. A 404 (no such sku) is not stored: it sold
 * and changed nothing, so its retry may as well be asked again, and a client
 * cannot fill the key table with rows that cost the shop nothing to refuse; its
 * transaction is rolled back, the key's row with it. *claim tells what the key's row held;
 * for CHECKOUT_KEY_NEW, answer is the stored answer and *text its body. A
 * failure rolls everything back. */
static int
sales_keyed_tx(struct sales_thread *th, long long client, const char *key, struct sales_buy *buy,
               struct checkout_key_answer *stored, int *claim, struct sales_refusal *answer,
               char *print, size_t print_size, char **text, errbuf *err)
{
    unsigned char fingerprint[CHECKOUT_KEY_FINGERPRINT];
    long long rows;

    checkout_key_fingerprint(client, buy->sku, buy->quantity, fingerprint);
    if (db_begin(th->conn, err) != RS_OK)
        goto fail;
    *claim =
        checkout_key_claim(th->keys, client, key, fingerprint, th->app->key_retention, stored, err);
    if (*claim < 0)
        goto fail;
    if (*claim != CHECKOUT_KEY_NEW) {
        db_rollback(th->conn); /* it wrote nothing */
        return RS_OK;
    }
    rows = sales_take(th, buy->sku, buy->quantity, err);
    if (rows < 0)
        goto fail;
    if (rows == 1) {
        buy->sold = 1;
        buy->remaining = (long long)(db_stmt_insert_id(th->buy) / 2);
        buy->crossed = (int)(db_stmt_insert_id(th->buy) % 2);
        answer->status = 200;
        answer->json = sales_checkout_json("구매 완료!", buy->sku, buy->remaining, NULL);
    } else if (sales_refusal(th, buy->sku, buy->quantity, answer, err) != RS_OK) {
        goto fail;
    }
    *text = answer->json ? json_print(answer->json, print, print_size) : NULL;
    if (*text == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    if (answer->status == 404) {
        db_rollback(th->conn);
        return RS_OK;
    }
    if (checkout_key_store(th->keys, client, key, answer->status, *text, strlen(*text), err) !=
            RS_OK ||
        db_commit(th->conn, err) != RS_OK)
        goto fail;
    return RS_OK;

fail:
    db_rollback(th->conn);
    if (*text != NULL)
        json_print_free(*text, print);
    *text = NULL;
    cJSON_Delete(answer->json);
    memset(answer, 0, sizeof(*answer));
    buy->sold = 0;
    return RS_ERR;
}

/* A checkout with an Idempotency-Key: not in the combiner, whose statement is
 * shared, but in a transaction of its own (sales_keyed_tx), run again while the
 * database rolled it back (a deadlock, a Galera certification failure of two
 * writers), as the combined allocation is. The same key and request again: the
 * stored answer, byte for byte, and nothing sold; another request: 422. Another
 * failure answers 503, stored nowhere: the retry runs afresh, or, when the
 * commit did happen (the connection broke after COMMIT was sent), finds the key
 * and is answered what the sale was. After the commit, what the sale or refusal
 * triggers, as for any checkout. */
static void
sales_checkout_keyed(struct sales_thread *th, responder_request *rq, long long client,
                     const char *key, struct sales_buy *buy)
{
    struct checkout_key_answer stored;
    struct sales_refusal answer = {0};
    errbuf err = {{0}};
    char print[512], *text = NULL;
    int claim = CHECKOUT_KEY_NEW, rc, attempts = 0;

    do
        rc = sales_keyed_tx(th, client, key, buy, &stored, &claim, &answer, print, sizeof(print),
                            &text, &err);
    while (rc != RS_OK && db_retry(th->conn, &attempts));
    if (rc != RS_OK) {
        metrics_count(METRICS_CHECKOUT_UNAVAILABLE);
        sales_unavailable(th, rq, &err);
        return;
    }
    sales_db_answered(th);
    if (claim == CHECKOUT_KEY_MISMATCH) {
        metrics_count(METRICS_CHECKOUT_KEY_MISMATCH);
        responder_reply_error(rq, 422,
                              "Idempotency-Key: this key was used for another checkout (another "
                              "sku or quantity); a new checkout needs a new key");
        return;
    }
    if (claim != CHECKOUT_KEY_NEW) {
        metrics_count(METRICS_CHECKOUT_REPLAYED);
        responder_header(rq, "Idempotent-Replayed", "true");
        responder_reply_raw(rq, stored.status, stored.body, stored.len);
        return;
    }
    if (buy->sold) {
        metrics_count(METRICS_CHECKOUT_SOLD);
        sales_after_sale(th, buy->sku, buy->quantity, buy->remaining, buy->crossed);
    } else {
        sales_refusal_done(th, &answer);
    }
    responder_reply_raw(rq, answer.status, text, strlen(text));
    json_print_free(text, print);
    cJSON_Delete(answer.json);
}

/* 401 with the challenge of RFC 6750: error="invalid_token" when a key was
 * sent and is no good, none when a key is required and none was sent. The
 * message never quotes the header (it holds a key, maybe a real one). */
static void
sales_unauthorized(responder_request *rq, int sent, const char *message)
{
    metrics_count(METRICS_CHECKOUT_UNAUTHORIZED);
    responder_header(rq, "WWW-Authenticate",
                     sent ? "Bearer realm=\"restock\", error=\"invalid_token\""
                          : "Bearer realm=\"restock\"");
    responder_reply_error(rq, 401, "%s", message);
}

/* The request's API client from its Authorization header: *client is its id,
 * or CHECKOUT_KEY_ANONYMOUS when none was sent and none is required. RS_ERR
 * when it was answered: 401 for a key that is malformed, unknown or revoked
 * (whatever else the request holds: nothing is sold on a bad key), or for no
 * key where checkout_require_client is yes; 503 when the database failed. */
static int
sales_authenticate(struct sales_thread *th, responder_request *rq, long long *client)
{
    const char *header;
    char key[API_CLIENT_KEY_LEN + 1];
    errbuf err = {{0}};
    long long id;

    *client = CHECKOUT_KEY_ANONYMOUS;
    /* Two would make the client the proxy's choice (responder_header_once). */
    if (responder_header_once(rq, "Authorization", &header, &err) != RS_OK) {
        metrics_count(METRICS_CHECKOUT_BAD_REQUEST);
        responder_reply_error(rq, 400, "%s", err.msg);
        return RS_ERR;
    }
    if (header == NULL) {
        if (!th->app->require_client)
            return RS_OK;
        sales_unauthorized(rq, 0,
                           "Authorization: this shop takes checkouts from its API clients only: "
                           "send \"Authorization: Bearer <client key>\"");
        return RS_ERR;
    }
    if (api_client_parse_authorization(header, key, &err) != RS_OK) {
        sales_unauthorized(rq, 1, err.msg);
        return RS_ERR;
    }
    id = api_client_authenticate(th->clients, key, &err);
    if (id < 0) {
        metrics_count(METRICS_CHECKOUT_UNAVAILABLE);
        sales_unavailable(th, rq, &err);
        return RS_ERR;
    }
    sales_db_answered(th);
    if (id == 0) {
        sales_unauthorized(rq, 1, "Authorization: the client key is unknown or revoked");
        return RS_ERR;
    }
    *client = id;
    return RS_OK;
}

static void
sales_checkout(struct sales_thread *th, responder_request *rq)
{
    struct sales_buy buy;
    errbuf err = {{0}};
    cJSON *json = NULL;
    size_t len;
    const char *body = responder_body(rq, &len);
    const char *key_header;
    char key[CHECKOUT_KEY_MAX + 1];
    long long client;

    if (sales_authenticate(th, rq, &client) != RS_OK)
        return;
    /* A bad key is the client's mistake like a bad body: 400, nothing sold. Two
     * keys would make the checkout's identity the proxy's choice. */
    if (responder_header_once(rq, "Idempotency-Key", &key_header, &err) != RS_OK ||
        (key_header != NULL && (checkout_key_parse(key_header, key, &err) != RS_OK ||
                                (client == CHECKOUT_KEY_ANONYMOUS &&
                                 checkout_key_check_anonymous(key, &err) != RS_OK)))) {
        metrics_count(METRICS_CHECKOUT_BAD_REQUEST);
        responder_reply_error(rq, 400, "%s", err.msg);
        return;
    }
    memset(&buy, 0, sizeof(buy));
    buy.sku = th->app->default_sku;
    buy.quantity = 1;
    /* An empty body buys one of the default product, as the first version's
     * scripts expect; fields other than sku and quantity are ignored. */
    if (len > 0 &&
        (json_parse_object(body, len, &json, &err) != RS_OK ||
         json_opt_str(json, "sku", 1, SALES_SKU_MAX, &buy.sku, &err) != RS_OK ||
         json_opt_int(json, "quantity", 1, SALES_QUANTITY_MAX, 0, &buy.quantity, &err) != RS_OK)) {
        metrics_count(METRICS_CHECKOUT_BAD_REQUEST);
        responder_reply_error(rq, 400, "%s", err.msg);
        goto done;
    }
    if (key_header != NULL) {
        log_debug("event=checkout_keyed client=%lld quantity=%lld", client, buy.quantity);
        sales_checkout_keyed(th, rq, client, key, &buy);
        goto done;
    }
    /* Never read-then-write: the row lock makes the statements of one sku queue in
     * the database, the WHERE never lets stock go below zero. The checkouts that
     * arrive while one is in flight wait here and go in the next one together. */
    log_debug("event=checkout_submitted quantity=%lld", buy.quantity); /* tests wait for it */
    combiner_submit(th->app->checkouts, &buy.item, buy.sku, sales_batch_run, th);
    if (buy.failed) {
        metrics_count(METRICS_CHECKOUT_UNAVAILABLE);
        sales_unavailable(th, rq, &buy.err);
        goto done;
    }
    sales_db_answered(th);
    sales_checkout_result(th, rq, &buy);

done:
    cJSON_Delete(json); /* after the reply: sku may point into it */
}

/* -- health ------------------------------------------------------------------------ */

static void
sales_healthz(struct sales_thread *th, responder_request *rq)
{
    errbuf err = {{0}};
    cJSON *json;

    /* A connection that died while idle fails its first ping; the second one
     * connects again, so that a database that is back answers 200 at once. */
    if (db_ping(th->conn, &err) != RS_OK &&
        (!db_failed_connection(th->conn) || db_ping(th->conn, &err) != RS_OK)) {
        sales_unavailable(th, rq, &err);
        return;
    }
    sales_db_answered(th);
    json = cJSON_CreateObject();
    if (json == NULL || cJSON_AddStringToObject(json, "status", "ok") == NULL)
        responder_reply_error(rq, 500, "out of memory");
    else
        responder_reply_json(rq, 200, json);
    cJSON_Delete(json);
}

/* -- routes ------------------------------------------------------------------------ */

typedef void (*sales_fn)(struct sales_thread *th, responder_request *rq);

static const struct sales_route {
    const char *path; /* exact; a trailing '/' takes one more path segment */
    const char *method;
    const char *allow;
    sales_fn fn;
} sales_routes[] = {
    {"/product/donut", "GET", "GET, HEAD", sales_donut},
    {"/products", "GET", "GET, HEAD", sales_products},
    {"/products/", "GET", "GET, HEAD", sales_product},
    {"/checkout", "POST", "POST", sales_checkout},
    {"/healthz", "GET", "GET, HEAD", sales_healthz},
};

static const struct sales_route *
sales_route_of(const char *path)
{
    for (size_t i = 0; i < sizeof(sales_routes) / sizeof(sales_routes[0]); i++) {
        const struct sales_route *r = &sales_routes[i];
        size_t n = strlen(r->path);

        if (r->path[n - 1] != '/') {
            if (strcmp(path, r->path) == 0)
                return r;
        } else if (strncmp(path, r->path, n) == 0 && path[n] != '\0' &&
                   strchr(path + n, '/') == NULL) {
            return r;
        }
    }
    return NULL;
}

static void
sales_handle(responder_request *rq, void *state)
{
    const char *method = responder_method(rq), *path = responder_path(rq);
    const struct sales_route *route = sales_route_of(path);

    if (route == NULL) {
        responder_reply_error(rq, 404, "not found");
        return;
    }
    /* HEAD is GET without the body, which nginx drops. */
    if (strcmp(method, route->method) != 0 &&
        !(strcmp(method, "HEAD") == 0 && strcmp(route->method, "GET") == 0)) {
        responder_header(rq, "Allow", route->allow);
        responder_reply_error(rq, 405, "method %.16s is not allowed on %s; allowed: %s", method,
                              route->path, route->allow);
        return;
    }
    route->fn(state, rq);
}

/* -- program ----------------------------------------------------------------------- */

static int
sales_app_init(const conf *cf, void **app_p, errbuf *err)
{
    static struct sales_app app;

    /* Once, before the threads: the client library's set-up is not thread-safe. */
    if (db_library_init(err) != RS_OK)
        return RS_ERR;
    app.cf = cf;
    app.default_sku = conf_str(cf, "default_sku");
    app.key_retention = conf_int(cf, "idempotency_retention");
    app.require_client = strcmp(conf_str(cf, "checkout_require_client"), "yes") == 0;
    /* A sku in flight per thread at most: one slot each. */
    app.checkouts = combiner_new((size_t)conf_int(cf, "sales_threads"));
    if (app.checkouts == NULL) {
        db_library_end();
        return errbuf_set(err, "out of memory");
    }
    *app_p = &app;
    return RS_OK;
}

static void
sales_app_fini(void *app_p)
{
    struct sales_app *app = app_p;
    struct combiner_stats st;
    char sizes[160];

    /* How much the checkouts were combined, for the operator and the bench. */
    combiner_stats(app->checkouts, &st);
    combiner_sizes_text(&st, sizes, sizeof(sizes));
    log_info("event=checkout_batches statements=%llu checkouts=%llu largest=%llu sizes=\"%s\"",
             st.batches, st.items, st.max, sizes);
    combiner_destroy(&app->checkouts);
    bus_shutdown(); /* every thread's doorbell is closed by now */
    db_library_end();
}

static void
sales_thread_fini(void *state)
{
    struct sales_thread *th = state;

    if (th != NULL) {
        bus_pub_destroy(&th->bell);
        api_client_destroy(&th->clients);
        checkout_key_destroy(&th->keys);
        order_destroy(&th->orders);
        db_destroy(&th->conn); /* statements go with it */
        free(th);
    }
    db_thread_end();
}

static int
sales_thread_init(void *app, void **state, errbuf *err)
{
    struct sales_thread *th = NULL;

    *state = NULL;
    if (db_thread_init(err) != RS_OK)
        goto fail;
    th = calloc(1, sizeof(*th));
    if (th == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    th->app = app;
    /* Connects at the first request, and again whenever the database was gone. */
    th->conn = db_new(th->app->cf, 0);
    if (th->conn == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    th->product = db_stmt_new(
        th->conn, "SELECT " SALES_PRODUCT_COLUMNS " FROM product WHERE sku = ?", DB_IDEMPOTENT);
    th->products = db_stmt_new(
        th->conn, "SELECT " SALES_PRODUCT_COLUMNS " FROM product ORDER BY sku", DB_IDEMPOTENT);
    /* The sale, and what it did, in one statement: LAST_INSERT_ID(expr) returns
     * expr, here twice the new stock plus 1 when this sale took the stock from
     * above the reorder point to or below it (stock is still the old row's value
     * inside its own assignment), and DIV 2 stores the new stock. sold_total
     * counts the units for the worker's sales rate. */
    th->buy = db_stmt_new(th->conn,
                          "UPDATE product SET sold_total = sold_total + ?,"
                          " stock = LAST_INSERT_ID((stock - ?) * 2"
                          " + (stock > reorder_point AND stock - ? <= reorder_point)) DIV 2"
                          " WHERE sku = ? AND stock >= ?",
                          0);
    th->lock = db_stmt_new(th->conn, "SELECT stock FROM product WHERE sku = ? FOR UPDATE", 0);
    if (!th->product || !th->products || !th->buy || !th->lock) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    th->orders = order_new(th->conn, err);
    if (th->orders == NULL)
        goto fail;
    th->keys = checkout_key_new(th->conn, err);
    if (th->keys == NULL)
        goto fail;
    th->clients = api_client_new(th->conn, err);
    if (th->clients == NULL)
        goto fail;
    /* Each thread its own doorbell: ZeroMQ sockets are not thread-safe. */
    th->bell = bus_pub_new(conf_str(th->app->cf, "bus_endpoint"), err);
    if (th->bell == NULL)
        goto fail;
    *state = th;
    return RS_OK;

fail:
    sales_thread_fini(th);
    return RS_ERR;
}

int
main(int argc, char **argv)
{
    static const struct responder_program sales = {
        .name = "restock-sales",
        .socket_key = "sales_socket",
        .threads_key = "sales_threads",
        .app_init = sales_app_init,
        .app_fini = sales_app_fini,
        .thread_init = sales_thread_init,
        .thread_fini = sales_thread_fini,
        .handle = sales_handle,
    };

    return responder_main(argc, argv, &sales);
}
