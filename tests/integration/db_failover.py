"""Integration test of database failover (issue 14): db_host as a list whose first
host is dead (checkouts 200, the move logged once per connection, not per
checkout); a real Galera node that answers but refuses statements (1047, as a
node outside the Primary component does) first in the list (every checkout 200,
on the next host), and which, without the binary log, restockctl status calls not
durable; a real HAProxy in front of the MariaDB, restarted between checkouts
(every checkout after the restart 200, none 503: the idle check replaced each
dead connection before its statement); that proxy killed for good with the unix
socket next in the list (the responders move on, 200); and three real deadlocks,
whose losing side restock runs again (tests/integration/db_deadlock.c), the third
inside a nested transaction, of which only the outermost runs again."""

import os
import re
import socket
import subprocess
import tempfile

from galera_node import Galera
from harness import BUILDDIR, SRCDIR, Stack, free_port, run_tests

DONUT = "CP-502101"
THREADS = 4


class Proxy:
    """HAProxy in TCP mode on a loopback port, in front of the stack's unix socket."""

    def __init__(self, s):
        self.s = s
        self.port = free_port()
        self.conf = os.path.join(s.dir, "haproxy-test.cfg")
        with open(self.conf, "w") as f:
            f.write("global\n    maxconn 256\n"
                    "defaults\n    mode tcp\n    timeout connect 2s\n"
                    "    timeout client 1h\n    timeout server 1h\n"
                    "listen db\n    bind 127.0.0.1:%d\n    server db unix@%s\n"
                    % (self.port, s.info["DB_SOCKET"]))
        self.proc = None

    def start(self):
        log = open(os.path.join(self.s.dir, "log", "haproxy.log"), "a")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.conf], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        up = self.s.wait_until(lambda: self.listening(), timeout=20)
        if not up:
            raise RuntimeError("haproxy did not start: %s" % self.s.log("haproxy"))

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.5).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc is not None:
            self.proc.kill()  # every session cut at once, as a crash or a restart does
            self.proc.wait()
            self.proc = None


def restart_sales(s, db_host, **extra):
    s.stop("sales")
    env = {"RESTOCK_DB_HOST": db_host, "RESTOCK_SALES_THREADS": str(THREADS)}
    env.update(extra)
    s.start("sales", env=env)


def checkouts(s, n, clients=THREADS):
    rs = s.concurrently(n, clients, lambda i: ("POST", "/checkout", {"sku": DONUT, "quantity": 1}))
    return [r.status for r in rs]


def failovers(s, mark=0):
    return re.findall(r"event=db_failover from=(\S+) to=(\S+)", s.log("sales")[mark:])


def test_dead_first_host(t, s):
    dead = free_port()
    restart_sales(s, "127.0.0.1:%d,localhost" % dead)
    mark = len(s.log("sales"))
    statuses = checkouts(s, 40)
    t.is_(statuses.count(200), 40, "first host dead: 40 checkouts all 200")
    moves = failovers(s, mark)
    t.ok(moves and all(m == ("127.0.0.1:%d" % dead, s.info["DB_SOCKET"]) for m in moves),
         "the move to the next host is logged as event=db_failover from=dead to=next", moves)
    t.ok(len(moves) <= THREADS + 2, "once per connection (%d threads), not per checkout: %d"
         % (THREADS, len(moves)))
    statuses = checkouts(s, 40)
    t.is_(statuses.count(200), 40, "40 more checkouts all 200")
    t.is_(len(failovers(s, mark)), len(moves), "and no further move: it stays on the one that works")
    t.ok(s.info["DB_PASSWORD"] not in s.log("sales"), "the password is not in the log")


def test_refusing_node(t, s):
    top = tempfile.mkdtemp(prefix="galera-", dir=s.dir)
    node = Galera(top)
    try:
        node.root("CREATE DATABASE restock CHARACTER SET utf8mb4;"
                  " CREATE USER restock@'127.0.0.1' IDENTIFIED BY '%s';"
                  " GRANT ALL ON restock.* TO restock@'127.0.0.1'" % s.info["DB_PASSWORD"])
        # The schema too, so that only the node's refusal can fail a statement there.
        env = dict(s.env, RESTOCK_CONFIG=s.info["RESTOCK_CONFIG"],
                   RESTOCK_DB_HOST="127.0.0.1:%d" % node.port, RESTOCK_DB_SOCKET="")
        p = subprocess.run([os.path.join(BUILDDIR, "ctl", "restockctl"), "db", "migrate", "--dir",
                            os.path.join(SRCDIR, "sql")], env=env, capture_output=True, text=True)
        t.ok(p.returncode == 0, "the Galera node has restock's schema", p.stdout + p.stderr)
        # A Galera node without the binary log loses the last acknowledged commit at
        # a power loss of the whole cluster (docs/scaling.md): not durable.
        p = subprocess.run([os.path.join(BUILDDIR, "ctl", "restockctl"), "status"], env=env,
                           capture_output=True, text=True)
        t.ok("database: NOT DURABLE: a Galera node without the binary log" in p.stdout
             and "sync_binlog = 1" in p.stdout,
             "restockctl status: a Galera node without log_bin is not durable, and says what "
             "to set", p.stdout[-800:] + p.stderr[-400:])
        node.root("SET GLOBAL wsrep_reject_queries = ALL")
        restart_sales(s, "127.0.0.1:%d,localhost" % node.port)
        mark = len(s.log("sales"))
        stock = s.stock(DONUT)
        statuses = checkouts(s, 20)
        t.ok(statuses.count(200) == 20,
             "first host refuses statements (1047): 20 checkouts all 200", statuses)
        t.is_(s.stock(DONUT), stock - 20, "sold on the next host")
        moves = failovers(s, mark)
        t.ok(moves and all(m == ("127.0.0.1:%d" % node.port, s.info["DB_SOCKET"]) for m in moves),
             "each connection moved from the refusing node to the next host, logged", moves)
    finally:
        node.stop()


def test_proxy_restart(t, s, proxy):
    # db_idle_check 0: a connection idle for any time is checked before its next
    # statement, as one idle for longer than the default 1 s is (no wait for it).
    restart_sales(s, "127.0.0.1:%d" % proxy.port, RESTOCK_DB_SOCKET="",
                  RESTOCK_DB_IDLE_CHECK="0")
    statuses = checkouts(s, 40, clients=8)
    t.is_(statuses.count(200), 40, "through HAProxy: 40 checkouts all 200")
    stock = s.stock(DONUT)
    proxy.stop()
    proxy.start()
    # The restart took every connection down; they are idle when the next
    # checkouts come, as after a real restart.
    mark = len(s.log("sales"))
    statuses = checkouts(s, 40, clients=8)
    t.ok(statuses.count(200) == 40, "after the proxy's restart: 40 checkouts all 200, none 503",
         statuses)
    t.is_(s.stock(DONUT), stock - 40, "and each of them sold one")
    t.ok("event=db_reconnect" in s.log("sales")[mark:],
         "the dead idle connections were replaced before a statement (event=db_reconnect)")


def test_proxy_gone(t, s, proxy):
    restart_sales(s, "127.0.0.1:%d,localhost" % proxy.port, RESTOCK_DB_IDLE_CHECK="0")
    statuses = checkouts(s, 20)
    t.is_(statuses.count(200), 20, "list of the proxy then the socket: 20 checkouts all 200")
    mark = len(s.log("sales"))
    t.is_(failovers(s, mark), [], "on the first host")
    proxy.stop()  # the connections idle, checked before their next statement (as above)
    statuses = checkouts(s, 20)
    t.ok(statuses.count(200) == 20, "the proxy killed: 20 more checkouts all 200", statuses)
    moves = failovers(s, mark)
    t.ok(moves and all(m == ("127.0.0.1:%d" % proxy.port, s.info["DB_SOCKET"]) for m in moves),
         "each connection moved to the next host, logged", moves)


def db_deadlock(t, env, *args):
    """Runs tests/integration/db_deadlock, its TAP counted here; its log lines."""
    p = subprocess.run([os.path.join(BUILDDIR, "tests", "integration", "db_deadlock")] + list(args),
                       env=dict(os.environ, **env), capture_output=True, text=True, timeout=120)
    for line in p.stdout.splitlines():
        if line.startswith(("ok", "not ok")):
            t.ok(line.startswith("ok"), "db_deadlock: " + line.split(" - ", 1)[-1], p.stdout)
        elif line.startswith("Bail out!"):
            t.ok(False, "db_deadlock ran", line)
    t.is_(p.returncode, 0, "db_deadlock exits 0")
    reports = [m for m in ("AddressSanitizer", "LeakSanitizer", "runtime error:") if m in p.stderr]
    t.is_(reports, [], "no sanitizer report from db_deadlock")
    return p.stderr


def test_killed_while_idle(t, s, proxy):
    """A connection the server closed, noticed before the next write (over TCP, the
    proxy's; no ping of an idle connection: db_idle_check an hour)."""
    proxy.start()
    log = db_deadlock(t, dict(RESTOCK_CONFIG=s.info["RESTOCK_CONFIG"], RESTOCK_DB_SOCKET="",
                              RESTOCK_DB_HOST="127.0.0.1:%d" % proxy.port,
                              RESTOCK_DB_IDLE_CHECK="3600"), "killed-while-idle")
    t.ok("event=db_reconnect" in log and "the server closed the connection" in log,
         "the new connection is logged: event=db_reconnect, the server closed the connection", log)


def test_deadlocks(t, s):
    log = db_deadlock(t, dict(RESTOCK_CONFIG=s.info["RESTOCK_CONFIG"]))
    retries = re.findall(r"event=db_retry attempt=1 error=1213", log)
    t.is_(len(retries), 3, "each of the three deadlocks was logged as one retry (error 1213)")


def body(t):
    with Stack(t, components=["db", "sales", "nginx"], private_db=True) as s:
        s.sql("UPDATE product SET stock = 100000 WHERE sku = '%s'" % DONUT)
        proxy = Proxy(s)
        proxy.start()
        try:
            test_dead_first_host(t, s)
            test_refusing_node(t, s)
            test_proxy_restart(t, s, proxy)
            test_proxy_gone(t, s, proxy)
            test_killed_while_idle(t, s, proxy)
        finally:
            proxy.stop()
        test_deadlocks(t, s)


if __name__ == "__main__":
    run_tests(body)
