"""The cluster test bed (docs/scaling.md): restock on several "hosts" of one machine,
all on loopback, in one private temporary folder, stopped at the end whatever happens.

  3 MariaDB Galera nodes (galera-4), each with its own datadir, client port, gcomm
    port, IST port and rsync SST port, running as the user mysql; the first is
    bootstrapped with --wsrep-new-cluster, the others join it by SST; a node killed
    with SIGKILL is restarted with --wsrep-recover first and rejoins by IST;
  HAProxy in front (one writer, the others backup, a Galera-aware external check:
    packaging/haproxy/ when present, else a minimal configuration of the bed's own);
  two restock "hosts", each with a sales responder, a callback responder and a
    worker with its own spool, metrics and doorbell endpoint (tcp://);
  nginx with an upstream of both sales and both callback responders;
  the factory simulator (tests/factory_sim.py) and an SMTP sink (tests/smtp_sink.py).
Bed(powercut=True) puts each node's datadir on a powercutfs mount (tests/fault/):
power_loss() kills every node and cuts every mount at once, cold_start() starts
the cluster again by MariaDB's procedure (bootstrap the highest position).

Needs root (the database servers run as mysql: an rsync SST as root fails), the
build in build/ (or RESTOCK_BUILDDIR), galera-4, haproxy, rsync, nginx, MariaDB.
RESTOCK_KEEP=1 keeps the folder."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))
from harness import SANITIZER_MARKS  # noqa: E402
# A port outside the kernel's ephemeral range (scripts/freeport.py says why).
from harness import free_port as bed_port  # noqa: E402
from harness import spawn, stop_process  # noqa: E402
import galera_node  # noqa: E402 (the Galera node's parts, shared with the integration tests)
sys.path.insert(0, os.path.join(SRCDIR, "tests", "fault"))
from powercutfs import Mount  # noqa: E402 (the client side: no pyfuse3 needed here)

BUILDDIR = os.environ.get("RESTOCK_BUILDDIR") or os.path.join(SRCDIR, "build")
PYTHON = "/usr/bin/python3"
GALERA = "/usr/lib/galera/libgalera_smm.so"
REORDER = 10
AD_MANAGER = "ad-manager@example.com"  # of every product the bed adds
# Failure detection of the bed's cluster, shorter than Galera's defaults so that a
# scenario takes seconds (keepalive <= inactive check <= suspect <= inactive).
EVS = ("evs.keepalive_period=PT0.5S;evs.inactive_check_period=PT0.5S;"
       "evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S;evs.install_timeout=PT6S")
# Longer than the cluster's detection and reconfiguration (3 + 6 s): a statement
# waiting for the new primary component is not cut off (docs/scaling.md).
DB_TIMEOUT = 20


def wait_until(predicate, timeout=60, interval=0.2):
    deadline = time.time() + timeout
    value = predicate()
    while not value and time.time() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


class Node:
    """One Galera node: a mariadbd of its own."""

    def __init__(self, bed, index):
        self.bed = bed
        self.index = index
        self.name = "node%d" % index
        self.dir = os.path.join(bed.dir, self.name)
        self.datadir = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.port, self.gcomm, self.ist, self.sst = (bed_port() for _ in range(4))
        self.proc = None
        # In the node's own folder: the server, as mysql, writes it.
        self.log = os.path.join(self.dir, "error.log")
        # A bed made for power cuts: the datadir on a powercutfs mount (journal: an
        # fsync makes the earlier names durable, as ext4's journal does; MariaDB never
        # fsyncs its folders), its durable state in pc/.
        self.mount = None
        if bed.powercut:
            self.mount = Mount(os.path.join(self.dir, "pc"), self.datadir,
                               log=os.path.join(bed.logdir, "powercutfs-%s.log" % self.name),
                               journal=True)

    def args(self, extra=()):
        peers = ",".join("127.0.0.1:%d" % n.gcomm for n in self.bed.nodes)
        return galera_node.node_args(
            self.dir, self.datadir, self.socket, self.log, "mysql", self.port, self.gcomm,
            self.ist, "restock-bed", peers, "gcache.size=%s;" % self.bed.gcache + EVS,
            ["--innodb-log-file-size=16M", "--innodb-flush-log-at-trx-commit=2",
             "--max-connections=300", "--character-set-server=utf8mb4",
             "--collation-server=utf8mb4_unicode_ci", "--wsrep-node-name=" + self.name,
             "--wsrep-sst-receive-address=127.0.0.1:%d" % self.sst,
             "--wsrep-slave-threads=2",
             # The binary log, synced: without it a Galera node answers a commit
             # once prepared, and a power loss of the whole cluster can roll back
             # the last one answered (docs/scaling.md, scenario p).
             "--log-bin=mysql-bin", "--sync-binlog=1"] + list(extra))

    def prepare(self, install):
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        os.makedirs(self.datadir, exist_ok=True)
        if self.mount is not None:
            self.mount.start()
        if install:
            galera_node.install(self.datadir, "mysql")
        subprocess.run(["chown", "-R", "mysql:mysql", self.dir], check=True)

    def recover(self):
        """After a SIGKILL: the last committed position InnoDB holds (uuid:seqno),
        from mariadbd --wsrep-recover (its crash recovery, then it exits)."""
        before = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        p = subprocess.run(self.args(["--wsrep-recover"]), capture_output=True, text=True)
        with open(self.log, errors="replace") as f:
            f.seek(before)
            found = re.findall(r"WSREP: Recovered position: (\S+)", f.read())
        if p.returncode != 0 or not found:
            raise RuntimeError("%s: --wsrep-recover found no position (log: %s)"
                               % (self.name, self.log))
        self.recovered = found[-1]
        return self.recovered

    def start(self, bootstrap=False, recover=False, position=None):
        extra = []
        if bootstrap:
            extra.append("--wsrep-new-cluster")
        if recover:
            # Start from the position InnoDB holds (recovered now unless given), so
            # that the node asks its peers for the writesets it misses (IST) instead
            # of a full copy (SST).
            extra.append("--wsrep-start-position=" + (position or self.recover()))
        # wsrep_sst_rsync gives its rsync daemon a log file in MYSQL_TMP_DIR (else
        # syslog): why a joiner's transfer failed is then in the node's folder.
        self.proc = subprocess.Popen(self.args(extra), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=dict(
                                         os.environ, MYSQL_TMP_DIR=os.path.join(self.dir, "tmp")))

    def wait_synced(self, timeout=120):
        def synced():
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError("%s exited (log: %s)" % (self.name, self.log))
            st = self.status()
            return st.get("wsrep_local_state") == "4" and st.get("wsrep_ready") == "ON"
        if not wait_until(synced, timeout=timeout, interval=0.5):
            raise RuntimeError("%s did not become Synced in %ds" % (self.name, timeout))

    def root(self, query, check=True):
        p = galera_node.root_sql(self.socket, query, check=False)
        if check and p.returncode != 0:
            raise RuntimeError("%s: %s: %s" % (self.name, query, p.stderr.strip()))
        return p

    def status(self):
        p = self.root("SHOW GLOBAL STATUS LIKE 'wsrep_%'", check=False)
        if p.returncode != 0:
            return {}
        return dict(line.split("\t", 1) for line in p.stdout.splitlines() if "\t" in line)

    def direct(self, query):
        """A client of its own over tcp, as the application's user: (exit, stderr)."""
        p = subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(self.port),
                            "-u", "restock", "-p" + self.bed.password, "-N", "-B",
                            "--connect-timeout=3", "restock", "-e", query],
                           capture_output=True, text=True, timeout=30)
        return p.returncode, p.stderr.strip()

    def kill(self, sig=signal.SIGKILL):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig == signal.SIGKILL:
                self.proc.wait()

    def stop(self):
        stop_process(self.proc, 60)
        if self.mount is not None:
            self.mount.stop()


class Program:
    """A long-running process with its log; stopped by SIGTERM at the end."""

    def __init__(self, bed, name, argv, env=None):
        self.name = name
        self.log = os.path.join(bed.logdir, name + ".log")
        e = dict(os.environ)
        e.update(env or {})
        self.proc = spawn(argv, self.log, e)

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stopped(self):
        """Every thread of it stopped (SIGSTOP delivered, not only sent)."""
        task = "/proc/%d/task" % self.proc.pid
        try:
            states = []
            for tid in os.listdir(task):
                with open(os.path.join(task, tid, "stat")) as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
        except OSError:
            return False
        return bool(states) and all(s in ("T", "t") for s in states)

    def stop(self):
        stop_process(self.proc)

    def text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


class Host:
    """One restock host: its configuration, sockets, spool; sales, callback, worker."""

    def __init__(self, bed, index):
        self.bed = bed
        self.index = index
        self.name = "host%d" % index
        self.dir = os.path.join(bed.dir, self.name)
        self.sock = os.path.join(self.dir, "sock")
        self.spool = os.path.join(self.dir, "spool")
        self.bus_port = bed_port()
        self.metrics_port = bed_port()
        self.programs = {}
        for d in (self.sock, self.spool, os.path.join(self.dir, "metrics")):
            os.makedirs(d, exist_ok=True)
        self.conf = os.path.join(self.dir, "restock.conf")

    def write_conf(self):
        b = self.bed
        lines = {
            "db_host": "127.0.0.1", "db_port": b.haproxy_port, "db_user": "restock",
            "db_password": b.password, "db_name": "restock", "db_timeout": DB_TIMEOUT,
            "sales_socket": os.path.join(self.sock, "sales.sock"), "sales_threads": 4,
            "callback_socket": os.path.join(self.sock, "callback.sock"), "callback_threads": 2,
            "socket_mode": "0666",
            "bus_endpoint": ",".join("tcp://127.0.0.1:%d" % h.bus_port for h in b.hosts),
            "bus_listen": "tcp://127.0.0.1:%d" % self.bus_port,
            "spool_dir": self.spool, "sweep_interval": 2, "backoff_min": 1, "backoff_max": 2,
            "factory_api": "http://127.0.0.1:%d" % b.factory_port,
            "public_url": "http://127.0.0.1:%d" % b.http_port,
            "smtp_host": "127.0.0.1", "smtp_port": b.smtp_port, "smtp_starttls": "off",
            "mail_from": "restock@donut-states.example",
            "operator_email": "ops@donut-states.example", "callback_key": b.callback_key,
            "metrics_listen": "127.0.0.1:%d" % self.metrics_port,
            "metrics_dir": os.path.join(self.dir, "metrics"),
        }
        # Takeovers within seconds (the default is 30 s).
        lines["lease_time"] = b.extra_conf.setdefault("lease_time", 5)
        lines.update(b.extra_conf)
        with open(self.conf, "w") as f:
            f.write("# restock on %s of the cluster bed in %s\n" % (self.name, b.dir))
            for k, v in lines.items():
                f.write("%s = %s\n" % (k, v))
        os.chmod(self.conf, 0o600)

    def start(self, which, env=None):
        """Starts sales, callback or worker with RESTOCK_<KEY> overrides in env."""
        binary = {"sales": "fcgi/restock-sales", "callback": "fcgi/restock-callback",
                  "worker": "workers/restock-worker"}[which]
        e = {"RESTOCK_CONFIG": self.conf}
        e.update(env or {})
        sock = os.path.join(self.sock, which + ".sock")
        if which != "worker" and os.path.exists(sock):
            os.unlink(sock)
        # The log is appended to: a worker started again has started once its log
        # says so once more.
        started = self.programs[which].text().count("event=started") \
            if which in self.programs else 0
        self.programs[which] = Program(self.bed, "%s-%s" % (self.name, which),
                                       [os.path.join(BUILDDIR, binary)], e)
        if which != "worker":
            if not wait_until(lambda: os.path.exists(sock), timeout=30):
                raise RuntimeError("%s %s did not listen (log %s)"
                                   % (self.name, which, self.programs[which].log))
        else:
            w = self.programs[which]
            if not wait_until(lambda: w.text().count("event=started") > started
                              or not w.alive(), timeout=30) or not w.alive():
                raise RuntimeError("%s worker did not start (log %s)" % (self.name, w.log))

    def stop(self, which):
        p = self.programs.get(which)
        if p is not None:
            p.stop()

    def spool_count(self, queue, *states):
        """Messages of this host's worker's spool queue in those states (folders)."""
        n = 0
        for state in states:
            try:
                n += len(os.listdir(os.path.join(self.spool, queue, state)))
            except FileNotFoundError:
                pass
        return n

    def checkouts(self):
        """Checkouts this host's sales responder answered, from its worker's /metrics
        (restock_checkouts_total, every result)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        return int(sum(float(m) for m in re.findall(
            r"^restock_checkouts_total\{[^}]*\} (\S+)$", text, re.M)))

    def restart_responders(self, env=None):
        for which in ("sales", "callback"):
            self.stop(which)
            self.start(which, env)


class Load:
    """Checkout clients: each thread its own keep-alive connection to nginx, one
    Idempotency-Key per checkout (a client's own id, so that an answer lost or a
    503 can be asked again). Records every answer with its time."""

    def __init__(self, bed, skus, clients=4, pause=0.01, total=None, keys=True):
        self.bed = bed
        self.keys = keys
        self.skus = skus
        self.clients = clients
        self.pause = pause
        self.total = total
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        bed.loads.append(self)
        self.results = []  # (time, status, sku, quantity, key, remaining, replayed)
        self.sent = 0
        self.threads = []

    def _next(self):
        with self.lock:
            if self.total is not None and self.sent >= self.total:
                return None
            self.sent += 1
            return self.sent

    def _client(self, number):
        conn = None
        while not self.stop_flag.is_set():
            n = self._next()
            if n is None:
                break
            sku = self.skus[n % len(self.skus)]  # every sku in turn, whatever the clients
            key = str(uuid.uuid4()) if self.keys else None
            r = self.bed.checkout(sku, 1, key, conn_holder=[conn])
            conn = r.pop("conn")
            with self.lock:
                self.results.append((time.time(), r["status"], sku, 1, key, r.get("remaining"),
                                     r.get("replayed")))
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def start(self):
        for i in range(self.clients):
            t = threading.Thread(target=self._client, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        self.stop_flag.set()
        self.join()

    def join(self):
        for t in self.threads:
            t.join()

    def count(self, status, since=0.0):
        """Checkouts answered status (at or after the time since)."""
        with self.lock:
            return sum(1 for r in self.results if r[1] == status and r[0] >= since)

    def since(self, t0):
        with self.lock:
            results = list(self.results)
        return [r for r in sorted(results) if r[0] >= t0]


class Bed:
    def __init__(self, tap, nodes=3, hosts=2, extra_conf=None, factory_args=("--delay", "2"),
                 powercut=False):
        self.tap = tap
        # powercut: every node's datadir on a powercutfs mount (Node.mount), with a
        # smaller gcache (each node's galera.cache is written through the mount).
        self.powercut = powercut
        self.gcache = "16M" if powercut else "64M"
        self.dir = tempfile.mkdtemp(prefix="restock-cluster-")
        os.chmod(self.dir, 0o755)
        self.logdir = os.path.join(self.dir, "log")
        os.makedirs(self.logdir)
        self.password = uuid.uuid4().hex
        self.monitor_password = uuid.uuid4().hex
        self.callback_key = os.urandom(32).hex()
        self.http_port, self.haproxy_port = bed_port(), bed_port()
        self.factory_port, self.smtp_port = bed_port(), bed_port()
        self.extra_conf = dict(extra_conf or {})
        self.factory_args = list(factory_args)
        self.nodes = []
        self.nodes = [Node(self, i + 1) for i in range(nodes)]
        self.hosts = []
        self.hosts = [Host(self, i + 1) for i in range(hosts)]
        self.others = {}
        self.loads = []

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close(failed=True)
            raise
        return self

    def __exit__(self, *exc):
        self.close(failed=exc[0] is not None)
        return False

    def start(self):
        t0 = time.time()
        first = self.nodes[0]
        first.prepare(install=True)
        first.start(bootstrap=True)
        first.wait_synced()
        first.root("CREATE DATABASE restock CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
                   "CREATE USER 'restock'@'127.0.0.1' IDENTIFIED BY '%s';"
                   "GRANT ALL PRIVILEGES ON restock.* TO 'restock'@'127.0.0.1';"
                   "CREATE USER 'monitor'@'127.0.0.1' IDENTIFIED BY '%s';"
                   % (self.password, self.monitor_password))
        for n in self.nodes[1:]:
            n.prepare(install=False)
            n.start()
            n.wait_synced()
        self.figure("bed", "3 Galera nodes up and synced (s)", round(time.time() - t0, 1))
        for h in self.hosts:
            h.write_conf()
        self.migrate()
        self.start_haproxy()
        self.others["factory"] = Program(self, "factory", [
            PYTHON, os.path.join(SRCDIR, "tests", "factory_sim.py"), "--port",
            str(self.factory_port)] + self.factory_args)
        os.makedirs(os.path.join(self.dir, "mail", "new"))
        for sub in ("tmp", "cur"):
            os.makedirs(os.path.join(self.dir, "mail", sub))
        self.others["smtp"] = Program(self, "smtp", [
            PYTHON, os.path.join(SRCDIR, "tests", "smtp_sink.py"), "--port", str(self.smtp_port),
            "--maildir", os.path.join(self.dir, "mail")])
        for port, what in ((self.factory_port, "factory simulator"), (self.smtp_port, "SMTP sink")):
            if not wait_until(lambda: port_open(port), timeout=20):
                raise RuntimeError(what + " did not listen")
        for h in self.hosts:
            h.start("sales")
            h.start("callback")
        for h in self.hosts:
            h.start("worker")
        self.start_nginx()

    def migrate(self):
        env = dict(os.environ, RESTOCK_CONFIG=self.hosts[0].conf, RESTOCK_DB_PORT=str(
            self.nodes[0].port))
        p = subprocess.run([os.path.join(BUILDDIR, "ctl", "restockctl"), "db", "migrate", "--dir",
                            os.path.join(SRCDIR, "sql")], env=env, capture_output=True, text=True)
        with open(os.path.join(self.logdir, "migrate.log"), "a") as f:
            f.write(p.stdout + p.stderr)
        if p.returncode != 0:
            raise RuntimeError("migrations failed: " + p.stderr)

    def start_haproxy(self):
        """The shipped configuration (packaging/haproxy/, addresses from the
        environment) when the tree has it, else a minimal one of the bed's own."""
        d = os.path.join(self.dir, "haproxy")
        os.makedirs(d)
        cnf = os.path.join(d, "monitor.cnf")
        with open(cnf, "w") as f:
            f.write("[client]\nuser = monitor\npassword = %s\n" % self.monitor_password)
        os.chmod(cnf, 0o600)
        shipped = os.path.join(SRCDIR, "packaging", "haproxy", "restock-galera.cfg")
        check = os.path.join(d, "galera-check")
        env = {}
        if os.path.exists(shipped):
            # HAProxy runs its checks with an empty environment: a wrapper names
            # the monitor's option file.
            with open(check, "w") as f:
                f.write("#!/bin/sh\nRESTOCK_GALERA_MONITOR_CNF=%s exec %s \"$@\"\n" % (
                    cnf, os.path.join(SRCDIR, "packaging", "haproxy", "galera-check")))
            conf = shipped
            env = {"RESTOCK_DB_LISTEN": "127.0.0.1:%d" % self.haproxy_port,
                   "RESTOCK_GALERA_CHECK": check,
                   "RESTOCK_HAPROXY_STATS": os.path.join(d, "admin.sock"),
                   "RESTOCK_CHECK_INTER": "1000",
                   "RESTOCK_HAPROXY_USER": "root", "RESTOCK_HAPROXY_GROUP": "root"}
            for n in self.nodes:
                env["RESTOCK_GALERA_NODE%d" % n.index] = "127.0.0.1:%d" % n.port
        else:
            with open(check, "w") as f:
                f.write(BED_CHECK % {"cnf": cnf})
            conf = os.path.join(d, "haproxy.cfg")
            servers = "\n".join("    server %s 127.0.0.1:%d check%s" % (
                n.name, n.port, "" if n.index == 1 else " backup") for n in self.nodes)
            with open(conf, "w") as f:
                f.write(BED_HAPROXY % {"port": self.haproxy_port, "check": check,
                                       "servers": servers, "pid": os.path.join(d, "haproxy.pid")})
        os.chmod(check, 0o755)
        self.haproxy_conf = conf
        self.figure("bed", "HAProxy configuration", os.path.relpath(conf, SRCDIR)
                    if conf == shipped else "the bed's own (no packaging/haproxy/)")
        self.others["haproxy"] = Program(self, "haproxy", ["/usr/sbin/haproxy", "-db", "-f", conf],
                                         env)
        if not wait_until(lambda: port_open(self.haproxy_port), timeout=20):
            raise RuntimeError("haproxy did not listen")
        if not wait_until(lambda: self.haproxy_writer() == "node1", timeout=30):
            raise RuntimeError("haproxy did not send to node1")

    def haproxy_writer(self):
        """The node HAProxy sends new sessions to, as the database itself tells."""
        try:
            c = subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P",
                                str(self.haproxy_port), "-u", "monitor",
                                "-p" + self.monitor_password, "--connect-timeout=2", "-N", "-B",
                                "-e", "SELECT @@wsrep_node_name"],
                               capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            return None
        return c.stdout.strip() if c.returncode == 0 else None

    def start_nginx(self):
        d = os.path.join(self.dir, "nginx")
        os.makedirs(os.path.join(d, "snippets"))
        os.makedirs(os.path.join(d, "tmp"))
        shutil.copy(os.path.join(SRCDIR, "nginx", "restock-fastcgi.conf"),
                    os.path.join(d, "snippets"))
        shutil.copy(os.path.join(SRCDIR, "nginx", "restock-limits.conf"),
                    os.path.join(d, "snippets"))
        with open(os.path.join(SRCDIR, "nginx", "restock-site.conf")) as f:
            site = f.read()
        # The production site; its upstreams name both hosts' responders.
        for which in ("sales", "callback"):
            site = site.replace(
                "    server unix:/run/restock/%s.sock;\n" % which,
                "".join("    server unix:%s/%s.sock;\n" % (h.sock, which) for h in self.hosts))
        site = site.replace("listen 80;", "listen 127.0.0.1:%d;" % self.http_port)
        site = site.replace("listen [::]:80;", "")
        site = site.replace("/run/restock/", self.hosts[0].sock + "/")
        site = site.replace("/var/lib/nginx/restock-cache", os.path.join(d, "cache"))
        site = site.replace("/var/log/nginx/", self.logdir + "/nginx-")
        with open(os.path.join(d, "site.conf"), "w") as f:
            f.write(site)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(BED_NGINX % {"dir": d, "log": self.logdir})
        argv = ["/usr/sbin/nginx", "-p", d, "-e", os.path.join(self.logdir, "nginx-error.log"),
                "-c", conf]
        p = subprocess.run(argv + ["-t", "-q"], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("nginx -t: " + p.stderr)
        self.others["nginx"] = Program(self, "nginx", argv + ["-g", "daemon off;"])
        if not wait_until(lambda: port_open(self.http_port), timeout=20):
            raise RuntimeError("nginx did not listen")

    def calm(self):
        """After a scenario, whatever became of it: its loads stopped, every paused
        program resumed, so that the next scenario starts from a bed at rest."""
        for load in self.loads:
            load.stop()
        self.loads = []
        for h in self.hosts:
            for p in h.programs.values():
                p.signal(signal.SIGCONT)

    def close(self, failed=False):
        for h in self.hosts:
            for p in h.programs.values():
                p.stop()
        for name in ("nginx", "haproxy", "factory", "smtp"):
            if name in self.others:
                self.others[name].stop()
        for n in self.nodes:
            n.stop()
        reports = self.sanitizer_reports()
        self.tap.ok(not reports, "no sanitizer report in the programs' logs", reports)
        if failed or self.tap.failed or os.environ.get("RESTOCK_KEEP"):
            self.tap.diag("bed folder kept: " + self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def sanitizer_reports(self):
        found = []
        for h in self.hosts:
            for p in h.programs.values():
                text = p.text()
                for mark in SANITIZER_MARKS:
                    if mark in text:
                        at = text.find(mark)
                        found.append("%s: %s" % (p.name, text[max(0, at - 200):at + 1500]))
                        break
        return "\n".join(found)

    # -- the power of the whole cluster ----------------------------------------------
    def power_loss(self, rng):
        """The power of every node goes at once: SIGKILL to every mariadbd, then each
        node's datadir loses what no fsync made durable (powercutfs cut, half of the
        time tearing the last un-synced write of each file). Returns what each cut
        dropped, by node."""
        live = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        for n in live:
            n.proc.send_signal(signal.SIGKILL)
        for n in live:
            n.proc.wait()
        return {n.name: n.mount.cut(tear="random" if rng.random() < 0.5 else None,
                                    seed=rng.randrange(1 << 30)) for n in self.nodes}

    def cold_start(self):
        """The cluster started again after every node stopped at once (no primary
        component is left), by MariaDB's procedure: each node's last committed
        position recovered (--wsrep-recover), the node with the highest seqno
        bootstrapped (safe_to_bootstrap: 1 in its grastate.dat, --wsrep-new-cluster),
        then the others started to join it (IST, or SST when its gcache lacks what
        they miss). Returns the bootstrapped node, every node's position and how
        each other node joined (IST or SST)."""
        positions, errors = {}, []

        def recover(n):
            try:
                positions[n.name] = n.recover()
            except RuntimeError as e:
                errors.append(str(e))
        threads = [threading.Thread(target=recover, args=(n,)) for n in self.nodes]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise RuntimeError("; ".join(errors))
        first = max(self.nodes, key=lambda n: int(positions[n.name].rsplit(":", 1)[1]))
        grastate = os.path.join(first.datadir, "grastate.dat")
        if os.path.exists(grastate):
            with open(grastate) as f:
                text = f.read()
            with open(grastate, "w") as f:  # in place: it stays the user mysql's
                f.write(re.sub(r"safe_to_bootstrap:\s*\d", "safe_to_bootstrap: 1", text))
        first.start(bootstrap=True, recover=True, position=positions[first.name])
        first.wait_synced()
        marks = {}
        for n in self.nodes:
            if n is not first:
                marks[n.name] = os.path.getsize(n.log)
                n.start(recover=True, position=positions[n.name])
        joined = {}
        for n in self.nodes:
            n.wait_synced()
            if n is not first:
                with open(n.log, errors="replace") as f:
                    f.seek(marks[n.name])
                    # rsync logs both ways as an "SST"; a full copy is one the
                    # joiner's rsync completed (an IST bypasses it).
                    joined[n.name] = "SST" if "rsync SST completed on joiner" in f.read() \
                        else "IST"
        return first, positions, joined

    # -- observations ----------------------------------------------------------------
    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def figure(self, scenario, name, value):
        self.tap.figure(scenario, name, value)

    def sql(self, query, node=None):
        """SQL as root on a live node (the first Synced one unless named)."""
        candidates = [node] if node else self.nodes
        for n in candidates:
            if n.proc is not None and n.proc.poll() is None and \
                    n.status().get("wsrep_local_state") == "4":
                p = n.root("USE restock; " + query)
                return [line.split("\t") for line in p.stdout.splitlines()]
        raise RuntimeError("no Synced node for: " + query)

    def checkout(self, sku, quantity, key=None, conn_holder=None, timeout=60):
        """One POST /checkout through nginx: dict of status, remaining, replayed, body,
        conn (a keep-alive connection to pass back in). Status 0: no answer."""
        conn = (conn_holder or [None])[0]
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        body = json.dumps({"sku": sku, "quantity": quantity}).encode()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        out = {"status": 0, "conn": conn}
        try:
            conn.request("POST", "/checkout", body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            out["status"] = r.status
            out["replayed"] = r.getheader("Idempotent-Replayed") == "true"
            try:
                j = json.loads(data)
                out["remaining"] = j.get("remaining")
                out["body"] = j
            except ValueError:
                out["body"] = data[:200]
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                out["conn"] = None
        except (OSError, http.client.HTTPException) as e:
            out["error"] = str(e)
            conn.close()
            out["conn"] = None
        return out

    def add_products(self, prefix, n, stock):
        """n products, each with a factory of its own (the configured factory API)
        and an advertisement (its pause and resume emails); returns their skus."""
        skus = []
        for i in range(n):
            sku = "%s-%03d" % (prefix, i)
            fid, pid, aid = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
            self.sql("INSERT INTO factory (factory_id, identifier, name, api) VALUES"
                     " (UNHEX('%s'), 'FF-%s', '%s factory', NULL);"
                     "INSERT INTO advertisement (ad_id, status, manager_email) VALUES"
                     " (UNHEX('%s'), TRUE, '%s');"
                     "INSERT INTO product (product_id, sku, name, price, stock, factory_id,"
                     " reorder_quantity, ad_id) VALUES (UNHEX('%s'), '%s', '%s product', 1000, %d,"
                     " UNHEX('%s'), %d, UNHEX('%s'))"
                     % (fid, sku, sku, aid, AD_MANAGER, pid, sku, sku, stock, fid, REORDER, aid))
            skus.append(sku)
        return skus

    def ledger(self, skus):
        """Per product: stock, sold_total, orders, fulfilled orders, units delivered."""
        rows = self.sql(
            "SELECT p.sku, p.stock, p.sold_total, COUNT(o.order_id),"
            " IFNULL(SUM(o.status = 'fulfilled'), 0), IFNULL(SUM(o.delivered_quantity), 0)"
            " FROM product p LEFT JOIN replenishment_order o ON o.product_id = p.product_id"
            " WHERE p.sku IN (%s) GROUP BY p.sku" % ",".join("'%s'" % s for s in skus))
        return {r[0]: {"stock": int(r[1]), "sold": int(r[2]), "orders": int(r[3]),
                       "fulfilled": int(r[4] or 0), "delivered": int(r[5])} for r in rows}

    def wait_fulfilled(self, skus, timeout=90):
        """Until every order of the products is fulfilled; returns the ledger."""
        def done():
            led = self.ledger(skus)
            return led if all(v["orders"] == v["fulfilled"] for v in led.values()) else None
        return wait_until(done, timeout=timeout, interval=1) or self.ledger(skus)

    def sim(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.factory_port, timeout=30)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            r = conn.getresponse()
            return json.loads(r.read())
        finally:
            conn.close()

    def factory_requests(self, skus=None):
        got = self.sim("GET", "/_sim/requests")
        if skus is not None:
            got = [r for r in got if isinstance(r.get("body"), dict)
                   and r["body"].get("MessageAttributeProductId") in skus]
        return got

    def mails(self):
        d = os.path.join(self.dir, "mail", "new")
        return [os.path.join(d, n) for n in os.listdir(d)]


BED_CHECK = """#!/bin/sh
# galera-check of the cluster bed (HAProxy external check): a node takes sessions
# only when Synced (4), in the Primary component and ready. Arguments: proxy
# address, proxy port, server address, server port.
out=$(mariadb --defaults-extra-file=%(cnf)s -h "$3" -P "$4" --connect-timeout=1 -N -B \\
      -e "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', 'wsrep_cluster_status', 'wsrep_ready')" 2>/dev/null) || exit 1
echo "$out" | grep -q '^wsrep_local_state	4$' || exit 1
echo "$out" | grep -q '^wsrep_cluster_status	Primary$' || exit 1
echo "$out" | grep -q '^wsrep_ready	ON$' || exit 1
exit 0
"""

BED_HAPROXY = """# HAProxy of the cluster bed: one writer (node1), the others backup, a
# Galera-aware check; sessions on a node marked down are shut, so that clients
# reconnect to the next one at once.
global
    pidfile %(pid)s
    external-check
    insecure-fork-wanted
    log stderr format short local0 notice

defaults
    mode tcp
    log global
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    retries 2
    option redispatch

listen galera
    bind 127.0.0.1:%(port)d
    balance first
    option external-check
    external-check path "/usr/bin:/bin"
    external-check command %(check)s
    default-server inter 1s fall 2 rise 3 on-marked-down shutdown-sessions
%(servers)s
"""

BED_NGINX = """worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(log)s/nginx-error.log warn;
user root;
events { worker_connections 1024; }
http {
    access_log %(log)s/nginx-access.log combined buffer=64k flush=1s;
    client_body_temp_path %(dir)s/tmp/body;
    fastcgi_temp_path %(dir)s/tmp/fastcgi;
    proxy_temp_path %(dir)s/tmp/proxy;
    uwsgi_temp_path %(dir)s/tmp/uwsgi;
    scgi_temp_path %(dir)s/tmp/scgi;
    include %(dir)s/site.conf;
}
"""
