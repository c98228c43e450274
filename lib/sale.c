/* sale: the sale (see sale.h): the statements that take stock, alone, combined
 * and allocated; the keyed transaction; the checkout's answer; the retries; and
 * what a sale triggers. The one module that takes product.stock (a delivery adds
 * to it in lib/order, in the transaction that fulfils its order). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bus.h"
#include "combiner.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "order.h"
#include "sale.h"

/* The take hands back, in LAST_INSERT_ID, the stock it left times SALE_SCALE
 * plus the product's reorder point plus SALE_BIAS: an INT point (-2^31 ..
 * 2^31-1) fills the low 32 bits exactly, and the largest INT stock times 2^32
 * plus them is 2^63 - 1, still a BIGINT. Written once, for the SQL (ORDER_SQL)
 * and the C. */
#define SALE_SCALE 4294967296 /* 2^32 */
#define SALE_BIAS  2147483648 /* 2^31 */

struct sale_shop {
    const conf *cf;
    combiner *checkouts; /* per sku: the checkouts that wait for one statement */
    long key_retention;  /* seconds a keyed checkout's answer is replayed */
    long limit_window;   /* seconds over which max_per_customer counts */
};

struct sale {
    sale_shop *shop;
    db *conn;           /* the caller's */
    db_stmt *take;      /* the one statement that takes stock */
    db_stmt *lock;      /* the stock under its row lock, when a batch does not fit */
    db_stmt *cart_lock; /* a cart's product under its row lock, with its id */
    db_stmt *peek;      /* a product's max_per_customer, without a lock */
    db_stmt *bought;    /* a customer's units of a product in the window */
    db_stmt *prune;     /* the customer's rows of the product before the window */
    db_stmt *record;    /* a limited sale to a customer */
    order *orders;      /* the order at the reorder point, the sell-out, the refusal */
    checkout_key *keys; /* the stored answers of keyed checkouts */
    bus_pub *bell;      /* rings the outbox events after their commit */
};

/* One checkout in a batch of the checkouts of one sku: what it asks for, and
 * what the batch's statement gave it. */
struct sale_buy {
    combiner_item item;   /* first: the batch's items are sale_buys */
    struct sale_member m; /* its quantity, and what the allocation gave it */
    const char *sku;
    int failed; /* the statement failed: err says why, nothing was sold */
    errbuf err;
};

/* -- the allocation ------------------------------------------------------------ */

long long
sale_allocate(struct sale_member *first, long long stock, long long point)
{
    long long left = stock;

    for (struct sale_member *m = first; m != NULL; m = m->next) {
        /* Set whatever an earlier attempt, rolled back, set. */
        m->sold = m->quantity <= left;
        m->crossed = 0;
        m->remaining = 0;
        if (!m->sold)
            continue;
        m->crossed = !ORDER_AT_POINT(left, point) && ORDER_AT_POINT(left - m->quantity, point);
        left -= m->quantity;
        m->remaining = left;
    }
    return stock - left;
}

/* -- the shop -------------------------------------------------------------------- */

sale_shop *
sale_shop_new(const conf *cf, size_t threads, errbuf *err)
{
    sale_shop *self = calloc(1, sizeof(*self));

    if (self != NULL) {
        self->cf = cf;
        self->key_retention = conf_int(cf, "idempotency_retention");
        self->limit_window = conf_int(cf, "limit_window");
        /* A sku in flight per thread at most: one slot each. */
        self->checkouts = combiner_new(threads);
    }
    if (self == NULL || self->checkouts == NULL) {
        free(self);
        errbuf_set(err, "out of memory");
        return NULL;
    }
    return self;
}

void
sale_shop_destroy(sale_shop **self_p)
{
    sale_shop *self = *self_p;
    struct combiner_stats st;
    char sizes[160];

    if (self == NULL)
        return;
    /* How much the checkouts were combined, for the operator and the bench. */
    combiner_stats(self->checkouts, &st);
    combiner_sizes_text(&st, sizes, sizeof(sizes));
    log_info("event=checkout_batches statements=%llu checkouts=%llu largest=%llu sizes=\"%s\"",
             st.batches, st.items, st.max, sizes);
    combiner_destroy(&self->checkouts);
    free(self);
    *self_p = NULL;
    bus_shutdown(); /* every thread's doorbell is closed by now */
}

/* The sale, and what it did, in one statement: LAST_INSERT_ID(expr) returns expr,
 * here the new stock and the reorder point (SALE_SCALE), and DIV stores the new
 * stock. The row lock makes the statements of one sku queue in the database, and
 * the WHERE never lets stock go below zero: never read-then-write. sold_total
 * counts the units for the worker's sales rate. */
/* (Unformatted: clang-format would break the text inside the ORDER_SQL calls.) */
/* clang-format off */
static const char sale_take_sql[] =
    "UPDATE product SET sold_total = sold_total + ?,"
    " stock = LAST_INSERT_ID((stock - ?) * " ORDER_SQL(SALE_SCALE)
    " + reorder_point + " ORDER_SQL(SALE_BIAS) ") DIV " ORDER_SQL(SALE_SCALE)
    " WHERE sku = ? AND stock >= ?";
/* clang-format on */

/* -- a thread's sale ------------------------------------------------------------- */

sale *
sale_new(sale_shop *shop, db *conn, errbuf *err)
{
    sale *self = calloc(1, sizeof(*self));

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    self->shop = shop;
    self->conn = conn;
    self->take = db_stmt_new(conn, sale_take_sql, 0);
    self->lock =
        db_stmt_new(conn, "SELECT stock, reorder_point FROM product WHERE sku = ? FOR UPDATE", 0);
    self->cart_lock = db_stmt_new(conn,
                                  "SELECT product_id, stock, reorder_point, max_per_customer"
                                  " FROM product WHERE sku = ? FOR UPDATE",
                                  0);
    self->peek =
        db_stmt_new(conn, "SELECT max_per_customer FROM product WHERE sku = ?", DB_IDEMPOTENT);
    self->bought = db_stmt_new(conn,
                               "SELECT COALESCE(SUM(units), 0) FROM customer_purchase"
                               " WHERE product_id = ? AND client_id = ? AND customer = ?"
                               " AND created_at > UTC_TIMESTAMP(6) - INTERVAL ? SECOND",
                               0);
    self->prune = db_stmt_new(conn,
                              "DELETE FROM customer_purchase"
                              " WHERE product_id = ? AND client_id = ? AND customer = ?"
                              " AND created_at <= UTC_TIMESTAMP(6) - INTERVAL ? SECOND",
                              0);
    self->record = db_stmt_new(conn,
                               "INSERT INTO customer_purchase"
                               " (client_id, customer, product_id, units, created_at)"
                               " VALUES (?, ?, ?, ?, UTC_TIMESTAMP(6))",
                               0);
    if (self->take == NULL || self->lock == NULL || self->cart_lock == NULL || self->peek == NULL ||
        self->bought == NULL || self->prune == NULL || self->record == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    self->orders = order_new(conn, err);
    if (self->orders == NULL)
        goto fail;
    self->keys = checkout_key_new(conn, err);
    if (self->keys == NULL)
        goto fail;
    self->bell = bus_pub_new(conf_str(shop->cf, "bus_endpoint"), err);
    if (self->bell == NULL)
        goto fail;
    return self;

fail:
    sale_destroy(&self);
    return NULL;
}

void
sale_destroy(sale **self_p)
{
    sale *self = *self_p;

    if (self == NULL)
        return;
    bus_pub_destroy(&self->bell);
    checkout_key_destroy(&self->keys);
    order_destroy(&self->orders);
    free(self); /* the statements go with the caller's db */
    *self_p = NULL;
}

/* -- what a sale triggers ------------------------------------------------------------ */

/* After the commit, never before: the worker must find the row it is woken
 * for. A lost doorbell costs one sweep interval, not the order. */
static void
sale_ring(sale *self, const struct order_open_outcome *out)
{
    if (out->event[0] != '\0' && bus_ring(self->bell, BUS_STOCK_EMPTY, out->event) != RS_OK) {
        metrics_count(METRICS_DOORBELLS_DROPPED);
        log_warn("event=doorbell_dropped topic=%s outbox_event=%s", BUS_STOCK_EMPTY, out->event);
    }
}

/* What one sale triggers: only the sale that crossed the reorder point and the
 * one that emptied the shelf do more: order.c opens the order (crossing) and
 * marks it sold out (stock 0), in one transaction. The sale itself is committed
 * whatever happens here: a failure is logged, and the worker's sweep opens the
 * order of a product at or below its point. (One call per sale; in a batch, each
 * member's own thread calls it for its own sale.) */
static void
sale_after_sale(sale *self, const char *sku, const struct sale_member *m)
{
    errbuf err = {{0}};
    struct order_open_outcome out;

    if (!m->crossed && m->remaining > 0)
        return;
    if (m->remaining == 0)
        metrics_count(METRICS_SELLOUTS);
    if (order_reorder(self->orders, sku, &out, &err) < 0) {
        log_error("event=reorder_failed sku=%s quantity=%lld remaining=%lld error=\"%s\"", sku,
                  m->quantity, m->remaining, err.msg);
        return;
    }
    sale_ring(self, &out);
}

/* What a committed checkout triggers, and its count: a sale what sale_after_sale
 * does; a refusal (state, from order_refused) the doorbell of what it wrote. */
static void
sale_done(sale *self, const struct sale_buy *buy, int state, const struct order_open_outcome *ring)
{
    if (buy->m.sold) {
        metrics_count(METRICS_CHECKOUT_SOLD);
        sale_after_sale(self, buy->sku, &buy->m);
        return;
    }
    metrics_count(state == ORDER_NO_PRODUCT ? METRICS_CHECKOUT_NOT_FOUND
                                            : METRICS_CHECKOUT_REFUSED);
    sale_ring(self, ring);
}

/* -- the answer ---------------------------------------------------------------------- */

/* {"message":…}, or NULL when out of memory. */
static cJSON *
sale_message_json(const char *message)
{
    cJSON *json = cJSON_CreateObject();

    if (json != NULL && cJSON_AddStringToObject(json, "message", message) == NULL)
        cJSON_Delete(json), json = NULL;
    return json;
}

/* {"message":"<prefix> 남은 재고: N","sku":…,"remaining":N[,"replenishment":…]},
 * or NULL when out of memory. */
static cJSON *
sale_checkout_json(const char *prefix, const char *sku, long long remaining,
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

/* Prints json (then deleted) into out->body. RS_ERR when out of memory (or json
 * NULL): an answer is far shorter than the buffer (CHECKOUT_KEY_BODY_MAX holds
 * the longest cart's), so only memory can be short. */
static int
sale_answer_text(cJSON *json, struct sale_answer *out, errbuf *err)
{
    char *text = json != NULL ? json_print(json, out->body, sizeof(out->body)) : NULL;

    cJSON_Delete(json);
    if (text != out->body) {
        json_print_free(text, out->body);
        return errbuf_set(err, "out of memory");
    }
    out->len = strlen(out->body);
    return RS_OK;
}

/* The word the 409 answer carries in "replenishment" for an order_refused
 * result: only what is true (NULL: no field, nothing is on order). */
static const char *
sale_replenishment(int state)
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

/* The answer of a checkout: sold (buy), or refused with state and the stock
 * order_refused read (ring). Its text goes into out->body. RS_ERR when out of
 * memory. */
static int
sale_answer_make(const struct sale_buy *buy, int state, const struct order_open_outcome *ring,
                 struct sale_answer *out, errbuf *err)
{
    cJSON *json;

    if (buy->m.sold) {
        out->outcome = SALE_SOLD, out->status = 200;
        json = sale_checkout_json("구매 완료!", buy->sku, buy->m.remaining, NULL);
    } else if (state == ORDER_NO_PRODUCT) {
        out->outcome = SALE_NO_PRODUCT, out->status = 404;
        json = sale_message_json("상품 없음");
    } else {
        out->outcome = SALE_REFUSED, out->status = 409;
        json =
            sale_checkout_json("구매 실패!", buy->sku, ring->remaining, sale_replenishment(state));
    }
    return sale_answer_text(json, out, err);
}

/* Adds "reason":"limit","limit":N to a 409's json (NULL stays NULL): 0 when
 * out of memory (json deleted). */
static cJSON *
sale_limit_json(cJSON *json, long long limit)
{
    if (json != NULL && (cJSON_AddStringToObject(json, "reason", "limit") == NULL ||
                         cJSON_AddNumberToObject(json, "limit", (double)limit) == NULL))
        cJSON_Delete(json), json = NULL;
    return json;
}

/* The answer when it could not be made after a sale that stands: 500, as any
 * answer that runs out of memory. */
static void
sale_answer_oom(struct sale_answer *out)
{
    static const char oom[] = "{\"error\":\"out of memory\"}";

    out->status = 500;
    out->len = sizeof(oom) - 1;
    memcpy(out->body, oom, out->len);
}

/* -- the combined checkout ---------------------------------------------------------- */

/* The one statement that takes stock: n units of sku, if that many are left.
 * Rows changed, or RS_ERR; when 1, *left is the stock it left and *point the
 * product's reorder point, read in the same round trip. */
static long long
sale_take(sale *self, const char *sku, long long n, long long *left, long long *point, errbuf *err)
{
    long long rows = db_stmt_exec(self->take, err, "iisi", n, n, sku, n);

    if (rows == 1) {
        unsigned long long id = db_stmt_insert_id(self->take);
        *left = (long long)(id / SALE_SCALE);
        *point = (long long)(id % SALE_SCALE) - SALE_BIAS;
    }
    return rows;
}

static void
sale_batch_fail(combiner_item *batch, const errbuf *err)
{
    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct sale_buy *b = (struct sale_buy *)it;
        b->failed = 1;
        b->err = *err;
    }
}

/* The batch's total did not fit in the stock (or the sku is unknown): the sell-out
 * boundary, rare. Under the row's lock, sale_allocate gives the stock to the
 * members in arrival order; then one UPDATE takes what was given, and the commit
 * releases the row. Any failure rolls back: nothing sold. RS_ERR with err when
 * it failed. */
static int
sale_batch_allocate_tx(sale *self, struct sale_buy *first, errbuf *err)
{
    long long rows, taken, left, point;

    if (db_begin(self->conn, err) != RS_OK)
        goto fail;
    rows = db_stmt_exec(self->lock, err, "s", first->sku);
    if (rows < 0)
        goto fail;
    if (rows == 0 || !db_stmt_next(self->lock)) {
        /* No such product: nothing to give, nobody sold; each member's refusal
         * says 404. */
        db_rollback(self->conn);
        sale_allocate(&first->m, 0, 0);
        return RS_OK;
    }
    taken =
        sale_allocate(&first->m, db_stmt_col_int(self->lock, 0), db_stmt_col_int(self->lock, 1));
    if (taken > 0) {
        rows = sale_take(self, first->sku, taken, &left, &point, err);
        if (rows < 0)
            goto fail;
        if (rows != 1) {
            /* Not the sku: it is the client's text, and this goes to the log. */
            errbuf_set(err, "a product's stock changed under its row lock");
            goto fail;
        }
    }
    if (db_commit(self->conn, err) != RS_OK)
        goto fail;
    return RS_OK;

fail:
    db_rollback(self->conn);
    return RS_ERR;
}

/* The allocation, run again while the database rolled it back (a deadlock, a
 * Galera certification failure of a two-writer hot row): nothing was sold, so
 * that a conflict is never answered 503. Another failure: every member 503. */
static void
sale_batch_allocate(sale *self, combiner_item *batch)
{
    errbuf err = {{0}};
    int rc, attempts = 0;

    do
        rc = sale_batch_allocate_tx(self, (struct sale_buy *)batch, &err);
    while (rc != RS_OK && db_retry(self->conn, &attempts));
    if (rc != RS_OK)
        sale_batch_fail(batch, &err);
}

/* One statement for the whole batch, run by its leader on its own connection.
 * The common case, every quantity fits: one UPDATE takes the total, and hands
 * back the stock it left and the reorder point; the allocation of the stock
 * there was before it then tells each member its remaining and which one
 * crossed the point, as under the row lock. */
static void
sale_batch_run(void *ctx, combiner_item *batch, size_t n)
{
    sale *self = ctx;
    struct sale_buy *first = (struct sale_buy *)batch;
    long long total = 0, rows, left = 0, point = 0;
    errbuf err = {{0}};

    (void)n;
    /* The allocation walks the members in the batch's (arrival) order. */
    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct sale_buy *b = (struct sale_buy *)it;
        b->m.next = it->next != NULL ? &((struct sale_buy *)it->next)->m : NULL;
        total += b->m.quantity;
    }
    rows = sale_take(self, first->sku, total, &left, &point, &err);
    if (rows < 0) {
        sale_batch_fail(batch, &err);
        return;
    }
    if (rows == 0) {
        /* Alone, the one checkout did not fit: sold out, without a transaction. */
        if (batch->next == NULL)
            first->m.sold = 0;
        else
            sale_batch_allocate(self, batch);
        return;
    }
    sale_allocate(&first->m, left + total, point);
}

/* Without a key: the checkouts that arrive while one of the same sku is in
 * flight wait here and go in the next statement together. Not sold: the
 * refusal's decision, order_refused (order.h). */
static int
sale_checkout_combined(sale *self, struct sale_buy *buy, struct sale_answer *out, errbuf *err)
{
    struct order_open_outcome ring;
    int state = 0;

    memset(&ring, 0, sizeof(ring));
    log_debug("event=checkout_submitted quantity=%lld", buy->m.quantity); /* tests wait for it */
    combiner_submit(self->shop->checkouts, &buy->item, buy->sku, sale_batch_run, self);
    if (buy->failed) {
        *err = buy->err;
        return RS_ERR;
    }
    if (!buy->m.sold) {
        state = order_refused(self->orders, buy->sku, buy->m.quantity, &ring, err);
        if (state < 0)
            return RS_ERR; /* 503, not 409: nothing was decided */
    }
    sale_done(self, buy, state, &ring);
    if (sale_answer_make(buy, state, &ring, out, err) != RS_OK)
        sale_answer_oom(out);
    return RS_OK;
}

/* -- customer limits ---------------------------------------------------------------- */

int
sale_customer_check(const char *customer, errbuf *err)
{
    size_t n = strlen(customer);

    for (size_t i = 0; i < n; i++)
        if ((unsigned char)customer[i] < 0x21 || (unsigned char)customer[i] > 0x7e)
            n = 0; /* not a visible ASCII character */
    if (n == 0 || n > SALE_CUSTOMER_MAX)
        return errbuf_set(err,
                          "Restock-Customer: expected 1 to %d visible ASCII characters (no "
                          "spaces), the id of the client's customer",
                          SALE_CUSTOMER_MAX);
    return RS_OK;
}

/* A product's limit as its sale to a customer saw it under the row lock. */
struct sale_limit {
    unsigned char product_id[IDENT_BYTES];
    long long stock;  /* under the row lock, before the take */
    long long point;  /* its reorder point */
    long long max;    /* max_per_customer; 0: none */
    long long bought; /* the customer's units in the window, when max > 0 */
};

/* With no lock, whether sku has a limit (a request with a customer of a product
 * without one is combined as any). 1, 0 (none, or no such sku), RS_ERR. */
static int
sale_limit_peek(sale *self, const char *sku, errbuf *err)
{
    long long rows = db_stmt_exec(self->peek, err, "s", sku);

    if (rows < 0)
        return RS_ERR;
    return rows > 0 && db_stmt_next(self->peek) && db_stmt_col_int(self->peek, 0) > 0;
}

/* Reads the current row of cart_lock (product_id, stock, reorder_point,
 * max_per_customer) into *lim. RS_ERR when the id is not an id. */
static int
sale_limit_row(sale *self, struct sale_limit *lim, errbuf *err)
{
    size_t len;
    const char *id = db_stmt_col(self->cart_lock, 0, &len);

    if (id == NULL || len != IDENT_BYTES)
        return errbuf_set(err, "database: a product's id is not %d bytes", IDENT_BYTES);
    memcpy(lim->product_id, id, IDENT_BYTES);
    lim->stock = db_stmt_col_int(self->cart_lock, 1);
    lim->point = db_stmt_col_int(self->cart_lock, 2);
    lim->max = db_stmt_col_int(self->cart_lock, 3);
    lim->bought = 0;
    return RS_OK;
}

/* Under the product's row lock (the caller's, held to the commit: two sales of
 * it to one customer never both see room for one more): lim->bought, the units
 * the customer of client bought of it over limit_window; its older rows deleted
 * first. Nothing read when the product has no limit. */
static int
sale_limit_bought(sale *self, long long client, const char *customer, struct sale_limit *lim,
                  errbuf *err)
{
    long long window = self->shop->limit_window;

    if (lim->max <= 0)
        return RS_OK;
    if (db_stmt_exec(self->prune, err, "bisi", lim->product_id, (size_t)IDENT_BYTES, client,
                     customer, window) < 0 ||
        db_stmt_exec(self->bought, err, "bisi", lim->product_id, (size_t)IDENT_BYTES, client,
                     customer, window) < 0)
        return RS_ERR;
    lim->bought = db_stmt_next(self->bought) ? db_stmt_col_int(self->bought, 0) : 0;
    return RS_OK;
}

/* A limited product's units sold to the customer, in the sale's transaction;
 * nothing for a product without a limit. */
static int
sale_limit_record(sale *self, long long client, const char *customer, const struct sale_limit *lim,
                  long long units, errbuf *err)
{
    if (lim->max <= 0)
        return RS_OK;
    if (db_stmt_exec(self->record, err, "isbi", client, customer, lim->product_id,
                     (size_t)IDENT_BYTES, units) < 0)
        return RS_ERR;
    return RS_OK;
}

/* Locks sku's row and reads its limit and what the customer bought. 1: the
 * quantity would take the customer over the limit; 0: it fits, there is no
 * limit, or no such sku (lim->max 0: the take finds nothing, the answer is 404);
 * RS_ERR. */
static int
sale_limit_lock(sale *self, const struct sale_request *req, struct sale_limit *lim, errbuf *err)
{
    long long rows = db_stmt_exec(self->cart_lock, err, "s", req->sku);

    memset(lim, 0, sizeof(*lim));
    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(self->cart_lock))
        return 0;
    if (sale_limit_row(self, lim, err) != RS_OK ||
        sale_limit_bought(self, req->client, req->customer, lim, err) != RS_OK)
        return RS_ERR;
    return lim->max > 0 && lim->bought + req->quantity > lim->max;
}

/* The 409 of a checkout over its customer's limit (sale_customer_check's
 * comment in sale.h says its fields). RS_ERR when out of memory. */
static int
sale_limit_answer(const char *sku, const struct sale_limit *lim, struct sale_answer *out,
                  errbuf *err)
{
    long long allowed = lim->max > lim->bought ? lim->max - lim->bought : 0;
    cJSON *json =
        sale_limit_json(sale_checkout_json("구매 한도 초과!", sku, lim->stock, NULL), lim->max);

    if (json != NULL && cJSON_AddNumberToObject(json, "allowed", (double)allowed) == NULL)
        cJSON_Delete(json), json = NULL;
    out->outcome = SALE_LIMITED, out->status = 409;
    return sale_answer_text(json, out, err);
}

/* -- the keyed checkout ------------------------------------------------------------- */

/* The keyed checkout's transaction: claims the key's row, if any (a request with
 * the same key in flight holds it: this one waits, then finds it taken); with a
 * customer, locks the product's row and checks its limit (sale_limit_lock); runs the
 * same sale statement as the combined path, and stores the answer, 200 or 409,
 * with the row before the commit. Not sold: order_refused, whose writes join this
 * transaction (its own is a savepoint of it, db.h). A 404 (no such sku) is not
 * stored: it sold and changed nothing, so its retry may as well be asked again,
 * and a client cannot fill the key table with rows that cost the shop nothing to
 * refuse; its transaction is rolled back, the key's row with it. *claim tells
 * what the key's row held. A failure rolls everything back. */
static int
sale_keyed_tx(sale *self, const struct sale_request *req, struct sale_buy *buy, int *claim,
              int *state, struct order_open_outcome *ring, struct sale_answer *out, errbuf *err)
{
    unsigned char fingerprint[CHECKOUT_KEY_FINGERPRINT];
    struct checkout_key_answer stored;
    struct sale_limit lim;
    long long rows, left, point;
    int limited = 0;

    *state = 0;
    *claim = CHECKOUT_KEY_NEW;
    buy->m.sold = 0;
    memset(ring, 0, sizeof(*ring));
    memset(&lim, 0, sizeof(lim));
    checkout_key_fingerprint(req->client, req->sku, req->quantity, fingerprint);
    if (db_begin(self->conn, err) != RS_OK)
        goto fail;
    if (req->key != NULL)
        *claim = checkout_key_claim(self->keys, req->client, req->key, fingerprint,
                                    self->shop->key_retention, &stored, err);
    if (*claim < 0)
        goto fail;
    if (*claim != CHECKOUT_KEY_NEW) {
        db_rollback(self->conn); /* it wrote nothing */
        out->outcome = *claim == CHECKOUT_KEY_REPLAY ? SALE_REPLAYED : SALE_KEY_MISMATCH;
        out->status = *claim == CHECKOUT_KEY_REPLAY ? stored.status : 422;
        out->len = *claim == CHECKOUT_KEY_REPLAY ? stored.len : 0;
        memcpy(out->body, stored.body, out->len);
        return RS_OK;
    }
    /* A customer: the product's row locked first, its limit checked under it. */
    if (req->customer != NULL && (limited = sale_limit_lock(self, req, &lim, err)) < 0)
        goto fail;
    if (limited) {
        if (sale_limit_answer(req->sku, &lim, out, err) != RS_OK)
            goto fail;
    } else {
        rows = sale_take(self, req->sku, req->quantity, &left, &point, err);
        if (rows < 0)
            goto fail;
        if (rows == 1) {
            sale_allocate(&buy->m, left + req->quantity, point);
            if (req->customer != NULL && sale_limit_record(self, req->client, req->customer, &lim,
                                                           req->quantity, err) != RS_OK)
                goto fail;
        } else if ((*state = order_refused(self->orders, req->sku, req->quantity, ring, err)) < 0)
            goto fail;
        if (sale_answer_make(buy, *state, ring, out, err) != RS_OK)
            goto fail;
    }
    if (out->outcome == SALE_NO_PRODUCT) {
        db_rollback(self->conn);
        return RS_OK;
    }
    if ((req->key != NULL && checkout_key_store(self->keys, req->client, req->key, out->status,
                                                out->body, out->len, err) != RS_OK) ||
        db_commit(self->conn, err) != RS_OK)
        goto fail;
    return RS_OK;

fail:
    db_rollback(self->conn);
    buy->m.sold = 0;
    return RS_ERR;
}

/* A checkout with an Idempotency-Key, or a customer's of a limited product: not
 * in the combiner, whose statement is shared, but in a transaction of its own
 * (sale_keyed_tx), run again while the
 * database rolled it back (a deadlock, a Galera certification failure of two
 * writers), as the combined allocation is. The same key and request again: the
 * stored answer, byte for byte, and nothing sold; another request: no answer
 * (the caller's 422). Another failure is RS_ERR, stored nowhere: the retry runs
 * afresh, or, when the commit did happen (the connection broke after COMMIT was
 * sent), finds the key and is answered what the sale was. After the commit,
 * what the sale or refusal triggers, as for any checkout. */
static int
sale_checkout_keyed(sale *self, const struct sale_request *req, struct sale_buy *buy,
                    struct sale_answer *out, errbuf *err)
{
    struct order_open_outcome ring;
    int claim = CHECKOUT_KEY_NEW, state = 0, rc, attempts = 0;

    do
        rc = sale_keyed_tx(self, req, buy, &claim, &state, &ring, out, err);
    while (rc != RS_OK && db_retry(self->conn, &attempts));
    if (rc != RS_OK)
        return RS_ERR;
    if (claim == CHECKOUT_KEY_MISMATCH)
        metrics_count(METRICS_CHECKOUT_KEY_MISMATCH);
    else if (claim != CHECKOUT_KEY_NEW)
        metrics_count(METRICS_CHECKOUT_REPLAYED);
    else if (out->outcome == SALE_LIMITED)
        metrics_count(METRICS_CHECKOUT_LIMIT);
    else
        sale_done(self, buy, state, &ring);
    return RS_OK;
}

int
sale_checkout(sale *self, const struct sale_request *req, struct sale_answer *out, errbuf *err)
{
    struct sale_buy buy;

    memset(&buy, 0, sizeof(buy));
    buy.sku = req->sku;
    buy.m.quantity = req->quantity;
    out->len = 0;
    if (req->key == NULL && req->customer != NULL) {
        /* A customer's checkout of a product without a limit is any checkout. */
        int limited = sale_limit_peek(self, req->sku, err);

        if (limited < 0)
            return RS_ERR;
        if (!limited)
            return sale_checkout_combined(self, &buy, out, err);
    } else if (req->key == NULL)
        return sale_checkout_combined(self, &buy, out, err);
    log_debug("event=checkout_keyed client=%lld quantity=%lld keyed=%d customer=%d", req->client,
              req->quantity, req->key != NULL, req->customer != NULL);
    return sale_checkout_keyed(self, req, &buy, out, err);
}

/* -- a cart ------------------------------------------------------------------------- */

/* The lock order of two skus: as the sku column compares them (its collation
 * ignores case, and for ASCII skus that is strcasecmp), then by bytes for a total
 * order. Two carts naming one product in other cases then lock it at the same
 * place among their rows. */
static int
sale_cart_sku_cmp(const char *a, const char *b)
{
    int c = strcasecmp(a, b);

    return c != 0 ? c : strcmp(a, b);
}

/* Insertion sort of cart->order in lock order: at most SALE_LINES_MAX lines. */
static void
sale_cart_sort(struct sale_cart *cart)
{
    for (size_t i = 1; i < cart->n; i++) {
        size_t x = cart->order[i], j = i;

        for (; j > 0 &&
               sale_cart_sku_cmp(cart->lines[cart->order[j - 1]].sku, cart->lines[x].sku) > 0;
             j--)
            cart->order[j] = cart->order[j - 1];
        cart->order[j] = x;
    }
}

int
sale_cart_parse(const cJSON *body, struct sale_cart *cart, errbuf *err)
{
    const cJSON *lines = cJSON_GetObjectItemCaseSensitive(body, "lines"), *item;
    size_t n = 0;

    if (cJSON_GetObjectItemCaseSensitive(body, "sku") != NULL ||
        cJSON_GetObjectItemCaseSensitive(body, "quantity") != NULL)
        return errbuf_set(err, "a cart's lines name its skus and quantities: send lines, or sku "
                               "and quantity, not both");
    if (!cJSON_IsArray(lines))
        return errbuf_set(err, "lines must be an array of 1 to %d {\"sku\",\"quantity\"} objects",
                          SALE_LINES_MAX);
    cJSON_ArrayForEach(item, lines)
    {
        struct checkout_key_line *l = &cart->lines[n];

        if (n == SALE_LINES_MAX)
            return errbuf_set(err, "lines: more than %d lines (a cart has 1 to %d)", SALE_LINES_MAX,
                              SALE_LINES_MAX);
        l->sku = NULL, l->quantity = 0;
        if (!cJSON_IsObject(item))
            return errbuf_set(err, "lines[%zu] must be an object {\"sku\",\"quantity\"}", n);
        if (json_opt_str(item, "sku", 1, PRODUCT_SKU_MAX, &l->sku, err) != RS_OK ||
            json_opt_int(item, "quantity", 1, SALE_QUANTITY_MAX, 0, &l->quantity, err) != RS_OK)
            return errbuf_prefix(err, "lines[%zu]", n);
        if (l->sku == NULL || l->quantity == 0)
            return errbuf_set(err, "lines[%zu] must have sku and quantity", n);
        cart->order[n] = n;
        n++;
    }
    if (n == 0)
        return errbuf_set(err, "lines: empty (a cart has 1 to %d lines)", SALE_LINES_MAX);
    cart->n = n;
    sale_cart_sort(cart);
    for (size_t i = 1; i < n; i++)
        if (strcmp(cart->lines[cart->order[i - 1]].sku, cart->lines[cart->order[i]].sku) == 0)
            return errbuf_set(err, "lines: a sku is named twice; send each product once, with its "
                                   "whole quantity");
    return RS_OK;
}

/* A line of a cart in its transaction: what its row held under the lock, and
 * what the cart did with it. */
struct sale_cart_line {
    struct sale_limit row;          /* its id, stock, point and limit under the lock */
    struct sale_member m;           /* its quantity; sold, remaining, crossed */
    int is_short;                   /* quantity > stock: the cart is refused */
    int over_limit;                 /* over the customer's limit: the cart is refused */
    struct order_open_outcome ring; /* a short line's refusal wrote this event */
};

/* The cart's answer, its lines in the request's order. RS_ERR when out of memory. */
static int
sale_cart_answer(const struct sale_cart *cart, const struct sale_cart_line *work, int sold,
                 int limited, struct sale_answer *out, errbuf *err)
{
    cJSON *json = sale_message_json(sold      ? "구매 완료!"
                                    : limited ? "구매 한도 초과!"
                                              : "구매 실패!"),
          *lines = NULL;
    int ok = json != NULL && (lines = cJSON_AddArrayToObject(json, "lines")) != NULL;

    for (size_t i = 0; ok && i < cart->n; i++) {
        const struct sale_cart_line *w = &work[i];
        cJSON *line = cJSON_CreateObject();

        if (line == NULL || !cJSON_AddItemToArray(lines, line)) {
            cJSON_Delete(line);
            ok = 0;
            break;
        }
        ok = cJSON_AddStringToObject(line, "sku", cart->lines[i].sku) != NULL;
        ok = ok && cJSON_AddNumberToObject(line, "quantity", (double)w->m.quantity) != NULL;
        ok = ok && cJSON_AddNumberToObject(line, "remaining",
                                           (double)(sold ? w->m.remaining : w->row.stock)) != NULL;
        if (ok && w->is_short)
            ok = cJSON_AddTrueToObject(line, "short") != NULL;
        if (ok && w->over_limit)
            ok = cJSON_AddNumberToObject(line, "limit", (double)w->row.max) != NULL;
    }
    /* Over a limit: the top level says so, with the first such line's limit. */
    for (size_t i = 0; ok && limited && i < cart->n; i++)
        if (work[i].over_limit) {
            json = sale_limit_json(json, work[i].row.max);
            ok = json != NULL;
            break;
        }
    out->outcome = sold ? SALE_SOLD : limited ? SALE_LIMITED : SALE_REFUSED;
    out->status = sold ? 200 : 409;
    if (!ok)
        cJSON_Delete(json), json = NULL;
    return sale_answer_text(json, out, err);
}

/* A static answer of the cart's transaction: 404 (a sku unknown) or 400
 * (SALE_DUPLICATE); nothing was written. */
static void
sale_cart_static(struct sale_answer *out, enum sale_outcome outcome)
{
    static const char none[] = "{\"message\":\"상품 없음\"}",
                      dup[] = "{\"error\":\"lines: two lines name one product (their skus differ "
                              "only in case); send each product once\"}";
    const char *text = outcome == SALE_NO_PRODUCT ? none : dup;

    out->outcome = outcome;
    out->status = outcome == SALE_NO_PRODUCT ? 404 : 400;
    out->len = strlen(text);
    memcpy(out->body, text, out->len);
}

/* Locks the cart's rows in cart->order and reads each line's product and stock
 * into work. 1: every line's product is there, each once; 0: *out says why not
 * (404, or SALE_DUPLICATE); RS_ERR. */
static int
sale_cart_lock(sale *self, const struct sale_cart *cart, struct sale_cart_line *work,
               struct sale_answer *out, errbuf *err)
{
    for (size_t k = 0; k < cart->n; k++) {
        size_t i = cart->order[k];
        struct sale_cart_line *w = &work[i];
        long long rows = db_stmt_exec(self->cart_lock, err, "s", cart->lines[i].sku);

        if (rows < 0)
            return RS_ERR;
        if (rows == 0 || !db_stmt_next(self->cart_lock)) {
            sale_cart_static(out, SALE_NO_PRODUCT);
            return 0;
        }
        if (sale_limit_row(self, &w->row, err) != RS_OK)
            return RS_ERR;
        /* Two skus the collation takes as one (case): one product, locked already. */
        for (size_t j = 0; j < k; j++)
            if (memcmp(work[cart->order[j]].row.product_id, w->row.product_id, IDENT_BYTES) == 0) {
                sale_cart_static(out, SALE_DUPLICATE);
                return 0;
            }
    }
    return 1;
}

/* Every line fits: each takes its quantity with the one-line sale's statement, in
 * lock order, and is told what it left and whether it crossed the point. */
static int
sale_cart_take(sale *self, const struct sale_cart *cart, struct sale_cart_line *work, errbuf *err)
{
    for (size_t k = 0; k < cart->n; k++) {
        size_t i = cart->order[k];
        struct sale_cart_line *w = &work[i];
        long long left, point, rows;

        sale_allocate(&w->m, w->row.stock, w->row.point);
        rows = sale_take(self, cart->lines[i].sku, w->m.quantity, &left, &point, err);
        if (rows < 0)
            return RS_ERR;
        if (rows != 1 || left != w->m.remaining)
            return errbuf_set(err, "a product's stock changed under its row lock");
        if (cart->customer != NULL && sale_limit_record(self, cart->client, cart->customer, &w->row,
                                                        w->m.quantity, err) != RS_OK)
            return RS_ERR;
    }
    return RS_OK;
}

/* The cart's transaction (see sale_cart_checkout): the key, the rows locked in
 * one order (so that no two carts deadlock, whatever the order of their lines),
 * every line sold or none, the short lines' refusals, the answer stored. *claim
 * tells what the key's row held. A failure rolls everything back. */
static int
sale_cart_tx(sale *self, const struct sale_cart *cart, struct sale_cart_line *work, int *claim,
             struct sale_answer *out, errbuf *err)
{
    unsigned char fingerprint[CHECKOUT_KEY_FINGERPRINT];
    struct checkout_key_answer stored;
    int found, refused = 0, limited = 0;

    *claim = CHECKOUT_KEY_NEW;
    for (size_t i = 0; i < cart->n; i++) {
        memset(&work[i], 0, sizeof(work[i]));
        work[i].m.quantity = cart->lines[i].quantity;
    }
    if (db_begin(self->conn, err) != RS_OK)
        goto fail;
    if (cart->key != NULL) {
        checkout_key_cart_fingerprint(cart->client, cart->lines, cart->order, cart->n, fingerprint);
        *claim = checkout_key_claim(self->keys, cart->client, cart->key, fingerprint,
                                    self->shop->key_retention, &stored, err);
        if (*claim < 0)
            goto fail;
        if (*claim != CHECKOUT_KEY_NEW) {
            db_rollback(self->conn); /* it wrote nothing */
            out->outcome = *claim == CHECKOUT_KEY_REPLAY ? SALE_REPLAYED : SALE_KEY_MISMATCH;
            out->status = *claim == CHECKOUT_KEY_REPLAY ? stored.status : 422;
            out->len = *claim == CHECKOUT_KEY_REPLAY ? stored.len : 0;
            memcpy(out->body, stored.body, out->len);
            return RS_OK;
        }
    }
    found = sale_cart_lock(self, cart, work, out, err);
    if (found < 0)
        goto fail;
    if (found == 0) {
        /* Nothing sold, and not stored (as a one-line 404). */
        db_rollback(self->conn);
        return RS_OK;
    }
    /* A customer's limits first, under the rows' locks, in their order: a cart
     * over one is refused whole, and is not unmet demand. */
    for (size_t k = 0; cart->customer != NULL && k < cart->n; k++) {
        struct sale_cart_line *w = &work[cart->order[k]];

        if (sale_limit_bought(self, cart->client, cart->customer, &w->row, err) != RS_OK)
            goto fail;
        limited |= w->over_limit = w->row.max > 0 && w->row.bought + w->m.quantity > w->row.max;
    }
    for (size_t i = 0; !limited && i < cart->n; i++)
        refused |= work[i].is_short = work[i].m.quantity > work[i].row.stock;
    if (!refused && !limited && sale_cart_take(self, cart, work, err) != RS_OK)
        goto fail;
    /* A short line is a checkout turned away: the refusal's decision (the
     * unmet demand of a sold-out product, its order), inside this transaction. */
    for (size_t i = 0; refused && i < cart->n; i++)
        if (work[i].is_short && order_refused(self->orders, cart->lines[i].sku, work[i].m.quantity,
                                              &work[i].ring, err) < 0)
            goto fail;
    if (sale_cart_answer(cart, work, !refused && !limited, limited, out, err) != RS_OK)
        goto fail;
    if (cart->key != NULL && checkout_key_store(self->keys, cart->client, cart->key, out->status,
                                                out->body, out->len, err) != RS_OK)
        goto fail;
    if (db_commit(self->conn, err) != RS_OK)
        goto fail;
    return RS_OK;

fail:
    db_rollback(self->conn);
    return RS_ERR;
}

int
sale_cart_checkout(sale *self, const struct sale_cart *cart, struct sale_answer *out, errbuf *err)
{
    struct sale_cart_line *work = calloc(cart->n, sizeof(*work));
    int claim = CHECKOUT_KEY_NEW, rc, attempts = 0;

    out->len = 0;
    if (work == NULL)
        return errbuf_set(err, "out of memory");
    log_debug("event=cart_submitted client=%lld lines=%zu keyed=%d", cart->client, cart->n,
              cart->key != NULL);
    /* A deadlock or a certification failure rolled all of it back: run again. */
    do
        rc = sale_cart_tx(self, cart, work, &claim, out, err);
    while (rc != RS_OK && db_retry(self->conn, &attempts));
    if (rc != RS_OK)
        goto done;
    if (claim == CHECKOUT_KEY_MISMATCH)
        metrics_count(METRICS_CHECKOUT_KEY_MISMATCH);
    else if (claim != CHECKOUT_KEY_NEW)
        metrics_count(METRICS_CHECKOUT_REPLAYED);
    else if (out->outcome == SALE_NO_PRODUCT)
        metrics_count(METRICS_CHECKOUT_NOT_FOUND);
    else if (out->outcome == SALE_DUPLICATE)
        metrics_count(METRICS_CHECKOUT_BAD_REQUEST);
    else if (out->outcome == SALE_LIMITED)
        metrics_count(METRICS_CHECKOUT_LIMIT);
    else if (out->outcome == SALE_REFUSED) {
        metrics_count(METRICS_CHECKOUT_REFUSED);
        for (size_t i = 0; i < cart->n; i++)
            sale_ring(self, &work[i].ring);
    } else {
        /* After the commit: what each line's sale triggers, as a one-line sale's. */
        metrics_count(METRICS_CHECKOUT_SOLD);
        for (size_t i = 0; i < cart->n; i++)
            sale_after_sale(self, cart->lines[i].sku, &work[i].m);
    }
done:
    free(work);
    return rc;
}
