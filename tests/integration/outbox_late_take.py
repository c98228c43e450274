"""Integration test of the outbox's late take (design.md §4.10, "Claiming"): an event
whose messages were delivered and whose claims ended, but whose take was cut off (a
crash or a power cut between the spool's put and the take's commit: found by
tests/fault/powercut.py), is taken by the next sweep, which sets its ad's status as the
take would have; nothing is sent again."""

import glob
import os

from harness import Stack, run_tests
from replenish_common import factory_requests, outbox, sell_out, sim_config

DONUT = "CP-502101"  # seeded with an advertisement and its manager


def ad_status(s):
    return s.sql_value("SELECT a.status FROM advertisement a JOIN product p ON p.ad_id = a.ad_id"
                       " WHERE p.sku = '%s'" % DONUT)


def mails(s):
    return len(glob.glob(os.path.join(s.info["MAIL_DIR"], "new", "*")))


def body(t):
    with Stack(t, env={"RESTOCK_SWEEP_INTERVAL": "1"}) as s:
        sim_config(s, silent=True)
        t.is_(sell_out(s, DONUT).status, 409, "the donut sells out")
        t.ok(s.wait_until(lambda: len(factory_requests(s, DONUT)) == 1 and mails(s) == 1
                          and outbox(s, DONUT)[0][2], timeout=30),
             "its order reached the factory, its ad pause email was sent, its event taken")
        event = outbox(s, DONUT)[0][0]
        s.wait_until(lambda: s.sql_value(
            "SELECT COUNT(*) FROM outbox_claim WHERE done_at IS NULL") == "0", timeout=30)
        paused = ad_status(s)
        # What a cut between the put and the take leaves: the messages delivered and
        # their claims ended, the event untaken, the ad as it was before the take.
        s.sql("UPDATE outbox SET taken_at = NULL WHERE event_id = UNHEX('%s')"
              % event.replace("-", ""))
        s.sql("UPDATE advertisement a JOIN product p ON p.ad_id = a.ad_id SET a.status = TRUE"
              " WHERE p.sku = '%s'" % DONUT)
        t.ok(s.wait_until(lambda: outbox(s, DONUT)[0][2], timeout=30),
             "the next sweep takes the event")
        t.ok("event=outbox_taken_late outbox_event=%s" % event in s.log("worker"),
             "and says it took it late", s.log("worker")[-1500:])
        t.is_(ad_status(s), paused, "the ad's status is set as the take sets it")
        t.is_((len(factory_requests(s, DONUT)), mails(s)), (1, 1),
              "nothing is sent again: one factory request, one email")


if __name__ == "__main__":
    run_tests(body)
