/* restock-worker: the durable queue worker. It listens for doorbells on ZeroMQ and
 * sweeps the outbox at start and every sweep_interval, fans events out into the
 * on-disk spool queues (factory, mail), and delivers them on threads: orders to
 * the factory, emails through the SMTP relay. It watches for what operators must
 * hear of: dead messages, corrupt files, orders whose callback never came, and
 * messages waiting too long; and it deletes the checkouts' idempotency keys
 * past their retention. It serves every program's Prometheus metrics on
 * metrics_listen (scrape.c), and re-reads its configuration on SIGHUP. One worker
 * per spool (a lock file says so). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "alert.h"
#include "bus.h"
#include "checkout_key.h"
#include "claim.h"
#include "conf.h"
#include "db.h"
#include "delivery.h"
#include "drivers.h"
#include "http.h"
#include "ident.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "order.h"
#include "outbox.h"
#include "queue.h"
#include "queues.h"
#include "scrape.h"
#include "reorder.h"
#include "spool.h"
#include "timetext.h"
#include "token.h"

/* How often the slow checks run (overdue callbacks, delays, pruning), seconds. */
#define WORKER_WATCH_INTERVAL 10
#define WORKER_MAX_CORRUPT    64
/* Milliseconds one turn of the main loop spends deleting expired idempotency
 * keys at most, a short batch at a time (checkout_key.h), so that no DELETE
 * holds locks long and the loop's other work waits a second at most. A backlog
 * left over is deleted in the next turns, without a sleep between them, until
 * it is gone: the pruning keeps up with whatever rate the keys come at. */
#define WORKER_KEY_PRUNE_MS 1000

static volatile sig_atomic_t worker_stop, worker_hup;

static void
worker_on_signal(int sig)
{
    if (sig == SIGHUP)
        worker_hup = 1;
    else
        worker_stop = sig;
}

/* What the worker applies at run time, read from the current configuration
 * (conf_current) at the start of each unit of work: a delivery, a settle, a
 * loop pass. The rest (spool, bus, database, threads, the metrics endpoint,
 * operator_email of the alerts, the callback keys) is kept until a restart. */
static const char *const worker_changeable[] = {"log_level",
                                                "max_attempts",
                                                "factory_lifetime",
                                                "mail_lifetime",
                                                "attempt_timeout",
                                                "backoff_min",
                                                "backoff_max",
                                                "delay_warning",
                                                "sweep_interval",
                                                "done_retention",
                                                "factory_api",
                                                "requester",
                                                "public_url",
                                                "callback_timeout",
                                                "smtp_host",
                                                "smtp_port",
                                                "smtp_starttls",
                                                "smtp_ca_file",
                                                "smtp_user",
                                                "smtp_password",
                                                "smtp_timeout",
                                                "mail_from",
                                                NULL};

/* Corrupt files are reported from inside spool calls, which may hold the spool's
 * lock: they are noted here and alerted from the main loop. */
struct worker_corrupt {
    pthread_mutex_t lock;
    size_t n;
    struct {
        char queue[16], path[512], problem[256];
    } files[WORKER_MAX_CORRUPT];
};

static struct worker_corrupt worker_corrupt = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void
worker_note_corrupt(void *arg, const char *from, const char *to, const char *problem)
{
    const char *queue_name = arg;

    log_error("event=corrupt queue=%s file=%s moved_to=%s problem=\"%s\"", queue_name, from, to,
              problem);
    pthread_mutex_lock(&worker_corrupt.lock);
    if (worker_corrupt.n < WORKER_MAX_CORRUPT) {
        snprintf(worker_corrupt.files[worker_corrupt.n].queue, 16, "%s", queue_name);
        snprintf(worker_corrupt.files[worker_corrupt.n].path, 512, "%s", to);
        snprintf(worker_corrupt.files[worker_corrupt.n].problem, 256, "%s", problem);
        worker_corrupt.n++;
    }
    pthread_mutex_unlock(&worker_corrupt.lock);
}

static void
worker_alert_corrupt(alert *alerts)
{
    char when[64];

    timetext_local_zone(time(NULL), when, sizeof(when));
    pthread_mutex_lock(&worker_corrupt.lock);
    for (size_t i = 0; i < worker_corrupt.n; i++) {
        errbuf err = {{0}};
        const char *path = worker_corrupt.files[i].path, *base = strrchr(path, '/');
        char cause[SPOOL_ID_MAX];
        mailtext_var vars[] = {{"queue", worker_corrupt.files[i].queue},
                               {"path", path},
                               {"last_error", worker_corrupt.files[i].problem},
                               {"time", when},
                               {NULL, NULL}};
        snprintf(cause, sizeof(cause), "corrupt-%s-%.80s", worker_corrupt.files[i].queue,
                 base ? base + 1 : path);
        if (alert_raise(alerts, cause, "corrupt", vars, &err) < 0)
            log_error("event=alert_failed cause=%s error=\"%s\"", cause, err.msg);
    }
    worker_corrupt.n = 0;
    pthread_mutex_unlock(&worker_corrupt.lock);
}

/* Orders sent whose callback has not come within callback_timeout: told once. */
struct worker_watch {
    order *orders;
    checkout_key *keys;
    long callback_timeout, delay_warning, done_retention, key_retention;
    int key_prune_failing; /* logged once per database outage, not every pass */
    int keys_behind;       /* the last prune left expired keys: prune again at once */
    long long keys_pruned; /* deleted since the backlog began, logged when it is gone */
};

/* The overdue orders of one check: each marked reported, then told to operators
 * by the worker whose mark changed the row (with several workers, one of them). */
struct worker_overdue {
    alert *alerts;
    order *orders;
};

static void
worker_tell_overdue(void *arg, const struct order_overdue *late)
{
    struct worker_overdue *o = arg;
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
    mine = order_overdue_reported(o->orders, late->order_id, &err);
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
    if (alert_raise(o->alerts, cause, "callback_missing", vars, &err) < 0)
        log_error("event=alert_failed cause=%s error=\"%s\"", cause, err.msg);
}

static void
worker_check_overdue(struct worker_watch *w, alert *alerts)
{
    struct worker_overdue found = {.alerts = alerts, .orders = w->orders};
    errbuf err = {{0}};

    if (order_each_overdue(w->orders, w->callback_timeout, worker_tell_overdue, &found, &err) < 0)
        log_warn("event=overdue_check_failed error=\"%s\"", err.msg);
}

static long long
worker_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Keys older than idempotency_retention, a batch at a time, for at most
 * WORKER_KEY_PRUNE_MS; w->keys_behind says whether a backlog is left. One log
 * line per backlog, when it is gone. */
static void
worker_prune_keys(struct worker_watch *w)
{
    errbuf err = {{0}};
    long long n, until = worker_ms() + WORKER_KEY_PRUNE_MS;

    do {
        n = checkout_key_prune(w->keys, w->key_retention, &err);
        if (n < 0) {
            if (!w->key_prune_failing)
                log_warn("event=key_prune_failed error=\"%s\"", err.msg);
            w->key_prune_failing = 1;
            w->keys_behind = 0; /* tried again at the next watch */
            return;
        }
        w->key_prune_failing = 0;
        w->keys_pruned += n;
    } while (n == CHECKOUT_KEY_PRUNE_BATCH && worker_ms() < until);
    w->keys_behind = n == CHECKOUT_KEY_PRUNE_BATCH;
    if (!w->keys_behind && w->keys_pruned > 0) {
        log_info("event=keys_pruned count=%lld", w->keys_pruned);
        w->keys_pruned = 0;
    }
}

/* The oldest waiting message older than delay_warning: told, and told again once
 * per delay_warning period while it keeps waiting (the cause names the message and
 * the period), so that operators are reminded at a bounded rate. Alerts waiting in
 * the mail queue do not count: with the relay down, the warning itself would
 * become the oldest message once the others went out, and be told of in turn (an
 * email about a delayed email). */
static void
worker_check_delay(struct worker_watch *w, spool *sp, alert *alerts)
{
    errbuf err = {{0}};
    time_t oldest = 0, now = time(NULL);
    char age[48], count[24], cause[64], when[64];
    long waiting;

    if (spool_oldest_waiting_except(sp, ALERT_ID_PREFIX, &oldest, &err) != RS_OK) {
        log_warn("event=delay_check_failed queue=%s error=\"%s\"", spool_queue(sp), err.msg);
        return;
    }
    if (oldest == 0 || now - oldest <= w->delay_warning)
        return;
    waiting = spool_count(sp, SPOOL_INCOMING, &err) + spool_count(sp, SPOOL_DEFERRED, &err);
    snprintf(age, sizeof(age), "%ld분 (%ld min)", (long)(now - oldest) / 60,
             (long)(now - oldest) / 60);
    snprintf(count, sizeof(count), "%ld", waiting);
    snprintf(cause, sizeof(cause), "delay-%s-%ld-%ld", spool_queue(sp), (long)oldest,
             (long)(now - oldest) / w->delay_warning);
    timetext_local_zone(now, when, sizeof(when));
    mailtext_var vars[] = {
        {"queue", spool_queue(sp)}, {"age", age}, {"count", count}, {"time", when}, {NULL, NULL}};
    log_warn("event=delay_warning queue=%s oldest_age=%lds waiting=%ld", spool_queue(sp),
             (long)(now - oldest), waiting);
    if (alert_raise(alerts, cause, "delay_warning", vars, &err) < 0)
        log_error("event=alert_failed cause=%s error=\"%s\"", cause, err.msg);
}

/* A disk fault of the spool (a put of the sweep failed: write, fsync, rename,
 * ENOSPC): logged when it starts and when it ends, and told to operators once per
 * fault, as soon as the mail queue's disk takes the alert: during the fault when
 * only the factory queue fails, else once the disk is back (the fault's log line
 * is the report meanwhile). The sweep keeps retrying; nothing is marked taken
 * until it is durable. */
struct worker_fault {
    time_t since; /* 0: no fault */
    int told;
    char queue[16], error[sizeof(((errbuf *)0)->msg)];
};

/* Called with the failing queue and error at each failed sweep of a fault, and
 * with NULL once a sweep succeeds again. */
static void
worker_spool_fault(struct worker_fault *f, alert *alerts, const char *queue_name, const char *error)
{
    errbuf err = {{0}};
    char cause[64], when[64];

    if (queue_name != NULL && f->since == 0) {
        f->since = time(NULL);
        snprintf(f->queue, sizeof(f->queue), "%s", queue_name);
        snprintf(f->error, sizeof(f->error), "%s", error);
        log_error("event=spool_fault queue=%s error=\"%s\"", queue_name, error);
    }
    if (f->since == 0)
        return;
    if (!f->told) {
        snprintf(cause, sizeof(cause), "spool-fault-%s-%ld", f->queue, (long)f->since);
        timetext_local_zone(f->since, when, sizeof(when));
        mailtext_var vars[] = {
            {"queue", f->queue}, {"last_error", f->error}, {"time", when}, {NULL, NULL}};
        if (alert_raise(alerts, cause, "spool_fault", vars, &err) >= 0)
            f->told = 1;
        else if (queue_name == NULL)
            log_error("event=alert_failed cause=%s error=\"%s\"", cause, err.msg);
    }
    if (queue_name == NULL) {
        log_info("event=spool_fault_cleared queue=%s since=%ld", f->queue, (long)f->since);
        *f = (struct worker_fault){0};
    }
}

/* SIGHUP: the new file parsed first; refused, the old settings stay. */
static void
worker_reload(struct worker_watch *w, scrape *endpoint)
{
    conf *cf;

    notify_reloading();
    cf = conf_reload_current(worker_changeable);
    if (cf != NULL) {
        w->callback_timeout = conf_int(cf, "callback_timeout");
        w->delay_warning = conf_int(cf, "delay_warning");
        w->done_retention = conf_int(cf, "done_retention");
        if (endpoint != NULL)
            scrape_set_limits(endpoint, w->delay_warning, w->callback_timeout);
        conf_destroy(&cf); /* deliveries pick it up at their next message */
    }
    notify_ready("delivering");
}

static int
worker_lock(const char *spool_dir, errbuf *err)
{
    char path[4096];
    int fd;

    if (mkdir(spool_dir, 0700) != 0 && errno != EEXIST)
        return errbuf_set(err, "cannot create spool %s: %s", spool_dir, strerror(errno));
    snprintf(path, sizeof(path), "%s/worker.lock", spool_dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return errbuf_set(err, "cannot open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return errbuf_set(err, "another restock-worker owns the spool %s (%s is locked)", spool_dir,
                          path);
    }
    return fd; /* held until exit */
}

static void
worker_usage(FILE *out)
{
    fprintf(out,
            "usage: restock-worker [-c FILE]\n"
            "The configuration is %s unless -c or RESTOCK_CONFIG names another.\n",
            CONF_DEFAULT_PATH);
}

static const char *
worker_bus_listen(const conf *cf)
{
    const char *listen = conf_str(cf, "bus_listen");

    return *listen != '\0' ? listen : conf_str(cf, "bus_endpoint");
}

int
main(int argc, char **argv)
{
    conf *cf = NULL;
    errbuf err = {{0}};
    spool *factory_q = NULL, *mail_q = NULL, *callback_q = NULL;
    queue *factory_runner = NULL, *mail_runner = NULL, *callback_runner = NULL;
    spool *queues[3] = {NULL, NULL, NULL}; /* factory, mail, callback */
    bus_sub *bell = NULL;
    db *conn = NULL;
    outbox *events = NULL;
    order *orders = NULL;
    reorder *policy = NULL;
    alert *alerts = NULL;
    checkout_key *checkout_keys = NULL;
    lease *registration = NULL;
    struct worker_watch watch = {0};
    struct worker_fault fault = {0};
    struct sigaction sa;
    sigset_t hup;
    metrics *counters = NULL;
    scrape *endpoint = NULL;
    time_t next_sweep = 0, next_watch = 0;
    int status = 1, lock_fd = -1, sweep_failing = 0;

    cf = conf_from_args(argc, argv, "restock-worker", worker_usage, &status);
    if (cf == NULL)
        return status;
    status = 1;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = worker_on_signal; /* no SA_RESTART: the wait returns at once */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* SIGHUP blocked in every thread started below (delivery, libzmq, metrics),
     * so that only this one, between two passes, takes it: no SMTP or HTTP
     * exchange is cut short by EINTR. Unblocked once they all run. */
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, NULL);
    conf_set_current(cf);

    if (sodium_init() < 0 || db_library_init(&err) != RS_OK || http_global_init(&err) != RS_OK) {
        log_error("event=start_failed error=\"cannot initialise libsodium, MySQL or curl %s\"",
                  err.msg);
        goto done;
    }
    /* A configuration that cannot make tokens is refused before the spool is
     * touched (the outbox loads the keys it uses). */
    {
        token_keys keys;
        int valid = token_keys_load(cf, &keys, &err) == RS_OK;
        token_keys_wipe(&keys);
        if (!valid)
            goto fail;
    }
    lock_fd = worker_lock(conf_str(cf, "spool_dir"), &err);
    if (lock_fd < 0)
        goto fail;
    counters = metrics_new(conf_str(cf, "metrics_dir"), "restock-worker", &err);
    if (counters == NULL)
        log_warn("event=metrics_unavailable error=\"%s\"", err.msg);
    factory_q = spool_new(conf_str(cf, "spool_dir"), QUEUES_FACTORY, &err);
    mail_q = factory_q ? spool_new(conf_str(cf, "spool_dir"), QUEUES_MAIL, &err) : NULL;
    /* Callbacks restock-callback accepted while the database was down. */
    callback_q = mail_q ? spool_new(conf_str(cf, "spool_dir"), DELIVERY_QUEUE, &err) : NULL;
    if (callback_q == NULL)
        goto fail;
    spool_set_corrupt_handler(factory_q, worker_note_corrupt, "factory");
    spool_set_corrupt_handler(mail_q, worker_note_corrupt, "mail");
    spool_set_corrupt_handler(callback_q, worker_note_corrupt, DELIVERY_QUEUE);
    queues[0] = factory_q;
    queues[1] = mail_q;
    queues[2] = callback_q;
    for (int i = 0; i < 3; i++) {
        spool *sp = queues[i];
        spool_recovery r = {0};
        if (spool_recover(sp, &r, &err) != RS_OK)
            goto fail;
        log_info("event=recovered queue=%s requeued=%zu tmp_removed=%zu corrupt=%zu verified=%zu",
                 spool_queue(sp), r.requeued, r.tmp_removed, r.corrupt, r.verified);
    }

    alerts = alert_new(cf, mail_q);
    conn = db_new(cf, 0);
    if (alerts == NULL || conn == NULL) {
        errbuf_set(&err, "out of memory");
        goto fail;
    }
    orders = order_new(conn, &err);
    events = orders ? outbox_new(cf, conn, orders, factory_q, mail_q, &err) : NULL;
    policy = events ? reorder_new(cf, conn, orders, &err) : NULL;
    checkout_keys = policy ? checkout_key_new(conn, &err) : NULL;
    if (checkout_keys == NULL)
        goto fail;
    /* The worker_id is registered before anything is claimed or delivered: a
     * live worker of the same worker_id refuses this start (lease.h). */
    {
        char owner[CLAIM_OWNER_MAX];
        if (!claim_owner_of(cf, owner))
            log_warn("event=worker_id_weak worker_id=\"%s\" reason=\"no /etc/machine-id: the "
                     "default names the host only; set worker_id\"",
                     owner);
    }
    registration = lease_new(cf, outbox_owner(events), &err);
    if (registration == NULL || lease_start_wait(registration, &worker_stop, &err) != RS_OK)
        goto fail;
    watch.orders = orders;
    watch.keys = checkout_keys;
    watch.key_retention = conf_int(cf, "idempotency_retention");
    watch.callback_timeout = conf_int(cf, "callback_timeout");
    watch.delay_warning = conf_int(cf, "delay_warning");
    watch.done_retention = conf_int(cf, "done_retention");
    /* A worker of several binds its own endpoint (bus_listen); alone, it binds
     * the one the responders ring. */
    bell = bus_sub_new(worker_bus_listen(cf), &err);
    if (bell == NULL)
        goto fail;

    drivers_init(&(struct drivers_context){.cf = cf, .alerts = alerts});
    /* The first sweep comes before any delivery: an event a crash left untaken
     * finds its message still on disk (in any state) and is only marked taken. */
    factory_runner =
        queue_new(cf, factory_q, &drivers_factory, (int)conf_int(cf, "factory_concurrency"), &err);
    mail_runner = factory_runner ? queue_new(cf, mail_q, &drivers_mail,
                                             (int)conf_int(cf, "mail_concurrency"), &err)
                                 : NULL;
    callback_runner = mail_runner ? queue_new(cf, callback_q, &drivers_callback, 1, &err) : NULL;
    if (callback_runner == NULL)
        goto fail;
    /* An endpoint that cannot listen is a failed start: an operator who asked
     * for metrics would otherwise see the worker as down. */
    if (*conf_str(cf, "metrics_listen") != '\0') {
        endpoint = scrape_new(cf, queues, 3, &err);
        if (endpoint == NULL)
            goto fail;
    }
    pthread_sigmask(SIG_UNBLOCK, &hup, NULL);
    log_info("event=started spool=%s bus=%s factory_threads=%ld mail_threads=%ld worker_id=\"%s\""
             " lease_time=%ld lease_renewal_ms=%ld",
             conf_str(cf, "spool_dir"), worker_bus_listen(cf), conf_int(cf, "factory_concurrency"),
             conf_int(cf, "mail_concurrency"), outbox_owner(events), conf_int(cf, "lease_time"),
             lease_period_ms(conf_int(cf, "lease_time")));
    /* Ready with the spool recovered and the doorbell bound; the database may
     * still be down (the sweep retries it, as during an outage). */
    notify_ready("delivering");

    while (!worker_stop) {
        time_t now = time(NULL), next_due = 0, due;
        long wait_ms;
        int rang, woke = 0;

        if (worker_hup) {
            worker_hup = 0;
            worker_reload(&watch, endpoint);
        }
        if (lease_lost(registration, &err)) {
            log_error("event=registration_lost error=\"%s\"", err.msg);
            break;
        }

        if (now >= next_sweep) {
            int n;
            /* Before the outbox: the orders it opens go out in this sweep. A
             * failure is the database's, which the outbox sweep reports. */
            if (reorder_sweep(policy, &err) < 0 && !sweep_failing)
                log_warn("event=reorder_sweep_failed error=\"%s\"", err.msg);
            /* Nothing is claimed while the registration may have lapsed: the
             * renewal thread (lease.h) takes it back, or stops the worker. */
            n = lease_held(registration) ? outbox_sweep(events, &err) : 0;
            if (n < 0) {
                /* Logged once per outage, not once per sweep. */
                if (!sweep_failing)
                    log_error("event=sweep_failed error=\"%s\"", err.msg);
                sweep_failing = 1;
                metrics_count(METRICS_DATABASE_ERRORS);
                if (outbox_spool_fault(events) != NULL)
                    worker_spool_fault(&fault, alerts, outbox_spool_fault(events), err.msg);
            } else {
                worker_spool_fault(&fault, alerts, NULL, NULL);
                if (sweep_failing)
                    log_info("event=sweep_recovered");
                sweep_failing = 0;
                if (n > 0) {
                    queue_kick(factory_runner);
                    queue_kick(mail_runner);
                }
            }
            {
                conf *current = conf_current();
                next_sweep = now + conf_int(current, "sweep_interval");
                conf_destroy(&current);
            }
        }
        for (int i = 0; i < 3; i++) {
            spool *sp = queues[i];
            queue *runners[] = {factory_runner, mail_runner, callback_runner};
            int n = spool_wake(sp, now, &due, &err);
            if (n < 0)
                log_error("event=wake_failed queue=%s error=\"%s\"", spool_queue(sp), err.msg);
            if (n > 0) {
                woke++;
                queue_kick(runners[i]);
            }
            if (due > 0 && (next_due == 0 || due < next_due))
                next_due = due;
        }
        if (now >= next_watch) {
            worker_check_overdue(&watch, alerts);
            worker_check_delay(&watch, factory_q, alerts);
            worker_check_delay(&watch, mail_q, alerts);
            worker_check_delay(&watch, callback_q, alerts);
            for (int i = 0; i < 3; i++)
                if (spool_prune_done(queues[i], watch.done_retention, &err) < 0)
                    log_warn("event=prune_failed error=\"%s\"", err.msg);
            worker_prune_keys(&watch);
            next_watch = now + WORKER_WATCH_INTERVAL;
        } else if (watch.keys_behind) {
            worker_prune_keys(&watch);
        }
        worker_alert_corrupt(alerts);
        if (woke)
            continue;

        /* Sleep until a doorbell, the next sweep or the next due message. */
        due = next_sweep;
        if (next_due > 0 && next_due < due)
            due = next_due;
        wait_ms = due > now ? (long)(due - now) * 1000 : 0;
        if (wait_ms > 1000)
            wait_ms = 1000; /* bounds the wait for the watch and signal checks */
        if (watch.keys_behind)
            wait_ms = 0; /* a backlog of expired keys: the doorbells only, then more */
        rang = bus_wait(bell, wait_ms);
        if (rang > 0) {
            next_sweep = 0;              /* a doorbell: sweep now */
            queue_kick(callback_runner); /* restock-callback may have stored one */
        }
    }
    log_info("event=stopping signal=%d", (int)worker_stop);
    notify_stopping();
    status = worker_stop ? 0 : 1; /* else the registration was lost */
    goto done;

fail:
    log_error("event=start_failed error=\"%s\"", err.msg);
done:
    /* Deliveries in flight finish before the queues are gone. */
    scrape_destroy(&endpoint);
    queue_destroy(&factory_runner);
    queue_destroy(&mail_runner);
    queue_destroy(&callback_runner);
    lease_destroy(&registration);
    bus_sub_destroy(&bell);
    checkout_key_destroy(&checkout_keys);
    reorder_destroy(&policy);
    outbox_destroy(&events);
    order_destroy(&orders);
    db_destroy(&conn);
    alert_destroy(&alerts);
    spool_destroy(&factory_q);
    spool_destroy(&mail_q);
    spool_destroy(&callback_q);
    if (lock_fd >= 0)
        close(lock_fd);
    http_global_cleanup();
    bus_shutdown();
    db_library_end();
    metrics_destroy(&counters);
    conf_set_current(NULL);
    conf_destroy(&cf);
    if (status == 0)
        log_info("event=stopped");
    return status;
}
