"""Integration test of the metrics endpoint under a slowloris attack (issue 18, item
2): 1,000 connections to the worker's metrics_listen, each sending one byte of a
request header every 2 s and opened again whenever the worker closed it, while a
product sells out. The worker runs with the default soft limit of 1,024 descriptors
(as systemd gives it), hard limit too, so that only the endpoint's own limits
protect it: metrics_max_per_address, metrics_max_connections and the whole-request
deadline metrics_request_timeout. First every attacker comes from 127.0.0.1, then
each from an address of its own (127.0.x.y). Each time, during the attack, the
order reaches the factory, no operator hears of a spool fault, and the worker never
runs out of descriptors; a scrape from another address answers during the first
attack, an attacker's connection that kept sending is closed at its deadline, and
once the attack is over /metrics answers anyone."""

import errno
import os
import resource
import socket
import subprocess
import threading

from harness import Stack, run_tests
from replenish_common import DONUT, alerts, factory_requests, received_mail, sell_out

SECOND = "CP-502102"
CONNECTIONS = 1000
DRIP = 2.0  # seconds between two bytes of one connection
MAX_CONNECTIONS = 16  # metrics_max_connections, the default
REQUEST = b"GET /metrics HTTP/1.1\r\nHost: restock\r\nX-Slow: " + b"a" * 4000
FAULT_SUBJECT = "[restock] 스풀 디스크 오류 "


class Slowloris:
    """CONNECTIONS non-blocking connections to addr, from the given source addresses
    (round robin), each dripping one byte every DRIP seconds and opened again once
    the server closed it. Counts the connections the server closed, and the most
    bytes one of them had sent by then."""

    def __init__(self, addr, sources):
        self.addr, self.sources = addr, sources
        self.conns = [None] * CONNECTIONS
        self.closed_by_server = 0
        self.most_sent_when_closed = 0
        self.stop = threading.Event()
        self.opened = threading.Event()  # every connection was attempted once
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open(self, i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((self.sources[i % len(self.sources)], 0))
        s.connect_ex(self.addr)
        self.conns[i] = [s, 0]

    def closed(self, s):
        try:
            return s.recv(1) == b""
        except BlockingIOError:
            return False
        except OSError as e:  # reset, or not connected yet
            return e.errno != errno.ENOTCONN

    def tick(self):
        for i, conn in enumerate(self.conns):
            if conn is None:
                self.open(i)
                continue
            s, sent = conn
            if self.closed(s):
                self.closed_by_server += 1
                self.most_sent_when_closed = max(self.most_sent_when_closed, sent)
                s.close()
                self.open(i)
                continue
            try:
                conn[1] += s.send(REQUEST[sent:sent + 1])
            except (BlockingIOError, OSError):
                pass  # still connecting (the backlog is full), or closing

    def run(self):
        while not self.stop.is_set():
            self.tick()
            self.opened.set()
            self.stop.wait(DRIP)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        for conn in self.conns:
            if conn is not None:
                conn[0].close()
        return False


def ss(*args):
    p = subprocess.run(["ss", "-Htn"] + list(args), capture_output=True, text=True)
    return [line.split() for line in p.stdout.splitlines() if line.strip()]


def accept_queue(port):
    """Connections the kernel completed that the worker has not accepted yet."""
    rows = ss("-l", "( sport = :%d )" % port)
    return int(rows[0][1]) if rows else -1


def connecting(port):
    """Connections to port not yet complete on both sides (a client may see one
    established whose last ACK the server dropped, its accept queue full)."""
    return (len(ss("state", "syn-sent", "( dport = :%d )" % port)) +
            len(ss("state", "syn-recv", "( sport = :%d )" % port)))


def scrape(s, source):
    """GET /metrics from a source address: (status, body), or None when refused."""
    host, port = s.info["METRICS_URL"].split("//")[1].split("/")[0].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=10,
                                      source_address=(source, 0)) as c:
            c.sendall(b"GET /metrics HTTP/1.0\r\nHost: restock\r\n\r\n")
            data = b""
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ")
    return (int(parts[1]), body.decode()) if len(parts) > 1 else None


def no_fault(t, s, what):
    t.is_([m[1] for m in received_mail(s) if m[1].startswith(FAULT_SUBJECT)], [],
          "%s: no spool-fault alert reached the operators" % what)
    t.is_(alerts(s, "spool_fault"), [], "%s: none is queued either" % what)
    t.ok("Too many open files" not in s.log("worker"),
         "%s: the worker never ran out of descriptors" % what,
         [ln for ln in s.log("worker").splitlines() if "Too many" in ln][:5])


def attack(t, s, sku, sources, what, arrived, during=None):
    """The attack; once it has reached the worker (arrived(port)), a sell-out."""
    host, port = s.info["METRICS_URL"].split("//")[1].split("/")[0].rsplit(":", 1)
    port = int(port)
    with Slowloris((host, port), sources) as loris:
        t.ok(loris.opened.wait(60), "%s: every connection was attempted" % what)
        t.ok(s.wait_until(lambda: arrived(port), timeout=30), "%s: %s" % (what, arrived.__doc__),
             "connecting: %d, accept queue: %d" % (connecting(port), accept_queue(port)))
        r = sell_out(s, sku)
        t.is_(r.status, 409, "%s: the sell-out checkout answers 409" % what)
        got = s.wait_until(lambda: factory_requests(s, sku), timeout=30)
        t.is_(len(got), 1, "%s: the factory received the order during the attack" % what)
        no_fault(t, s, what)
        if during is not None:
            during(loris)
        t.ok(loris.thread.is_alive(), "%s: the attack was still going on" % what)


def all_taken(port):
    """the worker took every connection in, to hold or to close"""
    return connecting(port) == 0 and accept_queue(port) == 0


def held(port):
    """Connections to port that a process accepted (the rest wait in the kernel)."""
    p = subprocess.run(["ss", "-Htnp", "state", "established", "( sport = :%d )" % port],
                       capture_output=True, text=True)
    return sum(1 for line in p.stdout.splitlines() if "users:" in line)


def full_house(port):
    """the worker holds as many connections as it may; the rest wait in the kernel, not in it"""
    return held(port) >= MAX_CONNECTIONS


def one_address(t, s, loris):
    what = "1,000 from one address"
    status = scrape(s, "127.0.0.2")
    t.is_(status and status[0], 200, "%s: a scrape from another address answers" % what)
    t.ok(status and "restock_up{" in status[1], "%s: with the metrics" % what)
    t.ok(s.wait_until(lambda: loris.most_sent_when_closed >= 3, timeout=30),
         "%s: a connection that kept sending a byte every 2 s was closed at its deadline"
         % what, "most bytes sent by a closed one: %d" % loris.most_sent_when_closed)


def body(t):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # this test's own 2,000 or so sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env = {"RESTOCK_FACTORY_ARGS": "--silent"}
    with Stack(t, components=["db", "sales", "callback", "factory", "smtp", "nginx"],
               env=env) as s:
        wrapper = ["prlimit", "--nofile=1024:1024"] + os.environ.get("RESTOCK_WRAPPER", "").split()
        s.start("worker", env={"RESTOCK_WRAPPER": " ".join(wrapper)})
        t.ok(s.wait_until(lambda: "event=started" in s.log("worker"), timeout=30),
             "the worker started", s.log("worker")[-2000:])
        t.ok("descriptors=1024" in s.log("worker") and
             "max_connections=%d " % MAX_CONNECTIONS in s.log("worker"),
             "it has 1,024 descriptors, holds %d connections at most, and says so"
             % MAX_CONNECTIONS, s.log("worker")[-2000:])
        status = scrape(s, "127.0.0.1")
        t.is_(status and status[0], 200, "before the attack, /metrics answers")

        attack(t, s, DONUT, ["127.0.0.1"], "1,000 from one address", all_taken,
               lambda loris: one_address(t, s, loris))
        sources = ["127.0.%d.%d" % (1 + i // 250, 1 + i % 250) for i in range(CONNECTIONS)]
        # At its limit the worker stops accepting (epoll): the other connections
        # wait in the listening socket's queue, which costs the worker nothing.
        attack(t, s, SECOND, sources, "1,000 from 1,000 addresses", full_house)

        t.ok(s.wait_until(lambda: (scrape(s, "127.0.0.1") or (0,))[0] == 200, timeout=30),
             "after the attack, /metrics answers again")
        t.is_(len(factory_requests(s, DONUT)), 1, "each order was sent once")
        no_fault(t, s, "at the end")


run_tests(body)
