"""Integration test of the Prometheus metrics (issue 12): after each kind of event
(sale, bad request, unknown sku, refusal and sell-out, order sent, email sent and
failed, callback good, repeated and forged, dead letter, redrive) the worker's
/metrics agrees with the database, the spool folders and the SMTP sink; the public
site answers 404 on /metrics; and a real Prometheus server (Debian's prometheus)
scraping the stack every second reports the same values through its HTTP API.
restock_units_held{sku} is every product's held units (the product JSON's held) as
holds are made and released, its label escaped for a sku with a quote and a
backslash, and the whole exposition passes `promtool check metrics`."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from harness import Stack, free_port, run_tests
from inbox import call_back
from prom import metric, parse, scrape
from replenish_common import (DONUT, STATES, factory_requests, received_mail, sell_out,
                              sim_config, spool_files)

ENV = {
    "RESTOCK_FACTORY_ARGS": "--silent",  # the test calls back itself
    "RESTOCK_SWEEP_INTERVAL": "1",
    "RESTOCK_BACKOFF_MIN": "1",
    "RESTOCK_BACKOFF_MAX": "2",
}
def settles(s, name, want, **labels):
    """The metric reaches want (the worker acts asynchronously); returns its value."""
    s.wait_until(lambda: metric(s, name, **labels) == want, timeout=30)
    return metric(s, name, **labels)


def db_orders(s, status):
    return int(s.sql_value("SELECT COUNT(*) FROM replenishment_order WHERE status = '%s'"
                           % status))


def spool_disagrees(s):
    """Where restock_queue_messages and the spool's folders differ now."""
    got = parse(scrape(s)[2])
    bad = []
    for queue in ("factory", "mail", "callback"):
        for state in STATES:
            files = len(spool_files(s, queue, state))
            shown = got.get(("restock_queue_messages",
                             frozenset({("queue", queue), ("state", state)})))
            if shown != files:
                bad.append("%s/%s: metric %r, folder %d" % (queue, state, shown, files))
    return bad


def spool_agrees(t, s, what):
    # A delivery may move a message between the scrape and the listing (an email
    # in active/ when scraped, in done/ when listed): agreement is waited for.
    s.wait_until(lambda: not spool_disagrees(s), timeout=30)
    bad = spool_disagrees(s)
    t.ok(not bad, "%s: restock_queue_messages matches every spool folder" % what, bad)


def orders_agree(t, s, what):
    got = {st: metric(s, "restock_orders", status=st) for st in
           ("open", "sent", "fulfilled", "failed")}
    want = {st: db_orders(s, st) for st in got}
    t.is_(got, want, "%s: restock_orders matches the database" % what)


def direct(t, s):
    status, ctype, text = scrape(s)
    t.is_(status, 200, "GET /metrics on metrics_listen answers 200")
    t.is_(ctype, "text/plain; version=0.0.4; charset=utf-8", "text exposition format 0.0.4")
    for program in ("restock-sales", "restock-callback", "restock-worker"):
        t.is_(metric(s, "restock_up", program=program), 1.0, "%s is up" % program)
    t.ok(re.search(r'^restock_build_info\{version="[^"]+"\} 1$', text, re.M), "build info")
    r = s.request("GET", "/metrics")
    t.is_(r.status, 404, "the public site answers 404 on /metrics")
    t.ok(b"restock_" not in r.body, "and shows no metric")

    r = s.request("POST", "/checkout", {"sku": DONUT, "quantity": 1})
    t.is_(r.status, 200, "a sale")
    t.is_(metric(s, "restock_checkouts_total", result="sold"), 1.0, "sale: sold = 1")
    s.request("POST", "/checkout", "{")
    t.is_(metric(s, "restock_checkouts_total", result="bad_request"), 1.0, "bad request = 1")
    s.request("POST", "/checkout", {"sku": "NO-SUCH"})
    t.is_(metric(s, "restock_checkouts_total", result="not_found"), 1.0, "unknown sku = 1")

    left = s.stock(DONUT)
    r = sell_out(s, DONUT)
    t.is_(r.status, 409, "the sell-out's refusal")
    t.is_(metric(s, "restock_checkouts_total", result="sold"), 2.0, "the rest sold: sold = 2")
    t.is_(metric(s, "restock_checkouts_total", result="refused"), 1.0, "refused = 1")
    t.is_(metric(s, "restock_sellouts_total"), 1.0, "one sell-out")
    t.ok(left > 0, "(%d were left)" % left)

    t.is_(settles(s, "restock_factory_requests_total", 1.0, code="201"), 1.0,
          "order sent: factory requests code 201 = 1")
    t.is_(len(factory_requests(s)), 1, "the factory received one")
    t.is_(metric(s, "restock_factory_request_duration_seconds_count"), 1.0, "one timed request")
    t.is_(settles(s, "restock_orders", 1.0, status="sent"), 1.0, "one order sent")
    orders_agree(t, s, "order sent")
    mails = s.wait_until(lambda: received_mail(s), timeout=30)
    t.is_(settles(s, "restock_mail_total", float(len(mails)), result="sent"), float(len(mails)),
          "email sent: restock_mail_total{sent} = the emails the relay got")
    spool_agrees(t, s, "after the order")

    order = factory_requests(s)[0]["body"]
    forged = dict(order, CallbackUrl=re.sub(r"token=[0-9a-f]{64}", "token=" + "0" * 64,
                                           order["CallbackUrl"]))
    t.is_(call_back(s, forged), 403, "a forged callback answers 403")
    t.is_(metric(s, "restock_callbacks_total", result="forbidden"), 1.0, "forbidden = 1")
    t.is_(call_back(s, order), 200, "the callback answers 200")
    t.is_(metric(s, "restock_callbacks_total", result="ok"), 1.0, "ok = 1")
    t.is_(call_back(s, order), 200, "the same callback again answers 200")
    t.is_(metric(s, "restock_callbacks_total", result="repeated"), 1.0, "repeated = 1")
    orders_agree(t, s, "callback")

    # A factory that answers 400: the message dies at once, the order fails.
    sim_config(s, answer_status=400, answer_body_hex="6e6f")
    sell_out(s, "CP-502102")
    t.is_(settles(s, "restock_queue_dead_total", 1.0, queue="factory"), 1.0,
          "dead letter: restock_queue_dead_total{factory} = 1")
    t.is_(settles(s, "restock_orders", 1.0, status="failed"), 1.0, "the order failed")
    t.is_(metric(s, "restock_factory_requests_total", code="400"), 1.0, "code 400 = 1")
    dead = spool_files(s, "factory", "dead")
    t.is_(metric(s, "restock_queue_messages", queue="factory", state="dead"), float(len(dead)),
          "restock_queue_messages{factory,dead} = the files in dead/ (%d)" % len(dead))
    orders_agree(t, s, "dead letter")
    spool_agrees(t, s, "dead letter")

    sim_config(s, answer_status=0)
    p = s.restockctl("dlq", "redrive", "--all")
    t.is_(p.returncode, 0, "redrive")
    t.is_(settles(s, "restock_queue_messages", 0.0, queue="factory", state="dead"), 0.0,
          "redrive: no factory message dead")
    t.is_(settles(s, "restock_orders", 1.0, status="sent"), 1.0,
          "the redriven order is sent (the first one is fulfilled)")
    t.is_(metric(s, "restock_queue_delivered_total", queue="factory"), 2.0,
          "two factory messages delivered")
    orders_agree(t, s, "redrive")

    # The relay down: the next email fails and waits.
    s.stop("smtp")
    before = metric(s, "restock_mail_total", result="temporary")
    sell_out(s, "CP-502103")
    s.wait_until(lambda: metric(s, "restock_mail_total", result="temporary") > before, timeout=30)
    t.ok(metric(s, "restock_mail_total", result="temporary") > before,
         "email failed: restock_mail_total{temporary} went up")
    t.ok(s.wait_until(lambda: metric(s, "restock_queue_oldest_waiting_seconds",
                                     queue="mail") >= 1, timeout=30),
         "the waiting email's age shows in restock_queue_oldest_waiting_seconds{mail}")
    t.is_(metric(s, "restock_queue_oldest_waiting_seconds", queue="callback"), 0.0,
          "an empty queue's oldest is 0")
    s.start("smtp")
    t.is_(settles(s, "restock_queue_messages", 0.0, queue="mail", state="deferred"), 0.0,
          "the relay back: the email went out")
    spool_agrees(t, s, "at the end")
    orders_agree(t, s, "at the end")


LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def units_held(text):
    """{sku: value} of restock_units_held, its label values unescaped."""
    out = {}
    for line in text.splitlines():
        if line.startswith("restock_units_held{"):
            labels, _, value = line[len("restock_units_held{"):].rpartition("} ")
            m = LABEL.fullmatch(labels)
            if m and m.group(1) == "sku":
                sku = re.sub(r"\\.", lambda e: UNESCAPE.get(e.group(0), "?"), m.group(2))
                out[sku] = float(value)
    return out


def holds(t, s):
    odd = 'HO"L\\D-2'  # a quote and a backslash: escaped in the label
    for sku in ("HOLD-1", odd):
        s.sql("INSERT INTO product (product_id, sku, name, price, stock) VALUES"
              " (UNHEX(REPLACE(UUID(), '-', '')), '%s', '%s', 100, 10)"
              % (sku.replace("\\", "\\\\").replace("'", "''"), sku.replace("\\", "\\\\")))
    made = []
    for sku, quantity in (("HOLD-1", 2), (odd, 3)):
        r = s.request("POST", "/holds", {"lines": [{"sku": sku, "quantity": quantity}]})
        t.is_(r.status, 201, "a hold of %d %s" % (quantity, sku))
        made.append(r.json().get("hold") if r.status == 201 else None)

    def agrees(what):
        text = scrape(s)[2]
        got = units_held(text)
        # The database's, not GET /products: nginx may answer that from its cache.
        # (HEX: the client's batch output escapes a backslash.)
        want = {bytes.fromhex(sku).decode(): float(held)
                for sku, held in s.sql("SELECT HEX(sku), held FROM product")}
        t.is_(got, want, "%s: restock_units_held{sku} is every product's held" % what)
        p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True)
        t.ok(p.returncode == 0, "%s: promtool check metrics accepts the exposition" % what,
             p.stdout + p.stderr)
        return got

    got = agrees("two holds")
    t.is_([got.get("HOLD-1"), got.get(odd)], [2.0, 3.0], "2 and 3 units held, the odd sku's too")
    r = s.request("DELETE", "/holds/%s" % made[1])
    t.is_(r.status, 200, "one hold released")
    got = agrees("one released")
    t.is_([got.get("HOLD-1"), got.get(odd)], [2.0, 0.0], "its units are no longer held")


def prom_query(port, expr):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": expr}))
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            data = json.loads(r.read())
    except OSError:
        return None
    result = data.get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else None


def prometheus(t, s):
    binary = shutil.which("prometheus")
    if binary is None:
        t.ok(False, "Debian's prometheus is installed (scripts/deps test)")
        return
    work = tempfile.mkdtemp(prefix="restock-prom-")
    port = free_port()
    target = urllib.parse.urlsplit(s.info["METRICS_URL"]).netloc
    with open(os.path.join(work, "prometheus.yml"), "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "rule_files: ['%s']\n"
                "scrape_configs:\n  - job_name: restock\n    static_configs:\n"
                "      - targets: ['%s']\n"
                % (os.path.join(os.environ.get("RESTOCK_SRCDIR", "."),
                                "packaging/prometheus/restock-alerts.yml"), target))
    log = open(os.path.join(s.dir, "log", "prometheus-server.log"), "w")
    proc = subprocess.Popen([binary, "--config.file", os.path.join(work, "prometheus.yml"),
                             "--storage.tsdb.path", os.path.join(work, "data"),
                             "--web.listen-address", "127.0.0.1:%d" % port],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        t.ok(s.wait_until(lambda: prom_query(port, 'up{job="restock"}') == 1.0, timeout=60),
             "Prometheus scrapes the worker's endpoint (up = 1)")
        checks = [
            ('restock_checkouts_total{result="sold"}', metric(s, "restock_checkouts_total",
                                                              result="sold")),
            ('restock_orders{status="sent"}', float(db_orders(s, "sent"))),
            ('restock_orders{status="fulfilled"}', float(db_orders(s, "fulfilled"))),
            ('restock_queue_messages{queue="factory",state="done"}',
             float(len(spool_files(s, "factory", "done")))),
            ('restock_queue_messages{queue="factory",state="dead"}',
             float(len(spool_files(s, "factory", "dead")))),
            ('restock_callbacks_total{result="forbidden"}', 1.0),
            ('restock_mail_total{result="sent"}', float(len(received_mail(s)))),
            ('sum(restock_up)', 3.0),
            ('restock_units_held{sku="HOLD-1"}', 2.0),
        ]
        for expr, want in checks:
            s.wait_until(lambda: prom_query(port, expr) == want, timeout=30)
            t.is_(prom_query(port, expr), want, "Prometheus: %s = %r (database, spool, sink)"
                  % (expr, want))
        t.ok(prom_query(port, 'count(ALERTS{alertname="RestockDeadLetter"})') is None,
             "the shipped rules load and no dead letter is firing")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def body(t):
    with Stack(t, env=ENV) as s:
        direct(t, s)
        holds(t, s)
        prometheus(t, s)


run_tests(body)
