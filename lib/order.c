/* order: the replenishment order's row and its states (see order.h). Every
 * statement on replenishment_order is here. One statement here changes
 * product.stock, the delivery's (ST_ADD_STOCK): it adds what the factory
 * delivered in the transaction that fulfils the order, under the product's lock,
 * so that a delivery is applied once and together with its order; every
 * statement that takes stock is lib/sale's. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "order.h"
#include "outbox_event.h"
#include "utf8.h"

/* A delivery that lost its connection runs again on a new one (it is idempotent:
 * a repeated delivery changes nothing), this many times in all. */
#define ORDER_FULFIL_TRIES 3
#define ORDER_ERROR_CHARS  500 /* replenishment_order.last_error */
/* The reorder-point rule (order.h) as the sweep's query has it. */
#define ORDER_DUE_AT_POINT ORDER_SQL(ORDER_AT_POINT(p.stock, p.reorder_point))
/* And for a top-up: the stock plus the crossing's order on its way. */
#define ORDER_TOPUP_AT_POINT ORDER_SQL(ORDER_AT_POINT(p.stock + r.quantity, p.reorder_point))

enum order_stmt {
    /* order_reorder, order_refused */
    ST_STOCK_OF,
    ST_TURNED_AWAY,
    ST_LOCK_SKU,
    ST_LOCK_OPEN,
    ST_INSERT,
    ST_SOLD_OUT,
    ST_DUE,
    /* order_topup */
    ST_TOPUP_DUE,
    ST_LOCK_ON_ORDER,
    ST_INSERT_TOPUP,
    /* measurements */
    ST_LEAD_TIMES,
    ST_CYCLES,
    ST_ON_ORDER,
    ST_TURNED_OF,
    /* reads */
    ST_GET,
    ST_COUNTS,
    ST_LIST,
    ST_ONE,
    ST_TIMELINE,
    /* the factory driver */
    ST_CLAIM,
    ST_SENT,
    ST_ATTEMPT,
    ST_FAILED,
    ST_REOPEN,
    /* order_fulfil */
    ST_LOCK_PRODUCT,
    ST_LOCK_ORDER,
    ST_ADD_STOCK,
    ST_FULFIL,
    /* overdue callbacks */
    ST_OVERDUE,
    ST_REPORTED,
    ST_OVERDUE_COUNT,
    ST_COUNT
};

/* The columns of an order as listed (order_lines reads them): its times also
 * as microseconds since the epoch (NULL stays NULL), for the API's RFC 3339 UTC
 * times whatever the session's time zone. */
#define ORDER_SQL_LIST_COLUMNS                                                                     \
    "SELECT r.order_id, p.sku, r.quantity, r.status, r.attempts,"                                  \
    " DATE_FORMAT(r.created_at, '%Y-%m-%d %H:%i:%s'),"                                             \
    " DATE_FORMAT(r.sent_at, '%Y-%m-%d %H:%i:%s'),"                                                \
    " DATE_FORMAT(r.fulfilled_at, '%Y-%m-%d %H:%i:%s'),"                                           \
    " r.delivered_quantity, r.last_error, r.delivery,"                                             \
    " CAST(UNIX_TIMESTAMP(r.created_at) * 1000000 AS SIGNED),"                                     \
    " CAST(UNIX_TIMESTAMP(r.sent_at) * 1000000 AS SIGNED),"                                        \
    " CAST(UNIX_TIMESTAMP(r.fulfilled_at) * 1000000 AS SIGNED)"                                    \
    " FROM replenishment_order r JOIN product p ON p.product_id = r.product_id"

/* What happened to an order, oldest first (at in microseconds since the epoch):
 * its row's times, then its events (the outbox: what the worker fans out into
 * the factory message, the ad emails and webhooks) as written and as taken by
 * the worker. Seven times the order's id. */
#define ORDER_SQL_TIMELINE                                                                         \
    "SELECT CAST(UNIX_TIMESTAMP(at) * 1000000 AS SIGNED), event, detail FROM ("                    \
    " SELECT created_at AS at, 0 AS o, 'opened' AS event,"                                         \
    "  CONCAT('quantity ', quantity, IF(topup, ' (top-up)', '')) AS detail"                        \
    "  FROM replenishment_order WHERE order_id = ?"                                                \
    " UNION ALL SELECT sold_out_at, 1, 'sold_out', NULL"                                           \
    "  FROM replenishment_order WHERE order_id = ? AND sold_out_at IS NOT NULL"                    \
    " UNION ALL SELECT sent_at, 2, 'sent',"                                                        \
    "  CONCAT('attempts ', attempts, IFNULL(CONCAT(', factory ref ', factory_ref), ''))"           \
    "  FROM replenishment_order WHERE order_id = ? AND sent_at IS NOT NULL"                        \
    " UNION ALL SELECT failed_at, 3, 'failed', last_error"                                         \
    "  FROM replenishment_order WHERE order_id = ? AND failed_at IS NOT NULL"                      \
    " UNION ALL SELECT fulfilled_at, 4, 'fulfilled',"                                              \
    "  CONCAT('delivered ', delivered_quantity, ' (', delivery, ')')"                              \
    "  FROM replenishment_order WHERE order_id = ? AND fulfilled_at IS NOT NULL"                   \
    " UNION ALL SELECT created_at, 5, CONCAT('event ', kind), CONCAT('quantity ', quantity)"       \
    "  FROM outbox WHERE order_id = ?"                                                             \
    " UNION ALL SELECT taken_at, 6,"                                                               \
    "  IF(kind IN ('stock_empty', 'sold_out', 'stock_arrived', 'delivery_refused'),"               \
    "     'email', 'queued'),"                                                                     \
    "  CONCAT(kind, IF(kind IN ('stock_empty', 'sold_out'), ': ad pause email queued',"            \
    "   IF(kind = 'stock_arrived', ': ad resume email queued',"                                    \
    "   IF(kind = 'delivery_refused', ': operators'' alert queued', ': queued'))))"                \
    "  FROM outbox WHERE order_id = ? AND taken_at IS NOT NULL"                                    \
    ") t ORDER BY at, o"

/* DB_IDEMPOTENT marks what may run twice when the connection broke under it:
 * reads, and updates that are conditional or (sent) count an attempt twice at
 * worst, which beats ordering twice because a reconnection looked like a failed
 * request. */
static const struct db_stmt_def order_sql[ST_COUNT] = {
    /* The surge after a sell-out ends here: one indexed read per failed checkout
     * (the stock for the answer and the open order at once), no transaction, no
     * lock; while sold out, one single-row update counts it (ST_TURNED_AWAY). */
    [ST_STOCK_OF] = {"SELECT p.stock, r.order_id, r.sold_out_at IS NOT NULL FROM product p"
                     " LEFT JOIN replenishment_order r"
                     " ON r.open_product_id = p.product_id WHERE p.sku = ?",
                     DB_IDEMPOTENT},
    /* Not idempotent: a reconnection under it would count a customer twice. */
    [ST_TURNED_AWAY] = {"UPDATE replenishment_order SET turned_away = turned_away + 1,"
                        " turned_away_units = turned_away_units + ?"
                        " WHERE order_id = ? AND status <> 'fulfilled'",
                        0},
    [ST_LOCK_SKU] = {"SELECT product_id, stock, factory_id IS NOT NULL, reorder_point,"
                     " reorder_level, reorder_quantity, service_level IS NOT NULL AND reorder_auto"
                     " FROM product WHERE sku = ? FOR UPDATE",
                     0},
    [ST_LOCK_OPEN] = {"SELECT order_id, sold_out_at IS NOT NULL, quantity FROM replenishment_order"
                      " WHERE open_product_id = ? FOR UPDATE",
                      0},
    /* INSERT IGNORE: the unique key on open_product_id makes a second unfinished
     * order for the product a no-op, whatever the race. */
    [ST_INSERT] = {"INSERT IGNORE INTO replenishment_order"
                   " (order_id, product_id, factory_id, quantity, sold_out_at)"
                   " SELECT ?, product_id, factory_id, ?, IF(stock = 0, CURRENT_TIMESTAMP(6), NULL)"
                   " FROM product WHERE product_id = ? AND factory_id IS NOT NULL",
                   0},
    [ST_SOLD_OUT] = {"UPDATE replenishment_order SET sold_out_at = CURRENT_TIMESTAMP(6)"
                     " WHERE order_id = ? AND sold_out_at IS NULL",
                     0},
    [ST_DUE] = {"SELECT p.sku FROM product p LEFT JOIN replenishment_order r"
                " ON r.open_product_id = p.product_id WHERE p.factory_id IS NOT NULL"
                " AND ((r.order_id IS NULL AND " ORDER_DUE_AT_POINT ")"
                " OR (r.order_id IS NOT NULL AND p.stock = 0 AND r.sold_out_at IS NULL))"
                " ORDER BY p.sku LIMIT " ORDER_SQL(ORDER_DUE_MAX),
                DB_IDEMPOTENT},
    /* Products with a service level whose point rose above the stock plus the
     * crossing's order while it is on its way, and no top-up unfinished. */
    [ST_TOPUP_DUE] = {"SELECT p.sku FROM product p JOIN replenishment_order r"
                      " ON r.open_product_id = p.product_id LEFT JOIN replenishment_order t"
                      " ON t.open_topup_product_id = p.product_id"
                      " WHERE p.service_level IS NOT NULL AND p.reorder_auto"
                      " AND p.factory_id IS NOT NULL AND t.order_id IS NULL"
                      " AND " ORDER_TOPUP_AT_POINT " ORDER BY p.sku"
                      " LIMIT " ORDER_SQL(ORDER_DUE_MAX),
                      DB_IDEMPOTENT},
    /* Under the product's lock: what is on order, and how much of it is a top-up. */
    [ST_LOCK_ON_ORDER] = {"SELECT COALESCE(SUM(quantity), 0), COUNT(*), COALESCE(SUM(topup), 0)"
                          " FROM replenishment_order WHERE product_id = ? AND status <> 'fulfilled'"
                          " FOR UPDATE",
                          0},
    /* INSERT IGNORE: the unique key on open_topup_product_id makes a second
     * unfinished top-up a no-op, whatever the race. */
    [ST_INSERT_TOPUP] = {"INSERT IGNORE INTO replenishment_order"
                         " (order_id, product_id, factory_id, quantity, topup)"
                         " SELECT ?, product_id, factory_id, ?, TRUE"
                         " FROM product WHERE product_id = ? AND factory_id IS NOT NULL",
                         0},
    /* A fast factory's callback can come before order_sent stamps sent_at: such
     * an order measured nothing. */
    [ST_LEAD_TIMES] = {"SELECT TIMESTAMPDIFF(MICROSECOND, sent_at, fulfilled_at)"
                       " FROM replenishment_order WHERE factory_id = ? AND status = 'fulfilled'"
                       " AND sent_at IS NOT NULL AND fulfilled_at >= sent_at"
                       " ORDER BY fulfilled_at DESC LIMIT ?",
                       DB_IDEMPOTENT},
    /* The cycles that ended in the window, per product; ix_order_status leads
     * with the status. A top-up is no cycle of its own: it lives inside its
     * crossing's cycle, and the checkouts turned away meanwhile are counted on
     * the crossing's order (order_refused), never on it. */
    [ST_CYCLES] = {"SELECT p.sku, COUNT(*), SUM(r.turned_away > 0) FROM replenishment_order r"
                   " JOIN product p ON p.product_id = r.product_id"
                   " WHERE r.status = 'fulfilled' AND NOT r.topup"
                   " AND r.fulfilled_at >= CURRENT_TIMESTAMP(6) - INTERVAL ? SECOND"
                   " GROUP BY p.sku ORDER BY p.sku",
                   DB_IDEMPOTENT},
    [ST_ON_ORDER] = {"SELECT order_id, quantity, turned_away_units, topup FROM replenishment_order"
                     " WHERE open_product_id = ? OR open_topup_product_id = ?",
                     DB_IDEMPOTENT},
    [ST_TURNED_OF] = {"SELECT turned_away_units FROM replenishment_order WHERE order_id = ?",
                      DB_IDEMPOTENT},
    [ST_GET] = {"SELECT r.status, r.token_hash, r.product_id, p.sku, r.factory_id, f.identifier,"
                " f.name, f.api, r.quantity, r.token_keyed, r.sold_out_at IS NOT NULL,"
                " r.turned_away, r.turned_away_units,"
                " CAST(UNIX_TIMESTAMP(r.sent_at) * 1000000 AS SIGNED), r.topup"
                " FROM replenishment_order r"
                " JOIN product p ON p.product_id = r.product_id"
                " JOIN factory f ON f.factory_id = r.factory_id WHERE r.order_id = ?",
                DB_IDEMPOTENT},
    [ST_COUNTS] = {"SELECT status, COUNT(*) FROM replenishment_order GROUP BY status"
                   " ORDER BY status",
                   0},
    [ST_LIST] = {ORDER_SQL_LIST_COLUMNS " ORDER BY r.created_at DESC LIMIT ?", 0},
    /* The same columns, of one order. */
    [ST_ONE] = {ORDER_SQL_LIST_COLUMNS " WHERE r.order_id = ?", DB_IDEMPOTENT},
    [ST_TIMELINE] = {ORDER_SQL_TIMELINE, DB_IDEMPOTENT},
    [ST_CLAIM] = {"UPDATE replenishment_order SET token_hash = ?"
                  " WHERE order_id = ? AND token_hash IS NULL",
                  DB_IDEMPOTENT},
    /* A callback can overtake this update (a fast factory): a fulfilled order
     * stays fulfilled. */
    [ST_SENT] = {"UPDATE replenishment_order"
                 " SET status = IF(status IN ('open', 'failed'), 'sent', status),"
                 " sent_at = NOW(6), failed_at = NULL, attempts = attempts + 1,"
                 " factory_ref = ?, last_error = NULL WHERE order_id = ?",
                 DB_IDEMPOTENT},
    [ST_ATTEMPT] = {"UPDATE replenishment_order SET attempts = attempts + 1,"
                    " last_error = ? WHERE order_id = ?",
                    0},
    [ST_FAILED] = {"UPDATE replenishment_order SET status = 'failed',"
                   " failed_at = NOW(6), last_error = ?"
                   " WHERE order_id = ? AND status = 'open'",
                   DB_IDEMPOTENT},
    [ST_REOPEN] = {"UPDATE replenishment_order SET status = 'open', failed_at = NULL"
                   " WHERE order_id = ? AND status = 'failed'",
                   DB_IDEMPOTENT},
    [ST_LOCK_PRODUCT] = {"SELECT stock FROM product WHERE product_id = ? FOR UPDATE", 0},
    [ST_LOCK_ORDER] = {"SELECT status, quantity, product_id FROM replenishment_order"
                       " WHERE order_id = ? FOR UPDATE",
                       0},
    /* LAST_INSERT_ID(expr) hands the new stock back in the same round trip. */
    [ST_ADD_STOCK] = {"UPDATE product SET stock = LAST_INSERT_ID(stock + ?) WHERE product_id = ?",
                      0},
    [ST_FULFIL] = {"UPDATE replenishment_order SET status = 'fulfilled',"
                   " fulfilled_at = CURRENT_TIMESTAMP(6), delivered_quantity = ?"
                   " WHERE order_id = ?",
                   0},
    [ST_OVERDUE] = {"SELECT r.order_id, p.name, p.sku, f.name, f.identifier,"
                    " UNIX_TIMESTAMP(r.sent_at),"
                    " TIMESTAMPDIFF(SECOND, r.sent_at, CURRENT_TIMESTAMP(6))"
                    " FROM replenishment_order r JOIN product p ON p.product_id = r.product_id"
                    " JOIN factory f ON f.factory_id = r.factory_id"
                    " WHERE r.status = 'sent' AND r.overdue_reported_at IS NULL"
                    " AND r.sent_at < CURRENT_TIMESTAMP(6) - INTERVAL ? SECOND"
                    " LIMIT " ORDER_SQL(ORDER_OVERDUE_MAX),
                    DB_IDEMPOTENT},
    /* The claim of the report: with several workers, only the one whose UPDATE
     * changed the row tells operators. */
    [ST_REPORTED] = {"UPDATE replenishment_order SET overdue_reported_at = CURRENT_TIMESTAMP(6)"
                     " WHERE order_id = ? AND overdue_reported_at IS NULL",
                     0},
    /* The metrics' restock_orders_overdue: reported or not, as long as it lasts. */
    [ST_OVERDUE_COUNT] = {"SELECT COUNT(*) FROM replenishment_order WHERE status = 'sent'"
                          " AND sent_at < CURRENT_TIMESTAMP(6) - INTERVAL ? SECOND",
                          DB_IDEMPOTENT},
};

struct order {
    db *conn;
    db_stmt *st[ST_COUNT]; /* they belong to conn and go with it */
    outbox_event *events;  /* the events of its changes, on conn */
};

static const char *const order_status_names[ORDER_NSTATUS] = {
    [ORDER_OPEN] = "open",
    [ORDER_SENT] = "sent",
    [ORDER_FULFILLED] = "fulfilled",
    [ORDER_FAILED] = "failed",
};
_Static_assert(ORDER_FAILED + 1 == ORDER_NSTATUS, "a name for every status");

order *
order_new(db *conn, errbuf *err)
{
    order *self;

    /* The claim hashes and compares tokens. */
    if (token_init(err) != RS_OK)
        return NULL;
    self = calloc(1, sizeof(*self));
    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    self->conn = conn;
    /* Made, not prepared: each is prepared on its first use on a connection. */
    self->events = outbox_event_new(conn, err);
    if (self->events == NULL || db_stmt_table(conn, order_sql, ST_COUNT, self->st, err) != RS_OK) {
        order_destroy(&self);
        return NULL;
    }
    return self;
}

void
order_destroy(order **self_p)
{
    if (*self_p == NULL)
        return;
    outbox_event_destroy(&(*self_p)->events);
    free(*self_p);
    *self_p = NULL;
}

const char *
order_status_name(enum order_status status)
{
    if ((unsigned)status >= ORDER_NSTATUS)
        return "unknown";
    return order_status_names[status];
}

int
order_status_parse(const char *name)
{
    for (int i = 0; name != NULL && i < ORDER_NSTATUS; i++)
        if (strcmp(name, order_status_names[i]) == 0)
            return i;
    return -1;
}

static enum order_status
order_status_of(const char *name)
{
    int status = order_status_parse(name);

    /* The column's ENUM has no other value. */
    return status < 0 ? ORDER_OPEN : (enum order_status)status;
}

/* The bytes of an order id; doing says what for, in the message. */
static int
order_id_parse(const char *text, unsigned char id[IDENT_BYTES], const char *doing, errbuf *err)
{
    if (text == NULL)
        text = "(null)";
    if (ident_parse(text, id) != 0)
        return errbuf_set(err, "%s: \"%.*s\" is not an order id", doing,
                          (int)utf8_cut(text, strlen(text), 40), text);
    return RS_OK;
}

/* Copies s into out, cut to the characters (not bytes) last_error holds, and never
 * in the middle of a UTF-8 sequence. */
static void
order_clip(const char *s, char out[ORDER_ERROR_CHARS * 4 + 1])
{
    size_t n = utf8_cut_chars(s, strlen(s), ORDER_ERROR_CHARS);

    memcpy(out, s, n);
    out[n] = '\0';
}

/* A text column of the current row into out (size bytes), "" for SQL NULL. */
static void
order_col_copy(db_stmt *st, int col, char *out, size_t size)
{
    const char *s = db_stmt_col(st, col, NULL);

    snprintf(out, size, "%s", s ? s : "");
}

/* A BINARY(16) column of the current row into out; zeros when it is not one. */
static void
order_col_ident(db_stmt *st, int col, unsigned char out[IDENT_BYTES])
{
    size_t len;
    const char *s = db_stmt_col(st, col, &len);

    memset(out, 0, IDENT_BYTES);
    if (s != NULL && len == IDENT_BYTES)
        memcpy(out, s, IDENT_BYTES);
}

/* Calls fn for each sku of st's rows (a query of skus, at most ORDER_DUE_MAX by its
 * LIMIT): how many, or RS_ERR. */
static int
order_each_sku(db_stmt *st, void (*fn)(void *arg, const char *sku), void *arg, errbuf *err)
{
    int n = 0;

    if (db_stmt_exec(st, err, "") < 0)
        return RS_ERR;
    for (; db_stmt_next(st); n++) {
        const char *sku = db_stmt_col(st, 0, NULL);
        fn(arg, sku ? sku : "");
    }
    return n;
}

/* An order's event, in the caller's transaction (lib/outbox_event): RS_OK when
 * written, else RS_ERR. event gets its id (IDENT_TEXT bytes) when not NULL. */
static int
order_event(order *self, enum outbox_event_kind kind, const unsigned char *order_id,
            const unsigned char *product_id, long long quantity, const char *reason, char *event,
            errbuf *err)
{
    struct outbox_event_row row = {.kind = kind,
                                   .order_id = order_id,
                                   .product_id = product_id,
                                   .quantity = quantity,
                                   .reason = reason};

    return outbox_event_write(self->events, &row, event, err) == 1 ? RS_OK : RS_ERR;
}

/* --- open ------------------------------------------------------------------- */

/* Inserts a new unfinished order (stmt: ST_INSERT, a crossing's, or ST_INSERT_TOPUP)
 * of product_id under its lock, for the difference from have (stock, and what is on
 * order) up to level, or size when the level is 0 (reorder_quantity), at least 1;
 * order_id gets its new id. The quantity, or RS_ERR. */
static long long
order_insert(order *self, int stmt, long long level, long long size, long long have,
             const unsigned char product_id[IDENT_BYTES], unsigned char order_id[IDENT_BYTES],
             const char *what, const char *sku, errbuf *err)
{
    long long quantity = level > 0 ? level - have : size, rows;

    if (quantity < 1)
        quantity = 1;
    ident_new(order_id);
    rows = db_stmt_exec(self->st[stmt], err, "bib", order_id, (size_t)IDENT_BYTES, quantity,
                        product_id, (size_t)IDENT_BYTES);
    if (rows < 0)
        return RS_ERR;
    if (rows == 0)
        return errbuf_set(err, "database: the %s of %s could not be inserted under its lock", what,
                          sku);
    return quantity;
}

/* The transaction of order_reorder; turned: the quantity of a checkout turned
 * away (0 for a sale or the sweep), counted as unmet demand while sold out. */
static int
order_reorder_tx(order *self, const char *sku, long long turned, struct order_open_outcome *out,
                 int *result, errbuf *err)
{
    db_stmt *lock = self->st[ST_LOCK_SKU], *lock_open = self->st[ST_LOCK_OPEN];
    unsigned char product_id[IDENT_BYTES], order_id[IDENT_BYTES];
    char order_text[IDENT_TEXT];
    long long rows, point, level, size, quantity = 0;
    int has_factory, has_order, sold_out, events = 0;

    memset(out, 0, sizeof(*out));
    *result = ORDER_PENDING;
    if (db_begin(self->conn, err) != RS_OK)
        return RS_ERR;
    /* The product row first (the lock order of order.h): a delivery adds stock
     * under the same lock, so what is read here stays true until the commit. */
    rows = db_stmt_exec(lock, err, "s", sku);
    if (rows < 0)
        goto fail;
    if (rows == 0 || !db_stmt_next(lock)) {
        db_rollback(self->conn);
        *result = ORDER_NO_PRODUCT;
        return 0;
    }
    order_col_ident(lock, 0, product_id);
    out->remaining = db_stmt_col_int(lock, 1);
    has_factory = (int)db_stmt_col_int(lock, 2);
    point = db_stmt_col_int(lock, 3);
    level = db_stmt_col_int(lock, 4);
    size = db_stmt_col_int(lock, 5);
    rows = db_stmt_exec(lock_open, err, "b", product_id, sizeof(product_id));
    if (rows < 0)
        goto fail;
    has_order = rows > 0 && db_stmt_next(lock_open);
    sold_out = has_order && db_stmt_col_int(lock_open, 1) != 0;
    if (has_order) {
        order_col_ident(lock_open, 0, order_id);
        quantity = db_stmt_col_int(lock_open, 2);
    }
    if (turned > 0 && out->remaining >= turned) {
        db_rollback(self->conn);
        *result = ORDER_RESTOCKED;
        return 0;
    }
    if (!has_order && !has_factory) {
        db_rollback(self->conn);
        *result = out->remaining == 0 ? ORDER_NO_FACTORY : ORDER_SHORT;
        return 0;
    }
    if (!has_order &&
        (ORDER_AT_POINT(out->remaining, point) || (turned > 0 && out->remaining == 0))) {
        /* One unfinished order per product: nothing else is on order, so the
         * order alone brings the stock up to the level. */
        if ((quantity = order_insert(self, ST_INSERT, level, size, out->remaining, product_id,
                                     order_id, "order", sku, err)) < 0)
            goto fail;
        /* stock_empty: opened by the sale that emptied the shelf (both at once,
         * the first version's event; ST_INSERT marked it sold out); reorder:
         * opened while the product is on sale. */
        if (order_event(self, out->remaining == 0 ? OUTBOX_EVENT_STOCK_EMPTY : OUTBOX_EVENT_REORDER,
                        order_id, product_id, quantity, NULL, out->event, err) != RS_OK)
            goto fail;
        ident_format(order_id, sizeof(order_id), order_text);
        log_info("event=replenishment_opened sku=%s order=%s quantity=%lld stock=%lld "
                 "reorder_point=%lld reorder_level=%lld outbox_event=%s",
                 sku, order_text, quantity, out->remaining, point, level, out->event);
        has_order = 1;
        sold_out = out->remaining == 0; /* its event, stock_empty, says so */
        events++;
        *result = ORDER_OPENED;
    }
    if (!has_order) {
        db_rollback(self->conn);
        *result = ORDER_SHORT;
        return 0;
    }
    /* Sold out means the shelf is empty, not that the point was reached. */
    if (out->remaining == 0 && !sold_out) {
        if (db_stmt_exec(self->st[ST_SOLD_OUT], err, "b", order_id, sizeof(order_id)) != 1)
            goto fail;
        if (order_event(self, OUTBOX_EVENT_SOLD_OUT, order_id, product_id, quantity, NULL,
                        out->event, err) != RS_OK)
            goto fail;
        ident_format(order_id, sizeof(order_id), order_text);
        log_info("event=sold_out sku=%s order=%s outbox_event=%s", sku, order_text, out->event);
        events++;
    }
    if (turned > 0 && out->remaining == 0 &&
        db_stmt_exec(self->st[ST_TURNED_AWAY], err, "ib", turned, order_id, sizeof(order_id)) < 0)
        goto fail;
    if (events == 0 && turned == 0) {
        db_rollback(self->conn);
        return 0;
    }
    if (db_commit(self->conn, err) != RS_OK)
        return RS_ERR;
    return events;

fail:
    db_rollback(self->conn);
    return RS_ERR;
}

/* order_reorder_tx, run again while the database rolled it back (a deadlock, a
 * Galera certification failure): nothing of it happened. Inside a keyed
 * checkout's transaction, whose savepoint it is, db_retry does not run it again:
 * the database rolled the checkout's whole transaction back, which the
 * checkout's own loop runs again. */
static int
order_reorder_retried(order *self, const char *sku, long long turned,
                      struct order_open_outcome *out, int *result, errbuf *err)
{
    int rc, attempts = 0;

    do
        rc = order_reorder_tx(self, sku, turned, out, result, err);
    while (rc < 0 && db_retry(self->conn, &attempts));
    return rc;
}

int
order_reorder(order *self, const char *sku, struct order_open_outcome *out, errbuf *err)
{
    int result;

    return order_reorder_retried(self, sku, 0, out, &result, err);
}

/* The transaction of order_topup: under the product's lock (then its orders', the
 * lock order of order.h), a top-up is opened when the product still has a
 * service level, its crossing's order is on its way, no top-up is, and the stock
 * plus what is on order is at or below the point. */
static int
order_topup_tx(order *self, const char *sku, struct order_open_outcome *out, errbuf *err)
{
    db_stmt *lock = self->st[ST_LOCK_SKU], *on = self->st[ST_LOCK_ON_ORDER];
    unsigned char product_id[IDENT_BYTES], order_id[IDENT_BYTES];
    char order_text[IDENT_TEXT];
    long long rows, point, level, size, on_order, unfinished, topups, quantity;

    memset(out, 0, sizeof(*out));
    if (db_begin(self->conn, err) != RS_OK)
        return RS_ERR;
    rows = db_stmt_exec(lock, err, "s", sku);
    if (rows < 0)
        goto fail;
    if (rows == 0 || !db_stmt_next(lock) || !db_stmt_col_int(lock, 2) ||
        !db_stmt_col_int(lock, 6)) {
        db_rollback(self->conn); /* gone, no factory, or no service level any more */
        return 0;
    }
    order_col_ident(lock, 0, product_id);
    out->remaining = db_stmt_col_int(lock, 1);
    point = db_stmt_col_int(lock, 3);
    level = db_stmt_col_int(lock, 4);
    size = db_stmt_col_int(lock, 5);
    if (db_stmt_exec(on, err, "b", product_id, sizeof(product_id)) < 0 || !db_stmt_next(on))
        goto fail;
    on_order = db_stmt_col_int(on, 0);
    unfinished = db_stmt_col_int(on, 1);
    topups = db_stmt_col_int(on, 2);
    if (unfinished - topups < 1 || topups > 0 ||
        !ORDER_AT_POINT(out->remaining + on_order, point)) {
        db_rollback(self->conn);
        return 0;
    }
    /* The difference up to the order-up-to level: stock and both orders then
     * stand where one order at the new point would have put them. */
    if ((quantity = order_insert(self, ST_INSERT_TOPUP, level, size, out->remaining + on_order,
                                 product_id, order_id, "top-up", sku, err)) < 0)
        goto fail;
    if (order_event(self, OUTBOX_EVENT_REORDER, order_id, product_id, quantity, NULL, out->event,
                    err) != RS_OK)
        goto fail;
    if (db_commit(self->conn, err) != RS_OK)
        return RS_ERR;
    ident_format(order_id, sizeof(order_id), order_text);
    log_info("event=replenishment_topup sku=%s order=%s quantity=%lld stock=%lld on_order=%lld "
             "reorder_point=%lld reorder_level=%lld outbox_event=%s",
             sku, order_text, quantity, out->remaining, on_order, point, level, out->event);
    return 1;

fail:
    db_rollback(self->conn);
    return RS_ERR;
}

int
order_topup(order *self, const char *sku, struct order_open_outcome *out, errbuf *err)
{
    int rc, attempts = 0;

    do
        rc = order_topup_tx(self, sku, out, err);
    while (rc < 0 && db_retry(self->conn, &attempts));
    return rc;
}

int
order_each_topup_due(order *self, void (*fn)(void *arg, const char *sku), void *arg, errbuf *err)
{
    return order_each_sku(self->st[ST_TOPUP_DUE], fn, arg, err);
}

int
order_refused(order *self, const char *sku, long long quantity, struct order_open_outcome *out,
              errbuf *err)
{
    db_stmt *stock_of = self->st[ST_STOCK_OF];
    unsigned char order_id[IDENT_BYTES];
    long long rows;
    int has_order, sold_out, result;

    memset(out, 0, sizeof(*out));
    rows = db_stmt_exec(stock_of, err, "s", sku);
    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(stock_of))
        return ORDER_NO_PRODUCT;
    out->remaining = db_stmt_col_int(stock_of, 0);
    has_order = !db_stmt_col_is_null(stock_of, 1);
    sold_out = db_stmt_col_int(stock_of, 2) != 0;
    if (has_order)
        order_col_ident(stock_of, 1, order_id);
    if (out->remaining >= quantity)
        return ORDER_RESTOCKED;
    /* Asking for more than remains is not a sell-out: no order, no ad pause. A
     * product at or below its point without an order (a crash after its sale) is
     * the sweep's. */
    if (out->remaining > 0)
        return has_order ? ORDER_PENDING : ORDER_SHORT;
    if (has_order && sold_out) {
        if (db_stmt_exec(self->st[ST_TURNED_AWAY], err, "ib", quantity, order_id,
                         sizeof(order_id)) < 0)
            return RS_ERR;
        return ORDER_PENDING;
    }
    if (order_reorder_retried(self, sku, quantity, out, &result, err) < 0)
        return RS_ERR;
    return result;
}

int
order_each_due(order *self, void (*fn)(void *arg, const char *sku), void *arg, errbuf *err)
{
    return order_each_sku(self->st[ST_DUE], fn, arg, err);
}

/* --- measurements ----------------------------------------------------------- */

int
order_lead_times(order *self, const unsigned char factory_id[IDENT_BYTES], double *secs, int max,
                 errbuf *err)
{
    db_stmt *st = self->st[ST_LEAD_TIMES];
    int n = 0;

    if (db_stmt_exec(st, err, "bi", factory_id, (size_t)IDENT_BYTES, (long long)max) < 0)
        return RS_ERR;
    while (n < max && db_stmt_next(st))
        secs[n++] = (double)db_stmt_col_int(st, 0) / 1e6;
    return n;
}

int
order_cycles_each(order *self, long window, order_cycles_fn fn, void *arg, errbuf *err)
{
    db_stmt *st = self->st[ST_CYCLES];
    int n = 0;

    if (db_stmt_exec(st, err, "i", (long long)window) < 0)
        return RS_ERR;
    while (db_stmt_next(st)) {
        fn(arg, db_stmt_col(st, 0, NULL), db_stmt_col_int(st, 1), db_stmt_col_int(st, 2));
        n++;
    }
    return n;
}

int
order_on_order(order *self, const unsigned char product_id[IDENT_BYTES],
               struct order_unfinished *out, errbuf *err)
{
    db_stmt *st = self->st[ST_ON_ORDER];
    long long rows = db_stmt_exec(st, err, "bb", product_id, (size_t)IDENT_BYTES, product_id,
                                  (size_t)IDENT_BYTES);

    memset(out, 0, sizeof(*out));
    if (rows < 0)
        return RS_ERR;
    while (db_stmt_next(st)) {
        if (db_stmt_col_int(st, 3) != 0) {
            out->topup_quantity = db_stmt_col_int(st, 1);
            continue;
        }
        out->exists = 1;
        order_col_ident(st, 0, out->order_id);
        out->quantity = db_stmt_col_int(st, 1);
        out->turned_away_units = db_stmt_col_int(st, 2);
    }
    return RS_OK;
}

int
order_turned_away_units(order *self, const unsigned char order_id[IDENT_BYTES], long long *units,
                        errbuf *err)
{
    db_stmt *st = self->st[ST_TURNED_OF];
    long long rows = db_stmt_exec(st, err, "b", order_id, (size_t)IDENT_BYTES);

    *units = 0;
    if (rows < 0)
        return RS_ERR;
    if (rows > 0 && db_stmt_next(st))
        *units = db_stmt_col_int(st, 0);
    return RS_OK;
}

/* --- reads ------------------------------------------------------------------- */

/* order_get on the bytes of an id. */
static int
order_get_id(order *self, const unsigned char id[IDENT_BYTES], struct order_view *out, errbuf *err)
{
    db_stmt *st = self->st[ST_GET];
    const char *hash;
    long long rows;

    memset(out, 0, sizeof(*out));
    rows = db_stmt_exec(st, err, "b", id, (size_t)IDENT_BYTES);
    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(st))
        return 0;
    out->status = order_status_of(db_stmt_col(st, 0, NULL));
    hash = db_stmt_col(st, 1, &out->token_hash_len);
    /* BINARY(32) holds a hash of exactly that size; another size matches no token. */
    if (hash != NULL && out->token_hash_len == sizeof(out->token_hash))
        memcpy(out->token_hash, hash, sizeof(out->token_hash));
    order_col_ident(st, 2, out->product_id);
    order_col_copy(st, 3, out->sku, sizeof(out->sku));
    order_col_ident(st, 4, out->factory_id);
    order_col_copy(st, 5, out->factory_identifier, sizeof(out->factory_identifier));
    order_col_copy(st, 6, out->factory_name, sizeof(out->factory_name));
    order_col_copy(st, 7, out->factory_api, sizeof(out->factory_api));
    out->factory_api_null = db_stmt_col_is_null(st, 7);
    out->quantity = db_stmt_col_int(st, 8);
    out->token_legacy = db_stmt_col_int(st, 9) == 0;
    out->sold_out = db_stmt_col_int(st, 10) != 0;
    out->turned_away = db_stmt_col_int(st, 11);
    out->turned_away_units = db_stmt_col_int(st, 12);
    out->sent_us = db_stmt_col_is_null(st, 13) ? 0 : db_stmt_col_int(st, 13);
    out->topup = db_stmt_col_int(st, 14) != 0;
    return 1;
}

int
order_get(order *self, const char *order_id, struct order_view *out, errbuf *err)
{
    unsigned char id[IDENT_BYTES];

    if (order_id_parse(order_id, id, "reading order", err) != RS_OK)
        return RS_ERR;
    return order_get_id(self, id, out, err);
}

int
order_count_by_status(order *self, void (*fn)(void *arg, const char *status, long long count),
                      void *arg, errbuf *err)
{
    db_stmt *st = self->st[ST_COUNTS];
    int n = 0;

    if (db_stmt_exec(st, err, "") < 0)
        return RS_ERR;
    for (; db_stmt_next(st); n++)
        fn(arg, db_stmt_col(st, 0, NULL), db_stmt_col_int(st, 1));
    return n;
}

/* Calls fn for each row of an executed ST_LIST or ST_ONE; returns how many. */
static int
order_lines(db_stmt *st, void (*fn)(void *arg, const struct order_line *line), void *arg)
{
    int n = 0;

    for (; db_stmt_next(st); n++) {
        size_t len;
        const char *id = db_stmt_col(st, 0, &len);
        struct order_line line = {
            .sku = db_stmt_col(st, 1, NULL),
            .quantity = db_stmt_col(st, 2, NULL),
            .status = db_stmt_col(st, 3, NULL),
            .attempts = db_stmt_col(st, 4, NULL),
            .created = db_stmt_col(st, 5, NULL),
            .sent = db_stmt_col(st, 6, NULL),
            .fulfilled = db_stmt_col(st, 7, NULL),
            .delivered = db_stmt_col(st, 8, NULL),
            .last_error = db_stmt_col(st, 9, NULL),
            .delivery = db_stmt_col(st, 10, NULL),
            .created_us = db_stmt_col_int(st, 11),
            .sent_us = db_stmt_col_int(st, 12),
            .fulfilled_us = db_stmt_col_int(st, 13),
        };
        ident_format(id, len, line.order_id);
        fn(arg, &line);
    }
    return n;
}

int
order_each(order *self, long long limit, void (*fn)(void *arg, const struct order_line *line),
           void *arg, errbuf *err)
{
    db_stmt *st = self->st[ST_LIST];

    if (db_stmt_exec(st, err, "i", limit) < 0)
        return RS_ERR;
    order_lines(st, fn, arg);
    return RS_OK;
}

int
order_one(order *self, const char *order_id, void (*fn)(void *arg, const struct order_line *line),
          void *arg, errbuf *err)
{
    unsigned char id[IDENT_BYTES];

    if (order_id_parse(order_id, id, "order", err) != RS_OK)
        return 0;
    if (db_stmt_exec(self->st[ST_ONE], err, "b", id, sizeof(id)) < 0)
        return RS_ERR;
    return order_lines(self->st[ST_ONE], fn, arg) > 0;
}

int
order_timeline(order *self, const char *order_id, order_timeline_fn fn, void *arg, errbuf *err)
{
    db_stmt *st = self->st[ST_TIMELINE];
    unsigned char id[IDENT_BYTES];

    if (order_id_parse(order_id, id, "order", err) != RS_OK)
        return RS_ERR;
    if (db_stmt_exec(st, err, "bbbbbbb", id, sizeof(id), id, sizeof(id), id, sizeof(id), id,
                     sizeof(id), id, sizeof(id), id, sizeof(id), id, sizeof(id)) < 0)
        return RS_ERR;
    while (db_stmt_next(st))
        fn(arg, db_stmt_col_int(st, 0), db_stmt_col(st, 1, NULL), db_stmt_col(st, 2, NULL));
    return RS_OK;
}

/* --- the factory driver -------------------------------------------------------- */

int
order_claim(order *self, const char *order_id, const char *token, enum order_status *status,
            errbuf *err)
{
    unsigned char id[IDENT_BYTES], hash[TOKEN_HASH_BYTES];
    struct order_view v;
    long long n;

    if (order_id_parse(order_id, id, "claiming order", err) != RS_OK)
        return ORDER_REFUSED;
    token_hash(token, hash);
    for (int round = 0; round < 2; round++) {
        n = order_get_id(self, id, &v, err);
        if (n < 0)
            return RS_ERR;
        if (n == 0) {
            errbuf_set(err, "order %s not found", order_id);
            return ORDER_REFUSED;
        }
        *status = v.status;
        if (v.status == ORDER_SENT || v.status == ORDER_FULFILLED)
            return ORDER_SETTLED;
        if (v.token_hash_len > 0) {
            if (token_verify(token, v.token_hash, v.token_hash_len))
                return ORDER_CLAIMED;
            errbuf_set(err,
                       "order %s already has another callback token (a second message for "
                       "it?)",
                       order_id);
            return ORDER_REFUSED;
        }
        if (round == 1)
            break;
        n = db_stmt_exec(self->st[ST_CLAIM], err, "bb", hash, sizeof(hash), id, sizeof(id));
        if (n < 0)
            return RS_ERR;
        if (n == 1)
            return ORDER_CLAIMED;
        /* Another delivery stored a hash meanwhile: read which. */
    }
    return errbuf_set(err, "order %s: the token hash could not be stored", order_id);
}

/* One statement that changes the order named order_id, with the id as its only
 * parameter, or (with_text) text and then the id. The messages say what for:
 * "<before> <order id> <after>" ("marking order X failed"). */
static int
order_change(order *self, enum order_stmt st, const char *order_id, int with_text, const char *text,
             const char *before, const char *after, errbuf *err)
{
    unsigned char id[IDENT_BYTES];
    char doing[128];
    long long rows;

    snprintf(doing, sizeof(doing), "%s%s%s", before, *after ? " " : "", after);
    if (order_id_parse(order_id, id, doing, err) != RS_OK)
        return RS_ERR;
    if (with_text)
        rows = db_stmt_exec(self->st[st], err, "sb", text, id, sizeof(id));
    else
        rows = db_stmt_exec(self->st[st], err, "b", id, sizeof(id));
    if (rows < 0)
        return errbuf_prefix(err, "%s %s%s%s", before, order_id, *after ? " " : "", after);
    return RS_OK;
}

/* A change of an order that an event reports, with its event, in one
 * transaction: the order locked, the statement st run (with_text: text, then the
 * id), and when the order's status was one of `from` (a set: bit 1 << status)
 * and, with `changed`, the statement changed the row, the event `kind` (the
 * order's product and quantity, reason) written. Returns 1 when the event was
 * written, 0 when not (an unknown order changes nothing, as the statement alone
 * would), RS_ERR. Run again when the database rolled it back. */
struct order_evented {
    enum order_stmt st;
    int with_text;
    const char *text;
    unsigned from;
    int changed;
    enum outbox_event_kind kind;
    const char *reason;
};

static int
order_evented_tx(order *self, const unsigned char id[IDENT_BYTES], const struct order_evented *c,
                 errbuf *err)
{
    db_stmt *lock = self->st[ST_LOCK_ORDER];
    unsigned char product_id[IDENT_BYTES];
    long long rows, quantity;
    int status, wanted;

    if (db_begin(self->conn, err) != RS_OK)
        return RS_ERR;
    rows = db_stmt_exec(lock, err, "b", id, (size_t)IDENT_BYTES);
    if (rows < 0)
        goto fail;
    if (rows == 0 || !db_stmt_next(lock)) {
        db_rollback(self->conn);
        return 0;
    }
    status = order_status_of(db_stmt_col(lock, 0, NULL));
    quantity = db_stmt_col_int(lock, 1);
    order_col_ident(lock, 2, product_id);
    rows = c->with_text ? db_stmt_exec(self->st[c->st], err, "sb", c->text, id, (size_t)IDENT_BYTES)
                        : db_stmt_exec(self->st[c->st], err, "b", id, (size_t)IDENT_BYTES);
    if (rows < 0)
        goto fail;
    wanted = (c->from & (1u << status)) && (!c->changed || rows > 0);
    if (wanted &&
        order_event(self, c->kind, id, product_id, quantity, c->reason, NULL, err) != RS_OK)
        goto fail;
    if (db_commit(self->conn, err) != RS_OK)
        return RS_ERR;
    return wanted;
fail:
    db_rollback(self->conn);
    return RS_ERR;
}

/* order_evented_tx for the order named order_id (1, 0 or RS_ERR); the messages
 * as order_change's. */
static int
order_evented(order *self, const char *order_id, const struct order_evented *c, const char *before,
              const char *after, errbuf *err)
{
    unsigned char id[IDENT_BYTES];
    char doing[128];
    int rc, attempts = 0;

    snprintf(doing, sizeof(doing), "%s%s%s", before, *after ? " " : "", after);
    if (order_id_parse(order_id, id, doing, err) != RS_OK)
        return RS_ERR;
    do
        rc = order_evented_tx(self, id, c, err);
    while (rc < 0 && db_retry(self->conn, &attempts));
    if (rc < 0)
        return errbuf_prefix(err, "%s %s%s%s", before, order_id, *after ? " " : "", after);
    return rc;
}

int
order_sent(order *self, const char *order_id, const char *factory_ref, errbuf *err)
{
    /* order.sent once, when it becomes sent: not again for a repeated 2xx, nor
     * for an order whose callback came first. */
    return order_evented(self, order_id,
                         &(struct order_evented){.st = ST_SENT,
                                                 .with_text = 1,
                                                 .text = factory_ref,
                                                 .from = 1u << ORDER_OPEN | 1u << ORDER_FAILED,
                                                 .kind = OUTBOX_EVENT_ORDER_SENT},
                         "marking order", "sent", err) < 0
               ? RS_ERR
               : RS_OK;
}

int
order_attempt_failed(order *self, const char *order_id, const char *error, errbuf *err)
{
    char clipped[ORDER_ERROR_CHARS * 4 + 1];

    order_clip(error ? error : "", clipped);
    return order_change(self, ST_ATTEMPT, order_id, 1, clipped, "counting an attempt of order", "",
                        err);
}

int
order_failed(order *self, const char *order_id, const char *reason, errbuf *err)
{
    char clipped[ORDER_ERROR_CHARS * 4 + 1];

    order_clip(reason ? reason : "", clipped);
    return order_evented(self, order_id,
                         &(struct order_evented){.st = ST_FAILED,
                                                 .with_text = 1,
                                                 .text = clipped,
                                                 .from = 1u << ORDER_OPEN,
                                                 .changed = 1,
                                                 .kind = OUTBOX_EVENT_ORDER_FAILED,
                                                 .reason = clipped},
                         "marking order", "failed", err) < 0
               ? RS_ERR
               : RS_OK;
}

int
order_reopen(order *self, const char *order_id, errbuf *err)
{
    return order_change(self, ST_REOPEN, order_id, 0, NULL, "reopening order", "", err);
}

/* --- delivery ------------------------------------------------------------------- */

static int
order_fulfil_once(order *self, const unsigned char *id, const unsigned char *product_id,
                  long long quantity, int flags, struct order_fulfil_outcome *out, errbuf *err)
{
    db_stmt *lock_product = self->st[ST_LOCK_PRODUCT], *lock_order = self->st[ST_LOCK_ORDER];
    db_stmt *add_stock = self->st[ST_ADD_STOCK];
    const char *status;
    long long rows;

    memset(out, 0, sizeof(*out));
    if (db_begin(self->conn, err) != RS_OK)
        return RS_ERR;
    /* The product row first, then the order (the lock order of order.h). */
    rows = db_stmt_exec(lock_product, err, "b", product_id, (size_t)IDENT_BYTES);
    if (rows < 0)
        goto fail;
    if (rows == 0 || !db_stmt_next(lock_product)) {
        errbuf_set(err, "the order's product is gone");
        goto fail;
    }
    out->stock = db_stmt_col_int(lock_product, 0);
    rows = db_stmt_exec(lock_order, err, "b", id, (size_t)IDENT_BYTES);
    if (rows < 0)
        goto fail;
    if (rows == 0 || !db_stmt_next(lock_order)) {
        errbuf_set(err, "the order is gone");
        goto fail;
    }
    status = db_stmt_col(lock_order, 0, NULL);
    out->ordered = db_stmt_col_int(lock_order, 1);
    if (order_status_of(status) == ORDER_FULFILLED) {
        db_rollback(self->conn);
        out->repeated = 1;
        return RS_OK;
    }
    /* More than ordered, not allowed: nothing of it is applied, and the event
     * (delivery_refused instead of stock_arrived) is the operators' alert. */
    out->refused = quantity > out->ordered && !(flags & ORDER_FULFIL_OVER);
    if (!out->refused) {
        if (db_stmt_exec(add_stock, err, "ib", quantity, product_id, (size_t)IDENT_BYTES) != 1)
            goto fail;
        out->stock = (long long)db_stmt_insert_id(add_stock);
        if (db_stmt_exec(self->st[ST_FULFIL], err, "ib", quantity, id, (size_t)IDENT_BYTES) != 1)
            goto fail;
    }
    if (order_event(self, out->refused ? OUTBOX_EVENT_DELIVERY_REFUSED : OUTBOX_EVENT_STOCK_ARRIVED,
                    id, product_id, quantity, NULL, out->event, err) != RS_OK)
        goto fail;
    if (db_commit(self->conn, err) != RS_OK) {
        out->event[0] = '\0';
        return RS_ERR;
    }
    return RS_OK;
fail:
    db_rollback(self->conn);
    return RS_ERR;
}

int
order_fulfil(order *self, const char *order_id, long long quantity, int flags,
             struct order_fulfil_outcome *out, errbuf *err)
{
    unsigned char id[IDENT_BYTES];
    char text[IDENT_TEXT];
    struct order_view v;
    int rc, attempts = 0, tries = 1;

    memset(out, 0, sizeof(*out));
    if (order_id_parse(order_id, id, "fulfilling order", err) != RS_OK)
        return RS_ERR;
    ident_format(id, sizeof(id), text); /* an operator may type it in capitals */
    switch (order_get_id(self, id, &v, err)) {
    case 1:
        break;
    case 0:
        return errbuf_set(err, "unknown order %s", text);
    default:
        return RS_ERR;
    }
    /* A deadlock or certification failure rolled the delivery back:
     * it is run again (db_retry logs each attempt); so is one whose connection
     * broke. Any other failure is final. */
    for (;;) {
        rc = order_fulfil_once(self, id, v.product_id, quantity, flags, out, err);
        if (rc == RS_OK)
            return RS_OK;
        if (db_retry(self->conn, &attempts))
            continue;
        if (!db_failed_connection(self->conn) || tries == ORDER_FULFIL_TRIES)
            return rc;
        log_warn("event=delivery_retry order=%s attempt=%d error=\"%s\"", text, tries++, err->msg);
    }
}

/* --- overdue callbacks ----------------------------------------------------------- */

int
order_each_overdue(order *self, long timeout,
                   void (*fn)(void *arg, const struct order_overdue *late), void *arg, errbuf *err)
{
    db_stmt *st = self->st[ST_OVERDUE];
    int n = 0;

    if (db_stmt_exec(st, err, "i", (long long)timeout) < 0)
        return RS_ERR;
    while (db_stmt_next(st)) {
        size_t len;
        const char *id = db_stmt_col(st, 0, &len);
        struct order_overdue late = {
            .product_name = db_stmt_col(st, 1, NULL),
            .sku = db_stmt_col(st, 2, NULL),
            .factory_name = db_stmt_col(st, 3, NULL),
            .factory_identifier = db_stmt_col(st, 4, NULL),
            .sent_at = (time_t)db_stmt_col_int(st, 5),
            .age = db_stmt_col_int(st, 6),
        };
        if (len != IDENT_BYTES)
            continue;
        ident_format(id, len, late.order_id);
        fn(arg, &late);
        n++;
    }
    return n;
}

int
order_overdue_reported(order *self, const char *order_id, errbuf *err)
{
    /* The UPDATE is the report's claim: whoever changed the row writes the
     * order.overdue event with it, whatever the status is now. */
    return order_evented(
        self, order_id,
        &(struct order_evented){
            .st = ST_REPORTED, .from = ~0u, .changed = 1, .kind = OUTBOX_EVENT_ORDER_OVERDUE},
        "marking order", "reported", err);
}

long long
order_count_overdue(order *self, long timeout, errbuf *err)
{
    db_stmt *st = self->st[ST_OVERDUE_COUNT];

    if (db_stmt_exec(st, err, "i", (long long)timeout) < 0)
        return RS_ERR;
    return db_stmt_next(st) ? db_stmt_col_int(st, 0) : 0;
}
