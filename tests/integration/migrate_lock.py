"""Integration test of the cluster-wide migration lock (issue 14): the lock is a row
of schema_lock taken by one autocommit UPDATE (GET_LOCK is node-local in Galera).
Two `restockctl db migrate` started at once while another run holds the lock both
wait, say so, and then both succeed, each pending migration applied once; a stale
lock (its holder died, past its expiry) is taken over; the lock is free after a run."""

import glob
import os
import shutil
import subprocess

from harness import BUILDDIR, SRCDIR, Stack, run_tests

PROBE = """CREATE TABLE IF NOT EXISTS migrate_probe (version INT NOT NULL) ENGINE=InnoDB;
INSERT INTO migrate_probe VALUES (%d);
"""


def migrations(s, *versions):
    """A folder with the tree's migrations and probe migrations of these versions."""
    d = os.path.join(s.dir, "sql-%s" % "-".join(map(str, versions)))
    os.makedirs(d)
    for f in glob.glob(os.path.join(SRCDIR, "sql", "*.sql")):
        shutil.copy(f, d)
    for v in versions:
        with open(os.path.join(d, "%03d_probe.sql" % v), "w") as f:
            f.write(PROBE % v)
    return d


def migrate(s, folder):
    env = dict(s.env, RESTOCK_CONFIG=s.info["RESTOCK_CONFIG"])
    return subprocess.Popen([os.path.join(BUILDDIR, "ctl", "restockctl"), "db", "migrate",
                             "--dir", folder], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def lock(s):
    return s.sql("SELECT IFNULL(holder, 'NULL'), expires_at IS NULL FROM schema_lock"
                 " WHERE name = 'migrate'")


def test_two_at_once(t, s):
    folder = migrations(s, 901, 902)
    s.sql("UPDATE schema_lock SET holder = 'test-holder', expires_at = NOW(6) + INTERVAL 60 SECOND"
          " WHERE name = 'migrate'")
    runs = [migrate(s, folder), migrate(s, folder)]
    for i, p in enumerate(runs):
        line = p.stdout.readline()
        t.ok(line.startswith("waiting for another migration (test-holder)"),
             "run %d waits for the holder and says so" % (i + 1), line)
    s.sql("UPDATE schema_lock SET holder = NULL, expires_at = NULL WHERE name = 'migrate'")
    outs = [p.communicate(timeout=120) for p in runs]
    for i, (p, (out, err)) in enumerate(zip(runs, outs)):
        t.ok(p.returncode == 0, "run %d succeeds" % (i + 1), out + err)
    applied = "".join(out for out, _ in outs)
    t.is_(applied.count("applied 901_probe.sql"), 1, "901 applied by one run only")
    t.is_(applied.count("applied 902_probe.sql"), 1, "902 applied by one run only")
    t.is_(s.sql("SELECT version FROM migrate_probe ORDER BY version"), [["901"], ["902"]],
          "each migration ran once")
    t.is_(s.sql_value("SELECT COUNT(*) FROM schema_migration WHERE version IN (901, 902)"), "2",
          "and is recorded once")
    t.is_(lock(s), [["NULL", "1"]], "the lock is free after the runs")


def test_stale_lock(t, s):
    folder = migrations(s, 903)
    s.sql("UPDATE schema_lock SET holder = 'dead-host pid 1 at 0',"
          " expires_at = NOW(6) - INTERVAL 1 SECOND WHERE name = 'migrate'")
    out, err = migrate(s, folder).communicate(timeout=120)
    t.ok("applied 903_probe.sql" in out and "waiting" not in out,
         "a lock past its expiry is taken over at once", out + err)
    t.is_(s.sql_value("SELECT COUNT(*) FROM migrate_probe WHERE version = 903"), "1",
          "the migration ran")
    t.is_(lock(s), [["NULL", "1"]], "and the lock is free again")
    out, err = migrate(s, folder).communicate(timeout=120)
    t.ok(out.startswith("0 migrations applied") and err == "", "a second run has nothing to do",
         out + err)


def body(t):
    with Stack(t, components=["db"]) as s:
        t.is_(lock(s), [["NULL", "1"]], "the stack's own migration left schema_lock's row free")
        test_two_at_once(t, s)
        test_stale_lock(t, s)


if __name__ == "__main__":
    run_tests(body)
