/* Unit test of db without a database: what each error number means (reconnect,
 * run again, or the statement's own failure), a host list none of whose hosts
 * answers, and a transaction that could not begin leaving nothing open. The
 * deadlock retry against a real database, nested transactions included, is
 * tests/integration/db_deadlock.c, run by db_failover.py. */
#include "config.h"

#include <string.h>

#include <stdlib.h>

#include "db.h"
#include "tap.h"

static const struct {
    unsigned code;
    enum db_error_class want;
    const char *what;
} classes[] = {
    {1047, DB_ERROR_CONNECTION, "a Galera node outside the primary component: reconnect"},
    {1927, DB_ERROR_CONNECTION, "connection killed: reconnect"},
    {2013, DB_ERROR_CONNECTION, "lost connection during a query: reconnect"},
    {2006, DB_ERROR_CONNECTION, "server gone away: reconnect"},
    {2003, DB_ERROR_CONNECTION, "cannot connect: the next host"},
    {1053, DB_ERROR_CONNECTION, "server shutdown: reconnect"},
    {4031, DB_ERROR_CONNECTION, "idle connection closed by the server: reconnect"},
    {1213, DB_ERROR_RETRYABLE, "deadlock or certification failure: run again"},
    {1205, DB_ERROR_STATEMENT, "lock wait timeout: not run again (it waited already)"},
    {1062, DB_ERROR_STATEMENT, "duplicate key: the statement's"},
    {1064, DB_ERROR_STATEMENT, "syntax error: the statement's"},
    {1146, DB_ERROR_STATEMENT, "no such table: the statement's"},
};

int
main(void)
{
    errbuf err = {{0}};
    conf *cf;
    db *conn;
    db_stmt *st;
    int attempts;

    /* The error numbers by value: the tests must not depend on the headers they test. */
    for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
        ok(db_error_class(classes[i].code) == classes[i].want, "%u: %s", classes[i].code,
           classes[i].what);

    /* Nobody listens on ports 1 and 2 of the loopback: refused at once. */
    unsetenv("RESTOCK_CONFIG");
    setenv("RESTOCK_DB_HOST", "127.0.0.1:1,127.0.0.1:2", 1);
    setenv("RESTOCK_DB_PASSWORD", "s3cret-never-shown", 1);
    cf = conf_new(NULL, &err);
    if (!ok(cf != NULL, "configuration (%s)", err.msg))
        return done_testing();
    if (db_library_init(&err) != RS_OK)
        diag("%s", err.msg);
    conn = db_new(cf, 0);
    ok(conn != NULL, "db_new");
    st = db_stmt_new(conn, "SELECT 1", DB_IDEMPOTENT);
    ok(db_stmt_exec(st, &err, "") < 0, "no host answers: the statement fails");
    ok(strstr(err.msg, "127.0.0.1:1") && strstr(err.msg, "127.0.0.1:2"),
       "the error names every host tried: %s", err.msg);
    ok(strstr(err.msg, "s3cret") == NULL, "and not the password");
    ok(db_failed_connection(conn), "a connection failure (503)");
    ok(!db_retryable(conn), "not a rolled-back transaction");
    ok(db_ping(conn, &err) != RS_OK && strstr(err.msg, "127.0.0.1:1"),
       "a ping tries them all again: %s", err.msg);

    /* A transaction that never began is not open, nor void: nothing of it is
     * waiting for a rollback, and the next statement connects afresh. */
    ok(db_begin(conn, &err) != RS_OK && db_failed_connection(conn),
       "db_begin with no host answering fails as a connection failure");
    ok(db_commit(conn, &err) != RS_OK, "a commit then fails: %s", err.msg);
    db_rollback(conn);
    ok(db_stmt_exec(st, &err, "") < 0 && strstr(err.msg, "127.0.0.1:2") &&
           !strstr(err.msg, "rolled back"),
       "the next statement tries to connect, not refused as part of a void transaction: %s",
       err.msg);
    attempts = 0;
    ok(!db_retry(conn, &attempts) && attempts == 0, "db_retry: a lost connection is not run again");

    /* A module's table of statements: each made, in its place, with its flags. */
    {
        static const struct db_stmt_def defs[] = {{"SELECT 1", DB_IDEMPOTENT}, {"SELECT 2", 0}};
        db_stmt *table[3] = {NULL, NULL, NULL};

        ok(db_stmt_table(conn, defs, 2, table, &err) == RS_OK && table[0] && table[1] &&
               table[0] != table[1] && table[2] == NULL,
           "db_stmt_table makes each statement of the table, and no more");
        ok(db_stmt_exec(table[0], &err, "") < 0 && db_failed_connection(conn),
           "a statement of the table runs on its db (no host answers: a connection failure)");
    }
    db_destroy(&conn);
    ok(conn == NULL, "db_destroy clears the pointer");
    {
        char hex[DB_HEX_SIZE(4)];
        db_text t = {0};

        is_int((long long)db_hex(hex, "a'\\\0", 4), 11, "db_hex: X, two digits a byte, quotes");
        is_str(hex, "X'61275c00'", "any bytes (a quote, a backslash, a NUL) become digits");
        db_text_str(&t, "SELECT ");
        db_text_int(&t, -42);
        db_text_str(&t, ", ");
        db_text_hex(&t, "k", 1);
        is_str(t.buf, "SELECT -42, X'6b'", "db_text: fixed SQL, numbers and hex literals in order");
        ok(t.len == strlen(t.buf) && !t.failed, "its length kept, nothing failed");
        db_text_free(&t);
        ok(t.buf == NULL && t.len == 0, "db_text_free empties it");
    }
    conf_destroy(&cf);
    db_library_end();
    return done_testing();
}
