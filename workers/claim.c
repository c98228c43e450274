/* claim: claims of outbox work with a fencing epoch (see claim.h). */
#include "config.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <unistd.h>

#include "claim.h"
#include "log.h"
#include "queues.h"

static const char *const claim_queue_names[CLAIM_NQUEUES] = {QUEUES_FACTORY, QUEUES_MAIL};

enum claim_stmt {
    ST_NEW,      /* events not taken, without an open claim */
    ST_INSERT,   /* the claim of one (event, queue) */
    ST_OPEN,     /* the open claims of one event */
    ST_EXPIRED,  /* claims whose lease passed */
    ST_TAKEOVER, /* one of them, under the epoch read */
    ST_RELEASE,
    ST_FORGET,
    ST_MINE,
    ST_RENEWABLE, /* this worker's unexpired claims no one else holds locked */
    ST_RENEW,     /* one of them */
    ST_CHECK,
    ST_WHO,
    ST_DONE,
    ST_COUNT
};

/* Only the claim rows are locked (SKIP LOCKED): a join would lock, and skip,
 * product rows that checkouts hold. Every time is UTC from the server's clock
 * (UTC_TIMESTAMP), the one clock every worker shares, whatever the session's
 * time zone (sql/011): never the session's local time, which moves with the
 * node's zone and with daylight saving time. */
#define CLAIM_NOW        "UTC_TIMESTAMP(6)"
#define CLAIM_LEASE_ENDS "TIMESTAMPADD(SECOND, ?, UTC_TIMESTAMP(6))"
static const struct db_stmt_def claim_sql[ST_COUNT] = {
    [ST_NEW] = {"SELECT o.event_id FROM outbox o WHERE o.taken_at IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM outbox_claim c WHERE c.event_id = o.event_id"
                " AND c.done_at IS NULL)"
                " ORDER BY o.seq LIMIT ? FOR UPDATE SKIP LOCKED",
                0},
    [ST_OPEN] = {"SELECT COUNT(*) FROM outbox_claim WHERE event_id = ? AND done_at IS NULL", 0},
    [ST_INSERT] = {"INSERT IGNORE INTO outbox_claim"
                   " (event_id, queue, owner, epoch, lease_until, claimed_at)"
                   " VALUES (?, ?, ?, 1, " CLAIM_LEASE_ENDS ", " CLAIM_NOW ")",
                   0},
    [ST_EXPIRED] = {"SELECT event_id, queue, owner, epoch FROM outbox_claim"
                    " WHERE done_at IS NULL AND lease_until < " CLAIM_NOW
                    " ORDER BY lease_until LIMIT ? FOR UPDATE SKIP LOCKED",
                    0},
    /* epoch first: MariaDB and MySQL assign left to right, and the comparison
     * is with the owner before the change. */
    [ST_TAKEOVER] = {"UPDATE outbox_claim SET epoch = epoch + (owner <> ?), owner = ?,"
                     " lease_until = " CLAIM_LEASE_ENDS ", claimed_at = " CLAIM_NOW
                     " WHERE event_id = ? AND queue = ? AND epoch = ? AND done_at IS NULL"
                     " AND lease_until < " CLAIM_NOW,
                     0},
    [ST_RELEASE] = {"UPDATE outbox_claim SET lease_until = TIMESTAMPADD(SECOND, -1, " CLAIM_NOW ")"
                    " WHERE event_id = ? AND queue = ? AND owner = ? AND epoch = ?"
                    " AND done_at IS NULL",
                    DB_IDEMPOTENT},
    [ST_FORGET] = {"DELETE FROM outbox_claim WHERE event_id = ? AND owner = ? AND done_at IS NULL",
                   DB_IDEMPOTENT},
    [ST_MINE] = {"SELECT event_id, queue, epoch FROM outbox_claim"
                 " WHERE owner = ? AND done_at IS NULL",
                 DB_IDEMPOTENT},
    /* The renewal skips the rows another transaction holds: those of a sweep of
     * this worker in progress (a slow statement must not hold up the renewal of
     * the rest), or of a delivery's check, which renews its own. A locked row
     * cannot be taken over meanwhile: the takeover's SELECT skips it too. */
    [ST_RENEWABLE] = {"SELECT event_id, queue, epoch FROM outbox_claim"
                      " WHERE owner = ? AND done_at IS NULL AND lease_until >= " CLAIM_NOW
                      " FOR UPDATE SKIP LOCKED",
                      0},
    [ST_RENEW] = {"UPDATE outbox_claim SET lease_until = " CLAIM_LEASE_ENDS
                  " WHERE event_id = ? AND queue = ? AND owner = ? AND epoch = ?"
                  " AND done_at IS NULL",
                  0},
    /* Still ours: the claim under the message's epoch, and this worker_id
     * registered to this process, unexpired (lease.h): a second process with the
     * same worker_id, or this one after its registration lapsed, sends nothing. */
    [ST_CHECK] = {"UPDATE outbox_claim c JOIN worker_registration w ON w.worker_id = c.owner"
                  " SET c.lease_until = " CLAIM_LEASE_ENDS ", c.done_at = NULL"
                  " WHERE c.event_id = ? AND c.queue = ? AND c.owner = ? AND c.epoch = ?"
                  " AND w.instance = ? AND w.lease_until > " CLAIM_NOW,
                  DB_IDEMPOTENT},
    [ST_WHO] = {"SELECT owner, epoch, done_at IS NOT NULL FROM outbox_claim"
                " WHERE event_id = ? AND queue = ?",
                DB_IDEMPOTENT},
    [ST_DONE] = {"UPDATE outbox_claim SET done_at = " CLAIM_NOW
                 " WHERE event_id = ? AND queue = ? AND owner = ? AND epoch = ?",
                 DB_IDEMPOTENT},
};

struct claim {
    db *conn;
    char owner[CLAIM_OWNER_MAX];
    long long lease;
    db_stmt *st[ST_COUNT];
};

int
claim_queue_parse(const char *name)
{
    for (int i = 0; i < CLAIM_NQUEUES; i++)
        if (name != NULL && strcmp(name, claim_queue_names[i]) == 0)
            return i;
    return -1;
}

/* The machine's id (machine-id(5)): 32 hex digits, into out (33 bytes); 0 when
 * neither file has one (a container without it, say). */
static int
claim_machine_id(char out[33])
{
    static const char *const paths[] = {"/etc/machine-id", "/var/lib/dbus/machine-id"};

    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        FILE *f = fopen(paths[i], "re");
        char line[64] = "";
        size_t n;

        if (f == NULL)
            continue;
        if (fgets(line, sizeof(line), f) == NULL)
            line[0] = '\0';
        fclose(f);
        n = strspn(line, "0123456789abcdefABCDEF");
        if (n == 32 && (line[n] == '\0' || isspace((unsigned char)line[n]))) {
            memcpy(out, line, 32);
            out[32] = '\0';
            return 1;
        }
    }
    return 0;
}

void
claim_owner_derive(const char *machine_id, const char *host, const char *spool_dir,
                   char out[CLAIM_OWNER_MAX])
{
    /* An application-specific hash, not the id itself: machine-id(5) asks that
     * the id not be shown, and the name is in logs and rows. 48 bits: two
     * machines of one host name get two names but for a 1 in 2^48 chance (and
     * then the second one's start is refused, lease.h). */
    static const unsigned char key[] = "restock worker_id v1";
    unsigned char hash[CLAIM_MACHINE_HASH];
    char hex[2 * CLAIM_MACHINE_HASH + 1];

    if (machine_id == NULL || *machine_id == '\0') {
        snprintf(out, CLAIM_OWNER_MAX, "%s:%s", host, spool_dir);
        return;
    }
    crypto_generichash(hash, sizeof(hash), (const unsigned char *)machine_id, strlen(machine_id),
                       key, sizeof(key) - 1);
    sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
    snprintf(out, CLAIM_OWNER_MAX, "%s#%s:%s", host, hex, spool_dir);
}

int
claim_owner_of(const conf *cf, char out[CLAIM_OWNER_MAX])
{
    char host[256] = "", machine[33] = "";
    int unique;

    if (*conf_str(cf, "worker_id") != '\0') {
        snprintf(out, CLAIM_OWNER_MAX, "%s", conf_str(cf, "worker_id"));
        return 1;
    }
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
        snprintf(host, sizeof(host), "localhost");
    unique = claim_machine_id(machine);
    claim_owner_derive(machine, host, conf_str(cf, "spool_dir"), out);
    return unique;
}

/* This process's instance: random, made once (claim.h). */
static unsigned char claim_instance_id[IDENT_BYTES];
static pthread_once_t claim_instance_once = PTHREAD_ONCE_INIT;

static void
claim_instance_make(void)
{
    randombytes_buf(claim_instance_id, sizeof(claim_instance_id));
}

const unsigned char *
claim_instance(void)
{
    pthread_once(&claim_instance_once, claim_instance_make);
    return claim_instance_id;
}

void
claim_message_id(const char *event_text, long long epoch, char *out, size_t size)
{
    if (epoch <= 1)
        snprintf(out, size, "%s", event_text);
    else
        snprintf(out, size, "%s.%lld", event_text, epoch);
}

int
claim_event_of_id(const char *id, char out[IDENT_TEXT])
{
    unsigned char bytes[IDENT_BYTES];
    size_t n = strcspn(id, ".");

    if (n != IDENT_TEXT - 1)
        return RS_ERR;
    memcpy(out, id, n);
    out[n] = '\0';
    return ident_parse(out, bytes) == 0 ? RS_OK : RS_ERR;
}

claim *
claim_new(db *conn, const char *owner, long lease_time, errbuf *err)
{
    claim *self = calloc(1, sizeof(*self));

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    self->conn = conn;
    self->lease = lease_time;
    snprintf(self->owner, sizeof(self->owner), "%s", owner);
    if (db_stmt_table(conn, claim_sql, ST_COUNT, self->st, err) != RS_OK) {
        claim_destroy(&self);
        return NULL;
    }
    return self;
}

void
claim_destroy(claim **self_p)
{
    free(*self_p); /* statements belong to the connection */
    *self_p = NULL;
}

const char *
claim_owner(const claim *self)
{
    return self->owner;
}

/* The entry of event in out[0..n), or NULL. */
static struct claim_work *
claim_find(struct claim_work *out, size_t n, const void *event)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(out[i].event, event, IDENT_BYTES) == 0)
            return &out[i];
    return NULL;
}

/* The events not claimed yet: both their claims inserted. Returns the new n. */
static long long
claim_take_new(claim *self, struct claim_work *out, size_t max, errbuf *err)
{
    unsigned char events[max][IDENT_BYTES];
    db_stmt *st = self->st[ST_NEW];
    size_t found = 0, n = 0;

    if (db_stmt_exec(st, err, "i", (long long)max) < 0)
        return RS_ERR;
    while (found < max && db_stmt_next(st)) {
        size_t len;
        const char *id = db_stmt_col(st, 0, &len);
        if (id != NULL && len == IDENT_BYTES)
            memcpy(events[found++], id, IDENT_BYTES);
    }
    for (size_t i = 0; i < found; i++) {
        struct claim_work *w = &out[n];
        int won = 0;

        memset(w, 0, sizeof(*w));
        for (int q = 0; q < CLAIM_NQUEUES; q++) {
            long long rows =
                db_stmt_exec(self->st[ST_INSERT], err, "bssi", events[i], (size_t)IDENT_BYTES,
                             claim_queue_names[q], self->owner, self->lease);
            if (rows < 0)
                return RS_ERR;
            /* 0 rows: a claim made meanwhile, by a sweep the lock did not stop
             * (the other node of a cluster): that queue is not ours. */
            if (rows == 1) {
                w->epoch[q] = 1;
                won = 1;
            }
        }
        if (!won) {
            /* Claimed before: untaken only if no claim is open now (another
             * node's sweep may have claimed it since the select). */
            if (db_stmt_exec(self->st[ST_OPEN], err, "b", events[i], (size_t)IDENT_BYTES) < 0)
                return RS_ERR;
            if (!db_stmt_next(self->st[ST_OPEN]) || db_stmt_col_int(self->st[ST_OPEN], 0) != 0)
                continue;
            w->untaken = 1;
        }
        memcpy(w->event, events[i], IDENT_BYTES);
        ident_format(w->event, IDENT_BYTES, w->event_text);
        w->fresh = won;
        n++;
    }
    return (long long)n;
}

/* Claims whose lease passed, added to out[n..max). Returns the new n. */
static long long
claim_take_expired(claim *self, struct claim_work *out, size_t n, size_t max, errbuf *err)
{
    struct {
        unsigned char event[IDENT_BYTES];
        int queue;
        int mine;
        long long epoch;
    } rows[max];
    db_stmt *st = self->st[ST_EXPIRED];
    size_t found = 0;

    if (db_stmt_exec(st, err, "i", (long long)max) < 0)
        return RS_ERR;
    while (found < max && db_stmt_next(st)) {
        size_t len;
        const char *id = db_stmt_col(st, 0, &len);
        const char *owner = db_stmt_col(st, 2, NULL);
        int q = claim_queue_parse(db_stmt_col(st, 1, NULL));
        if (id == NULL || len != IDENT_BYTES || q < 0)
            continue;
        memcpy(rows[found].event, id, IDENT_BYTES);
        rows[found].queue = q;
        rows[found].mine = owner != NULL && strcmp(owner, self->owner) == 0;
        rows[found].epoch = db_stmt_col_int(st, 3);
        found++;
    }
    for (size_t i = 0; i < found; i++) {
        struct claim_work *w = claim_find(out, n, rows[i].event);
        long long changed;

        if (w == NULL && n == max)
            break; /* the room is used up: the next batch takes the rest */
        changed = db_stmt_exec(self->st[ST_TAKEOVER], err, "ssibsi", self->owner, self->owner,
                               self->lease, rows[i].event, (size_t)IDENT_BYTES,
                               claim_queue_names[rows[i].queue], rows[i].epoch);
        if (changed < 0)
            return RS_ERR;
        if (changed == 0)
            continue; /* renewed or taken meanwhile */
        if (w == NULL) {
            w = &out[n++];
            memset(w, 0, sizeof(*w));
            memcpy(w->event, rows[i].event, IDENT_BYTES);
            ident_format(w->event, IDENT_BYTES, w->event_text);
        }
        w->epoch[rows[i].queue] = rows[i].epoch + (rows[i].mine ? 0 : 1);
    }
    return (long long)n;
}

int
claim_take(claim *self, struct claim_work *out, size_t max, errbuf *err)
{
    long long n;

    if (max == 0)
        return 0;
    if (db_begin(self->conn, err) != RS_OK)
        return RS_ERR;
    n = claim_take_new(self, out, max, err);
    if (n >= 0 && (size_t)n < max)
        n = claim_take_expired(self, out, (size_t)n, max, err);
    if (n < 0)
        db_rollback(self->conn);
    if (n >= 0 && db_commit(self->conn, err) != RS_OK)
        n = RS_ERR;
    if (n < 0 && db_retryable(self->conn)) {
        /* The transaction lost to another claimer: InnoDB's deadlock, or Galera's
         * certification failure at commit, which the database rolled back (a
         * statement after the loss, in the void transaction, fails the same way).
         * The other claimer has the work: nothing is ours, nothing is wrong. The
         * next sweep claims what is left. */
        log_info("event=claim_conflict error=\"%s\"", err->msg);
        return 0;
    }
    if (n < 0)
        return errbuf_prefix(err, "claiming outbox work");
    return (int)n;
}

int
claim_release(claim *self, const unsigned char *event, enum claim_queue q, long long epoch,
              errbuf *err)
{
    if (db_stmt_exec(self->st[ST_RELEASE], err, "bssi", event, (size_t)IDENT_BYTES,
                     claim_queue_names[q], self->owner, epoch) < 0)
        return errbuf_prefix(err, "releasing a claim");
    return RS_OK;
}

int
claim_forget(claim *self, const unsigned char *event, errbuf *err)
{
    if (db_stmt_exec(self->st[ST_FORGET], err, "bs", event, (size_t)IDENT_BYTES, self->owner) < 0)
        return errbuf_prefix(err, "forgetting a claim");
    return RS_OK;
}

/* The rows (event_id, queue, epoch) of the last execution of st, rows of them,
 * malloc'd (free it), *n read; NULL when out of memory. */
static struct claim_held *
claim_read_held(db_stmt *st, long long rows, size_t *n, errbuf *err)
{
    struct claim_held *v = calloc((size_t)rows + 1, sizeof(*v));

    *n = 0;
    if (v == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    while (*n < (size_t)rows && db_stmt_next(st)) {
        size_t len;
        const char *id = db_stmt_col(st, 0, &len);
        int q = claim_queue_parse(db_stmt_col(st, 1, NULL));
        if (id == NULL || len != IDENT_BYTES || q < 0)
            continue;
        memcpy(v[*n].event, id, IDENT_BYTES);
        ident_format(id, len, v[*n].event_text);
        v[*n].queue = (enum claim_queue)q;
        v[*n].epoch = db_stmt_col_int(st, 2);
        (*n)++;
    }
    return v;
}

struct claim_held *
claim_held_list(claim *self, size_t *n, errbuf *err)
{
    db_stmt *st = self->st[ST_MINE];
    long long rows = db_stmt_exec(st, err, "s", self->owner);

    *n = 0;
    if (rows < 0) {
        errbuf_prefix(err, "reading the claims of %s", self->owner);
        return NULL;
    }
    return claim_read_held(st, rows, n, err);
}

/* One transaction: the unexpired claims nobody holds locked, each renewed. */
static long long
claim_renew_once(claim *self, errbuf *err)
{
    db_stmt *st = self->st[ST_RENEWABLE];
    struct claim_held *v = NULL;
    long long rows, renewed = 0;
    size_t n = 0;

    if (db_begin(self->conn, err) != RS_OK)
        return RS_ERR;
    rows = db_stmt_exec(st, err, "s", self->owner);
    if (rows >= 0)
        v = claim_read_held(st, rows, &n, err);
    if (v == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        long long changed = db_stmt_exec(self->st[ST_RENEW], err, "ibssi", self->lease, v[i].event,
                                         (size_t)IDENT_BYTES, claim_queue_names[v[i].queue],
                                         self->owner, v[i].epoch);
        if (changed < 0)
            goto fail;
        renewed += changed;
    }
    free(v);
    if (db_commit(self->conn, err) != RS_OK)
        return RS_ERR;
    return renewed;
fail:
    free(v);
    db_rollback(self->conn);
    return RS_ERR;
}

long long
claim_renew(claim *self, errbuf *err)
{
    long long n;
    int attempts = 0;

    do
        n = claim_renew_once(self, err);
    while (n < 0 && db_retry(self->conn, &attempts));
    if (n < 0)
        errbuf_prefix(err, "renewing the claims of %s", self->owner);
    return n;
}

int
claim_check(claim *self, const char *event_text, enum claim_queue q, long long epoch, char *now,
            size_t now_size, errbuf *err)
{
    unsigned char event[IDENT_BYTES];
    db_stmt *who = self->st[ST_WHO];
    long long rows;

    if (ident_parse(event_text, event) != 0)
        return errbuf_set(err, "claim of a message: \"%.40s\" is not an event id", event_text);
    rows = db_stmt_exec(self->st[ST_CHECK], err, "ibssib", self->lease, event, (size_t)IDENT_BYTES,
                        claim_queue_names[q], self->owner, epoch, claim_instance(),
                        (size_t)IDENT_BYTES);
    if (rows < 0)
        return errbuf_prefix(err, "checking the claim of event %s", event_text);
    if (rows > 0)
        return 1;
    /* Not renewed: who holds it now, for the log. */
    snprintf(now, now_size, "none");
    rows = db_stmt_exec(who, err, "bs", event, (size_t)IDENT_BYTES, claim_queue_names[q]);
    if (rows < 0)
        return errbuf_prefix(err, "checking the claim of event %s", event_text);
    if (rows > 0 && db_stmt_next(who)) {
        const char *owner = db_stmt_col(who, 0, NULL);
        long long held = db_stmt_col_int(who, 1);
        /* Still this worker_id's claim under the message's epoch: it is the
         * registration that this process does not hold (it lapsed, or another
         * process of the same worker_id has it). Nothing is sent and nothing is
         * dropped: the delivery waits until the registration is renewed, or
         * the worker stops. */
        if (owner != NULL && strcmp(owner, self->owner) == 0 && held == epoch)
            return errbuf_set(err,
                              "claim of event %s: worker_id \"%s\" is not registered to this "
                              "process now (its lease lapsed, or another worker has it)",
                              event_text, self->owner);
        snprintf(now, now_size, "%s epoch %lld%s", owner ? owner : "?", held,
                 db_stmt_col_int(who, 2) ? " done" : "");
    }
    return 0;
}

int
claim_done(claim *self, const char *event_text, enum claim_queue q, long long epoch, errbuf *err)
{
    unsigned char event[IDENT_BYTES];
    long long rows;

    if (ident_parse(event_text, event) != 0)
        return errbuf_set(err, "claim of a message: \"%.40s\" is not an event id", event_text);
    rows = db_stmt_exec(self->st[ST_DONE], err, "bssi", event, (size_t)IDENT_BYTES,
                        claim_queue_names[q], self->owner, epoch);
    if (rows < 0)
        return errbuf_prefix(err, "marking the claim of event %s done", event_text);
    return rows > 0 ? 1 : 0;
}
