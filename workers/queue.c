/* queue: delivery threads of one spool queue (see queue.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "queues.h"

struct queue {
    spool *sp;
    const struct queue_driver *driver;
    const conf *cf;
    long max_attempts, backoff_min, backoff_max, lifetime;
    pthread_t *threads;
    int nthreads, started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping;
    /* Start-up: each thread reports its thread_init (see queue_new). */
    int reported, init_failed;
    pthread_cond_t ready;
    errbuf init_err;
    unsigned long kicks; /* bumped by queue_kick; a thread that saw it change looks again */
};

long
queue_backoff(long attempts, long min, long max)
{
    long delay = min;

    for (long i = 1; i < attempts && delay > 0 && delay < max; i++)
        delay *= 2;
    if (delay > max)
        delay = max;
    if (delay < 2)
        return delay;
    return delay - (long)randombytes_uniform((uint32_t)(delay / 2 + 1));
}

/* Decides what becomes of a message after a delivery. A transient failure is
 * retried until the queue lifetime, counted from the message's creation, has
 * passed (and, when max_attempts is set, until that many attempts), never past it:
 * the last retry is due when the lifetime ends, so that the death comes on time. */
/* Counts a move of queue `name`: first is the first queue's slot of the family;
 * the others follow it in the order of queues.h (metrics.h). */
static void
queue_metric(const char *name, enum metrics_id first)
{
    int i = queues_index(name);

    if (i >= 0)
        metrics_count((enum metrics_id)(first + i));
}

static void
queue_settle(queue *q, void *state, spool_msg *msg, enum queue_outcome outcome, const char *error)
{
    const char *id = spool_msg_id(msg), *name = q->driver->name;
    long attempts = spool_msg_attempts(msg) + 1; /* counting this one */
    time_t now = time(NULL);
    time_t ends;
    errbuf err = {{0}};
    char reason[SPOOL_TEXT_MAX];
    conf *cf = conf_current();
    long max_attempts = q->max_attempts, backoff_min = q->backoff_min, backoff_max = q->backoff_max,
         lifetime = q->lifetime;
    long named = 0; /* the driver's own wait (retry_in) */
    int rc;

    /* The settings of now, not of the start: a reload changes them. */
    if (cf != NULL) {
        max_attempts = conf_int(cf, "max_attempts");
        backoff_min = conf_int(cf, "backoff_min");
        backoff_max = conf_int(cf, "backoff_max");
        lifetime = q->driver->lifetime_key ? conf_int(cf, q->driver->lifetime_key) : 0;
        conf_destroy(&cf);
    }
    ends = (time_t)(spool_msg_created_ns(msg) / 1000000000) + lifetime;
    if (q->driver->retry_in != NULL && (outcome == QUEUE_RETRY || outcome == QUEUE_BLOCKED))
        named = q->driver->retry_in(state);
    if (error == NULL)
        error = "";
    switch (outcome) {
    case QUEUE_DONE:
        rc = spool_done(q->sp, msg, &err);
        if (rc == RS_OK) {
            log_info("event=delivered queue=%s id=%s attempts=%ld", name, id, attempts);
            queue_metric(name, METRICS_QUEUE_DELIVERED_FACTORY);
            if (q->driver->ended != NULL && spool_msg_claim(msg) > 0)
                q->driver->ended(state, msg);
        }
        break;
    case QUEUE_BLOCKED:
        rc = spool_postpone(q->sp, msg,
                            now + (named > 0         ? named
                                   : backoff_min > 0 ? backoff_min
                                                     : 1),
                            error, &err);
        if (rc == RS_OK) {
            log_warn("event=postponed queue=%s id=%s attempts=%ld error=\"%s\"", name, id,
                     attempts - 1, error);
            queue_metric(name, METRICS_QUEUE_DEFERRED_FACTORY);
            if (named <= 0)
                metrics_count(METRICS_DATABASE_ERRORS);
        }
        break;
    case QUEUE_RETRY:
        if (max_attempts > 0 && attempts >= max_attempts) {
            snprintf(reason, sizeof(reason), "max_attempts (%ld) reached; last error: %s",
                     max_attempts, error);
            goto dead;
        }
        if (lifetime > 0 && now >= ends) {
            snprintf(reason, sizeof(reason), "queue lifetime of %ld s passed; last error: %s",
                     lifetime, error);
            goto dead;
        }
        {
            long delay = named > 0 ? named : queue_backoff(attempts, backoff_min, backoff_max);
            if (lifetime > 0 && now + delay > ends)
                delay = (long)(ends - now);
            rc = spool_defer(q->sp, msg, now + delay, error, &err);
            if (rc == RS_OK) {
                log_warn("event=deferred queue=%s id=%s attempts=%ld retry_in=%lds error=\"%s\"",
                         name, id, attempts, delay, error);
                queue_metric(name, METRICS_QUEUE_DEFERRED_FACTORY);
            }
        }
        break;
    case QUEUE_PERMANENT:
    default:
        snprintf(reason, sizeof(reason), "permanent failure: %s", error);
    dead:
        rc = spool_kill(q->sp, msg, error, reason, &err);
        if (rc == RS_OK) {
            log_error("event=dead queue=%s id=%s attempts=%ld reason=\"%s\"", name, id, attempts,
                      reason);
            queue_metric(name, METRICS_QUEUE_DEAD_FACTORY);
            if (q->driver->dead != NULL)
                q->driver->dead(state, msg, reason);
            if (q->driver->ended != NULL && spool_msg_claim(msg) > 0)
                q->driver->ended(state, msg);
        }
        break;
    }
    if (rc != RS_OK)
        /* The message stays in active/, which the next start sends back to
         * incoming/: delivered again, never lost. */
        log_error("event=spool_failed queue=%s id=%s error=\"%s\"", name, id, err.msg);
}

/* A message of outbox work whose claim another worker holds now (or that ended
 * under a newer epoch): that worker delivers it. Nothing is sent from here; the
 * message goes to done/, so that its id stays a no-op here. */
static void
queue_drop(queue *q, spool_msg *msg, const char *who)
{
    errbuf err = {{0}};

    if (spool_done(q->sp, msg, &err) != RS_OK) {
        log_error("event=spool_failed queue=%s id=%s error=\"%s\"", q->driver->name,
                  spool_msg_id(msg), err.msg);
        return;
    }
    log_warn("event=lease_lost queue=%s id=%s epoch=%lld %s", q->driver->name, spool_msg_id(msg),
             spool_msg_claim(msg), who);
}

static void *
queue_thread(void *arg)
{
    queue *q = arg;
    void *state = NULL;
    errbuf err = {{0}};
    sigset_t all;

    /* Signals are the main thread's business. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    if (q->driver->thread_init(q->cf, &state, &err) != RS_OK) {
        log_error("event=thread_failed queue=%s error=\"%s\"", q->driver->name, err.msg);
        pthread_mutex_lock(&q->lock);
        if (!q->init_failed)
            q->init_err = err;
        q->init_failed = 1;
        q->reported++;
        pthread_cond_broadcast(&q->ready);
        pthread_mutex_unlock(&q->lock);
        return NULL;
    }
    pthread_mutex_lock(&q->lock);
    q->reported++;
    pthread_cond_broadcast(&q->ready);
    while (!q->stopping) {
        unsigned long seen = q->kicks;
        spool_msg *msg = NULL;
        int taken;

        pthread_mutex_unlock(&q->lock);
        taken = spool_take(q->sp, NULL, 0, &msg, &err);
        if (taken == 1) {
            errbuf why = {{0}};
            enum queue_outcome outcome = QUEUE_BLOCKED;
            int owned = 1;

            if (q->driver->owns != NULL && spool_msg_claim(msg) > 0)
                owned = q->driver->owns(state, msg, &why);
            if (owned == 0)
                queue_drop(q, msg, why.msg);
            else {
                if (owned > 0)
                    outcome = q->driver->deliver(state, msg, &why);
                queue_settle(q, state, msg, outcome, why.msg);
            }
            spool_msg_destroy(&msg);
            pthread_mutex_lock(&q->lock);
            continue;
        }
        if (taken < 0)
            log_error("event=take_failed queue=%s error=\"%s\"", q->driver->name, err.msg);
        pthread_mutex_lock(&q->lock);
        if (!q->stopping && seen == q->kicks) {
            /* Nothing to take: sleep until kicked. The timeout covers a kick lost
             * between the take and the wait, and errors of the disk. */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += taken < 0 ? 5 : 1;
            pthread_cond_timedwait(&q->wake, &q->lock, &until);
        }
    }
    pthread_mutex_unlock(&q->lock);
    q->driver->thread_fini(state);
    return NULL;
}

queue *
queue_new(const conf *cf, spool *sp, const struct queue_driver *driver, int threads, errbuf *err)
{
    queue *self = calloc(1, sizeof(*self));

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    self->sp = sp;
    self->driver = driver;
    self->cf = cf;
    self->max_attempts = conf_int(cf, "max_attempts");
    self->backoff_min = conf_int(cf, "backoff_min");
    self->backoff_max = conf_int(cf, "backoff_max");
    self->lifetime = driver->lifetime_key ? conf_int(cf, driver->lifetime_key) : 0;
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->wake, NULL);
    pthread_cond_init(&self->ready, NULL);
    self->threads = calloc((size_t)threads, sizeof(*self->threads));
    if (self->threads == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    self->nthreads = threads;
    for (int i = 0; i < threads; i++) {
        int rc = pthread_create(&self->threads[i], NULL, queue_thread, self);
        if (rc != 0) {
            errbuf_set(err, "%s queue: cannot start thread %d: %s", driver->name, i, strerror(rc));
            goto fail;
        }
        self->started++;
    }
    /* A worker whose threads cannot deliver must not run on as if they did: wait
     * for every thread's thread_init and fail with the first error. */
    pthread_mutex_lock(&self->lock);
    while (self->reported < self->started)
        pthread_cond_wait(&self->ready, &self->lock);
    pthread_mutex_unlock(&self->lock);
    if (self->init_failed) {
        errbuf_set(err, "%s queue: a delivery thread cannot start: %s", driver->name,
                   self->init_err.msg);
        goto fail;
    }
    return self;
fail:
    queue_destroy(&self);
    return NULL;
}

void
queue_kick(queue *self)
{
    pthread_mutex_lock(&self->lock);
    self->kicks++;
    pthread_cond_broadcast(&self->wake);
    pthread_mutex_unlock(&self->lock);
}

void
queue_destroy(queue **self_p)
{
    queue *self = *self_p;

    if (self == NULL)
        return;
    pthread_mutex_lock(&self->lock);
    self->stopping = 1;
    pthread_cond_broadcast(&self->wake);
    pthread_mutex_unlock(&self->lock);
    for (int i = 0; i < self->started; i++)
        pthread_join(self->threads[i], NULL);
    free(self->threads);
    pthread_cond_destroy(&self->wake);
    pthread_cond_destroy(&self->ready);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}
