/* Unit test of order without a database: every call refuses what is not an order
 * id before it asks, quoting it, and a database that does not answer is an
 * error (try again), never a decision; a claim then refuses nothing. What the
 * row goes through runs in the integration tests on the real stack. */
#include "config.h"

#include <stdlib.h>

#include "order.h"
#include "tap.h"

#define ORDER "5f0c8d9e-1a2b-4c3d-8e4f-000000000042"
#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void
count_fn(void *arg, const char *status, long long count)
{
    (*(int *)arg)++;
}

static void
line_fn(void *arg, const struct order_line *line)
{
    (*(int *)arg)++;
}

static void
late_fn(void *arg, const struct order_overdue *late)
{
    (*(int *)arg)++;
}

/* Asserts that rc is RS_ERR and err quotes the bad id. */
static void
refused(int rc, const errbuf *err, const char *name)
{
    if (!ok(rc == RS_ERR && strstr(err->msg, "not-an-id") != NULL &&
                strstr(err->msg, "is not an order id") != NULL,
            "%s: a non-id is refused", name))
        diag("rc %d, error: %s", rc, err->msg);
}

static void
test_not_ids(order *o)
{
    struct order_view view;
    struct order_fulfil_outcome fulfilled;
    enum order_status status;
    errbuf err = {""};

    refused(order_get(o, "not-an-id", &view, &err), &err, "order_get");
    ok(order_claim(o, "not-an-id", TOKEN, &status, &err) == ORDER_REFUSED &&
           strstr(err.msg, "not-an-id") != NULL,
       "order_claim: a non-id is never sent: %s", err.msg);
    refused(order_sent(o, "not-an-id", NULL, &err), &err, "order_sent");
    refused(order_attempt_failed(o, "not-an-id", "why", &err), &err, "order_attempt_failed");
    ok(order_failed(o, "not-an-id", "why", &err) == RS_ERR && strstr(err.msg, "not-an-id") != NULL,
       "marking a non-id failed is refused: %s", err.msg);
    refused(order_reopen(o, "not-an-id", &err), &err, "order_reopen");
    refused(order_fulfil(o, "not-an-id", 1, 0, &fulfilled, &err), &err, "order_fulfil");
    refused(order_overdue_reported(o, "not-an-id", &err), &err, "order_overdue_reported");
    ok(order_get(o, NULL, &view, &err) == RS_ERR && strstr(err.msg, "is not an order id") != NULL,
       "order_get of NULL is refused: %s", err.msg);
}

static void
test_no_database(order *o, db *conn)
{
    struct order_open_outcome opened;
    struct order_fulfil_outcome fulfilled;
    struct order_view view;
    enum order_status status;
    errbuf err = {""};
    int calls = 0;

    ok(order_refused(o, "CP-502101", 1, &opened, &err) == RS_ERR && db_failed_connection(conn),
       "order_refused without a database: an error of the connection (%s)", err.msg);
    ok(order_reorder(o, "CP-502101", &opened, &err) == RS_ERR,
       "order_reorder without a database fails: %s", err.msg);
    ok(order_get(o, ORDER, &view, &err) == RS_ERR, "order_get without a database fails");
    is_int(order_claim(o, ORDER, TOKEN, &status, &err), RS_ERR,
           "order_claim without a database: try again, not refused");
    ok(order_sent(o, ORDER, "ref", &err) == RS_ERR, "order_sent without a database fails");
    ok(order_attempt_failed(o, ORDER, "why", &err) == RS_ERR,
       "order_attempt_failed without a database fails");
    ok(order_failed(o, ORDER, "why", &err) == RS_ERR && strstr(err.msg, ORDER) != NULL,
       "order_failed without a database fails, naming the order: %s", err.msg);
    ok(order_reopen(o, ORDER, &err) == RS_ERR, "reopening without a database fails: %s", err.msg);
    ok(order_fulfil(o, ORDER, 10, 0, &fulfilled, &err) == RS_ERR && !fulfilled.repeated,
       "order_fulfil without a database fails");
    ok(order_overdue_reported(o, ORDER, &err) == RS_ERR,
       "order_overdue_reported without a database fails");
    ok(order_count_by_status(o, count_fn, &calls, &err) == RS_ERR && calls == 0,
       "order_count_by_status without a database fails, calling nothing");
    ok(order_each(o, 10, line_fn, &calls, &err) == RS_ERR && calls == 0,
       "order_each without a database fails, calling nothing");
    ok(order_each_overdue(o, 60, late_fn, &calls, &err) == RS_ERR && calls == 0,
       "order_each_overdue without a database fails, calling nothing");
}

int
main(void)
{
    errbuf err = {""};
    conf *cf;
    db *conn = NULL;
    order *o = NULL;

    is_str(order_status_name(ORDER_OPEN), "open", "status open");
    is_str(order_status_name(ORDER_SENT), "sent", "status sent");
    is_str(order_status_name(ORDER_FULFILLED), "fulfilled", "status fulfilled");
    is_str(order_status_name(ORDER_FAILED), "failed", "status failed");
    for (int i = 0; i < ORDER_NSTATUS; i++)
        is_int(order_status_parse(order_status_name((enum order_status)i)), i,
               "a status's name is read back as that status");
    is_int(order_status_parse("cancelled"), -1, "another word is no status");
    is_int(order_status_parse(NULL), -1, "nor is none");

    /* No database listens there: connecting fails at once. */
    setenv("RESTOCK_DB_HOST", "localhost", 1);
    setenv("RESTOCK_DB_SOCKET", "/nonexistent/restock-order-test.sock", 1);
    setenv("RESTOCK_DB_TIMEOUT", "1", 1);
    unsetenv("RESTOCK_CONFIG");
    cf = conf_new(NULL, &err);
    if (!ok(cf != NULL, "configuration (%s)", err.msg))
        return done_testing();
    if (db_library_init(&err) != RS_OK)
        diag("%s", err.msg);
    conn = db_new(cf, 0);
    o = conn ? order_new(conn, &err) : NULL;
    if (ok(o != NULL, "order_new (%s)", o ? "" : err.msg)) {
        test_not_ids(o);
        test_no_database(o, conn);
    }
    order_destroy(&o);
    ok(o == NULL, "order_destroy clears the pointer");
    order_destroy(&o);
    db_destroy(&conn);
    conf_destroy(&cf);
    db_library_end();
    return done_testing();
}
