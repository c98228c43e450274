/* outbox_event: the one writer of outbox rows (sql/004, sql/015; docs/design.md
 * §4.5 and §4.14). An event is written in the caller's transaction, with the
 * change it reports, so that both commit or neither: lib/order (an order opened,
 * sold out, sent, failed, overdue, delivered, a delivery refused) and lib/sale
 * (a hold expired) call it. Also what every reader of the outbox shares: the
 * kinds' names and the webhook types each kind makes (the worker's fan-out,
 * workers/outbox). A module object keeps prepared statements on the caller's
 * db: one per connection. */
#ifndef RESTOCK_OUTBOX_EVENT_H
#define RESTOCK_OUTBOX_EVENT_H

#include "db.h"
#include "errbuf.h"
#include "ident.h"
#include "webhook_endpoint.h"

/* outbox.kind, as the column's ENUM names them. */
enum outbox_event_kind {
    OUTBOX_EVENT_STOCK_EMPTY,      /* the sale that emptied the shelf opened the order */
    OUTBOX_EVENT_REORDER,          /* the order opened at the reorder point, on sale */
    OUTBOX_EVENT_SOLD_OUT,         /* the shelf emptied under an unfinished order */
    OUTBOX_EVENT_STOCK_ARRIVED,    /* the factory delivered (quantity: delivered) */
    OUTBOX_EVENT_DELIVERY_REFUSED, /* a callback claimed more than ordered */
    OUTBOX_EVENT_ORDER_SENT,       /* the factory took the order */
    OUTBOX_EVENT_ORDER_FAILED,     /* its message died (reason: why) */
    OUTBOX_EVENT_ORDER_OVERDUE,    /* its callback is overdue, reported once */
    OUTBOX_EVENT_HOLD_EXPIRED,     /* a hold expired (no order, no product) */
    OUTBOX_EVENT_NKINDS
};

/* "stock_empty", …; "unknown" for another value. */
const char *outbox_event_kind_name(enum outbox_event_kind kind);

/* The kind of a name, -1 when it is none. */
int outbox_event_kind_parse(const char *name);

/* The webhook types an event of kind makes, a set (bit 1 << enum webhook_type),
 * in the enum's order: stock_empty makes stock.reorder_point, stock.sold_out
 * and order.opened, and so on (docs/design.md §4.14). */
unsigned outbox_event_webhook_types(enum outbox_event_kind kind);

/* 1 when an event of kind refers to an order (every kind but hold_expired). */
int outbox_event_has_order(enum outbox_event_kind kind);

/* One row to write: ids of IDENT_BYTES bytes, or NULL (SQL NULL); reason NULL or
 * at most 500 characters of UTF-8 (outbox.reason). */
struct outbox_event_row {
    enum outbox_event_kind kind;
    const unsigned char *order_id, *product_id, *hold_id;
    long long quantity;
    const char *reason;
};

typedef struct outbox_event outbox_event;

/* Its statements live on conn (the caller's). NULL when out of memory. */
outbox_event *outbox_event_new(db *conn, errbuf *err);
void outbox_event_destroy(outbox_event **self_p);

/* Writes row with a new event id (its text into event, IDENT_TEXT bytes, when
 * not NULL; "" when nothing was written), in the caller's transaction. A
 * hold_expired is written only while an enabled endpoint subscribes to
 * hold.expired, decided by the same statement: expiries are many, and an event
 * nobody hears would only fill the outbox. Returns 1 (written), 0 (not wanted),
 * or RS_ERR. */
int outbox_event_write(outbox_event *self, const struct outbox_event_row *row,
                       char event[IDENT_TEXT], errbuf *err);

#endif
