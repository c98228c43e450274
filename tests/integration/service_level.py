"""Integration test of reorder points from a stated service level (issue 23, item 1;
docs/design.md §3.7) on the real stack: `restockctl product set SKU service_level=95`
turns the automatic mode on with a target; the worker's sweep moves the point to the
quantile of the lead time's demand nearest the target (normal from 500 units, Poisson
or negative binomial below), the level to the point plus a lead time's demand, within the operator's
bounds, each change logged with its inputs; an announced surge multiplies the demand
until its end; a product without a target keeps the fixed margin; bad values are
refused with one line and change nothing. The demand is an input the test writes as
the product's measured averages (full window), not how fast a loop of requests ran;
the lead time is lead_time_assumed (no order measured: no variance). The level
achieved: two order cycles of a product, one with a checkout turned away from its
empty shelf and one ended before the shelf emptied, are 50 % in `restockctl products`
and in the metrics, and its fill rate is the units served of those asked for. A top-up:
while the order a crossing opened is on its way, a risen point above the stock plus
what is on order opens one further order for the difference to the level, once; a
product without a target never gets one (the other tests' products)."""

import math
import re

from harness import Stack, run_tests
from prom import metric
from replenish_common import as_uuid, orders

SKU, LEAD, CYCLED, TOPPED = "SL-1", 5, "SL-2", "SL-3"


def z(p):
    """Φ⁻¹(p) by bisection on math.erfc: the test's own, not the C code's."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def phi(x):
    return 0.5 * math.erfc(-x / math.sqrt(2))


def nearest(k, p, cdf):
    """Of k - 1 and k (the smallest with cdf(k) >= p), the one whose cdf is nearer p."""
    return k - 1 if k > 0 and p - cdf(k - 1) < cdf(k) - p else k


def discrete_point(mean, var, p):
    """The k whose P(X <= k) is nearest p, X Poisson (var <= mean) or negative binomial."""
    if var > mean * (1 + 1e-9):  # not a rounding's excess (√(5·60)² is 300.00000000000006)
        q, r = 1 - mean / var, mean * mean / (var - mean)
        term = math.exp(r * math.log1p(-q))
        step = lambda k: q * (k + r) / (k + 1)
    else:
        term = math.exp(-mean)
        step = lambda k: mean / (k + 1)
    cdfs = [term]
    while cdfs[-1] < p:
        term *= step(len(cdfs) - 1)
        cdfs.append(cdfs[-1] + term)
    return nearest(len(cdfs) - 1, p, lambda k: cdfs[k])


def expected_point(csl, mean, var, lead=LEAD):
    mu, sd = mean * lead, math.sqrt(lead * var)
    if mu < 500:
        return discrete_point(mu, sd * sd, csl)
    # The normal law with a count's continuity correction: P(D <= k) = Φ((k + ½ - μ)/σ).
    return nearest(math.ceil(mu + z(csl) * sd - 0.5 - 1e-9), csl,
                   lambda k: phi((k + 0.5 - mu) / sd))


def demand(s, mean, var, sku=SKU):
    """SKU's measured demand: `mean` units a second, variance `var` a second, over a
    whole window, sampled a moment ago with nothing sold since (the worker stopped
    meanwhile so that no sweep of its overwrites it)."""
    s.stop("worker")
    s.sql("INSERT INTO product_demand (product_id, sold_total, order_id,"
          " order_turned_away_units, sampled_at, rate, demand_mean, demand_var,"
          " demand_seconds) SELECT product_id, sold_total, NULL, 0,"
          " CURRENT_TIMESTAMP(6) - INTERVAL 2 SECOND, 0, %r, %r, 604800 FROM product"
          " WHERE sku = '%s' ON DUPLICATE KEY UPDATE sold_total = VALUES(sold_total),"
          " sampled_at = VALUES(sampled_at), demand_mean = VALUES(demand_mean),"
          " demand_var = VALUES(demand_var), demand_seconds = VALUES(demand_seconds)"
          % (mean, var, sku))
    s.start("worker")


def changes(s):
    """The worker's event=reorder_policy lines of SKU, as dicts."""
    out = []
    for ln in s.log("worker").splitlines():
        if "event=reorder_policy" in ln and "sku=%s " % SKU in ln:
            out.append(dict(re.findall(r"(\w+)=(\S+)", ln)))
    return out


def point_level(s):
    row = s.sql("SELECT reorder_point, reorder_level FROM product WHERE sku = '%s'" % SKU)[0]
    return int(row[0]), int(row[1])


def products(s):
    p = s.restockctl("products")
    lines = [ln.split() for ln in p.stdout.splitlines() if ln.strip()]
    return {ln[0]: dict(zip(lines[0], ln)) for ln in lines[1:]} if lines else {}


def settle(t, s, mean, var, what, want_point=None, want_level=None, surge=1.0):
    """Writes the demand, waits for the worker's next policy change, checks it."""
    before = len(changes(s))
    demand(s, mean, var)
    t.ok(s.wait_until(lambda: len(changes(s)) > before, timeout=60),
         "%s: the worker moves the point" % what, s.log("worker")[-1500:])
    got = changes(s)[before] if len(changes(s)) > before else {}
    point = want_point if want_point is not None else expected_point(0.95, mean * surge,
                                                                     var * surge)
    level = want_level if want_level is not None else point + max(10, math.ceil(
        mean * surge * LEAD - 1e-9))
    t.is_(point_level(s), (point, level), "%s: point %d, level %d" % (what, point, level))
    return got


def body(t):
    env = {"RESTOCK_SWEEP_INTERVAL": "1", "RESTOCK_LEAD_TIME_ASSUMED": str(LEAD),
           "RESTOCK_FACTORY_ARGS": "--silent"}
    with Stack(t, env=env) as s:
        fid, pid = "AC" * 16, "AD" * 16
        s.sql("INSERT INTO factory (factory_id, identifier, name, api) VALUES"
              " (UNHEX('%s'), 'FF-SL', 'service level factory', NULL)" % fid)
        s.sql("INSERT INTO product (product_id, sku, name, price, stock, factory_id,"
              " reorder_quantity) VALUES (UNHEX('%s'), '%s', 'sl donut', 1000, 100000,"
              " UNHEX('%s'), 10)" % (pid, SKU, fid))

        # A target: the automatic mode turns on with it.
        p = s.restockctl("product", "set", SKU, "service_level=95")
        t.ok(p.returncode == 0 and "reorder_auto=on" in p.stdout
             and "service_level=95%" in p.stdout,
             "product set service_level=95: exit 0, the mode on, the target said",
             p.stdout + p.stderr)
        t.is_(s.sql_value("SELECT service_level FROM product WHERE sku = '%s'" % SKU), "0.9500",
              "the target is stored as a fraction")
        t.ok(s.wait_until(lambda: changes(s), timeout=60), "the worker's first sweep sets it")
        t.is_(point_level(s), (0, 10), "nothing measured yet: point 0, level reorder_quantity 10")

        # 120 units a second, Poisson-like (variance 120): 600 in the 5 s lead time,
        # σ √600 = 24.49, the normal law with the continuity correction: the smallest
        # k with Φ((k + ½ − 600)/σ) ≥ 0.95 is ⌈600 + 1.645·24.49 − ½⌉ = 640 (0.9509;
        # 639's 0.9466 is farther); level 640 + 600.
        got = settle(t, s, 120.0, 120.0, "600 units per lead time")
        t.is_(point_level(s), (640, 1240), "the textbook's point, continuity-corrected: 640")
        t.ok(got.get("law") == "normal" and got.get("service_level") == "0.9500"
             and abs(float(got.get("z", 0)) - 1.6449) < 1e-4
             and abs(float(got.get("lead_demand", 0)) - 600) < 0.1
             and abs(float(got.get("lead_demand_sd", 0)) - 24.49) < 0.01
             and got.get("lead_mean") == "5.0s" and got.get("lead_orders") == "0",
             "the change is logged with its inputs (law, z, demand, lead time)", got)
        # 20 a second: 100 a lead time, Poisson's: P(D ≤ 116) = 0.9478 is nearer 95 %
        # than P(D ≤ 117) = 0.9572, the smallest meeting it.
        got = settle(t, s, 20.0, 20.0, "100 units per lead time (Poisson)", 116, 216)
        t.is_(got.get("law"), "poisson", "100 units: Poisson's, not the normal law")

        # 0.4 units a second: 2 in a lead time, Poisson's point nearest 95 %: 4 (94.7 %;
        # 5, 98.3 %, is the smallest above).
        got = settle(t, s, 0.4, 0.4, "2 units per lead time (Poisson)", 4, 14)
        t.is_(got.get("law"), "poisson", "few units: Poisson, not the normal law")
        # Over-dispersed: variance 1.6 a second, 8 over the lead time: the negative
        # binomial's point.
        nb = discrete_point(2.0, 8.0, 0.95)
        got = settle(t, s, 0.4, 1.6, "2 units per lead time, variance 8 (negative binomial)",
                     nb, nb + 10)
        t.is_(got.get("law"), "negative_binomial", "bursty demand: the negative binomial")

        # An announced surge: 3 times the demand until its end.
        p = s.restockctl("product", "set", SKU, "surge=3", "surge_until=+2h")
        t.ok(p.returncode == 0 and "95%x3(" in p.stdout, "surge=3 surge_until=+2h: said", p.stdout)
        settle(t, s, 20.0, 20.0, "the same demand, surge x3", surge=3.0)
        t.is_(point_level(s)[0], expected_point(0.95, 60.0, 60.0),
              "the point of 300 units per lead time: Poisson's nearest 95 %")
        t.ok(products(s).get(SKU, {}).get("target", "").startswith("95%x3("),
             "restockctl products shows the target and the surge", products(s).get(SKU))
        surge_measured(t, s)

        # The operator's bounds hold.
        s.restockctl("product", "set", SKU, "surge=off", "reorder_point_max=50", check=True)
        settle(t, s, 20.0, 20.0, "bounded by reorder_point_max 50", 50, 150)

        # A higher target, a higher point.
        s.restockctl("product", "set", SKU, "service_level=99%", "reorder_point_max=1000",
                     check=True)
        settle(t, s, 20.0, 20.0, "99 %: Poisson's, 124 (98.9 % below it)", 124, 224)

        # Bad values: one line, exit 1, nothing changed.
        before = s.sql("SELECT reorder_point, reorder_level, reorder_auto, service_level,"
                       " surge_factor, surge_until FROM product WHERE sku = '%s'" % SKU)
        for args, why in ((["service_level=50"], "service_level \"50\": expected a percentage"),
                          (["service_level=100"], "service_level \"100\": expected"),
                          (["service_level=0.9999"], "service_level \"0.9999\": expected"),
                          (["service_level=high"], "service_level \"high\": expected"),
                          (["surge=3"], "surge=3.000: say until when with surge_until"),
                          (["surge=0"], "surge \"0\": expected a factor"),
                          (["surge_until=+1h"], "surge_until without a surge"),
                          (["surge=2", "surge_until=2020-01-01T00:00:00Z"],
                           "surge_until \"2020-01-01T00:00:00Z\": expected a time to come"),
                          (["surge=2", "surge_until=tomorrow"],
                           "surge_until \"tomorrow\": expected")):
            p = s.restockctl("product", "set", SKU, *args)
            lines = p.stderr.strip().splitlines()
            t.ok(p.returncode == 1 and len(lines) == 1 and why in lines[0] and p.stdout == "",
                 "product set %s: exit 1, one line: %s" % (" ".join(args), why), p.stderr)
        t.is_(s.sql("SELECT reorder_point, reorder_level, reorder_auto, service_level,"
                    " surge_factor, surge_until FROM product WHERE sku = '%s'" % SKU), before,
              "nothing changed")

        achieved(t, s)
        topup(t, s)

        # No target: the fixed margin again (rate x p90 lead time x 1.5).
        p = s.restockctl("product", "set", SKU, "service_level=off")
        t.ok(p.returncode == 0 and "reorder_auto=on" in p.stdout
             and "service_level=-" in p.stdout, "service_level=off: no target, mode kept",
             p.stdout)
        t.is_(products(s).get(SKU, {}).get("target"), "-", "restockctl products: no target")


def achieved(t, s):
    """Two cycles of CYCLED, one with a stock-out: 50 % achieved, fill 4 of 5."""
    s.sql("INSERT INTO product (product_id, sku, name, price, stock, factory_id,"
          " reorder_quantity) SELECT UNHEX('%s'), '%s', 'cycled donut', 1000, 2, factory_id, 5"
          " FROM factory WHERE identifier = 'FF-SL'" % ("AE" * 16, CYCLED))
    # The first sample only starts the count: the units come after it.
    t.ok(s.wait_until(lambda: s.sql_value(
        "SELECT COUNT(*) FROM product_demand d JOIN product p USING (product_id)"
        " WHERE p.sku = '%s'" % CYCLED) == "1", timeout=30), "the worker samples the new product")

    def buy(n):
        return s.request("POST", "/checkout", {"sku": CYCLED, "quantity": n}).status

    def fulfil(quantity):
        open_ = [o for o in orders(s, CYCLED) if o["status"] != "fulfilled"]
        p = s.restockctl("orders", "fulfil", open_[0]["id"], str(quantity)) if open_ else None
        t.ok(p is not None and p.returncode == 0, "the cycle's order is fulfilled",
             p and p.stderr)

    # A cycle with a stock-out: the last 2 sold open the order, 1 more is turned away.
    t.is_((buy(2), buy(1)), (200, 409), "two sold, the third turned away from the empty shelf")
    # The worker samples the units turned away on the open order (a cycle that
    # ended between two samples would not show its own: a second, at most).
    t.ok(s.wait_until(lambda: s.sql_value(
        "SELECT d.order_turned_away_units FROM product_demand d JOIN product p"
        " USING (product_id) WHERE p.sku = '%s'" % CYCLED) == "1", timeout=30),
         "the worker's sample counts the unit turned away")
    fulfil(5)
    # A cycle without: the point at 3, the order opens at 3 and arrives before 0.
    s.restockctl("product", "set", CYCLED, "reorder_point=3", check=True)
    t.is_(buy(2), 200, "two more sold: the stock at the point")
    t.ok(s.wait_until(lambda: [o for o in orders(s, CYCLED) if o["status"] != "fulfilled"],
                      timeout=30), "the point opens the next order")
    fulfil(5)

    def line():
        return products(s).get(CYCLED, {})

    t.ok(s.wait_until(lambda: line().get("fill") == "80.0%", timeout=30),
         "restockctl products: fill 80.0%% (4 units served of 5 asked for)", line())
    t.is_(line().get("achieved"), "50.0%/2",
          "and 50.0%/2 achieved: one cycle of two without a stock-out")
    t.is_(metric(s, "restock_service_level_achieved", sku=CYCLED), 0.5,
          "restock_service_level_achieved{sku} 0.5")
    t.is_((metric(s, "restock_order_cycles", sku=CYCLED, stockout="yes"),
           metric(s, "restock_order_cycles", sku=CYCLED, stockout="no")), (1.0, 1.0),
          "restock_order_cycles{sku,stockout}: 1 and 1")
    fill = metric(s, "restock_fill_rate", sku=CYCLED)
    t.ok(fill is not None and abs(fill - 0.8) < 1e-6, "restock_fill_rate{sku} 0.8",
         (fill, s.sql("SELECT d.fill_asked, d.fill_turned, d.fill_seconds FROM product_demand d"
                      " JOIN product p USING (product_id)"
                      " WHERE p.sku = '%s'" % CYCLED)))
    t.is_(metric(s, "restock_service_level_target", sku=SKU), 0.99,
          "restock_service_level_target{sku} of the product with a target")
    t.is_(metric(s, "restock_service_level_target", sku=CYCLED), None,
          "and none for a product without one")


def surge_measured(t, s):
    """During the announced surge (x3), what sells is measured as the baseline times
    3: 600 units over a sample of about 100 s keep a baseline of 2 a second at 2,
    where counting them whole would raise it toward 4."""
    before = len(changes(s))
    s.stop("worker")
    s.sql("UPDATE product_demand d JOIN product p USING (product_id) SET"
          " d.sold_total = p.sold_total + p.held, d.sampled_at = CURRENT_TIMESTAMP(6)"
          " - INTERVAL 100 SECOND, d.demand_mean = 2, d.demand_var = 2, d.demand_seconds = 100"
          " WHERE p.sku = '%s'" % SKU)
    s.sql("UPDATE product SET stock = stock + 600 WHERE sku = '%s'" % SKU)
    for _ in range(6):
        s.request("POST", "/checkout", {"sku": SKU, "quantity": 100})
    s.start("worker")
    t.ok(s.wait_until(lambda: len(changes(s)) > before, timeout=60),
         "the sample of the surge moves the point")
    got = changes(s)[before] if len(changes(s)) > before else {}
    mean = float(got.get("demand_per_s", "nan"))
    t.ok(1.9 <= mean <= 2.1, "600 units in ~100 s at x3 keep the baseline at 2 a second "
         "(counted whole: ~4)", got.get("demand_per_s"))


def topped_orders(s):
    rows = s.sql("SELECT r.quantity, r.topup, r.status FROM replenishment_order r JOIN product p"
                 " USING (product_id) WHERE p.sku = '%s' ORDER BY r.created_at" % TOPPED)
    return [(int(q), topup == "1", status) for q, topup, status in rows]


def topup(t, s):
    """The crossing's order on its way, then the point rises: one top-up."""
    # A factory of its own: no order measured, the lead time assumed (5 s, no spread).
    s.sql("INSERT INTO factory (factory_id, identifier, name, api) VALUES"
          " (UNHEX('%s'), 'FF-TOP', 'top-up factory', NULL)" % ("BA" * 16))
    s.sql("INSERT INTO product (product_id, sku, name, price, stock, factory_id,"
          " reorder_quantity) VALUES (UNHEX('%s'), '%s', 'topped donut', 1000, 100,"
          " UNHEX('%s'), 10)" % ("AF" * 16, TOPPED, "BA" * 16))
    s.restockctl("product", "set", TOPPED, "service_level=95", check=True)
    # 1 unit a second: 5 in the lead time, Poisson's point nearest 95 % 8 (93.2 %; 9's
    # 96.8 % is farther), level 8 + 10.
    demand(s, 1.0, 1.0, TOPPED)
    t.ok(s.wait_until(lambda: s.sql("SELECT reorder_point, reorder_level FROM product"
                                    " WHERE sku = '%s'" % TOPPED) == [["8", "18"]], timeout=30),
         "a product with a target: point 8, level 18")
    r = s.request("POST", "/checkout", {"sku": TOPPED, "quantity": 92})
    t.is_(r.status, 200, "a sale takes the stock to the point, 8")
    t.ok(s.wait_until(lambda: topped_orders(s), timeout=30), "the crossing opens its order")
    t.is_([o[:2] for o in topped_orders(s)[:1]], [(10, False)],
          "for 10 (the level 18 - the stock 8), not a top-up")
    t.is_(len(topped_orders(s)), 1, "stock + on order 18 is above the point: no top-up")
    # The demand rises to 20 a second: point 116, level 216, far above 8 + 10.
    demand(s, 20.0, 20.0, TOPPED)
    t.ok(s.wait_until(lambda: len(topped_orders(s)) == 2, timeout=30),
         "the risen point opens a top-up while the crossing's order is on its way",
         topped_orders(s))
    got = topped_orders(s)
    t.is_(got[1][:2] if len(got) > 1 else None, (198, True),
          "for the difference to the level: 216 - (8 + 10) = 198")
    t.ok("event=replenishment_topup sku=%s" % TOPPED in s.log("worker"),
         "the worker logs it (event=replenishment_topup)")
    t.ok(s.wait_until(lambda: s.sql_value(
        "SELECT COUNT(*) FROM outbox o JOIN replenishment_order r USING (order_id)"
        " JOIN product p ON p.product_id = r.product_id"
        " WHERE p.sku = '%s' AND r.topup AND o.kind = 'reorder'" % TOPPED) == "1", timeout=30),
         "with its reorder event (the factory message)")
    # Still far below the point after another sweep: no second top-up while one is
    # on its way (and stock + on order is 216 now anyway).
    demand(s, 40.0, 40.0, TOPPED)
    t.ok(s.wait_until(lambda: s.sql_value("SELECT reorder_point FROM product WHERE sku = '%s'"
                                          % TOPPED) not in ("8", "116"), timeout=30),
         "the point rises again")
    t.is_(len(topped_orders(s)), 2, "one top-up at a time: no third order")
    line = products(s).get(TOPPED, {})
    t.is_(line.get("on_order"), "208", "restockctl products: on order 10 + 198")
    # Both delivered: one cycle, the crossing's; the top-up lived inside it.
    for oid, quantity in s.sql("SELECT HEX(r.order_id), r.quantity FROM replenishment_order r"
                               " JOIN product p USING (product_id) WHERE p.sku = '%s'" % TOPPED):
        s.restockctl("orders", "fulfil", as_uuid(oid), quantity, check=True)
    t.ok(s.wait_until(lambda: products(s).get(TOPPED, {}).get("achieved") == "100.0%/1",
                      timeout=30),
         "both delivered: achieved 100.0%/1, the top-up no cycle of its own",
         products(s).get(TOPPED))


if __name__ == "__main__":
    run_tests(body)
