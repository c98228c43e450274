#!/usr/bin/python3
"""Integration test of the worker's start-up check of the database's durability
settings (docs/operations.md, "Durability"): with innodb_flush_log_at_trx_commit = 1
(the local stack's) it says nothing; with 2 or 0, a power cut can lose sales answered
200, and the worker says so at start (event=db_not_durable, naming the setting), and
`restockctl status` says so to an operator."""

import subprocess

from harness import Stack, run_tests


def root_sql(s, query):
    subprocess.run(["mariadb", "--no-defaults", "-S", s.info["DB_SOCKET"], "-u", "root",
                    "-e", query], check=True, capture_output=True)


def body(t):
    with Stack(t, private_db=True) as s:
        t.ok("event=started " in s.log("worker"), "the worker started")
        t.ok("event=db_not_durable" not in s.log("worker"),
             "innodb_flush_log_at_trx_commit = 1: no warning", s.log("worker")[-1500:])
        status = s.restockctl("status", check=True).stdout
        t.ok("database: durable" in status, "restockctl status: the database is durable", status)
        for value in (2, 0):
            root_sql(s, "SET GLOBAL innodb_flush_log_at_trx_commit = %d" % value)
            s.stop("worker")
            before = s.log("worker").count("event=db_not_durable")
            started = s.log("worker").count("event=started ")
            s.start("worker")
            # The check runs before the worker says it started.
            t.ok(s.wait_until(lambda: s.log("worker").count("event=started ") > started),
                 "the worker started again")
            log = s.log("worker")
            t.is_(log.count("event=db_not_durable"), before + 1,
                  "innodb_flush_log_at_trx_commit = %d: the worker warns at start" % value)
            t.ok("innodb_flush_log_at_trx_commit = %d" % value in log,
                 "the warning names the setting and its value", log[-1500:])
            status = s.restockctl("status", check=True).stdout
            t.ok("database: NOT DURABLE: innodb_flush_log_at_trx_commit = %d" % value in status,
                 "restockctl status says it, naming the setting", status)
        root_sql(s, "SET GLOBAL innodb_flush_log_at_trx_commit = 1")


if __name__ == "__main__":
    run_tests(body)
