"""Integration test of what keeps a worker's claims its own (issue 18, item 7;
docs/design.md §4.10), with two workers on one database:

- A second live worker with the same worker_id is refused at start, with a clear
  error and a non-zero exit; after the first is killed (kill -9), a restart of
  the second succeeds within about lease_time (at once when the dead run was of
  this machine and its pid is gone).
- A slow statement of the sweep (a test session holds the lock of an ad row that
  the sweep's transaction waits for, longer than lease_time) does not cost the
  live worker its other claims: the renewal runs on a thread and a connection of
  its own. The other worker takes nothing over, nobody logs lease_lost, and each
  order reaches the factory once.
- Leases are the database's UTC clock: a worker whose database sessions are in
  +05:00 stores a lease that ends lease_time from UTC now, not five hours later,
  and a worker in -03:00 takes a dead worker's claim over within about
  lease_time, not eight hours later."""

import re
import subprocess
import time

from harness import Stack, run_tests
from replenish_common import (REORDER, factory_callbacks, orders, sim_config, sim_reset)
from workers_lease import accepted, add_shop, all_fulfilled, order_ids, sell_all

LEASE = 4
# Retries far apart: a deferred delivery's claim check (which renews its lease)
# does not come within a blocked sweep, so that only the renewal keeps it.
ENV = {"RESTOCK_FACTORY_ARGS": "--delay 0.5", "RESTOCK_SWEEP_INTERVAL": "1",
       "RESTOCK_BACKOFF_MIN": "20", "RESTOCK_BACKOFF_MAX": "20",
       "RESTOCK_LEASE_TIME": str(LEASE), "RESTOCK_ATTEMPT_TIMEOUT": "2"}


def root_sql(s, query):
    """SQL as the private MariaDB's root (SET GLOBAL, information_schema.innodb_trx);
    the output, tab-separated."""
    return subprocess.run(["mariadb", "--no-defaults", "-S", s.info["DB_SOCKET"], "-u", "root",
                           "-N", "-B", "-e", query], check=True, capture_output=True,
                          text=True).stdout.strip()


class Session:
    """A database session of the test that stays open (to hold a lock)."""

    def __init__(self, s):
        self.p = subprocess.Popen(
            ["mariadb", "--no-defaults", "-S", s.info["DB_SOCKET"], "-u", s.info["DB_USER"],
             "-p" + s.info["DB_PASSWORD"], "-N", "-B", "-n", s.info["DB_NAME"]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def query(self, sql):
        """Runs sql and returns its first line of output (it must print one)."""
        self.p.stdin.write(sql + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def close(self):
        self.p.stdin.write("ROLLBACK;\n")
        self.p.stdin.close()
        self.p.wait(30)


def claim_of(s, sku, queue="factory"):
    """(owner, epoch, seconds left on its lease by the database's UTC clock) of the
    claim of the product's stock_empty event, or None."""
    rows = s.sql("SELECT c.owner, c.epoch, TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(6), c.lease_until),"
                 " CAST(c.lease_until AS CHAR) FROM outbox_claim c"
                 " JOIN outbox o ON o.event_id = c.event_id"
                 " JOIN product p ON p.product_id = o.product_id"
                 " WHERE p.sku = '%s' AND o.kind = 'stock_empty' AND c.queue = '%s'" % (sku, queue))
    return (rows[0][0], int(rows[0][1]), int(rows[0][2]), rows[0][3]) if rows else None


def worker_id(s, name):
    found = re.findall(r'event=started .*?worker_id="([^"]*)"', s.log(name))
    return found[-1] if found else None


def same_id(t, s):
    what = "a second worker with the same worker_id"
    wid = worker_id(s, "worker")
    t.ok(wid and wid.endswith("/spool"), "the stack's worker has a default worker_id", wid)
    try:
        s.start_worker("worker3", env={"RESTOCK_WORKER_ID": wid})
        started = True
    except RuntimeError:
        started = False
    p = s.workers.get("worker3")
    t.ok(not started and p is not None and p.returncode not in (None, 0),
         "%s: refused at start, non-zero exit" % what, p.returncode if p else None)
    line = next((ln for ln in reversed(s.log("worker3").splitlines())
                 if "event=start_failed" in ln), "")
    t.ok("is held by a live restock-worker" in line and wid in line and "pid" in line,
         "%s: the error names the worker_id and its live holder" % what, line)
    s.stop_worker("worker3")

    what = "the same worker_id after a crash on another host"
    s.kill("worker")
    # As if the dead run had been on another machine: its pid cannot be looked
    # up from here, so its lease is waited for.
    s.sql("UPDATE worker_registration SET boot = 'another machine' WHERE worker_id = '%s'" % wid)
    killed = time.time()
    s.start_worker("worker3", env={"RESTOCK_WORKER_ID": wid})
    took = time.time() - killed
    t.diag("%s: started %.1f s after the kill -9 (lease_time %d s)" % (what, took, LEASE))
    t.ok(took < LEASE + 6, "%s: a restart is not blocked past about lease_time" % what, took)
    t.ok("event=registration_waiting" in s.log("worker3"),
         "%s: it waited for the dead run's lease" % what)

    what = "the same worker_id after a crash on this host"
    s.kill("worker3")
    s.start_worker("worker3", env={"RESTOCK_WORKER_ID": wid})
    t.ok("event=registration_taken" in s.log("worker3"),
         "%s: the dead run's pid is gone: registered at once" % what)
    sku = add_shop(s, 1, "SI")[0]
    sell_all(t, s, [sku], what)
    t.ok(s.wait_until(lambda: all_fulfilled(s, [sku]), timeout=30),
         "%s: the restarted worker delivers" % what)
    s.stop_worker("worker3")  # a clean stop gives the registration back
    s.start("worker")


def slow_statement(t, s):
    what = "a slow statement in the sweep"
    sim_config(s, fail_rate=1.0)
    held = add_shop(s, 1, "SA")[0]
    sell_all(t, s, [held], what)
    t.ok(s.wait_until(lambda: claim_of(s, held) is not None and
                      "event=deferred queue=factory" in s.log("worker"), timeout=30),
         "%s: the worker holds the claim of an order it cannot send yet" % what)
    slow = add_shop(s, 1, "SB")[0]
    ad = s.sql_value("SELECT HEX(ad_id) FROM product WHERE sku = '%s'" % slow)
    locker = Session(s)
    t.is_(locker.query("BEGIN; SELECT HEX(ad_id) FROM advertisement WHERE ad_id = UNHEX('%s')"
                       " FOR UPDATE;" % ad), ad, "%s: a test session holds the ad's row" % what)
    try:
        sell_all(t, s, [slow], what)
        t.ok(s.wait_until(lambda: root_sql(
            s, "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'"
            " AND trx_query LIKE 'UPDATE advertisement%'") == "1", timeout=30),
            "%s: the worker's sweep waits for it" % what)
        first = claim_of(s, held)
        s.start_worker("worker2")
        # The first worker's lease as it was when its sweep stopped: wait until
        # the database's clock has passed it, then until the other worker swept.
        t.ok(s.wait_until(lambda: s.sql_value("SELECT UTC_TIMESTAMP(6) > TIMESTAMPADD(SECOND, 1,"
                                              " '%s')" % first[3]) == "1", timeout=LEASE + 10),
             "%s: the lease the worker had when its sweep stopped has passed" % what)
        fresh = add_shop(s, 1, "SC")[0]
        sell_all(t, s, [fresh], what)
        t.ok(s.wait_until(lambda: claim_of(s, fresh) is not None, timeout=30),
             "%s: the other worker sweeps meanwhile (it claims a new sale)" % what,
             claim_of(s, fresh))
        now = claim_of(s, held)
        t.ok(now and now[0] == first[0] and now[1] == 1 and now[2] >= 0,
             "%s: the held claim is still the worker's, epoch 1, its lease renewed" % what,
             (first, now))
    finally:
        locker.close()
    sim_config(s, fail_rate=0.0)
    skus = [held, slow, fresh]
    t.ok(s.wait_until(lambda: all_fulfilled(s, skus), timeout=60),
         "%s: every order sent and fulfilled" % what, [orders(s, x)[-1]["status"] for x in skus])
    ids = order_ids(s, skus)
    got = accepted(s)
    t.ok(sorted(got.get(i, 0) for i in ids.values()) == [1] * 3,
         "%s: each order requested from the factory exactly once" % what, got)
    t.is_([s.stock(x) for x in skus], [REORDER] * 3, "%s: each restocked once" % what)
    t.ok("event=lease_lost" not in s.log("worker"), "%s: no lease_lost" % what,
         [ln for ln in s.log("worker").splitlines() if "lease_lost" in ln][:3])
    t.ok("event=outbox_taken_over" not in s.log("worker2"),
         "%s: the other worker took nothing over" % what)
    s.stop_worker("worker2")


def utc_clock(t, s):
    what = "leases on the database's UTC clock"
    try:
        root_sql(s, "SET GLOBAL time_zone = '+05:00'")
        s.stop("worker")
        s.start("worker")  # its sessions in +05:00
        sim_config(s, fail_rate=1.0)
        sku = add_shop(s, 1, "TZ")[0]
        sell_all(t, s, [sku], what)
        t.ok(s.wait_until(lambda: claim_of(s, sku) is not None, timeout=30),
             "%s: the worker (sessions in +05:00) claims the order" % what)
        left = claim_of(s, sku)[2]
        t.ok(0 <= left <= LEASE, "%s: its lease ends lease_time from UTC now (in %d s)" %
             (what, left), claim_of(s, sku))
        root_sql(s, "SET GLOBAL time_zone = '-03:00'")
        s.start_worker("worker2")  # its sessions in -03:00
        s.kill("worker")
        killed = time.time()
        sim_reset(s)
        sim_config(s, fail_rate=0.0)
        t.ok(s.wait_until(lambda: all_fulfilled(s, [sku]), timeout=LEASE + 30),
             "%s: a worker in -03:00 took the dead worker's claim over and sent it" % what,
             claim_of(s, sku))
        took = time.time() - killed
        t.diag("%s: fulfilled %.1f s after the kill (lease_time %d s)" % (what, took, LEASE))
        t.ok(took < LEASE + 20, "%s: within about lease_time, not hours later" % what, took)
        t.is_(len(factory_callbacks(s)), 1, "%s: the order reached the factory once" % what)
    finally:
        root_sql(s, "SET GLOBAL time_zone = 'SYSTEM'")
        s.stop_worker("worker2")


def body(t):
    with Stack(t, env=ENV) as s:
        same_id(t, s)
        slow_statement(t, s)
        utc_clock(t, s)


run_tests(body)
