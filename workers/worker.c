/* restock-worker: the durable queue worker. It listens for doorbells on ZeroMQ and
 * sweeps the outbox at start and every sweep_interval, fans events out into the
 * on-disk spool queues (factory, mail, webhook), and delivers them on threads:
 * orders to the factory, emails through the SMTP relay, signed webhooks to their
 * endpoints (webhook.c; each queue its own threads, so that a slow endpoint never
 * holds the factory or the mail back). Every watch_interval its watch
 * (watch.c) looks for what operators must hear of: corrupt files, orders whose
 * callback never came, messages waiting too long; and deletes the checkouts'
 * idempotency keys past their retention; a thread of its own expires holds at
 * their time (expiry.c). It serves every program's Prometheus metrics on
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
#include "expiry.h"
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
#include "token.h"
#include "watch.h"
#include "webhook.h"

/* The spool queues the worker runs: factory, mail, callback, webhook. */
#define WORKER_QUEUES 4

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
                                                "watch_interval",
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
                                                "webhook_allow",
                                                "webhook_lifetime",
                                                "webhook_disable_after",
                                                "webhook_timeout",
                                                "webhook_rotation_overlap",
                                                NULL};

/* SIGHUP: the new file parsed first; refused, the old settings stay. */
static void
worker_reload(watch *w, scrape *endpoint)
{
    conf *cf;

    notify_reloading();
    cf = conf_reload_current(worker_changeable);
    if (cf != NULL) {
        watch_reload(w, cf);
        if (endpoint != NULL)
            scrape_set_limits(endpoint, conf_int(cf, "delay_warning"),
                              conf_int(cf, "callback_timeout"));
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
    spool *factory_q = NULL, *mail_q = NULL, *callback_q = NULL, *webhook_q = NULL;
    queue *factory_runner = NULL, *mail_runner = NULL, *callback_runner = NULL,
          *webhook_runner = NULL;
    spool *queues[WORKER_QUEUES] = {NULL}; /* factory, mail, callback, webhook */
    struct webhook_endpoint_key webhook_key;
    int have_webhook_key = 0;
    bus_sub *bell = NULL;
    db *conn = NULL;
    outbox *events = NULL;
    order *orders = NULL;
    reorder *policy = NULL;
    alert *alerts = NULL;
    checkout_key *checkout_keys = NULL;
    lease *registration = NULL;
    expiry *holds_expiry = NULL;
    watch *watcher = NULL;
    struct sigaction sa;
    sigset_t hup;
    metrics *counters = NULL;
    scrape *endpoint = NULL;
    time_t next_sweep = 0;
    long long sweeps = 0;
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
    /* A malformed webhook_key stops the start; none lets it start, its webhook
     * messages waiting (webhook.h). */
    have_webhook_key = webhook_key_load(cf, &webhook_key, &err);
    if (have_webhook_key < 0)
        goto fail;
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
    /* The webhook events the sweep makes and the driver delivers (§4.14). */
    webhook_q = callback_q ? spool_new(conf_str(cf, "spool_dir"), QUEUES_WEBHOOK, &err) : NULL;
    if (webhook_q == NULL)
        goto fail;
    queues[0] = factory_q;
    queues[1] = mail_q;
    queues[2] = callback_q;
    queues[3] = webhook_q;
    /* Before the recovery, which reports the corrupt files it finds. */
    alerts = alert_new(cf, mail_q);
    watcher = alerts ? watch_new(cf, alerts, queues, WORKER_QUEUES) : NULL;
    if (watcher == NULL) {
        errbuf_set(&err, "out of memory");
        goto fail;
    }
    for (int i = 0; i < WORKER_QUEUES; i++) {
        spool *sp = queues[i];
        spool_recovery r = {0};
        if (spool_recover(sp, &r, &err) != RS_OK)
            goto fail;
        log_info("event=recovered queue=%s requeued=%zu tmp_removed=%zu corrupt=%zu verified=%zu"
                 " copies_removed=%zu",
                 spool_queue(sp), r.requeued, r.tmp_removed, r.corrupt, r.verified,
                 r.copies_removed);
    }

    conn = db_new(cf, 0);
    if (conn == NULL) {
        errbuf_set(&err, "out of memory");
        goto fail;
    }
    {
        /* Said once at start: a server that can lose a commit at a power cut loses
         * acknowledged sales, whatever the spool does (issue 21). */
        char why[256];
        errbuf derr = {0};
        int durable = db_durability(conn, why, sizeof(why), &derr);
        if (durable == 0)
            log_warn("event=db_not_durable reason=\"%s\"", why);
        else if (durable < 0)
            log_info("event=db_durability_unchecked error=\"%s\"", derr.msg);
    }
    orders = order_new(conn, &err);
    events = orders ? outbox_new(cf, conn, orders, factory_q, mail_q, webhook_q, &err) : NULL;
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
    watch_use(watcher, orders, checkout_keys);
    holds_expiry = expiry_new(cf, &err);
    if (holds_expiry == NULL)
        goto fail;
    /* A worker of several binds its own endpoint (bus_listen); alone, it binds
     * the one the responders ring. */
    bell = bus_sub_new(worker_bus_listen(cf), &err);
    if (bell == NULL)
        goto fail;

    drivers_init(&(struct drivers_context){.cf = cf, .alerts = alerts});
    webhook_init(
        &(struct webhook_context){.alerts = alerts, .key = have_webhook_key ? &webhook_key : NULL});
    /* The first sweep comes before any delivery: an event a crash left untaken
     * finds its message still on disk (in any state) and is only marked taken. */
    factory_runner =
        queue_new(cf, factory_q, &drivers_factory, (int)conf_int(cf, "factory_concurrency"), &err);
    mail_runner = factory_runner ? queue_new(cf, mail_q, &drivers_mail,
                                             (int)conf_int(cf, "mail_concurrency"), &err)
                                 : NULL;
    callback_runner = mail_runner ? queue_new(cf, callback_q, &drivers_callback, 1, &err) : NULL;
    webhook_runner = callback_runner ? queue_new(cf, webhook_q, &webhook_driver,
                                                 (int)conf_int(cf, "webhook_threads"), &err)
                                     : NULL;
    if (webhook_runner == NULL)
        goto fail;
    /* An endpoint that cannot listen is a failed start: an operator who asked
     * for metrics would otherwise see the worker as down. */
    if (*conf_str(cf, "metrics_listen") != '\0') {
        endpoint = scrape_new(cf, queues, WORKER_QUEUES, &err);
        if (endpoint == NULL)
            goto fail;
    }
    pthread_sigmask(SIG_UNBLOCK, &hup, NULL);
    log_info("event=started spool=%s bus=%s factory_threads=%ld mail_threads=%ld"
             " webhook_threads=%ld webhook_key=%s worker_id=\"%s\" lease_time=%ld"
             " lease_renewal_ms=%ld",
             conf_str(cf, "spool_dir"), worker_bus_listen(cf), conf_int(cf, "factory_concurrency"),
             conf_int(cf, "mail_concurrency"), conf_int(cf, "webhook_threads"),
             have_webhook_key ? "loaded" : "missing", outbox_owner(events),
             conf_int(cf, "lease_time"), lease_period_ms(conf_int(cf, "lease_time")));
    /* Ready with the spool recovered and the doorbell bound; the database may
     * still be down (the sweep retries it, as during an outage). */
    notify_ready("delivering");

    while (!worker_stop) {
        time_t now = time(NULL), next_due = 0, due;
        long wait_ms;
        int rang, woke = 0;

        if (worker_hup) {
            worker_hup = 0;
            worker_reload(watcher, endpoint);
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
                    watch_spool_fault(watcher, outbox_spool_fault(events), err.msg);
            } else {
                watch_spool_fault(watcher, NULL, NULL);
                if (sweep_failing)
                    log_info("event=sweep_recovered");
                sweep_failing = 0;
                if (n > 0) {
                    queue_kick(factory_runner);
                    queue_kick(mail_runner);
                    queue_kick(webhook_runner);
                }
            }
            sweeps++;
            /* Counted, so that a test waits for sweeps, not for seconds. */
            log_debug("event=sweep_pass pass=%lld events=%d", sweeps, n);
            {
                conf *current = conf_current();
                next_sweep = now + conf_int(current, "sweep_interval");
                conf_destroy(&current);
            }
        }
        for (int i = 0; i < WORKER_QUEUES; i++) {
            spool *sp = queues[i];
            queue *runners[] = {factory_runner, mail_runner, callback_runner, webhook_runner};
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
        watch_turn(watcher, now);
        if (woke)
            continue;

        /* Sleep until a doorbell, the next sweep or the next due message. */
        due = next_sweep;
        if (next_due > 0 && next_due < due)
            due = next_due;
        wait_ms = due > now ? (long)(due - now) * 1000 : 0;
        if (wait_ms > 1000)
            wait_ms = 1000; /* bounds the wait for the watch and signal checks */
        if (watch_keys_behind(watcher))
            wait_ms = 0; /* a backlog of expired keys: the doorbells only, then more */
        rang = bus_wait(bell, wait_ms);
        if (rang > 0) {
            next_sweep = 0;              /* a doorbell: sweep now */
            queue_kick(callback_runner); /* restock-callback may have stored one */
            queue_kick(webhook_runner);  /* restockctl webhook ping may have put one */
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
    expiry_destroy(&holds_expiry);
    queue_destroy(&factory_runner);
    queue_destroy(&mail_runner);
    queue_destroy(&callback_runner);
    queue_destroy(&webhook_runner);
    lease_destroy(&registration);
    bus_sub_destroy(&bell);
    watch_destroy(&watcher);
    checkout_key_destroy(&checkout_keys);
    reorder_destroy(&policy);
    outbox_destroy(&events);
    order_destroy(&orders);
    db_destroy(&conn);
    alert_destroy(&alerts);
    spool_destroy(&factory_q);
    spool_destroy(&mail_q);
    spool_destroy(&callback_q);
    spool_destroy(&webhook_q);
    sodium_memzero(&webhook_key, sizeof(webhook_key));
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
