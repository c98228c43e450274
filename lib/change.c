/* change: an operator's changes, each with its audit row in one transaction (see change.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "change.h"

/* What one change did, for its audit row: filled by the change's step. */
struct change_record {
    char target[AUDIT_TARGET_MAX + 1];
    cJSON *before, *after; /* NULL: none */
};

/* One change's work inside the transaction: 1 when it changed something (its
 * record filled), 0 when nothing changed, RS_ERR. */
typedef int (*change_step)(void *arg, struct change_record *rec, errbuf *err);

static int
change_audit(db *conn, const struct audit_who *who, const char *action,
             const struct change_record *rec, errbuf *err)
{
    char *before = rec->before ? cJSON_PrintUnformatted(rec->before) : NULL;
    char *after = rec->after ? cJSON_PrintUnformatted(rec->after) : NULL;
    int rc;

    if ((rec->before && !before) || (rec->after && !after))
        rc = errbuf_set(err, "out of memory");
    else
        rc = audit_write_who(conn, who, action, rec->target, before, after, err);
    free(before);
    free(after);
    return rc;
}

static int
change_once(db *conn, const struct audit_who *who, const char *action, change_step step, void *arg,
            errbuf *err)
{
    struct change_record rec = {0};
    int rc;

    if (db_begin(conn, err) != RS_OK)
        return RS_ERR;
    rc = step(arg, &rec, err);
    if (rc < 0 || (rc == 1 && change_audit(conn, who, action, &rec, err) != RS_OK) ||
        db_commit(conn, err) != RS_OK) {
        db_rollback(conn);
        rc = RS_ERR;
    }
    cJSON_Delete(rec.before);
    cJSON_Delete(rec.after);
    return rc;
}

/* The change and its row in one transaction, run again as a whole when the
 * database rolled it back (a deadlock, a certification failure). */
static int
change_run(db *conn, const struct audit_who *who, const char *action, change_step step, void *arg,
           errbuf *err)
{
    int attempts = 0, rc;

    do
        rc = change_once(conn, who, action, step, arg, err);
    while (rc < 0 && db_retry(conn, &attempts));
    return rc;
}

/* An object for before or after; NULL (no row then) when out of memory. */
static cJSON *
change_object(struct change_record *rec, int after)
{
    cJSON **slot = after ? &rec->after : &rec->before;

    if (*slot == NULL)
        *slot = cJSON_CreateObject();
    return *slot;
}

/* -- products -------------------------------------------------------------------- */

struct change_product {
    reorder *policy;
    const char *sku;
    int argc;
    char **argv;
    struct reorder_line *out;
};

static void
change_settings(cJSON *o, const struct reorder_line *p)
{
    cJSON_AddNumberToObject(o, "reorder_point", (double)p->point);
    cJSON_AddNumberToObject(o, "reorder_level", (double)p->level);
    cJSON_AddNumberToObject(o, "reorder_quantity", (double)p->quantity);
    cJSON_AddBoolToObject(o, "reorder_auto", p->automatic);
    cJSON_AddNumberToObject(o, "reorder_point_min", (double)p->point_min);
    cJSON_AddNumberToObject(o, "reorder_point_max", (double)p->point_max);
    cJSON_AddNumberToObject(o, "max_per_customer", (double)p->max_per_customer);
    if (p->target > 0)
        cJSON_AddNumberToObject(o, "service_level", p->target);
    else
        cJSON_AddNullToObject(o, "service_level");
    if (p->surge > 0)
        cJSON_AddNumberToObject(o, "surge", p->surge);
    else
        cJSON_AddNullToObject(o, "surge");
}

static int
change_product_step(void *arg, struct change_record *rec, errbuf *err)
{
    struct change_product *c = arg;
    struct reorder_line before;
    int found = reorder_get(c->policy, c->sku, &before, err);

    /* An unknown sku: reorder_set says so, as it always has. */
    if (found < 0 || reorder_set(c->policy, c->sku, c->argc, c->argv, c->out, err) != RS_OK)
        return RS_ERR;
    snprintf(rec->target, sizeof(rec->target), "%s", c->sku);
    if (change_object(rec, 0) == NULL || change_object(rec, 1) == NULL)
        return errbuf_set(err, "out of memory");
    change_settings(rec->before, &before);
    change_settings(rec->after, c->out);
    return 1;
}

int
change_product_set(db *conn, reorder *policy, const struct audit_who *who, const char *sku,
                   int argc, char **argv, struct reorder_line *out, errbuf *err)
{
    struct change_product c = {policy, sku, argc, argv, out};

    return change_run(conn, who, "product.set", change_product_step, &c, err) < 0 ? RS_ERR : RS_OK;
}

/* -- orders and dead messages ---------------------------------------------------- */

struct change_fulfil {
    order *orders;
    const char *order_id;
    long long quantity;
    int flags;
    struct order_fulfil_outcome *out;
};

static int
change_fulfil_step(void *arg, struct change_record *rec, errbuf *err)
{
    struct change_fulfil *c = arg;

    if (order_fulfil(c->orders, c->order_id, c->quantity, c->flags, c->out, err) != RS_OK)
        return RS_ERR;
    if (c->out->repeated || c->out->refused)
        return 0; /* nothing delivered (a refusal's event is kept: it tells operators) */
    snprintf(rec->target, sizeof(rec->target), "%s", c->order_id);
    if (change_object(rec, 0) == NULL || change_object(rec, 1) == NULL)
        return errbuf_set(err, "out of memory");
    cJSON_AddNumberToObject(rec->before, "ordered", (double)c->out->ordered);
    cJSON_AddNumberToObject(rec->after, "delivered", (double)c->quantity);
    cJSON_AddBoolToObject(rec->after, "over", (c->flags & ORDER_FULFIL_OVER) != 0);
    cJSON_AddNumberToObject(rec->after, "stock", (double)c->out->stock);
    return 1;
}

int
change_order_fulfil(db *conn, order *orders, const struct audit_who *who, const char *order_id,
                    long long quantity, int flags, struct order_fulfil_outcome *out, errbuf *err)
{
    struct change_fulfil c = {orders, order_id, quantity, flags, out};

    return change_run(conn, who, "order.fulfil", change_fulfil_step, &c, err) < 0 ? RS_ERR : RS_OK;
}

struct change_redrive {
    order *orders;
    const char *queue, *message_id, *order_id;
};

static int
change_redrive_step(void *arg, struct change_record *rec, errbuf *err)
{
    struct change_redrive *c = arg;

    if (c->order_id != NULL && order_reopen(c->orders, c->order_id, err) != RS_OK)
        return RS_ERR;
    snprintf(rec->target, sizeof(rec->target), "%s", c->message_id);
    if (change_object(rec, 0) == NULL || change_object(rec, 1) == NULL)
        return errbuf_set(err, "out of memory");
    cJSON_AddStringToObject(rec->before, "queue", c->queue);
    cJSON_AddStringToObject(rec->before, "state", "dead");
    cJSON_AddStringToObject(rec->after, "queue", c->queue);
    cJSON_AddStringToObject(rec->after, "state", "waiting");
    if (c->order_id != NULL)
        cJSON_AddStringToObject(rec->after, "order_reopened", c->order_id);
    return 1;
}

int
change_redrive(db *conn, order *orders, const struct audit_who *who, const char *queue,
               const char *message_id, const char *order_id, errbuf *err)
{
    struct change_redrive c = {orders, queue, message_id, order_id};

    return change_run(conn, who, "dlq.redrive", change_redrive_step, &c, err) < 0 ? RS_ERR : RS_OK;
}

/* -- API clients ----------------------------------------------------------------- */

struct change_client {
    api_client *clients;
    const char *name; /* add: the name; revoke: the id or the name */
    char *key;
    long long id;
};

static int
change_client_add_step(void *arg, struct change_record *rec, errbuf *err)
{
    struct change_client *c = arg;

    c->id = api_client_add(c->clients, c->name, c->key, err);
    if (c->id < 0)
        return RS_ERR;
    snprintf(rec->target, sizeof(rec->target), "%lld", c->id);
    if (change_object(rec, 1) == NULL)
        return errbuf_set(err, "out of memory");
    cJSON_AddStringToObject(rec->after, "name", c->name);
    cJSON_AddBoolToObject(rec->after, "revoked", 0);
    return 1;
}

long long
change_client_add(db *conn, api_client *clients, const struct audit_who *who, const char *name,
                  char key[API_CLIENT_KEY_LEN + 1], errbuf *err)
{
    struct change_client c = {clients, name, key, 0};

    if (change_run(conn, who, "client.add", change_client_add_step, &c, err) < 0) {
        sodium_memzero(key, API_CLIENT_KEY_LEN + 1); /* rolled back: no such key */
        return RS_ERR;
    }
    return c.id;
}

static int
change_client_revoke_step(void *arg, struct change_record *rec, errbuf *err)
{
    struct change_client *c = arg;
    int rc = api_client_revoke(c->clients, c->name, &c->id, err);

    if (rc != 1)
        return rc;
    snprintf(rec->target, sizeof(rec->target), "%lld", c->id);
    if (change_object(rec, 0) == NULL || change_object(rec, 1) == NULL)
        return errbuf_set(err, "out of memory");
    cJSON_AddBoolToObject(rec->before, "revoked", 0);
    cJSON_AddBoolToObject(rec->after, "revoked", 1);
    return 1;
}

int
change_client_revoke(db *conn, api_client *clients, const struct audit_who *who,
                     const char *id_or_name, long long *id, errbuf *err)
{
    struct change_client c = {clients, id_or_name, NULL, 0};
    int rc = change_run(conn, who, "client.revoke", change_client_revoke_step, &c, err);

    *id = c.id;
    return rc;
}

/* -- webhook endpoints ----------------------------------------------------------- */

struct change_webhook {
    webhook_endpoint *hooks;
    const char *id;
    const char *url, *reason;
    unsigned events;
    const struct webhook_endpoint_key *key;
    char *out_id, *secret;
    int enable;
};

static int
change_webhook_add_step(void *arg, struct change_record *rec, errbuf *err)
{
    struct change_webhook *c = arg;
    char list[WEBHOOK_ENDPOINT_EVENTS_MAX + 1];

    if (webhook_endpoint_add(c->hooks, c->url, c->events, c->key, c->out_id, c->secret, err) !=
        RS_OK)
        return RS_ERR;
    webhook_endpoint_events_format(c->events, list, sizeof(list));
    snprintf(rec->target, sizeof(rec->target), "%s", c->out_id);
    if (change_object(rec, 1) == NULL)
        return errbuf_set(err, "out of memory");
    cJSON_AddStringToObject(rec->after, "url", c->url);
    cJSON_AddStringToObject(rec->after, "events", c->events ? list : "all");
    cJSON_AddStringToObject(rec->after, "status", "enabled");
    return 1;
}

int
change_webhook_add(db *conn, webhook_endpoint *hooks, const struct audit_who *who, const char *url,
                   unsigned events, const struct webhook_endpoint_key *key, char id[IDENT_TEXT],
                   char secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1], errbuf *err)
{
    struct change_webhook c = {
        .hooks = hooks, .url = url, .events = events, .key = key, .out_id = id, .secret = secret};

    if (change_run(conn, who, "webhook.add", change_webhook_add_step, &c, err) < 0) {
        sodium_memzero(secret, WEBHOOK_ENDPOINT_SECRET_LEN + 1); /* rolled back */
        return RS_ERR;
    }
    return RS_OK;
}

static void
change_webhook_status(void *arg, const struct webhook_endpoint_line *w)
{
    *(int *)arg = w->status;
}

static int
change_webhook_state_step(void *arg, struct change_record *rec, errbuf *err)
{
    struct change_webhook *c = arg;
    int before = WEBHOOK_ENABLED, rc;

    if (webhook_endpoint_get(c->hooks, c->id, 0, change_webhook_status, &before, err) < 0)
        return RS_ERR;
    rc = c->enable
             ? webhook_endpoint_enable(c->hooks, c->id, err)
             : webhook_endpoint_disable(c->hooks, c->id, WEBHOOK_DISABLED_OPERATOR, c->reason, err);
    if (rc != 1)
        return rc;
    snprintf(rec->target, sizeof(rec->target), "%s", c->id);
    if (change_object(rec, 0) == NULL || change_object(rec, 1) == NULL)
        return errbuf_set(err, "out of memory");
    cJSON_AddStringToObject(rec->before, "status", webhook_endpoint_status_name(before));
    cJSON_AddStringToObject(rec->after, "status", c->enable ? "enabled" : "disabled");
    if (!c->enable && c->reason != NULL)
        cJSON_AddStringToObject(rec->after, "reason", c->reason);
    return 1;
}

int
change_webhook_disable(db *conn, webhook_endpoint *hooks, const struct audit_who *who,
                       const char *id, const char *reason, errbuf *err)
{
    struct change_webhook c = {.hooks = hooks, .id = id, .reason = reason, .enable = 0};

    return change_run(conn, who, "webhook.disable", change_webhook_state_step, &c, err);
}

int
change_webhook_enable(db *conn, webhook_endpoint *hooks, const struct audit_who *who,
                      const char *id, errbuf *err)
{
    struct change_webhook c = {.hooks = hooks, .id = id, .enable = 1};

    return change_run(conn, who, "webhook.enable", change_webhook_state_step, &c, err);
}

static int
change_webhook_rotate_step(void *arg, struct change_record *rec, errbuf *err)
{
    struct change_webhook *c = arg;

    if (webhook_endpoint_rotate(c->hooks, c->id, c->key, c->secret, err) != RS_OK)
        return RS_ERR;
    snprintf(rec->target, sizeof(rec->target), "%s", c->id);
    if (change_object(rec, 1) == NULL)
        return errbuf_set(err, "out of memory");
    /* Never the secret, old or new: only that it changed. */
    cJSON_AddStringToObject(rec->after, "secret", "rotated");
    return 1;
}

int
change_webhook_rotate(db *conn, webhook_endpoint *hooks, const struct audit_who *who,
                      const char *id, const struct webhook_endpoint_key *key,
                      char secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1], errbuf *err)
{
    struct change_webhook c = {.hooks = hooks, .id = id, .key = key, .secret = secret};

    if (change_run(conn, who, "webhook.rotate", change_webhook_rotate_step, &c, err) < 0) {
        sodium_memzero(secret, WEBHOOK_ENDPOINT_SECRET_LEN + 1); /* rolled back */
        return RS_ERR;
    }
    return RS_OK;
}
