/* webhook: the webhook delivery driver of the queue worker (see webhook.h). */
#include "config.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <sodium.h>

#include "db.h"
#include "egress.h"
#include "http.h"
#include "log.h"
#include "queues.h"
#include "timetext.h"
#include "utf8.h"
#include "webhook.h"
#include "webhook_msg.h"
#include "webhook_sig.h"

#define WEBHOOK_ANSWER_SHOWN 200 /* characters of an endpoint's answer in an error */
#define WEBHOOK_METRIC_SLOTS 256 /* endpoints counted apart; the rest as "other" */

static struct webhook_context webhook_ctx;

void
webhook_init(const struct webhook_context *ctx)
{
    webhook_ctx = *ctx;
}

int
webhook_key_load(const conf *cf, struct webhook_endpoint_key *key, errbuf *err)
{
    if (*conf_str(cf, "webhook_key") == '\0') {
        log_warn("event=webhook_key_missing error=\"webhook_key is not set: webhook deliveries "
                 "wait until the worker is started with it (restock.conf(5), SECRETS)\"");
        return 0;
    }
    if (webhook_endpoint_key_private(conf_str(cf, "webhook_key"), key, err) != RS_OK)
        return RS_ERR;
    return 1;
}

/* --- counters ------------------------------------------------------------- */

enum webhook_result {
    WEBHOOK_DELIVERED,
    WEBHOOK_FAILED,
    WEBHOOK_GONE,
    WEBHOOK_REFUSED_EGRESS,
    WEBHOOK_RETRY_AFTER,
    WEBHOOK_NRESULTS
};

static const char *const webhook_result_names[WEBHOOK_NRESULTS] = {"delivered", "failed", "gone",
                                                                   "refused_egress", "retry_after"};

/* In the worker's memory, from its start: an endpoint's id is a label the
 * shared counter files (lib/metrics) have no slot for. Prometheus takes a
 * restart's reset as a counter reset. */
static struct {
    pthread_mutex_t lock;
    size_t n;
    struct {
        char endpoint[IDENT_TEXT];
        unsigned long long count[WEBHOOK_NRESULTS];
    } slot[WEBHOOK_METRIC_SLOTS + 1]; /* the last one: "other" */
} webhook_counts = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void
webhook_count(const char *endpoint, enum webhook_result result)
{
    size_t i;

    pthread_mutex_lock(&webhook_counts.lock);
    for (i = 0; i < webhook_counts.n; i++)
        if (strcmp(webhook_counts.slot[i].endpoint, endpoint) == 0)
            break;
    if (i == webhook_counts.n && i < WEBHOOK_METRIC_SLOTS) {
        snprintf(webhook_counts.slot[i].endpoint, IDENT_TEXT, "%s", endpoint);
        webhook_counts.n++;
    }
    webhook_counts.slot[i].count[result]++;
    pthread_mutex_unlock(&webhook_counts.lock);
}

/* The oldest waiting message of each endpoint (the spool key), from a walk. */
struct webhook_oldest {
    size_t n;
    struct {
        char endpoint[IDENT_TEXT];
        time_t created;
    } e[WEBHOOK_METRIC_SLOTS];
};

static int
webhook_oldest_note(void *arg, const char *name, const spool_msg *m, const char *problem)
{
    struct webhook_oldest *o = arg;
    const char *key = m != NULL ? spool_msg_key(m) : NULL;
    size_t i;

    (void)name;
    (void)problem;
    if (key == NULL || *key == '\0')
        return 0;
    for (i = 0; i < o->n; i++)
        if (strcmp(o->e[i].endpoint, key) == 0)
            break;
    if (i == o->n) {
        if (i == WEBHOOK_METRIC_SLOTS)
            return 0;
        snprintf(o->e[i].endpoint, IDENT_TEXT, "%s", key);
        o->e[i].created = spool_msg_created(m);
        o->n++;
    } else if (spool_msg_created(m) < o->e[i].created) {
        o->e[i].created = spool_msg_created(m);
    }
    return 0;
}

void
webhook_metrics_write(spool *q, FILE *out)
{
    static const enum spool_state waiting[] = {SPOOL_INCOMING, SPOOL_ACTIVE, SPOOL_DEFERRED};
    struct webhook_oldest *oldest = calloc(1, sizeof(*oldest));
    time_t now = time(NULL);
    errbuf err = {{0}};

    fprintf(out, "# HELP restock_webhook_deliveries_total Webhook delivery attempts by endpoint "
                 "and result (delivered, failed, gone, refused_egress, retry_after), since the "
                 "worker's start.\n"
                 "# TYPE restock_webhook_deliveries_total counter\n");
    pthread_mutex_lock(&webhook_counts.lock);
    for (size_t i = 0; i <= WEBHOOK_METRIC_SLOTS; i++) {
        int other = i == WEBHOOK_METRIC_SLOTS, any = 0;
        if (!other && i >= webhook_counts.n)
            continue;
        for (int r = 0; r < WEBHOOK_NRESULTS; r++)
            any |= webhook_counts.slot[i].count[r] != 0;
        if (other && !any)
            continue;
        for (int r = 0; r < WEBHOOK_NRESULTS; r++)
            fprintf(out, "restock_webhook_deliveries_total{endpoint=\"%s\",result=\"%s\"} %llu\n",
                    other ? "other" : webhook_counts.slot[i].endpoint, webhook_result_names[r],
                    webhook_counts.slot[i].count[r]);
    }
    pthread_mutex_unlock(&webhook_counts.lock);
    if (oldest == NULL)
        return;
    for (size_t s = 0; s < sizeof(waiting) / sizeof(waiting[0]); s++)
        if (spool_each(q, waiting[s], webhook_oldest_note, oldest, &err) < 0)
            log_warn("event=metrics_spool_failed queue=%s error=\"%s\"", spool_queue(q), err.msg);
    fprintf(out, "# HELP restock_webhook_oldest_waiting_seconds Age of the oldest webhook event "
                 "not yet delivered to the endpoint (incoming, active or deferred).\n"
                 "# TYPE restock_webhook_oldest_waiting_seconds gauge\n");
    for (size_t i = 0; i < oldest->n; i++)
        fprintf(out, "restock_webhook_oldest_waiting_seconds{endpoint=\"%s\"} %ld\n",
                oldest->e[i].endpoint,
                now > oldest->e[i].created ? (long)(now - oldest->e[i].created) : 0L);
    free(oldest);
}

/* --- the driver ----------------------------------------------------------- */

struct webhook_thread {
    db *conn;
    webhook_endpoint *endpoints;
    http *client; /* guarded by policy; both made again after a reload */
    egress_policy *policy;
    unsigned long generation; /* of the snapshot client and policy were made from */
    long retry_in;            /* the wait the last outcome names (queue.h, retry_in) */
};

static void
webhook_thread_fini(void *state)
{
    struct webhook_thread *t = state;

    if (t != NULL) {
        http_destroy(&t->client);
        egress_policy_destroy(&t->policy);
        webhook_endpoint_destroy(&t->endpoints);
        db_destroy(&t->conn);
        free(t);
    }
    db_thread_end();
}

/* An http guarded by cf's webhook_allow. Connections kept alive were checked
 * under the policy they were opened with: a new policy takes a new http. */
static int
webhook_client(struct webhook_thread *t, const conf *cf, errbuf *err)
{
    egress_policy *policy = egress_policy_new(conf_str(cf, "webhook_allow"), err);
    http *client = policy != NULL ? http_new(err) : NULL;

    if (client == NULL) {
        egress_policy_destroy(&policy);
        return RS_ERR;
    }
    http_set_egress(client, policy);
    http_destroy(&t->client);
    egress_policy_destroy(&t->policy);
    t->client = client;
    t->policy = policy;
    t->generation = conf_generation(cf);
    return RS_OK;
}

static int
webhook_thread_init(const conf *cf, void **state, errbuf *err)
{
    struct webhook_thread *t = NULL;

    if (db_thread_init(err) != RS_OK)
        goto fail;
    t = calloc(1, sizeof(*t));
    if (t == NULL || (t->conn = db_new(cf, 0)) == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    t->endpoints = webhook_endpoint_new(t->conn, err);
    if (t->endpoints == NULL || webhook_client(t, cf, err) != RS_OK)
        goto fail;
    *state = t;
    return RS_OK;
fail:
    webhook_thread_fini(t);
    return RS_ERR;
}

static long
webhook_retry_in(void *state)
{
    return ((struct webhook_thread *)state)->retry_in;
}

/* A Retry-After (seconds, or an HTTP-date) as a wait from now: 1 s at least,
 * backoff_max × 12 at most; 0 when there is none or it does not parse. */
static long
webhook_retry_after(const char *value, time_t now, long backoff_max)
{
    long cap = backoff_max > 0 ? backoff_max * 12 : 1, wait = 0;

    if (*value == '\0')
        return 0;
    if (isdigit((unsigned char)*value)) {
        char *end;
        long long n = strtoll(value, &end, 10);
        if (*end != '\0')
            return 0;
        wait = n > cap ? cap : (long)n;
    } else {
        time_t when = curl_getdate(value, NULL);
        if (when < 0)
            return 0;
        wait = when - now > cap ? cap : (long)(when - now);
    }
    return wait < 1 ? 1 : wait;
}

/* Operators are told that the worker disabled an endpoint (once per disabling:
 * the caller calls it only when its disable changed the row). */
static void
webhook_alert_disabled(const char *endpoint, const char *url, int status, const char *reason)
{
    char cause[128], shown[512], when[64];
    errbuf err = {{0}};

    http_redact_url(url, shown, sizeof(shown));
    timetext_local_zone(time(NULL), when, sizeof(when));
    snprintf(cause, sizeof(cause), "webhook-disabled-%s-%ld", endpoint, (long)time(NULL));
    mailtext_var vars[] = {
        {"endpoint", endpoint}, {"url", shown}, {"status", webhook_endpoint_status_name(status)},
        {"reason", reason},     {"time", when}, {NULL, NULL}};
    if (alert_raise(webhook_ctx.alerts, cause, "webhook_disabled", vars, &err) < 0)
        log_error("event=alert_failed cause=%s error=\"%s\"", cause, err.msg);
}

/* Disables the endpoint (status gone or failing) for reason; tells operators
 * when this call did it. */
static void
webhook_disable(struct webhook_thread *t, const struct webhook_msg *m, const char *url, int status,
                const char *reason)
{
    errbuf err = {{0}};
    int rc = webhook_endpoint_disable(t->endpoints, m->endpoint_id, status, reason, &err);

    if (rc < 0) {
        log_error("event=webhook_disable_failed endpoint=%s error=\"%s\"", m->endpoint_id, err.msg);
        return;
    }
    if (rc == 1) {
        log_warn("event=webhook_disabled endpoint=%s status=%s reason=\"%s\"", m->endpoint_id,
                 webhook_endpoint_status_name(status), reason);
        webhook_alert_disabled(m->endpoint_id, url, status, reason);
    }
}

/* A failed attempt: its failing streak begins, or, running for longer than
 * webhook_disable_after, disables the endpoint. */
static void
webhook_failed(struct webhook_thread *t, const struct webhook_msg *m,
               const struct webhook_endpoint_target *target, long disable_after)
{
    errbuf err = {{0}};
    char reason[WEBHOOK_ENDPOINT_REASON_MAX + 1];

    if (target->failing_for < 0) {
        if (webhook_endpoint_failing(t->endpoints, m->endpoint, &err) != RS_OK)
            log_warn("event=webhook_streak_not_recorded endpoint=%s error=\"%s\"", m->endpoint_id,
                     err.msg);
        return;
    }
    if (target->failing_for < disable_after)
        return;
    snprintf(reason, sizeof(reason),
             "failing for %ld s without a 2xx (webhook_disable_after %ld s)", target->failing_for,
             disable_after);
    webhook_disable(t, m, target->url, WEBHOOK_DISABLED_FAILING, reason);
}

/* "endpoint E answered HTTP 500: <start of its answer, made safe>". */
static void
webhook_answer_error(const struct webhook_msg *m, long status, const char *answer, errbuf *err)
{
    int n;

    errbuf_set(err, "endpoint %s answered HTTP %ld", m->endpoint_id, status);
    n = (int)strlen(err->msg);
    if (answer != NULL && *answer != '\0' && n + 3 < (int)sizeof(err->msg)) {
        snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": ");
        n += 2;
        utf8_sanitize(answer, utf8_cut_chars(answer, strlen(answer), WEBHOOK_ANSWER_SHOWN),
                      err->msg + n, sizeof(err->msg) - (size_t)n);
    }
}

/* The webhook-signature of the payload at timestamp: the current secret, and
 * the previous one during a rotation. */
static int
webhook_sign(const struct webhook_endpoint_target *target, const struct webhook_msg *m,
             int64_t timestamp, char out[WEBHOOK_SIG_HEADER_SIZE], errbuf *err)
{
    webhook_sig_key keys[2];
    size_t n = 0;
    int rc = RS_ERR;

    memset(keys, 0, sizeof(keys));
    if (webhook_sig_secret_parse(target->current, keys[0].bytes, &keys[0].len, err) != RS_OK)
        goto done;
    n = 1;
    if (target->previous[0] != '\0') {
        if (webhook_sig_secret_parse(target->previous, keys[1].bytes, &keys[1].len, err) != RS_OK)
            goto done;
        n = 2;
    }
    rc = webhook_sig_sign(keys, n, m->webhook_id, timestamp, m->payload, strlen(m->payload), out,
                          err);
done:
    webhook_sig_key_wipe(&keys[0]);
    webhook_sig_key_wipe(&keys[1]);
    return rc;
}

/* One POST of the payload to the target, and what its answer makes of it. */
static enum queue_outcome
webhook_post(struct webhook_thread *t, const conf *cf, const struct webhook_msg *m,
             const struct webhook_endpoint_target *target, errbuf *err)
{
    char sig[WEBHOOK_SIG_HEADER_SIZE], h_id[32 + WEBHOOK_SIG_ID_SIZE], h_time[64],
        h_sig[32 + WEBHOOK_SIG_HEADER_SIZE];
    const char *headers[] = {h_id, h_time, h_sig, "User-Agent: restock-webhook/" PACKAGE_VERSION,
                             NULL};
    const char *answer = NULL;
    time_t now = time(NULL);
    long status = 0, disable_after = conf_int(cf, "webhook_disable_after");
    enum webhook_result result = WEBHOOK_FAILED;

    if (webhook_sign(target, m, (int64_t)now, sig, err) != RS_OK)
        return QUEUE_PERMANENT; /* the message's id or a secret is unusable */
    snprintf(h_id, sizeof(h_id), "webhook-id: %s", m->webhook_id);
    snprintf(h_time, sizeof(h_time), "webhook-timestamp: %lld", (long long)now);
    snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", sig);
    if (http_post_json(t->client, target->url, headers, m->payload, conf_int(cf, "webhook_timeout"),
                       &status, &answer, err) != RS_OK) {
        errbuf_prefix(err, "endpoint %s", m->endpoint_id);
        if (http_last_failure(t->client) == HTTP_FAIL_EGRESS)
            result = WEBHOOK_REFUSED_EGRESS;
        goto failed;
    }
    if (status >= 200 && status <= 299) {
        webhook_count(m->endpoint_id, WEBHOOK_DELIVERED);
        log_info("event=webhook_delivered id=%s endpoint=%s type=%s status=%ld", m->webhook_id,
                 m->endpoint_id, m->type, status);
        if (target->failing_for >= 0 &&
            webhook_endpoint_succeeded(t->endpoints, m->endpoint, err) != RS_OK)
            log_warn("event=webhook_streak_not_cleared endpoint=%s error=\"%s\"", m->endpoint_id,
                     err->msg);
        return QUEUE_DONE;
    }
    webhook_answer_error(m, status, answer, err);
    if (status == 410) {
        webhook_count(m->endpoint_id, WEBHOOK_GONE);
        webhook_disable(t, m, target->url, WEBHOOK_DISABLED_GONE, "answered 410 Gone");
        t->retry_in = conf_int(cf, "backoff_max"); /* it waits, disabled */
        return QUEUE_RETRY;
    }
    if (status == 429 || status == 503) {
        t->retry_in =
            webhook_retry_after(http_retry_after(t->client), now, conf_int(cf, "backoff_max"));
        if (t->retry_in > 0) {
            size_t n = strlen(err->msg);
            result = WEBHOOK_RETRY_AFTER;
            snprintf(err->msg + n, sizeof(err->msg) - n, " (Retry-After: %ld s)", t->retry_in);
        }
    }
failed:
    webhook_count(m->endpoint_id, result);
    webhook_failed(t, m, target, disable_after);
    return QUEUE_RETRY;
}

static enum queue_outcome
webhook_deliver(void *state, const spool_msg *msg, errbuf *err)
{
    struct webhook_thread *t = state;
    struct webhook_endpoint_target target;
    struct webhook_msg m;
    enum queue_outcome outcome = QUEUE_PERMANENT;
    conf *cf = conf_current();
    int found;

    t->retry_in = 0;
    memset(&target, 0, sizeof(target));
    memset(&m, 0, sizeof(m));
    if (cf == NULL) {
        errbuf_set(err, "no configuration");
        outcome = QUEUE_BLOCKED;
        goto done;
    }
    if (conf_generation(cf) != t->generation && webhook_client(t, cf, err) != RS_OK) {
        /* The old client and policy go on; the next message tries again. */
        log_error("event=reload_failed what=webhook error=\"%s\"", err->msg);
        t->generation = conf_generation(cf);
    }
    if (webhook_msg_parse(spool_msg_body(msg), spool_msg_len(msg), &m, err) != RS_OK) {
        errbuf_prefix(err, "webhook message %s", spool_msg_id(msg));
        goto done;
    }
    if (webhook_ctx.key == NULL) {
        errbuf_set(err, "webhook_key is not set: restock-worker cannot open the endpoints' "
                        "secrets; give it the credential webhook_key and restart it");
        t->retry_in = conf_int(cf, "backoff_max") > 0 ? conf_int(cf, "backoff_max") : 1;
        outcome = QUEUE_BLOCKED;
        goto done;
    }
    found =
        webhook_endpoint_target(t->endpoints, m.endpoint, conf_int(cf, "webhook_rotation_overlap"),
                                webhook_ctx.key, &target, err);
    if (found < 0) {
        outcome = QUEUE_BLOCKED; /* the database: not an attempt */
    } else if (found == 0) {
        errbuf_set(err, "no such endpoint: %s is no longer in the database", m.endpoint_id);
    } else if (!target.opened) {
        errbuf_prefix(err, "endpoint %s", m.endpoint_id);
        outcome = QUEUE_RETRY;
    } else if (target.status != WEBHOOK_ENABLED) {
        /* Never sent while disabled; it waits for an enable or its lifetime. */
        errbuf_set(err,
                   "endpoint %s is disabled (%s): not sent; it waits for `restockctl "
                   "webhook enable`",
                   m.endpoint_id, webhook_endpoint_status_name(target.status));
        t->retry_in = conf_int(cf, "backoff_max") > 0 ? conf_int(cf, "backoff_max") : 1;
        outcome = QUEUE_RETRY;
    } else {
        outcome = webhook_post(t, cf, &m, &target, err);
    }
done:
    webhook_endpoint_target_wipe(&target);
    webhook_msg_clear(&m);
    conf_destroy(&cf);
    return outcome;
}

/* A dead webhook message: operators are told by an alert naming the endpoint,
 * the type and the reason (the last error in it). */
static void
webhook_dead(void *state, const spool_msg *msg, const char *reason)
{
    struct webhook_msg m;
    errbuf ignored = {{0}};
    char cause[SPOOL_ID_MAX + 64], attempts[16], when[64], why[SPOOL_TEXT_MAX * 4 + 1];

    (void)state;
    webhook_msg_parse(spool_msg_body(msg), spool_msg_len(msg), &m, &ignored);
    snprintf(attempts, sizeof(attempts), "%d", spool_msg_attempts(msg));
    timetext_local_zone(time(NULL), when, sizeof(when));
    utf8_sanitize(reason, strlen(reason), why, sizeof(why));
    /* Named by the moment too: redriven and dead again, it is told again. */
    snprintf(cause, sizeof(cause), "dead-webhook-%.60s-%ld", spool_msg_id(msg), (long)time(NULL));
    mailtext_var vars[] = {{"endpoint", m.endpoint_id ? m.endpoint_id : "?"},
                           {"type", m.type ? m.type : "?"},
                           {"message_id", spool_msg_id(msg)},
                           {"attempts", attempts},
                           {"reason", why},
                           {"time", when},
                           {NULL, NULL}};
    if (alert_raise(webhook_ctx.alerts, cause, "webhook_dead", vars, &ignored) < 0)
        log_error("event=alert_failed cause=%s error=\"%s\"", cause, ignored.msg);
    webhook_msg_clear(&m);
}

/* No claim (webhook messages carry none: once in this spool they are this
 * worker's to deliver), so no owns and no ended hook. */
const struct queue_driver webhook_driver = {
    .name = QUEUES_WEBHOOK,
    .thread_init = webhook_thread_init,
    .thread_fini = webhook_thread_fini,
    .deliver = webhook_deliver,
    .dead = webhook_dead,
    .lifetime_key = "webhook_lifetime",
    .retry_in = webhook_retry_in,
};
