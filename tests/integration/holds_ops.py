"""Integration test of what operators see of holds (issue 20 item 6) on the real
stack: `restockctl holds` lists the active holds made through the Sales API (by
product: holds, units, oldest, next expiry; then the oldest, with client, customer
and lines), follows their confirm and release, and says "none" when none is held;
`restockctl products` shows held beside stock; bad arguments and an unreachable
database exit 1 with one line (and no password). A hold whose row a transaction
keeps locked cannot be expired: past its expires_at, restockctl holds and the
worker's restock_hold_expiry_overdue_seconds show it waiting, and once the lock
goes the worker expires it and the lag histogram counts that late expiry."""

import os
import re
import subprocess
import urllib.request

from harness import BUILDDIR, Stack, run_tests

DONUT, CHOCO, MATCHA = "CP-502101", "CP-502102", "CP-502103"
TTL = 30  # the smallest ttl a hold may ask for: the lagging hold waits it out


def holds(s, *args):
    """restockctl holds: (process, {sku: row}, totals line, [hold rows]) where a
    row is a dict by the header's column names (the hold rows' lines: the rest)."""
    p = s.restockctl("holds", *args)
    products, listed, totals = {}, [], None
    header = hold_header = None
    for line in p.stdout.splitlines():
        if line.startswith("sku "):
            header = line.split()
        elif line.startswith("hold "):
            hold_header = line.split()
        elif line.startswith("active holds:"):
            totals = line
        elif hold_header and re.match(r"^[0-9a-f]{8}-", line):
            cols = line.split(None, len(hold_header) - 1)
            listed.append(dict(zip(hold_header, cols)))
        elif header and not hold_header and line.strip() and not line.startswith(("past ",
                                                                                "oldest ")):
            cols = line.split()
            products[cols[0]] = dict(zip(header, cols))
    return p, products, totals, listed


def products(s):
    p = s.restockctl("products")
    lines = [ln.split() for ln in p.stdout.splitlines() if ln.strip()]
    return {ln[0]: dict(zip(lines[0], ln)) for ln in lines[1:]} if p.returncode == 0 else {}


def make_hold(t, s, lines, headers=None, ttl=None):
    body = {"lines": [{"sku": sku, "quantity": q} for sku, q in lines]}
    if ttl is not None:
        body["ttl"] = ttl
    r = s.request("POST", "/holds", body, headers=headers)
    t.is_(r.status, 201, "POST /holds %s: 201" % lines)
    return r.json().get("hold") if r.status == 201 else None


def metric(s, name):
    with urllib.request.urlopen(s.info["METRICS_URL"], timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def listing(t, s):
    p, by_product, totals, listed = holds(s)
    t.is_(p.returncode, 0, "restockctl holds with no hold: exit 0")
    t.is_(p.stdout.strip(), "active holds: none", "it says none is held")

    for sku in (DONUT, CHOCO):
        s.sql("UPDATE product SET stock = 10 WHERE sku = '%s'" % sku)
    anon = make_hold(t, s, [(DONUT, 2)])
    key = s.restockctl("client", "add", "shop-web")
    m = re.search(r"^(rsk_\S+)$", key.stdout, re.M)
    t.ok(key.returncode == 0 and m, "an API client is added", key.stderr)
    client = {"Authorization": "Bearer " + (m.group(1) if m else ""), "Restock-Customer": "alice"}
    alice = make_hold(t, s, [(DONUT, 1), (CHOCO, 3)], headers=client)

    p, by_product, totals, listed = holds(s)
    t.is_(p.returncode, 0, "restockctl holds: exit 0")
    t.ok(sorted(by_product) == [DONUT, CHOCO], "it lists the two products held", p.stdout)
    t.is_([by_product.get(DONUT, {}).get(k) for k in ("holds", "units")], ["2", "3"],
          "%s: 2 holds, 3 units" % DONUT)
    t.is_([by_product.get(CHOCO, {}).get(k) for k in ("holds", "units")], ["1", "3"],
          "%s: 1 hold, 3 units" % CHOCO)
    t.ok(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", by_product.get(DONUT, {}).get("oldest", "")),
         "with the oldest's created_at in UTC", p.stdout)
    nxt = by_product.get(DONUT, {}).get("in", "")
    t.ok(re.match(r"^(9m|10m)", nxt), "and the time to its next expiry (hold_ttl 600 s): %s" % nxt)
    t.is_(totals, "active holds: 2, holding 6 units of 2 products", "the totals")
    t.is_([h.get("hold") for h in listed], [anon, alice], "the holds, oldest first")
    if len(listed) == 2:
        t.is_([listed[0][k] for k in ("client", "customer", "lines")],
              ["anonymous", "-", "%s x2" % DONUT], "an anonymous hold: client, no customer, line")
        t.is_([listed[1][k] for k in ("client", "customer", "lines")],
              ["shop-web", "alice", "%s x1, %s x3" % (DONUT, CHOCO)],
              "a client's hold: its name, its Restock-Customer, its lines in order")
    p, _, _, listed = holds(s, "--limit", "1")
    t.is_([h.get("hold") for h in listed], [anon], "--limit 1: the oldest only")

    line = products(s)
    t.is_([line.get(DONUT, {}).get(k) for k in ("stock", "held")], ["7", "3"],
          "restockctl products: held beside stock (10 - 3 held)")
    t.is_([line.get(CHOCO, {}).get(k) for k in ("stock", "held")], ["7", "3"],
          "for each product")
    t.is_(line.get(MATCHA, {}).get("held"), "0", "a product without holds: held 0")

    r = s.request("POST", "/holds/%s/confirm" % anon)
    t.is_(r.status, 200, "the anonymous hold is confirmed")
    p, by_product, totals, listed = holds(s)
    t.is_([h.get("hold") for h in listed], [alice], "a confirmed hold is no longer listed")
    t.is_(by_product.get(DONUT, {}).get("units"), "1", "%s: 1 unit held now" % DONUT)
    t.is_(products(s).get(DONUT, {}).get("held"), "1", "products: held 1 (2 sold)")
    r = s.request("DELETE", "/holds/%s" % alice, headers=client)
    t.is_(r.status, 200, "the client's hold is released")
    p, by_product, totals, listed = holds(s)
    t.is_(p.stdout.strip(), "active holds: none", "none held once both ended")
    t.is_([products(s).get(sku, {}).get("held") for sku in (DONUT, CHOCO)], ["0", "0"],
          "products: held 0 again")


def errors(t, s):
    for args, why in ((("--limit", "0"), "--limit \"0\": expected a positive number"),
                      (("--limit", "x"), "--limit \"x\": expected a positive number"),
                      (("extra",), "usage: restockctl holds [--limit N]")):
        p = s.restockctl("holds", *args)
        lines = p.stderr.splitlines()
        t.ok(p.returncode == 1 and len(lines) == 1 and why in lines[0] and p.stdout == "",
             "holds %s: exit 1, one line: %s" % (" ".join(args), why), p.stderr)
    # The database refusing restockctl: one line, exit 1, and never the password.
    env = dict(s.env, RESTOCK_CONFIG=s.info["RESTOCK_CONFIG"],
               RESTOCK_DB_PASSWORD="not-the-password-4242")
    p = subprocess.run([os.path.join(BUILDDIR, "ctl", "restockctl"), "holds"], env=env,
                       capture_output=True, text=True)
    lines = p.stderr.splitlines()
    t.ok(p.returncode == 1 and len(lines) == 1 and lines[0].startswith("restockctl: "),
         "holds with the database refusing it: exit 1, one line", p.stderr)
    t.ok("not-the-password-4242" not in p.stderr + p.stdout, "which does not show the password")


def lagging(t, s):
    """A hold whose row is locked by an open transaction (a long transaction, a
    stuck client) cannot leave held: past its expires_at it waits, which operators
    see; once the lock is gone, the worker expires it, late, and says how late."""
    s.sql("UPDATE product SET stock = 10 WHERE sku = '%s'" % MATCHA)
    before = metric(s, "restock_hold_expiry_lag_seconds_count")
    prompt = metric(s, 'restock_hold_expiry_lag_seconds_bucket{le="1"}')
    hold = make_hold(t, s, [(MATCHA, 2)], ttl=TTL)
    if hold is None:
        return
    lock = subprocess.Popen(
        ["mariadb", "--no-defaults", "--unbuffered", "-S", s.info["DB_SOCKET"], "-u", s.info["DB_USER"],
         "-p" + s.info["DB_PASSWORD"], "-N", "-B", s.info["DB_NAME"]],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lock.stdin.write("BEGIN; SELECT 'locked' FROM hold WHERE hold_id = UNHEX('%s')"
                         " FOR UPDATE;\n" % hold.replace("-", ""))
        lock.stdin.flush()
        t.is_(lock.stdout.readline().strip(), "locked", "a transaction locks the hold's row")
        t.ok(s.wait_until(lambda: (metric(s, "restock_hold_expiry_overdue_seconds") or 0) >= 1,
                          timeout=TTL + 30),
             "past its expires_at, restock_hold_expiry_overdue_seconds shows it waiting")
        p, by_product, totals, listed = holds(s)
        t.ok(by_product.get(MATCHA, {}).get("in", "").startswith("-"),
             "restockctl holds: its next expiry is past (negative)", p.stdout)
        t.ok(re.search(r"^past expires_at, not expired yet: the oldest by \S+$", p.stdout, re.M),
             "and it says the oldest waits past its time", p.stdout)
        t.is_(metric(s, "restock_holds_active"), 1.0, "restock_holds_active: 1")
    finally:
        lock.stdin.write("ROLLBACK;\n")
        lock.stdin.close()
        lock.wait(timeout=30)
    t.ok(s.wait_until(lambda: s.request("GET", "/holds/%s" % hold).json().get("status")
                      == "expired", timeout=30),
         "the lock gone, the worker expires the hold")
    t.is_(s.wait_until(lambda: metric(s, "restock_hold_expiry_lag_seconds_count") == before + 1),
          True, "the lag histogram counts that expiry")
    t.is_(metric(s, 'restock_hold_expiry_lag_seconds_bucket{le="1"}'), prompt,
          "as later than a second (not in the le=1 bucket)")
    t.is_(metric(s, "restock_hold_expiry_overdue_seconds"), 0.0, "nothing waits past its time")
    t.is_(metric(s, "restock_holds_active"), 0.0, "restock_holds_active: 0")
    t.is_(holds(s)[0].stdout.strip(), "active holds: none", "restockctl holds: none")


def body(t):
    with Stack(t, env={"RESTOCK_FACTORY_ARGS": "--silent"}) as s:
        listing(t, s)
        errors(t, s)
        lagging(t, s)


run_tests(body)
