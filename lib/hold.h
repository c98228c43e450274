/* hold: units held off the shelf while a buyer pays (docs/design.md §4.1 "Holds"),
 * the only module with SQL on the tables hold and hold_line. */
#ifndef RESTOCK_HOLD_H
#define RESTOCK_HOLD_H

#include "db.h"
#include "errbuf.h"

/* --- reports (restockctl) ----------------------------------------------------- */

/* What operators see of the active holds (status held), read only: `restockctl
 * holds` and the worker's metrics. A hold_report keeps its statements on the
 * caller's db: one per connection, used by its thread only. */
typedef struct hold_report hold_report;

/* conn stays the caller's. NULL with err when out of memory. */
hold_report *hold_report_new(db *conn, errbuf *err);
void hold_report_destroy(hold_report **self_p);

/* One product's active holds; the text is valid during the call. Times are UTC
 * ("2026-12-07T02:40:00Z"). */
struct hold_report_product {
    const char *sku;
    long long holds, units;  /* holds naming it, their units of it */
    const char *oldest;      /* created_at of the oldest */
    double oldest_age;       /* seconds since then */
    const char *next_expiry; /* the earliest expires_at */
    double next_in;          /* seconds until then; negative: past it, not expired yet */
};

/* Calls fn for every product with active holds, by sku. RS_OK or RS_ERR. */
int hold_report_by_product(hold_report *self,
                           void (*fn)(void *arg, const struct hold_report_product *p), void *arg,
                           errbuf *err);

/* One active hold; the text is valid during the call. */
struct hold_report_hold {
    const char *id;       /* canonical UUID text */
    const char *client;   /* the API client's name; NULL: anonymous */
    long long client_id;  /* 0: anonymous */
    const char *customer; /* Restock-Customer as sent (client text: bytes); NULL: none */
    size_t customer_len;
    const char *lines;   /* "SKU x2, SKU2 x1" in the request's order */
    const char *created; /* UTC, as above */
    const char *expires;
    double expires_in; /* seconds; negative: past expires_at, not expired yet */
};

/* Calls fn for the oldest limit active holds, oldest first. RS_OK or RS_ERR. */
int hold_report_oldest(hold_report *self, long long limit,
                       void (*fn)(void *arg, const struct hold_report_hold *h), void *arg,
                       errbuf *err);

/* Totals of the active holds: how many, and how long the oldest past its
 * expires_at has waited for its expiry (0 when none is past it: the worker's lag
 * while it has not expired the hold yet, which the lag histogram only counts
 * once it has). */
struct hold_report_totals {
    long long holds;
    double overdue;
};

int hold_report_totals(hold_report *self, struct hold_report_totals *out, errbuf *err);

/* Calls fn with every product's sku and held units (product.held), by sku, for
 * the gauge restock_units_held{sku}. RS_OK or RS_ERR. */
int hold_report_units_held(hold_report *self,
                           void (*fn)(void *arg, const char *sku, long long held), void *arg,
                           errbuf *err);

#endif
