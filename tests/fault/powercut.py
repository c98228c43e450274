#!/usr/bin/python3
"""Power-cut test of the whole flow (issue 21): MariaDB's datadir and the worker's spool
(its `callback` queue is the callback store) on powercutfs mounts (tests/fault/
powercutfs.py: un-fsync'd writes and names live only in the daemon's memory); a surge
of keyed checkouts that sells products out, the reorders the worker sends to the factory
simulator, factory callbacks (some while MariaDB is down: answered 202 and kept in the
spool), ad and operator emails to the SMTP sink. Then, again and again, the power goes:
every program of the machine and mariadbd killed with SIGKILL, and the un-synced state
of both mounts dropped (`cut`, sometimes tearing the last un-synced write of each file);
the machine boots (MariaDB's crash recovery, the worker's spool recovery) and the test
checks what survived against what clients were told:

  - every checkout answered 200 is sold (its key's row says 200, and sold_total is the
    sum of the 200s); none answered 409 or 503 is (504, the database gone during the
    commit, may be either);
  - every order of the database reaches the factory (a repeated request is counted),
    and is restocked once: one stock_arrived event, stock = start + delivered - sold;
  - every callback answered 200 or 202 is applied (the order fulfilled), exactly once;
  - every email of a taken event (ad pause, ad resume) is delivered (by Message-ID);
  - no spool file outside corrupt/ is torn, and every file in corrupt/ was reported.

Cuts are aimed at bad moments in turn (AIMS below): a random one; a sync call of the
spool held by powercutfs's freeze trap (between a message's write and its fsync, between
a put's renames and its folder's fsync, after that fsync and before the worker's take of
the events, inside a callback's store); and while MariaDB is down with callbacks stored
with 202. Every other boot mounts the spool on a file system that orders no renames
across folders, so that a message can come back under two names. The factory is the
world outside the machine (the simulator and the SMTP sink live on); the test calls the
factory's callbacks itself, as the factory would.

    tests/fault/powercut.py [--cuts N] [--seed S]

make check runs a short run (RESTOCK_POWERCUT_CUTS, default 7: each aim once, in one of
the spool's two modes; two rounds or more give every aim both); the full run is
`RESTOCK_POWERCUT_CUTS=50 TESTS=tests/fault/powercut.py ./scripts/test` (or --cuts 50).
Prints: cuts, acknowledged operations checked, lost (must be 0), duplicates by kind.
Skipped without /dev/fuse, pyfuse3 or root, like powercutfs_test.py."""

import argparse
import email
import email.policy
import glob
import hashlib
import http.client
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from fuse_skip import skip_unless_fuse  # noqa: E402

skip_unless_fuse()

from harness import Stack, alive, run_tests, wait_until  # noqa: E402
from powercutfs import Mount  # noqa: E402
from replenish_common import add_products, as_uuid, factory_requests, header  # noqa: E402

SEEDED = ("CP-502101", "CP-502102", "CP-502103")  # with an ad manager: emails
PROGRAMS = ("nginx", "sales", "callback", "worker", "db")
QUEUES = ("factory", "mail", "callback")
STATES = ("incoming", "active", "deferred", "dead", "done")
# Where each cut is aimed (AIMS[cut % len]): a random moment; or the spool's powercutfs
# holds one sync call (powercutfs `freeze`) and the power goes while it is held:
#   spool-data     before the fsync of a message written in tmp/ (written, not durable)
#   spool-names    before the fsync of incoming/ after a put's renames (named, not durable)
#   outbox-take    after that fsync: the worker's messages durable, its take of the
#                  events in the database not yet made
#   mail-queued    an email waits in the mail queue (its event taken, the relay slow)
#   db-down        MariaDB killed, callbacks answered 202 and stored (the worker's
#                  postponing of them held before its sync), then the cut
#   callback-store MariaDB killed, a callback's store held before its fsync (no answer)
AIMS = ("random", "spool-data", "spool-names", "outbox-take", "mail-queued", "db-down",
        "callback-store")
FREEZES = {"spool-data": ("tmp/", "before"), "spool-names": ("incoming", "before"),
           "outbox-take": ("incoming", "after"), "callback-store": ("callback/tmp/", "before")}
# The relay answers MAIL after 0.5 s: an email waits in the spool a while after its
# event was taken (one session at a time), so that a cut often finds one there, and a
# spool that did not make its names durable before the take loses it.
ENV = {"RESTOCK_FACTORY_ARGS": "--silent", "RESTOCK_SMTP_ARGS": "--delay 0.5 --delay-at mail",
       "RESTOCK_SWEEP_INTERVAL": "1",
       "RESTOCK_BACKOFF_MIN": "1", "RESTOCK_BACKOFF_MAX": "2", "RESTOCK_MAX_ATTEMPTS": "1000"}


class Machine:
    """The stack on two powercutfs mounts: DIR/db and DIR/spool, with --journal (any
    fsync makes the earlier names durable, in order, as ext4's and xfs's journal do:
    the local journalling file system the spool requires; MariaDB never fsyncs its
    folders). strict_spool: the spool's names durable only by their own folder's
    fsync, with no order across folders: stricter than any journalling file system;
    it still finds a known gap (a message left in two state folders, see --strict-spool)."""

    def __init__(self, t):
        self.t = t
        self.s = Stack(t, env=ENV, private_db=True)
        d = self.s.dir
        os.makedirs(os.path.join(d, "log"), exist_ok=True)
        self.mounts = {
            "db": Mount(os.path.join(d, "pc-db"), os.path.join(d, "db"),
                        log=os.path.join(d, "log", "powercutfs-db.log"), journal=True),
            "spool": self.spool_mount(journal=True),
        }

    def spool_mount(self, journal):
        d = self.s.dir
        return Mount(os.path.join(d, "pc-spool"), os.path.join(d, "spool"),
                     log=os.path.join(d, "log", "powercutfs-spool.log"), journal=journal)

    def remount_spool(self, journal):
        """The spool's file system mounted again over its durable state (programs dead),
        ordering renames (journal) or not."""
        self.mounts["spool"].stop()
        self.mounts["spool"] = self.spool_mount(journal)
        self.mounts["spool"].start()

    def start(self):
        for m in self.mounts.values():
            m.start()
        self.s.start()
        # What install and migrations wrote is the durable starting state.
        for m in self.mounts.values():
            m.command("sync-all")

    def pid(self, name):
        try:
            with open(os.path.join(self.s.dir, "pid", name + ".pid")) as f:
                return int(f.read())
        except (FileNotFoundError, ValueError):
            return None

    def kill_all(self, names=PROGRAMS):
        """SIGKILL to every program at once (nginx's workers too), then waits for them."""
        pids = []
        for name in names:
            pid = self.pid(name)
            if pid is not None:
                pids.append(pid)
                if name == "nginx":
                    pids += children(pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # A program held in a sync call by the freeze trap dies only once the call is
        # answered: it fails, having made nothing more durable (the power is gone).
        self.mounts["spool"].command("thaw fail=1")
        for name in names:
            try:
                os.unlink(os.path.join(self.s.dir, "pid", name + ".pid"))
            except FileNotFoundError:
                pass
        if not wait_until(lambda: not any(alive(p) for p in pids), timeout=20, interval=0.02):
            raise RuntimeError("programs still alive after SIGKILL")

    def cut(self, rng):
        """The power goes: the un-synced state of both mounts dropped (programs dead)."""
        dropped = {}
        for name, m in self.mounts.items():
            tear = "random" if rng.random() < 0.5 else None
            dropped[name] = m.cut(tear=tear, seed=rng.randrange(1 << 30))
        return dropped

    def boot(self):
        self.s.start()

    def close(self, failed):
        try:
            self.s.stop()
        finally:
            for m in self.mounts.values():
                m.stop()
            self.s.close(failed=failed)


def children(pid):
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                out.append(int(stat.split("/")[2]))
        except (OSError, IndexError, ValueError):
            continue
    return out


def post(port, path, body, headers=None, timeout=10):
    """One POST; (status, body) or (None, error) when no answer came."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request("POST", path, body=body if isinstance(body, bytes) else json.dumps(body),
                     headers=h)
        r = conn.getresponse()
        return r.status, r.read()
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)
    finally:
        conn.close()


class Clients:
    """What the outside world did and was told: checkouts (keyed) and callbacks."""

    def __init__(self, s, skus, rng):
        self.s, self.skus, self.rng = s, skus, rng
        self.lock = threading.Lock()
        self.checkouts = []            # (key, sku, quantity, status or None)
        self.callbacks = {}            # order id -> status of the acknowledged callback
        self.callback_tries = Counter()
        self.seen = {}                 # order id -> (time first seen, callback url, body)
        self.stop = threading.Event()
        self.threads = []

    def run(self, buyers=4):
        self.stop.clear()
        self.threads = [threading.Thread(target=self.buyer, args=(random.Random(self.rng.random()),))
                        for _ in range(buyers)]
        self.threads.append(threading.Thread(target=self.factory))
        for th in self.threads:
            th.start()

    def halt(self):
        self.stop.set()
        for th in self.threads:
            th.join()
        self.threads = []

    def buyer(self, rng):
        while not self.stop.is_set():
            sku, qty, key = rng.choice(self.skus), rng.randint(1, 2), str(uuid.uuid4())
            status, _ = post(self.s.port, "/checkout", {"sku": sku, "quantity": qty},
                             {"Idempotency-Key": key})
            with self.lock:
                self.checkouts.append((key, sku, qty, status))
            if status is None:
                self.stop.wait(0.05)  # the machine is down: no hot loop

    def factory(self):
        """The factory's side: each order it received is called back 0.3..2 s later
        (until one answer is 200 or 202: the legacy factory gives up after one try,
        this one tries again after a refusal so that the flow goes on)."""
        while not self.stop.is_set():
            try:
                reqs = factory_requests(self.s)
            except (OSError, RuntimeError):
                reqs = []
            now = time.time()
            for r in reqs:
                oid = header(r, "Idempotency-Key")
                if oid and oid not in self.seen and isinstance(r["body"], dict):
                    self.seen[oid] = (now + self.rng.uniform(0.3, 2.0), r["body"]["CallbackUrl"],
                                      r["body"])
            for oid, (due, url, body) in list(self.seen.items()):
                if oid in self.callbacks or due > now or self.stop.is_set():
                    continue
                status = self.callback(oid, url, body)
                if status is None or status >= 500:
                    self.seen[oid] = (now + 0.5, url, body)
            self.stop.wait(0.2)

    def callback(self, oid, url, body):
        u = urllib.parse.urlsplit(url)
        status, _ = post(u.port, u.path + "?" + u.query, body)
        with self.lock:
            self.callback_tries[oid] += 1
            if status in (200, 202):
                self.callbacks[oid] = status
        return status


def body(t):
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuts", type=int, default=int(os.environ.get("RESTOCK_POWERCUT_CUTS", "7")))
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    t.diag("random seed %d (--seed %d repeats the run's choices)" % (seed, seed))
    mach = Machine(t)
    failed = True
    try:
        mach.start()
        s = mach.s
        skus = list(SEEDED) + add_products(s, 3, prefix="PC", stock=4)
        mach.mounts["db"].command("sync-all")  # the fixtures: part of the starting state
        start = {sku: int(s.sql_value("SELECT stock + sold_total FROM product WHERE sku = '%s'"
                                      % sku)) for sku in skus}
        clients = Clients(s, skus, rng)
        figures = Counter()
        dropped_any = Counter()
        for cut in range(args.cuts):
            aim = AIMS[cut % len(AIMS)]
            clients.run()
            how = surge_then_cut(t, mach, clients, rng, aim)
            clients.halt()
            figures["aimed-" + aim] += 1
            if how.startswith(", held"):
                figures["hit-" + aim] += 1
            dropped = mach.cut(rng)
            for name, d in dropped.items():
                if d["dirty_files"] or d["dirty_pages"]:
                    dropped_any["%s-data" % name] += 1
                if d["pending_names"]:
                    dropped_any["%s-names" % name] += 1
                if d.get("torn"):
                    dropped_any["%s-torn" % name] += 1
            # Every other surge, the spool on a file system that orders no renames
            # across folders (stricter than ext4 or xfs): a message may come back
            # under two names, which the worker's recovery must reduce to one. The
            # next surge's mode is the one it boots in; with an odd number of AIMS,
            # every aim meets both modes in two rounds.
            strict = (cut + 1) % 2 == 1
            t.diag("cut %d (%s%s): dropped %s; boots with the spool %s" % (
                cut + 1, aim, how, {n: {k: v for k, v in d.items() if k != "torn" and v}
                                    for n, d in dropped.items()},
                "unordered" if strict else "journalled"))
            mach.remount_spool(journal=not strict)
            mach.boot()
            check(t, s, clients, skus, start, figures, cut + 1)
            figures["cuts"] += 1
        log = s.log("worker")
        figures["copies-removed"] = log.count("event=spool_copy_removed")
        figures["taken-late"] = log.count("event=outbox_taken_late")
        figures["in-doubt"] = sum(1 for c in clients.checkouts if c[3] == 504)
        dup = {k[4:]: v for k, v in figures.items() if k.startswith("dup-")}
        t.diag("cuts: %d; acknowledged operations: %d, checked %d times after the boots"
               " (checkouts %d, callbacks %d of which %d stored with 202, orders %d, emails %d);"
               " lost: %d; duplicates: %s; cuts that dropped: %s"
               % (figures["cuts"], figures["ops"], figures["checked"], figures["checked-checkout"],
                  figures["checked-callback"], figures["stored-202"], figures["checked-order"],
                  figures["checked-mail"], figures["lost"], dup or "none", dict(dropped_any)))
        t.diag("aims held at their moment: %s; second names removed at boot: %d; events"
               " taken after their messages were delivered: %d; checkouts answered 504 (in"
               " doubt: the database died during their commit): %d"
               % (", ".join("%s %d of %d" % (a, figures["hit-" + a], figures["aimed-" + a])
                            for a in AIMS if a in FREEZES or a == "mail-queued"),
                  figures["copies-removed"],
                  figures["taken-late"], figures["in-doubt"]))
        print("# POWERCUT cuts=%d acknowledged=%d checks=%d lost=%d %s" % (
            figures["cuts"], figures["ops"], figures["checked"], figures["lost"],
            " ".join("dup_%s=%d" % kv for kv in sorted(dup.items()))), flush=True)
        t.is_(figures["lost"], 0, "no acknowledged operation lost over %d cuts" % figures["cuts"])
        t.ok(dropped_any["spool-data"] + dropped_any["spool-names"] > 0,
             "some cuts dropped un-synced spool state (the aim reached a bad moment)",
             dict(dropped_any))
        failed = bool(t.failed)
    finally:
        mach.close(failed)


def surge_then_cut(t, mach, clients, rng, aim):
    """Lets the surge run, then kills every program at the moment aimed at. Returns how
    the aim went (", held at PATH" when the freeze caught its call)."""
    s = mach.s
    # A random moment of the surge, counted in checkouts answered, not in seconds.
    with clients.lock:
        target = len(clients.checkouts) + rng.randint(20, 120)
    wait_until(lambda: len(clients.checkouts) >= target, timeout=60, interval=0.02)
    how = ""
    if aim in ("db-down", "callback-store"):
        mach.kill_all(("db",))  # callbacks now answered 202 and stored
        if aim == "db-down":
            # The worker postpones each stored callback (the database is down),
            # which rewrites it into deferred/ and syncs that folder: held before
            # that sync, the callbacks stored since are durable only by their own put.
            mach.mounts["spool"].freeze("callback/deferred", "before")
            got = wait_until(lambda: any(st == 202 for st in list(clients.callbacks.values())[-3:]),
                             timeout=rng.uniform(1.0, 4.0), interval=0.05)
            how = ", a 202 stored just before" if got else ""
    if aim == "mail-queued":
        waiting = wait_until(lambda: names(s, "mail", "incoming") or names(s, "mail", "active"),
                             timeout=15, interval=0.01)
        how = ", held with %s waiting" % waiting[0] if waiting else ", no email waiting"
    if aim in FREEZES:
        prefix, at = FREEZES[aim]
        if prefix in ("tmp/", "incoming"):
            prefix = rng.choice(("factory/", "mail/")) + prefix
        m = mach.mounts["spool"]
        m.freeze(prefix, at)
        caught = m.wait_frozen(timeout=15)
        how = ", held at %s %s" % (at, caught) if caught else ", nothing caught at %s" % prefix
    mach.kill_all()
    return how


def spool_torn(path):
    """Why a spool file does not check (None when it does): the end line's BLAKE2b."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    if len(data) < 69 or not data.endswith(b"\n") or not data[-69:].startswith(b"end "):
        return "no end line"
    want = data[-65:-1].decode("ascii", "replace")
    if hashlib.blake2b(data[:-69], digest_size=32).hexdigest() != want:
        return "checksum mismatch"
    return None


def check(t, s, clients, skus, start, figures, n):
    """After boot n: what survived against what clients were told."""
    def lose(what, detail):
        # Counted once however many boots find it (a lost sale stays lost).
        if what not in figures.setdefault("lost-what", set()):
            figures["lost-what"].add(what)
            figures["lost"] += 1
        t.ok(False, "after cut %d: %s" % (n, what), detail)

    # Checkouts: the database is up (s.start waited for it), the clients are stopped.
    rows = {r[0]: int(r[1]) for r in s.sql("SELECT idem_key, status FROM checkout_key")}
    sold = defaultdict(int)
    for key, sku, qty, status in clients.checkouts:
        row = rows.get(key)
        if row == 200:
            sold[sku] += qty
        if status == 200:
            figures["checked"] += 1
            figures["checked-checkout"] += 1
            if row != 200:
                lose("checkout %s answered 200 is sold" % key, "row status %r" % row)
        elif status in (409, 503) and row == 200:
            lose("checkout %s answered %d is not sold" % (key, status), "row status 200")
        # 504: the database went away while its commit was in flight; either is true.
    for sku in skus:
        got = int(s.sql_value("SELECT sold_total FROM product WHERE sku = '%s'" % sku))
        if got != sold[sku]:
            lose("%s: sold_total is the sum of the checkouts sold" % sku,
                 "sold_total %d, keyed sales %d" % (got, sold[sku]))

    # Settle: the flow goes on from what survived (the factory calls back).
    clients.run(buyers=0)
    try:
        def settled():
            orders = s.sql("SELECT LOWER(HEX(order_id)), status FROM replenishment_order")
            untaken = int(s.sql_value("SELECT COUNT(*) FROM outbox WHERE taken_at IS NULL"))
            queued = sum(len(names(s, q, st)) for q in QUEUES for st in ("incoming", "active",
                                                                         "deferred"))
            return (all(st == "fulfilled" for _, st in orders) and untaken == 0 and queued == 0)
        if not s.wait_until(settled, timeout=90, interval=0.5):
            pending = s.sql("SELECT LOWER(HEX(order_id)), status FROM replenishment_order"
                            " WHERE status <> 'fulfilled'")
            acked = [o for o, _ in pending if as_uuid(o) in clients.callbacks]
            if acked:
                lose("every callback answered 200/202 is applied", acked)
            t.ok(False, "after cut %d: the flow settles (orders fulfilled, events taken,"
                 " queues empty)" % n, {
                     "pending orders": pending,
                     "untaken events": s.sql("SELECT LOWER(HEX(event_id)), kind FROM outbox"
                                             " WHERE taken_at IS NULL"),
                     "queued": {(q, st): names(s, q, st) for q in QUEUES
                                for st in ("incoming", "active", "deferred")}})
            raise RuntimeError("did not settle after cut %d" % n)
    finally:
        clients.halt()

    # Orders: each reached the factory; each restocked once.
    reqs = Counter(header(r, "Idempotency-Key") for r in factory_requests(s))
    orders = s.sql("SELECT LOWER(HEX(r.order_id)), p.sku, r.delivered_quantity,"
                   " (SELECT COUNT(*) FROM outbox o WHERE o.order_id = r.order_id"
                   "  AND o.kind = 'stock_arrived') FROM replenishment_order r"
                   " JOIN product p ON p.product_id = r.product_id")
    delivered = defaultdict(int)
    for oid, sku, qty, arrived in orders:
        oid = as_uuid(oid)
        delivered[sku] += int(qty)
        figures["checked"] += 1
        figures["checked-order"] += 1
        if reqs[oid] == 0:
            lose("order %s reached the factory" % oid, "no request")
        if int(arrived) != 1:
            figures["dup-restock" if int(arrived) > 1 else "lost"] += 1
            t.ok(False, "after cut %d: order %s restocked once" % (n, oid), arrived)
    figures["dup-factory-request"] = sum(c - 1 for c in reqs.values() if c > 1)
    for sku in skus:
        stock, total = (int(v) for v in s.sql(
            "SELECT stock, sold_total FROM product WHERE sku = '%s'" % sku)[0])
        if stock != start[sku] + delivered[sku] - total:
            lose("%s: stock = start + delivered - sold" % sku,
                 "stock %d, start %d, delivered %d, sold %d"
                 % (stock, start[sku], delivered[sku], total))
    # Callbacks answered 200/202: applied (the order fulfilled; once: above).
    fulfilled = {as_uuid(o) for o, in s.sql("SELECT LOWER(HEX(order_id)) FROM replenishment_order"
                                            " WHERE status = 'fulfilled'")}
    for oid, status in clients.callbacks.items():
        figures["checked"] += 1
        figures["checked-callback"] += 1
        if oid not in fulfilled:
            lose("callback of %s answered %d is applied" % (oid, status), "order not fulfilled")
    figures["stored-202"] = sum(1 for v in clients.callbacks.values() if v == 202)


    # Emails of taken events, by Message-ID.
    got = Counter()
    for path in glob.glob(os.path.join(s.info["MAIL_DIR"], "new", "*")):
        with open(path, "rb") as f:
            got[str(email.message_from_bytes(f.read(), policy=email.policy.default)
                    ["Message-ID"] or "")] += 1
    figures["dup-email"] = sum(c - 1 for c in got.values() if c > 1)
    due = s.sql("SELECT LOWER(HEX(o.event_id)) FROM outbox o"
                " JOIN product p ON p.product_id = o.product_id"
                " JOIN replenishment_order r ON r.order_id = o.order_id"
                " WHERE o.taken_at IS NOT NULL AND p.sku IN ('%s') AND (o.kind IN"
                " ('stock_empty', 'sold_out') OR (o.kind = 'stock_arrived'"
                " AND r.sold_out_at IS NOT NULL))" % "','".join(SEEDED))
    figures["ops"] = (sum(1 for c in clients.checkouts if c[3] == 200) + len(clients.callbacks)
                      + len(orders) + len(due))
    for eid, in due:
        figures["checked"] += 1
        figures["checked-mail"] += 1
        if "<%s@donut-states.example>" % as_uuid(eid) not in got:
            lose("the email of taken event %s is delivered" % as_uuid(eid), "not in the Maildir")

    # The spool: nothing torn outside corrupt/, and what is in corrupt/ was reported.
    log = s.log("worker")
    for q in QUEUES:
        for st in STATES:
            for name in names(s, q, st):
                why = spool_torn(os.path.join(s.info["SPOOL_DIR"], q, st, name))
                if why:
                    lose("spool %s/%s/%s is whole" % (q, st, name), why)
        for name in names(s, q, "corrupt"):
            figures["corrupt-reported"] += 1
            if "event=corrupt" not in log or name.split(".")[0] not in log:
                lose("corrupt %s/%s was reported" % (q, name), "no event=corrupt in the log")
    t.ok(True, "after cut %d: checked (lost so far: %d)" % (n, figures["lost"]))


def names(s, queue, state):
    try:
        return [n for n in os.listdir(os.path.join(s.info["SPOOL_DIR"], queue, state))
                if not n.startswith(".")]
    except FileNotFoundError:
        return []


if __name__ == "__main__":
    run_tests(body)
