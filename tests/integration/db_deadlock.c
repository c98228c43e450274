/* db_deadlock: provokes three real deadlocks on the database of RESTOCK_CONFIG and
 * checks that restock runs the losing side again instead of failing it (TAP on
 * stdout, the programs' log lines on stderr). Not a unit test (it needs a
 * database): tests/integration/db_failover.py runs it against the harness's.
 *
 * In each, connection a holds row 1 and many others (so that InnoDB picks the
 * other, lighter side as the victim), b holds row 2 and waits for row 1, and then
 * a asks for row 2: a deadlock, b rolled back.
 *   1. b in a transaction: the transaction fails with db_retryable, and db_retry
 *      runs it again, which commits.
 *   2. b an autocommit statement: db_stmt_exec runs it again by itself, and it
 *      succeeds.
 *   3. b's transaction of 1 nested in an outer one that changed row 3 first (a
 *      savepoint, as order.c's inside a keyed checkout's): the nested one is not
 *      run again (db_retry answers 0 while the outer is open), the outer one is
 *      void (its next statement and its commit fail, retryable, and nothing is
 *      committed), and the outer's db_retry runs all of it again, which commits
 *      each change once.
 * And 4. ("db_deadlock killed-while-idle", alone; db_failover.py runs it through
 * HAProxy, over TCP, with db_idle_check an hour, so that no ping is made): a
 * connection the server closed while idle (KILL CONNECTION, as a restart of the
 * server or the proxy would) is noticed before the next write, which goes out on
 * a new connection and changes its row once, neither failed nor in doubt. Over
 * TCP it was written into the dead socket and failed reading its answer: 2013, a
 * 504 for a sale no server ever saw. (Over a unix socket the write itself fails,
 * 2006, and db sent it again.) */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "log.h"
#include "../unit/tap.h"

enum side_mode { SIDE_TX, SIDE_AUTOCOMMIT, SIDE_NESTED };

struct side {
    db *conn;
    enum side_mode mode;
    int attempts;      /* db_retry's count (of the outer transaction when nested) */
    int first_failure; /* 1: the first attempt failed as retryable, not as a lost connection */
    long long rows;
    errbuf err;
    /* SIDE_NESTED, after the first attempt's nested transaction failed: */
    int nested_attempts; /* db_retry's count inside the outer transaction */
    int void_statement;  /* the outer's next statement failed, retryable */
    int void_commit;     /* and its commit failed, retryable */
    long long void_row3; /* row 3 as another connection saw it then */
};

static const conf *cf;

static void __attribute__((noreturn)) bail(const char *what, const char *why)
{
    printf("Bail out! %s: %s\n", what, why);
    exit(1);
}

static int
side_tx(struct side *b, int first)
{
    db_stmt *two = db_stmt_new(b->conn, "UPDATE deadlock_probe SET n = n + 1 WHERE id = 2", 0);
    db_stmt *one = db_stmt_new(b->conn, "UPDATE deadlock_probe SET n = n + 1 WHERE id = 1", 0);

    if (db_begin(b->conn, &b->err) != RS_OK || db_stmt_exec(two, &b->err, "") != 1 ||
        db_stmt_exec(one, &b->err, "") != 1) {
        if (first)
            b->first_failure = db_retryable(b->conn) && !db_failed_connection(b->conn);
        db_rollback(b->conn);
        return RS_ERR;
    }
    return db_commit(b->conn, &b->err);
}

/* Row 3 as a connection of its own sees it (committed), or -1. */
static long long
row3_committed(void)
{
    db *other = db_new(cf, 0);
    db_stmt *n = db_stmt_new(other, "SELECT n FROM deadlock_probe WHERE id = 3", 0);
    errbuf err = {{0}};
    long long v = db_stmt_exec(n, &err, "") == 1 && db_stmt_next(n) ? db_stmt_col_int(n, 0) : -1;

    db_destroy(&other);
    return v;
}

/* The outer transaction of SIDE_NESTED: row 3, then side_tx nested in it, run
 * in a db_retry loop of its own as order.c's is. */
static int
side_outer_tx(struct side *b, int first)
{
    db_stmt *three = db_stmt_new(b->conn, "UPDATE deadlock_probe SET n = n + 1 WHERE id = 3", 0);
    int rc, attempts = 0;

    if (db_begin(b->conn, &b->err) != RS_OK || db_stmt_exec(three, &b->err, "") != 1) {
        db_rollback(b->conn);
        return RS_ERR;
    }
    do
        rc = side_tx(b, first);
    while (rc != RS_OK && db_retry(b->conn, &attempts));
    if (first)
        b->nested_attempts = attempts;
    if (rc != RS_OK) {
        if (first) {
            b->void_statement = db_stmt_exec(three, &b->err, "") < 0 && db_retryable(b->conn);
            b->void_commit = db_commit(b->conn, &b->err) != RS_OK && db_retryable(b->conn);
            b->void_row3 = row3_committed();
        }
        db_rollback(b->conn);
        return RS_ERR;
    }
    return db_commit(b->conn, &b->err);
}

static void *
side_run(void *arg)
{
    struct side *b = arg;

    if (db_thread_init(&b->err) != RS_OK)
        return NULL;
    if (b->mode == SIDE_NESTED) {
        int rc = side_outer_tx(b, 1);
        while (rc != RS_OK && db_retry(b->conn, &b->attempts))
            rc = side_outer_tx(b, 0);
        b->rows = rc == RS_OK ? 1 : -1;
    } else if (b->mode == SIDE_AUTOCOMMIT) {
        /* Locks row 2 first, then waits for row 1. */
        db_stmt *both = db_stmt_new(b->conn,
                                    "UPDATE deadlock_probe SET n = n + 1 WHERE id IN (1, 2)"
                                    " ORDER BY id DESC",
                                    0);
        b->rows = db_stmt_exec(both, &b->err, "");
    } else {
        int rc = side_tx(b, 1);
        while (rc != RS_OK && db_retry(b->conn, &b->attempts))
            rc = side_tx(b, 0);
        b->rows = rc == RS_OK ? 1 : -1;
    }
    db_thread_end();
    return NULL;
}

/* Waits until b holds row 2 (a never takes it before that): then b is on its way
 * to row 1, or already waiting for it. */
static int
wait_for_b(db *watch)
{
    db_stmt *st =
        db_stmt_new(watch, "SELECT id FROM deadlock_probe WHERE id = 2 FOR UPDATE SKIP LOCKED", 0);
    errbuf err = {{0}};

    for (int i = 0; i < 3000; i++) {
        struct timespec pause = {0, 10 * 1000000L};
        long long rows = db_stmt_exec(st, &err, "");
        if (rows < 0) {
            diag("%s", err.msg);
            return 0;
        }
        if (rows == 0)
            return 1;
        nanosleep(&pause, NULL);
    }
    return 0;
}

static void
scenario(db *watch, enum side_mode mode)
{
    static const char *whats[] = {"transaction", "autocommit statement", "nested transaction"};
    const char *what = whats[mode];
    struct side b = {.conn = db_new(cf, 0), .mode = mode};
    db *a = db_new(cf, 0);
    db_stmt *two, *n;
    errbuf err = {{0}};
    pthread_t thread;

    if (db_run(watch, "UPDATE deadlock_probe SET n = 0", &err) != RS_OK ||
        db_begin(a, &err) != RS_OK ||
        db_run(a, "UPDATE deadlock_probe SET n = n + 1 WHERE id >= 10", &err) != RS_OK ||
        db_run(a, "UPDATE deadlock_probe SET n = n + 1 WHERE id = 1", &err) != RS_OK) {
        ok(0, "%s: a holds row 1 (%s)", what, err.msg);
        goto done;
    }
    pthread_create(&thread, NULL, side_run, &b);
    ok(wait_for_b(watch), "%s: b holds row 2", what);
    two = db_stmt_new(a, "UPDATE deadlock_probe SET n = n + 1 WHERE id = 2", 0);
    is_int(db_stmt_exec(two, &err, ""), 1, "a takes row 2 (b, the deadlock's victim, let go)");
    ok(db_commit(a, &err) == RS_OK, "a commits (%s)", err.msg);
    pthread_join(thread, NULL);
    if (mode == SIDE_AUTOCOMMIT) {
        is_int(b.rows, 2, "the autocommit statement was run again and changed both rows");
    } else if (mode == SIDE_NESTED) {
        ok(b.first_failure, "the nested transaction's first attempt failed as retryable");
        is_int(b.nested_attempts, 0, "db_retry did not run the nested transaction again alone");
        ok(b.void_statement, "the outer transaction's next statement failed, retryable");
        ok(b.void_commit, "and its commit failed, retryable");
        is_int(b.void_row3, 0, "nothing of it was committed (row 3 unchanged)");
        is_int(b.attempts, 1, "the outer transaction's db_retry ran all of it once more");
        is_int(b.rows, 1, "and it committed");
    } else {
        ok(b.first_failure, "the transaction's first attempt failed as retryable, not lost");
        is_int(b.attempts, 1, "db_retry ran it once more");
        is_int(b.rows, 1, "and it committed");
    }
    if (b.rows < 0)
        diag("b: %s", b.err.msg);
    n = db_stmt_new(watch, "SELECT n FROM deadlock_probe WHERE id = ?", 0);
    for (long long id = 1; id <= 2; id++) {
        db_stmt_exec(n, &err, "i", id);
        is_int(db_stmt_next(n) ? db_stmt_col_int(n, 0) : -1, 2,
               "each side's update of the row counted once");
    }
    if (mode == SIDE_NESTED) {
        db_stmt_exec(n, &err, "i", 3LL);
        is_int(db_stmt_next(n) ? db_stmt_col_int(n, 0) : -1, 1,
               "the outer transaction's update of row 3 counted once");
    }
done:
    db_destroy(&a);
    db_destroy(&b.conn);
}

/* Whether a TCP socket of this machine to the port of RESTOCK_DB_HOST
 * ("127.0.0.1:PORT") is in CLOSE_WAIT: its peer, the proxy, closed it. Waits for
 * it up to 10 s: the proxy closes the client's end after the server closed its. */
static int
proxy_closed(void)
{
    const char *host = getenv("RESTOCK_DB_HOST"), *colon = host ? strrchr(host, ':') : NULL;
    unsigned port = colon ? (unsigned)atoi(colon + 1) : 0;

    for (int tries = 0; port > 0 && tries < 1000; tries++) {
        FILE *f = fopen("/proc/net/tcp", "r");
        char line[512];
        unsigned rem_port, state;

        while (f != NULL && fgets(line, sizeof(line), f) != NULL)
            if (sscanf(line, " %*d: %*x:%*x %*x:%x %x", &rem_port, &state) == 2 &&
                rem_port == port && state == 0x08 /* CLOSE_WAIT */) {
                fclose(f);
                return 1;
            }
        if (f != NULL)
            fclose(f);
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    }
    return 0;
}

/* Scenario 4: x's connection killed by the server while idle, then a write on x. */
static void
killed_while_idle(db *watch)
{
    errbuf err = {{0}};
    db *x = db_new(cf, 0);
    db_stmt *id = db_stmt_new(x, "SELECT CONNECTION_ID()", DB_IDEMPOTENT);
    db_stmt *bump = db_stmt_new(x, "UPDATE deadlock_probe SET n = n + 1 WHERE id = 3", 0);
    db_stmt *alive = db_stmt_new(
        watch, "SELECT COUNT(*) FROM information_schema.processlist WHERE id = ?", DB_IDEMPOTENT);
    long long conn_id = -1, left = 1;
    char kill[64];

    if (db_run(watch, "UPDATE deadlock_probe SET n = 0", &err) != RS_OK ||
        db_stmt_exec(id, &err, "") != 1 || !db_stmt_next(id)) {
        ok(0, "killed while idle: x connected (%s)", err.msg);
        goto done;
    }
    conn_id = db_stmt_col_int(id, 0);
    snprintf(kill, sizeof(kill), "KILL CONNECTION %lld", conn_id);
    ok(db_run(watch, kill, &err) == RS_OK,
       "killed while idle: another session kills x's connection");
    /* The kill is done when its thread has left the process list: wait for that. */
    for (int tries = 0; tries < 1000 && left != 0; tries++) {
        left = db_stmt_exec(alive, &err, "i", conn_id) == 1 && db_stmt_next(alive)
                   ? db_stmt_col_int(alive, 0)
                   : -1;
        if (left != 0)
            nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    }
    is_int(left, 0, "the server closed it");
    ok(proxy_closed(), "and the proxy closed x's end");
    if (!ok(db_stmt_exec(bump, &err, "") == 1, "x's next write runs, on a new connection"))
        diag("%s", err.msg);
    ok(!db_in_doubt(x), "and is not in doubt");
    is_int(row3_committed(), 1, "it changed its row once");
done:
    db_destroy(&x);
}

int
main(int argc, char **argv)
{
    errbuf err = {{0}};
    conf *c = conf_new(NULL, &err);
    db *watch;

    char rows[4096] = "REPLACE INTO deadlock_probe VALUES (1, 0), (2, 0), (3, 0)";

    if (c == NULL)
        bail("configuration", err.msg);
    cf = c;
    log_init("db_deadlock", LOG_LEVEL_INFO);
    if (db_library_init(&err) != RS_OK)
        bail("client library", err.msg);
    /* Rows 10.. make a's side the heavier one. */
    for (int id = 10; id < 200; id++)
        snprintf(rows + strlen(rows), sizeof(rows) - strlen(rows), ", (%d, 0)", id);
    watch = db_new(cf, 0);
    if (db_run(watch,
               "CREATE TABLE IF NOT EXISTS deadlock_probe (id INT NOT NULL PRIMARY KEY,"
               " n INT NOT NULL) ENGINE=InnoDB",
               &err) != RS_OK ||
        db_run(watch, rows, &err) != RS_OK)
        bail("setting up deadlock_probe", err.msg);
    if (argc > 1 && strcmp(argv[1], "killed-while-idle") == 0) {
        killed_while_idle(watch);
    } else {
        scenario(watch, SIDE_TX);
        scenario(watch, SIDE_AUTOCOMMIT);
        scenario(watch, SIDE_NESTED);
    }
    db_run(watch, "DROP TABLE deadlock_probe", &err);
    db_destroy(&watch);
    conf_destroy(&c);
    db_library_end();
    return done_testing();
}
