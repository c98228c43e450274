/* expiry: the worker's hold expiry thread (see expiry.h). */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "expiry.h"
#include "hold.h"
#include "log.h"
#include "metrics.h"
#include "sale.h"

#define EXPIRY_BATCH        100  /* holds expired per transaction */
#define EXPIRY_MAX_WAIT_MS  1000 /* the longest sleep: see expiry.h */
#define EXPIRY_PRUNE_PERIOD 60   /* seconds between deletions of old ended holds */

struct expiry {
    const conf *cf;
    pthread_t thread;
    int stop_pipe[2]; /* a byte written: stop */
};

/* Sleeps ms, or less when stopped: 1 when stopping. */
static int
expiry_sleep(expiry *self, long ms)
{
    struct pollfd p = {.fd = self->stop_pipe[0], .events = POLLIN};

    if (poll(&p, 1, (int)ms) < 0 && errno != EINTR)
        return 1;
    return (p.revents & (POLLIN | POLLHUP)) != 0;
}

/* Deletes the holds that ended over hold_retention ago, in batches. */
static void
expiry_prune(hold *holds)
{
    conf *current = conf_current();
    long retention = conf_int(current, "hold_retention");
    errbuf err = {{0}};
    long long n, total = 0;

    conf_destroy(&current);
    do
        total += (n = hold_prune(holds, retention, &err)) > 0 ? n : 0;
    while (n == HOLD_PRUNE_BATCH);
    if (n < 0)
        log_warn("event=hold_prune_failed error=\"%s\"", err.msg);
    else if (total > 0)
        log_info("event=holds_pruned holds=%lld retention=%ld", total, retention);
}

/* One pass: every due hold expired; then how long to sleep, in ms. failing
 * says whether the last pass failed (logged once per outage). */
static long
expiry_pass(sale_expiry *sx, int *failing, long long *passes)
{
    errbuf err = {{0}};
    long long n, total = 0, wait_us;
    int next;

    do
        total += (n = sale_expiry_run(sx, EXPIRY_BATCH, &err)) > 0 ? n : 0;
    while (n == EXPIRY_BATCH);
    if (n >= 0)
        next = sale_expiry_next(sx, &wait_us, &err);
    if (n < 0 || next < 0) {
        if (!*failing)
            log_error("event=hold_expiry_failed error=\"%s\"", err.msg);
        *failing = 1;
        metrics_count(METRICS_DATABASE_ERRORS);
        return EXPIRY_MAX_WAIT_MS;
    }
    if (*failing)
        log_info("event=hold_expiry_recovered");
    *failing = 0;
    (*passes)++;
    /* Counted, so that a test waits for passes, not for seconds. */
    log_debug("event=expiry_pass pass=%lld expired=%lld", *passes, total);
    if (next == 0 || wait_us >= EXPIRY_MAX_WAIT_MS * 1000LL)
        return EXPIRY_MAX_WAIT_MS;
    /* Just past it: the database's clock decides, not ours. */
    return wait_us > 0 ? (long)(wait_us / 1000) + 1 : 0;
}

static void *
expiry_thread(void *arg)
{
    expiry *self = arg;
    errbuf err = {{0}};
    db *conn = NULL;
    sale_expiry *sx = NULL;
    hold *holds = NULL;
    long long passes = 0;
    time_t next_prune = 0;
    int failing = 0;
    long wait_ms;

    if (db_thread_init(&err) != RS_OK)
        goto fail;
    conn = db_new(self->cf, 0);
    if (conn == NULL) {
        errbuf_set(&err, "out of memory");
        goto fail;
    }
    sx = sale_expiry_new(conn, &err);
    holds = sx != NULL ? hold_new(conn, &err) : NULL;
    if (holds == NULL)
        goto fail;
    do {
        wait_ms = expiry_pass(sx, &failing, &passes);
        if (!failing && time(NULL) >= next_prune) {
            expiry_prune(holds);
            next_prune = time(NULL) + EXPIRY_PRUNE_PERIOD;
        }
    } while (!expiry_sleep(self, wait_ms));
    goto done;

fail:
    log_error("event=hold_expiry_stopped error=\"%s\"", err.msg);
done:
    hold_destroy(&holds);
    sale_expiry_destroy(&sx);
    db_destroy(&conn);
    db_thread_end();
    return NULL;
}

expiry *
expiry_new(const conf *cf, errbuf *err)
{
    expiry *self = calloc(1, sizeof(*self));
    int rc;

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    self->cf = cf;
    if (pipe(self->stop_pipe) != 0) {
        errbuf_set(err, "cannot make the expiry thread's pipe: %s", strerror(errno));
        free(self);
        return NULL;
    }
    rc = pthread_create(&self->thread, NULL, expiry_thread, self);
    if (rc != 0) {
        errbuf_set(err, "cannot start the hold expiry thread: %s", strerror(rc));
        close(self->stop_pipe[0]);
        close(self->stop_pipe[1]);
        free(self);
        return NULL;
    }
    return self;
}

void
expiry_destroy(expiry **self_p)
{
    expiry *self = *self_p;

    if (self == NULL)
        return;
    close(self->stop_pipe[1]); /* the reader sees POLLHUP */
    pthread_join(self->thread, NULL);
    close(self->stop_pipe[0]);
    free(self);
    *self_p = NULL;
}
