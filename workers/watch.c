/* watch: the worker's watch over what operators must hear of (see watch.h). */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mailtext.h"
#include "timetext.h"
#include "watch.h"

#define WATCH_MAX_QUEUES  4
#define WATCH_MAX_CORRUPT 64
/* Milliseconds one turn of the main loop spends deleting expired idempotency
 * keys at most, a short batch at a time (checkout_key.h), so that no DELETE
 * holds locks long and the loop's other work waits a second at most. A backlog
 * left over is deleted in the next turns, without a sleep between them, until
 * it is gone: the pruning keeps up with whatever rate the keys come at. */
#define WATCH_KEY_PRUNE_MS 1000

/* The corrupt handler's argument: which watch, which queue. */
struct watch_source {
    watch *owner;
    spool *queue;
};

struct watch {
    order *orders;
    checkout_key *keys;
    alert *alerts;
    struct watch_source sources[WATCH_MAX_QUEUES];
    size_t n_sources;
    long interval, callback_timeout, delay_warning, done_retention, key_retention;
    time_t last_pass;
    long long passes;
    int key_prune_failing; /* logged once per database outage, not every pass */
    int keys_behind;       /* the last prune left expired keys: prune again at once */
    long long keys_pruned; /* deleted since the backlog began, logged when it is gone */
    /* A disk fault of the sweep (write, fsync, rename, ENOSPC). */
    struct {
        time_t since; /* 0: no fault */
        int told;
        char queue[16], error[sizeof(((errbuf *)0)->msg)];
    } fault;
    /* Corrupt files are reported from inside spool calls, which may hold the
     * spool's lock: they are noted here and alerted from the main loop. */
    pthread_mutex_t lock;
    size_t n_corrupt;
    struct {
        char queue[16], path[512], problem[256];
    } corrupt[WATCH_MAX_CORRUPT];
};

static void
watch_note_corrupt(void *arg, const char *from, const char *to, const char *problem)
{
    struct watch_source *source = arg;
    watch *self = source->owner;
    const char *queue_name = spool_queue(source->queue);

    log_error("event=corrupt queue=%s file=%s moved_to=%s problem=\"%s\"", queue_name, from, to,
              problem);
    pthread_mutex_lock(&self->lock);
    if (self->n_corrupt < WATCH_MAX_CORRUPT) {
        snprintf(self->corrupt[self->n_corrupt].queue, 16, "%s", queue_name);
        snprintf(self->corrupt[self->n_corrupt].path, 512, "%s", to);
        snprintf(self->corrupt[self->n_corrupt].problem, 256, "%s", problem);
        self->n_corrupt++;
    }
    pthread_mutex_unlock(&self->lock);
}

watch *
watch_new(const conf *cf, alert *alerts, spool **queues, size_t n)
{
    watch *self;

    if (n > WATCH_MAX_QUEUES)
        return NULL;
    self = calloc(1, sizeof(*self));
    if (self == NULL)
        return NULL;
    self->alerts = alerts;
    self->key_retention = conf_int(cf, "idempotency_retention");
    watch_reload(self, cf);
    pthread_mutex_init(&self->lock, NULL);
    for (size_t i = 0; i < n; i++) {
        self->sources[i] = (struct watch_source){.owner = self, .queue = queues[i]};
        spool_set_corrupt_handler(queues[i], watch_note_corrupt, &self->sources[i]);
    }
    self->n_sources = n;
    return self;
}

void
watch_destroy(watch **self_p)
{
    watch *self = *self_p;

    if (self == NULL)
        return;
    for (size_t i = 0; i < self->n_sources; i++)
        spool_set_corrupt_handler(self->sources[i].queue, NULL, NULL);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

void
watch_use(watch *self, order *orders, checkout_key *keys)
{
    self->orders = orders;
    self->keys = keys;
}

void
watch_reload(watch *self, const conf *cf)
{
    self->interval = conf_int(cf, "watch_interval");
    self->callback_timeout = conf_int(cf, "callback_timeout");
    self->delay_warning = conf_int(cf, "delay_warning");
    self->done_retention = conf_int(cf, "done_retention");
}

int
watch_keys_behind(const watch *self)
{
    return self->keys_behind;
}

int
watch_pass_due(time_t now, time_t last, long interval)
{
    return last == 0 || now < last || now - last >= interval;
}

int
watch_delay_cause(const char *queue_name, time_t oldest, time_t now, long delay_warning,
                  char *cause, size_t size)
{
    if (oldest == 0 || delay_warning <= 0 || now - oldest <= delay_warning)
        return 0;
    snprintf(cause, size, "delay-%s-%ld-%ld", queue_name, (long)oldest,
             (long)(now - oldest) / delay_warning);
    return 1;
}

static void
watch_alert_corrupt(watch *self)
{
    char when[64];

    timetext_local_zone(time(NULL), when, sizeof(when));
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->n_corrupt; i++) {
        errbuf err = {{0}};
        const char *path = self->corrupt[i].path, *base = strrchr(path, '/');
        char cause[SPOOL_ID_MAX];
        mailtext_var vars[] = {{"queue", self->corrupt[i].queue},
                               {"path", path},
                               {"last_error", self->corrupt[i].problem},
                               {"time", when},
                               {NULL, NULL}};
        snprintf(cause, sizeof(cause), "corrupt-%s-%.80s", self->corrupt[i].queue,
                 base ? base + 1 : path);
        if (alert_raise(self->alerts, cause, "corrupt", vars, &err) < 0)
            log_error("event=alert_failed cause=%s error=\"%s\"", cause, err.msg);
    }
    self->n_corrupt = 0;
    pthread_mutex_unlock(&self->lock);
}

/* One overdue order (sent, no callback within callback_timeout): marked
 * reported, then told to operators by the worker whose mark changed the row
 * (with several workers, one of them). */
static void
watch_tell_overdue(void *arg, const struct order_overdue *late)
{
    watch *self = arg;
    errbuf err = {{0}};
    char sent_at[64], age[32], cause[64];
    char name[ORDER_SKU_SIZE * 4], sku[ORDER_SKU_SIZE], maker[ORDER_FACTORY_NAME_SIZE],
        maker_id[ORDER_FACTORY_IDENT_SIZE];
    long minutes = (long)(late->age / 60);
    int mine;

    /* Copied first: the mark below may reconnect, taking the row's columns. */
    snprintf(name, sizeof(name), "%s", late->product_name ? late->product_name : "");
    snprintf(sku, sizeof(sku), "%s", late->sku ? late->sku : "");
    snprintf(maker, sizeof(maker), "%s", late->factory_name ? late->factory_name : "");
    snprintf(maker_id, sizeof(maker_id), "%s",
             late->factory_identifier ? late->factory_identifier : "");
    mine = order_overdue_reported(self->orders, late->order_id, &err);
    if (mine < 0)
        log_warn("event=overdue_mark_failed error=\"%s\"", err.msg);
    if (mine <= 0)
        return; /* told at the next check, or by the worker that marked it */
    timetext_local_zone(late->sent_at, sent_at, sizeof(sent_at));
    snprintf(age, sizeof(age), "%ld분 (%ld min)", minutes, minutes);
    snprintf(cause, sizeof(cause), "callback-missing-%s", late->order_id);
    mailtext_var vars[] = {
        {"order_id", late->order_id}, {"product_name", name}, {"sku", sku}, {"factory_name", maker},
        {"factory_id", maker_id},     {"sent_at", sent_at},   {"age", age}, {NULL, NULL}};
    log_error("event=callback_missing order=%s sku=%s sent_at=\"%s\"", late->order_id,
              vars[2].value, sent_at);
    if (alert_raise(self->alerts, cause, "callback_missing", vars, &err) < 0)
        log_error("event=alert_failed cause=%s error=\"%s\"", cause, err.msg);
}

static long long
watch_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Keys older than idempotency_retention, a batch at a time, for at most
 * WATCH_KEY_PRUNE_MS; keys_behind says whether a backlog is left. One log line
 * per backlog, when it is gone. */
static void
watch_prune_keys(watch *self)
{
    errbuf err = {{0}};
    long long n, until = watch_ms() + WATCH_KEY_PRUNE_MS;

    do {
        n = checkout_key_prune(self->keys, self->key_retention, &err);
        if (n < 0) {
            if (!self->key_prune_failing)
                log_warn("event=key_prune_failed error=\"%s\"", err.msg);
            self->key_prune_failing = 1;
            self->keys_behind = 0; /* tried again at the next pass */
            return;
        }
        self->key_prune_failing = 0;
        self->keys_pruned += n;
    } while (n == CHECKOUT_KEY_PRUNE_BATCH && watch_ms() < until);
    self->keys_behind = n == CHECKOUT_KEY_PRUNE_BATCH;
    if (!self->keys_behind && self->keys_pruned > 0) {
        log_info("event=keys_pruned count=%lld", self->keys_pruned);
        self->keys_pruned = 0;
    }
}

/* The oldest waiting message older than delay_warning: told, and told again once
 * per delay_warning period while it keeps waiting (watch_delay_cause), so that
 * operators are reminded at a bounded rate. Alerts waiting in the mail queue do
 * not count: with the relay down, the warning itself would become the oldest
 * message once the others went out, and be told of in turn (an email about a
 * delayed email). */
static void
watch_check_delay(watch *self, spool *sp, time_t now)
{
    errbuf err = {{0}};
    time_t oldest = 0;
    char age[48], count[24], cause[64], when[64];
    long waiting;

    if (spool_oldest_waiting_except(sp, ALERT_ID_PREFIX, &oldest, &err) != RS_OK) {
        log_warn("event=delay_check_failed queue=%s error=\"%s\"", spool_queue(sp), err.msg);
        return;
    }
    if (!watch_delay_cause(spool_queue(sp), oldest, now, self->delay_warning, cause, sizeof(cause)))
        return;
    waiting = spool_count(sp, SPOOL_INCOMING, &err) + spool_count(sp, SPOOL_DEFERRED, &err);
    snprintf(age, sizeof(age), "%ld분 (%ld min)", (long)(now - oldest) / 60,
             (long)(now - oldest) / 60);
    snprintf(count, sizeof(count), "%ld", waiting);
    timetext_local_zone(now, when, sizeof(when));
    mailtext_var vars[] = {
        {"queue", spool_queue(sp)}, {"age", age}, {"count", count}, {"time", when}, {NULL, NULL}};
    log_warn("event=delay_warning queue=%s oldest_age=%lds waiting=%ld", spool_queue(sp),
             (long)(now - oldest), waiting);
    if (alert_raise(self->alerts, cause, "delay_warning", vars, &err) < 0)
        log_error("event=alert_failed cause=%s error=\"%s\"", cause, err.msg);
}

static void
watch_pass(watch *self, time_t now)
{
    errbuf err = {{0}};

    /* Before watch_use (a unit test's watch), a pass looks at the spools only. */
    if (self->orders != NULL && order_each_overdue(self->orders, self->callback_timeout,
                                                   watch_tell_overdue, self, &err) < 0)
        log_warn("event=overdue_check_failed error=\"%s\"", err.msg);
    for (size_t i = 0; i < self->n_sources; i++)
        watch_check_delay(self, self->sources[i].queue, now);
    for (size_t i = 0; i < self->n_sources; i++)
        if (spool_prune_done(self->sources[i].queue, self->done_retention, &err) < 0)
            log_warn("event=prune_failed error=\"%s\"", err.msg);
    if (self->keys != NULL)
        watch_prune_keys(self);
    self->last_pass = now;
    self->passes++;
    log_debug("event=watch_pass pass=%lld interval=%ld", self->passes, self->interval);
}

void
watch_turn(watch *self, time_t now)
{
    if (watch_pass_due(now, self->last_pass, self->interval))
        watch_pass(self, now);
    else if (self->keys_behind)
        watch_prune_keys(self);
    watch_alert_corrupt(self);
}

/* Logged when a fault starts and when it ends, and told to operators once per
 * fault, as soon as the mail queue's disk takes the alert: during the fault when
 * only the factory queue fails, else once the disk is back (the fault's log line
 * is the report meanwhile). The sweep keeps retrying; nothing is marked taken
 * until it is durable. */
void
watch_spool_fault(watch *self, const char *queue_name, const char *error)
{
    errbuf err = {{0}};
    char cause[64], when[64];

    if (queue_name != NULL && self->fault.since == 0) {
        self->fault.since = time(NULL);
        snprintf(self->fault.queue, sizeof(self->fault.queue), "%s", queue_name);
        snprintf(self->fault.error, sizeof(self->fault.error), "%s", error);
        log_error("event=spool_fault queue=%s error=\"%s\"", queue_name, error);
    }
    if (self->fault.since == 0)
        return;
    if (!self->fault.told) {
        snprintf(cause, sizeof(cause), "spool-fault-%s-%ld", self->fault.queue,
                 (long)self->fault.since);
        timetext_local_zone(self->fault.since, when, sizeof(when));
        mailtext_var vars[] = {{"queue", self->fault.queue},
                               {"last_error", self->fault.error},
                               {"time", when},
                               {NULL, NULL}};
        if (alert_raise(self->alerts, cause, "spool_fault", vars, &err) >= 0)
            self->fault.told = 1;
        else if (queue_name == NULL)
            log_error("event=alert_failed cause=%s error=\"%s\"", cause, err.msg);
    }
    if (queue_name == NULL) {
        log_info("event=spool_fault_cleared queue=%s since=%ld", self->fault.queue,
                 (long)self->fault.since);
        self->fault.since = 0;
        self->fault.told = 0;
        self->fault.queue[0] = self->fault.error[0] = '\0';
    }
}
