"""The scenarios of the cluster test bed (tests/cluster/bed.py, docs/scaling.md), in
one bed, one after the other; each prints its figures and asserts what a user
observes (answers, rows, factory requests, emails). TAP on stdout, then a summary
table of every figure. Run by tests/cluster/run.

    tests/cluster/run [SCENARIO...]     (a b c d e f h p; default: all)

  a  a surge through both responders: 0 oversold, one order per stock-out
  b  two writers (each host's responders on their own node, not through HAProxy):
     certification failures (1213) retried, not answered 503
  c  kill -9 of the writer node mid-surge: the unavailability window, 0 oversold,
     every sale answered or retrievable by its Idempotency-Key
  d  kill -9 of a worker with its spool removed mid-surge: 0 orders lost, 0 double
     restocks, duplicate factory requests counted
  e  a worker paused (SIGSTOP) past its lease, then resumed: it sends nothing it no
     longer owns
  f  a node isolated from the others: HAProxy's check drops it, restock keeps selling,
     the node answers 1047 to a direct client
  h  holds on two writers: made through one node, confirmed or released through the
     other, each hold's units ended once, the hold found on the node that did not
     make it (a causal read), no 503
  p  (a bed of its own, every datadir on powercutfs) the power of the whole cluster
     lost mid-surge, with innodb_flush_log_at_trx_commit 2 and 1 in turn: the
     checkouts answered 200 lost, counted (with 1: none)
"""

import http.client
import json
import os
import random
import re
import signal
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bed as bedlib  # noqa: E402
from fuse_skip import why_no_fuse  # noqa: E402 (tests/fault/, on bed's path)
from harness import Tap  # noqa: E402

ANSWERED = (200, 409)  # what a checkout answers while the database answers
# Checkouts answered 200 that make a surge "running": before a fault is made, and
# through the cluster that took over after it.
SURGE = 100
B_RETRIES = 100  # db_retries of scenario b's responders (the setting's maximum)


class Precondition(Exception):
    """A scenario could not make the state it tests: what would follow tests nothing."""


def establish(value, what, detail=None):
    """A scenario's precondition, waited for before: it holds, or the scenario stops
    (reported as not having run to its end, with what was missing)."""
    if not value:
        raise Precondition(what if detail is None else "%s: %s" % (what, detail))
    return value


def require(t, value, name, detail=None):
    """A precondition that is a test line of its own too."""
    t.ok(bool(value), name, detail)
    return establish(value, name, detail)


class BedTap(Tap):
    """TAP with figures: each printed when measured, all in a table at the end."""

    def __init__(self):
        super().__init__()
        self.figures = []

    def figure(self, scenario, name, value):
        self.figures.append((scenario, name, value))
        self.diag("figure %s: %s = %s" % (scenario, name, value))

    def skip(self, name, why):
        with self.lock:
            self.count += 1
            print("ok %d - %s # SKIP %s" % (self.count, name, why), flush=True)

    def todo(self, cond, name, why, detail=None):
        """A known failure: reported, not counted (TAP's TODO)."""
        with self.lock:
            self.count += 1
            print("%sok %d - %s # TODO %s" % ("" if cond else "not ", self.count, name, why),
                  flush=True)
            if not cond and detail is not None:
                self.diag(detail)

    def table(self):
        width = max([len(n) for _, n, _ in self.figures] + [10])
        self.diag("")
        self.diag("%-3s %-*s %s" % ("", width, "figure", "value"))
        for scenario, name, value in self.figures:
            self.diag("%-3s %-*s %s" % (scenario, width, name, value))


def answers(load):
    """Counts of the answers by status (0: no answer at all)."""
    out = {}
    for r in load.results:
        out[r[1]] = out.get(r[1], 0) + 1
    return out


def check_ledger(t, b, name, skus, initial, sold_told):
    """0 oversold, nothing lost: per product, what was there plus what was delivered
    is what is left plus what was sold; what was sold is what clients were told."""
    led = b.wait_fulfilled(skus)
    balance = all(initial[s] + v["delivered"] == v["stock"] + v["sold"] for s, v in led.items())
    t.ok(balance, "%s: 0 oversold: per product, initial + delivered = stock + sold" % name,
         led)
    t.ok(all(v["orders"] == v["fulfilled"] for v in led.values()),
         "%s: every order was fulfilled" % name, led)
    sold = sum(v["sold"] for v in led.values())
    told = sum(sold_told.get(s, 0) for s in skus)
    return led, sold, told


def outage_window(results, t0):
    """(first failure after t0, first 200 after it) in seconds from t0, or Nones."""
    first_fail = next((r[0] for r in results if r[0] >= t0 and r[1] not in ANSWERED), None)
    if first_fail is None:
        return None, None
    first_ok = next((r[0] for r in results if r[0] > first_fail and r[1] == 200), None)
    return first_fail - t0, (first_ok - t0) if first_ok else None


def longest_gap(results):
    """The longest time no checkout was answered at all (a stall, not an error)."""
    times = sorted(r[0] for r in results)
    return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def sold_by_sku(results):
    out = {}
    for r in results:
        if r[1] == 200:
            out[r[2]] = out.get(r[2], 0) + r[3]
    return out


# -- a ---------------------------------------------------------------------------------
def surge(t, b):
    skus = b.add_products("SA", 3, stock=20)
    initial = {s: 20 for s in skus}
    load = bedlib.Load(b, skus, clients=6, pause=0.01, total=3000).start()
    load.join()
    got = answers(load)
    led, sold, told = check_ledger(t, b, "a", skus, initial, sold_by_sku(load.results))
    t.is_(sold, told, "a: units sold = the 200s told to clients")
    t.is_(got.get(503, 0) + got.get(0, 0), 0, "a: no checkout answered 503 or unanswered")
    stockouts = {s: sum(1 for r in load.results if r[1] == 200 and r[2] == s and r[5] == 0)
                 for s in skus}
    t.ok(all(led[s]["orders"] == stockouts[s] for s in skus),
         "a: exactly one order per stock-out", {s: (led[s]["orders"], stockouts[s]) for s in skus})
    per_host = {}
    for h in b.hosts:
        per_host[h.name] = h.checkouts()
    t.ok(all(v > 0 for v in per_host.values()), "a: both sales responders served checkouts",
         per_host)
    requests = b.factory_requests(skus)
    orders = sum(v["orders"] for v in led.values())
    b.figure("a", "checkouts", len(load.results))
    b.figure("a", "answered 200 / 409 / 503", "%d / %d / %d" % (
        got.get(200, 0), got.get(409, 0), got.get(503, 0)))
    b.figure("a", "checkouts per sales responder", " ".join(
        "%s %d" % kv for kv in sorted(per_host.items())))
    b.figure("a", "stock-outs / orders", "%d / %d" % (sum(stockouts.values()), orders))
    b.figure("a", "duplicate factory requests", len(requests) - orders)
    t.is_(len(requests), orders, "a: each order requested from the factory once")


# -- b ---------------------------------------------------------------------------------
def two_writers(t, b):
    """The hot row written on two nodes at once: checkouts without a key (the
    batched statement of the first version's clients) and with one (a
    transaction of their own). The responders run with db_retries at its
    maximum: two writers on one row conflict about once per checkout, and the
    longer a commit takes (a loaded machine) the likelier a retry meets the next
    conflict; with the default 10, one keyed checkout of 1,000 ran out of retries
    at a load of 16 on 2 cores. So "never answered 503" tests that a conflict is
    run again, not how fast the machine is; the largest attempt is a figure."""
    for h, n in zip(b.hosts, b.nodes):
        h.restart_responders({"RESTOCK_DB_PORT": str(n.port),
                              "RESTOCK_DB_RETRIES": str(B_RETRIES)})
    runs = {}
    try:
        for keyed in (False, True):
            sku = b.add_products("SB%d" % keyed, 1, stock=100000)[0]
            load = bedlib.Load(b, [sku], clients=8, pause=0, total=1000, keys=keyed).start()
            load.join()
            runs[keyed] = (sku, load)
    finally:
        for h in b.hosts:
            h.restart_responders()
    conflicts = sum(h.programs["sales"].text().count("(1213)") for h in b.hosts)
    retried = sum(h.programs["sales"].text().count("event=db_retry ") for h in b.hosts)
    largest = max([int(a) for h in b.hosts for a in re.findall(
        r"event=db_retry attempt=(\d+)", h.programs["sales"].text())] + [0])
    for keyed, (sku, load) in sorted(runs.items()):
        what = "with an Idempotency-Key" if keyed else "without a key"
        got = answers(load)
        led = b.ledger([sku])[sku]
        t.is_(100000, led["stock"] + led["sold"], "b: %s: 0 oversold: stock + sold = initial" % what)
        t.is_(led["sold"], got.get(200, 0), "b: %s: units sold = the 200s told" % what)
        b.figure("b", "%s: checkouts / 200 / 503" % what, "%d / %d / %d" % (
            len(load.results), got.get(200, 0), got.get(503, 0)))
        name = "b: %s: no certification failure answered 503 (retried)" % what
        # db_retry runs a rolled-back conflict again after a random pause
        # growing with the attempt, db_retries (10) times, keyed or not.
        t.is_(got.get(503, 0), 0, name)
    b.figure("b", "checkouts failed with 1213 / transactions run again (event=db_retry)",
             "%d / %d" % (conflicts, retried))
    b.figure("b", "largest attempt (db_retries %d)" % B_RETRIES, largest)


# -- c ---------------------------------------------------------------------------------
def kill_writer(t, b):
    skus = b.add_products("SC", 3, stock=2000)
    initial = {s: 2000 for s in skus}
    writer = b.node(establish(bedlib.wait_until(b.haproxy_writer, timeout=30),
                              "c: HAProxy sends sessions to a node"))
    load = bedlib.Load(b, skus, clients=4, pause=0.01).start()
    establish(bedlib.wait_until(lambda: load.count(200) >= SURGE, timeout=60),
              "c: checkouts answered 200 before the kill (mid-surge)", answers(load))
    t0 = time.time()
    writer.kill()
    # Until HAProxy sends new sessions to another node and checkouts are answered
    # 200 through it, after the failures if there were any.
    moved = []

    def recovered():
        if not moved:
            if b.haproxy_writer() in (None, writer.name):
                return False
            moved.append(time.time())
        fail_at, ok_at = outage_window(load.since(t0), t0)
        return load.count(200, moved[0]) >= SURGE and (fail_at is None or ok_at is not None)
    back = bedlib.wait_until(recovered, timeout=120, interval=0.5)
    load.stop()
    fail_at, ok_at = outage_window(sorted(load.results), t0)
    got = answers(load)
    failed = [r for r in load.results if r[1] not in ANSWERED]
    t.ok(back and (ok_at is not None or fail_at is None),
         "c: checkouts answer 200 again after the kill",
         "HAProxy moved after %s s; %s" % (
             round(moved[0] - t0, 1) if moved else "never", sorted(got.items())))
    b.figure("c", "writer killed", writer.name)
    b.figure("c", "checkouts / 200 / 409 / 503 / 504 (in doubt) / no answer",
             "%d / %d / %d / %d / %d / %d" % (
                 len(load.results), got.get(200, 0), got.get(409, 0), got.get(503, 0),
                 got.get(504, 0), got.get(0, 0)))
    b.figure("c", "first failure after the kill (s)", "%.2f" % fail_at if fail_at is not None
             else "none")
    b.figure("c", "unavailable: first 503 to first 200 (s)",
             "%.2f" % (ok_at - fail_at) if fail_at is not None and ok_at else "0")
    b.figure("c", "longest wait between two answers (s)", "%.2f" % longest_gap(load.results))
    told = sold_by_sku(load.results)
    sold_before = sum(v["sold"] for v in b.ledger(skus).values())
    b.figure("c", "units sold but not told 200 (before retries)",
             sold_before - sum(told.values()))
    replayed = fresh = 0
    for r in failed:
        again = b.checkout(r[2], r[3], r[4])
        again["conn"] and again["conn"].close()
        if again["status"] == 200:
            told[r[2]] = told.get(r[2], 0) + r[3]
            replayed += bool(again.get("replayed"))
            fresh += not again.get("replayed")
    b.figure("c", "503'd and 504'd keys retried: stored 200 replayed / run afresh",
             "%d / %d" % (replayed, fresh))
    led, sold, told_total = check_ledger(t, b, "c", skus, initial, told)
    t.ok(sold >= sum(sold_by_sku(load.results).values()), "c: every 200 is a sale")
    t.is_(sold, told_total, "c: after retrying each failed key, units sold = the 200s told")
    t0 = time.time()
    writer.start(recover=True)
    writer.wait_synced()
    b.figure("c", "killed node back Synced after restart (s)", round(time.time() - t0, 1))
    with open(writer.log, errors="replace") as f:
        log = f.read()
    ist = "IST received" in log or "Receiving IST" in log
    t.ok(ist, "c: the killed node rejoined by IST after --wsrep-recover (%s)" % writer.recovered)


# -- d ---------------------------------------------------------------------------------
def claims_of(b, host, skus=None, queue=None):
    """Open claims the host's worker holds (its worker_id ends with its spool folder),
    of the products' outbox events and of one queue when named."""
    where = "c.done_at IS NULL AND c.owner LIKE '%%%s'" % host.spool
    if queue is not None:
        where += " AND c.queue = '%s'" % queue
    if skus is None:
        query = "SELECT COUNT(*) FROM outbox_claim c WHERE " + where
    else:
        query = ("SELECT COUNT(*) FROM outbox_claim c JOIN outbox o ON o.event_id = c.event_id"
                 " JOIN product p ON p.product_id = o.product_id WHERE p.sku IN (%s) AND %s"
                 % (",".join("'%s'" % s for s in skus), where))
    return int(b.sql(query)[0][0])


def work_left(b, skus=None):
    """Outbox events (of the products, or all) that no worker claimed yet, and open
    claims of them (any worker's): (0, 0) when every message of them was delivered."""
    join = "" if skus is None else (
        " JOIN product p ON p.product_id = o.product_id WHERE p.sku IN (%s)"
        % ",".join("'%s'" % s for s in skus))
    row = b.sql("SELECT (SELECT COUNT(*) FROM outbox o%s%s NOT EXISTS (SELECT 1 FROM"
                " outbox_claim c WHERE c.event_id = o.event_id)), (SELECT COUNT(*) FROM"
                " outbox_claim c JOIN outbox o ON o.event_id = c.event_id%s%s c.done_at IS NULL)"
                % (join, " AND" if join else " WHERE", join, " AND" if join else " WHERE"))[0]
    return int(row[0]), int(row[1])


def order_ids(b, skus):
    rows = b.sql("SELECT LOWER(HEX(o.order_id)) FROM replenishment_order o JOIN product p"
                 " ON p.product_id = o.product_id WHERE p.sku IN (%s)"
                 % ",".join("'%s'" % s for s in skus))
    return [r[0] for r in rows]


def requests_per_order(b):
    """Order id (hex) -> requests the factory received for it."""
    counts = {}
    for r in b.factory_requests():
        url = r["body"].get("CallbackUrl", "") if isinstance(r.get("body"), dict) else ""
        order = url.split("/callbacks/factory/")[-1].split("?")[0].replace("-", "").lower()
        counts[order] = counts.get(order, 0) + 1
    return counts


def kill_worker(t, b):
    host, other = b.hosts
    # The state the scenario tests, made: host1's worker alone claims the orders
    # of the surge (the other worker stopped for that moment) while the factory
    # fails, so that each of them waits, claimed and tried, in host1's spool.
    other.stop("worker")
    b.sim("POST", "/_sim/config", {"fail_rate": 1.0})
    skus = b.add_products("SD", 6, stock=5)
    initial = {s: 5 for s in skus}
    load = bedlib.Load(b, skus, clients=4, pause=0.01).start()

    def holding():
        # Every product sold out (no order comes while the factory fails), each
        # order's factory message claimed by host1 and deferred in its spool.
        led = b.ledger(skus)
        orders = sum(v["orders"] for v in led.values())
        if not all(v["stock"] == 0 and v["orders"] >= 1 for v in led.values()):
            return 0
        if claims_of(b, host, skus, "factory") != orders:
            return 0
        return orders if host.spool_count("factory", "deferred") >= orders else 0
    orders = bedlib.wait_until(holding, timeout=60)
    require(t, orders, "d: %s's worker holds claims of orders it cannot send yet" % host.name,
            "claims %d, deferred %d, ledger %s" % (
                claims_of(b, host, skus, "factory"), host.spool_count("factory", "deferred"),
                b.ledger(skus)))
    takeovers = other.programs["worker"].text().count("event=outbox_taken_over")
    other.start("worker")  # back, to take the claims over (its log is appended to)
    worker = other.programs["worker"]
    held = claims_of(b, host)
    host.programs["worker"].proc.kill()
    host.programs["worker"].proc.wait()
    shutil.rmtree(host.spool)
    os.makedirs(host.spool)
    killed = time.time()
    b.sim("POST", "/_sim/reset", {})
    b.sim("POST", "/_sim/config", {"fail_rate": 0.0})
    # The surge goes on until the other worker took the orders over and the
    # restocked products sell again.
    bedlib.wait_until(lambda: worker.text().count("event=outbox_taken_over") - takeovers >= orders
                      and load.count(200, killed) >= SURGE, timeout=120, interval=0.5)
    load.stop()
    led, sold, told = check_ledger(t, b, "d", skus, initial, sold_by_sku(load.results))
    took = time.time() - killed
    t.is_(sold, told, "d: units sold = the 200s told to clients")
    t.ok(all(v["delivered"] == v["orders"] * bedlib.REORDER for v in led.values()),
         "d: 0 double restocks: each order delivered once", led)
    ids = order_ids(b, skus)
    got = requests_per_order(b)
    t.ok(all(got.get(i, 0) >= 1 for i in ids),
         "d: every order reached the factory", got)
    b.figure("d", "claims the killed worker held", held)
    b.figure("d", "orders / all fulfilled after the kill (s)", "%d / %.1f (lease_time %s)" % (
        len(ids), took, b.extra_conf.get("lease_time")))
    b.figure("d", "duplicate factory requests", sum(max(0, got.get(i, 0) - 1) for i in ids))
    taken_over = worker.text().count("event=outbox_taken_over") - takeovers
    t.ok(taken_over >= orders, "d: the other worker logged the takeover",
         "%d outbox_taken_over of %d orders" % (taken_over, orders))
    host.start("worker")  # back, with an empty spool


# -- e ---------------------------------------------------------------------------------
def stop_idle(host, timeout=60):
    """SIGSTOP of the host's worker at a moment none of its deliveries is in flight:
    stopped (every thread), then nothing in active/ of its factory and mail queues
    (a delivery holds its message there from its take, before the claim's check,
    to its end). Stopped in the middle of one, it is resumed and stopped again once
    that delivery ended. A delivery past its check when paused would go out when
    resumed: that is the duplicate design.md §4.10 allows, not what e tests."""
    worker = host.programs["worker"]

    def idle():
        return host.spool_count("factory", "active") + host.spool_count("mail", "active") == 0

    def stopped_idle():
        worker.signal(signal.SIGSTOP)
        if not bedlib.wait_until(worker.stopped, timeout=10, interval=0.02):
            return False
        if idle():
            return True
        worker.signal(signal.SIGCONT)
        bedlib.wait_until(idle, timeout=10, interval=0.02)
        return False
    return bedlib.wait_until(stopped_idle, timeout=timeout, interval=0.02)


def pause_worker(t, b):
    first, paused = b.hosts
    worker = paused.programs["worker"]
    # What the scenarios before sent is sent: the emails counted below are e's.
    establish(bedlib.wait_until(lambda: work_left(b) == (0, 0), timeout=60),
              "e: the outbox work of the scenarios before done", work_left(b))
    first.stop("worker")  # only the paused-to-be worker claims for a moment
    mails_before = len(b.mails())
    lost_before = worker.text().count("event=lease_lost")
    b.sim("POST", "/_sim/config", {"fail_rate": 1.0})
    skus = b.add_products("SE", 4, stock=3)
    initial = {s: 3 for s in skus}
    load = bedlib.Load(b, skus, clients=4, pause=0.01, total=200).start()
    load.join()
    require(t, bedlib.wait_until(lambda: claims_of(b, paused, skus, "factory") >= len(skus),
                                 timeout=60),
            "e: %s's worker holds the claims of the %d orders" % (paused.name, len(skus)),
            claims_of(b, paused, skus))
    # Each order tried and deferred (the factory fails), each pause email sent
    # (the mail claims done): what it holds when paused is what it cannot send yet.
    establish(bedlib.wait_until(
        lambda: paused.spool_count("factory", "deferred") >= len(skus)
        and not claims_of(b, paused, skus, "mail") and len(b.mails()) >= mails_before + len(skus),
        timeout=60), "e: the orders deferred and the pause emails sent before the pause",
        "deferred %d, mail claims %d, emails %d" % (
            paused.spool_count("factory", "deferred"), claims_of(b, paused, skus, "mail"),
            len(b.mails()) - mails_before))
    try:
        establish(stop_idle(paused), "e: %s's worker paused with no delivery in flight"
                  % paused.name)
        delivered_before = worker.text().count("event=delivered ")
        b.sim("POST", "/_sim/reset", {})
        b.sim("POST", "/_sim/config", {"fail_rate": 0.0})
        first.start("worker")
        led, sold, told = check_ledger(t, b, "e", skus, initial, sold_by_sku(load.results))
        # Every message of the products delivered by the first worker: each event
        # claimed, no claim open, each product's pause and resume emails received.
        establish(bedlib.wait_until(lambda: work_left(b, skus) == (0, 0) and len(b.mails()) >=
                                    mails_before + 2 * len(skus), timeout=60),
                  "e: the first worker delivered everything before the resume",
                  "unclaimed events, open claims %s; emails %d" % (
                      work_left(b, skus), len(b.mails()) - mails_before))
        requests_then, mails_then = requests_per_order(b), len(b.mails())
    finally:
        worker.signal(signal.SIGCONT)
    # Resumed, it drops what it held (lease_lost, to done/ unsent) until its spool
    # has nothing waiting: nothing it could still send.
    t.ok(bedlib.wait_until(lambda: worker.text().count("event=lease_lost") - lost_before
                           >= len(skus), timeout=30),
         "e: resumed, the paused worker logs lease_lost for what it held",
         worker.text().count("event=lease_lost") - lost_before)
    establish(bedlib.wait_until(lambda: sum(paused.spool_count(q, "incoming", "active", "deferred")
                                            for q in ("factory", "mail")) == 0, timeout=30),
              "e: the resumed worker's spool has nothing waiting",
              {q: paused.spool_count(q, "incoming", "active", "deferred")
               for q in ("factory", "mail")})
    t.is_(worker.text().count("event=delivered "), delivered_before,
          "e: the resumed worker delivered nothing more")
    t.is_(requests_per_order(b), requests_then, "e: the factory received nothing more")
    t.is_(len(b.mails()), mails_then, "e: no email more")
    ids = order_ids(b, skus)
    t.ok(all(requests_then.get(i, 0) == 1 for i in ids),
         "e: each order requested once after the takeover", requests_then)
    t.ok(all(v["delivered"] == v["orders"] * bedlib.REORDER for v in led.values()),
         "e: each order restocked once", led)
    b.figure("e", "lease_lost logged by the resumed worker",
             worker.text().count("event=lease_lost") - lost_before)
    b.figure("e", "factory requests / emails after it resumed", "0 / 0" if
             requests_per_order(b) == requests_then and len(b.mails()) == mails_then else "some")


# -- f ---------------------------------------------------------------------------------
def isolate_node(t, b):
    for n in b.nodes:  # a node isolated from two others, not from one
        n.wait_synced()
    node = b.node(establish(bedlib.wait_until(b.haproxy_writer, timeout=30),
                            "f: HAProxy sends sessions to a node"))
    skus = b.add_products("SF", 3, stock=2000)
    initial = {s: 2000 for s in skus}
    # host2's responders reach the nodes by a host list, the writer first, not
    # through HAProxy: the isolated node's 1047 must move them to the next.
    listed = b.hosts[1]
    order = [node] + [n for n in b.nodes if n is not node]
    listed.restart_responders({"RESTOCK_DB_HOST": ",".join(
        "127.0.0.1:%d" % n.port for n in order)})
    failovers = listed.programs["sales"].text().count("event=db_failover")
    load = bedlib.Load(b, skus, clients=4, pause=0.01).start()
    establish(bedlib.wait_until(lambda: load.count(200) >= SURGE, timeout=60),
              "f: checkouts answered 200 before the isolation (mid-surge)", answers(load))
    t0 = time.time()
    node.root("SET GLOBAL wsrep_provider_options = 'gmcast.isolate=1'")
    left = bedlib.wait_until(lambda: node.status().get("wsrep_cluster_status") not in
                             (None, "Primary"), timeout=30)
    t_left = time.time() - t0
    t.ok(left, "f: the isolated %s left the primary component" % node.name)
    dropped = bedlib.wait_until(lambda: b.haproxy_writer() not in (None, node.name), timeout=60)
    t_drop = time.time() - t0
    t.ok(dropped, "f: HAProxy's check dropped the isolated %s" % node.name)
    code, err = node.direct("SELECT COUNT(*) FROM product")
    t.ok(code != 0 and "1047" in err, "f: the isolated node answers 1047 to a direct client",
         err)
    # Until checkouts are answered 200 through the other nodes, and host2's
    # responder, with its host list, met the isolated node and moved on.
    bedlib.wait_until(lambda: load.count(200, t0 + t_drop) >= SURGE and listed.programs[
        "sales"].text().count("event=db_failover") > failovers, timeout=60, interval=0.5)
    load.stop()
    got = answers(load)
    t.ok(any(r[1] == 200 for r in load.since(t0 + t_drop)),
         "f: restock keeps selling through the other nodes")
    fail_at, ok_at = outage_window(sorted(load.results), t0)
    b.figure("f", "isolated", node.name)
    b.figure("f", "it left the primary component after (s)", round(t_left, 1))
    b.figure("f", "HAProxy sent new sessions elsewhere after (s)", round(t_drop, 1))
    b.figure("f", "checkouts / 200 / 409 / 503 / 504 (in doubt) / no answer",
             "%d / %d / %d / %d / %d / %d" % (
                 len(load.results), got.get(200, 0), got.get(409, 0), got.get(503, 0),
                 got.get(504, 0), got.get(0, 0)))
    b.figure("f", "unavailable: first 503 to first 200 (s)",
             "%.2f" % (ok_at - fail_at) if fail_at is not None and ok_at else "0")
    b.figure("f", "longest wait between two answers (s)", "%.2f" % longest_gap(load.results))
    fails = [r[0] for r in load.results if r[1] not in ANSWERED]
    b.figure("f", "503s from the first to the last (s)",
             "%.2f" % (max(fails) - min(fails)) if fails else "0")
    check_ledger(t, b, "f", skus, initial, sold_by_sku(load.results))
    log = listed.programs["sales"].text()
    moved = log.count("event=db_failover") - failovers
    codes = sorted(set(re.findall(r"\((1047|1180|2013|2006)\)", log)))
    t.ok(moved > 0,
         "f: a responder with a host list took the isolated node's errors as a lost connection and "
         "moved to the next host (event=db_failover)", log[-3000:])
    b.figure("f", "host2's sales threads that failed over (host list)", moved)
    b.figure("f", "errors host2's responder saw from the isolated node", " ".join(codes))
    listed.restart_responders()
    node.root("SET GLOBAL wsrep_provider_options = 'gmcast.isolate=0'")
    t0 = time.time()
    try:
        node.wait_synced(timeout=60)
        how = "rejoined when isolate=0"
    except RuntimeError:
        node.kill()
        node.start(recover=True)
        node.wait_synced()
        how = "restarted (kill -9, --wsrep-recover)"
    b.figure("f", "node back Synced (s)", "%.1f, %s" % (time.time() - t0, how))


# -- p ---------------------------------------------------------------------------------
# innodb_flush_log_at_trx_commit of scenario p's cuts: the same on every node, or 1 on
# the node HAProxy sends sessions to (the one writer) and 2 on the others.
CUT_SETTINGS = {"2": "flush 2 on every node", "1": "flush 1 on every node",
                "w": "flush 1 on the writer, 2 on the others"}


def cut_settings():
    """The setting of each cut: RESTOCK_CLUSTER_CUTS (default 1) cuts of each setting
    of RESTOCK_CLUSTER_FLUSH (CUT_SETTINGS' keys, default "2 1"), in turn."""
    per = int(os.environ.get("RESTOCK_CLUSTER_CUTS", "1"))
    settings = os.environ.get("RESTOCK_CLUSTER_FLUSH", "2 1").split()
    for v in settings:
        if v not in CUT_SETTINGS:
            raise ValueError("RESTOCK_CLUSTER_FLUSH: %r is none of %s"
                             % (v, " ".join(CUT_SETTINGS)))
    return [v for _ in range(per) for v in settings]


def set_flush(b, setting, cut):
    """Sets innodb_flush_log_at_trx_commit on every node for the setting (SET GLOBAL)
    and checks that each node runs with it."""
    writer = establish(b.haproxy_writer(), "p: cut %d: HAProxy sends sessions to a node" % cut)
    want = {n.name: 2 if setting == "2" or (setting == "w" and n.name != writer) else 1
            for n in b.nodes}
    for n in b.nodes:
        n.root("SET GLOBAL innodb_flush_log_at_trx_commit = %d" % want[n.name])
    got = {n.name: int(b.sql("SELECT @@innodb_flush_log_at_trx_commit", node=n)[0][0])
           for n in b.nodes}
    establish(got == want, "p: cut %d: %s" % (cut, CUT_SETTINGS[setting]), got)
    return writer


def check_cut(b, load, skus):
    """What the cluster holds after a power loss against what the clients were told:
    (200s checked, answer times of the 200s lost, the 409s and 503s whose key says
    sold, the 504s (in doubt) and how many of them sold, units told and not in
    sold_total, sold_total per node)."""
    keys = [r[4] for r in load.results if r[4]]
    rows = {}
    for i in range(0, len(keys), 500):
        rows.update((k, int(v)) for k, v in b.sql(
            "SELECT idem_key, status FROM checkout_key WHERE idem_key IN (%s)"
            % ",".join("'%s'" % k for k in keys[i:i + 500])))
    ok = [r for r in load.results if r[1] == 200]
    lost = [r for r in ok if rows.get(r[4]) != 200]
    sold_refused = [r for r in load.results if r[1] in (409, 503) and rows.get(r[4]) == 200]
    doubt = [r for r in load.results if r[1] == 504]
    doubt_sold = sum(1 for r in doubt if rows.get(r[4]) == 200)
    told = sold_by_sku(load.results)
    per_node = {}
    for n in b.nodes:
        per_node[n.name] = {r[0]: int(r[1]) for r in b.sql(
            "SELECT sku, sold_total FROM product WHERE sku IN (%s)"
            % ",".join("'%s'" % s for s in skus), node=n)}
    sold = next(iter(per_node.values()))
    units = sum(max(0, told.get(s, 0) - sold.get(s, 0)) for s in skus)
    return len(ok), lost, sold_refused, (len(doubt), doubt_sold), units, per_node


def power_loss(t, b):
    """The power of the whole cluster goes mid-surge, again and again: every node's
    mariadbd killed at once and its un-fsync'd writes dropped (powercutfs), then the
    cluster started by MariaDB's procedure. Each cut runs with one setting of
    innodb_flush_log_at_trx_commit (CUT_SETTINGS, SET GLOBAL on each node); what it
    lost is counted against the answers the clients were told."""
    establish(b.powercut, "p: the bed's datadirs on powercutfs mounts")
    seed = int(os.environ.get("RESTOCK_CLUSTER_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    t.diag("p: random seed %d (RESTOCK_CLUSTER_SEED=%d repeats the moments)" % (seed, seed))
    # What the bed ran with until now: the node's command line.
    b.figure("p", "innodb_flush_log_at_trx_commit of the bed's nodes", " ".join(
        b.sql("SELECT @@innodb_flush_log_at_trx_commit", node=n)[0][0] for n in b.nodes))
    settings = cut_settings()
    skus = [b.add_products("PC%d" % i, 2, stock=1000000) for i in range(len(settings))]
    stats = {f: {"cuts": 0, "checked": 0, "lost": 0, "units": 0, "refused": 0, "replayed": 0,
                 "window": [], "rate": []} for f in settings}
    for i, flush in enumerate(settings):
        # The state each surge starts from is durable: the products, and what the
        # restart after the cut before wrote. A state transfer (rsync, SST or IST)
        # fsyncs nothing it copies: on a disk the kernel writes it back within
        # about 30 s (vm.dirty_expire_centisecs), on powercutfs never. Without
        # this, a cut soon after an SST leaves the joiner a mix of durable and
        # dropped files that InnoDB's recovery calls corrupt (docs/scaling.md).
        for n in b.nodes:
            n.mount.command("sync-all")
        writer = set_flush(b, flush, i + 1)
        if flush == "1" and i == settings.index("1"):
            # With 1 on every node and the binary log synced (the bed's nodes run
            # with it), restock calls the cluster durable (lib/db.c, db_durability).
            status = subprocess.run([os.path.join(bedlib.BUILDDIR, "ctl", "restockctl"),
                                     "status"], capture_output=True, text=True,
                                    env=dict(os.environ, RESTOCK_CONFIG=b.hosts[0].conf))
            t.ok("database: durable" in status.stdout,
                 "p: restockctl status calls the cluster durable (flush 1, log_bin, "
                 "sync_binlog 1)", status.stdout[-600:] + status.stderr[-600:])
        load = bedlib.Load(b, skus[i], clients=4, pause=0).start()
        # A random moment of the surge, counted in answers received: after 1 to 5
        # seconds of it at the bed's pace, past at least one of InnoDB's once a
        # second log flushes.
        target = rng.randint(5 * SURGE, 25 * SURGE)
        establish(bedlib.wait_until(lambda: load.count(200) >= target, timeout=120),
                  "p: cut %d: %d checkouts answered 200 before the cut" % (i + 1, target),
                  answers(load))
        t_cut = time.time()
        dropped = b.power_loss(rng)
        load.stop()
        t0 = time.time()
        first, positions, joined = b.cold_start()
        back = time.time() - t0
        checked, lost, sold_refused, (doubt, doubt_sold), units, per_node = check_cut(
            b, load, skus[i])
        # A sale whose commit was in flight when the power went is answered 504 (in
        # doubt: the database went away before its answer), and may be either; a
        # 409 or a 503 sold is a sale the client was told did not happen.
        refused = len(sold_refused)
        st = stats[flush]
        st["doubt"] = st.get("doubt", 0) + doubt
        st["replayed"] += doubt_sold
        st["cuts"] += 1
        st["checked"] += checked
        st["lost"] += len(lost)
        st["units"] += units
        st["refused"] += refused
        for how in joined.values():
            st[how] = st.get(how, 0) + 1
        if lost:
            st["window"].append(t_cut - min(r[0] for r in lost))
            # What a lost answer was, for whoever looks into it: when it came (from
            # the first SIGKILL), its key and the stock it told.
            t.diag("p: cut %d: lost through %s (the writer): %s; torn: %s" % (
                i + 1, writer, "; ".join("%+.4f s key %s remaining %s"
                                         % (r[0] - t_cut, r[4], r[5]) for r in sorted(lost)[:10]),
                {k: d.get("torn") for k, d in dropped.items()}))
        ok_times = sorted(r[0] for r in load.results if r[1] == 200)
        if len(ok_times) > 1:
            st["rate"].append((len(ok_times) - 1) / (ok_times[-1] - ok_times[0]))
        t.diag("p: cut %d (%s): answers %s; %d answered 200, %d lost (answered in the "
               "last %s s before the cut), %d 504s (in doubt) of which %d sold, %d 409/503 "
               "sold; seqnos recovered %s, bootstrapped "
               "%s, joined %s, back in %.1f s; dropped %s"
               % (i + 1, CUT_SETTINGS[flush], sorted(answers(load).items()), checked, len(lost),
                  "%.2f" % (t_cut - min(r[0] for r in lost)) if lost else "-", doubt,
                  doubt_sold, refused,
                  " ".join("%s %s" % (k, v.rsplit(":", 1)[1])
                           for k, v in sorted(positions.items())),
                  first.name, " ".join("%s %s" % kv for kv in sorted(joined.items())), back,
                  {k: {x: y for x, y in d.items() if y and x != "torn"}
                   for k, d in dropped.items()}))
        t.ok(all(v == next(iter(per_node.values())) for v in per_node.values()),
             "p: cut %d: the three nodes hold the same sold_total after the restart" % (i + 1),
             per_node)
    for flush, st in sorted(stats.items()):
        name = CUT_SETTINGS[flush]
        b.figure("p", "%s: cuts / 200s checked / lost / units told not in sold_total" % name,
                 "%d / %d / %d / %d" % (st["cuts"], st["checked"], st["lost"], st["units"]))
        b.figure("p", "%s: lost 200s answered in the last (s before each cut)" % name,
                 " ".join("%.2f" % w for w in st["window"]) or "-")
        b.figure("p", "%s: after the cuts, nodes joined by IST / by SST" % name,
                 "%d / %d" % (st.get("IST", 0), st.get("SST", 0)))
        b.figure("p", "%s: 200s per second during the surges" % name, " ".join(
            "%.0f" % r for r in st["rate"]))
        b.figure("p", "%s: answered 504 (in doubt) / of them sold" % name,
                 "%d / %d" % (st.get("doubt", 0), st["replayed"]))
        t.is_(st["refused"], 0, "p: %s: no checkout answered 409 or 503 is sold" % name)
    # With the writer's commits durable at their answer, the node bootstrapped (the
    # highest position) holds every acknowledged sale.
    for flush in ("1", "w"):
        if flush in stats:
            t.is_(stats[flush]["lost"] + stats[flush]["units"], 0,
                  "p: %s: no checkout answered 200 lost over %d power losses of the whole "
                  "cluster" % (CUT_SETTINGS[flush], stats[flush]["cuts"]))


# -- h ---------------------------------------------------------------------------------
H_HOLDS = 400  # holds made, each then confirmed or released


def hold_request(b, method, path, body=None, key=None):
    """One request of the holds API through nginx: (status, JSON body or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=60)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key:
        headers["Idempotency-Key"] = key
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=headers)
        r = conn.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, None
    except (OSError, http.client.HTTPException):
        return 0, None
    finally:
        conn.close()


def holds_two_writers(t, b):
    """Holds of one hot product on two writers at once (each host's responders on a
    node of their own, as in b; nginx spreads the requests over both hosts): a hold
    made through one node is confirmed or released through whichever comes next.
    Half the holds carry an Idempotency-Key (its row written in the batch's
    transaction), half not. Every hold's units end once, whatever node ends it;
    certification conflicts are run again, never answered 503; the product's
    identity holds."""
    for h, n in zip(b.hosts, b.nodes):
        h.restart_responders({"RESTOCK_DB_PORT": str(n.port),
                              "RESTOCK_DB_RETRIES": str(B_RETRIES)})
    stock = 100000
    sku = b.add_products("SH", 1, stock=stock)[0]
    made, ended, failed = [], {}, []
    lock = threading.Lock()
    rng = random.Random()

    def client(n):
        for i in range(n, H_HOLDS, 8):
            # Half with a key, half without: batches with and without keys' rows.
            status, j = hold_request(b, "POST", "/holds",
                                     {"lines": [{"sku": sku, "quantity": 1}], "ttl": 600},
                                     key=("hold-%032x" % rng.getrandbits(128)
                                          if i % 2 else None))
            if status != 201 or not j:
                with lock:
                    failed.append(("create", status, j))
                continue
            confirm = rng.random() < 0.5
            path = "/holds/%s%s" % (j["hold"], "/confirm" if confirm else "")
            status, j2 = hold_request(b, "POST" if confirm else "DELETE", path)
            with lock:
                made.append(j["hold"])
                if status == 200 and j2 and j2.get("status") in ("confirmed", "released"):
                    ended[j["hold"]] = j2["status"]
                else:
                    failed.append(("confirm" if confirm else "release", status))
    try:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        for h in b.hosts:
            h.restart_responders()
    confirmed = sum(1 for v in ended.values() if v == "confirmed")
    b.figure("h", "holds made / confirmed / released / failed answers", "%d / %d / %d / %d" % (
        len(made), confirmed, len(ended) - confirmed, len(failed)))
    t.is_(failed, [], "h: every hold made (201) and ended (200) on two writers: no 503")
    row = b.sql("SELECT stock, held, sold_total FROM product WHERE sku = '%s'" % sku)[0]
    got = dict(zip(("stock", "held", "sold"), (int(v) for v in row)))
    t.is_(got, {"stock": stock - confirmed, "held": 0, "sold": confirmed},
          "h: the units of every hold ended once: stock, held 0, sold = the confirms told")
    rows = dict(b.sql("SELECT status, COUNT(*) FROM hold h JOIN hold_line l"
                      " ON l.hold_id = h.hold_id JOIN product p ON p.product_id = l.product_id"
                      " WHERE p.sku = '%s' GROUP BY status" % sku))
    t.is_({k: int(v) for k, v in rows.items()},
          {k: v for k, v in (("1", confirmed), ("2", len(ended) - confirmed)) if v},
          "h: the hold rows say confirmed and released as the clients were told")
    nodes = {n.name: b.sql("SELECT stock, held, sold_total FROM product WHERE sku = '%s'" % sku,
                           node=n)[0] for n in b.nodes}
    t.ok(len({tuple(v) for v in nodes.values()}) == 1, "h: the three nodes agree", nodes)
    b.figure("h", "transactions run again (event=db_retry)",
             sum(h.programs["sales"].text().count("event=db_retry ") for h in b.hosts))
    # A transaction the cluster rolled back without telling the client, caught by
    # lib/db.c's guard (its savepoint gone at the commit) and run again.
    b.figure("h", "transactions lost silently and caught (event=db_transaction_lost)",
             sum(h.programs["sales"].text().count("event=db_transaction_lost ") for h in b.hosts))


SCENARIOS = {"a": surge, "b": two_writers, "c": kill_writer, "d": kill_worker,
             "e": pause_worker, "f": isolate_node, "h": holds_two_writers,
             "p": power_loss}
# Run on a bed of their own, every node's datadir on a powercutfs mount.
POWERCUT = ("p",)


def main():
    wanted = sys.argv[1:] or sorted(SCENARIOS)
    for w in wanted:
        if w not in SCENARIOS:
            print("scenarios: unknown scenario %s (%s)" % (w, " ".join(sorted(SCENARIOS))),
                  file=sys.stderr)
            sys.exit(2)
    # Stopped from outside (a CI timeout, a closed terminal): everything the bed
    # started is stopped too, by the with block below.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, frame: sys.exit(128 + number))
    t = BedTap()
    started = time.time()
    for powercut in (False, True):
        group = [w for w in wanted if (w in POWERCUT) == powercut]
        if powercut and group and why_no_fuse():
            for w in group:
                t.skip("scenario %s" % w, why_no_fuse())
            continue
        if group:
            run_bed(t, group, powercut)
    t.figures.append(("", "whole bed (s)", round(time.time() - started, 1)))
    t.table()
    t.done()


def run_bed(t, wanted, powercut):
    try:
        with bedlib.Bed(t, powercut=powercut) as b:
            t.diag("bed in %s%s" % (b.dir, ", datadirs on powercutfs" if powercut else ""))
            for w in wanted:
                t0 = time.time()
                t.diag("--- scenario %s: %s" % (w, SCENARIOS[w].__name__))
                try:
                    SCENARIOS[w](t, b)
                except Exception:
                    import traceback
                    t.ok(False, "scenario %s ran to its end" % w, traceback.format_exc())
                finally:
                    b.calm()
                b.figure(w, "scenario took (s)", round(time.time() - t0, 1))
    except Exception:
        import traceback
        t.ok(False, "the bed ran to its end", traceback.format_exc())


if __name__ == "__main__":
    main()
