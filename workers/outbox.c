/* outbox: sweep the outbox table into the spool queues (see outbox.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "claim.h"
#include "factory_msg.h"
#include "hold.h"
#include "ident.h"
#include "log.h"
#include "mailtext.h"
#include "outbox.h"
#include "outbox_event.h"
#include "row.h"
#include "token.h"
#include "timetext.h"
#include "webhook_endpoint.h"
#include "webhook_msg.h"
#include "webhook_sig.h"

#define OUTBOX_BATCH   100
#define OUTBOX_STR_(x) #x
#define OUTBOX_STR(x)  OUTBOX_STR_(x)

struct outbox {
    const conf *cf;
    db *conn;
    order *orders;
    spool *factory_queue;
    spool *mail_queue;
    spool *webhook_queue;
    claim *claims;               /* on conn */
    webhook_endpoint *endpoints; /* on conn: who subscribes to a webhook type */
    hold *holds;                 /* on conn: a hold_expired event's lines */
    db_stmt *event;
    db_stmt *take;
    db_stmt *ad_status;
    int release_all;         /* give back lost claims before the next sweep (see below) */
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
    COL_STOCK,
    COL_UNTAKEN, /* taken_at IS NULL: its webhook events are made (§4.14) */
    COL_HOLD,
    COL_REASON,
    COL_CREATED_US /* created_at in microseconds since the epoch (UTC) */
};

outbox *
outbox_new(const conf *cf, db *conn, order *orders, spool *factory_queue, spool *mail_queue,
           spool *webhook_queue, errbuf *err)
{
    outbox *self;
    char owner[CLAIM_OWNER_MAX];

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
    self->webhook_queue = webhook_queue;
    /* Everything a message needs is copied into it, so that its delivery does not
     * depend on rows that may change meanwhile; the order's factory comes from the
     * order (order_get). */
    /* One event at a time, as claimed (claim_take locks only claim rows). */
    self->event = db_stmt_new(
        conn,
        "SELECT o.event_id, o.kind, o.order_id, o.product_id, o.quantity,"
        " UNIX_TIMESTAMP(o.created_at), p.sku, p.name, a.ad_id, a.manager_email, p.stock,"
        " o.taken_at IS NULL, o.hold_id, o.reason,"
        " CAST(UNIX_TIMESTAMP(o.created_at) * 1000000 AS SIGNED)"
        " FROM outbox o"
        " LEFT JOIN product p ON p.product_id = o.product_id"
        " LEFT JOIN advertisement a ON a.ad_id = p.ad_id"
        " WHERE o.event_id = ?",
        DB_IDEMPOTENT);
    self->take = db_stmt_new(conn,
                             "UPDATE outbox SET taken_at = CURRENT_TIMESTAMP(6)"
                             " WHERE event_id = ? AND taken_at IS NULL",
                             0);
    self->ad_status = db_stmt_new(conn, "UPDATE advertisement SET status = ? WHERE ad_id = ?", 0);
    claim_owner_of(cf, owner);
    self->claims = claim_new(conn, owner, conf_int(cf, "lease_time"), err);
    self->endpoints = self->claims ? webhook_endpoint_new(conn, err) : NULL;
    self->holds = self->endpoints ? hold_new(conn, err) : NULL;
    /* A start gives back what this worker held and its spool lost. */
    self->release_all = 1;
    if (!self->event || !self->take || !self->ad_status || !self->holds) {
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
    claim_destroy(&(*self_p)->claims);
    webhook_endpoint_destroy(&(*self_p)->endpoints);
    hold_destroy(&(*self_p)->holds);
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
    char token[TOKEN_HEX + 1], created[64], factory_id[IDENT_TEXT], order_id[IDENT_TEXT],
        product_id[IDENT_TEXT];
    size_t len;
    const char *id = db_stmt_col(st, COL_ORDER, &len);
    cJSON *m;

    ident_format(id, len, order_id);
    id = db_stmt_col(st, COL_PRODUCT, &len);
    ident_format(id, len, product_id);
    token_of_order(&self->keys, order_id, token);
    ident_format(o->factory_id, sizeof(o->factory_id), factory_id);
    timetext_local_zone((time_t)db_stmt_col_int(st, COL_CREATED), created, sizeof(created));
    /* An id that is NULL or not 16 bytes is none: null, as row.h writes it. */
    m = factory_msg_new(&(struct factory_msg_order){
        .event_id = event_text,
        .order_id = order_id[0] ? order_id : NULL,
        .product_id = product_id[0] ? product_id : NULL,
        .sku = db_stmt_col(st, COL_SKU, NULL),
        .product_name = db_stmt_col(st, COL_NAME, NULL),
        .quantity = db_stmt_col_int(st, COL_QUANTITY),
        .factory_id = factory_id,
        .factory_identifier = o->factory_identifier,
        .factory_name = o->factory_name,
        .factory_api = o->factory_api_null ? NULL : o->factory_api,
        .token = token,
        .created_at = created,
    });
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

/* The messages of one batch, waiting for their put: items point into texts and
 * ids; row says which claimed event each item is of. */
struct outbox_batch {
    struct claim_work work[OUTBOX_BATCH];
    spool_item factory[OUTBOX_BATCH], mail[OUTBOX_BATCH];
    size_t factory_row[OUTBOX_BATCH], mail_row[OUTBOX_BATCH];
    char *texts[2 * OUTBOX_BATCH];
    char products[OUTBOX_BATCH][IDENT_TEXT];
    char ids[OUTBOX_BATCH][CLAIM_NQUEUES][IDENT_TEXT + 24];
    size_t n_factory, n_mail, n_texts;
    /* The webhook messages (as many as types × subscribed endpoints), and the
     * endpoints subscribed to each type, read once per batch when needed. */
    struct outbox_hook *hooks;
    spool_item *hook_items;
    size_t n_hooks, cap_hooks;
    struct outbox_subs {
        int read;
        size_t n, cap;
        unsigned char (*ids)[IDENT_BYTES];
    } subs[WEBHOOK_NTYPES];
    struct hold_record hold; /* a hold_expired event's hold */
};

/* One webhook message: its spool id (the webhook-id), key (the endpoint) and body. */
struct outbox_hook {
    char id[WEBHOOK_SIG_ID_SIZE];
    char key[IDENT_TEXT];
    char *text;
};

static void
outbox_batch_clear(struct outbox_batch *b)
{
    for (size_t i = 0; i < b->n_texts; i++) {
        sodium_memzero(b->texts[i], strlen(b->texts[i])); /* factory messages hold tokens */
        free(b->texts[i]);
    }
    b->n_texts = b->n_factory = b->n_mail = 0;
    for (size_t i = 0; i < b->n_hooks; i++)
        free(b->hooks[i].text);
    b->n_hooks = 0;
    for (int t = 0; t < WEBHOOK_NTYPES; t++)
        b->subs[t].read = 0, b->subs[t].n = 0;
}

static void
outbox_batch_free(struct outbox_batch *b)
{
    outbox_batch_clear(b);
    free(b->hooks);
    free(b->hook_items);
    for (int t = 0; t < WEBHOOK_NTYPES; t++)
        free(b->subs[t].ids);
    free(b);
}

/* Adds message m (consumed) of claimed event `row` to queue q: named by the event
 * and the claim's epoch (claim_message_id), keyed by its product, carrying the
 * epoch. */
static int
outbox_batch_add(struct outbox_batch *b, enum claim_queue q, size_t row, cJSON *m, errbuf *err)
{
    char *text = m ? cJSON_PrintUnformatted(m) : NULL;
    spool_item *items = q == CLAIM_FACTORY ? b->factory : b->mail;
    size_t *rows = q == CLAIM_FACTORY ? b->factory_row : b->mail_row;
    size_t *n = q == CLAIM_FACTORY ? &b->n_factory : &b->n_mail;

    cJSON_Delete(m);
    if (text == NULL)
        return errbuf_set(err, "out of memory building the message of event %s",
                          b->work[row].event_text);
    b->texts[b->n_texts++] = text;
    items[*n] = (spool_item){.id = b->ids[row][q],
                             .key = b->products[row],
                             .body = text,
                             .len = strlen(text),
                             .claim = b->work[row].epoch[q]};
    rows[*n] = row;
    (*n)++;
    return RS_OK;
}

/* What an outbox event's kind (outbox_event.h) fans out into, besides its
 * webhook events (§4.14):
 *   stock_empty       the sale that emptied the shelf opened the order: the
 *                     factory message, the ad pause email, the ad paused
 *   reorder           the order opened at the reorder point, on sale: the
 *                     factory message only
 *   sold_out          the stock reached 0 under an open order: the ad pause
 *                     email, the ad paused
 *   stock_arrived     delivered: if the order had sold out, the ad resume email
 *                     (with the customers turned away) and the ad running again;
 *                     an order that arrived before the shelf emptied paused nothing
 *   delivery_refused  the operators' alert; the ad stays as it is
 *   order_sent, order_failed, order_overdue, hold_expired: webhook events only */

/* -- webhook events (§4.14) ------------------------------------------------------ */

/* What a webhook event's data is made of, besides the outbox row: the order
 * (order_get) of an order's event, the hold of a hold_expired (found: 0 when
 * pruned meanwhile, its lines then unknown). */
struct outbox_about {
    const struct order_view *order;
    const struct hold_record *hold;
    int hold_found;
};

static void
outbox_add_time(cJSON *obj, const char *key, long long us)
{
    char text[64];

    if (us <= 0) {
        cJSON_AddNullToObject(obj, key);
        return;
    }
    timetext_utc_us(us, text, sizeof(text));
    cJSON_AddStringToObject(obj, key, text);
}

/* The `data` of webhook event `type` made by the event on st's row: always its
 * event_id, then the type's fields (the table in docs/design.md §4.14). NULL
 * when out of memory. */
static cJSON *
outbox_webhook_data(db_stmt *st, enum outbox_event_kind kind, enum webhook_type type,
                    const struct outbox_about *about, const char *event_text)
{
    const struct order_view *o = about->order;
    long long quantity = db_stmt_col_int(st, COL_QUANTITY);
    cJSON *d = cJSON_CreateObject(), *lines;

    if (d == NULL)
        return NULL;
    cJSON_AddStringToObject(d, "event_id", event_text);
    if (kind == OUTBOX_EVENT_HOLD_EXPIRED) {
        row_add_ident(d, "hold_id", st, COL_HOLD);
        cJSON_AddNumberToObject(d, "quantity", (double)quantity);
        outbox_add_time(d, "expires_at", about->hold_found ? about->hold->expires_us : 0);
        lines = cJSON_AddArrayToObject(d, "lines");
        for (size_t i = 0; lines != NULL && about->hold_found && i < about->hold->n; i++) {
            const struct hold_line *l = &about->hold->lines[i];
            char product_id[IDENT_TEXT];
            cJSON *line = cJSON_CreateObject();

            ident_format((const char *)l->product_id, IDENT_BYTES, product_id);
            cJSON_AddStringToObject(line, "sku", l->sku);
            cJSON_AddStringToObject(line, "product_id", product_id);
            cJSON_AddNumberToObject(line, "quantity", (double)l->quantity);
            cJSON_AddItemToArray(lines, line);
        }
        return d;
    }
    row_add_ident(d, "order_id", st, COL_ORDER);
    row_add_ident(d, "product_id", st, COL_PRODUCT);
    row_add_str(d, "sku", st, COL_SKU);
    row_add_str(d, "product_name", st, COL_NAME);
    switch (type) {
    case WEBHOOK_STOCK_REORDER_POINT:
    case WEBHOOK_STOCK_SOLD_OUT:
    case WEBHOOK_STOCK_ARRIVED:
        /* on order (the point, the sell-out), or delivered (arrived) */
        cJSON_AddNumberToObject(d, "quantity", (double)quantity);
        break;
    case WEBHOOK_ORDER_OPENED:
        cJSON_AddStringToObject(d, "factory_identifier", o->factory_identifier);
        cJSON_AddNumberToObject(d, "quantity", (double)quantity);
        cJSON_AddStringToObject(d, "reason",
                                kind == OUTBOX_EVENT_STOCK_EMPTY ? "sold_out"
                                : o->topup                       ? "top_up"
                                                                 : "reorder_point");
        break;
    case WEBHOOK_ORDER_SENT:
    case WEBHOOK_ORDER_OVERDUE:
        cJSON_AddStringToObject(d, "factory_identifier", o->factory_identifier);
        cJSON_AddNumberToObject(d, "quantity", (double)quantity);
        outbox_add_time(d, "sent_at", o->sent_us);
        break;
    case WEBHOOK_ORDER_FAILED:
        cJSON_AddStringToObject(d, "factory_identifier", o->factory_identifier);
        cJSON_AddNumberToObject(d, "quantity", (double)quantity);
        row_add_str(d, "reason", st, COL_REASON);
        break;
    case WEBHOOK_ORDER_FULFILLED:
        cJSON_AddStringToObject(d, "factory_identifier", o->factory_identifier);
        cJSON_AddNumberToObject(d, "quantity", (double)o->quantity);
        cJSON_AddNumberToObject(d, "delivered", (double)quantity);
        break;
    case WEBHOOK_DELIVERY_REFUSED:
        cJSON_AddStringToObject(d, "factory_identifier", o->factory_identifier);
        cJSON_AddNumberToObject(d, "quantity", (double)o->quantity);
        cJSON_AddNumberToObject(d, "claimed", (double)quantity);
        cJSON_AddStringToObject(d, "reason", "the callback claimed more than was ordered");
        break;
    default:
        break;
    }
    return d;
}

/* The payload of webhook event `type` (the exact text POSTed, signed and sent
 * again as it is on every retry): {"type","timestamp","data"}, timestamp the
 * event's created_at in UTC with microseconds. malloc'd; NULL when out of memory. */
static char *
outbox_webhook_payload(db_stmt *st, enum outbox_event_kind kind, enum webhook_type type,
                       const struct outbox_about *about, const char *event_text)
{
    cJSON *p = cJSON_CreateObject(), *d = outbox_webhook_data(st, kind, type, about, event_text);
    char *text = NULL;

    if (p != NULL && d != NULL) {
        cJSON_AddStringToObject(p, "type", webhook_endpoint_type_name(type));
        outbox_add_time(p, "timestamp", db_stmt_col_int(st, COL_CREATED_US));
        cJSON_AddItemToObject(p, "data", d);
        d = NULL;
        text = cJSON_PrintUnformatted(p);
    }
    cJSON_Delete(d);
    cJSON_Delete(p);
    return text;
}

static void
outbox_subs_add(void *arg, const unsigned char id[IDENT_BYTES])
{
    struct outbox_subs *subs = arg;

    if (subs->n == subs->cap) {
        size_t cap = subs->cap ? 2 * subs->cap : 8;
        void *more = realloc(subs->ids, cap * sizeof(*subs->ids));

        if (more == NULL) {
            subs->cap = (size_t)-1; /* marks the failure for outbox_subs_of */
            return;
        }
        subs->ids = more, subs->cap = cap;
    }
    memcpy(subs->ids[subs->n++], id, IDENT_BYTES);
}

/* The enabled endpoints subscribed to type, read once per batch. NULL on failure. */
static const struct outbox_subs *
outbox_subs_of(outbox *self, struct outbox_batch *b, enum webhook_type type, errbuf *err)
{
    struct outbox_subs *subs = &b->subs[type];

    if (subs->read)
        return subs;
    subs->n = 0;
    if (webhook_endpoint_subscribed(self->endpoints, type, outbox_subs_add, subs, err) != RS_OK)
        return NULL;
    if (subs->cap == (size_t)-1) {
        subs->cap = 0, free(subs->ids), subs->ids = NULL, subs->n = 0;
        errbuf_set(err, "out of memory reading the endpoints of %s",
                   webhook_endpoint_type_name(type));
        return NULL;
    }
    subs->read = 1;
    return subs;
}

/* Adds the message of webhook event `type` of event_text to the endpoint id:
 * named by its webhook-id, keyed by the endpoint (one delivery at a time per
 * endpoint, in order), no claim. */
static int
outbox_hook_add(struct outbox_batch *b, const char *event_text, enum webhook_type type,
                const unsigned char endpoint[IDENT_BYTES], const char *payload, errbuf *err)
{
    struct outbox_hook *h;

    if (b->n_hooks == b->cap_hooks) {
        size_t cap = b->cap_hooks ? 2 * b->cap_hooks : 64;
        struct outbox_hook *more = realloc(b->hooks, cap * sizeof(*more));

        if (more == NULL)
            return errbuf_set(err, "out of memory");
        b->hooks = more, b->cap_hooks = cap;
    }
    h = &b->hooks[b->n_hooks];
    ident_format((const char *)endpoint, IDENT_BYTES, h->key);
    if (webhook_msg_make(event_text, h->key, type, payload, h->id, &h->text, err) != RS_OK)
        return RS_ERR;
    b->n_hooks++;
    return RS_OK;
}

/* The webhook messages of the event on st's row, one per type it makes and
 * enabled endpoint subscribed to that type. The payloads are made first: reading
 * the endpoints may reconnect, taking st's row with it. */
static int
outbox_hooks_of(outbox *self, struct outbox_batch *b, db_stmt *st, enum outbox_event_kind kind,
                const struct outbox_about *about, const char *event_text, errbuf *err)
{
    char *payloads[WEBHOOK_NTYPES] = {0};
    unsigned types = outbox_event_webhook_types(kind);
    int rc = RS_OK;

    for (int t = 0; t < WEBHOOK_NTYPES && rc == RS_OK; t++)
        if ((types & (1u << t)) && (payloads[t] = outbox_webhook_payload(
                                        st, kind, (enum webhook_type)t, about, event_text)) == NULL)
            rc = errbuf_set(err, "out of memory building the webhooks of event %s", event_text);
    for (int t = 0; t < WEBHOOK_NTYPES && rc == RS_OK; t++) {
        const struct outbox_subs *subs;

        if (payloads[t] == NULL)
            continue;
        subs = outbox_subs_of(self, b, (enum webhook_type)t, err);
        if (subs == NULL) {
            rc = RS_ERR;
            break;
        }
        for (size_t i = 0; i < subs->n && rc == RS_OK; i++)
            rc = outbox_hook_add(b, event_text, (enum webhook_type)t, subs->ids[i], payloads[t],
                                 err);
    }
    for (int t = 0; t < WEBHOOK_NTYPES; t++)
        free(payloads[t]);
    return rc;
}

/* Writes the batch's webhook messages (spool_put_batch: all or none). */
static int
outbox_hooks_put(outbox *self, struct outbox_batch *b, errbuf *err)
{
    if (b->n_hooks == 0)
        return RS_OK;
    free(b->hook_items);
    b->hook_items = calloc(b->n_hooks, sizeof(*b->hook_items));
    if (b->hook_items == NULL)
        return errbuf_set(err, "out of memory");
    for (size_t i = 0; i < b->n_hooks; i++)
        b->hook_items[i] = (spool_item){.id = b->hooks[i].id,
                                        .key = b->hooks[i].key,
                                        .body = b->hooks[i].text,
                                        .len = strlen(b->hooks[i].text)};
    return spool_put_batch(self->webhook_queue, b->hook_items, b->n_hooks, err) < 0 ? RS_ERR
                                                                                    : RS_OK;
}

/* Marks ended the claims of messages a put found already in the spool and
 * finished (done/ or dead/: a delivery whose end could not be marked, the
 * database being down then), or made before claims existed (no epoch: delivered
 * unchecked, as then). The rest wait for their delivery. */
static void
outbox_batch_ended(spool *sp, const spool_item *items, const size_t *rows, size_t n,
                   int ended[][CLAIM_NQUEUES], enum claim_queue q)
{
    for (size_t i = 0; i < n; i++) {
        spool_msg *m = NULL;
        errbuf err = {{0}};

        if (items[i].added || spool_get(sp, items[i].id, &m, &err) != 1)
            continue;
        if (spool_msg_state(m) == SPOOL_DONE || spool_msg_state(m) == SPOOL_DEAD ||
            spool_msg_claim(m) != items[i].claim)
            ended[rows[i]][q] = 1;
        spool_msg_destroy(&m);
    }
}

/* What sp holds of the message of claim h: OUTBOX_HOLDS_NONE; _WAITING, the
 * message in a folder it is sent from, or corrupt/ (a file named after the event:
 * it waits for an operator, as it did before claims); _ENDED, in done/ or dead/
 * (its delivery ended but the claim's end was not marked: the database was down,
 * or the power went). An error reading it counts as waiting: nothing is given
 * back on a doubt. */
enum { OUTBOX_HOLDS_NONE, OUTBOX_HOLDS_WAITING, OUTBOX_HOLDS_ENDED };

static int
outbox_holds(spool *sp, const struct spool_names *corrupt, const struct claim_held *h)
{
    char id[IDENT_TEXT + 24];
    spool_msg *m = NULL;
    errbuf err = {{0}};
    int got, ended;

    claim_message_id(h->event_text, h->epoch, id, sizeof(id));
    got = spool_get(sp, id, &m, &err);
    ended = got == 1 && (spool_msg_state(m) == SPOOL_DONE || spool_msg_state(m) == SPOOL_DEAD);
    spool_msg_destroy(&m);
    if (got != 0)
        return ended ? OUTBOX_HOLDS_ENDED : OUTBOX_HOLDS_WAITING;
    for (size_t i = 0; i < corrupt->n; i++)
        if (strncmp(corrupt->v[i], h->event_text, IDENT_TEXT - 1) == 0)
            return OUTBOX_HOLDS_WAITING;
    return OUTBOX_HOLDS_NONE;
}

/* At start, and after claims could not be given back: the claims this worker
 * holds whose message its spool does not have (a new disk, a put that failed)
 * are given back, for a sweep (the next one, its own or another worker's) to
 * take and derive again; those whose message has ended are marked ended. The
 * others stay held: they are delivered from here. */
static int
outbox_give_back_lost(outbox *self, errbuf *err)
{
    struct spool_names corrupt[CLAIM_NQUEUES] = {{0}};
    spool *queues[CLAIM_NQUEUES] = {self->factory_queue, self->mail_queue};
    size_t n = 0, given = 0, ended = 0;
    struct claim_held *held = claim_held_list(self->claims, &n, err);
    int rc = RS_OK;

    if (held == NULL)
        return RS_ERR;
    for (int q = 0; q < CLAIM_NQUEUES && n > 0; q++)
        if (spool_names_of(queues[q], SPOOL_CORRUPT, &corrupt[q], err) != RS_OK) {
            rc = errbuf_prefix(err, "listing corrupt files");
            goto done;
        }
    for (size_t i = 0; i < n; i++) {
        switch (outbox_holds(queues[held[i].queue], &corrupt[held[i].queue], &held[i])) {
        case OUTBOX_HOLDS_WAITING:
            continue;
        case OUTBOX_HOLDS_ENDED:
            if (claim_done(self->claims, held[i].event_text, held[i].queue, held[i].epoch, err) <
                0) {
                rc = RS_ERR;
                goto done;
            }
            ended++;
            continue;
        default:
            break;
        }
        if (claim_release(self->claims, held[i].event, held[i].queue, held[i].epoch, err) !=
            RS_OK) {
            rc = RS_ERR;
            goto done;
        }
        given++;
    }
    log_info("event=claims_checked held=%zu given_back=%zu ended=%zu", n, given, ended);
done:
    for (int q = 0; q < CLAIM_NQUEUES; q++)
        spool_names_clear(&corrupt[q]);
    free(held);
    return rc;
}

/* One batch: claims outbox work (claim.h), derives its messages from the
 * database, writes them, then marks what was done. Returns the number of events
 * claimed, or -1 (the claims are given back: the next sweep takes them again). */
static int
outbox_sweep_batch(outbox *self, struct outbox_batch *b, errbuf *err)
{
    unsigned char ads[OUTBOX_BATCH][IDENT_BYTES];
    int running[OUTBOX_BATCH], has_ad[OUTBOX_BATCH], derived[OUTBOX_BATCH], orphan[OUTBOX_BATCH];
    int made[OUTBOX_BATCH][CLAIM_NQUEUES], ended[OUTBOX_BATCH][CLAIM_NQUEUES];
    const char *kinds[OUTBOX_BATCH];
    db_stmt *st = self->event;
    errbuf ignored = {{0}};
    int claimed;

    if (self->release_all) {
        if (outbox_give_back_lost(self, err) != RS_OK)
            return RS_ERR;
        self->release_all = 0;
    }
    claimed = claim_take(self->claims, b->work, OUTBOX_BATCH, err);
    if (claimed <= 0)
        return claimed;
    memset(made, 0, sizeof(made));
    memset(ended, 0, sizeof(ended));
    for (size_t n = 0; n < (size_t)claimed; n++) {
        struct claim_work *w = &b->work[n];
        int kind;
        size_t len;
        const char *ad, *bytes;
        int manager, mail, found = 1, pause, untaken;
        struct order_view view = {0};
        struct outbox_about about = {.order = &view, .hold = &b->hold};
        char order_text[IDENT_TEXT];
        long long rows;

        derived[n] = orphan[n] = has_ad[n] = 0;
        kinds[n] = "?";
        for (int q = 0; q < CLAIM_NQUEUES; q++)
            claim_message_id(w->event_text, w->epoch[q], b->ids[n][q], sizeof(b->ids[n][q]));
        rows = db_stmt_exec(st, err, "b", w->event, (size_t)IDENT_BYTES);
        if (rows < 0)
            goto give_back;
        if (rows == 0 || !db_stmt_next(st)) {
            orphan[n] = 1; /* cannot be: claimed from the outbox, kept with its product */
            continue;
        }
        kind = outbox_event_kind_parse(db_stmt_col(st, COL_KIND, NULL));
        if (kind < 0) {
            /* A kind of a newer version: left waiting for it. */
            log_warn("event=outbox_orphan outbox_event=%s kind=%s", w->event_text,
                     db_stmt_col(st, COL_KIND, NULL));
            orphan[n] = 1;
            continue;
        }
        manager = db_stmt_col(st, COL_AD_EMAIL, NULL) != NULL; /* nobody: no email */
        untaken = db_stmt_col_int(st, COL_UNTAKEN) != 0;
        bytes = db_stmt_col(st, COL_PRODUCT, &len);
        ident_format(bytes, len, b->products[n]);
        kinds[n] = outbox_event_kind_name((enum outbox_event_kind)kind);
        bytes = db_stmt_col(st, COL_ORDER, &len);
        ident_format(bytes, len, order_text);
        /* An event with no order where none is needed (hold_expired) is no
         * orphan; its hold may have been pruned meanwhile: sent without its lines. */
        if (outbox_event_has_order((enum outbox_event_kind)kind))
            found = order_get(self->orders, order_text, &view, err);
        else if (untaken) {
            bytes = db_stmt_col(st, COL_HOLD, &len);
            about.hold_found = bytes != NULL && len == IDENT_BYTES
                                   ? hold_read(self->holds, (const unsigned char *)bytes,
                                               HOLD_ANY_CLIENT, 0, &b->hold, err)
                                   : 0;
            if (about.hold_found < 0)
                goto give_back;
        }
        if (found < 0)
            goto give_back;
        /* A connection that broke and was made again under order_get took
         * this event's row with it: the claims are given back. */
        if (db_stmt_col(st, COL_EVENT, NULL) == NULL) {
            errbuf_set(err, "outbox: the database connection was lost in a sweep");
            goto give_back;
        }
        if (found == 0) {
            /* Left waiting, as an event without an order always was. */
            log_warn("event=outbox_orphan outbox_event=%s order=%s", w->event_text, order_text);
            orphan[n] = 1;
            continue;
        }
        ad = db_stmt_col(st, COL_AD, &len);
        pause = kind == OUTBOX_EVENT_STOCK_EMPTY || kind == OUTBOX_EVENT_SOLD_OUT;
        has_ad[n] = (pause || (kind == OUTBOX_EVENT_STOCK_ARRIVED && view.sold_out)) &&
                    ad != NULL && len == IDENT_BYTES;
        running[n] = !pause;
        mail = kind == OUTBOX_EVENT_DELIVERY_REFUSED || (has_ad[n] && manager);
        if (has_ad[n])
            memcpy(ads[n], ad, IDENT_BYTES);
        /* Only the queues claimed: a takeover may hold one of the two. */
        if ((kind == OUTBOX_EVENT_STOCK_EMPTY || kind == OUTBOX_EVENT_REORDER) &&
            w->epoch[CLAIM_FACTORY] > 0) {
            if (outbox_batch_add(b, CLAIM_FACTORY, n,
                                 outbox_factory_message(self, st, &view, w->event_text),
                                 err) != RS_OK)
                goto give_back;
            made[n][CLAIM_FACTORY] = 1;
        }
        if (mail && w->epoch[CLAIM_MAIL] > 0) {
            if (outbox_batch_add(b, CLAIM_MAIL, n,
                                 kind == OUTBOX_EVENT_DELIVERY_REFUSED
                                     ? outbox_refused_message(self, st, &view, w->event_text)
                                     : outbox_mail_message(st, &view, w->event_text, pause),
                                 err) != RS_OK)
                goto give_back;
            if (kind == OUTBOX_EVENT_DELIVERY_REFUSED)
                b->mail[b->n_mail - 1].key = NULL; /* an alert waits behind no other message */
            made[n][CLAIM_MAIL] = 1;
        }
        /* Its webhook events: made by any sweep that handles the event before it
         * is taken (fresh, taken back, taken over, or a late take), never after:
         * a re-put on this host finds them there (same ids), and a takeover of
         * an event taken already leaves them to the spool that has them. Last:
         * reading the endpoints may take st's row. */
        if (untaken && outbox_hooks_of(self, b, st, (enum outbox_event_kind)kind, &about,
                                       w->event_text, err) != RS_OK)
            goto give_back;
        derived[n] = 1;
    }
    /* A failed put marks nothing taken: the claims are given back, and the next
     * sweep puts the same events again; a message found already there counts
     * once fsync'd again. */
    if (spool_put_batch(self->factory_queue, b->factory, b->n_factory, err) < 0) {
        self->spool_fault = spool_queue(self->factory_queue);
        goto give_back;
    }
    if (spool_put_batch(self->mail_queue, b->mail, b->n_mail, err) < 0) {
        self->spool_fault = spool_queue(self->mail_queue);
        goto give_back;
    }
    if (outbox_hooks_put(self, b, err) != RS_OK) {
        self->spool_fault = spool_queue(self->webhook_queue);
        goto give_back;
    }
    outbox_batch_ended(self->factory_queue, b->factory, b->factory_row, b->n_factory, ended,
                       CLAIM_FACTORY);
    outbox_batch_ended(self->mail_queue, b->mail, b->mail_row, b->n_mail, ended, CLAIM_MAIL);

    /* Only now, with every message on disk, do the events count as taken. The ad
     * follows its product: paused while sold out (stock 0), running once stock
     * is back; set by the sweep that takes the event first (a takeover of an
     * event taken before leaves it). A queue claimed without a message (no ad
     * manager, say) has nothing to deliver: its claim ends here. */
    if (db_begin(self->conn, err) != RS_OK)
        goto give_back;
    for (int i = 0; i < claimed; i++) {
        struct claim_work *w = &b->work[i];
        long long took;

        if (orphan[i]) {
            if (claim_forget(self->claims, w->event, err) != RS_OK)
                goto fail;
            continue;
        }
        if (!derived[i])
            continue;
        took = db_stmt_exec(self->take, err, "b", w->event, (size_t)IDENT_BYTES);
        if (took < 0)
            goto fail;
        if (took > 0 && has_ad[i] &&
            db_stmt_exec(self->ad_status, err, "ib", (long long)running[i], ads[i],
                         (size_t)IDENT_BYTES) < 0)
            goto fail;
        for (int q = 0; q < CLAIM_NQUEUES; q++)
            if (w->epoch[q] > 0 && (!made[i][q] || ended[i][q]) &&
                claim_done(self->claims, w->event_text, (enum claim_queue)q, w->epoch[q], err) < 0)
                goto fail;
    }
    if (db_commit(self->conn, err) != RS_OK)
        goto give_back;
    for (int i = 0; i < claimed; i++) {
        struct claim_work *w = &b->work[i];
        if (!derived[i])
            continue;
        if (w->fresh)
            log_info("event=outbox_taken outbox_event=%s kind=%s product=%s", w->event_text,
                     kinds[i], b->products[i]);
        else if (w->untaken)
            log_warn("event=outbox_taken_late outbox_event=%s kind=%s product=%s"
                     " reason=\"its messages were delivered, its take was cut off\"",
                     w->event_text, kinds[i], b->products[i]);
        else
            log_info("event=outbox_taken_over outbox_event=%s kind=%s product=%s"
                     " factory_epoch=%lld mail_epoch=%lld",
                     w->event_text, kinds[i], b->products[i], w->epoch[CLAIM_FACTORY],
                     w->epoch[CLAIM_MAIL]);
    }
    return claimed;
fail:
    db_rollback(self->conn);
give_back:
    for (int i = 0; i < claimed; i++)
        for (int q = 0; q < CLAIM_NQUEUES; q++)
            if (b->work[i].epoch[q] > 0 &&
                claim_release(self->claims, b->work[i].event, (enum claim_queue)q,
                              b->work[i].epoch[q], &ignored) != RS_OK)
                self->release_all = 1; /* the database is down: later, from the list */
    return RS_ERR;
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
    outbox_batch_free(b);
    return total;
}

const char *
outbox_spool_fault(const outbox *self)
{
    return self->spool_fault;
}

const char *
outbox_owner(const outbox *self)
{
    return claim_owner(self->claims);
}
