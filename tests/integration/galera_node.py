"""A MariaDB Galera node for tests: one node with wsrep on, bootstrapped as a new
cluster of its own in a folder of the test's, on free loopback ports, run as the
test's user (as scripts/stack runs the harness's MariaDB)."""

import os
import pwd
import shutil
import subprocess

from harness import free_port, wait_until

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
ME = pwd.getpwuid(os.getuid()).pw_name


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
        me = ME
        subprocess.run(["mariadb-install-db", "--no-defaults", "--datadir=" + self.data,
                        "--user=" + me, "--auth-root-authentication-method=normal",
                        "--skip-test-db"], check=True, capture_output=True)
        self.proc = subprocess.Popen([
            shutil.which("mariadbd") or "/usr/sbin/mariadbd", "--no-defaults",
            "--datadir=" + self.data, "--socket=" + self.sock, "--user=" + me,
            "--bind-address=127.0.0.1", "--port=%d" % self.port,
            "--tmpdir=" + os.path.join(self.dir, "tmp"), "--log-error=" + self.log,
            "--pid-file=" + os.path.join(self.dir, "mariadbd.pid"),
            "--innodb-buffer-pool-size=32M", "--connect-timeout=60",
            "--binlog-format=ROW", "--innodb-autoinc-lock-mode=2",
            "--wsrep-on=ON", "--wsrep-provider=" + PROVIDER,
            "--wsrep-cluster-address=gcomm://", "--wsrep-new-cluster",
            "--wsrep-cluster-name=restock-test-%d" % os.getpid(),
            "--wsrep-node-address=127.0.0.1:%d" % self.gport,
            "--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:%d;"
            "ist.recv_addr=127.0.0.1:%d" % (self.gport, free_port()),
            "--wsrep-sst-method=rsync"] + list(args),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_until(lambda: self.root("SELECT 1", check=False).returncode == 0, 90):
            raise RuntimeError("the Galera node did not start: " + self.tail())

    def root(self, sql, check=True):
        return subprocess.run(["mariadb", "--no-defaults", "-S", self.sock, "-u", "root", "-N",
                               "-B", "-e", sql], capture_output=True, text=True, check=check)

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
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
