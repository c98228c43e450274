/* claim: claims of outbox work with a fencing epoch (see claim.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "claim.h"
#include "log.h"

static const char *const claim_queue_names[CLAIM_NQUEUES] = {"factory", "mail"};

enum claim_stmt {
    ST_NEW,      /* events not claimed yet */
    ST_INSERT,   /* the claim of one (event, queue) */
    ST_EXPIRED,  /* claims whose lease passed */
    ST_TAKEOVER, /* one of them, under the epoch read */
    ST_RELEASE,
    ST_FORGET,
    ST_MINE,
    ST_RENEW,
    ST_CHECK,
    ST_WHO,
    ST_DONE,
    ST_COUNT
};

/* Only the claim rows are locked (SKIP LOCKED): a join would lock, and skip,
 * product rows that checkouts hold. Lease arithmetic is the server's clock, the
 * one clock every worker shares. */
static const struct {
    const char *sql;
    int flags;
} claim_sql[ST_COUNT] = {
    [ST_NEW] = {"SELECT o.event_id FROM outbox o WHERE o.taken_at IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM outbox_claim c WHERE c.event_id = o.event_id)"
                " ORDER BY o.seq LIMIT ? FOR UPDATE SKIP LOCKED",
                0},
    [ST_INSERT] = {"INSERT IGNORE INTO outbox_claim (event_id, queue, owner, epoch, lease_until)"
                   " VALUES (?, ?, ?, 1, CURRENT_TIMESTAMP(6) + INTERVAL ? SECOND)",
                   0},
    [ST_EXPIRED] = {"SELECT event_id, queue, owner, epoch FROM outbox_claim"
                    " WHERE done_at IS NULL AND lease_until < CURRENT_TIMESTAMP(6)"
                    " ORDER BY lease_until LIMIT ? FOR UPDATE SKIP LOCKED",
                    0},
    /* epoch first: MariaDB and MySQL assign left to right, and the comparison
     * is with the owner before the change. */
    [ST_TAKEOVER] = {"UPDATE outbox_claim SET epoch = epoch + (owner <> ?), owner = ?,"
                     " lease_until = CURRENT_TIMESTAMP(6) + INTERVAL ? SECOND,"
                     " claimed_at = CURRENT_TIMESTAMP(6)"
                     " WHERE event_id = ? AND queue = ? AND epoch = ? AND done_at IS NULL"
                     " AND lease_until < CURRENT_TIMESTAMP(6)",
                     0},
    [ST_RELEASE] = {"UPDATE outbox_claim SET lease_until = CURRENT_TIMESTAMP(6) - INTERVAL 1 SECOND"
                    " WHERE event_id = ? AND queue = ? AND owner = ? AND epoch = ?"
                    " AND done_at IS NULL",
                    DB_IDEMPOTENT},
    [ST_FORGET] = {"DELETE FROM outbox_claim WHERE event_id = ? AND owner = ? AND done_at IS NULL",
                   DB_IDEMPOTENT},
    [ST_MINE] = {"SELECT event_id, queue, epoch FROM outbox_claim"
                 " WHERE owner = ? AND done_at IS NULL",
                 DB_IDEMPOTENT},
    [ST_RENEW] = {"UPDATE outbox_claim SET lease_until = CURRENT_TIMESTAMP(6) + INTERVAL ? SECOND"
                  " WHERE owner = ? AND done_at IS NULL AND lease_until >= CURRENT_TIMESTAMP(6)",
                  DB_IDEMPOTENT},
    [ST_CHECK] = {"UPDATE outbox_claim SET lease_until = CURRENT_TIMESTAMP(6) + INTERVAL ? SECOND,"
                  " done_at = NULL WHERE event_id = ? AND queue = ? AND owner = ? AND epoch = ?",
                  DB_IDEMPOTENT},
    [ST_WHO] = {"SELECT owner, epoch, done_at IS NOT NULL FROM outbox_claim"
                " WHERE event_id = ? AND queue = ?",
                DB_IDEMPOTENT},
    [ST_DONE] = {"UPDATE outbox_claim SET done_at = CURRENT_TIMESTAMP(6)"
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

void
claim_owner_of(const conf *cf, char out[CLAIM_OWNER_MAX])
{
    char host[256] = "";

    if (*conf_str(cf, "worker_id") != '\0') {
        snprintf(out, CLAIM_OWNER_MAX, "%s", conf_str(cf, "worker_id"));
        return;
    }
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
        snprintf(host, sizeof(host), "localhost");
    snprintf(out, CLAIM_OWNER_MAX, "%s:%s", host, conf_str(cf, "spool_dir"));
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
    for (int i = 0; i < ST_COUNT; i++) {
        self->st[i] = db_stmt_new(conn, claim_sql[i].sql, claim_sql[i].flags);
        if (self->st[i] == NULL) {
            errbuf_set(err, "out of memory");
            claim_destroy(&self);
            return NULL;
        }
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
        if (won) {
            memcpy(w->event, events[i], IDENT_BYTES);
            ident_format(w->event, IDENT_BYTES, w->event_text);
            w->fresh = 1;
            n++;
        }
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

/* A transaction that lost to another claimer: InnoDB's deadlock, or Galera's
 * certification failure at commit, both ER_LOCK_DEADLOCK (1213), rolled back. (The
 * error's code is only in its text here: lib/db does not tell it.) */
static int
claim_lost_race(const errbuf *err)
{
    return strstr(err->msg, "(1213)") != NULL;
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
    if (n < 0 && claim_lost_race(err)) {
        /* The other claimer has the work: nothing is ours, nothing is wrong. The
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

struct claim_held *
claim_held_list(claim *self, size_t *n, errbuf *err)
{
    db_stmt *st = self->st[ST_MINE];
    long long rows = db_stmt_exec(st, err, "s", self->owner);
    struct claim_held *v;

    *n = 0;
    if (rows < 0) {
        errbuf_prefix(err, "reading the claims of %s", self->owner);
        return NULL;
    }
    v = calloc((size_t)rows + 1, sizeof(*v));
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

long long
claim_renew(claim *self, errbuf *err)
{
    long long n = db_stmt_exec(self->st[ST_RENEW], err, "is", self->lease, self->owner);

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
    rows = db_stmt_exec(self->st[ST_CHECK], err, "ibssi", self->lease, event, (size_t)IDENT_BYTES,
                        claim_queue_names[q], self->owner, epoch);
    if (rows < 0)
        return errbuf_prefix(err, "checking the claim of event %s", event_text);
    if (rows > 0)
        return 1;
    /* Lost: who holds it now, for the log. A failure here changes nothing. */
    snprintf(now, now_size, "none");
    if (db_stmt_exec(who, err, "bs", event, (size_t)IDENT_BYTES, claim_queue_names[q]) > 0 &&
        db_stmt_next(who)) {
        const char *owner = db_stmt_col(who, 0, NULL);
        snprintf(now, now_size, "%s epoch %lld%s", owner ? owner : "?", db_stmt_col_int(who, 1),
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
