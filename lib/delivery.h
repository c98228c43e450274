/* delivery: recording what the factory delivered for an order, in one
 * transaction: the product's stock += quantity, the order fulfilled, and a
 * stock_arrived event in the outbox. Used by restock-callback for the factory's
 * callbacks, and by `restockctl orders fulfil` for a delivery whose callback was
 * lost. Recording an order twice changes nothing the second time. */
#ifndef RESTOCK_DELIVERY_H
#define RESTOCK_DELIVERY_H

#include "db.h"
#include "errbuf.h"
#include "ident.h"

struct delivery_outcome {
    int repeated;           /* the order was fulfilled before: nothing changed */
    long long stock;        /* the product's stock after the transaction */
    char event[IDENT_TEXT]; /* the stock_arrived event written ("" when repeated) */
};

typedef struct delivery delivery;

/* conn stays the caller's, and is used by one thread at a time. */
delivery *delivery_new(db *conn);
void delivery_destroy(delivery **self_p);

/* Records quantity delivered for order_id. Deadlocks and lock waits are retried a
 * few times. RS_ERR when the order is unknown or the database failed (rolled
 * back: nothing changed). */
int delivery_record(delivery *self, const unsigned char order_id[IDENT_BYTES], long long quantity,
                    struct delivery_outcome *out, errbuf *err);

#endif
