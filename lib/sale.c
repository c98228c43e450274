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
#include "hold.h"
#include "ident.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "order.h"
#include "outbox_event.h"
#include "sale.h"
#include "timetext.h"

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

/* The statements that move a hold's units, shared by a thread's sale and the
 * worker's expiry. */
struct sale_moves {
    db *conn;
    db_stmt *move;    /* a product's stock, held and sold_total changed by deltas */
    db_stmt *unlimit; /* a hold's rows of customer_purchase, when it ends unsold */
    hold *holds;
    outbox_event *events; /* a hold's hold_expired event, with its expiry */
};

struct sale_expiry {
    struct sale_moves mv;
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
    db_stmt *product;   /* a product's id, with the database's clock: a batch of holds */
    struct sale_moves mv;
    order *orders;      /* the order at the reorder point, the sell-out, the refusal */
    checkout_key *keys; /* the stored answers of keyed checkouts */
    bus_pub *bell;      /* rings the outbox events after their commit */
    int in_doubt;       /* this request's batch failed with its write in doubt */
    int begun;          /* a batch's transaction begun ahead (sale_batch_ahead) */
    int read_ahead;     /* ... and its holds' product and clock read (ahead_*) */
    unsigned char ahead_id[IDENT_BYTES];
    long long ahead_now_us;
};

/* What a member of a batch asks for: units sold, units held, or a hold's units
 * sold (a confirm). */
enum sale_kind { SALE_KIND_BUY, SALE_KIND_HOLD, SALE_KIND_CONFIRM };

/* One request in a batch of the requests of one sku: what it asks for, and what
 * the batch gave it. */
struct sale_buy {
    combiner_item item;   /* first: the batch's items are sale_buys */
    struct sale_member m; /* its quantity, and what the allocation gave it */
    const char *sku;
    enum sale_kind kind;
    long long client;
    const char *customer; /* a hold's, shown in its row; never of a limited product */
    const char *key;      /* its Idempotency-Key: its answer is stored in the batch */
    unsigned char fingerprint[CHECKOUT_KEY_FINGERPRINT];
    long long ttl;                      /* a hold's seconds */
    unsigned char hold_id[IDENT_BYTES]; /* the hold made (set), or confirmed */
    long long expires_us;               /* the hold's (set) */
    struct sale_answer *out;            /* keyed: its stored answer is written here */
    int answered;                       /* set: out holds the answer, stored with the key */
    int alone;    /* set: left out of the batch; its own transaction decides it */
    int failed;   /* the statement failed: err says why, nothing was sold */
    int in_doubt; /* ... or, its commit's answer lost, maybe sold (db_in_doubt) */
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
 * counts the units sold, held the units taken into holds (a batch may hold some,
 * sell others and confirm holds: the deltas are the caller's). */
/* (Unformatted: clang-format would break the text inside the ORDER_SQL calls.) */
/* clang-format off */
static const char sale_take_sql[] =
    "UPDATE product SET sold_total = sold_total + ?, held = held + ?,"
    " stock = LAST_INSERT_ID((stock - ?) * " ORDER_SQL(SALE_SCALE)
    " + reorder_point + " ORDER_SQL(SALE_BIAS) ") DIV " ORDER_SQL(SALE_SCALE)
    " WHERE sku = ? AND stock >= ?";
/* clang-format on */

/* -- a thread's sale ------------------------------------------------------------- */

/* The moves' statements on conn. RS_ERR when out of memory. */
static int
sale_moves_init(struct sale_moves *mv, db *conn, errbuf *err)
{
    mv->conn = conn;
    mv->move = db_stmt_new(conn,
                           "UPDATE product SET stock = stock + ?, held = held + ?,"
                           " sold_total = sold_total + ? WHERE product_id = ?",
                           0);
    mv->unlimit = db_stmt_new(conn, "DELETE FROM customer_purchase WHERE hold_id = ?", 0);
    if (mv->move == NULL || mv->unlimit == NULL)
        return errbuf_set(err, "out of memory");
    mv->holds = hold_new(conn, err);
    if (mv->holds == NULL)
        return RS_ERR;
    mv->events = outbox_event_new(conn, err);
    return mv->events != NULL ? RS_OK : RS_ERR;
}

static void
sale_moves_clear(struct sale_moves *mv)
{
    hold_destroy(&mv->holds);
    outbox_event_destroy(&mv->events);
}

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
                               " (client_id, customer, product_id, units, hold_id, created_at)"
                               " VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6))",
                               0);
    self->product = db_stmt_new(
        conn, "SELECT product_id, " HOLD_SQL_US("UTC_TIMESTAMP(6)") " FROM product WHERE sku = ?",
        0);
    if (self->take == NULL || self->lock == NULL || self->cart_lock == NULL || self->peek == NULL ||
        self->bought == NULL || self->prune == NULL || self->record == NULL ||
        self->product == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    if (sale_moves_init(&self->mv, conn, err) != RS_OK)
        goto fail;
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
    sale_moves_clear(&self->mv);
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

/* A line of a hold's answer. */
struct sale_hold_view {
    const char *sku;
    long long quantity;
    long long remaining; /* shown when the answer makes the hold */
};

/* A hold's answer, 201 made (with each line's remaining), or as its status is
 * (status_code 200 or 409, with a message saying why not), into out. RS_ERR
 * when out of memory. */
static int
sale_hold_answer(const unsigned char id[IDENT_BYTES], enum hold_status status, long long expires_us,
                 const struct sale_hold_view *lines, size_t n, int made, int status_code,
                 struct sale_answer *out, errbuf *err)
{
    char text[IDENT_TEXT], when[TIMETEXT_SIZE];
    cJSON *json = cJSON_CreateObject(), *arr = NULL;
    int ok = json != NULL;

    ident_format(id, IDENT_BYTES, text);
    timetext_utc_ms(expires_us, when, sizeof(when));
    ok = ok && cJSON_AddStringToObject(json, "hold", text) != NULL;
    ok = ok && cJSON_AddStringToObject(json, "status", hold_status_name(status)) != NULL;
    ok = ok && cJSON_AddStringToObject(json, "expires_at", when) != NULL;
    ok = ok && (arr = cJSON_AddArrayToObject(json, "lines")) != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *line = cJSON_CreateObject();

        if (line == NULL || !cJSON_AddItemToArray(arr, line)) {
            cJSON_Delete(line);
            ok = 0;
            break;
        }
        ok = cJSON_AddStringToObject(line, "sku", lines[i].sku) != NULL &&
             cJSON_AddNumberToObject(line, "quantity", (double)lines[i].quantity) != NULL &&
             (!made ||
              cJSON_AddNumberToObject(line, "remaining", (double)lines[i].remaining) != NULL);
    }
    if (ok && status_code == 409) {
        char message[96];

        snprintf(message, sizeof(message), "the hold is %s", hold_status_name(status));
        ok = cJSON_AddStringToObject(json, "message", message) != NULL;
    }
    if (!ok)
        cJSON_Delete(json), json = NULL;
    out->outcome = made ? SALE_HELD : SALE_HOLD_STATUS;
    out->status = made ? 201 : status_code;
    return sale_answer_text(json, out, err);
}

/* The 201 of a hold of one line. */
static int
sale_hold_created_answer(const char *sku, long long quantity, long long remaining,
                         const unsigned char id[IDENT_BYTES], long long expires_us,
                         struct sale_answer *out, errbuf *err)
{
    struct sale_hold_view line = {sku, quantity, remaining};

    return sale_hold_answer(id, HOLD_HELD, expires_us, &line, 1, 1, 0, out, err);
}

/* -- the combined checkout ---------------------------------------------------------- */

/* The one statement that takes stock: take units of sku, if that many are left,
 * sold_add units counted sold and held_add held (a batch's deltas). Rows changed,
 * or RS_ERR; when 1, *left is the stock it left and *point the product's reorder
 * point, read in the same round trip. */
static long long
sale_take(sale *self, const char *sku, long long take, long long sold_add, long long held_add,
          long long *left, long long *point, errbuf *err)
{
    long long rows = db_stmt_exec(self->take, err, "iiisi", sold_add, held_add, take, sku, take);

    if (rows == 1) {
        unsigned long long id = db_stmt_insert_id(self->take);
        *left = (long long)(id / SALE_SCALE);
        *point = (long long)(id % SALE_SCALE) - SALE_BIAS;
    }
    return rows;
}

/* Every member of the batch (or every one still in it: !alone_too) failed with
 * err; in doubt when the database may have made the batch's write all the same. */
static void
sale_batch_fail(sale *self, combiner_item *batch, const errbuf *err, int alone_too)
{
    int doubt = db_in_doubt(self->conn);

    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct sale_buy *b = (struct sale_buy *)it;
        if (!alone_too && b->alone)
            continue;
        b->failed = 1;
        b->in_doubt = doubt;
        b->err = *err;
    }
}

/* Members in the batch. */
static size_t
sale_batch_size(combiner_item *batch)
{
    size_t n = 0;

    for (combiner_item *it = batch; it != NULL; it = it->next)
        n++;
    return n;
}

/* The units of the batch's members that take stock, by kind, counting only those
 * sold (sold_only) or all. */
struct sale_units {
    long long buy, hold, confirm;
};

static struct sale_units
sale_batch_units(combiner_item *batch, int sold_only)
{
    struct sale_units u = {0, 0, 0};

    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct sale_buy *b = (struct sale_buy *)it;

        if (b->alone || (sold_only && !b->m.sold))
            continue;
        if (b->kind == SALE_KIND_BUY)
            u.buy += b->m.quantity;
        else if (b->kind == SALE_KIND_HOLD)
            u.hold += b->m.quantity;
        else
            u.confirm += b->m.quantity;
    }
    return u;
}

/* Links the members that take stock (buys and holds, not left alone) for
 * sale_allocate, in arrival order; the first of them, or NULL. */
static struct sale_member *
sale_batch_takers(combiner_item *batch)
{
    struct sale_member *first = NULL, **tail = &first;

    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct sale_buy *b = (struct sale_buy *)it;

        if (b->alone || b->kind == SALE_KIND_CONFIRM)
            continue;
        b->m.sold = 0;
        *tail = &b->m;
        tail = &b->m.next;
    }
    *tail = NULL;
    return first;
}

/* Under the row's lock (the batch's transaction is open): the sell-out boundary,
 * rare. sale_allocate gives the stock to the takers in arrival order; then one
 * UPDATE takes what was given and does the confirms. 0: done; 1: no such
 * product (nobody sold); RS_ERR. */
static int
sale_batch_allocate_locked(sale *self, combiner_item *batch, const char *sku, errbuf *err)
{
    struct sale_member *takers = sale_batch_takers(batch);
    struct sale_units u;
    long long rows = db_stmt_exec(self->lock, err, "s", sku), left, point;

    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(self->lock)) {
        sale_allocate(takers, 0, 0);
        return 1;
    }
    sale_allocate(takers, db_stmt_col_int(self->lock, 0), db_stmt_col_int(self->lock, 1));
    u = sale_batch_units(batch, 1);
    if (u.buy + u.hold + u.confirm == 0)
        return 0;
    rows = sale_take(self, sku, u.buy + u.hold, u.buy + u.confirm, u.hold - u.confirm, &left,
                     &point, err);
    if (rows < 0)
        return RS_ERR;
    if (rows != 1) /* not the sku: it is the client's text, and this goes to the log */
        return errbuf_set(err, "a product's stock changed under its row lock");
    return 0;
}

/* The batch of plain checkouts whose total did not fit: under the row lock in a
 * transaction of its own. Any failure rolls back: nothing sold. */
static int
sale_batch_allocate_tx(sale *self, combiner_item *batch, errbuf *err)
{
    if (db_begin(self->conn, err) != RS_OK ||
        sale_batch_allocate_locked(self, batch, ((struct sale_buy *)batch)->sku, err) < 0 ||
        db_commit(self->conn, err) != RS_OK) {
        db_rollback(self->conn);
        return RS_ERR;
    }
    return RS_OK;
}

/* A transaction of the batch, run again while the database rolled it back (a
 * deadlock, a Galera certification failure of a two-writer hot row): nothing was
 * sold, so that a conflict is never answered 503. Another failure: every member
 * still in the batch 503. tx answers RS_OK, RS_ERR, or SALE_BATCH_AGAIN: it left
 * members alone and rolled back, to be run without them. */
#define SALE_BATCH_AGAIN 1
static void
sale_batch_retry(sale *self, combiner_item *batch, int (*tx)(sale *, combiner_item *, errbuf *))
{
    errbuf err = {{0}};
    int rc, attempts = 0;

    for (;;) {
        rc = tx(self, batch, &err);
        if (rc == RS_OK)
            return;
        if (rc == SALE_BATCH_AGAIN)
            continue; /* fewer members each time: it ends */
        if (!db_retry(self->conn, &attempts))
            break;
    }
    sale_batch_fail(self, batch, &err, 0);
}

/* The keyed members the batch sold: their answers made, and their keys' rows
 * written with them (checkout_key_insert_batch, one round trip). The keyed
 * members it did not sell are left alone: their own transaction decides their
 * refusal and stores it. RS_ERR: a duplicate key (db_duplicate) or another
 * failure. */
static int
sale_batch_keys(sale *self, combiner_item *batch, errbuf *err)
{
    struct checkout_key_entry *entries = calloc(sale_batch_size(batch), sizeof(*entries));
    size_t n = 0;
    int rc;

    if (entries == NULL)
        return errbuf_set(err, "out of memory");
    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct sale_buy *b = (struct sale_buy *)it;
        struct checkout_key_entry *e = &entries[n];

        if (b->key == NULL || b->alone)
            continue;
        if (!b->m.sold) {
            b->alone = 1;
            continue;
        }
        if (b->kind == SALE_KIND_HOLD)
            rc = sale_hold_created_answer(b->sku, b->m.quantity, b->m.remaining, b->hold_id,
                                          b->expires_us, b->out, err);
        else
            rc = sale_answer_make(b, 0, NULL, b->out, err);
        if (rc != RS_OK) {
            free(entries);
            return RS_ERR;
        }
        e->client = b->client, e->key = b->key, e->status = b->out->status;
        memcpy(e->fingerprint, b->fingerprint, sizeof(e->fingerprint));
        e->body = b->out->body, e->len = b->out->len;
        n++;
    }
    rc = n > 0 ? checkout_key_insert_batch(self->keys, entries, n, err) : RS_OK;
    free(entries);
    return rc;
}

/* The holds the batch made: their ids and times, and their rows written. */
static int
sale_batch_holds(hold *holds, combiner_item *batch, const unsigned char *product_id,
                 long long now_us, errbuf *err)
{
    size_t size = sale_batch_size(batch), n = 0;
    int rc;
    struct hold_draft *drafts = calloc(size, sizeof(*drafts));
    struct hold_item *items = calloc(size, sizeof(*items));

    if (drafts == NULL || items == NULL) {
        free(drafts), free(items);
        return errbuf_set(err, "out of memory");
    }
    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct sale_buy *b = (struct sale_buy *)it;

        if (b->alone || b->kind != SALE_KIND_HOLD || !b->m.sold)
            continue;
        ident_new_ordered(b->hold_id);
        b->expires_us = (now_us + b->ttl * 1000000) / 1000 * 1000; /* shown in ms */
        items[n].product_id = product_id;
        items[n].quantity = b->m.quantity;
        memcpy(drafts[n].id, b->hold_id, IDENT_BYTES);
        drafts[n].client = b->client;
        drafts[n].customer = b->customer;
        drafts[n].created_us = now_us;
        drafts[n].expires_us = b->expires_us;
        drafts[n].n = 1;
        drafts[n].items = &items[n];
        n++;
    }
    rc = n > 0 ? hold_insert(holds, drafts, n, err) : RS_OK;
    free(drafts), free(items);
    return rc;
}

/* The confirms of the batch: the text that ends their holds confirmed, if each is
 * still held and not due (hold_end_text), appended to t. How many, or RS_ERR. */
static long long
sale_batch_confirms_text(combiner_item *batch, db_text *t, errbuf *err)
{
    unsigned char(*ids)[IDENT_BYTES] = calloc(sale_batch_size(batch), sizeof(*ids));
    size_t n = 0;

    if (ids == NULL)
        return errbuf_set(err, "out of memory");
    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct sale_buy *b = (struct sale_buy *)it;

        if (!b->alone && b->kind == SALE_KIND_CONFIRM)
            memcpy(ids[n++], b->hold_id, IDENT_BYTES);
    }
    if (n > 0)
        hold_end_text(t, (const unsigned char(*)[IDENT_BYTES])ids, n, HOLD_CONFIRMED, 1);
    free(ids);
    return (long long)n;
}

/* Leaves alone every member of kind (SALE_KIND_CONFIRM), or every keyed one
 * (kind -1): the batch runs again without them. */
static void
sale_batch_leave(combiner_item *batch, int kind)
{
    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct sale_buy *b = (struct sale_buy *)it;

        if (kind < 0 ? b->key != NULL : (int)b->kind == kind)
            b->alone = 1;
    }
}

/* The product of sku's id, and the database's clock (a batch of holds writes
 * both in their rows): 1, 0 when there is no such product, RS_ERR. */
static int
sale_product_read(sale *self, const char *sku, unsigned char id[IDENT_BYTES], long long *now_us,
                  errbuf *err)
{
    size_t len;
    const char *col;
    long long found = db_stmt_exec(self->product, err, "s", sku);

    if (found < 0)
        return RS_ERR;
    if (found == 0 || !db_stmt_next(self->product) ||
        (col = db_stmt_col(self->product, 0, &len)) == NULL || len != IDENT_BYTES)
        return 0;
    memcpy(id, col, IDENT_BYTES);
    *now_us = db_stmt_col_int(self->product, 1);
    return 1;
}

/* The transaction of a batch with more than plain checkouts (holds, confirms,
 * keys), one statement per round trip: it begins; ends the confirmed holds
 * (their rows, then the product's: the lock order of every transaction on
 * holds); runs the batch's one UPDATE of the product; with holds to write, reads
 * the product's id and the database's clock, and writes the holds' rows (two
 * statements whatever their number); writes the keys' rows with their answers
 * (one statement); commits. A confirm whose hold was no longer held, or a key
 * that was there already (1062), rolls it back: the batch runs again without
 * those members (SALE_BATCH_AGAIN), which then run alone.
 *
 * Never several of these statements in one multi-statement packet: on Galera a
 * transaction aborted by a conflict while a packet runs is rolled back, and the
 * packet's later statements ran in autocommit, outside it (the cluster bed's
 * two writers: keys stored with a 200 whose sale was rolled back, 12 of 1,000).
 * Each statement alone is told of the abort (1213). */
static int
sale_batch_records_tx(sale *self, combiner_item *batch, errbuf *err)
{
    struct sale_buy *first = (struct sale_buy *)batch;
    unsigned char product_id[IDENT_BYTES];
    struct sale_units u = sale_batch_units(batch, 0);
    struct sale_member *takers = sale_batch_takers(batch);
    db_text t = {0};
    long long confirms, rows, left = 0, point = 0, now_us = 0;
    int rc = RS_ERR, no_product = 0, begun = self->begun, read_ahead = self->read_ahead;

    self->begun = self->read_ahead = 0; /* the first attempt's only */
    for (combiner_item *it = batch; it != NULL; it = it->next)
        ((struct sale_buy *)it)->answered = 0;
    if (takers == NULL && u.confirm == 0) {
        if (begun)
            db_rollback(self->conn);
        return RS_OK; /* every member left alone */
    }
    if ((confirms = sale_batch_confirms_text(batch, &t, err)) < 0)
        goto fail; /* the transaction begun ahead, if any, rolled back */
    if (!begun && db_begin(self->conn, err) != RS_OK)
        goto fail;
    if (confirms > 0) {
        rows = db_text_run(self->conn, &t, err);
        if (rows < 0)
            goto fail;
        if (rows != confirms) {
            db_rollback(self->conn);
            sale_batch_leave(batch, SALE_KIND_CONFIRM);
            rc = SALE_BATCH_AGAIN;
            goto out;
        }
    }
    for (combiner_item *it = batch; it != NULL; it = it->next)
        if (((struct sale_buy *)it)->kind == SALE_KIND_CONFIRM)
            ((struct sale_buy *)it)->m.sold = !((struct sale_buy *)it)->alone;
    rows = sale_take(self, first->sku, u.buy + u.hold, u.buy + u.confirm, u.hold - u.confirm, &left,
                     &point, err);
    if (rows < 0)
        goto fail;
    if (u.hold > 0 && read_ahead) {
        memcpy(product_id, self->ahead_id, IDENT_BYTES);
        now_us = self->ahead_now_us;
    } else if (u.hold > 0) {
        int found = sale_product_read(self, first->sku, product_id, &now_us, err);

        if (found < 0)
            goto fail;
        no_product = !found;
    }
    if (!no_product && rows == 1)
        sale_allocate(takers, left + u.buy + u.hold, point);
    else if (!no_product &&
             (no_product = sale_batch_allocate_locked(self, batch, first->sku, err)) < 0)
        goto fail;
    if (no_product) {
        db_rollback(self->conn); /* no such product: nobody sold, nothing held */
        sale_allocate(takers, 0, 0);
        sale_batch_leave(batch, SALE_KIND_CONFIRM);
        rc = RS_OK;
        goto out;
    }
    if (sale_batch_holds(self->mv.holds, batch, product_id, now_us, err) != RS_OK)
        goto fail;
    if (sale_batch_keys(self, batch, err) != RS_OK) {
        if (db_duplicate(self->conn)) {
            /* A key was there already: its request runs alone, and replays. */
            db_rollback(self->conn);
            sale_batch_leave(batch, -1);
            rc = SALE_BATCH_AGAIN;
            goto out;
        }
        goto fail;
    }
    if (db_commit(self->conn, err) != RS_OK)
        goto fail;
    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct sale_buy *b = (struct sale_buy *)it;
        b->answered = b->key != NULL && !b->alone;
    }
    rc = RS_OK;
    goto out;

fail:
    db_rollback(self->conn);
    rc = RS_ERR;
out:
    db_text_free(&t);
    return rc;
}

/* One statement for the whole batch, run by its leader on its own connection.
 * The common case, plain checkouts whose quantities fit: one UPDATE in autocommit
 * takes the total, and hands back the stock it left and the reorder point; the
 * allocation of the stock there was before it then tells each member its
 * remaining and which one crossed the point, as under the row lock. A batch with
 * holds, confirms or keys runs in a transaction (sale_batch_records_tx). */
static void
sale_batch_run(void *ctx, combiner_item *batch, size_t n)
{
    sale *self = ctx;
    struct sale_buy *first = (struct sale_buy *)batch;
    struct sale_member *takers = sale_batch_takers(batch);
    long long total = 0, rows, left = 0, point = 0;
    errbuf err = {{0}};

    (void)n;
    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct sale_buy *b = (struct sale_buy *)it;

        if (b->kind != SALE_KIND_BUY || b->key != NULL) {
            sale_batch_retry(self, batch, sale_batch_records_tx);
            return;
        }
        total += b->m.quantity;
    }
    rows = sale_take(self, first->sku, total, total, 0, &left, &point, &err);
    if (rows < 0) {
        sale_batch_fail(self, batch, &err, 1);
        return;
    }
    if (rows == 0) {
        /* Alone, the one checkout did not fit: sold out, without a transaction. */
        if (batch->next == NULL)
            first->m.sold = 0;
        else
            sale_batch_retry(self, batch, sale_batch_allocate_tx);
        return;
    }
    sale_allocate(takers, left + total, point);
}

/* The next leader of its sku's batch, waiting for the batch in flight: a member
 * that is not a plain checkout makes its batch a transaction, so it begins it
 * now, and its round trip (as long as the batch's others, on a busy machine) is
 * not in the batch's own time; a hold reads its product's id and the database's
 * clock before that, outside the transaction (the id never changes; the holds'
 * created_at is then the database's time at most the batch in flight's time
 * before their commit). Nothing is read or locked in the transaction until the
 * batch runs (sale_batch_records_tx takes what was done here, on its first
 * attempt). A failure here leaves it to the batch. */
static void
sale_batch_ahead(void *ctx, combiner_item *item)
{
    sale *self = ctx;
    struct sale_buy *b = (struct sale_buy *)item;
    errbuf ignored = {{0}};

    if (b->kind == SALE_KIND_HOLD)
        self->read_ahead =
            sale_product_read(self, b->sku, self->ahead_id, &self->ahead_now_us, &ignored) == 1;
    if (b->kind != SALE_KIND_BUY || b->key != NULL)
        self->begun = db_begin(self->conn, &ignored) == RS_OK;
}

/* Submits buy to its sku's batch, and waits for it to run. After it: failed (err,
 * RS_ERR), alone, answered, or sold or not. */
static int
sale_batch_submit(sale *self, struct sale_buy *buy, errbuf *err)
{
    log_debug("event=checkout_submitted quantity=%lld", buy->m.quantity); /* tests wait for it */
    combiner_submit_ahead(self->shop->checkouts, &buy->item, buy->sku, sale_batch_run,
                          sale_batch_ahead, self);
    /* The batch's links to the other members (on their threads' stacks) end with
     * it: a member left alone allocates itself alone. */
    buy->m.next = NULL;
    if (buy->failed) {
        *err = buy->err;
        self->in_doubt |= buy->in_doubt;
        return RS_ERR;
    }
    return RS_OK;
}

static int sale_checkout_keyed(sale *self, const struct sale_request *req, struct sale_buy *buy,
                               struct sale_answer *out, errbuf *err);

/* A checkout in its sku's batch: unkeyed, or keyed (its answer stored in the
 * batch; refused, or its key there already: its own transaction decides). Not
 * sold: the refusal's decision, order_refused (order.h). */
static int
sale_checkout_combined(sale *self, const struct sale_request *req, struct sale_buy *buy,
                       struct sale_answer *out, errbuf *err)
{
    struct order_open_outcome ring;
    int state = 0;

    memset(&ring, 0, sizeof(ring));
    buy->client = req->client;
    buy->key = req->key;
    buy->out = out;
    if (req->key != NULL)
        checkout_key_fingerprint(req->client, req->sku, req->quantity, buy->fingerprint);
    if (sale_batch_submit(self, buy, err) != RS_OK)
        return RS_ERR;
    if (buy->alone)
        return sale_checkout_keyed(self, req, buy, out, err);
    if (buy->answered) {
        sale_done(self, buy, 0, &ring);
        return RS_OK;
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

/* A limited product's units sold or held (hold_id; NULL: sold) to the customer,
 * in the sale's transaction; nothing for a product without a limit. */
static int
sale_limit_record(sale *self, long long client, const char *customer, const struct sale_limit *lim,
                  long long units, const unsigned char *hold_id, errbuf *err)
{
    if (lim->max <= 0)
        return RS_OK;
    if (db_stmt_exec(self->record, err, "isbib", client, customer, lim->product_id,
                     (size_t)IDENT_BYTES, units, hold_id, (size_t)IDENT_BYTES) < 0)
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

/* In the caller's open transaction: claims key (checkout_key_claim). Another
 * request's key, or one answered before: the transaction is rolled back (it
 * wrote nothing) and out is the replay, or the mismatch (422, no body). The
 * claim's result, or RS_ERR. */
static int
sale_key_claim(sale *self, long long client, const char *key,
               const unsigned char fingerprint[CHECKOUT_KEY_FINGERPRINT], struct sale_answer *out,
               errbuf *err)
{
    struct checkout_key_answer *stored = malloc(sizeof(*stored));
    int claim;

    if (stored == NULL)
        return errbuf_set(err, "out of memory");
    claim = checkout_key_claim(self->keys, client, key, fingerprint, self->shop->key_retention,
                               stored, err);
    if (claim > CHECKOUT_KEY_NEW) {
        db_rollback(self->conn);
        out->outcome = claim == CHECKOUT_KEY_REPLAY ? SALE_REPLAYED : SALE_KEY_MISMATCH;
        out->status = claim == CHECKOUT_KEY_REPLAY ? stored->status : 422;
        out->len = claim == CHECKOUT_KEY_REPLAY ? stored->len : 0;
        memcpy(out->body, stored->body, out->len);
    }
    free(stored);
    return claim;
}

/* Counts a claim that answered for the request (a replay, a mismatch): 1 when it
 * did, and nothing else of the request is to be counted; 0 for a new key. */
static int
sale_key_counted(int claim)
{
    if (claim == CHECKOUT_KEY_MISMATCH)
        metrics_count(METRICS_CHECKOUT_KEY_MISMATCH);
    else if (claim != CHECKOUT_KEY_NEW)
        metrics_count(METRICS_CHECKOUT_REPLAYED);
    return claim != CHECKOUT_KEY_NEW;
}

/* The end of a transaction that may store an answer: with a key, out stored on
 * its row (claimed by sale_key_claim); then the commit. RS_ERR: the caller rolls
 * back. */
static int
sale_key_commit(sale *self, long long client, const char *key, const struct sale_answer *out,
                errbuf *err)
{
    if (key != NULL &&
        checkout_key_store(self->keys, client, key, out->status, out->body, out->len, err) != RS_OK)
        return RS_ERR;
    return db_commit(self->conn, err);
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
    if (req->key != NULL &&
        (*claim = sale_key_claim(self, req->client, req->key, fingerprint, out, err)) < 0)
        goto fail;
    if (*claim != CHECKOUT_KEY_NEW)
        return RS_OK;
    /* A customer: the product's row locked first, its limit checked under it. */
    if (req->customer != NULL && (limited = sale_limit_lock(self, req, &lim, err)) < 0)
        goto fail;
    if (limited) {
        if (sale_limit_answer(req->sku, &lim, out, err) != RS_OK)
            goto fail;
    } else {
        rows = sale_take(self, req->sku, req->quantity, req->quantity, 0, &left, &point, err);
        if (rows < 0)
            goto fail;
        if (rows == 1) {
            sale_allocate(&buy->m, left + req->quantity, point);
            if (req->customer != NULL && sale_limit_record(self, req->client, req->customer, &lim,
                                                           req->quantity, NULL, err) != RS_OK)
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
    if (sale_key_commit(self, req->client, req->key, out, err) != RS_OK)
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
    if (sale_key_counted(claim)) {
        /* answered by its key: nothing was sold or held */
    } else if (out->outcome == SALE_LIMITED)
        metrics_count(METRICS_CHECKOUT_LIMIT);
    else
        sale_done(self, buy, state, &ring);
    return RS_OK;
}

/* A public entry begins unsettled, and its result is settled: a failure whose
 * write the database may have made (the batch's, or this thread's own commit or
 * statement: db_in_doubt) is SALE_IN_DOUBT, never the RS_ERR that promises
 * nothing was done. */
static void
sale_unsettled(sale *self)
{
    self->in_doubt = 0;
    (void)db_in_doubt(self->conn); /* an earlier request's, whatever it was */
}

static int
sale_settled(sale *self, int rc)
{
    int doubt = db_in_doubt(self->conn) | self->in_doubt;

    self->in_doubt = 0;
    return rc < 0 && doubt ? SALE_IN_DOUBT : rc;
}

static int
sale_checkout_run(sale *self, const struct sale_request *req, struct sale_answer *out, errbuf *err)
{
    struct sale_buy buy;

    memset(&buy, 0, sizeof(buy));
    buy.sku = req->sku;
    buy.m.quantity = req->quantity;
    out->len = 0;
    if (req->customer != NULL) {
        /* A customer's checkout of a product without a limit is any checkout. */
        int limited = sale_limit_peek(self, req->sku, err);

        if (limited < 0)
            return RS_ERR;
        if (!limited)
            return sale_checkout_combined(self, req, &buy, out, err);
    } else
        return sale_checkout_combined(self, req, &buy, out, err);
    log_debug("event=checkout_keyed client=%lld quantity=%lld keyed=%d customer=%d", req->client,
              req->quantity, req->key != NULL, req->customer != NULL);
    return sale_checkout_keyed(self, req, &buy, out, err);
}

int
sale_checkout(sale *self, const struct sale_request *req, struct sale_answer *out, errbuf *err)
{
    sale_unsettled(self);
    return sale_settled(self, sale_checkout_run(self, req, out, err));
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
    cart->ttl = 0; /* a checkout; sale_hold_parse sets a hold's */
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

/* A hold of the cart's lines, taken (sale_cart_take): its rows, and its 201
 * into out. */
static int
sale_cart_hold(sale *self, const struct sale_cart *cart, const struct sale_cart_line *work,
               const unsigned char id[IDENT_BYTES], long long now_us, struct sale_answer *out,
               errbuf *err)
{
    struct hold_item items[SALE_LINES_MAX];
    struct sale_hold_view views[SALE_LINES_MAX];
    struct hold_draft draft = {.client = cart->client,
                               .customer = cart->customer,
                               .created_us = now_us,
                               .expires_us = (now_us + cart->ttl * 1000000) / 1000 * 1000,
                               .n = cart->n,
                               .items = items};

    memcpy(draft.id, id, IDENT_BYTES);
    for (size_t i = 0; i < cart->n; i++) {
        items[i].product_id = work[i].row.product_id;
        items[i].quantity = work[i].m.quantity;
        views[i].sku = cart->lines[i].sku;
        views[i].quantity = work[i].m.quantity;
        views[i].remaining = work[i].m.remaining;
    }
    if (hold_insert(self->mv.holds, &draft, 1, err) != RS_OK)
        return RS_ERR;
    return sale_hold_answer(id, HOLD_HELD, draft.expires_us, views, cart->n, 1, 0, out, err);
}

/* Every line fits: each takes its quantity with the one-line sale's statement, in
 * lock order (into held, for a hold), and is told what it left and whether it
 * crossed the point. A hold's rows and answer are made here too. */
static int
sale_cart_take(sale *self, const struct sale_cart *cart, struct sale_cart_line *work,
               long long now_us, struct sale_answer *out, errbuf *err)
{
    unsigned char id[IDENT_BYTES];
    int holding = cart->ttl > 0;

    if (holding)
        ident_new_ordered(id);
    for (size_t k = 0; k < cart->n; k++) {
        size_t i = cart->order[k];
        struct sale_cart_line *w = &work[i];
        long long left, point, rows, q = w->m.quantity;

        sale_allocate(&w->m, w->row.stock, w->row.point);
        rows = sale_take(self, cart->lines[i].sku, q, holding ? 0 : q, holding ? q : 0, &left,
                         &point, err);
        if (rows < 0)
            return RS_ERR;
        if (rows != 1 || left != w->m.remaining)
            return errbuf_set(err, "a product's stock changed under its row lock");
        if (cart->customer != NULL && sale_limit_record(self, cart->client, cart->customer, &w->row,
                                                        q, holding ? id : NULL, err) != RS_OK)
            return RS_ERR;
    }
    return holding ? sale_cart_hold(self, cart, work, id, now_us, out, err) : RS_OK;
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
    long long now_us = 0;
    int found, refused = 0, limited = 0;

    *claim = CHECKOUT_KEY_NEW;
    for (size_t i = 0; i < cart->n; i++) {
        memset(&work[i], 0, sizeof(work[i]));
        work[i].m.quantity = cart->lines[i].quantity;
    }
    if (db_begin(self->conn, err) != RS_OK)
        goto fail;
    if (cart->key != NULL) {
        char what[64];

        if (cart->ttl > 0)
            snprintf(what, sizeof(what), "POST /holds ttl=%lld", cart->ttl);
        else
            what[0] = '\0';
        checkout_key_cart_fingerprint(cart->client, what, cart->lines, cart->order, cart->n,
                                      fingerprint);
        if ((*claim = sale_key_claim(self, cart->client, cart->key, fingerprint, out, err)) < 0)
            goto fail;
        if (*claim != CHECKOUT_KEY_NEW)
            return RS_OK;
    }
    if (cart->ttl > 0 && hold_now(self->mv.holds, &now_us, err) != RS_OK)
        goto fail;
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
    if (!refused && !limited && sale_cart_take(self, cart, work, now_us, out, err) != RS_OK)
        goto fail;
    /* A short line is a checkout turned away: the refusal's decision (the
     * unmet demand of a sold-out product, its order), inside this transaction. */
    for (size_t i = 0; refused && i < cart->n; i++)
        if (work[i].is_short && order_refused(self->orders, cart->lines[i].sku, work[i].m.quantity,
                                              &work[i].ring, err) < 0)
            goto fail;
    if ((cart->ttl == 0 || refused || limited) &&
        sale_cart_answer(cart, work, !refused && !limited, limited, out, err) != RS_OK)
        goto fail;
    if (sale_key_commit(self, cart->client, cart->key, out, err) != RS_OK)
        goto fail;
    return RS_OK;

fail:
    db_rollback(self->conn);
    return RS_ERR;
}

static int
sale_cart_checkout_run(sale *self, const struct sale_cart *cart, struct sale_answer *out,
                       errbuf *err)
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
    if (sale_key_counted(claim)) {
        /* answered by its key: nothing was sold or held */
    } else if (out->outcome == SALE_NO_PRODUCT)
        metrics_count(METRICS_CHECKOUT_NOT_FOUND);
    else if (out->outcome == SALE_DUPLICATE)
        metrics_count(METRICS_CHECKOUT_BAD_REQUEST);
    else if (out->outcome == SALE_LIMITED)
        metrics_count(cart->ttl > 0 ? METRICS_HOLD_REFUSED : METRICS_CHECKOUT_LIMIT);
    else if (out->outcome == SALE_REFUSED) {
        metrics_count(cart->ttl > 0 ? METRICS_HOLD_REFUSED : METRICS_CHECKOUT_REFUSED);
        for (size_t i = 0; i < cart->n; i++)
            sale_ring(self, &work[i].ring);
    } else {
        /* After the commit: what each line's sale (or hold) triggers, as a
         * one-line sale's. */
        metrics_count(cart->ttl > 0 ? METRICS_HOLD_CREATED : METRICS_CHECKOUT_SOLD);
        for (size_t i = 0; i < cart->n; i++)
            sale_after_sale(self, cart->lines[i].sku, &work[i].m);
    }
done:
    free(work);
    return rc;
}

int
sale_cart_checkout(sale *self, const struct sale_cart *cart, struct sale_answer *out, errbuf *err)
{
    sale_unsettled(self);
    return sale_settled(self, sale_cart_checkout_run(self, cart, out, err));
}

/* -- holds -------------------------------------------------------------------------- */

int
sale_hold_parse(const cJSON *body, long long default_ttl, struct sale_cart *cart, errbuf *err)
{
    if (sale_cart_parse(body, cart, err) != RS_OK)
        return RS_ERR;
    cart->ttl = 0;
    if (json_opt_int(body, "ttl", HOLD_TTL_MIN, HOLD_TTL_MAX, 0, &cart->ttl, err) != RS_OK)
        return RS_ERR;
    if (cart->ttl == 0)
        cart->ttl = default_ttl;
    return RS_OK;
}

/* A hold of one line, in its sku's batch (sale_hold). Left alone (a key there
 * already, or refused with a key): a cart's transaction decides it. */
static int
sale_hold_combined(sale *self, const struct sale_cart *cart, struct sale_answer *out, errbuf *err)
{
    struct sale_buy buy;
    struct sale_cart_line line;
    int state;

    memset(&buy, 0, sizeof(buy));
    buy.sku = cart->lines[0].sku;
    buy.kind = SALE_KIND_HOLD;
    buy.m.quantity = cart->lines[0].quantity;
    buy.client = cart->client;
    buy.customer = cart->customer;
    buy.key = cart->key;
    buy.ttl = cart->ttl;
    buy.out = out;
    if (cart->key != NULL) {
        char what[64];

        snprintf(what, sizeof(what), "POST /holds ttl=%lld", cart->ttl);
        checkout_key_cart_fingerprint(cart->client, what, cart->lines, cart->order, cart->n,
                                      buy.fingerprint);
    }
    if (sale_batch_submit(self, &buy, err) != RS_OK)
        return RS_ERR;
    if (buy.alone)
        return sale_cart_checkout(self, cart, out, err);
    if (buy.m.sold) {
        metrics_count(METRICS_HOLD_CREATED);
        sale_after_sale(self, buy.sku, &buy.m);
        if (!buy.answered &&
            sale_hold_created_answer(buy.sku, buy.m.quantity, buy.m.remaining, buy.hold_id,
                                     buy.expires_us, out, err) != RS_OK)
            sale_answer_oom(out);
        return RS_OK;
    }
    memset(&line, 0, sizeof(line));
    state = order_refused(self->orders, buy.sku, buy.m.quantity, &line.ring, err);
    if (state < 0)
        return RS_ERR;
    if (state == ORDER_NO_PRODUCT) {
        metrics_count(METRICS_CHECKOUT_NOT_FOUND);
        sale_cart_static(out, SALE_NO_PRODUCT);
        return RS_OK;
    }
    metrics_count(METRICS_HOLD_REFUSED);
    sale_ring(self, &line.ring);
    line.m.quantity = buy.m.quantity;
    line.row.stock = line.ring.remaining;
    line.is_short = 1;
    if (sale_cart_answer(cart, &line, 0, 0, out, err) != RS_OK)
        sale_answer_oom(out);
    return RS_OK;
}

static int
sale_hold_run(sale *self, const struct sale_cart *cart, struct sale_answer *out, errbuf *err)
{
    out->len = 0;
    log_debug("event=hold_submitted client=%lld lines=%zu keyed=%d", cart->client, cart->n,
              cart->key != NULL);
    if (cart->n == 1) {
        int limited = cart->customer != NULL ? sale_limit_peek(self, cart->lines[0].sku, err) : 0;

        if (limited < 0)
            return RS_ERR;
        if (!limited)
            return sale_hold_combined(self, cart, out, err);
    }
    return sale_cart_checkout(self, cart, out, err);
}

int
sale_hold(sale *self, const struct sale_cart *cart, struct sale_answer *out, errbuf *err)
{
    sale_unsettled(self);
    return sale_settled(self, sale_hold_run(self, cart, out, err));
}

/* Ends the hold rec, locked and held, as to: confirmed (its units from held to
 * sold), or released or expired (from held back to stock, and its customer's
 * limit rows deleted). Its products' rows are changed in the lock order of carts. */
static int
sale_moves_end(struct sale_moves *mv, const struct hold_record *rec, enum hold_status to,
               errbuf *err)
{
    size_t by_sku[HOLD_LINES_MAX];
    long long rows;

    for (size_t i = 0; i < rec->n; i++) {
        size_t j = i;

        for (; j > 0 && sale_cart_sku_cmp(rec->lines[by_sku[j - 1]].sku, rec->lines[i].sku) > 0;
             j--)
            by_sku[j] = by_sku[j - 1];
        by_sku[j] = i;
    }
    for (size_t k = 0; k < rec->n; k++) {
        const struct hold_line *l = &rec->lines[by_sku[k]];
        int sold = to == HOLD_CONFIRMED;

        rows = db_stmt_exec(mv->move, err, "iiib", sold ? 0 : l->quantity, -l->quantity,
                            sold ? l->quantity : 0, l->product_id, (size_t)IDENT_BYTES);
        if (rows < 0)
            return RS_ERR;
    }
    rows = hold_end(mv->holds, (const unsigned char(*)[IDENT_BYTES])rec->id, 1, to, 0, err);
    if (rows < 0)
        return RS_ERR;
    if (rows != 1)
        return errbuf_set(err, "a locked hold was not held");
    if (to != HOLD_CONFIRMED && rec->has_customer &&
        db_stmt_exec(mv->unlimit, err, "b", rec->id, (size_t)IDENT_BYTES) < 0)
        return RS_ERR;
    if (to == HOLD_EXPIRED) {
        long long units = 0;

        for (size_t i = 0; i < rec->n; i++)
            units += rec->lines[i].quantity;
        /* Whoever expires it (the worker, or a request that found it due): its
         * event in the same transaction, written only while someone subscribes. */
        if (outbox_event_write(mv->events,
                               &(struct outbox_event_row){.kind = OUTBOX_EVENT_HOLD_EXPIRED,
                                                          .hold_id = rec->id,
                                                          .quantity = units},
                               NULL, err) < 0)
            return RS_ERR;
    }
    return RS_OK;
}

/* The answer of a hold as rec says, its status now status (code 200 or 409). */
static int
sale_hold_status_answer(const struct hold_record *rec, enum hold_status status, int code,
                        struct sale_answer *out, errbuf *err)
{
    struct sale_hold_view views[HOLD_LINES_MAX];

    for (size_t i = 0; i < rec->n; i++) {
        views[i].sku = rec->lines[i].sku;
        views[i].quantity = rec->lines[i].quantity;
        views[i].remaining = 0;
    }
    return sale_hold_answer(rec->id, status, rec->expires_us, views, rec->n, 0, code, out, err);
}

static void
sale_no_hold(struct sale_answer *out)
{
    static const char text[] = "{\"error\":\"no such hold\"}";

    out->outcome = SALE_NO_HOLD;
    out->status = 404;
    out->len = sizeof(text) - 1;
    memcpy(out->body, text, out->len);
}

/* What a request did to its hold, for the counters after the commit. */
struct sale_hold_done {
    enum hold_status ended; /* the status this request ended it in; HOLD_HELD: none */
    double lag;             /* an expiry's seconds past expires_at */
};

/* The decision of ref on the hold rec, locked: the answer, and what changed. */
static int
sale_hold_decide(sale *self, const struct sale_hold_ref *ref, struct hold_record *rec,
                 struct sale_hold_done *done, struct sale_answer *out, errbuf *err)
{
    enum sale_hold_action a = ref->action;
    enum hold_status status = rec->status;
    long long now_us;
    int code;

    if (status == HOLD_HELD && rec->due) {
        /* Past its time: expired now, whatever was asked. */
        if (hold_now(self->mv.holds, &now_us, err) != RS_OK ||
            sale_moves_end(&self->mv, rec, HOLD_EXPIRED, err) != RS_OK)
            return RS_ERR;
        done->ended = status = HOLD_EXPIRED;
        done->lag = (double)(now_us - rec->expires_us) / 1e6;
    } else if (status == HOLD_HELD && a == SALE_HOLD_EXTEND) {
        if (hold_now(self->mv.holds, &now_us, err) != RS_OK)
            return RS_ERR;
        rec->expires_us = (now_us + ref->ttl * 1000000) / 1000 * 1000;
        if (hold_extend(self->mv.holds, rec->id, rec->expires_us, err) != 1)
            return RS_ERR;
    } else if (status == HOLD_HELD) {
        status = a == SALE_HOLD_CONFIRM ? HOLD_CONFIRMED : HOLD_RELEASED;
        if (sale_moves_end(&self->mv, rec, status, err) != RS_OK)
            return RS_ERR;
        done->ended = status;
    }
    if (a == SALE_HOLD_CONFIRM)
        code = status == HOLD_CONFIRMED ? 200 : 409;
    else if (a == SALE_HOLD_EXTEND)
        code = status == HOLD_HELD ? 200 : 409;
    else
        code = status == HOLD_CONFIRMED ? 409 : 200;
    return sale_hold_status_answer(rec, status, code, out, err);
}

/* The transaction of a request about one hold: its key, its row locked, the
 * decision, the answer stored. A failure rolls everything back. */
static int
sale_hold_act_tx(sale *self, const struct sale_hold_ref *ref, const unsigned char id[IDENT_BYTES],
                 struct hold_record *rec, int *claim, struct sale_hold_done *done,
                 struct sale_answer *out, errbuf *err)
{
    static const char *const verbs[] = {"GET", "POST", "POST", "DELETE"};
    static const char *const ends[] = {"", "/confirm", "/extend", ""};
    unsigned char fingerprint[CHECKOUT_KEY_FINGERPRINT];
    int found;

    *claim = CHECKOUT_KEY_NEW;
    done->ended = HOLD_HELD;
    if (db_begin(self->conn, err) != RS_OK)
        goto fail;
    if (ref->key != NULL) {
        char what[128];

        snprintf(what, sizeof(what), "%s /holds/%s%s ttl=%lld", verbs[ref->action], ref->id,
                 ends[ref->action], ref->action == SALE_HOLD_EXTEND ? ref->ttl : 0);
        checkout_key_cart_fingerprint(ref->client, what, NULL, NULL, 0, fingerprint);
        if ((*claim = sale_key_claim(self, ref->client, ref->key, fingerprint, out, err)) < 0)
            goto fail;
        if (*claim != CHECKOUT_KEY_NEW)
            return RS_OK;
    }
    found = hold_read(self->mv.holds, id, ref->client, 1, rec, err);
    if (found < 0)
        goto fail;
    if (found == 0) {
        db_rollback(self->conn); /* not stored: it changed nothing */
        sale_no_hold(out);
        return RS_OK;
    }
    if (sale_hold_decide(self, ref, rec, done, out, err) != RS_OK)
        goto fail;
    if (sale_key_commit(self, ref->client, ref->key, out, err) != RS_OK)
        goto fail;
    return RS_OK;

fail:
    db_rollback(self->conn);
    done->ended = HOLD_HELD;
    return RS_ERR;
}

/* A confirm of a one-line hold, held and not due, in its sku's batch. 1: done
 * (out is the answer); 0: left alone (a release or the expiry came first: the
 * transaction decides); RS_ERR. */
static int
sale_hold_confirm_combined(sale *self, struct hold_record *rec, struct sale_answer *out,
                           errbuf *err)
{
    struct sale_buy buy;

    memset(&buy, 0, sizeof(buy));
    buy.sku = rec->lines[0].sku;
    buy.kind = SALE_KIND_CONFIRM;
    buy.m.quantity = rec->lines[0].quantity;
    buy.client = rec->client;
    memcpy(buy.hold_id, rec->id, IDENT_BYTES);
    if (sale_batch_submit(self, &buy, err) != RS_OK)
        return RS_ERR;
    if (buy.alone || !buy.m.sold)
        return 0;
    metrics_count(METRICS_HOLD_CONFIRMED);
    if (sale_hold_status_answer(rec, HOLD_CONFIRMED, 200, out, err) != RS_OK)
        sale_answer_oom(out);
    return 1;
}

static int
sale_hold_act_run(sale *self, const struct sale_hold_ref *ref, struct sale_answer *out, errbuf *err)
{
    unsigned char id[IDENT_BYTES];
    struct hold_record *rec = malloc(sizeof(*rec));
    struct sale_hold_done done;
    int rc = RS_OK, found, claim, attempts = 0;

    out->len = 0;
    if (rec == NULL)
        return errbuf_set(err, "out of memory");
    if (ident_parse(ref->id, id) != 0) {
        sale_no_hold(out);
        goto done;
    }
    if (ref->action == SALE_HOLD_GET || (ref->action == SALE_HOLD_CONFIRM && ref->key == NULL)) {
        /* Read without a lock: a GET's answer, and what a confirm may skip. */
        found = hold_read(self->mv.holds, id, ref->client, 0, rec, err);
        if (found <= 0) {
            rc = found;
            if (found == 0)
                sale_no_hold(out);
            goto done;
        }
        if (ref->action == SALE_HOLD_GET) {
            enum hold_status shown = rec->due ? HOLD_EXPIRED : rec->status;

            if (sale_hold_status_answer(rec, shown, 200, out, err) != RS_OK)
                sale_answer_oom(out);
            goto done;
        }
        if (rec->status != HOLD_HELD) {
            /* Ended before: its answer is what the row says. */
            if (sale_hold_status_answer(rec, rec->status, rec->status == HOLD_CONFIRMED ? 200 : 409,
                                        out, err) != RS_OK)
                sale_answer_oom(out);
            goto done;
        }
        if (!rec->due && rec->n == 1 &&
            (rc = sale_hold_confirm_combined(self, rec, out, err)) != 0) {
            rc = rc > 0 ? RS_OK : RS_ERR;
            goto done;
        }
    }
    for (int again = 0;; again = 1) {
        attempts = 0;
        do
            rc = sale_hold_act_tx(self, ref, id, rec, &claim, &done, out, err);
        while (rc != RS_OK && db_retry(self->conn, &attempts));
        if (rc != RS_OK || again || out->outcome != SALE_NO_HOLD)
            break;
        /* Not found under the lock. On a Galera node a hold another node just made
         * may not be applied here yet, and a read inside a transaction does not
         * wait for it; a read outside one does (hold_read, db_causal): found so,
         * the transaction runs again, once. */
        found = hold_read(self->mv.holds, id, ref->client, 0, rec, err);
        if (found <= 0) {
            rc = found < 0 ? RS_ERR : RS_OK;
            break;
        }
    }
    if (rc != RS_OK)
        goto done;
    if (sale_key_counted(claim)) {
        /* answered by its key: nothing was sold or held */
    } else if (done.ended == HOLD_EXPIRED)
        metrics_hold_expired(done.lag);
    else if (done.ended == HOLD_CONFIRMED)
        metrics_count(METRICS_HOLD_CONFIRMED);
    else if (done.ended == HOLD_RELEASED)
        metrics_count(METRICS_HOLD_RELEASED);
done:
    free(rec);
    return rc;
}

int
sale_hold_act(sale *self, const struct sale_hold_ref *ref, struct sale_answer *out, errbuf *err)
{
    sale_unsettled(self);
    return sale_settled(self, sale_hold_act_run(self, ref, out, err));
}

/* -- the worker's expiry ------------------------------------------------------------- */

sale_expiry *
sale_expiry_new(db *conn, errbuf *err)
{
    sale_expiry *self = calloc(1, sizeof(*self));

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    if (sale_moves_init(&self->mv, conn, err) != RS_OK)
        sale_expiry_destroy(&self);
    return self;
}

void
sale_expiry_destroy(sale_expiry **self_p)
{
    sale_expiry *self = *self_p;

    if (self == NULL)
        return;
    sale_moves_clear(&self->mv);
    free(self); /* the statements go with the caller's db */
    *self_p = NULL;
}

/* The transaction of sale_expiry_run over the n due ids: each still held and due
 * expired; their lags into lags, how many into *expired. */
static int
sale_expiry_tx(sale_expiry *self, const unsigned char (*ids)[IDENT_BYTES], size_t n,
               struct hold_record *rec, double *lags, size_t *expired, errbuf *err)
{
    long long now_us;

    *expired = 0;
    if (db_begin(self->mv.conn, err) != RS_OK)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        int found = hold_read(self->mv.holds, ids[i], HOLD_ANY_CLIENT, 1, rec, err);

        if (found < 0)
            goto fail;
        if (found == 0 || rec->status != HOLD_HELD || !rec->due)
            continue; /* a confirm, a release or another worker's expiry came first */
        if (sale_moves_end(&self->mv, rec, HOLD_EXPIRED, err) != RS_OK)
            goto fail;
        lags[(*expired)++] = (double)rec->expires_us; /* made its lag below */
    }
    /* The lag ends when the units are back, after the rows' locks were had: a
     * hold whose row a long transaction kept locked was that much later. */
    if (*expired > 0 && hold_now(self->mv.holds, &now_us, err) != RS_OK)
        goto fail;
    for (size_t i = 0; i < *expired; i++)
        lags[i] = ((double)now_us - lags[i]) / 1e6;
    if (db_commit(self->mv.conn, err) != RS_OK)
        goto fail;
    return RS_OK;

fail:
    db_rollback(self->mv.conn);
    *expired = 0;
    return RS_ERR;
}

long long
sale_expiry_run(sale_expiry *self, size_t max, errbuf *err)
{
    unsigned char(*ids)[IDENT_BYTES] = calloc(max, sizeof(*ids));
    struct hold_record *rec = malloc(sizeof(*rec));
    double *lags = calloc(max, sizeof(*lags));
    long long n;
    size_t expired = 0;
    int rc, attempts = 0;

    if (ids == NULL || rec == NULL || lags == NULL) {
        n = errbuf_set(err, "out of memory");
        goto done;
    }
    n = hold_due(self->mv.holds, ids, max, err);
    if (n <= 0)
        goto done;
    do
        rc = sale_expiry_tx(self, (const unsigned char(*)[IDENT_BYTES])ids, (size_t)n, rec, lags,
                            &expired, err);
    while (rc != RS_OK && db_retry(self->mv.conn, &attempts));
    if (rc != RS_OK) {
        n = RS_ERR;
        goto done;
    }
    for (size_t i = 0; i < expired; i++)
        metrics_hold_expired(lags[i]);
    n = (long long)expired;
done:
    free(ids), free(rec), free(lags);
    return n;
}

int
sale_expiry_next(sale_expiry *self, long long *wait_us, errbuf *err)
{
    return hold_next_due(self->mv.holds, wait_us, err);
}
