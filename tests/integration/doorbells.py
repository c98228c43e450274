"""Integration test of doorbells over tcp:// to several workers (docs/design.md §4.4):
the responders ring a list of two worker endpoints (bus_endpoint), each worker binds
its own (bus_listen). With the outbox swept only once an hour, an order reaches the
factory only because a doorbell woke a worker: with worker A down and worker B up,
the sale answers 200 and B sends the order; then with B down and A up, A does. One
worker runs at a time (they share the stack's spool and database)."""

import subprocess
import time

from harness import Stack, free_port, run_tests
from replenish_common import DONUT, factory_requests, sell_out, sim_config

SECOND = "CP-502102"


def established(port):
    """Established tcp connections to 127.0.0.1:port (the responders' publishers)."""
    p = subprocess.run(["ss", "-Htn", "state", "established", "( dport = :%d )" % port],
                       capture_output=True, text=True)
    return len([line for line in p.stdout.splitlines() if line.strip()])


def worker_on(t, s, port, publishers):
    """Starts the worker bound to tcp port; waits until every publisher connected."""
    s.start("worker", env={"RESTOCK_BUS_LISTEN": "tcp://127.0.0.1:%d" % port})
    t.ok(s.wait_until(lambda: "event=started" in s.log("worker"), timeout=30),
         "the worker on tcp port %d started" % port, s.log("worker")[-2000:])
    t.ok(s.wait_until(lambda: established(port) >= publishers, timeout=30),
         "the responders' %d publishers connected to it over tcp" % publishers,
         "established: %d" % established(port))
    # A connected publisher drops what it sends until the worker's subscription
    # has come back over the connection (ZeroMQ's "slow joiner"; a doorbell may be
    # lost by design, the sweep is the guarantee): a moment for it to arrive, since
    # this test's sweep is an hour away.
    time.sleep(1)


def body(t):
    a, b = free_port(), free_port()
    env = {"RESTOCK_BUS_ENDPOINT": "tcp://127.0.0.1:%d, tcp://127.0.0.1:%d" % (a, b),
           "RESTOCK_SWEEP_INTERVAL": "3600", "RESTOCK_SALES_THREADS": "2",
           "RESTOCK_CALLBACK_THREADS": "1", "RESTOCK_FACTORY_ARGS": "--silent"}
    with Stack(t, components=["db", "sales", "callback", "factory", "smtp", "nginx"],
               env=env) as s:
        sim_config(s, silent=True)
        # Worker B up (the second endpoint of the list), worker A down: its
        # endpoint refuses connections.
        worker_on(t, s, b, 3)
        r = sell_out(s, DONUT)
        t.is_(r.status, 409, "the checkout after the last donut answers 409 (sold out)")
        got = s.wait_until(lambda: factory_requests(s, DONUT), timeout=30)
        t.is_(len(got), 1, "with worker A down, worker B was rung and sent the order")

        s.stop("worker")
        worker_on(t, s, a, 3)
        r = s.request("POST", "/checkout", {"sku": SECOND, "quantity": 1})
        t.is_(r.status, 200, "with worker B down the sale still answers 200")
        r = sell_out(s, SECOND)
        t.is_(r.status, 409, "and the product sells out")
        got = s.wait_until(lambda: factory_requests(s, SECOND), timeout=30)
        t.is_(len(got), 1, "worker A, the first endpoint, was rung and sent the order")
        t.is_(len(factory_requests(s, DONUT)), 1, "the first order was not sent again")
        t.ok("bus=tcp://127.0.0.1:%d" % a in s.log("worker"),
             "the worker logs the endpoint it binds")


run_tests(body)
