"""MariaDB Galera nodes for tests, one helper for the integration tests and the
cluster bed (tests/cluster/bed.py): the datadir's installation, the options of a
node (wsrep on, every listener on loopback: client, gcomm and IST ports) and root's
SQL; a node is started with subprocess and stopped with harness.stop_process. Galera is one node bootstrapped as a new cluster of its own in a
folder of the test's, run as the test's user (as scripts/stack runs the harness's
MariaDB); the bed builds its three-node cluster, run as mysql, from the same parts."""

import os
import pwd
import shutil
import subprocess

from harness import free_port, stop_process, wait_until

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
ME = pwd.getpwuid(os.getuid()).pw_name
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"


def install(datadir, user):
    """A new datadir (mariadb-install-db); raises with its output when it fails."""
    p = subprocess.run(["mariadb-install-db", "--no-defaults", "--datadir=" + datadir,
                        "--user=" + user, "--auth-root-authentication-method=normal",
                        "--skip-test-db"], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("mariadb-install-db: " + p.stdout + p.stderr)


def node_args(folder, datadir, socket, log, user, port, gcomm, ist, cluster, peers="",
              provider_options="", extra=()):
    """The mariadbd command line of a Galera node: its files in folder (pid, tmp/),
    its listeners on 127.0.0.1 (client port, gcomm, IST), wsrep on in the cluster
    named cluster, peers its gcomm addresses ("" with --wsrep-new-cluster in extra
    for the first node), SST by rsync; extra: more options."""
    return [MARIADBD, "--no-defaults", "--datadir=" + datadir, "--socket=" + socket,
            "--user=" + user, "--bind-address=127.0.0.1", "--port=%d" % port,
            "--tmpdir=" + os.path.join(folder, "tmp"), "--log-error=" + log,
            "--pid-file=" + os.path.join(folder, "mariadbd.pid"),
            "--innodb-buffer-pool-size=32M", "--binlog-format=ROW",
            # sql/019's triggers, made by restock's user (no SUPER): as the
            # package's 60-restock.cnf has it
            "--log-bin-trust-function-creators=ON",
            "--innodb-autoinc-lock-mode=2", "--wsrep-on=ON", "--wsrep-provider=" + PROVIDER,
            "--wsrep-cluster-name=" + cluster, "--wsrep-cluster-address=gcomm://" + peers,
            "--wsrep-node-address=127.0.0.1", "--wsrep-sst-method=rsync",
            "--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:%d;"
            "ist.recv_addr=127.0.0.1:%d%s" % (gcomm, ist,
                                              ";" + provider_options if provider_options else "")
            ] + list(extra)


def root_sql(socket, sql, check=True):
    """SQL as the node's root over its socket: the CompletedProcess (text)."""
    return subprocess.run(["mariadb", "--no-defaults", "-S", socket, "-u", "root", "-N", "-B",
                           "--default-character-set=utf8mb4", "-e", sql],
                          capture_output=True, text=True, check=check)


class Galera:
    """One MariaDB node with wsrep on, bootstrapped as a new cluster of its own;
    args: more options of mariadbd."""

    def __init__(self, top, args=()):
        self.dir = os.path.join(top, "galera")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "mysqld.sock")
        self.port = free_port()
        self.gport = free_port()
        self.log = os.path.join(self.dir, "error.log")
        os.makedirs(os.path.join(self.dir, "tmp"))
        install(self.data, ME)
        self.proc = subprocess.Popen(
            node_args(self.dir, self.data, self.sock, self.log, ME, self.port, self.gport,
                      free_port(), "restock-test-%d" % os.getpid(),
                      extra=["--connect-timeout=60", "--wsrep-new-cluster"] + list(args)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_until(lambda: self.root("SELECT 1", check=False).returncode == 0, 90):
            raise RuntimeError("the Galera node did not start: " + self.tail())

    def root(self, sql, check=True):
        return root_sql(self.sock, sql, check)

    def status(self, name):
        out = self.root("SHOW GLOBAL STATUS LIKE '%s'" % name).stdout.split()
        return out[1] if len(out) > 1 else None

    def tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-30:])
        except OSError:
            return "(no log)"

    def stop(self):
        stop_process(self.proc, 60)
