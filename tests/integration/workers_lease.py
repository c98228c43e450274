"""Integration test of several workers on one database (issue 14): outbox work is
claimed by one worker at a time (table outbox_claim, a lease with a fencing epoch).

- Two workers, 30 products selling out: each order is requested from the factory
  once and each email is received once, the work shared between both spools.
- kill -9 of the worker holding claims (orders waiting on a failing factory) and
  rm -rf of its spool: the other worker takes every claim over within about
  lease_time, re-derives the messages from the database and sends them; 0 orders
  lost, each restocked once (the duplicate factory requests are counted).
- A worker SIGSTOP'd past its lease, taken over, then SIGCONT'd: it sends nothing
  more (the factory's and the SMTP sink's counts), its log says lease_lost.
- A message dead on its worker and redriven with restockctl is delivered again (its
  claim opens again); restockctl status works with claims.
- Overdue callbacks: one callback_missing alert per order across both workers.
Figures (duplicates, takeover time) are printed as TAP comments."""

import os
import shutil
import signal
import time
import uuid

from harness import Stack, run_tests
from inbox import AD_MANAGER, inbox
from replenish_common import (REORDER, factory_callbacks, factory_requests, orders, sim_config,
                              sim_reset)

LEASE = 4
ENV = {"RESTOCK_FACTORY_ARGS": "--delay 0.5", "RESTOCK_SWEEP_INTERVAL": "1",
       "RESTOCK_BACKOFF_MIN": "1", "RESTOCK_BACKOFF_MAX": "2", "RESTOCK_LEASE_TIME": str(LEASE),
       "RESTOCK_ATTEMPT_TIMEOUT": "2",
       "RESTOCK_LOG_LEVEL": "debug"}  # the workers log each sweep


def add_shop(s, n, prefix, stock=2):
    """n products, each with its own factory and an ad whose manager is AD_MANAGER."""
    skus = []
    for i in range(n):
        sku = "%s-%03d" % (prefix, i)
        fid, pid, aid = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
        s.sql("INSERT INTO factory (factory_id, identifier, name, api) VALUES"
              " (UNHEX('%s'), 'FF-%s', '%s factory', NULL)" % (fid, sku, sku))
        s.sql("INSERT INTO advertisement (ad_id, status, manager_email) VALUES"
              " (UNHEX('%s'), TRUE, '%s')" % (aid, AD_MANAGER))
        s.sql("INSERT INTO product (product_id, sku, name, price, stock, factory_id,"
              " reorder_quantity, ad_id) VALUES (UNHEX('%s'), '%s', '%s donut', 1000, %d,"
              " UNHEX('%s'), %d, UNHEX('%s'))" % (pid, sku, sku, stock, fid, REORDER, aid))
        skus.append(sku)
    return skus


def sell_all(t, s, skus, what):
    answers = [s.request("POST", "/checkout", {"sku": sku, "quantity": s.stock(sku)}).status
               for sku in skus]
    t.is_(answers, [200] * len(skus), "%s: %d products sold out" % (what, len(skus)))


def order_ids(s, skus):
    return {sku: orders(s, sku)[-1]["id"] for sku in skus if orders(s, sku)}


def order_of_url(url):
    return str(url).split("/callbacks/factory/")[-1].split("?")[0]


def accepted(s):
    """Order id -> how many requests the factory accepted (each is called back)."""
    counts = {}
    for c in factory_callbacks(s):
        order = order_of_url(c["url"])
        counts[order] = counts.get(order, 0) + 1
    return counts


def requested(s):
    """Order id -> how many requests the factory received (accepted or not)."""
    counts = {}
    for r in factory_requests(s):
        url = r["body"].get("CallbackUrl", "") if isinstance(r["body"], dict) else ""
        order = order_of_url(url)
        counts[order] = counts.get(order, 0) + 1
    return counts


def all_fulfilled(s, skus):
    return all(orders(s, sku) and orders(s, sku)[-1]["status"] == "fulfilled" for sku in skus)


def claims(s, owner_like):
    return int(s.sql_value("SELECT COUNT(*) FROM outbox_claim WHERE done_at IS NULL"
                           " AND owner LIKE '%%%s'" % owner_like))


def waiting(spool_dir, queues=("factory", "mail", "callback")):
    """Messages of a worker's spool still to be delivered (incoming, active, deferred)."""
    return sum(len(os.listdir(os.path.join(spool_dir, q, state)))
               for q in queues for state in ("incoming", "active", "deferred")
               if os.path.isdir(os.path.join(spool_dir, q, state)))


def delivered(s, name):
    return s.log(name).count("event=delivered ")


def shared(t, s, w2):
    what = "two workers"
    skus = add_shop(s, 30, "LS")
    sell_all(t, s, skus, what)
    t.ok(s.wait_until(lambda: all_fulfilled(s, skus), timeout=120),
         "%s: every order sent and fulfilled" % what)
    ids = order_ids(s, skus)
    t.is_(len(set(ids.values())), 30, "%s: one order per product" % what)
    got = accepted(s)
    t.ok(sorted(got.get(i, 0) for i in ids.values()) == [1] * 30,
         "%s: each order requested from the factory exactly once" % what, got)
    t.is_([s.stock(sku) for sku in skus], [REORDER] * 30, "%s: each restocked once" % what)
    s.wait_until(lambda: len(inbox(s, kind="ad_resume")) >= 30, timeout=60)
    mails = inbox(s, kind="ad_pause") + inbox(s, kind="ad_resume")
    ids_of = [m["Message-ID"] for m in mails]
    t.is_((len(inbox(s, kind="ad_pause")), len(inbox(s, kind="ad_resume"))), (30, 30),
          "%s: 30 pause and 30 resume emails" % what)
    t.is_(len(set(ids_of)), len(ids_of), "%s: each email received once (by Message-ID)" % what)
    t.diag("%s, sold out by checkouts: deliveries of worker %d, worker2 %d (the responders "
           "ring the first)" % (what, delivered(s, "worker"), delivered(s, "worker2")))

    # Products found at their point by the workers' own sweeps (no checkout, no
    # doorbell): both sweep every second and race for the same events.
    what = "two sweeps racing"
    before = (delivered(s, "worker"), delivered(s, "worker2"))
    skus = add_shop(s, 20, "LZ", stock=0)
    t.ok(s.wait_until(lambda: all_fulfilled(s, skus), timeout=120),
         "%s: every order sent and fulfilled" % what)
    ids = order_ids(s, skus)
    got = accepted(s)
    t.ok(len(set(ids.values())) == 20 and
         sorted(got.get(i, 0) for i in ids.values()) == [1] * 20,
         "%s: one order per product, each requested from the factory exactly once" % what, got)
    t.is_([s.stock(sku) for sku in skus], [REORDER] * 20, "%s: each restocked once" % what)
    one, two = delivered(s, "worker") - before[0], delivered(s, "worker2") - before[1]
    t.diag("%s: deliveries of worker %d, worker2 %d" % (what, one, two))
    t.is_(int(s.sql_value("SELECT COUNT(*) FROM outbox_claim WHERE done_at IS NULL")), 0,
          "%s: every claim is done" % what)
    t.ok(s.wait_until(lambda: len(inbox(s, kind="ad_resume")) >= 50 and
                      len(inbox(s, kind="ad_pause")) >= 50, timeout=60),
         "%s: their pause and resume emails" % what)
    mails = inbox(s, kind="ad_pause") + inbox(s, kind="ad_resume")
    t.is_(len(set(m["Message-ID"] for m in mails)), len(mails),
          "%s: each email received once (by Message-ID)" % what)


def dead_host(t, s, w2):
    """kill -9 of the stack's worker (rung by the responders: it claims first) and
    rm -rf of its spool while it holds the orders of a failing factory."""
    what = "worker killed, spool removed"
    sim_config(s, fail_rate=1.0)
    skus = add_shop(s, 10, "LK")
    sell_all(t, s, skus, what)
    t.ok(s.wait_until(lambda: len(order_ids(s, skus)) == 10 and claims(s, "/spool") >= 1 and
                      s.log("worker").count("event=deferred queue=factory") >= 1, timeout=30),
         "%s: the stack's worker holds claims of orders it cannot send yet" % what,
         claims(s, "/spool"))
    held = claims(s, "/spool")
    s.kill("worker")
    shutil.rmtree(s.info["SPOOL_DIR"])
    sim_reset(s)
    sim_config(s, fail_rate=0.0)
    killed, swept = time.time(), s.sweep_passes("worker2")
    t.ok(s.wait_until(lambda: all_fulfilled(s, skus), timeout=LEASE + 60),
         "%s: the other worker sent every order (0 lost)" % what,
         [orders(s, sku)[-1]["status"] for sku in skus])
    # Counted in worker2's sweeps (one a second at most; a slow machine makes fewer),
    # not in seconds: a lease read on the wrong clock would take hours of them.
    sweeps = s.sweep_passes("worker2") - swept
    t.diag("%s: %d claims held by the dead worker; all 10 orders fulfilled %.1f s, %d sweeps"
           " of worker2 after the kill (lease_time %d s)"
           % (what, held, time.time() - killed, sweeps, LEASE))
    t.ok(sweeps <= LEASE + 30, "%s: within about lease_time (at most lease_time + 30 sweeps"
         " of sweep_interval 1 s)" % what, sweeps)
    ids = order_ids(s, skus)
    got = accepted(s)
    dups = sum(max(0, got.get(i, 0) - 1) for i in ids.values())
    t.diag("%s: duplicate factory requests accepted: %d" % (what, dups))
    t.ok(all(got.get(i, 0) >= 1 for i in ids.values()), "%s: each order reached the factory" % what)
    t.is_([s.stock(sku) for sku in skus], [REORDER] * 10, "%s: each restocked once" % what)
    t.ok("event=outbox_taken_over" in s.log("worker2"),
         "%s: worker2 logged the takeover" % what)
    s.start("worker")  # a new, empty spool
    return skus


def paused(t, s, w2):
    """SIGSTOP of worker2 while it holds claims; the stack's worker takes them over;
    SIGCONT: worker2 sends nothing more."""
    what = "worker paused past its lease"
    # Only worker2 sweeps for a moment: it claims the new work.
    s.stop("worker")
    sim_config(s, fail_rate=1.0)
    pauses = len(inbox(s, kind="ad_pause"))
    skus = add_shop(s, 5, "LP")
    sell_all(t, s, skus, what)
    t.ok(s.wait_until(lambda: claims(s, "spool-worker2") >= 5, timeout=30),
         "%s: worker2 holds the claims of the 5 orders" % what, claims(s, "spool-worker2"))
    s.wait_until(lambda: s.log("worker2").count("event=deferred queue=factory") >= 5, timeout=30)
    # Its emails of the sell-outs sent, none in flight: a delivery the pause caught
    # after its claim's check would still be sent when it resumes (at least once).
    s.wait_until(lambda: len(inbox(s, kind="ad_pause")) >= pauses + 5 and
                 waiting(w2["spool_dir"], queues=("mail",)) == 0, timeout=30)
    s.signal("worker2", signal.SIGSTOP)
    sent_before = delivered(s, "worker2")
    resumed = len(inbox(s, kind="ad_resume"))
    sim_reset(s)
    sim_config(s, fail_rate=0.0)
    s.start("worker")
    t.ok(s.wait_until(lambda: all_fulfilled(s, skus), timeout=LEASE + 60),
         "%s: the other worker took the orders over and sent them" % what)
    s.wait_until(lambda: len(inbox(s, kind="ad_resume")) >= resumed + 5, timeout=60)
    requests_then, mails_then = requested(s), len(inbox(s))
    s.signal("worker2", signal.SIGCONT)
    # Its deferred messages come due within backoff_max: each is checked, and lost.
    t.ok(s.wait_until(lambda: s.log("worker2").count("event=lease_lost") >= 5, timeout=30),
         "%s: resumed, worker2 logs lease_lost for what it held" % what,
         s.log("worker2").count("event=lease_lost"))
    # Once nothing waits in worker2's spool, nothing more can leave it.
    t.ok(s.wait_until(lambda: waiting(w2["spool_dir"]) == 0, timeout=30),
         "%s: worker2's spool holds nothing more to deliver" % what, waiting(w2["spool_dir"]))
    t.is_(delivered(s, "worker2"), sent_before, "%s: worker2 delivered nothing more" % what)
    t.is_(requested(s), requests_then, "%s: the factory received nothing more" % what)
    t.is_(len(inbox(s)), mails_then, "%s: no email more" % what)
    ids = order_ids(s, skus)
    got = accepted(s)
    t.ok(sorted(got.get(i, 0) for i in ids.values()) == [1] * 5,
         "%s: each order requested once after the takeover" % what, got)
    t.is_([s.stock(sku) for sku in skus], [REORDER] * 5, "%s: each restocked once" % what)
    line = next((ln for ln in s.log("worker2").splitlines() if "event=lease_lost" in ln), "")
    t.ok("outbox_event=" in line and "epoch=1" in line and "epoch 2" in line,
         "%s: lease_lost names the event, its epoch and the claim's new epoch" % what, line)


def redriven(t, s, w2):
    """A factory message dead on its worker (the factory refused it), redriven: its
    claim opens again and it is delivered."""
    what = "redrive"
    s.stop_worker("worker2")  # the message dies in the stack's spool, where restockctl looks
    sim_config(s, answer_status=400, answer_body_hex="6e6f")
    sku = add_shop(s, 1, "LR")[0]
    sell_all(t, s, [sku], what)
    t.ok(s.wait_until(lambda: orders(s, sku) and orders(s, sku)[-1]["status"] == "failed",
                      timeout=30), "%s: refused, the order failed" % what)
    order = orders(s, sku)[-1]["id"]
    claim = s.sql("SELECT HEX(event_id), epoch, done_at IS NOT NULL FROM outbox_claim c"
                  " WHERE c.queue = 'factory' AND c.event_id = (SELECT event_id FROM outbox"
                  " WHERE order_id = UNHEX('%s') AND kind = 'stock_empty')" % order.replace("-", ""))
    t.ok(claim and claim[0][2] == "1", "%s: its claim is done (the delivery ended)" % what, claim)
    event = str(uuid.UUID(claim[0][0])) if claim else "?"
    sim_config(s, answer_status=0)
    p = s.restockctl("status")
    t.ok(p.returncode == 0 and "dead" in p.stdout, "%s: restockctl status works" % what,
         p.stdout + p.stderr)
    p = s.restockctl("dlq", "redrive", event)
    t.ok(p.returncode == 0, "%s: restockctl dlq redrive %s" % (what, event), p.stderr)
    t.ok(s.wait_until(lambda: orders(s, sku)[-1]["status"] == "fulfilled", timeout=30),
         "%s: the redriven message is delivered, the order fulfilled" % what, orders(s, sku))
    t.is_(s.stock(sku), REORDER, "%s: restocked once" % what)


def overdue(t, s, w2):
    """Overdue callbacks with two workers: each order's callback_missing alert is told
    once (the UPDATE of overdue_reported_at is the claim), by one of them."""
    what = "overdue callbacks"
    late = {"RESTOCK_CALLBACK_TIMEOUT": "2", "RESTOCK_WATCH_INTERVAL": "1",
            "RESTOCK_LOG_LEVEL": "debug"}
    s.stop("worker")
    s.start("worker", env=late)
    s.start_worker("worker2", env=late)
    sim_config(s, silent=True)
    skus = add_shop(s, 3, "LO")
    sell_all(t, s, skus, what)
    t.ok(s.wait_until(lambda: all(orders(s, sku) and orders(s, sku)[-1]["status"] == "sent"
                                  for sku in skus), timeout=30),
         "%s: the orders are sent; the factory stays silent" % what)
    ids = list(order_ids(s, skus).values())

    def told():
        return [m for m in inbox(s, kind="callback_missing") if any(i in m.subject for i in ids)]
    t.ok(s.wait_until(lambda: len(told()) >= 3, timeout=40),
         "%s: operators get the callback_missing emails" % what, len(told()))
    # More watch passes of both workers: a second alert of an order would be queued.
    for name in ("worker", "worker2"):
        t.ok(s.wait_watch_passes(s.watch_passes(name), 2, name),
             "%s: %s's watch passes again" % (what, name))
    t.ok(s.wait_until(lambda: waiting(s.info["SPOOL_DIR"], ["mail"]) +
                      waiting(w2["spool_dir"], ["mail"]) == 0),
         "%s: both workers' mail queues have sent everything" % what)
    t.is_(sorted(i for m in told() for i in ids if i in m.subject), sorted(ids),
          "%s: one email per order, from one worker" % what)
    raised = [ln for name in ("worker", "worker2") for ln in s.log(name).splitlines()
              if "event=callback_missing" in ln and any(i in ln for i in ids)]
    t.is_(len(raised), 3, "%s: raised once per order across both workers" % what)
    sim_config(s, silent=False)


def body(t):
    with Stack(t, env=ENV) as s:
        w2 = s.start_worker("worker2")
        t.ok(os.path.isdir(w2["spool_dir"]), "a second worker with its own spool")
        shared(t, s, w2)
        dead_host(t, s, w2)
        paused(t, s, w2)
        redriven(t, s, w2)
        overdue(t, s, w2)


if __name__ == "__main__":  # lease_safety.py imports its helpers
    run_tests(body)
