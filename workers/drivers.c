/* drivers: the factory and mail drivers of the queue worker (see drivers.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "claim.h"
#include "db.h"
#include "delivery.h"
#include "drivers.h"
#include "factory.h"
#include "factory_msg.h"
#include "http.h"
#include "log.h"
#include "mail.h"
#include "mailtext.h"
#include "metrics.h"
#include "order.h"
#include "queues.h"
#include "timetext.h"
#include "utf8.h"

#define DRIVERS_MAX_VARS 32

static struct drivers_context drivers_ctx;

void
drivers_init(const struct drivers_context *ctx)
{
    drivers_ctx = *ctx;
}

/* One line saying what a message was, for the operator's alert: its kind, product
 * and quantity when its body says so. Made safe (utf8_sanitize) and cut at a
 * character, so that the alert is valid UTF-8 whatever the body holds. */
static void
drivers_describe(const spool_msg *msg, char *out, size_t size)
{
    char line[2048];
    struct factory_msg_glance g;
    const cJSON *tmpl, *to;

    factory_msg_glance(spool_msg_body(msg), spool_msg_len(msg), &g);
    tmpl = cJSON_GetObjectItemCaseSensitive(g.json, "template");
    to = cJSON_GetObjectItemCaseSensitive(g.json, "to");
    /* The order id is what operators look up (restockctl orders, the factory). */
    if (g.sku != NULL && g.has_quantity)
        snprintf(line, sizeof(line), "공장 주문 / factory order %s: %s x %d → %s",
                 g.order_id ? g.order_id : "?", g.sku, g.quantity,
                 g.factory_identifier ? g.factory_identifier : "?");
    else if (cJSON_IsString(tmpl))
        snprintf(line, sizeof(line), "email %s to %s", tmpl->valuestring,
                 cJSON_IsString(to) ? to->valuestring : "?");
    else
        snprintf(line, sizeof(line), "message %s", spool_msg_id(msg));
    factory_msg_glance_clear(&g);
    utf8_sanitize(line, strlen(line), out, size);
}

/* Raises one alert named after the dead message and the moment, so that a message
 * redriven and dead again is told again. */
static void
drivers_raise(const spool_msg *msg, const char *queue_name, const char *template_name,
              const mailtext_var *vars)
{
    char cause[SPOOL_ID_MAX];
    errbuf err = {{0}};

    snprintf(cause, sizeof(cause), "dead-%s-%.60s-%ld", queue_name, spool_msg_id(msg),
             (long)time(NULL));
    if (alert_raise(drivers_ctx.alerts, cause, template_name, vars, &err) < 0)
        log_error("event=alert_failed cause=%s error=\"%s\"", cause, err.msg);
}

static void
drivers_alert_dead(const spool_msg *msg, const char *queue_name, const char *reason)
{
    char what[300], attempts[16], when[64], why[SPOOL_TEXT_MAX * 4 + 1];

    drivers_describe(msg, what, sizeof(what));
    /* spool_kill counted the attempt that killed it. */
    snprintf(attempts, sizeof(attempts), "%d", spool_msg_attempts(msg));
    timetext_local_zone(time(NULL), when, sizeof(when));
    utf8_sanitize(reason, strlen(reason), why, sizeof(why));
    mailtext_var vars[] = {{"queue", queue_name}, {"message_id", spool_msg_id(msg)},
                           {"what", what},        {"attempts", attempts},
                           {"last_error", why},   {"time", when},
                           {NULL, NULL}};
    drivers_raise(msg, queue_name, "dead_letter", vars);
}

/* --- claims ----------------------------------------------------------------- */

/* A delivery thread's claims, on its own connection (made at its start; it
 * connects at the first message that carries a claim). */
static claim *
drivers_claims(db *conn, const conf *cf, errbuf *err)
{
    char owner[CLAIM_OWNER_MAX];

    claim_owner_of(cf, owner);
    return claim_new(conn, owner, conf_int(cf, "lease_time"), err);
}

/* The owns hook of queue.h, for queue q. */
static int
drivers_owns(claim *c, enum claim_queue q, const spool_msg *msg, errbuf *err)
{
    char event[IDENT_TEXT], now[CLAIM_OWNER_MAX + 64];
    int rc;

    if (claim_event_of_id(spool_msg_id(msg), event) != RS_OK) {
        /* A claim on a message that names no event: nothing to hold it by. */
        errbuf_set(err, "outbox_event=? claim=\"the message id names no event\"");
        return 0;
    }
    rc = claim_check(c, event, q, spool_msg_claim(msg), now, sizeof(now), err);
    if (rc == 0)
        errbuf_set(err, "outbox_event=%s claim=\"%s\"", event, now);
    return rc;
}

/* The ended hook of queue.h: marked under the message's epoch. A failure leaves
 * the claim held and renewed by this worker (nobody else sends it); the next
 * start marks it, finding the message finished in the spool. */
static void
drivers_ended(claim *c, enum claim_queue q, const spool_msg *msg)
{
    char event[IDENT_TEXT];
    errbuf err = {{0}};
    int rc;

    if (claim_event_of_id(spool_msg_id(msg), event) != RS_OK)
        return;
    rc = claim_done(c, event, q, spool_msg_claim(msg), &err);
    if (rc < 0)
        log_error("event=claim_done_failed id=%s error=\"%s\"", spool_msg_id(msg), err.msg);
    else if (rc == 0)
        log_warn("event=claim_done_lost id=%s epoch=%lld", spool_msg_id(msg), spool_msg_claim(msg));
}

/* --- factory ------------------------------------------------------------- */

struct drivers_factory_thread {
    db *conn;
    http *client;
    order *orders;
    claim *claims;
    factory *driver;
    conf *cf; /* the snapshot driver reads (a reference, or NULL: the start's) */
};

/* After a reload, the next message builds its driver on the new snapshot
 * (factory_api, public_url, requester, attempt_timeout). */
static void
drivers_factory_refresh(struct drivers_factory_thread *t)
{
    conf *cf = conf_current();
    errbuf err = {{0}};
    factory *fresh;

    if (cf == NULL || (t->cf != NULL && conf_generation(cf) == conf_generation(t->cf)) ||
        (t->cf == NULL && conf_generation(cf) == conf_generation(drivers_ctx.cf))) {
        conf_destroy(&cf);
        return;
    }
    fresh = factory_new(cf, t->orders, t->client, &err);
    if (fresh == NULL) {
        log_error("event=reload_failed what=factory error=\"%s\"", err.msg);
        conf_destroy(&cf);
        return;
    }
    factory_destroy(&t->driver);
    t->driver = fresh;
    conf_destroy(&t->cf);
    t->cf = cf;
}

static void
drivers_factory_fini(void *state)
{
    struct drivers_factory_thread *t = state;

    if (t != NULL) {
        factory_destroy(&t->driver);
        conf_destroy(&t->cf);
        claim_destroy(&t->claims);
        order_destroy(&t->orders);
        http_destroy(&t->client);
        db_destroy(&t->conn);
        free(t);
    }
    db_thread_end();
}

static int
drivers_factory_init(const conf *cf, void **state, errbuf *err)
{
    struct drivers_factory_thread *t = NULL;

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
    t->claims = drivers_claims(t->conn, cf, err);
    if (t->claims == NULL)
        goto fail;
    t->driver = factory_new(cf, t->orders, t->client, err);
    if (t->driver == NULL)
        goto fail;
    *state = t;
    return RS_OK;
fail:
    drivers_factory_fini(t);
    return RS_ERR;
}

static enum queue_outcome
drivers_factory_deliver(void *state, const spool_msg *msg, errbuf *err)
{
    struct drivers_factory_thread *t = state;

    drivers_factory_refresh(t);
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
drivers_factory_dead(void *state, const spool_msg *msg, const char *reason)
{
    struct drivers_factory_thread *t = state;
    struct factory_msg_glance g;
    errbuf err = {{0}};

    factory_msg_glance(spool_msg_body(msg), spool_msg_len(msg), &g);
    /* The reason names the last error (queue_settle). */
    if (g.order_id != NULL && order_failed(t->orders, g.order_id, reason, &err) != RS_OK)
        /* The order stays open in the database; the dead message and the alert
         * below still tell the operator, and a redrive settles it. */
        log_error("event=mark_failed_failed order=%s error=\"%s\"", g.order_id, err.msg);
    factory_msg_glance_clear(&g);
    drivers_alert_dead(msg, QUEUES_FACTORY, reason);
}

static int
drivers_factory_owns(void *state, const spool_msg *msg, errbuf *err)
{
    return drivers_owns(((struct drivers_factory_thread *)state)->claims, CLAIM_FACTORY, msg, err);
}

static void
drivers_factory_ended(void *state, const spool_msg *msg)
{
    drivers_ended(((struct drivers_factory_thread *)state)->claims, CLAIM_FACTORY, msg);
}

const struct queue_driver drivers_factory = {
    .name = QUEUES_FACTORY,
    .thread_init = drivers_factory_init,
    .thread_fini = drivers_factory_fini,
    .deliver = drivers_factory_deliver,
    .dead = drivers_factory_dead,
    .lifetime_key = "factory_lifetime",
    .owns = drivers_factory_owns,
    .ended = drivers_factory_ended,
};

/* --- mail ---------------------------------------------------------------- */

struct drivers_mail_thread {
    mail *client;
    unsigned long generation; /* of the snapshot client was made from */
    db *conn;                 /* for the claims of outbox emails only */
    claim *claims;
};

static void
drivers_mail_fini(void *state)
{
    struct drivers_mail_thread *t = state;

    if (t != NULL) {
        mail_destroy(&t->client);
        claim_destroy(&t->claims);
        db_destroy(&t->conn);
        free(t);
    }
    db_thread_end();
}

static int
drivers_mail_init(const conf *cf, void **state, errbuf *err)
{
    struct drivers_mail_thread *t = NULL;

    if (db_thread_init(err) != RS_OK)
        goto fail;
    t = calloc(1, sizeof(*t));
    if (t == NULL || (t->conn = db_new(cf, 0)) == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    t->claims = drivers_claims(t->conn, cf, err);
    if (t->claims == NULL)
        goto fail;
    t->client = mail_new(cf, err);
    if (t->client == NULL)
        goto fail;
    t->generation = conf_generation(cf);
    *state = t;
    return RS_OK;
fail:
    drivers_mail_fini(t);
    return RS_ERR;
}

/* After a reload the next email goes out with the new SMTP settings (and
 * password): mail_new copies what it needs, so the snapshot is let go at once. */
static void
drivers_mail_refresh(struct drivers_mail_thread *t)
{
    conf *cf = conf_current();
    errbuf err = {{0}};
    mail *fresh;

    if (cf != NULL && conf_generation(cf) != t->generation) {
        fresh = mail_new(cf, &err);
        if (fresh == NULL) {
            log_error("event=reload_failed what=mail error=\"%s\"", err.msg);
        } else {
            mail_destroy(&t->client);
            t->client = fresh;
        }
        t->generation = conf_generation(cf); /* tried once per snapshot */
    }
    conf_destroy(&cf);
}

/* What a mail message is: its template's name, recipient and rendered texts. */
struct drivers_mail_parts {
    cJSON *json;
    const char *template_name, *to, *event;
    char *subject, *body;
};

static void
drivers_mail_parts_clear(struct drivers_mail_parts *p)
{
    free(p->subject);
    free(p->body);
    cJSON_Delete(p->json);
    memset(p, 0, sizeof(*p));
}

/* Parses a mail message and renders its template; on RS_ERR err says why (what
 * could be read stays in p, for the dead hook), the caller clears p either way. */
static int
drivers_mail_parts_read(const spool_msg *msg, struct drivers_mail_parts *p, errbuf *err)
{
    const cJSON *tmpl, *to, *vars, *v;
    mailtext_var list[DRIVERS_MAX_VARS + 1];
    size_t n = 0;
    int id;

    memset(p, 0, sizeof(*p));
    p->json = cJSON_ParseWithLength(spool_msg_body(msg), spool_msg_len(msg));
    tmpl = cJSON_GetObjectItemCaseSensitive(p->json, "template");
    to = cJSON_GetObjectItemCaseSensitive(p->json, "to");
    vars = cJSON_GetObjectItemCaseSensitive(p->json, "vars");
    if (cJSON_IsString(to))
        p->to = to->valuestring;
    v = cJSON_GetObjectItemCaseSensitive(p->json, "event_id");
    if (cJSON_IsString(v) && v->valuestring[0] != '\0')
        p->event = v->valuestring;
    if (p->json == NULL || !cJSON_IsString(tmpl) || !cJSON_IsString(to) || !cJSON_IsObject(vars))
        return errbuf_set(err, "malformed mail message %s: template, to and vars are required",
                          spool_msg_id(msg));
    p->template_name = tmpl->valuestring;
    id = mailtext_find(tmpl->valuestring);
    if (id < 0)
        return errbuf_set(err, "mail message %s: unknown template \"%s\"", spool_msg_id(msg),
                          tmpl->valuestring);
    cJSON_ArrayForEach(v, vars)
    {
        if (n < DRIVERS_MAX_VARS && cJSON_IsString(v))
            list[n++] = (mailtext_var){v->string, v->valuestring};
    }
    list[n] = (mailtext_var){NULL, NULL};
    return mailtext_render((enum mailtext_id)id, list, &p->subject, &p->body, err);
}

static enum queue_outcome
drivers_mail_deliver(void *state, const spool_msg *msg, errbuf *err)
{
    struct drivers_mail_thread *t = state;
    struct drivers_mail_parts p;
    enum queue_outcome outcome = QUEUE_PERMANENT;

    drivers_mail_refresh(t);
    if (drivers_mail_parts_read(msg, &p, err) != RS_OK)
        goto done;
    /* The event names the Message-ID (the spool id for an alert, which has no
     * event): a retry after a crash mid-send, or the same email re-derived by
     * the worker that took its claim over, repeats the same Message-ID, which
     * lets mail systems drop the duplicate. */
    switch (
        mail_send(t->client, p.to, p.subject, p.body, p.event ? p.event : spool_msg_id(msg), err)) {
    case MAIL_SENT:
        log_info("event=mail_sent id=%s template=%s to=%s", spool_msg_id(msg), p.template_name,
                 p.to);
        metrics_count(METRICS_MAIL_SENT);
        outcome = QUEUE_DONE;
        break;
    case MAIL_TEMPORARY:
        metrics_count(METRICS_MAIL_TEMPORARY);
        outcome = QUEUE_RETRY;
        break;
    default:
        metrics_count(METRICS_MAIL_PERMANENT);
        outcome = QUEUE_PERMANENT;
        break;
    }
done:
    drivers_mail_parts_clear(&p);
    return outcome;
}

/* A dead email is told to the operators (recipient, subject, the relay's answer)
 * by an alert, itself an email. A dead alert is only logged: an alert about it
 * would go the same way, and could die in turn (a loop). */
static void
drivers_mail_dead(void *state, const spool_msg *msg, const char *reason)
{
    struct drivers_mail_parts p;
    errbuf ignored = {{0}};
    char recipient[1024], subject[1024], why[SPOOL_TEXT_MAX * 4 + 1], when[64];

    drivers_mail_parts_read(msg, &p, &ignored);
    utf8_sanitize(p.to ? p.to : "?", strlen(p.to ? p.to : "?"), recipient, sizeof(recipient));
    utf8_sanitize(p.subject ? p.subject : "?", strlen(p.subject ? p.subject : "?"), subject,
                  sizeof(subject));
    utf8_sanitize(reason, strlen(reason), why, sizeof(why));
    if (strncmp(spool_msg_id(msg), ALERT_ID_PREFIX, strlen(ALERT_ID_PREFIX)) == 0) {
        log_error("event=alert_dead id=%s to=\"%s\" subject=\"%s\" reason=\"%s\"",
                  spool_msg_id(msg), recipient, subject, why);
    } else {
        timetext_local_zone(time(NULL), when, sizeof(when));
        mailtext_var vars[] = {{"recipient", recipient}, {"subject", subject},
                               {"reason", why},          {"message_id", spool_msg_id(msg)},
                               {"time", when},           {NULL, NULL}};
        drivers_raise(msg, QUEUES_MAIL, "mail_dead", vars);
    }
    drivers_mail_parts_clear(&p);
}

static int
drivers_mail_owns(void *state, const spool_msg *msg, errbuf *err)
{
    return drivers_owns(((struct drivers_mail_thread *)state)->claims, CLAIM_MAIL, msg, err);
}

static void
drivers_mail_ended(void *state, const spool_msg *msg)
{
    drivers_ended(((struct drivers_mail_thread *)state)->claims, CLAIM_MAIL, msg);
}

const struct queue_driver drivers_mail = {
    .name = QUEUES_MAIL,
    .thread_init = drivers_mail_init,
    .thread_fini = drivers_mail_fini,
    .deliver = drivers_mail_deliver,
    .dead = drivers_mail_dead,
    .lifetime_key = "mail_lifetime",
    .owns = drivers_mail_owns,
    .ended = drivers_mail_ended,
};

/* --- callback -------------------------------------------------------------- */

/* A callback restock-callback accepted (202) while the database was down:
 * applied by the same checks and transaction as one applied at once
 * (delivery_agent_apply). The database still down is BLOCKED, not an attempt. */
static int
drivers_callback_init(const conf *cf, void **state, errbuf *err)
{
    delivery_agent *agent = delivery_agent_new(cf, err);

    if (agent == NULL)
        return RS_ERR;
    *state = agent;
    return RS_OK;
}

static void
drivers_callback_fini(void *state)
{
    delivery_agent *agent = state;

    delivery_agent_destroy(&agent);
}

static enum queue_outcome
drivers_callback_deliver(void *state, const spool_msg *msg, errbuf *err)
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
drivers_callback_dead(void *state, const spool_msg *msg, const char *reason)
{
    const char *last = spool_msg_last_error(msg);

    drivers_alert_dead(msg, DELIVERY_QUEUE, last ? last : reason);
}

/* No lifetime_key: a stored delivery is the factory's only word on it, so it is
 * never given up for age; while the database is down it waits (BLOCKED). */
const struct queue_driver drivers_callback = {
    .name = DELIVERY_QUEUE,
    .thread_init = drivers_callback_init,
    .thread_fini = drivers_callback_fini,
    .deliver = drivers_callback_deliver,
    .dead = drivers_callback_dead,
};
