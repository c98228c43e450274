/* replenish: the sold-out branch of checkout. In one transaction it opens a
 * replenishment order for the product unless one is unfinished, and writes the
 * order's stock_empty event into the outbox; after the commit it rings the
 * stock_empty doorbell. Used by one responder thread with its own connection. */
#ifndef RESTOCK_REPLENISH_H
#define RESTOCK_REPLENISH_H

#include "db.h"
#include "errbuf.h"

enum replenish_state {
    REPLENISH_OPENED,     /* this call opened the order */
    REPLENISH_PENDING,    /* an order was already open: nothing to do */
    REPLENISH_BACK,       /* the stock came back meanwhile: no order needed */
    REPLENISH_NO_FACTORY, /* the product has no factory to order from */
    REPLENISH_UNKNOWN     /* no such product */
};

typedef struct replenish replenish;

/* conn stays the caller's; bus_endpoint is where doorbells go. */
replenish *replenish_new(db *conn, const char *bus_endpoint, errbuf *err);
void replenish_destroy(replenish **self_p);

/* Requests stock for sku after a checkout of quantity found too little, and says
 * how much is left (*remaining, for the 409). Returns an enum replenish_state, or
 * -1 (the database failed; nothing was written). */
int replenish_request(replenish *self, const char *sku, long quantity, long long *remaining,
                      errbuf *err);

/* The word the 409 answer carries in "replenishment" for a state. */
const char *replenish_state_name(int state);

#endif
