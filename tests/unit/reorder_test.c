/* Unit test of reorder: the suggested point and the automatic order size, and
 * every call failing cleanly without a database (the flow is tested on the real
 * stack by tests/integration/reorder.py). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "reorder.h"
#include "tap.h"

static void
test_suggest(void)
{
    /* 60 a minute is 1 a second: 40 s of lead time sells 40, +50% is 60. */
    is_int(reorder_suggest(60, 40, 50), 60, "60/min x 40 s + 50% = 60");
    is_int(reorder_suggest(60, 40, 0), 40, "no margin: the lead time's demand, 40");
    is_int(reorder_suggest(1, 40, 50), 1, "a fraction of a unit rounds up to 1");
    is_int(reorder_suggest(0, 40, 50), 0, "nothing sells: 0");
    is_int(reorder_suggest(-3, 40, 50), 0, "a negative rate (never measured so): 0");
    is_int(reorder_suggest(1e12, 1e6, 50), 1000000, "capped at the column's bound");
    is_int(reorder_auto_size(60, 40, 10), 40, "automatic size: the lead time's demand, 40");
    is_int(reorder_auto_size(6, 40, 10), 10, "and at least reorder_quantity, 10");
    is_int(reorder_auto_size(0, 40, 10), 10, "nothing sells: reorder_quantity");
}

int
main(void)
{
    errbuf err = {""};
    struct reorder_line line;
    char *args[] = {"reorder_point=3"};
    conf *cf;
    db *conn = NULL;
    order *o = NULL;
    reorder *r = NULL;

    test_suggest();

    setenv("RESTOCK_DB_HOST", "localhost", 1);
    setenv("RESTOCK_DB_SOCKET", "/nonexistent/restock-reorder-test.sock", 1);
    setenv("RESTOCK_DB_TIMEOUT", "1", 1);
    unsetenv("RESTOCK_CONFIG");
    cf = conf_new(NULL, &err);
    if (!ok(cf != NULL, "configuration (%s)", err.msg))
        return done_testing();
    if (db_library_init(&err) != RS_OK)
        diag("%s", err.msg);
    conn = db_new(cf, 0);
    o = conn ? order_new(conn, &err) : NULL;
    r = o ? reorder_new(cf, conn, o, &err) : NULL;
    if (ok(r != NULL, "reorder_new (%s)", r ? "" : err.msg)) {
        ok(reorder_sweep(r, &err) == RS_ERR, "reorder_sweep without a database fails: %s", err.msg);
        ok(reorder_set(r, "CP-502101", 1, args, &line, &err) == RS_ERR,
           "reorder_set without a database fails: %s", err.msg);
        ok(reorder_set(r, "CP-502101", 0, args, &line, &err) == RS_ERR &&
               strstr(err.msg, "nothing to set") != NULL,
           "reorder_set with no key=value says so: %s", err.msg);
    }
    reorder_destroy(&r);
    ok(r == NULL, "reorder_destroy clears the pointer");
    order_destroy(&o);
    db_destroy(&conn);
    conf_destroy(&cf);
    db_library_end();
    return done_testing();
}
