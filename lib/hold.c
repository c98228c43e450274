/* hold: units held off the shelf while a buyer pays (see hold.h). */
#include "config.h"

#include <stdlib.h>

#include "hold.h"
#include "ident.h"

/* --- reports (restockctl) ----------------------------------------------------- */

/* hold.status of an active hold (sql/013: 0 held). */
#define HOLD_REPORT_HELD "0"

enum { HR_BY_PRODUCT, HR_OLDEST, HR_TOTALS, HR_UNITS_HELD, HR_COUNT };

/* Times are UTC columns, shown as the API shows them, to the second. */
static const struct db_stmt_def hold_report_sql[HR_COUNT] = {
    [HR_BY_PRODUCT] = {"SELECT p.sku, COUNT(*), SUM(l.quantity),"
                       " DATE_FORMAT(MIN(h.created_at), '%Y-%m-%dT%H:%i:%sZ'),"
                       " TIMESTAMPDIFF(MICROSECOND, MIN(h.created_at), UTC_TIMESTAMP(6)),"
                       " DATE_FORMAT(MIN(h.expires_at), '%Y-%m-%dT%H:%i:%sZ'),"
                       " TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), MIN(h.expires_at))"
                       " FROM hold h JOIN hold_line l ON l.hold_id = h.hold_id"
                       " JOIN product p ON p.product_id = l.product_id"
                       " WHERE h.status = " HOLD_REPORT_HELD " GROUP BY p.product_id, p.sku"
                       " ORDER BY p.sku",
                       DB_IDEMPOTENT},
    [HR_OLDEST] = {"SELECT h.hold_id, h.client_id, c.name, h.customer,"
                   " (SELECT GROUP_CONCAT(CONCAT(p.sku, ' x', l.quantity) ORDER BY l.line"
                   " SEPARATOR ', ') FROM hold_line l JOIN product p"
                   " ON p.product_id = l.product_id WHERE l.hold_id = h.hold_id),"
                   " DATE_FORMAT(h.created_at, '%Y-%m-%dT%H:%i:%sZ'),"
                   " DATE_FORMAT(h.expires_at, '%Y-%m-%dT%H:%i:%sZ'),"
                   " TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), h.expires_at)"
                   " FROM hold h LEFT JOIN api_client c ON c.client_id = h.client_id"
                   " WHERE h.status = " HOLD_REPORT_HELD " ORDER BY h.created_at, h.hold_id"
                   " LIMIT ?",
                   DB_IDEMPOTENT},
    /* Both from the index (status, expires_at): cheap enough for every scrape. */
    [HR_TOTALS] = {"SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, MIN(expires_at), UTC_TIMESTAMP(6))"
                   " FROM hold WHERE status = " HOLD_REPORT_HELD,
                   DB_IDEMPOTENT},
    [HR_UNITS_HELD] = {"SELECT sku, held FROM product ORDER BY sku", DB_IDEMPOTENT},
};

struct hold_report {
    db_stmt *st[HR_COUNT]; /* they belong to the caller's db and go with it */
};

hold_report *
hold_report_new(db *conn, errbuf *err)
{
    hold_report *self = calloc(1, sizeof(*self));

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    if (db_stmt_table(conn, hold_report_sql, HR_COUNT, self->st, err) != RS_OK)
        hold_report_destroy(&self);
    return self;
}

void
hold_report_destroy(hold_report **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

int
hold_report_by_product(hold_report *self,
                       void (*fn)(void *arg, const struct hold_report_product *p), void *arg,
                       errbuf *err)
{
    db_stmt *st = self->st[HR_BY_PRODUCT];

    if (db_stmt_exec(st, err, "") < 0)
        return RS_ERR;
    while (db_stmt_next(st)) {
        struct hold_report_product p = {
            .sku = db_stmt_col(st, 0, NULL),
            .holds = db_stmt_col_int(st, 1),
            .units = db_stmt_col_int(st, 2),
            .oldest = db_stmt_col(st, 3, NULL),
            .oldest_age = (double)db_stmt_col_int(st, 4) / 1e6,
            .next_expiry = db_stmt_col(st, 5, NULL),
            .next_in = (double)db_stmt_col_int(st, 6) / 1e6,
        };
        fn(arg, &p);
    }
    return RS_OK;
}

int
hold_report_oldest(hold_report *self, long long limit,
                   void (*fn)(void *arg, const struct hold_report_hold *h), void *arg, errbuf *err)
{
    db_stmt *st = self->st[HR_OLDEST];

    if (db_stmt_exec(st, err, "i", limit) < 0)
        return RS_ERR;
    while (db_stmt_next(st)) {
        size_t id_len = 0, customer_len = 0;
        const char *id = db_stmt_col(st, 0, &id_len);
        const char *customer = db_stmt_col(st, 3, &customer_len);
        char text[IDENT_TEXT];
        struct hold_report_hold h = {
            .id = text,
            .client_id = db_stmt_col_int(st, 1),
            .client = db_stmt_col(st, 2, NULL),
            .customer = customer,
            .customer_len = customer_len,
            .lines = db_stmt_col(st, 4, NULL),
            .created = db_stmt_col(st, 5, NULL),
            .expires = db_stmt_col(st, 6, NULL),
            .expires_in = (double)db_stmt_col_int(st, 7) / 1e6,
        };
        ident_format(id, id_len, text);
        fn(arg, &h);
    }
    return RS_OK;
}

int
hold_report_totals(hold_report *self, struct hold_report_totals *out, errbuf *err)
{
    db_stmt *st = self->st[HR_TOTALS];
    long long overdue_us;

    out->holds = 0;
    out->overdue = 0;
    if (db_stmt_exec(st, err, "") < 0)
        return RS_ERR;
    if (db_stmt_next(st)) {
        out->holds = db_stmt_col_int(st, 0);
        overdue_us = db_stmt_col_is_null(st, 1) ? 0 : db_stmt_col_int(st, 1);
        out->overdue = overdue_us > 0 ? (double)overdue_us / 1e6 : 0;
    }
    return RS_OK;
}

int
hold_report_units_held(hold_report *self, void (*fn)(void *arg, const char *sku, long long held),
                       void *arg, errbuf *err)
{
    db_stmt *st = self->st[HR_UNITS_HELD];

    if (db_stmt_exec(st, err, "") < 0)
        return RS_ERR;
    while (db_stmt_next(st))
        fn(arg, db_stmt_col(st, 0, NULL), db_stmt_col_int(st, 1));
    return RS_OK;
}
