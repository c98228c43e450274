/* hold: the rows of holds (docs/design.md §4.1 "Holds"), the one module with SQL
 * on the tables hold and hold_line: a hold's rows written, read, locked, ended
 * and extended; the due ones found for the worker; the ended ones deleted after
 * hold_retention. The units a hold keeps off the shelf are lib/sale's: it
 * changes product.stock and product.held in the transaction that writes or ends
 * the hold, with these functions.
 *
 * A hold ends once: hold_end changes only rows whose status is still held, and
 * tells how many it changed, so that two transactions that race to end one hold
 * (a confirm and the worker's expiry) cannot both move its units. Times are the
 * database's clock (hold_now), in microseconds since the epoch, UTC. A hold
 * object keeps its statements on the caller's db: one per connection. */
#ifndef RESTOCK_HOLD_H
#define RESTOCK_HOLD_H

#include <stddef.h>

#include "db.h"
#include "errbuf.h"
#include "ident.h"
#include "product.h"

#define HOLD_LINES_MAX 50    /* lines of a hold, and of a cart (lib/sale) */
#define HOLD_TTL_MIN   30    /* seconds a hold may be asked to last, at least */
#define HOLD_TTL_MAX   86400 /* and at most */

/* The SQL of a DATETIME column (UTC) as microseconds since the epoch. */
#define HOLD_SQL_US(col) "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', " col ")"

enum hold_status { HOLD_HELD, HOLD_CONFIRMED, HOLD_RELEASED, HOLD_EXPIRED };
#define HOLD_NSTATUS 4

/* "held", "confirmed", "released", "expired": the one table of their names. */
const char *hold_status_name(enum hold_status status);

/* One line of a hold to write: its product and units. */
struct hold_item {
    const unsigned char *product_id; /* IDENT_BYTES */
    long long quantity;
};

/* A hold to write (hold_insert). */
struct hold_draft {
    unsigned char id[IDENT_BYTES];
    long long client;     /* the API client, or 0: anonymous */
    const char *customer; /* the client's customer; NULL: none */
    long long created_us, expires_us;
    size_t n;
    const struct hold_item *items;
};

/* A hold as read: its status, when it expires, its lines in the request's order. */
struct hold_line {
    unsigned char product_id[IDENT_BYTES];
    char sku[PRODUCT_SKU_SIZE]; /* the product's, as its row spells it */
    long long quantity;
};

struct hold_record {
    unsigned char id[IDENT_BYTES];
    long long client;
    int has_customer; /* a customer's: its limit rows go when it is released */
    enum hold_status status;
    int due; /* held, and its expires_at is past (by the database's clock) */
    long long expires_us;
    size_t n;
    struct hold_line lines[HOLD_LINES_MAX];
};

typedef struct hold hold;

/* conn stays the caller's. NULL when out of memory. */
hold *hold_new(db *conn, errbuf *err);
void hold_destroy(hold **self_p);

/* The database's clock: microseconds since the epoch, UTC. */
int hold_now(hold *self, long long *now_us, errbuf *err);

/* Writes the n holds, held, with their lines: two statements whatever n, in the
 * caller's transaction. RS_OK or RS_ERR. */
int hold_insert(hold *self, const struct hold_draft *holds, size_t n, errbuf *err);

/* Reads the hold id of client (HOLD_ANY_CLIENT: whoever's; lock: FOR UPDATE, to
 * the end of the caller's transaction) into *out: 1, 0 when there is none (or it
 * is another client's), RS_ERR. */
#define HOLD_ANY_CLIENT (-1)
int hold_read(hold *self, const unsigned char id[IDENT_BYTES], long long client, int lock,
              struct hold_record *out, errbuf *err);

/* Ends the n holds ids that are still held (to: confirmed, released or expired),
 * now; with before_expiry, only those whose expires_at is still ahead (a
 * confirm). Returns how many it ended (the others were not held, or were due),
 * or RS_ERR. */
long long hold_end(hold *self, const unsigned char (*ids)[IDENT_BYTES], size_t n,
                   enum hold_status to, int before_expiry, errbuf *err);
/* Its statement's text, appended to t (the rows it changed are its result's). */
void hold_end_text(db_text *t, const unsigned char (*ids)[IDENT_BYTES], size_t n,
                   enum hold_status to, int before_expiry);

/* A held hold's new expires_at. 1 changed, 0 not held; RS_ERR. */
int hold_extend(hold *self, const unsigned char id[IDENT_BYTES], long long expires_us, errbuf *err);

/* Up to max ids of held holds whose expires_at is past, the oldest first, into
 * ids. How many, or RS_ERR. */
long long hold_due(hold *self, unsigned char (*ids)[IDENT_BYTES], size_t max, errbuf *err);

/* Microseconds until the next held hold expires (0 or less: one is due) into
 * *wait_us: 1, or 0 when no hold is held; RS_ERR. */
int hold_next_due(hold *self, long long *wait_us, errbuf *err);

/* Deletes a batch of the ended holds whose expires_at is more than retention
 * seconds past, with their lines (the worker's watch; call again while it returns
 * HOLD_PRUNE_BATCH). How many, or RS_ERR. */
#define HOLD_PRUNE_BATCH 500
long long hold_prune(hold *self, long retention, errbuf *err);

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
