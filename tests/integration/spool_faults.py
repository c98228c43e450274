"""Integration test of disk faults under the spool: the worker runs with an
LD_PRELOAD shim (tests/fault/faultshim.c) that makes fsync, rename or write fail
with EIO on demand, and (as root) on a small tmpfs that is filled up for ENOSPC.
While a fault lasts, sold-out checkouts answer 200/409 as usual (the responders
never touch the spool), no outbox event is marked taken (its message is not
durable), and the worker logs the fault; operators get a `spool_fault` alert,
during the fault when only the factory queue's disk fails, else once the disk
is back. After each fault clears, every order reaches the factory simulator
exactly once and is fulfilled."""

import errno
import os
import subprocess

from harness import BUILDDIR, Stack, run_tests
from replenish_common import (add_products, alerts, factory_requests, orders, outbox,
                              received_mail, sell_out)

SHIM = os.path.join(BUILDDIR, "tests", "fault", "faultshim.so")
ENV = {"RESTOCK_FACTORY_ARGS": "--delay 0.3", "RESTOCK_SWEEP_INTERVAL": "1",
       "RESTOCK_BACKOFF_MIN": "1", "RESTOCK_BACKOFF_MAX": "2", "RESTOCK_MAX_ATTEMPTS": "100",
       "RESTOCK_LOG_LEVEL": "debug"}  # the worker logs each sweep
FAULT_SUBJECT = "[restock] 스풀 디스크 오류 "


def fault_alerts(s):
    return [name for _, name, _ in alerts(s, "spool_fault")]


def fault_mails(s):
    return [m for m in received_mail(s) if m[1].startswith(FAULT_SUBJECT)]


def start_worker(s, control):
    """Restarts the worker with the shim preloaded (ASan, in a sanitized build,
    must not insist on coming first: the shim is not sanitized)."""
    s.stop("worker")
    asan = os.environ.get("ASAN_OPTIONS", "")
    wrapper = ["env", "LD_PRELOAD=" + SHIM, "FAULTSHIM_CTL=" + control,
               "ASAN_OPTIONS=" + (asan + ":" if asan else "") + "verify_asan_link_order=0"]
    s.start("worker", env={"RESTOCK_WRAPPER": " ".join(
        wrapper + os.environ.get("RESTOCK_WRAPPER", "").split())})


def fault_round(t, s, sku, what, set_fault, clear_fault, alert_during):
    """One fault: sell out sku while it lasts, check nothing is taken, clear it."""
    faults = s.log("worker").count("event=spool_fault ")
    cleared = s.log("worker").count("event=spool_fault_cleared")
    told = len(fault_alerts(s))
    set_fault()
    try:
        r = s.request("GET", "/products/%s" % sku)
        t.is_(r.status, 200, "%s: the product page answers" % what)
        t.is_(sell_out(s, sku).status, 409, "%s: the sell-out checkout answers 409" % what)
        t.ok(s.wait_until(lambda: s.log("worker").count("event=spool_fault ") > faults,
                          timeout=30),
             "%s: the worker logs the fault" % what, s.logs())
        # A few more sweeps retry the put meanwhile.
        t.ok(s.wait_sweep_passes(s.sweep_passes(), 3), "%s: the worker sweeps again" % what)
        t.ok([taken for _, _, taken in outbox(s, sku, "stock_empty")] == [False],
             "%s: the outbox event is not marked taken while its message is not durable"
             % what, outbox(s, sku))
        if alert_during:
            t.ok(s.wait_until(lambda: len(fault_mails(s)) > told, timeout=30),
                 "%s: operators get the spool_fault alert during the fault" % what,
                 fault_alerts(s))
        t.is_(sell_out(s, sku).status, 409, "%s: checkout keeps answering during the fault"
              % what)
    finally:
        clear_fault()
    t.ok(s.wait_until(lambda: [o["status"] for o in orders(s, sku)] == ["fulfilled"],
                      timeout=60),
         "%s: after the fault clears, the order is delivered and fulfilled" % what,
         orders(s, sku))
    t.ok([taken for _, _, taken in outbox(s, sku, "stock_empty")] == [True],
         "%s: its event is taken" % what)
    t.is_(len(factory_requests(s, sku)), 1, "%s: the factory received the order exactly once"
          % what)
    t.ok(s.wait_until(lambda: s.log("worker").count("event=spool_fault_cleared") > cleared,
                      timeout=30), "%s: the worker logs that the fault cleared" % what)
    t.ok(s.wait_until(lambda: len(fault_alerts(s)) == told + 1 and
                      len(fault_mails(s)) == told + 1, timeout=30),
         "%s: one spool_fault alert per fault, delivered" % what,
         (fault_alerts(s), len(fault_mails(s))))


def fill(path):
    """Fills the file system of path: returns the filler's name."""
    filler = os.path.join(path, ".filler")
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 16, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    return filler


def body(t):
    with Stack(t, env=ENV) as s:
        spool = s.info["SPOOL_DIR"]
        control = os.path.join(s.dir, "fault")
        mounted = False
        if os.geteuid() == 0:
            s.stop("worker")
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "restock-test",
                            spool], check=True)
            mounted = True
        try:
            start_worker(s, control)
            skus = add_products(s, 5, prefix="DF", stock=3)

            def shim(line):
                def on():
                    with open(control + ".new", "w") as f:
                        f.write(line + "\n")
                    os.rename(control + ".new", control)
                return on

            def off():
                os.unlink(control)

            # The operator's case: the rename into incoming/ works, its fsync fails.
            fault_round(t, s, skus[0], "fsync of factory/incoming fails",
                        shim("fsync %s/factory/incoming" % spool), off, alert_during=True)
            fault_round(t, s, skus[1], "every rename fails",
                        shim("rename %s" % spool), off, alert_during=False)
            fault_round(t, s, skus[2], "every write fails",
                        shim("write %s" % spool), off, alert_during=False)
            fault_round(t, s, skus[3], "every fsync fails",
                        shim("fsync %s" % spool), off, alert_during=False)
            if mounted:
                filled = []
                fault_round(t, s, skus[4], "the spool's disk is full (ENOSPC)",
                            lambda: filled.append(fill(spool)),
                            lambda: [os.unlink(f) for f in filled], alert_during=False)
                t.ok("No space left on device" in s.log("worker"),
                     "the full disk is named in the worker's log")
            else:
                t.ok(True, "# SKIP a full tmpfs spool (ENOSPC) needs root to mount it")
        finally:
            if mounted:
                s.stop("worker")
                subprocess.run(["umount", "-l", spool])


run_tests(body)
