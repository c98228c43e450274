/* Unit test of watch: when a pass is due (watch_interval, a clock stepped back);
 * when a waiting message is warned of and the cause that makes it told once per
 * delay_warning period; and, over real spools, a corrupt file and a disk fault of
 * the sweep each told to operators once (an alert in the mail queue), and the
 * passes at watch_interval warning of the oldest waiting message once per period. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "watch.h"

static long
alerts_waiting(spool *mail)
{
    errbuf err = {{0}};

    return spool_count(mail, SPOOL_INCOMING, &err);
}

int
main(void)
{
    char cause[64], dir[] = "/tmp/watch_test.XXXXXX", path[4096];
    errbuf err = {{0}};
    conf *cf;
    spool *queues[2] = {NULL, NULL};
    alert *alerts;
    watch *w;
    time_t now = time(NULL);
    FILE *f;

    ok(watch_pass_due(1000, 0, 10), "the first turn is a pass");
    ok(!watch_pass_due(1009, 1000, 10), "not again before watch_interval");
    ok(watch_pass_due(1010, 1000, 10), "again once watch_interval has passed");
    ok(watch_pass_due(1001, 1000, 1), "watch_interval 1: every second");
    ok(watch_pass_due(990, 1000, 10), "a clock stepped back: a pass, not a wait of the step");

    ok(!watch_delay_cause("factory", 0, 5000, 900, cause, sizeof(cause)),
       "nothing waits: no warning");
    ok(!watch_delay_cause("factory", 4100, 5000, 900, cause, sizeof(cause)),
       "waiting exactly delay_warning: no warning yet");
    ok(watch_delay_cause("factory", 4099, 5000, 900, cause, sizeof(cause)),
       "waiting longer than delay_warning: warned");
    is_str(cause, "delay-factory-4099-1", "the cause names the queue, the message and the period");
    ok(watch_delay_cause("mail", 1000, 2799, 900, cause, sizeof(cause)), "still waiting: warned");
    is_str(cause, "delay-mail-1000-1", "in the same period: the same cause (told once)");
    ok(watch_delay_cause("mail", 1000, 2800, 900, cause, sizeof(cause)), "a period later");
    is_str(cause, "delay-mail-1000-2", "the next period: a new cause (told again)");

    ok(mkdtemp(dir) != NULL, "temporary spool folder");
    cf = conf_new("/dev/null", &err);
    ok(cf != NULL, "default configuration");
    queues[0] = spool_new(dir, "factory", &err);
    queues[1] = spool_new(dir, "mail", &err);
    ok(queues[0] != NULL && queues[1] != NULL, "two spools");
    alerts = alert_new(cf, queues[1]);
    w = watch_new(cf, alerts, queues, 2);
    ok(w != NULL, "a watch over them");

    /* A file no spool can read, found by the recovery: told once. */
    snprintf(path, sizeof(path), "%s/factory/incoming/broken", dir);
    f = fopen(path, "w");
    ok(f != NULL && fputs("not a spool message", f) >= 0 && fclose(f) == 0, "a corrupt file");
    {
        spool_recovery r = {0};
        ok(spool_recover(queues[0], &r, &err) == RS_OK && r.corrupt == 1,
           "the recovery moves it to corrupt/");
    }
    watch_turn(w, now);
    is_int(alerts_waiting(queues[1]), 1, "the next turn queues one alert for it");
    watch_turn(w, now + 1);
    is_int(alerts_waiting(queues[1]), 1, "and only one");

    /* A disk fault of the sweep: told once however many sweeps fail. */
    watch_spool_fault(w, "factory", "No space left on device");
    watch_spool_fault(w, "factory", "No space left on device");
    is_int(alerts_waiting(queues[1]), 2, "a spool fault: one alert, not one per failed sweep");
    watch_spool_fault(w, NULL, NULL);
    watch_spool_fault(w, NULL, NULL);
    is_int(alerts_waiting(queues[1]), 2, "cleared: nothing more told");

    /* A message waiting longer than delay_warning (900 s): the next pass warns. */
    ok(spool_put(queues[0], "order-1", NULL, "{}", 2, &err) == 1, "an order waits");
    watch_turn(w, now + 2);
    is_int(alerts_waiting(queues[1]), 2, "not a pass yet (watch_interval 10): no warning");
    watch_turn(w, now + 100);
    is_int(alerts_waiting(queues[1]), 2, "a pass, the order waiting under delay_warning: none");
    watch_turn(w, now + 1000);
    is_int(alerts_waiting(queues[1]), 3, "a pass, the order waiting over delay_warning: warned");
    watch_turn(w, now + 1100);
    is_int(alerts_waiting(queues[1]), 3, "the next pass, in the same period: not again");
    watch_turn(w, now + 1900);
    is_int(alerts_waiting(queues[1]), 4, "a pass a period later: warned again");

    watch_destroy(&w);
    ok(w == NULL, "watch_destroy clears the pointer");
    alert_destroy(&alerts);
    spool_destroy(&queues[0]);
    spool_destroy(&queues[1]);
    conf_destroy(&cf);
    {
        char command[4200];
        snprintf(command, sizeof(command), "rm -rf '%s'", dir);
        ok(system(command) == 0, "temporary folder removed");
    }
    return done_testing();
}
