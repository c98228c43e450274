/* outbox_event: the outbox's rows written, and its kinds (see outbox_event.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "outbox_event.h"

#define OUTBOX_EVENT_COLUMNS "event_id, kind, order_id, product_id, hold_id, quantity, reason"

enum { ST_INSERT, ST_INSERT_WANTED, ST_COUNT };

static const struct db_stmt_def outbox_event_sql[ST_COUNT] = {
    [ST_INSERT] = {"INSERT INTO outbox (" OUTBOX_EVENT_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?)", 0},
    /* The subscription is checked by the insert itself: no round trip more per
     * expired hold, and no row when nobody would hear it. */
    [ST_INSERT_WANTED] =
        {"INSERT INTO outbox (" OUTBOX_EVENT_COLUMNS ")"
         " SELECT ?, ?, ?, ?, ?, ?, ? FROM DUAL WHERE " WEBHOOK_ENDPOINT_SQL_WANTED(
             "'hold.expired'"),
         0},
};

struct outbox_event {
    db_stmt *st[ST_COUNT]; /* they belong to the caller's connection */
};

#define BIT(type) (1u << (type))

static const struct {
    const char *name;
    unsigned types;
} outbox_event_kinds[OUTBOX_EVENT_NKINDS] = {
    [OUTBOX_EVENT_STOCK_EMPTY] = {"stock_empty", BIT(WEBHOOK_STOCK_REORDER_POINT) |
                                                     BIT(WEBHOOK_STOCK_SOLD_OUT) |
                                                     BIT(WEBHOOK_ORDER_OPENED)},
    [OUTBOX_EVENT_REORDER] = {"reorder",
                              BIT(WEBHOOK_STOCK_REORDER_POINT) | BIT(WEBHOOK_ORDER_OPENED)},
    [OUTBOX_EVENT_SOLD_OUT] = {"sold_out", BIT(WEBHOOK_STOCK_SOLD_OUT)},
    [OUTBOX_EVENT_STOCK_ARRIVED] = {"stock_arrived",
                                    BIT(WEBHOOK_STOCK_ARRIVED) | BIT(WEBHOOK_ORDER_FULFILLED)},
    [OUTBOX_EVENT_DELIVERY_REFUSED] = {"delivery_refused", BIT(WEBHOOK_DELIVERY_REFUSED)},
    [OUTBOX_EVENT_ORDER_SENT] = {"order_sent", BIT(WEBHOOK_ORDER_SENT)},
    [OUTBOX_EVENT_ORDER_FAILED] = {"order_failed", BIT(WEBHOOK_ORDER_FAILED)},
    [OUTBOX_EVENT_ORDER_OVERDUE] = {"order_overdue", BIT(WEBHOOK_ORDER_OVERDUE)},
    [OUTBOX_EVENT_HOLD_EXPIRED] = {"hold_expired", BIT(WEBHOOK_HOLD_EXPIRED)},
};

const char *
outbox_event_kind_name(enum outbox_event_kind kind)
{
    return (unsigned)kind < OUTBOX_EVENT_NKINDS ? outbox_event_kinds[kind].name : "unknown";
}

int
outbox_event_kind_parse(const char *name)
{
    for (int i = 0; name != NULL && i < OUTBOX_EVENT_NKINDS; i++)
        if (strcmp(outbox_event_kinds[i].name, name) == 0)
            return i;
    return -1;
}

unsigned
outbox_event_webhook_types(enum outbox_event_kind kind)
{
    return (unsigned)kind < OUTBOX_EVENT_NKINDS ? outbox_event_kinds[kind].types : 0;
}

int
outbox_event_has_order(enum outbox_event_kind kind)
{
    return kind != OUTBOX_EVENT_HOLD_EXPIRED;
}

outbox_event *
outbox_event_new(db *conn, errbuf *err)
{
    outbox_event *self = calloc(1, sizeof(*self));

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    if (db_stmt_table(conn, outbox_event_sql, ST_COUNT, self->st, err) != RS_OK)
        outbox_event_destroy(&self);
    return self;
}

void
outbox_event_destroy(outbox_event **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

int
outbox_event_write(outbox_event *self, const struct outbox_event_row *row, char event[IDENT_TEXT],
                   errbuf *err)
{
    unsigned char id[IDENT_BYTES];
    size_t n = IDENT_BYTES;
    long long rows;

    if (event != NULL)
        event[0] = '\0';
    if ((unsigned)row->kind >= OUTBOX_EVENT_NKINDS)
        return errbuf_set(err, "outbox: no event kind %d", (int)row->kind);
    ident_new(id);
    rows = db_stmt_exec(
        self->st[row->kind == OUTBOX_EVENT_HOLD_EXPIRED ? ST_INSERT_WANTED : ST_INSERT], err,
        "bsbbbis", id, n, outbox_event_kinds[row->kind].name, row->order_id, row->order_id ? n : 0,
        row->product_id, row->product_id ? n : 0, row->hold_id, row->hold_id ? n : 0, row->quantity,
        row->reason);
    if (rows < 0)
        return errbuf_prefix(err, "writing the %s event", outbox_event_kinds[row->kind].name);
    if (rows == 0 && row->kind != OUTBOX_EVENT_HOLD_EXPIRED)
        return errbuf_set(err, "writing the %s event: no row inserted",
                          outbox_event_kinds[row->kind].name);
    if (rows > 0 && event != NULL)
        ident_format(id, sizeof(id), event);
    return rows > 0;
}
