"""Integration test of a torn spool file: orders of five products wait in the factory
queue while the factory is down; with the worker stopped, one message file is cut in
half (as a crash of the disk would leave it) and a file of garbage is dropped next to
it. When the worker starts, both go to corrupt/, operators get a `corrupt` alert
email, restockctl status counts them, and the four other orders are still delivered
and fulfilled."""

import os

from harness import Stack, run_tests
from replenish_common import (REORDER, SEEDED, add_products, alerts, factory_requests, orders,
                              outbox, received_mail, sell_out, spool_dir, spool_files,
                              spool_find)

ENV = {"RESTOCK_FACTORY_ARGS": "--delay 0.3", "RESTOCK_SWEEP_INTERVAL": "1",
       "RESTOCK_BACKOFF_MIN": "1", "RESTOCK_BACKOFF_MAX": "2", "RESTOCK_MAX_ATTEMPTS": "100"}
WAITING = ("incoming", "deferred")


def body(t):
    with Stack(t, env=ENV) as s:
        # The factory first: a product added at stock 0 is ordered by the worker's
        # next sweep, which would otherwise send it before the factory stops.
        s.stop("factory")
        skus = list(SEEDED) + add_products(s, 2, prefix="SC")
        for sku in skus:
            t.is_(sell_out(s, sku).status, 409, "%s sold out" % sku)
        events = {sku: s.wait_until(lambda: outbox(s, sku, "stock_empty"))[0][0] for sku in skus}
        t.ok(s.wait_until(lambda: all(set(spool_find(s, "factory", e)) & {"deferred"}
                                      for e in events.values()), timeout=30),
             "with the factory down, the five orders wait in the factory queue")
        s.stop("worker")
        where = {sku: spool_find(s, "factory", e) for sku, e in events.items()}
        t.ok(all(len(w) == 1 and w[0] in WAITING for w in where.values()),
             "after a clean stop each message is in incoming/ or deferred/", where)

        torn_sku = skus[2]
        torn = events[torn_sku]
        path = os.path.join(spool_dir(s, "factory", where[torn_sku][0]), torn)
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(size // 2)
        garbage = os.path.join(spool_dir(s, "factory", "incoming"), "not-a-message")
        with open(garbage, "wb") as f:
            f.write(b"\x00\xff garbage \n" * 10)

        s.start("factory")
        s.start("worker")
        corrupt = s.wait_until(lambda: len(spool_files(s, "factory", "corrupt")) >= 2 and
                               spool_files(s, "factory", "corrupt"), timeout=30)
        t.ok(corrupt and any(n.startswith(torn) for n in corrupt),
             "the torn file is moved to corrupt/", corrupt)
        t.ok(corrupt and any(n.startswith("not-a-message") for n in corrupt),
             "the garbage file is moved to corrupt/", corrupt)
        t.ok(not [st for st in spool_find(s, "factory", torn) if st != "corrupt"] and
             not os.path.exists(garbage), "neither is left in another state")

        others = [sku for sku in skus if sku != torn_sku]
        t.ok(s.wait_until(lambda: all([o["status"] for o in orders(s, sku)] == ["fulfilled"]
                                      for sku in others), timeout=60),
             "the four other orders are delivered and fulfilled",
             {sku: orders(s, sku) for sku in others})
        t.ok(all(s.stock(sku) == REORDER for sku in others), "their stock is back")
        t.ok(all(len(factory_requests(s, sku)) == 1 for sku in others),
             "the factory received each of them once")
        t.is_(factory_requests(s, torn_sku), [], "the torn order never reached the factory")

        found = s.wait_until(lambda: [a for a in alerts(s, "corrupt")
                                      if torn in a[2]["vars"].get("path", "")])
        t.is_(len(found or []), 1, "one corrupt alert for operators names the torn file")
        t.ok(s.wait_until(lambda: [m for m in received_mail(s)
                                   if "ops@donut-states.example" in m[0]
                                   and "손상된 메시지 파일" in m[1] and torn in m[2]],
                          timeout=30), "the operators' mailbox got it")

        p = s.restockctl("status")
        line = [ln.split() for ln in p.stdout.splitlines() if ln.startswith("factory")]
        t.ok(p.returncode == 0 and line and line[0][6] == "2",
             "restockctl status counts 2 corrupt factory files", p.stdout)
        t.ok("event=corrupt" in s.log("worker"), "the worker logged it")


if __name__ == "__main__":
    run_tests(body)
