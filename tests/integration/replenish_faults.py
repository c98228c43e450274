"""Integration test of a factory that fails: answering 500, too slow (timing out) or
down. The order's message is retried with backoff (seen in its deferred/ file: attempts,
due time, last error), goes to dead/ after max_attempts with the reason, the order is
marked failed, operators get a dead_letter email, `restockctl dlq list` shows it; with
the factory back, `restockctl dlq redrive ID` (or --all) delivers it once and the
callback restores the stock once. A database that goes away while an order waits
delays it; it goes out, once, when the database is back."""

import time

from harness import Stack, run_tests
from replenish_common import (REORDER, add_products, alerts, factory_callbacks,
                              factory_requests, header, orders, outbox, received_mail, sell_out,
                              sim_config, spool_find, spool_message)

MAX_ATTEMPTS = 3
ENV = {"RESTOCK_FACTORY_ARGS": "--delay 0.3", "RESTOCK_SWEEP_INTERVAL": "1",
       "RESTOCK_BACKOFF_MIN": "1", "RESTOCK_BACKOFF_MAX": "2",
       "RESTOCK_MAX_ATTEMPTS": str(MAX_ATTEMPTS), "RESTOCK_ATTEMPT_TIMEOUT": "1"}


def deferred_then_dead(t, s, sku, what, error_says):
    """Sells sku out while the factory fails; follows its message to dead/. Returns the
    message id (the outbox event's id)."""
    r = sell_out(s, sku)
    t.is_(r.status, 409, "%s: %s sold out" % (what, sku))
    event = s.wait_until(lambda: outbox(s, sku, "stock_empty"))[-1][0]
    order = orders(s, sku)[-1]["id"]

    t.ok(s.wait_until(lambda: "deferred" in spool_find(s, "factory", event), timeout=30,
                      interval=0.02),
         "%s: after the first failure the message is in deferred/" % what,
         spool_find(s, "factory", event))
    got = spool_message(s, "factory", "deferred", event)
    h = got[0] if got else {}
    created = float(h.get("created", "0").split()[0])
    due = int(h.get("due", "0").split()[0])
    t.is_(h.get("attempts"), "1", "%s: deferred/ file says attempts: 1" % what)
    t.ok(created < due <= time.time() + 3,
         "%s: its due time is after its creation, within the backoff" % what, h)
    t.ok(error_says in h.get("last-error", ""),
         "%s: its last-error says %r" % (what, error_says), h.get("last-error"))

    t.ok(s.wait_until(lambda: spool_find(s, "factory", event) == ["dead"], timeout=60),
         "%s: after %d attempts the message is in dead/" % (what, MAX_ATTEMPTS),
         spool_find(s, "factory", event))
    got = spool_message(s, "factory", "dead", event)
    h = got[0] if got else {}
    t.is_(h.get("attempts"), str(MAX_ATTEMPTS), "%s: dead/ file says attempts: %d"
          % (what, MAX_ATTEMPTS))
    t.ok("max_attempts (%d)" % MAX_ATTEMPTS in h.get("death-reason", "") and h.get("died-at"),
         "%s: it records why and when it died" % what, h)
    t.ok(error_says in h.get("last-error", ""), "%s: and the last error" % what, h)

    t.ok(s.wait_until(lambda: orders(s, sku)[-1]["status"] == "failed"),
         "%s: the order is failed" % what, orders(s, sku))
    t.is_(orders(s, sku)[-1]["attempts"], MAX_ATTEMPTS,
          "%s: the order counts %d attempts" % (what, MAX_ATTEMPTS))

    p = s.restockctl("dlq", "list")
    line = [ln for ln in p.stdout.splitlines() if event in ln]
    t.ok(p.returncode == 0 and line and "factory" in line[0] and "max_attempts" in line[0],
         "%s: restockctl dlq list shows the message with its reason" % what, p.stdout + p.stderr)
    p = s.restockctl("dlq", "show", event)
    t.ok(p.returncode == 0 and "state:        dead" in p.stdout and order in p.stdout and
         "(hidden)" in p.stdout, "%s: dlq show tells its state and order, token hidden" % what,
         p.stdout + p.stderr)

    mine = [a for a in alerts(s, "dead_letter") if a[2]["vars"].get("message_id") == event]
    t.is_(len(mine), 1, "%s: one dead_letter alert queued for operators" % what)
    t.ok(s.wait_until(lambda: [m for m in received_mail(s)
                               if "ops@donut-states.example" in m[0] and "처리 실패" in m[1]
                               and sku in m[2]], timeout=30),
         "%s: the operators' mailbox got it, naming %s" % (what, sku))

    r = s.request("POST", "/checkout", {"sku": sku, "quantity": 1})
    t.is_(r.status, 409, "%s: checkouts still answer 409" % what)
    t.is_(len(orders(s, sku)), 1, "%s: and open no second order while it is failed" % what)
    return event, order


def redriven(t, s, sku, event, order, what, redrive, factory_sent_before):
    p = s.restockctl("dlq", "redrive", redrive)
    t.ok(p.returncode == 0 and ("redriven factory/%s" % event) in p.stdout,
         "%s: restockctl dlq redrive %s succeeds" % (what, redrive), p.stdout + p.stderr)
    t.ok(s.wait_until(lambda: orders(s, sku)[-1]["status"] == "fulfilled", timeout=30),
         "%s: the redriven order is delivered and fulfilled" % what, orders(s, sku))
    t.ok(s.wait_until(lambda: spool_find(s, "factory", event) == ["done"]),
         "%s: the message is done" % what, spool_find(s, "factory", event))
    got = spool_message(s, "factory", "done", event)
    t.ok(got and got[0].get("history"), "%s: its file keeps the history of its death" % what,
         got and got[0])
    reqs = factory_requests(s, sku)[factory_sent_before:]
    t.is_(len(reqs), 1, "%s: the factory received it once after the redrive" % what)
    cbs = factory_callbacks(s, order)
    t.is_([c["status"] for c in cbs], [200], "%s: one callback, answered 200" % what)
    t.is_(s.stock(sku), REORDER, "%s: the stock is restored once: %d" % (what, REORDER))
    t.is_(orders(s, sku)[-1]["delivered"], REORDER, "%s: delivered %d" % (what, REORDER))
    t.is_(len(orders(s, sku)), 1, "%s: still one order" % what)


def factory_fails_twice(t, s, sku):
    what = "factory fails twice"
    sim_config(s, fail_first=MAX_ATTEMPTS - 1, fail_rate=0, silent=False, slow=0)
    t.is_(sell_out(s, sku).status, 409, "%s: %s sold out" % (what, sku))
    t.ok(s.wait_until(lambda: [o["status"] for o in orders(s, sku)] == ["fulfilled"],
                      timeout=30), "%s: the third attempt goes through, the order is fulfilled"
         % what, orders(s, sku))
    reqs = factory_requests(s, sku)
    t.is_(len(reqs), MAX_ATTEMPTS, "%s: the factory saw %d attempts" % (what, MAX_ATTEMPTS))
    t.is_(orders(s, sku)[0]["attempts"], MAX_ATTEMPTS, "%s: the order counts them" % what)
    event = outbox(s, sku, "stock_empty")[0][0]
    t.is_(spool_find(s, "factory", event), ["done"], "%s: the message is done, not dead" % what)
    t.is_(s.stock(sku), REORDER, "%s: the stock is restored once" % what)


def factory_500(t, s, sku):
    what = "factory answers 500"
    sim_config(s, fail_rate=1, silent=False, slow=0)
    event, order = deferred_then_dead(t, s, sku, what, "HTTP 500")
    reqs = factory_requests(s, sku)
    t.is_(len(reqs), MAX_ATTEMPTS, "%s: the factory saw %d attempts" % (what, MAX_ATTEMPTS))
    t.ok(len({str(r["body"]) for r in reqs}) == 1 and
         {header(r, "Idempotency-Key") for r in reqs} == {order},
         "%s: every attempt is the same order, Idempotency-Key %s" % (what, order))
    # Not a speed assertion: the backoff makes the worker wait at least this long.
    gaps = [b["time"] - a["time"] for a, b in zip(reqs, reqs[1:])]
    t.ok(all(g >= 0.5 for g in gaps), "%s: attempts are spaced by the backoff" % what, gaps)
    p = s.restockctl("status")
    line = [ln.split() for ln in p.stdout.splitlines() if ln.startswith("factory")]
    t.ok(p.returncode == 0 and line and line[0][4] == "1" and "failed 1" in p.stdout,
         "%s: restockctl status shows the dead message and the failed order" % what, p.stdout)
    sim_config(s, fail_rate=0)
    redriven(t, s, sku, event, order, what, event, len(reqs))


def factory_timeout(t, s, sku):
    what = "factory times out"
    # Silent, so that the requests the factory took after we gave up never call back.
    sim_config(s, slow=3, silent=True)
    event, order = deferred_then_dead(t, s, sku, what, "timed out")
    reqs = factory_requests(s, sku)
    t.is_(len(reqs), MAX_ATTEMPTS, "%s: the factory saw %d attempts" % (what, MAX_ATTEMPTS))
    # The last slow answer must be over before the factory calls back again.
    s.wait_until(lambda: time.time() > reqs[-1]["time"] + 3.5, timeout=10)
    sim_config(s, slow=0, silent=False)
    redriven(t, s, sku, event, order, what, event, len(reqs))


def factory_down(t, s, sku):
    what = "factory down"
    s.stop("factory")
    event, order = deferred_then_dead(t, s, sku, what, "connection failed")
    s.start("factory")  # a new simulator: it remembers nothing
    redriven(t, s, sku, event, order, what, "--all", 0)
    return event


def database_down(t, s, sku):
    what = "database down"
    # Enough attempts to outlast the outage: this is about the way back, not about dying.
    s.stop("worker")
    s.start("worker", env={"RESTOCK_MAX_ATTEMPTS": "100"})
    s.stop("factory")
    t.is_(sell_out(s, sku).status, 409, "%s: %s sold out" % (what, sku))
    event = s.wait_until(lambda: outbox(s, sku, "stock_empty"))[-1][0]
    t.ok(s.wait_until(lambda: "deferred" in spool_find(s, "factory", event), timeout=30),
         "%s: the order waits in deferred/ (factory down)" % what)
    s.stop("db")
    s.start("factory")

    def says_database():
        got = spool_message(s, "factory", "deferred", event)
        return got and "database" in got[0].get("last-error", "")
    t.ok(s.wait_until(says_database, timeout=30),
         "%s: with the factory back but no database, it is deferred again, saying why" % what)
    t.is_(factory_requests(s, sku), [], "%s: nothing was sent without the order's row" % what)
    s.start("db")
    t.ok(s.wait_until(lambda: [o["status"] for o in orders(s, sku)] == ["fulfilled"],
                      timeout=60), "%s: once the database is back the order is delivered and "
         "fulfilled" % what, orders(s, sku))
    t.is_(len(factory_requests(s, sku)), 1, "%s: the factory received it once" % what)
    t.is_(s.stock(sku), REORDER, "%s: the stock is restored once" % what)


def body(t):
    with Stack(t, env=ENV, private_db=True) as s:
        factory_500(t, s, "CP-502101")
        factory_timeout(t, s, "CP-502102")
        event = factory_down(t, s, "CP-502103")
        p = s.restockctl("dlq", "redrive", event)
        t.ok(p.returncode != 0 and "not dead" in p.stderr,
             "redriving a delivered message fails with a reason", p.stdout + p.stderr)
        p = s.restockctl("dlq", "redrive", "no-such-message")
        t.ok(p.returncode != 0 and "no dead message" in p.stderr,
             "redriving an unknown message fails with a reason", p.stdout + p.stderr)
        factory_fails_twice(t, s, add_products(s, 1, prefix="FT")[0])
        # In stock: a product added at 0 is ordered by the worker's next sweep, which
        # may send that order before the scenario stops the factory.
        database_down(t, s, add_products(s, 1, prefix="DB", stock=3)[0])
        p = s.restockctl("dlq", "list")
        t.ok(p.returncode == 0 and len(p.stdout.strip().splitlines()) == 1,
             "in the end the dead letter queue is empty", p.stdout)


if __name__ == "__main__":
    run_tests(body)
