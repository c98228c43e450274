/* order: the replenishment order, the one owner of its row and its states; and
 * its delivery, the one change of product.stock outside lib/sale (which takes
 * stock): the delivered units are added in the transaction that fulfils the
 * order, under the product's lock, so that they go in once and with it. States:
 *
 *   open      -> sent       the factory took it (order_sent; from failed too)
 *   open      -> failed     its message died (order_failed)
 *   failed    -> open       an operator redrove the message (order_reopen)
 *   any other -> fulfilled  the factory delivered (order_fulfil; a fast factory's
 *                           callback may come before order_sent)
 *
 * A product has at most one unfinished order of its crossing (and, with a service
 * level, one top-up beside it: order_topup). It is opened by the sale that takes
 * the stock to or below the product's reorder point (or by the worker's sweep,
 * or a checkout turned away from an empty shelf, when that sale could not), with
 * its stock_empty event, in one transaction; the sale that empties the shelf
 * marks it sold out with a sold_out event (the ad pause); the
 * factory driver claims it with the callback token's hash, counts its attempts,
 * marks it sent or failed; the factory's callback (or an operator) fulfils it,
 * with its stock_arrived event, in one transaction. Whoever commits an event
 * rings its doorbell (bus.h) after the commit: the order does not.
 *
 * Lock order: a transaction that locks a product row and one of its orders locks
 * the product first, then the order. Opening and fulfilling both do, so they
 * cannot deadlock, and a sale that crossed the point just before a delivery
 * cannot open a second order just after it.
 *
 * Orders are named by their id's canonical text, as URLs, messages and logs show
 * it; an id that is not a UUID is refused with a message that quotes it. An
 * order object keeps its prepared statements on the caller's db, so it is used
 * by that db's thread only; make one per connection. */
#ifndef RESTOCK_ORDER_H
#define RESTOCK_ORDER_H

#include <stddef.h>
#include <time.h>

#include "db.h"
#include "errbuf.h"
#include "ident.h"
#include "product.h" /* PRODUCT_SKU_MAX */
#include "token.h"

/* Buffers for the text columns an order read copies out (utf8mb4: 4 bytes per
 * character of the column). */
#define ORDER_SKU_SIZE           PRODUCT_SKU_SIZE /* product.sku */
#define ORDER_FACTORY_IDENT_SIZE (32 * 4 + 1)     /* factory.identifier */
#define ORDER_FACTORY_NAME_SIZE  (100 * 4 + 1)    /* factory.name */
#define ORDER_FACTORY_API_SIZE   (255 * 4 + 1)    /* factory.api */

enum order_status { ORDER_OPEN, ORDER_SENT, ORDER_FULFILLED, ORDER_FAILED };
#define ORDER_NSTATUS 4 /* statuses, numbered from 0 */

typedef struct order order;

/* conn stays the caller's. */
order *order_new(db *conn, errbuf *err);
void order_destroy(order **self_p);

/* "open", "sent", "fulfilled", "failed" (as the row and restockctl say): the one
 * table of their names. order_status_parse: the status of a name, or -1. */
const char *order_status_name(enum order_status status);
int order_status_parse(const char *name);

/* --- open: the reorder point, the sell-out, the turned-away checkout -------- */

/* The reorder-point rule, written once: a product is due an order when its stock
 * is at or below its reorder point, and a sale crossed the point when it took the
 * stock from above it to at or below it (!ORDER_AT_POINT before, ORDER_AT_POINT
 * after). The expression is C and SQL alike: order_reorder and lib/sale (which
 * sale crossed it) evaluate it in C, order_each_due's query has it as text
 * (ORDER_SQL), so that the sale, the order and the sweep cannot disagree. */
#define ORDER_AT_POINT(stock, point) ((stock) <= (point))
/* The text of an expression made of macros (ORDER_SQL(ORDER_AT_POINT(p.stock,
 * p.reorder_point)) is "((p.stock) <= (p.reorder_point))"). */
#define ORDER_SQL(expr)  ORDER_SQL_(expr)
#define ORDER_SQL_(expr) #expr

enum order_open_result {
    ORDER_OPENED,     /* this call opened the order: ring with out->event */
    ORDER_PENDING,    /* an order is unfinished: replenishment is requested */
    ORDER_RESTOCKED,  /* the stock came back meanwhile: enough for the checkout now */
    ORDER_SHORT,      /* stock above 0 but less than asked, and no order: nothing to do */
    ORDER_NO_FACTORY, /* sold out, and the product has no factory to order from */
    ORDER_NO_PRODUCT  /* no such product */
};

struct order_open_outcome {
    long long remaining;    /* the product's stock, for the checkout's answer */
    char event[IDENT_TEXT]; /* the last outbox event written ("" when none): ring it */
};

/* What a sale, or the worker's sweep, found: sku's stock is at or below its
 * reorder point, or 0. In one transaction (product row locked first): opens the
 * product's order unless one is unfinished, sized to bring stock plus what is
 * on order up to reorder_level (reorder_quantity when the level is 0), with its
 * stock_empty event; and, when the stock is 0, marks the unfinished order sold
 * out with a sold_out event (the ad pause), once per order. Returns how many
 * events it wrote (0 when there was nothing to do: the check is made again
 * under the lock), or RS_ERR (nothing was written). out->event names the last. */
int order_reorder(order *self, const char *sku, struct order_open_outcome *out, errbuf *err);

/* A checkout of quantity found too little of sku. While the product is sold out
 * (stock 0) it counts as unmet demand on the unfinished order (turned_away,
 * turned_away_units), and opens the order, as order_reorder, if none is
 * unfinished (a reorder point of -1 orders only then: the first version's
 * policy). Stock above 0 is not a sell-out: nothing is written. The common case,
 * sold out with its order open, costs one indexed read and one single-row
 * update, without a transaction. Returns an enum order_open_result, or RS_ERR
 * (the database failed; nothing was written). */
int order_refused(order *self, const char *sku, long long quantity, struct order_open_outcome *out,
                  errbuf *err);

/* Calls fn for each product (by sku) that order_reorder would act on: with a
 * factory, at or below its reorder point without an unfinished order, or sold
 * out with an order not marked sold out (a crash came between the sale and its
 * order). At most ORDER_DUE_MAX per call. Returns how many, or RS_ERR. */
#define ORDER_DUE_MAX 64
int order_each_due(order *self, void (*fn)(void *arg, const char *sku), void *arg, errbuf *err);

/* Top-ups (docs/design.md §3.7): a product with a service level (and the
 * automatic mode) whose point rose above its stock plus what is on order, while
 * the order its crossing opened is on its way, gets one further order for the
 * difference up to its level (reorder_quantity when it has none), with a reorder
 * event (the factory message). One top-up unfinished at a time, beside the
 * crossing's order; the crossing's rule (one order per crossing) is unchanged, and
 * a product without a service level never gets one. order_each_topup_due calls
 * fn for each product due one (at most ORDER_DUE_MAX); order_topup opens it: 1,
 * 0 when it is not due any more (decided again under the product's lock), or
 * RS_ERR. */
int order_each_topup_due(order *self, void (*fn)(void *arg, const char *sku), void *arg,
                         errbuf *err);
int order_topup(order *self, const char *sku, struct order_open_outcome *out, errbuf *err);

/* --- measurements --------------------------------------------------------- */

/* The lead times (seconds from the order's sending to its callback) of the
 * newest max fulfilled orders of a factory, newest first, into secs. Returns
 * how many, or RS_ERR. */
int order_lead_times(order *self, const unsigned char factory_id[IDENT_BYTES], double *secs,
                     int max, errbuf *err);

/* The order cycles that ended (fulfilled) in the last window seconds, per
 * product, by sku: how many, and how many had a stock-out (a checkout turned away
 * from the empty shelf while the order was on its way, turned_away > 0): the
 * cycle service level achieved is 1 - stockouts / cycles (docs/design.md §3.7).
 * fn is called once per product with at least one cycle. Returns how many, or
 * RS_ERR. */
typedef void (*order_cycles_fn)(void *arg, const char *sku, long long cycles, long long stockouts);
int order_cycles_each(order *self, long window, order_cycles_fn fn, void *arg, errbuf *err);

/* The product's unfinished orders: the crossing's, if any, and a top-up's. */
struct order_unfinished {
    int exists; /* the crossing's order (a top-up alone leaves it 0) */
    unsigned char order_id[IDENT_BYTES];
    long long quantity;          /* on order by it */
    long long turned_away_units; /* asked for while sold out, so far */
    long long topup_quantity;    /* on order by an unfinished top-up, 0: none */
};

/* Fills *out (out->exists 0: none). RS_OK or RS_ERR. */
int order_on_order(order *self, const unsigned char product_id[IDENT_BYTES],
                   struct order_unfinished *out, errbuf *err);

/* The units turned away on an order (finished or not) into *units; 0 when
 * there is no such order. RS_OK or RS_ERR. */
int order_turned_away_units(order *self, const unsigned char order_id[IDENT_BYTES],
                            long long *units, errbuf *err);

/* --- reads ------------------------------------------------------------------ */

/* One order as the factory driver, the callback and the outbox need it. */
struct order_view {
    enum order_status status;
    unsigned char token_hash[TOKEN_HASH_BYTES];
    size_t token_hash_len; /* TOKEN_HASH_BYTES, or 0: no token claimed yet */
    unsigned char product_id[IDENT_BYTES];
    char sku[ORDER_SKU_SIZE];
    unsigned char factory_id[IDENT_BYTES]; /* the factory ordered from */
    char factory_identifier[ORDER_FACTORY_IDENT_SIZE];
    char factory_name[ORDER_FACTORY_NAME_SIZE];
    char factory_api[ORDER_FACTORY_API_SIZE];
    int factory_api_null; /* factory.api is NULL: the configured factory_api applies */
    long long quantity;   /* what was ordered */
    int token_legacy;     /* made before keyed tokens: its token may be random, and
                             only token_hash can check it (token.h) */
    int sold_out;         /* the stock reached 0 while it was unfinished (ad paused) */
    long long turned_away, turned_away_units; /* checkouts refused while sold out */
    long long sent_us; /* when it was (last) sent, microseconds since the epoch; 0: never */
    int topup;         /* a top-up (order_topup), not the crossing's order */
};

/* 1 with *out filled, 0 when there is no such order, RS_ERR. */
int order_get(order *self, const char *order_id, struct order_view *out, errbuf *err);

/* Calls fn for each status with its number of orders (statuses without orders
 * are left out). Returns how many statuses it called fn for, or RS_ERR. */
int order_count_by_status(order *self, void (*fn)(void *arg, const char *status, long long count),
                          void *arg, errbuf *err);

/* An order as restockctl lists it: text, NULL for SQL NULL; valid during fn. */
struct order_line {
    char order_id[IDENT_TEXT];
    const char *sku, *quantity, *status, *attempts, *created, *sent, *fulfilled, *delivered,
        *last_error, /* times as "YYYY-MM-DD HH:MM:SS" */
        *delivery;   /* short, full, over (against quantity), NULL until fulfilled */
    long long created_us, sent_us, fulfilled_us; /* the same, since the epoch (UTC); 0: none */
};

/* Calls fn for the newest limit orders, newest first. RS_OK or RS_ERR. */
int order_each(order *self, long long limit, void (*fn)(void *arg, const struct order_line *line),
               void *arg, errbuf *err);

/* Calls fn once for order order_id: 1, or 0 when there is no such order (or
 * order_id is no order id: err says so), RS_ERR when the database failed. */
int order_one(order *self, const char *order_id,
              void (*fn)(void *arg, const struct order_line *line), void *arg, errbuf *err);

/* What happened to the order, oldest first: at (microseconds since the epoch,
 * UTC), event ("opened", "sold_out", "sent", "failed", "fulfilled", "event
 * <kind>" for each of its outbox events, "email" or "queued" when the worker
 * took one), detail (NULL for none). Valid during fn. RS_OK or RS_ERR. */
typedef void (*order_timeline_fn)(void *arg, long long at, const char *event, const char *detail);
int order_timeline(order *self, const char *order_id, order_timeline_fn fn, void *arg, errbuf *err);

/* --- the factory driver ------------------------------------------------------- */

enum order_claim_result {
    ORDER_CLAIMED, /* the order is this token's and not sent yet: send it */
    ORDER_SETTLED, /* sent or fulfilled already (*status says which): send nothing */
    ORDER_REFUSED, /* no such order, or it has another token: never send it */
};

/* Makes sure the order's stored token hash is token's (the first message to
 * come stores it) before it is sent. Returns an enum order_claim_result, or
 * RS_ERR when the database failed (nothing was decided: try again). */
int order_claim(order *self, const char *order_id, const char *token, enum order_status *status,
                errbuf *err);

/* The factory took the order (factory_ref: its own id for it, or NULL). A
 * callback can overtake this: a fulfilled order stays fulfilled. Counts the
 * attempt. */
int order_sent(order *self, const char *order_id, const char *factory_ref, errbuf *err);

/* An attempt to send it failed and will be tried again: counts it, with error
 * (cut to what the row holds) as its last error. */
int order_attempt_failed(order *self, const char *order_id, const char *error, errbuf *err);

/* Its message is dead: an open order is failed, with reason as its last error;
 * one sent or fulfilled meanwhile stays so. */
int order_failed(order *self, const char *order_id, const char *reason, errbuf *err);

/* An operator redrove its dead message: a failed order is open again. */
int order_reopen(order *self, const char *order_id, errbuf *err);

/* --- delivery ------------------------------------------------------------------ */

struct order_fulfil_outcome {
    int repeated;           /* the order was fulfilled before: nothing changed */
    int refused;            /* more than ordered, not allowed: nothing changed but
                               a delivery_refused event (operators are told) */
    long long ordered;      /* the order's quantity */
    long long stock;        /* the product's stock after the transaction */
    char event[IDENT_TEXT]; /* the stock_arrived (or delivery_refused) event
                               written ("" when repeated): ring it after the call */
};

/* order_fulfil's flags. */
#define ORDER_FULFIL_OVER 1 /* more than ordered is applied (an operator's decision) */

/* The factory delivered quantity for the order (its callback, or an operator
 * for a lost one): in one transaction the product's stock += quantity, the
 * order fulfilled, and a stock_arrived event. Less than ordered is applied (a
 * short delivery: the row's delivery says so). More than ordered is refused
 * unless flags has ORDER_FULFIL_OVER: out->refused, and in one transaction a
 * delivery_refused event with the claimed quantity, which the worker turns into
 * an alert. Deadlocks and lock waits are retried a few times. RS_ERR when the
 * order is unknown or the database failed (rolled back: nothing changed). */
int order_fulfil(order *self, const char *order_id, long long quantity, int flags,
                 struct order_fulfil_outcome *out, errbuf *err);

/* --- overdue callbacks ---------------------------------------------------------- */

/* A sent order whose callback has not come. Strings valid during fn. */
struct order_overdue {
    char order_id[IDENT_TEXT];
    const char *product_name, *sku, *factory_name, *factory_identifier;
    time_t sent_at;
    long long age; /* seconds since sent */
};

/* The most overdue orders one call of order_each_overdue reports. */
#define ORDER_OVERDUE_MAX 32

/* Calls fn for sent orders whose callback has not come within timeout seconds
 * and that were not reported yet, at most ORDER_OVERDUE_MAX per call. Returns
 * how many, or RS_ERR. */
int order_each_overdue(order *self, long timeout,
                       void (*fn)(void *arg, const struct order_overdue *late), void *arg,
                       errbuf *err);

/* Operators are to be told that its callback is overdue: it is not reported
 * again. Returns 1 when this call marked it (tell them), 0 when it was marked
 * already (by another worker: it tells them), or RS_ERR. */
int order_overdue_reported(order *self, const char *order_id, errbuf *err);

/* Orders sent longer than timeout seconds ago whose callback has not come
 * (told to operators or not), or RS_ERR. */
long long order_count_overdue(order *self, long timeout, errbuf *err);

#endif
