/* drivers: the factory and mail drivers of the queue worker (see drivers.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "db.h"
#include "delivery.h"
#include "drivers.h"
#include "factory.h"
#include "http.h"
#include "log.h"
#include "mail.h"
#include "mailtext.h"
#include "order.h"
#include "timetext.h"

#define DRIVERS_MAX_VARS 32

static struct drivers_context drivers_ctx;

void
drivers_init(const struct drivers_context *ctx)
{
    drivers_ctx = *ctx;
}

/* One line saying what a message was, for the operator's alert: its kind, product
 * and quantity when its body says so. */
static void
drivers_describe(const spool_msg *msg, char *out, size_t size)
{
    cJSON *m = cJSON_ParseWithLength(spool_msg_body(msg), spool_msg_len(msg));
    const cJSON *sku = cJSON_GetObjectItemCaseSensitive(m, "sku");
    const cJSON *qty = cJSON_GetObjectItemCaseSensitive(m, "quantity");
    const cJSON *maker = cJSON_GetObjectItemCaseSensitive(m, "factory_identifier");
    const cJSON *order_id = cJSON_GetObjectItemCaseSensitive(m, "order_id");
    const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(m, "template");
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(m, "to");

    /* The order id is what operators look up (restockctl orders, the factory). */
    if (cJSON_IsString(sku) && cJSON_IsNumber(qty))
        snprintf(out, size, "공장 주문 / factory order %s: %s x %d → %s",
                 cJSON_IsString(order_id) ? order_id->valuestring : "?", sku->valuestring,
                 qty->valueint, cJSON_IsString(maker) ? maker->valuestring : "?");
    else if (cJSON_IsString(tmpl))
        snprintf(out, size, "email %s to %s", tmpl->valuestring,
                 cJSON_IsString(to) ? to->valuestring : "?");
    else
        snprintf(out, size, "message %s", spool_msg_id(msg));
    cJSON_Delete(m);
}

static void
drivers_alert_dead(const spool_msg *msg, const char *queue_name, const char *reason)
{
    char cause[SPOOL_ID_MAX], what[300], attempts[16], when[64];
    errbuf err = {{0}};

    drivers_describe(msg, what, sizeof(what));
    /* spool_kill counted the attempt that killed it. */
    snprintf(attempts, sizeof(attempts), "%d", spool_msg_attempts(msg));
    timetext_local_zone(time(NULL), when, sizeof(when));
    /* Named by the message and the moment, so that a message redriven and dead
     * again is told again. */
    snprintf(cause, sizeof(cause), "dead-%s-%.60s-%ld", queue_name, spool_msg_id(msg),
             (long)time(NULL));
    mailtext_var vars[] = {{"queue", queue_name},
                           {"message_id", spool_msg_id(msg)},
                           {"what", what},
                           {"attempts", attempts},
                           {"last_error", reason},
                           {"time", when},
                           {NULL, NULL}};
    if (alert_raise(drivers_ctx.alerts, cause, "dead_letter", vars, &err) < 0)
        log_error("event=alert_failed cause=%s error=\"%s\"", cause, err.msg);
}

/* --- factory ------------------------------------------------------------- */

struct factory_thread {
    db *conn;
    http *client;
    order *orders;
    factory *driver;
};

static void
factory_thread_fini(void *state)
{
    struct factory_thread *t = state;

    if (t != NULL) {
        factory_destroy(&t->driver);
        order_destroy(&t->orders);
        http_destroy(&t->client);
        db_destroy(&t->conn);
        free(t);
    }
    db_thread_end();
}

static int
factory_thread_init(const conf *cf, void **state, errbuf *err)
{
    struct factory_thread *t = NULL;

    if (db_thread_init(err) != RS_OK)
        goto fail;
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    t->conn = db_new(cf, 0);
    if (t->conn == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    t->client = http_new(err);
    if (t->client == NULL)
        goto fail;
    t->orders = order_new(t->conn, err);
    if (t->orders == NULL)
        goto fail;
    t->driver = factory_new(cf, t->orders, t->client, err);
    if (t->driver == NULL)
        goto fail;
    *state = t;
    return RS_OK;
fail:
    factory_thread_fini(t);
    return RS_ERR;
}

static enum queue_outcome
factory_queue_deliver(void *state, const spool_msg *msg, errbuf *err)
{
    struct factory_thread *t = state;

    switch (factory_deliver(t->driver, spool_msg_body(msg), spool_msg_len(msg), err)) {
    case FACTORY_SENT:
        return QUEUE_DONE;
    case FACTORY_RETRY:
        return QUEUE_RETRY;
    case FACTORY_BLOCKED:
        return QUEUE_BLOCKED;
    default:
        return QUEUE_PERMANENT;
    }
}

static void
factory_queue_dead(void *state, const spool_msg *msg, const char *reason)
{
    struct factory_thread *t = state;
    cJSON *m = cJSON_ParseWithLength(spool_msg_body(msg), spool_msg_len(msg));
    const cJSON *order_id = cJSON_GetObjectItemCaseSensitive(m, "order_id");
    const char *last = spool_msg_last_error(msg);
    char why[600];
    errbuf err = {{0}};

    snprintf(why, sizeof(why), "%s: %s", reason, last ? last : "");
    if (cJSON_IsString(order_id) &&
        order_failed(t->orders, order_id->valuestring, why, &err) != RS_OK)
        /* The order stays open in the database; the dead message and the alert
         * below still tell the operator, and a redrive settles it. */
        log_error("event=mark_failed_failed order=%s error=\"%s\"", order_id->valuestring, err.msg);
    cJSON_Delete(m);
    drivers_alert_dead(msg, "factory", last ? last : reason);
}

const struct queue_driver drivers_factory = {
    .name = "factory",
    .thread_init = factory_thread_init,
    .thread_fini = factory_thread_fini,
    .deliver = factory_queue_deliver,
    .dead = factory_queue_dead,
};

/* --- mail ---------------------------------------------------------------- */

static int
mail_thread_init(const conf *cf, void **state, errbuf *err)
{
    mail *m = mail_new(cf, err);

    if (m == NULL)
        return RS_ERR;
    *state = m;
    return RS_OK;
}

static void
mail_thread_fini(void *state)
{
    mail *m = state;

    mail_destroy(&m);
}

static enum queue_outcome
mail_queue_deliver(void *state, const spool_msg *msg, errbuf *err)
{
    cJSON *m = cJSON_ParseWithLength(spool_msg_body(msg), spool_msg_len(msg));
    const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(m, "template");
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(m, "to");
    const cJSON *vars = cJSON_GetObjectItemCaseSensitive(m, "vars"), *v;
    mailtext_var list[DRIVERS_MAX_VARS + 1];
    char *subject = NULL, *body = NULL;
    enum queue_outcome outcome = QUEUE_PERMANENT;
    size_t n = 0;
    int id;

    if (m == NULL || !cJSON_IsString(tmpl) || !cJSON_IsString(to) || !cJSON_IsObject(vars)) {
        errbuf_set(err, "malformed mail message %s: template, to and vars are required",
                   spool_msg_id(msg));
        goto done;
    }
    id = mailtext_find(tmpl->valuestring);
    if (id < 0) {
        errbuf_set(err, "mail message %s: unknown template \"%s\"", spool_msg_id(msg),
                   tmpl->valuestring);
        goto done;
    }
    cJSON_ArrayForEach(v, vars)
    {
        if (n < DRIVERS_MAX_VARS && cJSON_IsString(v))
            list[n++] = (mailtext_var){v->string, v->valuestring};
    }
    list[n] = (mailtext_var){NULL, NULL};
    if (mailtext_render((enum mailtext_id)id, list, &subject, &body, err) != RS_OK)
        goto done;
    /* The spool id names the Message-ID: a retry after a crash mid-send repeats
     * the same Message-ID, which lets mail systems drop the duplicate. */
    switch (mail_send(state, to->valuestring, subject, body, spool_msg_id(msg), err)) {
    case MAIL_SENT:
        log_info("event=mail_sent id=%s template=%s to=%s", spool_msg_id(msg), tmpl->valuestring,
                 to->valuestring);
        outcome = QUEUE_DONE;
        break;
    case MAIL_TEMPORARY:
        outcome = QUEUE_RETRY;
        break;
    default:
        outcome = QUEUE_PERMANENT;
        break;
    }
done:
    free(subject);
    free(body);
    cJSON_Delete(m);
    return outcome;
}

static void
mail_queue_dead(void *state, const spool_msg *msg, const char *reason)
{
    /* Never an email about a failed email: the log line of the queue and the file
     * in dead/ are the operator's record (restockctl dlq list). */
}

const struct queue_driver drivers_mail = {
    .name = "mail",
    .thread_init = mail_thread_init,
    .thread_fini = mail_thread_fini,
    .deliver = mail_queue_deliver,
    .dead = mail_queue_dead,
};

/* --- callback -------------------------------------------------------------- */

/* A callback restock-callback accepted (202) while the database was down:
 * applied by the same checks and transaction as one applied at once
 * (delivery_agent_apply). The database still down is BLOCKED, not an attempt. */
static int
callback_thread_init(const conf *cf, void **state, errbuf *err)
{
    delivery_agent *agent = delivery_agent_new(cf, err);

    if (agent == NULL)
        return RS_ERR;
    *state = agent;
    return RS_OK;
}

static void
callback_thread_fini(void *state)
{
    delivery_agent *agent = state;

    delivery_agent_destroy(&agent);
}

static enum queue_outcome
callback_queue_deliver(void *state, const spool_msg *msg, errbuf *err)
{
    delivery_agent *agent = state;
    struct delivery d;
    struct order_view view;
    struct order_fulfil_outcome out;
    int found;

    if (delivery_parse(spool_msg_body(msg), spool_msg_len(msg), &d, err) != RS_OK) {
        errbuf_prefix(err, "stored callback %s", spool_msg_id(msg));
        return QUEUE_PERMANENT;
    }
    found = order_get(delivery_agent_orders(agent), d.order_id, &view, err);
    if (found < 0)
        return QUEUE_BLOCKED;
    if (found == 0) {
        errbuf_set(err, "stored callback of unknown order %s", d.order_id);
        return QUEUE_PERMANENT;
    }
    switch (delivery_agent_apply(agent, &view, &d, 1, &out, err)) {
    case DELIVERY_APPLIED:
    case DELIVERY_REPEATED:
    case DELIVERY_REFUSED: /* the delivery_refused event tells operators */
        return QUEUE_DONE;
    case DELIVERY_WRONG_PRODUCT:
        return QUEUE_PERMANENT;
    default:
        return QUEUE_BLOCKED; /* the database failed: nothing changed */
    }
}

static void
callback_queue_dead(void *state, const spool_msg *msg, const char *reason)
{
    const char *last = spool_msg_last_error(msg);

    drivers_alert_dead(msg, DELIVERY_QUEUE, last ? last : reason);
}

const struct queue_driver drivers_callback = {
    .name = DELIVERY_QUEUE,
    .thread_init = callback_thread_init,
    .thread_fini = callback_thread_fini,
    .deliver = callback_queue_deliver,
    .dead = callback_queue_dead,
};
