/* Unit test of reorder: the suggested point and the automatic order size, and
 * every call failing cleanly without a database (the flow is tested on the real
 * stack by tests/integration/reorder.py). */
#include "config.h"

#include <math.h>
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

/* The demand's variance from a sample each second that alternates 2 and 0 units
 * (a burst, then the lull that follows: a mean of 1 a second): per sample it is
 * 1 a second, over spans of 2 seconds 0, and the mean is the same either way. */
static void
test_demand_span(void)
{
    struct reorder_demand each = {.mean = 1, .seconds = 100}, spans = each;

    reorder_demand_sample(&spans, 2, 1.0, 100, 0, 2.0);
    is_int(spans.var == 0 && spans.span_seconds == 1.0, 1,
           "one sample of a 2 s span: the variance waits for the span's end");
    reorder_demand_sample(&spans, 0, 1.0, 100, 0, 2.0);
    is_int(spans.span_seconds == 0 && spans.span_dev == 0, 1, "the span ends at 2 s, closed");
    for (int i = 2; i < 2000; i++) {
        reorder_demand_sample(&each, i % 2 ? 0 : 2, 1.0, 100, 0, 0);
        reorder_demand_sample(&spans, i % 2 ? 0 : 2, 1.0, 100, 0, 2.0);
    }
    ok(each.var > 0.9 && each.var < 1.1, "each sample: variance 1 a second (%.3f)", each.var);
    ok(spans.var < 0.05, "spans of 2 s: variance 0 (%.3f)", spans.var);
    ok(fabs(each.mean - spans.mean) < 1e-9 && fabs(each.mean - 1) < 0.02,
       "the mean is 1 either way (%.3f, %.3f)", each.mean, spans.mean);
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
    test_demand_span();

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
