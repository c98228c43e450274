/* restock-admin's routes (docs/design.md "The admin API"): what restockctl reads
 * and does, as JSON, through the same lib functions. The frame (fcgi/admin.c)
 * has checked the session, the CSRF token and the role, and parsed the body. A
 * change goes through lib/change, as restockctl's: the change and its audit
 * row in one transaction; a redrive writes its row (and reopens the order)
 * first, then moves the file. Secrets are answered once, by the route
 * that makes them (a client's key, a webhook's secret), and never audited. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "admin.h"
#include "change.h"
#include "dlq.h"
#include "factory_msg.h"
#include "json.h"
#include "spool_msg.h"
#include "utf8.h"
#include "webhook_msg.h"

/* Text from outside (a factory's answer, a relay's reply) as JSON may carry it:
 * valid UTF-8, control characters escaped; null for NULL. */
static cJSON *
admin_routes_safe(const char *value)
{
    size_t size;
    char *out;
    cJSON *json;

    if (value == NULL)
        return cJSON_CreateNull();
    size = UTF8_SANITIZED_SIZE(strlen(value));
    out = malloc(size);
    if (out == NULL)
        return NULL;
    utf8_sanitize(value, strlen(value), out, size);
    json = cJSON_CreateString(out);
    free(out);
    return json;
}

static void
admin_routes_add_safe(cJSON *obj, const char *name, const char *value)
{
    cJSON_AddItemToObject(obj, name, admin_routes_safe(value));
}

/* A number column's text as a JSON number, null for NULL. */
static void
admin_routes_add_num_text(cJSON *obj, const char *name, const char *value)
{
    if (value == NULL)
        cJSON_AddNullToObject(obj, name);
    else
        cJSON_AddNumberToObject(obj, name, strtod(value, NULL));
}

/* -- status -------------------------------------------------------------------------- */

static void
admin_routes_status_line(void *arg, const char *status, long long count)
{
    cJSON_AddNumberToObject(arg, status, (double)count);
}

void
admin_routes_status(struct admin_thread *t, responder_request *rq, const char *id,
                    const cJSON *body)
{
    cJSON *json = cJSON_CreateObject(), *queues = cJSON_AddArrayToObject(json, "queues"),
          *orders = cJSON_AddObjectToObject(json, "orders");
    errbuf err = {{0}};
    time_t now = time(NULL);

    (void)id;
    (void)body;
    for (int i = 0; i < QUEUES_COUNT; i++) {
        cJSON *q = cJSON_CreateObject(), *states;
        time_t oldest = 0;

        cJSON_AddItemToArray(queues, q);
        cJSON_AddStringToObject(q, "queue", queues_names[i]);
        states = cJSON_AddObjectToObject(q, "states");
        for (int s = 0; s < SPOOL_NSTATES; s++) {
            long n = spool_count(t->queues[i], (enum spool_state)s, &err);
            if (n < 0) {
                cJSON_Delete(json);
                responder_reply_error(rq, 500, "%s", err.msg);
                return;
            }
            cJSON_AddNumberToObject(states, spool_state_name((enum spool_state)s), (double)n);
        }
        if (spool_oldest_waiting(t->queues[i], &oldest, &err) != RS_OK) {
            cJSON_Delete(json);
            responder_reply_error(rq, 500, "%s", err.msg);
            return;
        }
        if (oldest != 0)
            cJSON_AddNumberToObject(q, "oldest_waiting_seconds",
                                    (double)(now > oldest ? now - oldest : 0));
        else
            cJSON_AddNullToObject(q, "oldest_waiting_seconds");
    }
    if (order_count_by_status(t->orders, admin_routes_status_line, orders, &err) < 0) {
        cJSON_Delete(json);
        admin_fail(t, rq, 500, &err);
        return;
    }
    admin_db_answered(t);
    admin_reply(rq, 200, json);
}

/* -- orders -------------------------------------------------------------------------- */

static cJSON *
admin_routes_order_json(const struct order_line *o)
{
    cJSON *j = cJSON_CreateObject();

    cJSON_AddStringToObject(j, "order_id", o->order_id);
    admin_add_str(j, "sku", o->sku);
    admin_routes_add_num_text(j, "quantity", o->quantity);
    admin_add_str(j, "status", o->status);
    admin_routes_add_num_text(j, "attempts", o->attempts);
    admin_add_time(j, "created_at", o->created_us);
    admin_add_time(j, "sent_at", o->sent_us);
    admin_add_time(j, "fulfilled_at", o->fulfilled_us);
    admin_routes_add_num_text(j, "delivered", o->delivered);
    admin_add_str(j, "delivery", o->delivery);
    admin_routes_add_safe(j, "last_error", o->last_error);
    return j;
}

static void
admin_routes_order_add(void *arg, const struct order_line *o)
{
    cJSON_AddItemToArray(arg, admin_routes_order_json(o));
}

void
admin_routes_orders(struct admin_thread *t, responder_request *rq, const char *id,
                    const cJSON *body)
{
    long long limit;
    cJSON *json, *list;
    errbuf err = {{0}};

    (void)id;
    (void)body;
    if (admin_query_int(rq, "limit", 1, 1000, 50, &limit) != RS_OK)
        return;
    json = cJSON_CreateObject();
    list = cJSON_AddArrayToObject(json, "orders");
    admin_reply_read(t, rq, json, order_each(t->orders, limit, admin_routes_order_add, list, &err),
                     &err);
}

static void
admin_routes_order_keep(void *arg, const struct order_line *o)
{
    *(cJSON **)arg = admin_routes_order_json(o);
}

static void
admin_routes_timeline_add(void *arg, long long at, const char *event, const char *detail)
{
    cJSON *e = cJSON_CreateObject();

    admin_add_time(e, "at", at);
    admin_add_str(e, "event", event);
    admin_routes_add_safe(e, "detail", detail);
    cJSON_AddItemToArray(arg, e);
}

void
admin_routes_order(struct admin_thread *t, responder_request *rq, const char *id, const cJSON *body)
{
    cJSON *json = NULL;
    errbuf err = {{0}};
    int found = order_one(t->orders, id, admin_routes_order_keep, &json, &err);

    (void)body;
    if (found < 0) {
        admin_fail(t, rq, 500, &err);
        return;
    }
    admin_db_answered(t);
    if (found == 0) {
        responder_reply_error(rq, 404, "no order %.*s", (int)utf8_cut(id, strlen(id), 64), id);
        return;
    }
    if (order_timeline(t->orders, id, admin_routes_timeline_add,
                       cJSON_AddArrayToObject(json, "timeline"), &err) != RS_OK) {
        cJSON_Delete(json);
        admin_fail(t, rq, 500, &err);
        return;
    }
    admin_reply(rq, 200, json);
}

void
admin_routes_order_fulfil(struct admin_thread *t, responder_request *rq, const char *id,
                          const cJSON *body)
{
    long long quantity = 0, max = conf_int(t->app->cf, "callback_quantity_max");
    const cJSON *over = cJSON_GetObjectItemCaseSensitive(body, "over");
    struct order_fulfil_outcome out;
    cJSON *json = NULL, *probe = NULL;
    errbuf err = {{0}};
    int found;

    if (json_opt_int(body, "quantity", 1, max, 0, &quantity, &err) != RS_OK) {
        responder_reply_error(rq, 400, "%s", err.msg);
        return;
    }
    if (quantity == 0) {
        responder_reply_error(rq, 400, "quantity: required, a whole number from 1 to %lld", max);
        return;
    }
    if (over != NULL && !cJSON_IsBool(over)) {
        responder_reply_error(rq, 400, "over: expected true or false");
        return;
    }
    found = order_one(t->orders, id, admin_routes_order_keep, &probe, &err);
    cJSON_Delete(probe);
    if (found <= 0) {
        if (found < 0)
            admin_fail(t, rq, 500, &err);
        else
            responder_reply_error(rq, 404, "no order %.*s", (int)utf8_cut(id, strlen(id), 64), id);
        return;
    }
    if (change_order_fulfil(t->conn, t->orders, &t->who, id, quantity,
                            cJSON_IsTrue(over) ? ORDER_FULFIL_OVER : 0, &out, &err) != RS_OK) {
        admin_fail(t, rq, 500, &err);
        return;
    }
    admin_db_answered(t);
    if (out.refused) {
        responder_reply_error(rq, 409,
                              "order %s was for %lld: %lld is more than ordered; nothing changed "
                              "(send \"over\":true to record a real over-delivery)",
                              id, out.ordered, quantity);
        return;
    }
    json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "order_id", id);
    cJSON_AddStringToObject(json, "status", "fulfilled");
    cJSON_AddBoolToObject(json, "repeated", out.repeated);
    if (!out.repeated) {
        cJSON_AddNumberToObject(json, "delivered", (double)quantity);
        cJSON_AddNumberToObject(json, "stock", (double)out.stock);
    }
    admin_reply(rq, 200, json);
}

/* -- products ------------------------------------------------------------------------ */

/* Sets (adds or replaces) a field of obj. */
static void
admin_routes_set(cJSON *obj, const char *name, cJSON *value)
{
    if (cJSON_GetObjectItemCaseSensitive(obj, name) != NULL)
        cJSON_ReplaceItemInObjectCaseSensitive(obj, name, value);
    else
        cJSON_AddItemToObject(obj, name, value);
}

/* A non-negative number of seconds, or null (a negative one means none). */
static cJSON *
admin_routes_seconds(double s)
{
    return s < 0 ? cJSON_CreateNull() : cJSON_CreateNumber(s);
}

/* The reorder settings of a product: what `restockctl product set` takes. */
static cJSON *
admin_routes_settings_json(const struct reorder_line *p)
{
    cJSON *j = cJSON_CreateObject();

    cJSON_AddNumberToObject(j, "reorder_point", (double)p->point);
    cJSON_AddNumberToObject(j, "reorder_level", (double)p->level);
    cJSON_AddNumberToObject(j, "reorder_quantity", (double)p->quantity);
    cJSON_AddBoolToObject(j, "reorder_auto", p->automatic);
    cJSON_AddNumberToObject(j, "reorder_point_min", (double)p->point_min);
    cJSON_AddNumberToObject(j, "reorder_point_max", (double)p->point_max);
    cJSON_AddNumberToObject(j, "max_per_customer", (double)p->max_per_customer);
    if (p->target > 0)
        cJSON_AddNumberToObject(j, "service_level", p->target);
    else
        cJSON_AddNullToObject(j, "service_level");
    return j;
}

/* The columns of `restockctl products` into a product's JSON. */
static void
admin_routes_product_fields(cJSON *j, const struct reorder_line *p)
{
    cJSON *settings = admin_routes_settings_json(p);

    for (cJSON *s = settings->child; s != NULL; s = settings->child)
        admin_routes_set(j, s->string, cJSON_DetachItemViaPointer(settings, s));
    cJSON_Delete(settings);
    admin_routes_set(j, "stock", cJSON_CreateNumber((double)p->stock));
    admin_routes_set(j, "held", cJSON_CreateNumber((double)p->held));
    admin_routes_set(j, "sold_out", cJSON_CreateBool(p->stock == 0));
    admin_routes_set(j, "on_order", cJSON_CreateNumber((double)p->on_order));
    admin_routes_set(j, "rate_per_min", cJSON_CreateNumber(p->rate));
    admin_routes_set(j, "lead_p50_seconds",
                     p->has_factory ? cJSON_CreateNumber(p->lead_p50) : cJSON_CreateNull());
    admin_routes_set(j, "lead_p90_seconds",
                     p->has_factory ? cJSON_CreateNumber(p->lead_p90) : cJSON_CreateNull());
    admin_routes_set(j, "lead_orders", cJSON_CreateNumber(p->lead_orders));
    admin_routes_set(j, "suggested", cJSON_CreateNumber((double)p->suggested));
    admin_routes_set(j, "sells_out_seconds", admin_routes_seconds(p->sellout));
    admin_routes_set(j, "surge", p->surge > 0 ? cJSON_CreateNumber(p->surge) : cJSON_CreateNull());
    admin_routes_set(j, "surge_left_seconds",
                     p->surge > 0 ? cJSON_CreateNumber(p->surge_left) : cJSON_CreateNull());
    admin_routes_set(
        j, "achieved",
        p->cycles > 0 ? cJSON_CreateNumber((double)(p->cycles - p->stockouts) / (double)p->cycles)
                      : cJSON_CreateNull());
    admin_routes_set(j, "cycles", cJSON_CreateNumber((double)p->cycles));
    admin_routes_set(j, "stockouts", cJSON_CreateNumber((double)p->stockouts));
    admin_routes_set(j, "fill_rate",
                     p->fill_rate >= 0 ? cJSON_CreateNumber(p->fill_rate) : cJSON_CreateNull());
}

struct admin_routes_products_merge {
    cJSON *list;      /* the public product JSON, by sku */
    const char *only; /* one sku, or NULL */
    cJSON *next;      /* where the next line's product is looked for first */
};

/* Both lists come in the database's order of sku: the product of each line is
 * looked for from the one after the last found, so that the merge is one pass (a
 * list in another order still merges, wrapping around, in more steps). */
static void
admin_routes_products_line(void *arg, const struct reorder_line *p)
{
    struct admin_routes_products_merge *m = arg;
    cJSON *first = m->list ? m->list->child : NULL, *start, *j;

    if (p->sku == NULL || first == NULL || (m->only != NULL && strcmp(p->sku, m->only) != 0))
        return;
    start = m->next != NULL ? m->next : first;
    j = start;
    do {
        const cJSON *sku = cJSON_GetObjectItemCaseSensitive(j, "sku");

        if (cJSON_IsString(sku) && strcmp(sku->valuestring, p->sku) == 0) {
            admin_routes_product_fields(j, p);
            m->next = j->next;
            return;
        }
        j = j->next != NULL ? j->next : first;
    } while (j != start);
}

void
admin_routes_products(struct admin_thread *t, responder_request *rq, const char *id,
                      const cJSON *body)
{
    struct admin_routes_products_merge m = {0};
    cJSON *json;
    errbuf err = {{0}};

    (void)id;
    (void)body;
    if (product_list_json(t->products, &m.list, &err) != RS_OK ||
        reorder_each(t->policy, admin_routes_products_line, &m, &err) != RS_OK) {
        cJSON_Delete(m.list);
        admin_fail(t, rq, 500, &err);
        return;
    }
    admin_db_answered(t);
    json = cJSON_CreateObject();
    cJSON_AddItemToObject(json, "products", m.list);
    admin_reply(rq, 200, json);
}

/* Answers the product sku as GET /admin/api/products/{sku} does. */
static void
admin_routes_product_reply(struct admin_thread *t, responder_request *rq, const char *sku)
{
    struct admin_routes_products_merge m = {.only = sku};
    cJSON *one = NULL;
    errbuf err = {{0}};
    int found = product_get_json(t->products, sku, &one, &err);

    if (found > 0) {
        m.list = cJSON_CreateArray();
        cJSON_AddItemToArray(m.list, one);
        if (reorder_each(t->policy, admin_routes_products_line, &m, &err) != RS_OK)
            found = RS_ERR;
    }
    if (found < 0) {
        cJSON_Delete(m.list);
        admin_fail(t, rq, 500, &err);
        return;
    }
    admin_db_answered(t);
    if (found == 0) {
        responder_reply_error(rq, 404, "no product %.*s", (int)utf8_cut(sku, strlen(sku), 64), sku);
        return;
    }
    admin_reply(rq, 200, cJSON_DetachItemFromArray(m.list, 0));
    cJSON_Delete(m.list);
}

void
admin_routes_product(struct admin_thread *t, responder_request *rq, const char *id,
                     const cJSON *body)
{
    (void)body;
    admin_routes_product_reply(t, rq, id);
}

/* One setting of the body as the key=value word reorder_set takes: numbers as
 * numbers, true/false as on/off, strings as they are ("95%", "off", "+2h"). */
static char *
admin_routes_setting_word(const cJSON *item, errbuf *err)
{
    char value[64], *word;
    size_t size;

    if (strchr(item->string, '=') != NULL || *item->string == '\0') {
        errbuf_set(err, "\"%.*s\" is not a setting",
                   (int)utf8_cut(item->string, strlen(item->string), 64), item->string);
        return NULL;
    }
    if (cJSON_IsBool(item))
        snprintf(value, sizeof(value), "%s", cJSON_IsTrue(item) ? "on" : "off");
    else if (cJSON_IsNumber(item) && item->valuedouble == floor(item->valuedouble) &&
             fabs(item->valuedouble) < 1e15)
        snprintf(value, sizeof(value), "%.0f", item->valuedouble);
    else if (cJSON_IsNumber(item))
        snprintf(value, sizeof(value), "%.17g", item->valuedouble);
    else if (cJSON_IsString(item) && strlen(item->valuestring) < sizeof(value))
        snprintf(value, sizeof(value), "%s", item->valuestring);
    else {
        errbuf_set(err, "%.*s: expected a number, true/false or a short string",
                   (int)utf8_cut(item->string, strlen(item->string), 64), item->string);
        return NULL;
    }
    size = strlen(item->string) + strlen(value) + 2;
    word = malloc(size);
    if (word == NULL)
        errbuf_set(err, "out of memory");
    else
        snprintf(word, size, "%s=%s", item->string, value);
    return word;
}

void
admin_routes_product_set(struct admin_thread *t, responder_request *rq, const char *id,
                         const cJSON *body)
{
    int n = cJSON_GetArraySize(body), argc = 0, found;
    struct reorder_line now;
    char **argv;
    errbuf err = {{0}};

    if (n == 0) {
        responder_reply_error(rq, 400, "no settings: send {\"<key>\":value,…}");
        return;
    }
    found = reorder_get(t->policy, id, &now, &err);
    if (found <= 0) {
        if (found < 0)
            admin_fail(t, rq, 500, &err);
        else
            responder_reply_error(rq, 404, "no product %.*s", (int)utf8_cut(id, strlen(id), 64),
                                  id);
        return;
    }
    argv = calloc((size_t)n, sizeof(char *));
    if (argv == NULL) {
        responder_reply_error(rq, 500, "out of memory");
        return;
    }
    for (const cJSON *item = body->child; item != NULL; item = item->next) {
        argv[argc] = admin_routes_setting_word(item, &err);
        if (argv[argc] == NULL) {
            responder_reply_error(rq, 400, "%s", err.msg);
            goto done;
        }
        argc++;
    }
    if (change_product_set(t->conn, t->policy, &t->who, id, argc, argv, &now, &err) != RS_OK) {
        admin_fail(t, rq, 400, &err);
        goto done;
    }
    admin_routes_product_reply(t, rq, id);
done:
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
}

/* -- holds --------------------------------------------------------------------------- */

static void
admin_routes_holds_product(void *arg, const struct hold_report_product *p)
{
    cJSON *j = cJSON_CreateObject();

    admin_add_str(j, "sku", p->sku);
    cJSON_AddNumberToObject(j, "holds", (double)p->holds);
    cJSON_AddNumberToObject(j, "units", (double)p->units);
    admin_add_str(j, "oldest", p->oldest);
    cJSON_AddNumberToObject(j, "oldest_age_seconds", p->oldest_age);
    admin_add_str(j, "next_expiry", p->next_expiry);
    cJSON_AddNumberToObject(j, "next_in_seconds", p->next_in);
    cJSON_AddItemToArray(arg, j);
}

static void
admin_routes_holds_hold(void *arg, const struct hold_report_hold *h)
{
    cJSON *j = cJSON_CreateObject();
    char *customer = NULL;

    admin_add_str(j, "hold", h->id);
    admin_add_str(j, "client", h->client);
    cJSON_AddNumberToObject(j, "client_id", (double)h->client_id);
    if (h->customer != NULL) {
        customer = malloc(UTF8_SANITIZED_SIZE(h->customer_len));
        if (customer != NULL)
            utf8_sanitize(h->customer, h->customer_len, customer,
                          UTF8_SANITIZED_SIZE(h->customer_len));
    }
    admin_add_str(j, "customer", customer);
    free(customer);
    admin_add_str(j, "created", h->created);
    admin_add_str(j, "expires_at", h->expires);
    cJSON_AddNumberToObject(j, "expires_in_seconds", h->expires_in);
    admin_add_str(j, "lines", h->lines);
    cJSON_AddItemToArray(arg, j);
}

void
admin_routes_holds(struct admin_thread *t, responder_request *rq, const char *id, const cJSON *body)
{
    struct hold_report_totals totals;
    long long limit;
    cJSON *json;
    errbuf err = {{0}};

    (void)id;
    (void)body;
    if (admin_query_int(rq, "limit", 1, 1000, 20, &limit) != RS_OK)
        return;
    json = cJSON_CreateObject();
    if (hold_report_totals(t->holds, &totals, &err) != RS_OK ||
        hold_report_by_product(t->holds, admin_routes_holds_product,
                               cJSON_AddArrayToObject(json, "products"), &err) != RS_OK ||
        hold_report_oldest(t->holds, limit, admin_routes_holds_hold,
                           cJSON_AddArrayToObject(json, "oldest"), &err) != RS_OK) {
        cJSON_Delete(json);
        admin_fail(t, rq, 500, &err);
        return;
    }
    admin_db_answered(t);
    cJSON_AddNumberToObject(json, "holds", (double)totals.holds);
    cJSON_AddNumberToObject(json, "overdue_seconds", totals.overdue);
    admin_reply(rq, 200, json);
}

/* -- dead letters and messages -------------------------------------------------------- */

static void
admin_routes_add_spool_time(cJSON *obj, const char *name, time_t t)
{
    admin_add_time(obj, name, (long long)t * 1000000);
}

struct admin_routes_dead_walk {
    cJSON *list;
    const char *queue;
};

static int
admin_routes_dead_line(void *arg, const char *name, const spool_msg *m, const char *problem)
{
    struct admin_routes_dead_walk *w = arg;
    cJSON *j = cJSON_CreateObject();

    cJSON_AddStringToObject(j, "queue", w->queue);
    admin_routes_add_safe(j, "id", name);
    if (m == NULL) {
        admin_routes_add_safe(j, "unreadable", problem);
    } else {
        admin_routes_add_spool_time(j, "died_at", spool_msg_died_at(m));
        cJSON_AddNumberToObject(j, "attempts", spool_msg_attempts(m));
        admin_routes_add_safe(j, "reason", spool_msg_death_reason(m));
        admin_routes_add_safe(j, "last_error", spool_msg_last_error(m));
        admin_routes_add_safe(j, "key", spool_msg_key(m));
    }
    cJSON_AddItemToArray(w->list, j);
    return 0;
}

void
admin_routes_dead(struct admin_thread *t, responder_request *rq, const char *id, const cJSON *body)
{
    struct admin_routes_dead_walk w;
    cJSON *json = cJSON_CreateObject();
    errbuf err = {{0}};

    (void)id;
    (void)body;
    w.list = cJSON_AddArrayToObject(json, "dead");
    for (int i = 0; i < QUEUES_COUNT; i++) {
        w.queue = queues_names[i];
        if (spool_each(t->queues[i], SPOOL_DEAD, admin_routes_dead_line, &w, &err) == RS_ERR) {
            cJSON_Delete(json);
            responder_reply_error(rq, 500, "%s", err.msg);
            return;
        }
    }
    admin_reply(rq, 200, json);
}

void
admin_routes_message(struct admin_thread *t, responder_request *rq, const char *id,
                     const cJSON *body)
{
    spool_msg *m = NULL;
    errbuf err = {{0}};
    int missing, q = dlq_find(t->queues, id, &m, &missing, &err);
    cJSON *json, *history;
    char *shown;

    (void)body;

    if (q < 0) {
        if (missing)
            responder_reply_error(rq, 404, "no message %.*s in any queue",
                                  (int)utf8_cut(id, strlen(id), 64), id);
        else
            responder_reply_error(rq, 500, "the spool could not be read for message %.*s",
                                  (int)utf8_cut(id, strlen(id), 64), id);
        return;
    }
    json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "id", spool_msg_id(m));
    cJSON_AddStringToObject(json, "queue", queues_names[q]);
    cJSON_AddStringToObject(json, "state", spool_state_name(spool_msg_state(m)));
    admin_routes_add_safe(json, "key", spool_msg_key(m));
    admin_routes_add_spool_time(json, "created_at", spool_msg_created(m));
    cJSON_AddNumberToObject(json, "attempts", spool_msg_attempts(m));
    admin_routes_add_spool_time(json, "due_at", spool_msg_due(m));
    admin_routes_add_safe(json, "last_error", spool_msg_last_error(m));
    admin_routes_add_spool_time(json, "died_at", spool_msg_died_at(m));
    admin_routes_add_safe(json, "death_reason", spool_msg_death_reason(m));
    history = cJSON_AddArrayToObject(json, "history");
    for (size_t i = 0; i < spool_msg_history_count(m); i++)
        cJSON_AddItemToArray(history, admin_routes_safe(spool_msg_history(m, i)));
    /* The callback token is a secret: hidden, as restockctl dlq show hides it. */
    shown = factory_msg_shown(spool_msg_body(m), spool_msg_len(m));
    if (shown != NULL) {
        cJSON *parsed = cJSON_Parse(shown);
        if (parsed != NULL)
            cJSON_AddItemToObject(json, "body", parsed);
        else
            cJSON_AddNullToObject(json, "body");
    } else {
        cJSON_AddNullToObject(json, "body"); /* not JSON: not shown */
    }
    free(shown);
    spool_msg_destroy(&m);
    admin_reply(rq, 200, json);
}

/* dlq_redrive's hook: the audit row (and the order reopened) committed before
 * the file moves, as restockctl does (lib/change). */
static int
admin_routes_redrive_before(void *arg, const char *queue, const char *id, const char *order_id,
                            errbuf *err)
{
    struct admin_thread *t = arg;

    return change_redrive(t->conn, t->orders, &t->who, queue, id, order_id, err);
}

void
admin_routes_redrive(struct admin_thread *t, responder_request *rq, const char *id,
                     const cJSON *body)
{
    cJSON *json, *queues;
    errbuf err = {{0}}, not_dead = {{0}};
    int total = 0;

    (void)body;
    if (!spool_msg_valid_id(id)) {
        responder_reply_error(rq, 404, "no message %.*s in any queue",
                              (int)utf8_cut(id, strlen(id), 64), id);
        return;
    }
    json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "id", id);
    queues = cJSON_AddArrayToObject(json, "redriven");
    for (int i = 0; i < QUEUES_COUNT; i++) {
        int n = dlq_redrive(t->queues[i], id, admin_routes_redrive_before, t, &err);
        if (n < 0) {
            cJSON_Delete(json);
            admin_fail(t, rq, 500, &err);
            return;
        }
        if (n == 0 && err.msg[0] != '\0' && not_dead.msg[0] == '\0')
            not_dead = err;
        if (n == 1) {
            total++;
            cJSON_AddItemToArray(queues, cJSON_CreateString(queues_names[i]));
        }
        err.msg[0] = '\0';
    }
    if (total == 0) {
        cJSON_Delete(json);
        if (not_dead.msg[0] != '\0')
            responder_reply_error(rq, 409, "%s", not_dead.msg);
        else
            responder_reply_error(rq, 404, "no message %s in any queue", id);
        return;
    }
    admin_db_answered(t);
    admin_reply(rq, 200, json);
}

/* -- API clients --------------------------------------------------------------------- */

static void
admin_routes_client_line(void *arg, const struct api_client_line *c)
{
    cJSON *j = cJSON_CreateObject();

    cJSON_AddNumberToObject(j, "id", (double)c->id);
    admin_add_str(j, "name", c->name);
    admin_add_str(j, "created", c->created);
    admin_add_str(j, "last_used", c->last_used);
    admin_add_str(j, "revoked", c->revoked);
    cJSON_AddItemToArray(arg, j);
}

void
admin_routes_clients(struct admin_thread *t, responder_request *rq, const char *id,
                     const cJSON *body)
{
    cJSON *json = cJSON_CreateObject();
    errbuf err = {{0}};

    (void)id;
    (void)body;
    admin_reply_read(t, rq, json,
                     api_client_each(t->clients, admin_routes_client_line,
                                     cJSON_AddArrayToObject(json, "clients"), &err),
                     &err);
}

void
admin_routes_client_add(struct admin_thread *t, responder_request *rq, const char *id,
                        const cJSON *body)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(body, "name");
    char key[API_CLIENT_KEY_LEN + 1];
    long long client;
    cJSON *json;
    errbuf err = {{0}};

    (void)id;
    if (!cJSON_IsString(name)) {
        responder_reply_error(rq, 400, "name: required, a string");
        return;
    }
    if (api_client_name_check(name->valuestring, &err) != RS_OK) {
        responder_reply_error(rq, 400, "%s", err.msg);
        return;
    }
    client = change_client_add(t->conn, t->clients, &t->who, name->valuestring, key, &err);
    if (client < 0) {
        admin_fail(t, rq, 409, &err);
        return;
    }
    admin_db_answered(t);
    json = cJSON_CreateObject();
    cJSON_AddNumberToObject(json, "id", (double)client);
    cJSON_AddStringToObject(json, "name", name->valuestring);
    cJSON_AddStringToObject(json, "key", key); /* once: restock keeps its hash only */
    sodium_memzero(key, sizeof(key));
    admin_reply(rq, 201, json);
}

void
admin_routes_client_revoke(struct admin_thread *t, responder_request *rq, const char *id,
                           const cJSON *body)
{
    long long client = 0;
    cJSON *json;
    errbuf err = {{0}};
    int now;

    (void)body;
    now = change_client_revoke(t->conn, t->clients, &t->who, id, &client, &err);
    if (now < 0) {
        admin_fail(t, rq, 404, &err);
        return;
    }
    admin_db_answered(t);
    json = cJSON_CreateObject();
    cJSON_AddNumberToObject(json, "id", (double)client);
    cJSON_AddStringToObject(json, "status", now ? "revoked" : "revoked already");
    admin_reply(rq, 200, json);
}

/* -- webhooks ------------------------------------------------------------------------ */

/* An endpoint's events ("a,b" or NULL: all) as a JSON array, or null for all. */
static cJSON *
admin_routes_events_json(const char *events)
{
    cJSON *list;

    if (events == NULL || *events == '\0')
        return cJSON_CreateNull();
    list = cJSON_CreateArray();
    for (const char *p = events; *p != '\0';) {
        size_t n = strcspn(p, ", ");
        if (n > 0) {
            char one[64];
            snprintf(one, sizeof(one), "%.*s", (int)(n < 63 ? n : 63), p);
            cJSON_AddItemToArray(list, cJSON_CreateString(one));
        }
        p += n;
        p += strspn(p, ", ");
    }
    return list;
}

static void
admin_routes_webhook_line(void *arg, const struct webhook_endpoint_line *w)
{
    cJSON *j = cJSON_CreateObject();

    admin_add_str(j, "id", w->id);
    admin_add_str(j, "url", w->url);
    cJSON_AddStringToObject(j, "status", webhook_endpoint_status_name(w->status));
    cJSON_AddItemToObject(j, "events", admin_routes_events_json(w->events));
    admin_add_str(j, "created", w->created);
    cJSON_AddBoolToObject(j, "rotating", w->rotating);
    admin_add_str(j, "rotated_at", w->rotated_at);
    admin_add_str(j, "disabled_at", w->disabled_at);
    admin_routes_add_safe(j, "reason", w->reason);
    if (cJSON_IsArray(arg))
        cJSON_AddItemToArray(arg, j);
    else
        *(cJSON **)arg = j;
}

void
admin_routes_webhooks(struct admin_thread *t, responder_request *rq, const char *id,
                      const cJSON *body)
{
    cJSON *json = cJSON_CreateObject();
    errbuf err = {{0}};

    (void)id;
    (void)body;
    admin_reply_read(t, rq, json,
                     webhook_endpoint_each(
                         t->hooks, conf_int(t->app->cf, "webhook_rotation_overlap"),
                         admin_routes_webhook_line, cJSON_AddArrayToObject(json, "webhooks"), &err),
                     &err);
}

/* The endpoint id as one of its routes names it: 1 with *line set (the caller
 * deletes it), 0 when it was answered (404, 503). */
static int
admin_routes_webhook_of(struct admin_thread *t, responder_request *rq, const char *id, cJSON **line)
{
    errbuf err = {{0}};

    *line = NULL;
    if (webhook_endpoint_get(t->hooks, id, conf_int(t->app->cf, "webhook_rotation_overlap"),
                             admin_routes_webhook_line, line, &err) < 0) {
        cJSON_Delete(*line);
        admin_fail(t, rq, 404, &err);
        return 0;
    }
    admin_db_answered(t);
    return 1;
}

/* What a new endpoint is made of, and what it is given (its id, its secret). */
struct admin_routes_webhook_new {
    const char *url;
    unsigned events;
    struct webhook_endpoint_key key;
    char id[IDENT_TEXT];
    char secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1];
};

/* Joins a JSON array of type names into "a,b" for webhook_endpoint_events_parse. */
static int
admin_routes_events_list(const cJSON *events, char *out, size_t size, errbuf *err)
{
    size_t used = 0;

    out[0] = '\0';
    if (!cJSON_IsArray(events) || cJSON_GetArraySize(events) == 0)
        return errbuf_set(err, "events: expected a list of event types, [\"order.sent\",…]");
    for (const cJSON *e = events->child; e != NULL; e = e->next) {
        int n;
        if (!cJSON_IsString(e) || strchr(e->valuestring, ',') != NULL)
            return errbuf_set(err, "events: each one an event type, as a string");
        n = snprintf(out + used, size - used, "%s%s", used ? "," : "", e->valuestring);
        if (n < 0 || (size_t)n >= size - used)
            return errbuf_set(err, "events: too many");
        used += (size_t)n;
    }
    return RS_OK;
}

void
admin_routes_webhook_add(struct admin_thread *t, responder_request *rq, const char *id,
                         const cJSON *body)
{
    struct admin_routes_webhook_new c = {0};
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(body, "url"),
                *events = cJSON_GetObjectItemCaseSensitive(body, "events");
    char list[1024];
    cJSON *json;
    errbuf err = {{0}};

    (void)id;
    if (!cJSON_IsString(url)) {
        responder_reply_error(rq, 400, "url: required, a string");
        return;
    }
    c.url = url->valuestring;
    if (webhook_endpoint_url_check(c.url, &err) != RS_OK ||
        (events != NULL && !cJSON_IsNull(events) &&
         (admin_routes_events_list(events, list, sizeof(list), &err) != RS_OK ||
          webhook_endpoint_events_parse(list, &c.events, &err) != RS_OK))) {
        responder_reply_error(rq, 400, "%s", err.msg);
        return;
    }
    if (webhook_endpoint_key_public_read(conf_str(t->app->cf, "webhook_public_key"), &c.key,
                                         &err) != RS_OK) {
        responder_reply_error(rq, 500, "%s", err.msg);
        return;
    }
    if (change_webhook_add(t->conn, t->hooks, &t->who, c.url, c.events, &c.key, c.id, c.secret,
                           &err) != RS_OK) {
        sodium_memzero(c.secret, sizeof(c.secret));
        admin_fail(t, rq, 400, &err);
        return;
    }
    admin_db_answered(t);
    webhook_endpoint_events_format(c.events, list, sizeof(list));
    json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "id", c.id);
    cJSON_AddStringToObject(json, "url", c.url);
    cJSON_AddItemToObject(json, "events", admin_routes_events_json(c.events ? list : NULL));
    cJSON_AddStringToObject(json, "secret", c.secret);
    sodium_memzero(c.secret, sizeof(c.secret));
    admin_reply(rq, 201, json);
}

/* disable, enable, rotate: the endpoint named, the change audited, the
 * endpoint answered as listed (rotate: with its new secret, once). */
static void
admin_routes_webhook_act(struct admin_thread *t, responder_request *rq, const char *id,
                         const cJSON *body, int what)
{
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(body, "reason");
    struct webhook_endpoint_key key;
    char secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1] = "";
    cJSON *line = NULL;
    errbuf err = {{0}};
    int rc;

    if (reason != NULL && !cJSON_IsString(reason)) {
        responder_reply_error(rq, 400, "reason: expected a string");
        return;
    }
    if (!admin_routes_webhook_of(t, rq, id, &line))
        return;
    cJSON_Delete(line);
    line = NULL;
    if (what == 'r' && webhook_endpoint_key_public_read(conf_str(t->app->cf, "webhook_public_key"),
                                                        &key, &err) != RS_OK) {
        responder_reply_error(rq, 500, "%s", err.msg);
        return;
    }
    if (what == 'd')
        rc = change_webhook_disable(t->conn, t->hooks, &t->who, id,
                                    reason ? reason->valuestring : NULL, &err);
    else if (what == 'e')
        rc = change_webhook_enable(t->conn, t->hooks, &t->who, id, &err);
    else
        rc = change_webhook_rotate(t->conn, t->hooks, &t->who, id, &key, secret, &err);
    if (rc < 0) {
        admin_fail(t, rq, 400, &err);
        return;
    }
    if (admin_routes_webhook_of(t, rq, id, &line)) {
        if (what == 'r')
            cJSON_AddStringToObject(line, "secret", secret); /* once */
        admin_reply(rq, 200, line);
    }
    sodium_memzero(secret, sizeof(secret));
}

void
admin_routes_webhook_disable(struct admin_thread *t, responder_request *rq, const char *id,
                             const cJSON *body)
{
    admin_routes_webhook_act(t, rq, id, body, 'd');
}

void
admin_routes_webhook_enable(struct admin_thread *t, responder_request *rq, const char *id,
                            const cJSON *body)
{
    admin_routes_webhook_act(t, rq, id, body, 'e');
}

void
admin_routes_webhook_rotate(struct admin_thread *t, responder_request *rq, const char *id,
                            const cJSON *body)
{
    admin_routes_webhook_act(t, rq, id, body, 'r');
}

/* Queues a ping (not a change: not audited); its delivery shows at
 * GET /admin/api/messages/{ping}. */
void
admin_routes_webhook_ping(struct admin_thread *t, responder_request *rq, const char *id,
                          const cJSON *body)
{
    char wid[WEBHOOK_SIG_ID_SIZE];
    const cJSON *status;
    cJSON *line = NULL, *json;
    errbuf err = {{0}};

    (void)body;
    if (!admin_routes_webhook_of(t, rq, id, &line))
        return;
    status = cJSON_GetObjectItemCaseSensitive(line, "status");
    if (!cJSON_IsString(status) || strcmp(status->valuestring, "enabled") != 0) {
        responder_reply_error(rq, 409, "webhook endpoint %s is %s: nothing sent (enable it first)",
                              id, cJSON_IsString(status) ? status->valuestring : "?");
        cJSON_Delete(line);
        return;
    }
    if (webhook_msg_ping_put(t->queues[queues_index(QUEUES_WEBHOOK)],
                             cJSON_GetObjectItemCaseSensitive(line, "id")->valuestring, wid,
                             &err) != RS_OK) {
        cJSON_Delete(line);
        responder_reply_error(rq, 500, "%s", err.msg);
        return;
    }
    json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "id", cJSON_GetObjectItemCaseSensitive(line, "id")->valuestring);
    cJSON_AddStringToObject(json, "ping", wid);
    cJSON_AddStringToObject(json, "status", "queued");
    cJSON_Delete(line);
    admin_reply(rq, 200, json);
}

/* -- accounts and the audit trail ----------------------------------------------------- */

static void
admin_routes_account_line(void *arg, const struct admin_account_line *a)
{
    cJSON *j = cJSON_CreateObject();

    admin_add_str(j, "name", a->name);
    admin_add_str(j, "role", a->role);
    admin_add_str(j, "created", a->created);
    admin_add_str(j, "last_login", a->last_login);
    cJSON_AddBoolToObject(j, "locked", a->locked_until != NULL);
    admin_add_str(j, "locked_until", a->locked_until);
    cJSON_AddBoolToObject(j, "disabled", a->disabled);
    cJSON_AddItemToArray(arg, j);
}

void
admin_routes_accounts(struct admin_thread *t, responder_request *rq, const char *id,
                      const cJSON *body)
{
    cJSON *json = cJSON_CreateObject();
    errbuf err = {{0}};

    (void)id;
    (void)body;
    admin_reply_read(t, rq, json,
                     admin_account_each(t->accounts, admin_routes_account_line,
                                        cJSON_AddArrayToObject(json, "accounts"), &err),
                     &err);
}

/* A before or after column: its JSON value, or null. */
static void
admin_routes_add_json_text(cJSON *obj, const char *name, const char *text)
{
    cJSON *value = text ? cJSON_Parse(text) : NULL;

    if (value != NULL)
        cJSON_AddItemToObject(obj, name, value);
    else
        cJSON_AddNullToObject(obj, name);
}

static void
admin_routes_audit_line(void *arg, const struct audit_line *a)
{
    cJSON *j = cJSON_CreateObject();

    cJSON_AddNumberToObject(j, "id", (double)a->id);
    admin_add_str(j, "at", a->at);
    admin_add_str(j, "actor", a->actor);
    admin_add_str(j, "source", a->source);
    admin_add_str(j, "action", a->action);
    admin_add_str(j, "target", a->target);
    admin_routes_add_json_text(j, "before", a->before);
    admin_routes_add_json_text(j, "after", a->after);
    cJSON_AddItemToArray(arg, j);
}

void
admin_routes_audit(struct admin_thread *t, responder_request *rq, const char *id, const cJSON *body)
{
    long long limit, before;
    cJSON *json;
    errbuf err = {{0}};

    (void)id;
    (void)body;
    if (admin_query_int(rq, "limit", 1, AUDIT_LIMIT_MAX, 50, &limit) != RS_OK ||
        admin_query_int(rq, "before", 0, (long long)9e17, 0, &before) != RS_OK)
        return;
    json = cJSON_CreateObject();
    admin_reply_read(t, rq, json,
                     audit_each(t->trail, limit, before, admin_routes_audit_line,
                                cJSON_AddArrayToObject(json, "audit"), &err),
                     &err);
}
