/* Unit test of metrics: counting into the shared file, summing the live files,
 * removing those of dead processes, and the exposition text. */
#include "config.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics.h"
#include "tap.h"

static char *
render(const struct metrics_totals *t)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    metrics_write(t, out);
    fclose(out);
    return text;
}

static int
has_line(const char *text, const char *line)
{
    size_t n = strlen(line);

    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

int
main(void)
{
    char dir[] = "/tmp/metrics_test.XXXXXX", sub[64], path[128];
    struct metrics_totals t;
    errbuf err = {{0}};
    metrics *m;
    char *text;
    pid_t child;
    int status;

    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(sub, sizeof(sub), "%s/m", dir);

    metrics_count(METRICS_CHECKOUT_SOLD); /* no file yet: nothing, no crash */
    m = metrics_new(sub, "restock-sales", &err);
    ok(m != NULL, "metrics_new makes the folder and the file (%s)", err.msg);
    snprintf(path, sizeof(path), "%s/restock-sales.%ld", sub, (long)getpid());
    ok(access(path, F_OK) == 0, "the file is named <program>.<pid>");

    metrics_count(METRICS_CHECKOUT_SOLD);
    metrics_count(METRICS_CHECKOUT_SOLD);
    metrics_add(METRICS_CHECKOUT_REFUSED, 5);
    metrics_factory_request(201, 0.02);
    metrics_factory_request(503, 3);
    metrics_factory_request(418, 0.001);
    metrics_factory_request(0, 20);

    /* A second process of another program counts too, and a third dies without
     * cleaning up: its file is removed and not summed. */
    child = fork();
    if (child == 0) {
        errbuf e = {{0}};
        metrics *c = metrics_new(sub, "restock-callback", &e);
        metrics_count(METRICS_CALLBACK_OK);
        metrics_count(METRICS_CHECKOUT_SOLD);
        _exit(c != NULL ? 0 : 1); /* no metrics_destroy: as a crash */
    }
    waitpid(child, &status, 0);
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a child made its own file");

    ok(metrics_collect(sub, &t, &err) == RS_OK, "collect");
    is_int(t.processes, 1, "the dead child's file is not summed");
    snprintf(path, sizeof(path), "%s/restock-callback.%ld", sub, (long)child);
    ok(access(path, F_OK) != 0, "the dead child's file is removed");
    is_int(t.slots[METRICS_CHECKOUT_SOLD], 2, "two sold");
    is_int(t.slots[METRICS_CHECKOUT_REFUSED], 5, "five refused");
    is_int(t.slots[METRICS_CALLBACK_OK], 0, "the dead child's callback is gone with it");
    is_int(t.up[0], 1, "restock-sales is up");
    is_int(t.up[1], 0, "restock-callback is down");
    is_int(t.slots[METRICS_FACTORY_LATENCY_COUNT], 4, "four factory requests timed");

    text = render(&t);
    ok(has_line(text, "restock_checkouts_total{result=\"sold\"} 2"), "sold in the text");
    ok(has_line(text, "restock_checkouts_total{result=\"unavailable\"} 0"),
       "results never seen are 0, not missing");
    ok(has_line(text, "# TYPE restock_checkouts_total counter"), "TYPE line");
    ok(has_line(text, "restock_factory_requests_total{code=\"201\"} 1"), "code 201");
    ok(has_line(text, "restock_factory_requests_total{code=\"503\"} 1"), "code 503");
    ok(has_line(text, "restock_factory_requests_total{code=\"4xx\"} 1"), "418 counts as 4xx");
    ok(has_line(text, "restock_factory_requests_total{code=\"none\"} 1"), "no answer");
    ok(has_line(text, "restock_factory_request_duration_seconds_bucket{le=\"0.005\"} 1"),
       "bucket 0.005");
    ok(has_line(text, "restock_factory_request_duration_seconds_bucket{le=\"0.025\"} 2"),
       "buckets are cumulative");
    ok(has_line(text, "restock_factory_request_duration_seconds_bucket{le=\"5\"} 3"), "bucket 5");
    ok(has_line(text, "restock_factory_request_duration_seconds_bucket{le=\"+Inf\"} 4"),
       "+Inf holds every request");
    ok(has_line(text, "restock_factory_request_duration_seconds_sum 23.021000"), "sum");
    ok(has_line(text, "restock_up{program=\"restock-callback\"} 0"), "up 0");
    ok(has_line(text, "restock_build_info{version=\"" PACKAGE_VERSION "\"} 1"), "build info");
    free(text);

    metrics_destroy(&m);
    ok(m == NULL, "destroy clears the pointer");
    snprintf(path, sizeof(path), "%s/restock-sales.%ld", sub, (long)getpid());
    ok(access(path, F_OK) != 0, "destroy removes the file");
    metrics_count(METRICS_CHECKOUT_SOLD); /* after destroy: nothing */
    ok(metrics_collect(sub, &t, &err) == RS_OK && t.processes == 0, "nothing left to sum");

    /* A file that is not a metrics file of this layout is skipped. */
    snprintf(path, sizeof(path), "%s/restock-sales.1", sub);
    FILE *junk = fopen(path, "w");
    fputs("not metrics", junk);
    fclose(junk);
    ok(metrics_collect(sub, &t, &err) == RS_OK && t.processes == 0 && t.skipped == 1,
       "a foreign file is skipped");
    unlink(path);
    ok(metrics_collect("/nonexistent/metrics", &t, &err) == RS_ERR, "a missing folder is an error");
    rmdir(sub);
    rmdir(dir);
    return done_testing();
}
