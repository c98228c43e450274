"""Integration test of a doorbell flood (issue 18, item 8): a peer on the worker's tcp
doorbell port (bus_listen) sends doorbells as fast as ZeroMQ takes them, from
several connections, and an oversize message again and again
(tests/integration/bell_flood.c). The worker drains a bounded number of doorbells
per pass of its loop, so that its timed work still runs: with the responders ringing
another endpoint (the worker hears only the flood), a sold-out product's order can
only go out through the worker's periodic sweep, and it does, during the flood; the
worker hangs up on the oversize messages (ZMQ_MAXMSGSIZE) instead of taking them in;
once the flood stops, the worker is still up and the next order goes out too."""

import os
import subprocess

from harness import BUILDDIR, Stack, free_port, run_tests
from replenish_common import DONUT, factory_requests, sell_out

SECOND = "CP-502102"
OVERSIZE = 4 * 1024 * 1024


def connections(port):
    """Established tcp connections to 127.0.0.1:port (the flood's publishers)."""
    p = subprocess.run(["ss", "-Htn", "state", "established", "( dport = :%d )" % port],
                       capture_output=True, text=True)
    return len([line for line in p.stdout.splitlines() if line.strip()])


def body(t):
    port = free_port()
    env = {"RESTOCK_SWEEP_INTERVAL": "1", "RESTOCK_FACTORY_ARGS": "--silent"}
    with Stack(t, components=["db", "sales", "callback", "factory", "smtp", "nginx"],
               env=env) as s:
        # The worker binds tcp; the responders ring bus_endpoint (ipc), which
        # nobody binds: only the sweep can send an order.
        s.start("worker", env={"RESTOCK_BUS_LISTEN": "tcp://127.0.0.1:%d" % port})
        t.ok(s.wait_until(lambda: "event=started" in s.log("worker"), timeout=30),
             "the worker started on tcp port %d" % port, s.log("worker")[-2000:])
        said = os.path.join(s.dir, "log", "bell_flood.log")
        with open(said, "w") as out:
            flood = subprocess.Popen(
                [os.path.join(BUILDDIR, "tests", "integration", "bell_flood"),
                 "tcp://127.0.0.1:%d" % port, "3", str(OVERSIZE)],
                stdout=out, stderr=subprocess.STDOUT)
        try:
            t.ok(s.wait_until(lambda: "flooding" in s.log("bell_flood"), timeout=30),
                 "the flood started", s.log("bell_flood"))
            t.ok(s.wait_until(lambda: connections(port) >= 3, timeout=30),
                 "the flood's publishers are connected to the worker",
                 "established: %d" % connections(port))
            t.ok(s.wait_until(lambda: "hung up" in s.log("bell_flood"), timeout=30),
                 "the worker hangs up on the peer that sends an oversize message",
                 s.log("bell_flood"))
            r = sell_out(s, DONUT)
            t.is_(r.status, 409, "during the flood, the sell-out checkout answers 409")
            got = s.wait_until(lambda: factory_requests(s, DONUT), timeout=30)
            t.is_(len(got), 1, "during the flood, the worker's sweep sent the order")
            t.is_(flood.poll(), None, "the flood was still going on")
        finally:
            flood.kill()
            flood.wait()
        t.ok(s.wait_until(lambda: connections(port) == 0, timeout=30),
             "the flood is over")
        r = sell_out(s, SECOND)
        t.is_(r.status, 409, "after the flood, another sell-out")
        got = s.wait_until(lambda: factory_requests(s, SECOND), timeout=30)
        t.is_(len(got), 1, "after the flood, its order goes out too")
        t.is_(len(factory_requests(s, DONUT)), 1, "the first order was sent once")


run_tests(body)
