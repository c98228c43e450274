"""Integration test of the shipped HAProxy configuration (issue 14):
packaging/haproxy/restock-galera.cfg passes `haproxy -c`; galera-check against a
real single-node Galera cluster bootstrapped here (healthy when Synced, Primary and
ready; not healthy when desynced, when it rejects queries, with a wrong password or
no option file; the password never in its output; at max_connections, where its own
connection is refused with 1040, still healthy, and through the node's extra_port
still able to fail a full node that is not Synced, issue 18 item 9); HAProxy with the shipped
configuration in front of that node (a session through it is shut down once the
node is marked down); and the writer's selection with three stand-in nodes and a
stand-in check: one writer, failover to a backup, no failback when node1 returns."""

import grp
import os
import shutil
import socket
import subprocess
import tempfile

from galera_node import ME, PROVIDER, Galera
from harness import SRCDIR, free_port, run_tests, wait_until

CONF = os.path.join(SRCDIR, "packaging", "haproxy", "restock-galera.cfg")
CHECK = os.path.join(SRCDIR, "packaging", "haproxy", "galera-check")
PASSWORD = "mon-Pa55-%d" % os.getpid()
# HAProxy (and so its checks) runs as the test's user, who owns the option files.
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def check(addr, port, cnf, as_root=False, check_port=None):
    if as_root:  # over the socket the monitor user is restock_monitor@localhost: root
        cnf = cnf + ".root"
        write_cnf(cnf, "root", "")
    env = dict(os.environ, RESTOCK_GALERA_MONITOR_CNF=cnf)
    env.pop("RESTOCK_GALERA_CHECK_PORT", None)
    if check_port is not None:
        env["RESTOCK_GALERA_CHECK_PORT"] = str(check_port)
    return subprocess.run([CHECK, "-", "-", addr, str(port)], env=env, capture_output=True,
                          text=True, timeout=30)


def write_cnf(path, user, password):
    with open(path, "w") as f:
        f.write("[client]\nuser = %s\npassword = %s\n" % (user, password))
    os.chmod(path, 0o600)


class Haproxy:
    def __init__(self, top, nodes, check_command):
        self.listen = free_port()
        self.stats = os.path.join(top, "haproxy-%d.sock" % self.listen)
        self.env = dict(os.environ, RESTOCK_DB_LISTEN="127.0.0.1:%d" % self.listen,
                        RESTOCK_GALERA_CHECK=check_command,
                        RESTOCK_HAPROXY_STATS=self.stats, RESTOCK_CHECK_INTER="200",
                        RESTOCK_HAPROXY_USER=ME, RESTOCK_HAPROXY_GROUP=MY_GROUP)
        for i, node in enumerate(nodes):
            self.env["RESTOCK_GALERA_NODE%d" % (i + 1)] = node
        self.log = open(os.path.join(top, "haproxy-%d.log" % self.listen), "w")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", CONF], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def command(self, line):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(self.stats)
            s.sendall(line.encode() + b"\n")
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out.decode()
                out += chunk
        except OSError:
            return ""
        finally:
            s.close()

    def server_status(self, name):
        for line in self.command("show stat").splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == "galera_writer" and fields[1] == name:
                return fields[17]
        return None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def test_config_check(t):
    p = subprocess.run(["haproxy", "-c", "-f", CONF], capture_output=True, text=True)
    t.ok(p.returncode == 0, "haproxy -c accepts restock-galera.cfg at its defaults",
         p.stdout + p.stderr)
    env = dict(os.environ, RESTOCK_DB_LISTEN="127.0.0.1:13306",
               RESTOCK_GALERA_NODE1="127.0.0.1:23306", RESTOCK_GALERA_NODE2="127.0.0.1:23307",
               RESTOCK_GALERA_NODE3="127.0.0.1:23308")
    p = subprocess.run(["haproxy", "-c", "-f", CONF], env=env, capture_output=True, text=True)
    t.ok(p.returncode == 0, "and with its addresses from the environment", p.stdout + p.stderr)


class Filler:
    """One session that holds a connection of the node until closed (root over
    the socket: root, not the monitor, may take the one connection over
    max_connections, so the monitor meets the limit)."""

    def __init__(self, node):
        self.p = subprocess.Popen(["mariadb", "--no-defaults", "-S", node.sock, "-u", "root",
                                   "-N", "-B", "--unbuffered"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.p.stdin.write("SELECT 'connected';\n")
        self.p.stdin.flush()
        self.line = self.p.stdout.readline().strip()

    def close(self):
        self.p.stdin.close()
        self.p.wait(30)


def monitor_connects(node, cnf):
    """The monitor's own connection to the node's main port: the client's error."""
    p = subprocess.run(["mariadb", "--defaults-extra-file=" + cnf, "--host=127.0.0.1",
                        "--port=%d" % node.port, "--protocol=tcp", "-N", "-B", "-e", "SELECT 1"],
                       capture_output=True, text=True, timeout=30)
    return p.stdout.strip() + p.stderr.strip()


def test_full_node(t, node, cnf, extra):
    """max_connections 10, all of them taken: the monitor's connection is refused
    with 1040."""
    node.root("SET GLOBAL max_connections = 10")
    fillers = []
    try:
        while len(fillers) < 10 and "1040" not in monitor_connects(node, cnf):
            fillers.append(Filler(node))
        t.ok(all(f.line == "connected" for f in fillers),
             "%d sessions fill max_connections 10" % len(fillers), [f.line for f in fillers])
        refused = monitor_connects(node, cnf)
        t.ok("ERROR 1040" in refused, "the node refuses the monitor's connection: 1040", refused)
        p = check("127.0.0.1", node.port, cnf)
        t.is_(p.returncode, 0, "galera-check: a Synced node at max_connections is healthy")
        t.ok("max_connections" in p.stderr, "and it says why it could not read the state",
             p.stderr)
        t.ok(PASSWORD not in p.stdout + p.stderr, "without the password")
        p = check("127.0.0.1", node.port, cnf, check_port=extra)
        t.ok(p.returncode == 0 and "max_connections" not in p.stderr,
             "through the node's extra_port (RESTOCK_GALERA_CHECK_PORT) the full node's state is"
             " read: healthy", p.stderr)
        # Root over the socket takes the one connection over the limit.
        node.root("SET GLOBAL wsrep_desync = ON")
        t.ok(wait_until(lambda: node.status("wsrep_local_state") != "4"),
             "the full node desynced, no longer Synced")
        t.is_(check("127.0.0.1", node.port, cnf, check_port=extra).returncode, 1,
              "galera-check through the extra_port: a full node that is not Synced is not"
              " healthy")
        node.root("SET GLOBAL wsrep_desync = OFF")
        t.ok(wait_until(lambda: check("127.0.0.1", node.port, cnf,
                                      check_port=extra).returncode == 0),
             "and healthy again once Synced")
    finally:
        for f in fillers:
            f.close()
        node.root("SET GLOBAL max_connections = 151")


def test_check_on_galera(t, top):
    extra = free_port()
    node = Galera(top, ["--extra-port=%d" % extra, "--extra-max-connections=4"])
    try:
        t.is_(node.status("wsrep_local_state"), "4", "the bootstrapped node is Synced")
        node.root("CREATE USER restock_monitor@'127.0.0.1' IDENTIFIED BY '%s'" % PASSWORD)
        cnf = os.path.join(top, "monitor.cnf")
        write_cnf(cnf, "restock_monitor", PASSWORD)
        p = check("127.0.0.1", node.port, cnf)
        t.ok(p.returncode == 0, "galera-check: a Synced, Primary, ready node is healthy",
             p.stdout + p.stderr)
        p = check(node.sock, 0, cnf, as_root=True)
        t.ok(p.returncode == 0, "galera-check: a unix socket as the address", p.stderr)

        node.root("SET GLOBAL wsrep_desync = ON")
        t.ok(wait_until(lambda: node.status("wsrep_local_state") != "4"),
             "desynced: the node leaves Synced (%s)" % node.status("wsrep_local_state"))
        t.is_(check("127.0.0.1", node.port, cnf).returncode, 1,
              "galera-check: a desynced node is not healthy")
        node.root("SET GLOBAL wsrep_desync = OFF")
        t.ok(wait_until(lambda: check("127.0.0.1", node.port, cnf).returncode == 0),
             "galera-check: healthy again once Synced")

        node.root("SET GLOBAL wsrep_reject_queries = ALL")
        t.is_(check("127.0.0.1", node.port, cnf).returncode, 1,
              "galera-check: a node that rejects queries is not healthy")
        node.root("SET GLOBAL wsrep_reject_queries = NONE")
        t.is_(check("127.0.0.1", node.port, cnf).returncode, 0, "and healthy once it accepts")

        wrong = os.path.join(top, "wrong.cnf")
        write_cnf(wrong, "restock_monitor", "not-" + PASSWORD)
        p = check("127.0.0.1", node.port, wrong)
        t.is_(p.returncode, 1, "galera-check: a wrong password is not healthy")
        p2 = check("127.0.0.1", node.port, os.path.join(top, "missing.cnf"))
        t.ok(p2.returncode == 1 and "missing.cnf" in p2.stderr,
             "galera-check: no option file, not healthy, and it says which", p2.stderr)
        t.ok(PASSWORD not in p.stdout + p.stderr + p2.stdout + p2.stderr,
             "the password is in none of its output")
        t.is_(check("127.0.0.1", free_port(), cnf).returncode, 1,
              "galera-check: nothing listening, not healthy")
        t.is_(check("127.0.0.1", node.port, cnf, check_port=free_port()).returncode, 1,
              "galera-check: nothing listening at RESTOCK_GALERA_CHECK_PORT, not healthy")

        test_full_node(t, node, cnf, extra)

        test_haproxy_on_galera(t, top, node, cnf)
    finally:
        node.stop()


def test_haproxy_on_galera(t, top, node, cnf):
    # HAProxy runs a check with an empty environment: a wrapper names the file.
    wrapper = os.path.join(top, "galera-check-wrapper")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nRESTOCK_GALERA_MONITOR_CNF='%s' exec '%s' \"$@\"\n" % (cnf, CHECK))
    os.chmod(wrapper, 0o755)
    hp = Haproxy(top, ["127.0.0.1:%d" % node.port, "127.0.0.1:%d" % free_port(),
                       "127.0.0.1:%d" % free_port()], wrapper)
    try:
        t.ok(wait_until(lambda: hp.server_status("node1") == "UP"),
             "HAProxy with the shipped config: node1 UP by galera-check",
             hp.command("show stat"))
        c = socket.create_connection(("127.0.0.1", hp.listen), 5)
        c.settimeout(30)
        greeting = c.recv(4096)
        t.ok(b"mysql_native_password" in greeting or b"MariaDB" in greeting,
             "a connection through it reaches the node (its greeting)", greeting[:80])
        node.root("SET GLOBAL wsrep_desync = ON")
        t.ok(wait_until(lambda: hp.server_status("node1") == "DOWN"),
             "node desynced: HAProxy marks node1 DOWN", hp.command("show stat"))
        try:
            rest = c.recv(4096)
        except OSError:
            rest = b""
        t.is_(rest, b"", "and shuts the session on it down (on-marked-down shutdown-sessions)")
        c.close()
        node.root("SET GLOBAL wsrep_desync = OFF")
    finally:
        hp.stop()


class FakeNodes:
    """TCP servers that greet with their name; a stand-in check that says a port is
    healthy while the file up-PORT exists."""

    def __init__(self, top, n=3):
        self.top = top
        self.socks = []
        self.ports = []
        for _ in range(n):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            s.listen(64)
            self.socks.append(s)
            self.ports.append(s.getsockname()[1])
            self.up(len(self.ports))
        import threading
        for i, s in enumerate(self.socks):
            threading.Thread(target=self.serve, args=(s, i + 1), daemon=True).start()
        self.check = os.path.join(top, "fake-check")
        with open(self.check, "w") as f:
            f.write("#!/bin/sh\n[ -e '%s/up-'\"$4\" ]\n" % top)
        os.chmod(self.check, 0o755)

    def serve(self, s, n):
        held = []
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            c.sendall(b"node%d\n" % n)
            held.append(c)  # kept open, as a database session is

    def up(self, n):
        open(os.path.join(self.top, "up-%d" % self.ports[n - 1]), "w").close()

    def down(self, n):
        os.unlink(os.path.join(self.top, "up-%d" % self.ports[n - 1]))

    def close(self):
        for s in self.socks:
            s.close()


def writer(hp):
    try:
        c = socket.create_connection(("127.0.0.1", hp.listen), 5)
        c.settimeout(10)
        name = c.recv(64).decode().strip()
        return name, c
    except OSError:
        return None, None


def test_writer_selection(t, top):
    nodes = FakeNodes(top)
    hp = Haproxy(top, ["127.0.0.1:%d" % p for p in nodes.ports], nodes.check)
    try:
        t.ok(wait_until(lambda: all(hp.server_status("node%d" % i) == "UP" for i in (1, 2, 3))),
             "stand-in nodes: all three UP", hp.command("show stat"))
        names = []
        held = []
        for _ in range(6):
            name, c = writer(hp)
            names.append(name)
            held.append(c)
        t.is_(names, ["node1"] * 6, "one writer: every connection goes to node1")
        nodes.down(1)
        t.ok(wait_until(lambda: hp.server_status("node1") == "DOWN"), "node1 marked DOWN")
        try:
            rest = held[0].recv(64)
        except OSError:
            rest = b""
        t.is_(rest, b"", "node1's sessions are shut down")
        names = [writer(hp)[0] for _ in range(4)]
        t.is_(names, ["node2"] * 4, "failover: every new connection goes to the first backup")
        nodes.up(1)
        t.ok(wait_until(lambda: hp.server_status("node1") == "UP"), "node1 healthy again, UP")
        names = [writer(hp)[0] for _ in range(4)]
        t.is_(names, ["node2"] * 4, "no failback: the writer stays on node2")
        nodes.down(2)
        t.ok(wait_until(lambda: hp.server_status("node2") == "DOWN"), "node2 marked DOWN")
        names = [writer(hp)[0] for _ in range(4)]
        t.is_(names, ["node1"] * 4, "then the writer moves to node1, healthy, alone")
        for c in held:
            if c is not None:
                c.close()
    finally:
        hp.stop()
        nodes.close()


def body(t):
    top = tempfile.mkdtemp(prefix="restock-haproxy-")
    failed = t.failed
    try:
        test_config_check(t)
        test_writer_selection(t, top)
        if os.path.exists(PROVIDER):
            test_check_on_galera(t, top)
        else:
            t.ok(False, "galera-4 is installed (%s): scripts/deps test" % PROVIDER)
    finally:
        if t.failed == failed and not os.environ.get("RESTOCK_KEEP"):
            shutil.rmtree(top, ignore_errors=True)
        else:
            t.diag("folder kept: " + top)


if __name__ == "__main__":
    run_tests(body)
