/* hold: the rows of holds (see hold.h). Times cross the SQL as microseconds since
 * the epoch, UTC: the columns hold UTC (UTC_TIMESTAMP), and TIMESTAMPDIFF from
 * the epoch's DATETIME reads them back without the session's time zone. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hold.h"
#include "timetext.h"

enum {
    ST_NOW,
    ST_READ,
    ST_LOCK,
    ST_LINES,
    ST_EXTEND,
    ST_DUE,
    ST_NEXT,
    ST_ENDED,
    ST_INSERT,
    ST_INSERT_LINE,
    ST_COUNT
};

/* A hold's columns (of h), then its lines' (l, p); the locked read takes the hold's
 * alone (FOR UPDATE of a join would lock its products too, out of the carts' sku
 * order), then its lines; the unlocked read takes both in one statement. */
#define HOLD_COLUMNS                                                                               \
    "SELECT h.client_id, h.customer IS NOT NULL, h.status,"                                        \
    " h.status = 0 AND h.expires_at <= UTC_TIMESTAMP(6), " HOLD_SQL_US("h.expires_at")
#define HOLD_LINE_COLUMNS "l.product_id, p.sku, l.quantity"
#define HOLD_LINE_JOIN                                                                             \
    " JOIN hold_line l ON l.hold_id = h.hold_id JOIN product p ON p.product_id = l.product_id"

static const struct db_stmt_def hold_sql[ST_COUNT] = {
    [ST_NOW] = {"SELECT " HOLD_SQL_US("UTC_TIMESTAMP(6)"), DB_IDEMPOTENT},
    [ST_READ] = {HOLD_COLUMNS ", " HOLD_LINE_COLUMNS " FROM hold h" HOLD_LINE_JOIN
                              " WHERE h.hold_id = ? ORDER BY l.line",
                 DB_IDEMPOTENT},
    [ST_LOCK] = {HOLD_COLUMNS " FROM hold h WHERE h.hold_id = ? FOR UPDATE", 0},
    [ST_LINES] = {"SELECT " HOLD_LINE_COLUMNS " FROM hold h" HOLD_LINE_JOIN
                  " WHERE h.hold_id = ? ORDER BY l.line",
                  DB_IDEMPOTENT},
    [ST_EXTEND] = {"UPDATE hold SET expires_at = ? WHERE hold_id = ? AND status = 0", 0},
    [ST_DUE] = {"SELECT hold_id FROM hold WHERE status = 0 AND expires_at <= UTC_TIMESTAMP(6)"
                " ORDER BY expires_at LIMIT ?",
                DB_IDEMPOTENT},
    [ST_NEXT] = {"SELECT TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), MIN(expires_at))"
                 " FROM hold WHERE status = 0",
                 DB_IDEMPOTENT},
    /* Ended ones whose expires_at is past the retention: found by ix_hold_due
     * (a confirmed hold's ended_at is before its expires_at, so it is kept a
     * little longer than hold_retention after it ended, never less). */
    [ST_ENDED] = {"SELECT hold_id FROM hold WHERE status IN (1, 2, 3)"
                  " AND expires_at < UTC_TIMESTAMP(6) - INTERVAL ? SECOND LIMIT ?",
                  DB_IDEMPOTENT},
    /* The rows of holds and of their lines, each many at once (db_stmt_bulk). */
    [ST_INSERT] = {"INSERT INTO hold (hold_id, client_id, customer, status, expires_at, created_at)"
                   " VALUES (?, ?, ?, 0, ?, ?)",
                   0},
    [ST_INSERT_LINE] = {"INSERT INTO hold_line (hold_id, line, product_id, quantity)"
                        " VALUES (?, ?, ?, ?)",
                        0},
};

struct hold {
    db *conn;
    db_stmt *st[ST_COUNT]; /* they belong to the caller's db and go with it */
};

static const char *const hold_status_names[HOLD_NSTATUS] = {"held", "confirmed", "released",
                                                            "expired"};

const char *
hold_status_name(enum hold_status status)
{
    return (unsigned)status < HOLD_NSTATUS ? hold_status_names[status] : "unknown";
}

hold *
hold_new(db *conn, errbuf *err)
{
    hold *self = calloc(1, sizeof(*self));

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    self->conn = conn;
    if (db_stmt_table(conn, hold_sql, ST_COUNT, self->st, err) != RS_OK) {
        hold_destroy(&self);
        return NULL;
    }
    return self;
}

void
hold_destroy(hold **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

int
hold_now(hold *self, long long *now_us, errbuf *err)
{
    if (db_stmt_exec(self->st[ST_NOW], err, "") < 0)
        return RS_ERR;
    if (!db_stmt_next(self->st[ST_NOW]))
        return errbuf_set(err, "database: no time from UTC_TIMESTAMP");
    *now_us = db_stmt_col_int(self->st[ST_NOW], 0);
    return RS_OK;
}

/* -- text statements over many rows ------------------------------------------------- */

/* " IN (X'…',X'…')" of n ids. */
static void
hold_text_ids(db_text *t, const unsigned char (*ids)[IDENT_BYTES], size_t n)
{
    db_text_str(t, " IN (");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            db_text_str(t, ",");
        db_text_hex(t, ids[i], IDENT_BYTES);
    }
    db_text_str(t, ")");
}

/* The columns of the holds' rows, and of their lines' rows, as db_stmt_bulk
 * takes them: an array of each, in one allocation. */
struct hold_columns {
    const void **ids, **products;
    const char **customers, **expires, **created;
    unsigned long *id_lens;
    long long *clients, *lines, *quantities;
    char (*times)[TIMETEXT_SIZE];
};

static int
hold_columns_new(struct hold_columns *c, size_t rows, errbuf *err)
{
    c->ids = calloc(rows, sizeof(*c->ids));
    c->products = calloc(rows, sizeof(*c->products));
    c->customers = calloc(rows, sizeof(*c->customers));
    c->expires = calloc(rows, sizeof(*c->expires));
    c->created = calloc(rows, sizeof(*c->created));
    c->id_lens = calloc(rows, sizeof(*c->id_lens));
    c->clients = calloc(rows, sizeof(*c->clients));
    c->lines = calloc(rows, sizeof(*c->lines));
    c->quantities = calloc(rows, sizeof(*c->quantities));
    c->times = calloc(2 * rows, sizeof(*c->times));
    if (!c->ids || !c->products || !c->customers || !c->expires || !c->created || !c->id_lens ||
        !c->clients || !c->lines || !c->quantities || !c->times)
        return errbuf_set(err, "out of memory");
    for (size_t i = 0; i < rows; i++)
        c->id_lens[i] = IDENT_BYTES;
    return RS_OK;
}

static void
hold_columns_free(struct hold_columns *c)
{
    free(c->ids), free(c->products), free(c->customers), free(c->expires), free(c->created);
    free(c->id_lens), free(c->clients), free(c->lines), free(c->quantities), free(c->times);
}

int
hold_insert(hold *self, const struct hold_draft *holds, size_t n, errbuf *err)
{
    struct hold_columns c = {0};
    size_t rows = 0;
    int rc = RS_ERR;

    for (size_t i = 0; i < n; i++)
        rows += holds[i].n;
    if (hold_columns_new(&c, rows > n ? rows : n, err) != RS_OK)
        goto done;
    for (size_t i = 0; i < n; i++) {
        c.ids[i] = holds[i].id;
        c.clients[i] = holds[i].client;
        c.customers[i] = holds[i].customer;
        timetext_sql_utc(holds[i].expires_us, c.times[2 * i], TIMETEXT_SIZE);
        timetext_sql_utc(holds[i].created_us, c.times[2 * i + 1], TIMETEXT_SIZE);
        c.expires[i] = c.times[2 * i];
        c.created[i] = c.times[2 * i + 1];
    }
    /* Two statements, each its own round trip (never one multi-statement packet
     * inside a transaction: lib/sale.c's sale_batch_records_tx says why). */
    if (db_stmt_bulk(self->st[ST_INSERT], n, err, "bisss", c.ids, c.id_lens, c.clients, c.customers,
                     c.expires, c.created) < 0)
        goto done;
    rows = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < holds[i].n; j++, rows++) {
            c.ids[rows] = holds[i].id;
            c.lines[rows] = (long long)j;
            c.products[rows] = holds[i].items[j].product_id;
            c.quantities[rows] = holds[i].items[j].quantity;
        }
    if (db_stmt_bulk(self->st[ST_INSERT_LINE], rows, err, "bibi", c.ids, c.id_lens, c.lines,
                     c.products, c.id_lens, c.quantities) < 0)
        goto done;
    rc = RS_OK;
done:
    hold_columns_free(&c);
    return rc;
}

/* -- one hold ------------------------------------------------------------------------ */

int
hold_read(hold *self, const unsigned char id[IDENT_BYTES], long long client, int lock,
          struct hold_record *out, errbuf *err)
{
    db_stmt *st = self->st[lock ? ST_LOCK : ST_READ], *lines = st;
    long long rows = db_stmt_exec(st, err, "b", id, (size_t)IDENT_BYTES);
    int first = 5, causal; /* the lines' first column in ST_READ's rows */

    if (rows < 0)
        return RS_ERR;
    if (rows == 0 && !lock) {
        /* On a Galera node a hold another node just made may not be applied
         * here yet (its client's next request came through another host): asked
         * again, causally, before it is called unknown. Not a locked read: it
         * runs in a transaction, where MariaDB does not wait (sale_hold_act
         * follows a locked miss with an unlocked read). */
        if ((causal = db_causal(self->conn, 1, err)) <= 0)
            return causal;
        rows = db_stmt_exec(st, err, "b", id, (size_t)IDENT_BYTES);
        if (db_causal(self->conn, 0, err) < 0 || rows < 0)
            return RS_ERR;
    }
    if (rows == 0 || !db_stmt_next(st) ||
        (client != HOLD_ANY_CLIENT && db_stmt_col_int(st, 0) != client))
        return 0;
    memcpy(out->id, id, IDENT_BYTES);
    out->client = db_stmt_col_int(st, 0);
    out->has_customer = db_stmt_col_int(st, 1) != 0;
    out->status = (enum hold_status)db_stmt_col_int(st, 2);
    out->due = db_stmt_col_int(st, 3) != 0;
    out->expires_us = db_stmt_col_int(st, 4);
    if ((unsigned)out->status >= HOLD_NSTATUS)
        return errbuf_set(err, "database: a hold's status is %d", (int)out->status);
    if (lock) {
        /* Its lines after its row's lock, without locking their products. */
        lines = self->st[ST_LINES];
        first = 0;
        if (db_stmt_exec(lines, err, "b", id, (size_t)IDENT_BYTES) < 0 || !db_stmt_next(lines))
            return errbuf_set(err, "database: a hold has no lines");
    }
    out->n = 0;
    do {
        struct hold_line *l = &out->lines[out->n];
        size_t len;
        const char *pid = db_stmt_col(lines, first, &len);
        const char *sku = db_stmt_col(lines, first + 1, NULL);

        if (pid == NULL || len != IDENT_BYTES || sku == NULL)
            return errbuf_set(err, "database: a hold's line has no product");
        memcpy(l->product_id, pid, IDENT_BYTES);
        snprintf(l->sku, sizeof(l->sku), "%s", sku);
        l->quantity = db_stmt_col_int(lines, first + 2);
    } while (++out->n < HOLD_LINES_MAX && db_stmt_next(lines));
    return 1;
}

void
hold_end_text(db_text *t, const unsigned char (*ids)[IDENT_BYTES], size_t n, enum hold_status to,
              int before_expiry)
{
    db_text_str(t, "UPDATE hold SET ended_at = UTC_TIMESTAMP(6), status = ");
    db_text_int(t, to);
    db_text_str(t, " WHERE status = 0");
    if (before_expiry)
        db_text_str(t, " AND expires_at > UTC_TIMESTAMP(6)");
    db_text_str(t, " AND hold_id");
    hold_text_ids(t, ids, n);
}

long long
hold_end(hold *self, const unsigned char (*ids)[IDENT_BYTES], size_t n, enum hold_status to,
         int before_expiry, errbuf *err)
{
    db_text t = {0};
    long long rows;

    hold_end_text(&t, ids, n, to, before_expiry);
    rows = db_text_run(self->conn, &t, err);
    db_text_free(&t);
    return rows;
}

int
hold_extend(hold *self, const unsigned char id[IDENT_BYTES], long long expires_us, errbuf *err)
{
    char when[TIMETEXT_SIZE];
    long long rows;

    timetext_sql_utc(expires_us, when, sizeof(when));
    rows = db_stmt_exec(self->st[ST_EXTEND], err, "sb", when, id, (size_t)IDENT_BYTES);
    return rows < 0 ? RS_ERR : rows > 0;
}

/* -- the worker's ------------------------------------------------------------------- */

/* Up to max ids of st's result (an id per row) into ids. */
static long long
hold_ids(db_stmt *st, long long rows, unsigned char (*ids)[IDENT_BYTES], size_t max, errbuf *err)
{
    size_t n = 0, len;

    if (rows < 0)
        return RS_ERR;
    while (n < max && db_stmt_next(st)) {
        const char *id = db_stmt_col(st, 0, &len);

        if (id == NULL || len != IDENT_BYTES)
            return errbuf_set(err, "database: a hold's id is not %d bytes", IDENT_BYTES);
        memcpy(ids[n++], id, IDENT_BYTES);
    }
    return (long long)n;
}

long long
hold_due(hold *self, unsigned char (*ids)[IDENT_BYTES], size_t max, errbuf *err)
{
    db_stmt *st = self->st[ST_DUE];

    return hold_ids(st, db_stmt_exec(st, err, "i", (long long)max), ids, max, err);
}

int
hold_next_due(hold *self, long long *wait_us, errbuf *err)
{
    db_stmt *st = self->st[ST_NEXT];

    if (db_stmt_exec(st, err, "") < 0)
        return RS_ERR;
    if (!db_stmt_next(st) || db_stmt_col_is_null(st, 0))
        return 0;
    *wait_us = db_stmt_col_int(st, 0);
    return 1;
}

long long
hold_prune(hold *self, long retention, errbuf *err)
{
    unsigned char(*ids)[IDENT_BYTES] = malloc(HOLD_PRUNE_BATCH * sizeof(*ids));
    db_stmt *st = self->st[ST_ENDED];
    db_text t = {0};
    long long n;

    if (ids == NULL)
        return errbuf_set(err, "out of memory");
    n = hold_ids(st, db_stmt_exec(st, err, "ii", (long long)retention, (long long)HOLD_PRUNE_BATCH),
                 ids, HOLD_PRUNE_BATCH, err);
    if (n <= 0) {
        free(ids);
        return n;
    }
    if (db_begin(self->conn, err) != RS_OK)
        goto fail;
    db_text_str(&t, "DELETE FROM hold_line WHERE hold_id");
    hold_text_ids(&t, (const unsigned char(*)[IDENT_BYTES])ids, (size_t)n);
    if (db_text_run(self->conn, &t, err) < 0)
        goto fail;
    db_text_str(&t, "DELETE FROM hold WHERE hold_id");
    hold_text_ids(&t, (const unsigned char(*)[IDENT_BYTES])ids, (size_t)n);
    if (db_text_run(self->conn, &t, err) < 0 || db_commit(self->conn, err) != RS_OK)
        goto fail;
    db_text_free(&t);
    free(ids);
    return n;

fail:
    db_rollback(self->conn);
    db_text_free(&t);
    free(ids);
    return RS_ERR;
}

/* --- reports (restockctl) ----------------------------------------------------- */

/* hold.status of an active hold, as SQL text. */
#define HOLD_REPORT_HELD "0"
_Static_assert(HOLD_HELD == 0, "HOLD_REPORT_HELD is HOLD_HELD");

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
