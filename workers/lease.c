/* lease: the worker's registration and the renewal of its claims, on a thread
 * of their own (see lease.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "ident.h"
#include "lease.h"
#include "log.h"

enum lease_phase {
    LEASE_STARTING, /* the first registration has not answered yet */
    LEASE_PENDING,  /* not registered yet, the start gone on: the database did
                     * not answer at start (a holder found later, alive, is
                     * LEASE_LOST) */
    LEASE_HELD,     /* registered (renewed, or trying to) */
    LEASE_REFUSED,  /* a live worker holds the worker_id: the start fails */
    LEASE_LOST      /* another process has the worker_id now: the worker stops */
};

enum lease_stmt { ST_INSERT, ST_TAKE, ST_TAKE_DEAD, ST_WHO, ST_RENEW, ST_RELEASE, ST_COUNT };

/* Every time is UTC from the database's clock (sql/011). Each statement may be
 * sent again after a lost connection (DB_IDEMPOTENT). */
static const struct db_stmt_def lease_sql[ST_COUNT] = {
    [ST_INSERT] = {"INSERT IGNORE INTO worker_registration"
                   " (worker_id, instance, host, pid, boot, started_at, lease_until)"
                   " VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6),"
                   " TIMESTAMPADD(SECOND, ?, UTC_TIMESTAMP(6)))",
                   DB_IDEMPOTENT},
    /* Only a row whose lease passed: its holder stopped, or died. */
    [ST_TAKE] = {"UPDATE worker_registration SET instance = ?, host = ?, pid = ?, boot = ?,"
                 " started_at = UTC_TIMESTAMP(6),"
                 " lease_until = TIMESTAMPADD(SECOND, ?, UTC_TIMESTAMP(6))"
                 " WHERE worker_id = ? AND lease_until < UTC_TIMESTAMP(6)",
                 DB_IDEMPOTENT},
    /* A holder seen dead (lease_is_dead), as it was read: nobody else took it. */
    [ST_TAKE_DEAD] = {"UPDATE worker_registration SET instance = ?, host = ?, pid = ?, boot = ?,"
                      " started_at = UTC_TIMESTAMP(6),"
                      " lease_until = TIMESTAMPADD(SECOND, ?, UTC_TIMESTAMP(6))"
                      " WHERE worker_id = ? AND instance = ?",
                      DB_IDEMPOTENT},
    [ST_WHO] = {"SELECT host, pid, CAST(lease_until AS CHAR),"
                " TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(6), lease_until), boot, instance"
                " FROM worker_registration WHERE worker_id = ?",
                DB_IDEMPOTENT},
    [ST_RENEW] = {"UPDATE worker_registration"
                  " SET lease_until = TIMESTAMPADD(SECOND, ?, UTC_TIMESTAMP(6))"
                  " WHERE worker_id = ? AND instance = ?",
                  DB_IDEMPOTENT},
    [ST_RELEASE] = {"UPDATE worker_registration"
                    " SET lease_until = TIMESTAMPADD(SECOND, -1, UTC_TIMESTAMP(6))"
                    " WHERE worker_id = ? AND instance = ?",
                    DB_IDEMPOTENT},
};

/* Who holds the registration, as read when it was refused. */
struct lease_holder {
    char host[256];
    long long pid, left;
    char until[40];
    char boot[100];
    unsigned char instance[IDENT_BYTES];
};

struct lease {
    const conf *cf;
    char owner[CLAIM_OWNER_MAX];
    char host[256];
    char boot[100]; /* this boot of this machine, and this pid namespace; "" unknown */
    long lease_time;
    long period_ms;
    unsigned timeout;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping;                         /* under lock */
    atomic_int phase;                     /* enum lease_phase */
    atomic_llong held_ns;                 /* monotonic time the last renewal was sent */
    char why[sizeof(((errbuf *)0)->msg)]; /* of LEASE_REFUSED and LEASE_LOST, under lock */
    /* The thread's own: */
    db *conn;
    db_stmt *st[ST_COUNT];
    claim *claims;
};

long
lease_period_ms(long lease_time)
{
    return lease_time * 1000 / 3;
}

unsigned
lease_statement_timeout(long lease_time, long db_timeout)
{
    long t = lease_time / 6;

    if (t > db_timeout)
        t = db_timeout;
    return t < 1 ? 1 : (unsigned)t;
}

static long long
lease_now_ns(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* Under lock: the phase changed, the waiters told. */
static void
lease_set_phase(lease *self, enum lease_phase phase, const char *why)
{
    pthread_mutex_lock(&self->lock);
    if (why != NULL)
        snprintf(self->why, sizeof(self->why), "%s", why);
    atomic_store(&self->phase, phase);
    pthread_cond_broadcast(&self->wake);
    pthread_mutex_unlock(&self->lock);
}

/* Who holds the row now; 1, 0 (no row), or RS_ERR. */
static int
lease_who(lease *self, struct lease_holder *h, errbuf *err)
{
    db_stmt *st = self->st[ST_WHO];
    long long rows = db_stmt_exec(st, err, "s", self->owner);

    memset(h, 0, sizeof(*h));
    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(st))
        return 0;
    snprintf(h->host, sizeof(h->host), "%s",
             db_stmt_col(st, 0, NULL) ? db_stmt_col(st, 0, NULL) : "?");
    h->pid = db_stmt_col_int(st, 1);
    snprintf(h->until, sizeof(h->until), "%s",
             db_stmt_col(st, 2, NULL) ? db_stmt_col(st, 2, NULL) : "");
    h->left = db_stmt_col_int(st, 3);
    snprintf(h->boot, sizeof(h->boot), "%s",
             db_stmt_col(st, 4, NULL) ? db_stmt_col(st, 4, NULL) : "");
    {
        size_t len = 0;
        const char *id = db_stmt_col(st, 5, &len);
        if (id != NULL && len == IDENT_BYTES)
            memcpy(h->instance, id, IDENT_BYTES);
    }
    return 1;
}

/* "<boot id> <pid namespace>" of this process, or "" when either is unknown:
 * a holder with the same is a process of this machine, this boot, whose pid
 * this process can look up. */
static void
lease_boot_of(char *out, size_t size)
{
    char boot[64] = "", ns[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);

    if (f != NULL) {
        if (fgets(boot, sizeof(boot), f) == NULL)
            boot[0] = '\0';
        fclose(f);
    }
    boot[strcspn(boot, "\n")] = '\0';
    out[0] = '\0';
    if (boot[0] != '\0' && n > 0) {
        ns[n] = '\0';
        snprintf(out, size, "%s %s", boot, ns);
    }
}

/* Whether holder h is a process of this machine, boot and pid namespace that no
 * longer exists: a crash of the last run here, whose lease need not be waited
 * for (systemd restarts a crashed worker within seconds). */
static int
lease_is_dead(const lease *self, const struct lease_holder *h)
{
    return self->boot[0] != '\0' && strcmp(self->boot, h->boot) == 0 && h->pid > 0 &&
           h->pid != (long long)getpid() && kill((pid_t)h->pid, 0) != 0 && errno == ESRCH;
}

/* One attempt at the registration: 1 (ours), 0 (a holder whose lease has not
 * passed: *h says who), or RS_ERR. */
static int
lease_register(lease *self, struct lease_holder *h, errbuf *err)
{
    long long pid = (long long)getpid(), rows;

    rows =
        db_stmt_exec(self->st[ST_INSERT], err, "sbsisi", self->owner, claim_instance(),
                     (size_t)IDENT_BYTES, self->host, pid, self->boot, (long long)self->lease_time);
    if (rows == 0)
        rows = db_stmt_exec(self->st[ST_TAKE], err, "bsisis", claim_instance(), (size_t)IDENT_BYTES,
                            self->host, pid, self->boot, (long long)self->lease_time, self->owner);
    if (rows != 0)
        return rows < 0 ? RS_ERR : 1;
    rows = lease_who(self, h, err);
    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !lease_is_dead(self, h))
        return 0; /* no row (it went meanwhile: the next attempt), or a holder */
    rows = db_stmt_exec(self->st[ST_TAKE_DEAD], err, "bsisisb", claim_instance(),
                        (size_t)IDENT_BYTES, self->host, pid, self->boot,
                        (long long)self->lease_time, self->owner, h->instance, (size_t)IDENT_BYTES);
    if (rows > 0)
        log_info("event=registration_taken worker_id=\"%s\" dead_pid=%lld reason=\"its last "
                 "run on this machine is gone\"",
                 self->owner, h->pid);
    return rows < 0 ? RS_ERR : rows > 0 ? 1 : 0;
}

/* Under the registration: the row renewed (1), gone to another process (0), or
 * RS_ERR. */
static int
lease_renew(lease *self, errbuf *err)
{
    long long rows = db_stmt_exec(self->st[ST_RENEW], err, "isb", (long long)self->lease_time,
                                  self->owner, claim_instance(), (size_t)IDENT_BYTES);

    return rows < 0 ? RS_ERR : rows > 0;
}

/* Until registered, or refused. Returns the wait before the next attempt (ms),
 * or -1 when the thread is done (refused, lost). */
static long
lease_step_register(lease *self, char *seen_until, size_t seen_size, int *failing)
{
    struct lease_holder h;
    errbuf err = {{0}};
    long long sent = lease_now_ns();
    enum lease_phase phase = (enum lease_phase)atomic_load(&self->phase);
    int rc = lease_register(self, &h, &err);
    char why[sizeof(self->why)];

    if (rc == 1) {
        atomic_store(&self->held_ns, sent);
        log_info("event=registered worker_id=\"%s\" lease_time=%ld renew_every_ms=%ld "
                 "statement_timeout=%u",
                 self->owner, self->lease_time, self->period_ms, self->timeout);
        lease_set_phase(self, LEASE_HELD, NULL);
        return self->period_ms;
    }
    if (rc < 0) {
        /* A database that is down at start is not a failed start (§5): the
         * worker runs, claiming and delivering nothing until registered. */
        if (!*failing)
            log_warn("event=registration_pending worker_id=\"%s\" error=\"%s\"", self->owner,
                     err.msg);
        *failing = 1;
        if (phase == LEASE_STARTING)
            lease_set_phase(self, LEASE_PENDING, NULL);
        return 1000;
    }
    *failing = 0;
    /* A holder whose lease moved on since the last look is alive: refused. One
     * that does not renew (crashed, or its host is gone) is waited for. */
    if (*seen_until != '\0' && strcmp(seen_until, h.until) != 0) {
        snprintf(why, sizeof(why),
                 "worker_id \"%s\" is held by a live restock-worker (host %s, pid %lld, its lease "
                 "renewed until %s UTC): two workers must not share a worker_id; give this one "
                 "its own (worker_id in restock.conf)",
                 self->owner, h.host, h.pid, h.until);
        lease_set_phase(self, phase == LEASE_STARTING ? LEASE_REFUSED : LEASE_LOST, why);
        return -1;
    }
    if (*seen_until == '\0')
        log_info("event=registration_waiting worker_id=\"%s\" holder_host=%s holder_pid=%lld "
                 "expires_in=%llds action=\"waiting for the lease of its last run to pass, or "
                 "for its renewal, which refuses this start\"",
                 self->owner, h.host, h.pid, h.left);
    snprintf(seen_until, seen_size, "%s", h.until);
    return 500;
}

/* Registered: the registration, then the claims, renewed. Returns the wait
 * before the next renewal (ms), or -1 when the registration went to another
 * process. */
static long
lease_step_renew(lease *self, int *failing, int *lapsed)
{
    errbuf err = {{0}};
    long long sent = lease_now_ns(), n;
    int rc = lease_renew(self, &err);
    char why[sizeof(self->why)];

    if (rc == 0) {
        snprintf(why, sizeof(why),
                 "the registration of worker_id \"%s\" was taken by another restock-worker while "
                 "this one's lease had lapsed: this one stops",
                 self->owner);
        lease_set_phase(self, LEASE_LOST, why);
        return -1;
    }
    if (rc < 0) {
        if (!*failing)
            log_warn("event=lease_renew_failed worker_id=\"%s\" error=\"%s\"", self->owner,
                     err.msg);
        *failing = 1;
        if (!*lapsed && sent - atomic_load(&self->held_ns) >= self->lease_time * 1000000000LL) {
            *lapsed = 1;
            log_error("event=lease_lapsed worker_id=\"%s\" action=\"not renewed for lease_time "
                      "(%ld s): claiming and delivering nothing until it is\"",
                      self->owner, self->lease_time);
        }
        return 1000 < self->period_ms ? 1000 : self->period_ms;
    }
    atomic_store(&self->held_ns, sent);
    if (*failing || *lapsed)
        log_info("event=lease_renewed worker_id=\"%s\" was=%s", self->owner,
                 *lapsed ? "lapsed" : "failing");
    *failing = *lapsed = 0;
    n = claim_renew(self->claims, &err);
    if (n < 0)
        log_warn("event=claims_renew_failed error=\"%s\"", err.msg);
    return self->period_ms;
}

/* ms from now on the clock of pthread_cond_timedwait. */
static void
lease_deadline(long ms, struct timespec *until)
{
    clock_gettime(CLOCK_REALTIME, until);
    until->tv_sec += ms / 1000;
    until->tv_nsec += (ms % 1000) * 1000000L;
    if (until->tv_nsec >= 1000000000L) {
        until->tv_sec++;
        until->tv_nsec -= 1000000000L;
    }
}

/* Sleeps ms unless stopped; 1 when stopping. */
static int
lease_sleep(lease *self, long ms)
{
    struct timespec until;
    int stopping;

    lease_deadline(ms, &until);
    pthread_mutex_lock(&self->lock);
    while (!self->stopping && pthread_cond_timedwait(&self->wake, &self->lock, &until) == 0)
        ;
    stopping = self->stopping;
    pthread_mutex_unlock(&self->lock);
    return stopping;
}

static void *
lease_thread(void *arg)
{
    lease *self = arg;
    errbuf err = {{0}};
    sigset_t all;
    char seen_until[40] = "";
    int failing = 0, lapsed = 0;
    long wait_ms = 0;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the main thread's */
    if (db_thread_init(&err) != RS_OK) {
        lease_set_phase(self, LEASE_REFUSED, err.msg);
        return NULL;
    }
    self->conn = db_new(self->cf, 0);
    if (self->conn != NULL) {
        db_set_timeouts(self->conn, self->timeout, self->timeout);
        if (db_stmt_table(self->conn, lease_sql, ST_COUNT, self->st, &err) == RS_OK)
            self->claims = claim_new(self->conn, self->owner, self->lease_time, &err);
    }
    if (self->claims == NULL) {
        lease_set_phase(self, LEASE_REFUSED, "out of memory");
        goto done;
    }
    while (!lease_sleep(self, wait_ms)) {
        if (atomic_load(&self->phase) == LEASE_HELD)
            wait_ms = lease_step_renew(self, &failing, &lapsed);
        else
            wait_ms = lease_step_register(self, seen_until, sizeof(seen_until), &failing);
        if (wait_ms < 0)
            goto done;
    }
    /* A clean stop: the next start of this worker_id need not wait. */
    if (atomic_load(&self->phase) == LEASE_HELD &&
        db_stmt_exec(self->st[ST_RELEASE], &err, "sb", self->owner, claim_instance(),
                     (size_t)IDENT_BYTES) < 0)
        log_warn("event=registration_release_failed error=\"%s\"", err.msg);
done:
    claim_destroy(&self->claims);
    db_destroy(&self->conn);
    db_thread_end();
    return NULL;
}

lease *
lease_new(const conf *cf, const char *owner, errbuf *err)
{
    lease *self = calloc(1, sizeof(*self));
    int rc;

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    self->cf = cf;
    snprintf(self->owner, sizeof(self->owner), "%s", owner);
    if (gethostname(self->host, sizeof(self->host) - 1) != 0 || self->host[0] == '\0')
        snprintf(self->host, sizeof(self->host), "localhost");
    lease_boot_of(self->boot, sizeof(self->boot));
    self->lease_time = conf_int(cf, "lease_time");
    self->period_ms = lease_period_ms(self->lease_time);
    self->timeout = lease_statement_timeout(self->lease_time, conf_int(cf, "db_timeout"));
    atomic_init(&self->phase, LEASE_STARTING);
    atomic_init(&self->held_ns, 0);
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->wake, NULL);
    rc = pthread_create(&self->thread, NULL, lease_thread, self);
    if (rc != 0) {
        errbuf_set(err, "cannot start the lease thread: %s", strerror(rc));
        pthread_cond_destroy(&self->wake);
        pthread_mutex_destroy(&self->lock);
        free(self);
        return NULL;
    }
    return self;
}

void
lease_destroy(lease **self_p)
{
    lease *self = *self_p;

    if (self == NULL)
        return;
    pthread_mutex_lock(&self->lock);
    self->stopping = 1;
    pthread_cond_broadcast(&self->wake);
    pthread_mutex_unlock(&self->lock);
    pthread_join(self->thread, NULL);
    pthread_cond_destroy(&self->wake);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

int
lease_start_wait(lease *self, const volatile sig_atomic_t *stop, errbuf *err)
{
    int rc = RS_OK;

    pthread_mutex_lock(&self->lock);
    for (;;) {
        enum lease_phase phase = (enum lease_phase)atomic_load(&self->phase);
        struct timespec until;

        if (phase == LEASE_REFUSED || phase == LEASE_LOST) {
            rc = errbuf_set(err, "%s", self->why);
            break;
        }
        /* Pending: the database did not answer; the start goes on (lease.h). */
        if (phase == LEASE_HELD || phase == LEASE_PENDING)
            break;
        if (*stop) {
            rc = errbuf_set(err, "stopped while waiting for the registration of worker_id \"%s\"",
                            self->owner);
            break;
        }
        lease_deadline(200, &until);
        pthread_cond_timedwait(&self->wake, &self->lock, &until);
    }
    pthread_mutex_unlock(&self->lock);
    return rc;
}

int
lease_held(const lease *self)
{
    return atomic_load(&self->phase) == LEASE_HELD &&
           lease_now_ns() - atomic_load(&self->held_ns) < self->lease_time * 1000000000LL;
}

int
lease_lost(lease *self, errbuf *err)
{
    if (atomic_load(&self->phase) != LEASE_LOST)
        return 0;
    pthread_mutex_lock(&self->lock);
    errbuf_set(err, "%s", self->why);
    pthread_mutex_unlock(&self->lock);
    return 1;
}
