"""Integration test of reload (issue 12): SIGHUP makes restock-worker take a changed
log level and SMTP port (the next email goes to the new port), a key that cannot
change while running is kept with a warning naming it, and a file that no longer
parses is refused with a clear line while the old settings stay; the responders
reload while they serve (no checkout of a burst sent during the signals fails)."""

import os
import signal
import threading

from harness import Stack, free_port, run_tests
from replenish_common import received_mail, sell_out, spool_files

ENV = {"RESTOCK_FACTORY_ARGS": "--silent", "RESTOCK_SWEEP_INTERVAL": "1",
       "RESTOCK_BACKOFF_MIN": "1", "RESTOCK_BACKOFF_MAX": "2"}


def pid(s, name):
    with open(os.path.join(s.dir, "pid", name + ".pid")) as f:
        return int(f.read())


def set_conf(s, **keys):
    path = s.info["RESTOCK_CONFIG"]
    with open(path) as f:
        lines = [l for l in f.read().splitlines() if l.split("=")[0].strip() not in keys]
    lines += ["%s = %s" % kv for kv in keys.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def hup(s, name, count_before):
    os.kill(pid(s, name), signal.SIGHUP)
    return s.wait_until(lambda: s.log(name).count("event=reload") > count_before, timeout=30)


def body(t):
    with Stack(t, env=ENV) as s:
        # The worker: a new SMTP port and log level warn; spool_dir cannot change.
        port = free_port()
        set_conf(s, smtp_port=port, log_level="warn", spool_dir=s.dir + "/elsewhere")
        t.ok(hup(s, "worker", 0), "the worker logs its reload")
        log = s.log("worker")
        t.ok("event=config_kept key=spool_dir" in log, "a key that cannot change is kept, "
             "with a warning naming it")
        t.ok("event=reloaded" in log and "kept=1" in log, "event=reloaded says one key was kept")
        t.ok("smtp_password" not in log or "event=config_changed key=smtp_password" in log,
             "no value is logged")
        mark = len(s.log("worker"))
        mails = len(received_mail(s))
        sell_out(s, "CP-502101")
        t.ok(s.wait_until(lambda: "event=deferred queue=mail" in s.log("worker")[mark:],
                          timeout=30),
             "the pause email fails: the worker now uses the new SMTP port (nobody there)")
        t.is_(len(received_mail(s)), mails, "the old relay got nothing")
        t.ok(not any(l.startswith("info ") for l in s.log("worker")[mark:].splitlines()),
             "log_level = warn took effect: no info line since the reload")

        # A broken file: refused, the old settings (port, warn) stay.
        n = s.log("worker").count("event=reload")
        set_conf(s, smtp_port="banana")
        t.ok(hup(s, "worker", n), "the worker reacts to the second SIGHUP")
        t.ok("event=reload_failed" in s.log("worker") and "smtp_port" in
             s.log("worker").split("event=reload_failed")[-1].splitlines()[0],
             "a file that does not parse is refused, naming the key")
        # The relay moves to the new port: the waiting email reaches it there.
        s.stop("smtp")
        env_path = os.path.join(s.dir, "stack.env")
        with open(env_path) as f:
            text = f.read()
        with open(env_path, "w") as f:
            f.write(text.replace("SMTP_PORT=%s" % s.info["SMTP_PORT"], "SMTP_PORT=%d" % port))
        s.start("smtp")
        t.ok(s.wait_until(lambda: len(received_mail(s)) > mails, timeout=60),
             "with the relay on the new port the email arrives (the refused file changed nothing)")
        t.ok(s.wait_until(lambda: not spool_files(s, "mail", "deferred"), timeout=30),
             "nothing is left deferred")

        # The responders reload while serving: a burst of checkouts, signals amid it.
        set_conf(s, smtp_port=port, log_level="info", sales_threads=3)
        n = s.log("sales").count("event=reload")
        s.sql("UPDATE product SET stock = 100000 WHERE sku = 'CP-502102'")
        stop = threading.Event()

        def signals():
            while not stop.is_set():
                os.kill(pid(s, "sales"), signal.SIGHUP)
                os.kill(pid(s, "callback"), signal.SIGHUP)
                stop.wait(0.05)
        th = threading.Thread(target=signals)
        th.start()
        try:
            got = s.concurrently(300, 8, lambda i: ("POST", "/checkout",
                                                    {"sku": "CP-502102", "quantity": 1}))
        finally:
            stop.set()
            th.join()
        statuses = sorted(set(r.status for r in got))
        t.is_(statuses, [200], "300 checkouts during repeated SIGHUPs all answer 200")
        t.is_(s.stock("CP-502102"), 100000 - 300, "and each sold exactly once")
        t.ok(s.log("sales").count("event=reloaded") > n, "restock-sales reloaded")
        t.ok("event=config_kept key=sales_threads" in s.log("sales"),
             "restock-sales keeps sales_threads, with a warning naming it")
        t.ok("event=reloaded" in s.log("callback"), "restock-callback reloaded")
        r = s.request("GET", "/healthz")
        t.is_(r.status, 200, "the responders still serve")

        # log_level = warn in restock-sales: the reload that sets it is logged (at
        # info, before it applies), the next one's info line is not.
        set_conf(s, log_level="warn")
        kept = lambda: s.log("sales").count("event=config_kept key=sales_threads")
        for _ in range(2):
            before = kept()
            reloaded = s.log("sales").count("event=reloaded")
            os.kill(pid(s, "sales"), signal.SIGHUP)
            s.wait_until(lambda: kept() > before, timeout=30)
        t.is_(s.log("sales").count("event=reloaded"), reloaded,
              "restock-sales: log_level = warn took effect (the second reload logs no info line)")


run_tests(body)
