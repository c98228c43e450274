"""Integration test of reorder points (issue 11, docs/design.md §1 and §3.6) on the real
stack: the sale that takes the stock to the point opens one order, sized to bring the
stock up to the level, and 10,000 concurrent checkouts after it open nothing more; the
ad runs until the last unit and pauses then, and the checkouts turned away while sold
out are counted on the order and named in the resume email; 1,000 asked of 3 is a 409
that is neither an order nor a sell-out; the lead time is measured from a factory with
a known delay; the automatic point rises under a rising demand and stays within its
bounds, each change logged (the demand and the lead time are inputs the test sets, not
how fast a loop of requests ran); restockctl products and product set, good and bad
input."""

import math
import re
import time
from collections import Counter

from harness import Stack, run_tests
from inbox import ad_status, inbox
from replenish_common import factory_requests, outbox, sim_config

BIG = "CP-502101"     # the surge after the point
SHELF = "CP-502102"   # the ad until the last unit, unmet demand
THREE = "CP-502103"   # 1,000 asked of 3
SURGE, CLIENTS = 10000, 32


def order_row(s, sku):
    rows = s.sql("SELECT r.quantity, r.status, r.turned_away, r.turned_away_units,"
                 " r.sold_out_at IS NOT NULL, HEX(r.order_id) FROM replenishment_order r"
                 " JOIN product p ON p.product_id = r.product_id WHERE p.sku = '%s'"
                 " ORDER BY r.created_at" % sku)
    return [{"quantity": int(r[0]), "status": r[1], "turned_away": int(r[2]),
             "turned_away_units": int(r[3]), "sold_out": r[4] == "1", "hex": r[5]}
            for r in rows]


def kinds(s, sku):
    return [e[1] for e in outbox(s, sku)]


def settings(s, sku):
    row = s.sql("SELECT reorder_point, reorder_level, reorder_quantity, reorder_auto,"
                " reorder_point_min, reorder_point_max FROM product WHERE sku = '%s'" % sku)[0]
    return [int(v) for v in row]


def buy(s, sku, quantity):
    return s.request("POST", "/checkout", {"sku": sku, "quantity": quantity})


def point_orders_once(t, s):
    s.sql("UPDATE product SET stock = 12000 WHERE sku = '%s'" % BIG)
    p = s.restockctl("product", "set", BIG, "reorder_point=11000", "reorder_level=12500")
    t.is_(p.returncode, 0, "product set reorder_point=11000 reorder_level=12500 exits 0")
    t.ok("reorder_point=11000 reorder_level=12500" in p.stdout, "and says what is set",
         p.stdout)
    r = buy(s, BIG, 999)
    t.is_((r.status, r.json().get("remaining")), (200, 11001), "a sale above the point sells")
    t.is_(order_row(s, BIG), [], "and opens no order")
    r = buy(s, BIG, 1)
    t.is_((r.status, r.json().get("remaining")), (200, 11000),
          "the sale that reaches the point sells (200)")
    rows = order_row(s, BIG)
    t.is_([(o["quantity"], o["sold_out"]) for o in rows], [(1500, False)],
          "it opened one order at once, for 1,500: stock 11,000 + 1,500 = the level 12,500")
    t.is_(kinds(s, BIG), ["reorder"], "with one reorder event (no sell-out)")
    t.ok(s.wait_until(lambda: len(factory_requests(s, BIG)) == 1),
         "the factory receives the order")
    got = factory_requests(s, BIG)
    t.is_(got[0]["body"].get("MessageAttributeProductCnt") if got else None, 1500,
          "MessageAttributeProductCnt is 1,500")

    answers = s.concurrently(SURGE, CLIENTS,
                             lambda i: ("POST", "/checkout", {"sku": BIG, "quantity": 1}))
    t.is_(dict(Counter(r.status for r in answers)), {200: SURGE},
          "%d concurrent checkouts after the point all sell" % SURGE)
    t.is_(s.stock(BIG), 1000, "stock 11,000 - 10,000 = 1,000")
    t.is_(len(order_row(s, BIG)), 1, "still one order")
    t.is_(kinds(s, BIG), ["reorder"], "still one event")
    # Two sweeps, the second begun after the last checkout: it would have ordered again.
    t.ok(s.wait_sweep_passes(s.sweep_passes(), 2), "the worker sweeps")
    t.is_(len(order_row(s, BIG)), 1, "the sweeps opened no order")
    t.is_(len(factory_requests(s, BIG)), 1, "one request reached the factory")
    t.is_(ad_status(s, BIG), "1", "the ad runs: the product is on sale")
    t.is_(inbox(s, kind="ad_pause"), [], "no ad pause email")


def ad_until_last_unit(t, s):
    s.sql("UPDATE product SET stock = 5 WHERE sku = '%s'" % SHELF)
    s.restockctl("product", "set", SHELF, "reorder_point=3", check=True)
    r = buy(s, SHELF, 2)
    t.is_((r.status, r.json().get("remaining")), (200, 3), "the sale to the point sells")
    t.ok(s.wait_until(lambda: [o["status"] for o in order_row(s, SHELF)] == ["sent"]),
         "its order is sent", order_row(s, SHELF))
    t.is_(order_row(s, SHELF)[0]["quantity"], 10,
          "reorder_level 0: the order is for reorder_quantity (10)")
    t.ok(s.wait_until(lambda: [e[2] for e in outbox(s, SHELF)] == [True]), "its event is taken")
    t.is_(ad_status(s, SHELF), "1", "the ad still runs at the point")
    for left in (2, 1):
        r = buy(s, SHELF, 1)
        t.is_((r.status, ad_status(s, SHELF)), (200, "1"), "%d left: the ad runs" % left)
    r = buy(s, SHELF, 1)
    t.is_((r.status, r.json().get("remaining")), (200, 0), "the last unit sells")
    t.is_(kinds(s, SHELF), ["reorder", "sold_out"], "its sale wrote the sold_out event")
    t.ok(s.wait_until(lambda: ad_status(s, SHELF) == "0"), "the ad is paused with the last unit")
    t.ok(s.wait_until(lambda: len(inbox(s, kind="ad_pause")) == 1),
         "the ad manager gets one pause email")

    for q in (1, 2, 3):
        r = buy(s, SHELF, q)
        t.is_((r.status, r.json().get("replenishment")), (409, "requested"),
              "sold out, asking %d: 409, replenishment requested" % q)
    o = order_row(s, SHELF)
    t.is_([(x["turned_away"], x["turned_away_units"], x["sold_out"]) for x in o],
          [(3, 6, True)], "the order counts 3 customers turned away, 6 units")
    t.is_(len(factory_requests(s, SHELF)), 1, "still one request at the factory")
    order_id = o[0]["hex"].lower()
    order_id = "-".join([order_id[:8], order_id[8:12], order_id[12:16], order_id[16:20],
                         order_id[20:]])
    p = s.restockctl("orders", "fulfil", order_id, "10")
    t.ok(p.returncode == 0, "the delivery is recorded", p.stderr)
    t.ok(s.wait_until(lambda: ad_status(s, SHELF) == "1"), "the ad runs again")
    got = s.wait_until(lambda: inbox(s, kind="ad_resume"))
    t.ok(got and "품절 중 구매하지 못한 고객: 3명 (6개)" in got[0].body
         and "3 customers were turned away" in got[0].body,
         "the resume email says 3 customers were turned away (6 units)",
         got[0].body if got else None)


def more_than_remains(t, s):
    r = buy(s, THREE, 1000)
    t.is_(r.status, 409, "1,000 asked of 3: 409")
    t.is_(r.json(), {"message": "구매 실패! 남은 재고: 3", "sku": THREE, "remaining": 3},
          "with what remains, and no replenishment (nothing is on order)")
    t.ok(s.wait_sweep_passes(s.sweep_passes(), 2), "the worker sweeps")
    t.is_(order_row(s, THREE), [], "no order")
    t.is_(kinds(s, THREE), [], "no event")
    t.is_(ad_status(s, THREE), "1", "the ad runs")


def lead_time(t, s):
    # The simulator calls back after 2 s: three orders of THREE, each sold out.
    sim_config(s, delay=2, silent=False)
    windows = []
    for n in range(3):
        left = s.stock(THREE)
        began = time.time()
        r = buy(s, THREE, left)
        t.is_((r.status, r.json().get("remaining")), (200, 0), "sell-out %d" % (n + 1))
        t.ok(s.wait_until(lambda: [o["status"] for o in order_row(s, THREE)][-1:] ==
                          ["fulfilled"], timeout=30), "its order is fulfilled by the callback")
        windows.append(time.time() - began)
    sim_config(s, silent=True)
    rows = s.sql("SELECT TIMESTAMPDIFF(MICROSECOND, r.sent_at, r.fulfilled_at) / 1e6 FROM"
                 " replenishment_order r JOIN product p ON p.product_id = r.product_id"
                 " WHERE p.sku = '%s' ORDER BY r.created_at" % THREE)
    leads = [float(v[0]) for v in rows]
    # At least the simulator's delay; at most the time from the sale until the test
    # saw the order fulfilled (what happened, however fast the machine was).
    t.ok(len(leads) == 3 and all(1.9 <= v <= w for v, w in zip(leads, windows)),
         "each order's sent -> fulfilled is at least the simulator's 2 s delay, and within"
         " the sale's own round trip", (leads, windows))
    # restockctl's percentiles are those of the factory's fulfilled orders (nearest
    # rank), the delivery of ad_until_last_unit's order included.
    every = sorted(float(v[0]) for v in s.sql(
        "SELECT TIMESTAMPDIFF(MICROSECOND, r.sent_at, r.fulfilled_at) / 1e6 FROM"
        " replenishment_order r JOIN product p ON p.factory_id = r.factory_id WHERE"
        " p.sku = '%s' AND r.status = 'fulfilled' AND r.fulfilled_at >= r.sent_at" % THREE))
    p50, p90 = (every[max(1, math.ceil(q / 100.0 * len(every))) - 1] if every else -1
                for q in (50, 90))
    line = products(s).get(THREE, {})
    got = [re.fullmatch(r"(\d+\.\d)s(?:\((\d+)\))?", line.get(k, "")) for k in
           ("lead_p50", "lead_p90")]
    t.ok(got[0] and abs(float(got[0].group(1)) - p50) <= 0.051,
         "restockctl products: the factory's median lead time is that of its orders"
         " (%.2f s)" % p50, line)
    t.ok(got[1] and abs(float(got[1].group(1)) - p90) <= 0.051 and
         got[1].group(2) == str(len(every)),
         "and its p90 (%.2f s), with the number of orders it was measured over (%d)"
         % (p90, len(every)), line)


def products(s):
    p = s.restockctl("products")
    lines = [ln.split() for ln in p.stdout.splitlines() if ln.strip()]
    if p.returncode != 0 or not lines:
        return {}
    return {ln[0]: dict(zip(lines[0], ln)) for ln in lines[1:]}


# The automatic point's inputs, set by the test: a product of its own factory (no
# order measured: lead_time_assumed 5 s, reorder_safety 50 %), and its units asked
# for over a past interval written as its last sample, so that the worker's next
# sweep measures the rate N / AGE a second (the moving average of rate_window 600 s
# takes a sample 6,000 s long whole). The point is rate x 5 s x 1.5, within 2..60;
# the level, the point plus what sells in the lead time (at least reorder_quantity).
AUTO, AGE, LEAD = "AUTO-1", 6000, 5


def auto_changes(s):
    """The worker's event=reorder_auto lines of AUTO: [(point, level, rate)]."""
    return [(int(m.group(1)), int(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"event=reorder_auto sku=%s reorder_point=\d+->(\d+) "
                                 r"reorder_level=\d+->(\d+) rate_per_min=([\d.]+)" % AUTO,
                                 s.log("worker"))]


def asked(s, units):
    """AUTO's last sample: `units` fewer than now, AGE seconds ago (the worker stopped
    meanwhile, so that no sweep of its overwrites it)."""
    s.stop("worker")
    s.sql("INSERT INTO product_demand (product_id, sold_total, order_id,"
          " order_turned_away_units, sampled_at, rate) SELECT product_id, sold_total - %d,"
          " NULL, 0, CURRENT_TIMESTAMP(6) - INTERVAL %d SECOND, 0 FROM product WHERE sku = '%s'"
          " ON DUPLICATE KEY UPDATE sold_total = VALUES(sold_total), order_id = NULL,"
          " order_turned_away_units = 0, sampled_at = VALUES(sampled_at), rate = 0"
          % (units, AGE, AUTO))
    s.start("worker", env={"RESTOCK_RATE_WINDOW": "600"})


def automatic(t, s):
    # The surge of point_orders_once is over: its rate fades (rate_window 3 s).
    t.ok(s.wait_until(lambda: float(products(s).get(BIG, {}).get("rate/min", "1e9")) < 10,
                      timeout=60), "the sales rate falls while nothing sells")
    fid, pid = "AA" * 16, "AB" * 16
    s.sql("INSERT INTO factory (factory_id, identifier, name, api) VALUES"
          " (UNHEX('%s'), 'FF-AUTO', 'auto factory', NULL)" % fid)
    s.sql("INSERT INTO product (product_id, sku, name, price, stock, factory_id,"
          " reorder_quantity) VALUES (UNHEX('%s'), '%s', 'auto donut', 1000, 100000,"
          " UNHEX('%s'), 10)" % (pid, AUTO, fid))
    p = s.restockctl("product", "set", AUTO, "reorder_point=2", "reorder_level=0",
                     "reorder_point_min=2", "reorder_point_max=60", "reorder_auto=on")
    t.ok(p.returncode == 0, "automatic mode on, within 2..60", p.stderr)
    first = s.wait_until(lambda: auto_changes(s))
    t.is_(first and first[0][:2], (2, 12), "nothing sold: the point at its bottom 2, the"
          " level 2 + reorder_quantity 10")

    def step(units, want, what):
        """AUTO's demand `units` in AGE seconds: the rate measured, then the point
        and level of the worker's next change (want)."""
        before = len(auto_changes(s))
        asked(s, units)
        s.wait_until(lambda: len(auto_changes(s)) > before)
        changes = auto_changes(s)
        got = changes[before] if len(changes) > before else None
        rate = units * 60.0 / AGE
        t.ok(got and rate * AGE / (AGE + 60) <= got[2] <= rate,
             "a demand of %g units a minute is measured so" % rate, got)
        t.is_(got and got[:2], want, what)

    # 2,400 units in 6,000 s: 24 a minute, 2 in the lead time, 3 with the margin.
    step(2400, (3, 13), "the point follows it: 3 (24/min x 5 s x 1.5), the level"
         " 3 + reorder_quantity 10")
    # 120,000 units in 6,000 s: 1,200 a minute, 100 in the lead time, 150 with the
    # margin: the top of the bounds.
    step(120000, (60, 160), "the point rises to its top 60 (not 150), the level 60 + the"
         " 100 units of the lead time")
    changes = auto_changes(s)
    t.ok(all(2 <= c[0] <= 60 for c in changes), "every point set stays within 2..60", changes)
    logged = [ln for ln in s.log("worker").splitlines()
              if "event=reorder_auto" in ln and "sku=%s" % AUTO in ln]
    t.ok(logged and all(re.search(r"reorder_point=\d+->\d+ reorder_level=\d+->\d+ "
                                  r"rate_per_min=[\d.]+ lead_time_p90=5.0s lead_orders=0 "
                                  r"safety_pct=50 rate_window=\d+s", ln) for ln in logged),
         "each change is logged with its inputs (rate, lead time)", logged[-3:])
    line = products(s).get(AUTO, {})
    t.ok(line.get("auto") == "on" and float(line.get("rate/min", "0")) > 1000,
         "restockctl products shows the switch and the measured rate", line)
    s.restockctl("product", "set", AUTO, "reorder_auto=off", check=True)


def product_set_errors(t, s):
    before = settings(s, SHELF)
    for args, why in ((["NO-SUCH", "reorder_point=1"], "unknown sku \"NO-SUCH\""),
                      ([SHELF, "colour=red"], "unknown key \"colour\""),
                      ([SHELF, "reorder_point=-2"], "reorder_point \"-2\": expected an integer"
                       " from -1 to 1000000"),
                      ([SHELF, "reorder_quantity=ten"], "reorder_quantity \"ten\": expected"),
                      ([SHELF, "reorder_auto=maybe"], "reorder_auto \"maybe\": expected on or"
                       " off"),
                      ([SHELF, "reorder_point=20", "reorder_level=15"],
                       "reorder_level 15 must be above reorder_point 20"),
                      ([SHELF, "reorder_point_min=9", "reorder_point_max=8"],
                       "reorder_point_min 9 is above reorder_point_max 8"),
                      ([SHELF], "usage: restockctl product set SKU key=value")):
        p = s.restockctl("product", "set", *args)
        lines = p.stderr.strip().splitlines()
        t.ok(p.returncode == 1 and len(lines) == 1 and why in lines[0] and p.stdout == "",
             "product set %s: exit 1, one line: %s" % (" ".join(args), why), p.stderr)
    t.is_(settings(s, SHELF), before, "nothing changed")
    p = s.restockctl("products", "extra")
    t.is_(p.returncode, 1, "products with an argument: exit 1")
    line = products(s)
    t.is_(sorted(line), [BIG, SHELF, THREE], "products lists every product")
    t.is_([line[SHELF].get(k) for k in ("point", "level", "auto")], ["3", "+10", "off"],
          "with its point, its level (+10: a fixed order of reorder_quantity), its switch")
    t.ok(all(k in line[SHELF] for k in ("stock", "on_order", "rate/min", "lead_p50", "lead_p90",
                                        "suggested", "sells_out")),
         "and stock, on order, rate, lead time, suggested point, time to sell out", line[SHELF])


def body(t):
    env = {"RESTOCK_FACTORY_ARGS": "--silent", "RESTOCK_SWEEP_INTERVAL": "1",
           "RESTOCK_RATE_WINDOW": "3", "RESTOCK_LEAD_TIME_ASSUMED": str(LEAD),
           "RESTOCK_LOG_LEVEL": "debug"}  # the worker logs each sweep
    with Stack(t, env=env) as s:
        point_orders_once(t, s)
        ad_until_last_unit(t, s)
        more_than_remains(t, s)
        product_set_errors(t, s)
        lead_time(t, s)
        automatic(t, s)


if __name__ == "__main__":
    run_tests(body)
