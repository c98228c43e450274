/* replenish: open an order and its outbox event when a product sells out (see
 * replenish.h). */
#include "config.h"

#include <stdlib.h>

#include "bus.h"
#include "ident.h"
#include "log.h"
#include "replenish.h"

struct replenish {
    db *conn;
    bus_pub *bell;
    db_stmt *stock_of; /* the fast path: what is left, and is an order unfinished? */
    db_stmt *lock_product;
    db_stmt *insert_order;
    db_stmt *insert_event;
};

replenish *
replenish_new(db *conn, const char *bus_endpoint, errbuf *err)
{
    replenish *self = calloc(1, sizeof(*self));

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    self->conn = conn;
    self->bell = bus_pub_new(bus_endpoint, err);
    if (self->bell == NULL)
        goto fail;
    self->stock_of = db_stmt_new(conn,
                                 "SELECT p.stock, r.order_id IS NOT NULL FROM product p"
                                 " LEFT JOIN replenishment_order r"
                                 " ON r.open_product_id = p.product_id WHERE p.sku = ?",
                                 DB_IDEMPOTENT);
    self->lock_product = db_stmt_new(conn,
                                     "SELECT stock, factory_id IS NOT NULL FROM product"
                                     " WHERE sku = ? FOR UPDATE",
                                     0);
    /* INSERT IGNORE: the unique key on open_product_id makes a second unfinished
     * order for the product a no-op, whatever the race. */
    self->insert_order =
        db_stmt_new(conn,
                    "INSERT IGNORE INTO replenishment_order"
                    " (order_id, product_id, factory_id, quantity)"
                    " SELECT ?, product_id, factory_id, reorder_quantity FROM product"
                    " WHERE sku = ? AND factory_id IS NOT NULL",
                    0);
    self->insert_event = db_stmt_new(conn,
                                     "INSERT INTO outbox (event_id, kind, order_id, product_id,"
                                     " quantity) SELECT ?, 'stock_empty', order_id, product_id,"
                                     " quantity FROM replenishment_order WHERE order_id = ?",
                                     0);
    if (!self->stock_of || !self->lock_product || !self->insert_order || !self->insert_event) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    return self;
fail:
    replenish_destroy(&self);
    return NULL;
}

void
replenish_destroy(replenish **self_p)
{
    replenish *self = *self_p;

    if (self == NULL)
        return;
    bus_pub_destroy(&self->bell); /* statements belong to the connection */
    free(self);
    *self_p = NULL;
}

int
replenish_request(replenish *self, const char *sku, long quantity, long long *remaining,
                  errbuf *err)
{
    unsigned char order_id[IDENT_BYTES], event_id[IDENT_BYTES];
    char event_text[IDENT_TEXT], order_text[IDENT_TEXT];
    long long rows;
    int has_factory;

    /* The surge after a sell-out ends here: one indexed read per failed checkout
     * (the stock for the answer and the open order at once), no transaction, no
     * lock. */
    rows = db_stmt_exec(self->stock_of, err, "s", sku);
    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(self->stock_of))
        return REPLENISH_UNKNOWN;
    *remaining = db_stmt_col_int(self->stock_of, 0);
    if (db_stmt_col_int(self->stock_of, 1))
        return REPLENISH_PENDING;
    if (*remaining >= quantity)
        return REPLENISH_BACK;

    if (db_begin(self->conn, err) != RS_OK)
        return RS_ERR;
    /* The product row lock orders this against the factory's callback, which
     * adds stock under the same lock: a checkout that saw the shelf empty just
     * before the delivery must not open a second order just after it. */
    rows = db_stmt_exec(self->lock_product, err, "s", sku);
    if (rows < 0)
        goto fail;
    if (rows == 0 || !db_stmt_next(self->lock_product)) {
        db_rollback(self->conn);
        return REPLENISH_UNKNOWN;
    }
    *remaining = db_stmt_col_int(self->lock_product, 0);
    has_factory = (int)db_stmt_col_int(self->lock_product, 1);
    if (*remaining >= quantity) {
        db_rollback(self->conn);
        return REPLENISH_BACK;
    }
    if (!has_factory) {
        db_rollback(self->conn);
        return REPLENISH_NO_FACTORY;
    }
    ident_new(order_id);
    rows = db_stmt_exec(self->insert_order, err, "bs", order_id, sizeof(order_id), sku);
    if (rows < 0)
        goto fail;
    if (rows == 0) {
        db_rollback(self->conn);
        return REPLENISH_PENDING;
    }
    ident_new(event_id);
    rows = db_stmt_exec(self->insert_event, err, "bb", event_id, sizeof(event_id), order_id,
                        sizeof(order_id));
    if (rows == 0)
        errbuf_set(err, "database: the new order of %s is not visible to its own transaction", sku);
    if (rows != 1)
        goto fail;
    if (db_commit(self->conn, err) != RS_OK)
        return RS_ERR;

    ident_format(event_id, sizeof(event_id), event_text);
    ident_format(order_id, sizeof(order_id), order_text);
    log_info("event=replenishment_opened sku=%s order=%s outbox_event=%s", sku, order_text,
             event_text);
    /* After the commit, never before: the worker must find the row it is woken
     * for. A lost doorbell costs one sweep interval, not the order. */
    if (bus_ring(self->bell, BUS_STOCK_EMPTY, event_text) != RS_OK)
        log_warn("event=doorbell_dropped topic=%s outbox_event=%s", BUS_STOCK_EMPTY, event_text);
    return REPLENISH_OPENED;

fail:
    db_rollback(self->conn);
    return RS_ERR;
}

const char *
replenish_state_name(int state)
{
    switch (state) {
    case REPLENISH_OPENED:
    case REPLENISH_PENDING:
        return "requested";
    case REPLENISH_BACK:
        return "restocked";
    case REPLENISH_NO_FACTORY:
        return "unavailable";
    default:
        return "unknown";
    }
}
