"""Integration test of the worker crashing: twelve products sell out again and again
while the worker is killed with SIGKILL 20 times at random moments (during the outbox
sweep, the spool writes, the factory's slow answers, the callbacks). In the end no
order is lost (every stock-out has its order, and every order is fulfilled) and no
product is restocked twice (each order delivered once, the stock exactly what was left
plus one delivery per order). The factory may have received an order more than once
(at-least-once), but always the same order: same Idempotency-Key, same body."""

import json
import random
import re
import time
from collections import defaultdict

from harness import Stack, run_tests
from replenish_common import (REORDER, SEEDED, add_products, factory_callbacks,
                              factory_requests, header, orders, outbox, spool_files)

KILLS = 20
PER_ROUND = 4
# The callback comes after the worker is back from a kill, so that a restarted worker
# finds orders the factory has but the database does not call sent: it sends them
# again, and the factory calls back twice.
ENV = {"RESTOCK_FACTORY_ARGS": "--delay 2.5 --slow 0.3", "RESTOCK_SWEEP_INTERVAL": "1",
       "RESTOCK_BACKOFF_MIN": "1", "RESTOCK_BACKOFF_MAX": "2", "RESTOCK_MAX_ATTEMPTS": "1000"}


def body(t):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    t.diag("random seed %d" % seed)
    with Stack(t, env=ENV) as s:
        skus = list(SEEDED) + add_products(s, 9, prefix="KX", stock=3)
        sold = defaultdict(int)        # units sold (200 answers)
        sellouts = defaultdict(int)    # 409s that found no unfinished order
        start_stock = {sku: s.stock(sku) for sku in skus}

        def busy():
            """Products with an unfinished order, in one query."""
            return {r[0] for r in s.sql(
                "SELECT DISTINCT p.sku FROM replenishment_order r JOIN product p"
                " ON p.product_id = r.product_id WHERE r.status <> 'fulfilled'")}

        def idle(sku):
            return all(o["status"] == "fulfilled" for o in orders(s, sku))

        began = time.time()
        for kill in range(KILLS):
            waiting = busy()
            ready = [sku for sku in skus if sku not in waiting]
            for sku in rng.sample(ready, min(PER_ROUND, len(ready))):
                left = s.stock(sku)
                if left > 0:
                    r = s.request("POST", "/checkout", {"sku": sku, "quantity": left})
                    if r.status != 200:
                        raise RuntimeError("buying the last %d of %s: %r" % (left, sku, r))
                    sold[sku] += left
                r = s.request("POST", "/checkout", {"sku": sku, "quantity": 1})
                if r.status != 409:
                    raise RuntimeError("the sell-out of %s answered %r" % (sku, r))
                sellouts[sku] += 1
            time.sleep(rng.uniform(0, 0.8))  # a random moment, not an assertion
            s.kill("worker")
            if rng.random() < 0.5:
                time.sleep(rng.uniform(0, 0.3))
            s.start("worker")

        total = sum(sellouts.values())
        t.ok(total >= KILLS // 2, "%d stock-outs during %d kills of the worker" % (total, KILLS))
        requeued = sum(int(n) for n in re.findall(r"queue=factory requeued=(\d+)",
                                                 s.log("worker")))
        t.diag("factory messages the restarts found in flight: %d" % requeued)

        t.diag("%d kills in %.0f s" % (KILLS, time.time() - began))
        settled = s.wait_until(lambda: not busy(), timeout=120, interval=0.5)
        t.ok(settled, "every order is fulfilled in the end: no order lost",
             {sku: orders(s, sku) for sku in skus if not idle(sku)})

        reqs = factory_requests(s)
        by_key = defaultdict(list)
        for r in reqs:
            by_key[header(r, "Idempotency-Key")].append(r)
        for sku in skus:
            rows = orders(s, sku)
            ids = [o["id"] for o in rows]
            t.is_(len(rows), sellouts[sku], "%s: one order per stock-out (%d)"
                  % (sku, sellouts[sku]))
            t.ok(all(o["delivered"] == REORDER for o in rows),
                 "%s: every order delivered %d once" % (sku, REORDER), rows)
            want = start_stock[sku] - sold[sku] + REORDER * len(rows)
            t.is_(s.stock(sku), want, "%s: stock %d = %d - %d sold + %d x %d delivered"
                  % (sku, want, start_stock[sku], sold[sku], len(rows), REORDER))
            t.is_(len(outbox(s, sku, "stock_arrived")), len(rows),
                  "%s: one stock_arrived event per order" % sku)
            t.ok(all(by_key.get(i) for i in ids), "%s: the factory received each order" % sku)
            t.ok(all(len({json.dumps(r["body"], sort_keys=True) for r in by_key.get(i, [])}) == 1
                     for i in ids),
                 "%s: repeated requests of an order are the same request" % sku,
                 {i: len(by_key.get(i, [])) for i in ids})
            fresh = [len([c for c in factory_callbacks(s, i) if c["status"] == 200 and
                          "delivered" in (c.get("answer") or "")]) for i in ids]
            t.ok(all(n == 1 for n in fresh), "%s: one callback per order added stock" % sku,
                 fresh)
        known = {o["id"] for sku in skus for o in orders(s, sku)}
        t.ok(set(by_key) <= known, "every request to the factory is one of the orders",
             set(by_key) - known)
        t.diag("factory requests: %d for %d orders" % (len(reqs), len(known)))
        for state in ("incoming", "active", "deferred", "dead", "corrupt"):
            t.ok(s.wait_until(lambda: spool_files(s, "factory", state) == [], timeout=30),
                 "no factory message left in %s/" % state, spool_files(s, "factory", state))


if __name__ == "__main__":
    run_tests(body)
