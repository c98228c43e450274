/* outbox: sweep the outbox table into the spool queues (see outbox.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "ident.h"
#include "log.h"
#include "mailtext.h"
#include "outbox.h"
#include "row.h"
#include "token.h"
#include "timetext.h"

#define OUTBOX_BATCH   100
#define OUTBOX_STR_(x) #x
#define OUTBOX_STR(x)  OUTBOX_STR_(x)

struct outbox {
    const conf *cf;
    db *conn;
    order *orders;
    spool *factory_queue;
    spool *mail_queue;
    db_stmt *pending;
    db_stmt *take;
    db_stmt *ad_status;
    const char *spool_fault; /* queue of the last sweep's failed put, or NULL */
    token_keys keys;         /* the callback token of each order */
};

/* Columns of the pending query, in order. */
enum {
    COL_EVENT,
    COL_KIND,
    COL_ORDER,
    COL_PRODUCT,
    COL_QUANTITY,
    COL_CREATED,
    COL_SKU,
    COL_NAME,
    COL_AD,
    COL_AD_EMAIL,
    COL_STOCK
};

outbox *
outbox_new(const conf *cf, db *conn, order *orders, spool *factory_queue, spool *mail_queue,
           errbuf *err)
{
    outbox *self;

    self = calloc(1, sizeof(*self));
    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    /* Factory messages carry their order's token: without a valid key the
     * worker does not start. */
    if (token_keys_load(cf, &self->keys, err) != RS_OK) {
        free(self);
        return NULL;
    }
    self->cf = cf;
    self->conn = conn;
    self->orders = orders;
    self->factory_queue = factory_queue;
    self->mail_queue = mail_queue;
    /* Everything a message needs is copied into it, so that its delivery does not
     * depend on rows that may change meanwhile; the order's factory comes from the
     * order (order_get). */
    self->pending = db_stmt_new(
        conn,
        "SELECT o.event_id, o.kind, o.order_id, o.product_id, o.quantity,"
        " UNIX_TIMESTAMP(o.created_at), p.sku, p.name, a.ad_id, a.manager_email, p.stock"
        " FROM outbox o"
        " JOIN product p ON p.product_id = o.product_id"
        " LEFT JOIN advertisement a ON a.ad_id = p.ad_id"
        " WHERE o.taken_at IS NULL ORDER BY o.seq LIMIT " OUTBOX_STR(OUTBOX_BATCH),
        DB_IDEMPOTENT);
    self->take = db_stmt_new(conn,
                             "UPDATE outbox SET taken_at = CURRENT_TIMESTAMP(6)"
                             " WHERE event_id = ? AND taken_at IS NULL",
                             0);
    self->ad_status = db_stmt_new(conn, "UPDATE advertisement SET status = ? WHERE ad_id = ?", 0);
    if (!self->pending || !self->take || !self->ad_status) {
        errbuf_set(err, "out of memory");
        outbox_destroy(&self);
    }
    return self;
}

void
outbox_destroy(outbox **self_p)
{
    if (*self_p == NULL)
        return;
    token_keys_wipe(&(*self_p)->keys);
    free(*self_p); /* statements belong to the connection */
    *self_p = NULL;
}

/* The factory message of a stock_empty event, with the order's callback token
 * (token.h): it lives only in this message (and the URL the factory gets); the
 * driver stores its hash before the first request. */
static cJSON *
outbox_factory_message(outbox *self, db_stmt *st, const struct order_view *o,
                       const char *event_text)
{
    char token[TOKEN_HEX + 1], created[64], factory_id[IDENT_TEXT], order_id[IDENT_TEXT];
    cJSON *m = cJSON_CreateObject();
    size_t len;
    const char *id = db_stmt_col(st, COL_ORDER, &len);

    if (m == NULL)
        return NULL;
    ident_format(id, len, order_id);
    token_of_order(&self->keys, order_id, token);
    ident_format(o->factory_id, sizeof(o->factory_id), factory_id);
    timetext_local_zone((time_t)db_stmt_col_int(st, COL_CREATED), created, sizeof(created));
    cJSON_AddStringToObject(m, "event_id", event_text);
    cJSON_AddStringToObject(m, "kind", "stock_empty");
    row_add_ident(m, "order_id", st, COL_ORDER);
    row_add_ident(m, "product_id", st, COL_PRODUCT);
    row_add_str(m, "sku", st, COL_SKU);
    row_add_str(m, "product_name", st, COL_NAME);
    cJSON_AddNumberToObject(m, "quantity", (double)db_stmt_col_int(st, COL_QUANTITY));
    cJSON_AddStringToObject(m, "factory_id", factory_id);
    cJSON_AddStringToObject(m, "factory_identifier", o->factory_identifier);
    cJSON_AddStringToObject(m, "factory_name", o->factory_name);
    if (o->factory_api_null)
        cJSON_AddNullToObject(m, "factory_api");
    else
        cJSON_AddStringToObject(m, "factory_api", o->factory_api);
    cJSON_AddStringToObject(m, "token", token);
    cJSON_AddStringToObject(m, "created_at", created);
    sodium_memzero(token, sizeof(token));
    return m;
}

/* The head of an email of an event for the mail queue, and its vars with what
 * every email names (product, order, time); the caller adds the rest to *vars.
 * to NULL: the ad manager of the event's row. NULL when out of memory. */
static cJSON *
outbox_mail_head(db_stmt *st, const char *event_text, const char *kind, const char *template_name,
                 const char *to, cJSON **vars)
{
    char when[64];
    cJSON *m = cJSON_CreateObject();

    if (m == NULL)
        return NULL;
    timetext_local_zone((time_t)db_stmt_col_int(st, COL_CREATED), when, sizeof(when));
    cJSON_AddStringToObject(m, "event_id", event_text);
    cJSON_AddStringToObject(m, "kind", kind);
    cJSON_AddStringToObject(m, "template", template_name);
    if (to != NULL)
        cJSON_AddStringToObject(m, "to", to);
    else
        row_add_str(m, "to", st, COL_AD_EMAIL);
    *vars = cJSON_AddObjectToObject(m, "vars");
    if (*vars == NULL) {
        cJSON_Delete(m);
        return NULL;
    }
    row_add_str(*vars, "product_name", st, COL_NAME);
    row_add_str(*vars, "sku", st, COL_SKU);
    row_add_ident(*vars, "order_id", st, COL_ORDER);
    cJSON_AddStringToObject(*vars, "time", when);
    return m;
}

/* The ad manager's email of a stock_empty or sold_out (pause) or stock_arrived
 * (resume) event,
 * for the mail queue: the template and its values, rendered when sent. The
 * resume says how many customers the stock-out turned away. */
static cJSON *
outbox_mail_message(db_stmt *st, const struct order_view *o, const char *event_text, int pause)
{
    char quantity[32], stock[32], turned[32], units[32];
    cJSON *vars, *m = outbox_mail_head(st, event_text, pause ? "stock_empty" : "stock_arrived",
                                       pause ? "ad_pause" : "ad_resume", NULL, &vars);

    if (m == NULL)
        return NULL;
    snprintf(quantity, sizeof(quantity), "%lld", db_stmt_col_int(st, COL_QUANTITY));
    snprintf(stock, sizeof(stock), "%lld", db_stmt_col_int(st, COL_STOCK));
    snprintf(turned, sizeof(turned), "%lld", o->turned_away);
    snprintf(units, sizeof(units), "%lld", o->turned_away_units);
    row_add_ident(vars, "ad_id", st, COL_AD);
    cJSON_AddStringToObject(vars, "factory_identifier", o->factory_identifier);
    cJSON_AddStringToObject(vars, "quantity", quantity);
    cJSON_AddStringToObject(vars, "stock", stock);
    cJSON_AddStringToObject(vars, "turned_away", turned);
    cJSON_AddStringToObject(vars, "turned_units", units);
    return m;
}

/* The operators' alert of a delivery_refused event (a callback claimed more than
 * was ordered), for the mail queue; named by the event, told once. */
static cJSON *
outbox_refused_message(outbox *self, db_stmt *st, const struct order_view *o,
                       const char *event_text)
{
    char claimed[32], ordered[32];
    cJSON *vars, *m = outbox_mail_head(st, event_text, "alert", "over_delivery",
                                       conf_str(self->cf, "operator_email"), &vars);

    if (m == NULL)
        return NULL;
    snprintf(claimed, sizeof(claimed), "%lld", db_stmt_col_int(st, COL_QUANTITY));
    snprintf(ordered, sizeof(ordered), "%lld", o->quantity);
    cJSON_AddStringToObject(vars, "factory_name", o->factory_name);
    cJSON_AddStringToObject(vars, "factory_id", o->factory_identifier);
    cJSON_AddStringToObject(vars, "quantity", claimed);
    cJSON_AddStringToObject(vars, "ordered", ordered);
    return m;
}

/* The messages of one batch, waiting for their put: items point into texts. */
struct outbox_batch {
    spool_item factory[OUTBOX_BATCH], mail[OUTBOX_BATCH];
    char *texts[2 * OUTBOX_BATCH];
    char products[OUTBOX_BATCH][IDENT_TEXT], event_texts[OUTBOX_BATCH][IDENT_TEXT];
    size_t n_factory, n_mail, n_texts;
};

static void
outbox_batch_clear(struct outbox_batch *b)
{
    for (size_t i = 0; i < b->n_texts; i++) {
        sodium_memzero(b->texts[i], strlen(b->texts[i])); /* factory messages hold tokens */
        free(b->texts[i]);
    }
    b->n_texts = b->n_factory = b->n_mail = 0;
}

/* Adds message m (consumed), named by its event and keyed by its product. */
static int
outbox_batch_add(struct outbox_batch *b, spool_item *items, size_t *n, size_t row, cJSON *m,
                 errbuf *err)
{
    char *text = m ? cJSON_PrintUnformatted(m) : NULL;

    cJSON_Delete(m);
    if (text == NULL)
        return errbuf_set(err, "out of memory building the message of event %s",
                          b->event_texts[row]);
    b->texts[b->n_texts++] = text;
    items[*n] = (spool_item){
        .id = b->event_texts[row], .key = b->products[row], .body = text, .len = strlen(text)};
    (*n)++;
    return RS_OK;
}

/* An outbox event's kind, and what it fans out into:
 *   stock_empty       the sale that emptied the shelf opened the order: the
 *                     factory message, the ad pause email, the ad paused
 *   reorder           the order opened at the reorder point, on sale: the
 *                     factory message only
 *   sold_out          the stock reached 0 under an open order: the ad pause
 *                     email, the ad paused
 *   stock_arrived     delivered: if the order had sold out, the ad resume email
 *                     (with the customers turned away) and the ad running again;
 *                     an order that arrived before the shelf emptied paused nothing
 *   delivery_refused  the operators' alert; the ad stays as it is */
enum outbox_kind { OUTBOX_EMPTY, OUTBOX_REORDER, OUTBOX_SOLD_OUT, OUTBOX_ARRIVED, OUTBOX_REFUSED };

static enum outbox_kind
outbox_kind_of(const char *kind)
{
    if (kind != NULL && strcmp(kind, "stock_empty") == 0)
        return OUTBOX_EMPTY;
    if (kind != NULL && strcmp(kind, "reorder") == 0)
        return OUTBOX_REORDER;
    if (kind != NULL && strcmp(kind, "sold_out") == 0)
        return OUTBOX_SOLD_OUT;
    if (kind != NULL && strcmp(kind, "delivery_refused") == 0)
        return OUTBOX_REFUSED;
    return OUTBOX_ARRIVED;
}

static const char *const outbox_kind_names[] = {
    [OUTBOX_EMPTY] = "stock_empty",        [OUTBOX_REORDER] = "reorder",
    [OUTBOX_SOLD_OUT] = "sold_out",        [OUTBOX_ARRIVED] = "stock_arrived",
    [OUTBOX_REFUSED] = "delivery_refused",
};

/* The transaction that marks n events taken and sets their ads' status. */
static int
outbox_take(outbox *self, size_t n, unsigned char events[][IDENT_BYTES], const int *has_ad,
            const int *running, unsigned char ads[][IDENT_BYTES], errbuf *err)
{
    if (db_begin(self->conn, err) != RS_OK)
        return RS_ERR;
    for (size_t i = 0; i < n; i++) {
        if (db_stmt_exec(self->take, err, "b", events[i], (size_t)IDENT_BYTES) < 0)
            goto fail;
        if (has_ad[i] && db_stmt_exec(self->ad_status, err, "ib", (long long)running[i], ads[i],
                                      (size_t)IDENT_BYTES) < 0)
            goto fail;
    }
    return db_commit(self->conn, err);
fail:
    db_rollback(self->conn);
    return RS_ERR;
}

/* One batch: returns the number of events taken, or -1. */
static int
outbox_sweep_batch(outbox *self, struct outbox_batch *b, errbuf *err)
{
    unsigned char events[OUTBOX_BATCH][IDENT_BYTES], ads[OUTBOX_BATCH][IDENT_BYTES];
    int running[OUTBOX_BATCH], has_ad[OUTBOX_BATCH];
    const char *kinds[OUTBOX_BATCH];
    db_stmt *st = self->pending;
    long long rows;
    size_t n = 0;
    int rc, attempts = 0;

    rows = db_stmt_exec(st, err, "");
    if (rows <= 0)
        return (int)rows;
    while (n < OUTBOX_BATCH && db_stmt_next(st)) {
        size_t len;
        enum outbox_kind kind = outbox_kind_of(db_stmt_col(st, COL_KIND, NULL));
        const char *ad, *bytes = db_stmt_col(st, COL_EVENT, &len);
        int manager = db_stmt_col(st, COL_AD_EMAIL, NULL) != NULL; /* nobody: no email */
        int mail, found, pause;
        struct order_view view;
        char order_text[IDENT_TEXT];

        if (len != IDENT_BYTES)
            return errbuf_set(err, "outbox: an event id of %zu bytes", len);
        memcpy(events[n], bytes, IDENT_BYTES);
        ident_format(bytes, len, b->event_texts[n]);
        bytes = db_stmt_col(st, COL_PRODUCT, &len);
        ident_format(bytes, len, b->products[n]);
        kinds[n] = outbox_kind_names[kind];
        bytes = db_stmt_col(st, COL_ORDER, &len);
        ident_format(bytes, len, order_text);
        found = order_get(self->orders, order_text, &view, err);
        if (found < 0)
            return RS_ERR;
        /* A connection that broke and was made again under order_get took
         * this batch's rows with it: the next sweep reads them again. */
        if (db_stmt_col(st, COL_EVENT, NULL) == NULL)
            return errbuf_set(err, "outbox: the database connection was lost in a sweep");
        if (found == 0) {
            /* Left waiting, as an event without an order always was. */
            log_warn("event=outbox_orphan outbox_event=%s order=%s", b->event_texts[n], order_text);
            continue;
        }
        ad = db_stmt_col(st, COL_AD, &len);
        pause = kind == OUTBOX_EMPTY || kind == OUTBOX_SOLD_OUT;
        has_ad[n] = (pause || (kind == OUTBOX_ARRIVED && view.sold_out)) && ad != NULL &&
                    len == IDENT_BYTES;
        running[n] = !pause;
        mail = kind == OUTBOX_REFUSED || (has_ad[n] && manager);
        if (has_ad[n])
            memcpy(ads[n], ad, IDENT_BYTES);
        if ((kind == OUTBOX_EMPTY || kind == OUTBOX_REORDER) &&
            outbox_batch_add(b, b->factory, &b->n_factory, n,
                             outbox_factory_message(self, st, &view, b->event_texts[n]),
                             err) != RS_OK)
            return RS_ERR;
        if (mail &&
            outbox_batch_add(b, b->mail, &b->n_mail, n,
                             kind == OUTBOX_REFUSED
                                 ? outbox_refused_message(self, st, &view, b->event_texts[n])
                                 : outbox_mail_message(st, &view, b->event_texts[n], pause),
                             err) != RS_OK)
            return RS_ERR;
        if (kind == OUTBOX_REFUSED)
            b->mail[b->n_mail - 1].key = NULL; /* an alert waits behind no other message */
        n++;
    }
    /* A failed put marks nothing taken: the next sweep puts the same events
     * again, and a message found already there counts once fsync'd again. */
    if (spool_put_batch(self->factory_queue, b->factory, b->n_factory, err) < 0) {
        self->spool_fault = spool_queue(self->factory_queue);
        return RS_ERR;
    }
    if (spool_put_batch(self->mail_queue, b->mail, b->n_mail, err) < 0) {
        self->spool_fault = spool_queue(self->mail_queue);
        return RS_ERR;
    }

    /* Only now, with every message on disk, do the events count as taken. The ad
     * follows its product: paused while sold out (stock 0), running once stock
     * is back. A deadlock or certification failure rolled it back: run again. */
    do
        rc = outbox_take(self, n, events, has_ad, running, ads, err);
    while (rc != RS_OK && db_retry(self->conn, &attempts));
    if (rc != RS_OK)
        return RS_ERR;
    for (size_t i = 0; i < n; i++)
        log_info("event=outbox_taken outbox_event=%s kind=%s product=%s", b->event_texts[i],
                 kinds[i], b->products[i]);
    return (int)n;
}

int
outbox_sweep(outbox *self, errbuf *err)
{
    struct outbox_batch *b = calloc(1, sizeof(*b));
    int total = 0, n;

    self->spool_fault = NULL;
    if (b == NULL)
        return errbuf_set(err, "out of memory");
    do {
        n = outbox_sweep_batch(self, b, err);
        outbox_batch_clear(b);
        if (n < 0) {
            total = RS_ERR;
            break;
        }
        total += n;
    } while (n == OUTBOX_BATCH);
    free(b);
    return total;
}

const char *
outbox_spool_fault(const outbox *self)
{
    return self->spool_fault;
}
