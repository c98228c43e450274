/* delivery: the stock transaction of a factory delivery (see delivery.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "delivery.h"
#include "log.h"

/* Deadlocks and lock waits are resolved by running the transaction again. */
#define DELIVERY_TRIES 3

struct delivery {
    db *conn;
    db_stmt *product_of;
    db_stmt *lock_product;
    db_stmt *lock_order;
    db_stmt *add_stock;
    db_stmt *fulfil;
    db_stmt *insert_event;
};

delivery *
delivery_new(db *conn)
{
    delivery *self = calloc(1, sizeof(*self));

    if (self == NULL)
        return NULL;
    self->conn = conn;
    self->product_of = db_stmt_new(
        conn, "SELECT product_id FROM replenishment_order WHERE order_id = ?", DB_IDEMPOTENT);
    /* The product row first, then the order: the sold-out transaction of
     * restock-sales takes them in the same order, so the two cannot deadlock, and
     * a checkout that saw the shelf empty just before this delivery cannot open a
     * second order just after it. */
    self->lock_product =
        db_stmt_new(conn, "SELECT stock FROM product WHERE product_id = ? FOR UPDATE", 0);
    self->lock_order = db_stmt_new(
        conn, "SELECT status FROM replenishment_order WHERE order_id = ? FOR UPDATE", 0);
    /* LAST_INSERT_ID(expr) hands the new stock back in the same round trip. */
    self->add_stock = db_stmt_new(
        conn, "UPDATE product SET stock = LAST_INSERT_ID(stock + ?) WHERE product_id = ?", 0);
    self->fulfil = db_stmt_new(conn,
                               "UPDATE replenishment_order SET status = 'fulfilled',"
                               " fulfilled_at = CURRENT_TIMESTAMP(6), delivered_quantity = ?"
                               " WHERE order_id = ?",
                               0);
    self->insert_event = db_stmt_new(conn,
                                     "INSERT INTO outbox (event_id, kind, order_id, product_id,"
                                     " quantity) VALUES (?, 'stock_arrived', ?, ?, ?)",
                                     0);
    if (!self->product_of || !self->lock_product || !self->lock_order || !self->add_stock ||
        !self->fulfil || !self->insert_event)
        delivery_destroy(&self);
    return self;
}

void
delivery_destroy(delivery **self_p)
{
    if (*self_p == NULL)
        return;
    free(*self_p); /* statements belong to the connection */
    *self_p = NULL;
}

static int
delivery_once(delivery *self, const unsigned char *order_id, const char *product_id,
              long long quantity, struct delivery_outcome *out, errbuf *err)
{
    unsigned char event_id[IDENT_BYTES];
    const char *status;
    long long rows;

    memset(out, 0, sizeof(*out));
    if (db_begin(self->conn, err) != RS_OK)
        return RS_ERR;
    rows = db_stmt_exec(self->lock_product, err, "b", product_id, (size_t)IDENT_BYTES);
    if (rows < 0)
        goto fail;
    if (rows == 0 || !db_stmt_next(self->lock_product)) {
        errbuf_set(err, "the order's product is gone");
        goto fail;
    }
    out->stock = db_stmt_col_int(self->lock_product, 0);
    rows = db_stmt_exec(self->lock_order, err, "b", order_id, (size_t)IDENT_BYTES);
    if (rows < 0)
        goto fail;
    if (rows == 0 || !db_stmt_next(self->lock_order)) {
        errbuf_set(err, "the order is gone");
        goto fail;
    }
    status = db_stmt_col(self->lock_order, 0, NULL);
    if (status != NULL && strcmp(status, "fulfilled") == 0) {
        db_rollback(self->conn);
        out->repeated = 1;
        return RS_OK;
    }
    if (db_stmt_exec(self->add_stock, err, "ib", quantity, product_id, (size_t)IDENT_BYTES) != 1)
        goto fail;
    out->stock = (long long)db_stmt_insert_id(self->add_stock);
    if (db_stmt_exec(self->fulfil, err, "ib", quantity, order_id, (size_t)IDENT_BYTES) != 1)
        goto fail;
    ident_new(event_id);
    if (db_stmt_exec(self->insert_event, err, "bbbi", event_id, sizeof(event_id), order_id,
                     (size_t)IDENT_BYTES, product_id, (size_t)IDENT_BYTES, quantity) != 1)
        goto fail;
    if (db_commit(self->conn, err) != RS_OK)
        return RS_ERR;
    ident_format(event_id, sizeof(event_id), out->event);
    return RS_OK;
fail:
    db_rollback(self->conn);
    return RS_ERR;
}

int
delivery_record(delivery *self, const unsigned char order_id[IDENT_BYTES], long long quantity,
                struct delivery_outcome *out, errbuf *err)
{
    char order_text[IDENT_TEXT], product_id[IDENT_BYTES];
    const char *p;
    size_t len;
    long long rows;
    int rc = RS_ERR;

    ident_format(order_id, IDENT_BYTES, order_text);
    rows = db_stmt_exec(self->product_of, err, "b", order_id, (size_t)IDENT_BYTES);
    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(self->product_of))
        return errbuf_set(err, "unknown order %s", order_text);
    p = db_stmt_col(self->product_of, 0, &len);
    if (p == NULL || len != IDENT_BYTES)
        return errbuf_set(err, "order %s has no product", order_text);
    memcpy(product_id, p, IDENT_BYTES); /* the next statement reuses the buffer */
    for (int attempt = 1; attempt <= DELIVERY_TRIES && rc != RS_OK; attempt++) {
        rc = delivery_once(self, order_id, product_id, quantity, out, err);
        if (rc != RS_OK)
            log_warn("event=delivery_retry order=%s attempt=%d error=\"%s\"", order_text, attempt,
                     err->msg);
    }
    return rc;
}
