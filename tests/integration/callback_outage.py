"""Nothing the factory sends is lost (issue 10): with the database stopped, a callback
whose token is right is verified by the key alone, written into the spool queue
`callback` and answered 202; the worker applies it once the database is back, once,
by the same delivery transaction (stock, order fulfilled, one stock_arrived event, one
ad resume email), even when the worker and the responder were killed (kill -9) in
between. A replay afterwards answers 200 and changes nothing. Anonymous clients get
503 bodies that say the service is unavailable, never the database's user, socket or
name: the sales API, /healthz, and a callback of an order made before keyed tokens
(its token can only be checked against the stored hash), which is accepted again by
that hash once the database is back."""

import json
import os
import uuid

from callback import is_error, order_of, post
from harness import Stack, run_tests
from inbox import AD_MANAGER, inbox, wait_mails
from replenish_common import (REORDER, orders, outbox, spool_catch, spool_files, spool_find,
                              token_hash)

A, B, C = "CP-502101", "CP-502102", "CP-502103"


def no_db_details(t, s, r, what):
    text = r.body.decode("utf-8", "replace")
    leaks = [v for v in (s.info["DB_SOCKET"], "mysqld.sock", s.info["DB_PASSWORD"],
                         "'%s'" % s.info["DB_USER"], "restock@", "user", "socket", "SELECT",
                         "MariaDB", "MySQL") if v in text]
    t.ok(not leaks, "%s: the 503 body names no database user, socket or name" % what,
         (text, leaks))
    try:
        error = r.json().get("error", "")
    except ValueError:
        error = ""
    t.ok(error.startswith("service unavailable"), "%s: it says the service is unavailable" % what,
         text)


def body(t):
    env = {"RESTOCK_FACTORY_ARGS": "--silent", "RESTOCK_SWEEP_INTERVAL": "1",
           "RESTOCK_BACKOFF_MIN": "1", "RESTOCK_BACKOFF_MAX": "2"}
    with Stack(t, env=env, private_db=True) as s:
        a, token_a, body_a = order_of(t, s, A)
        b, token_b, body_b = order_of(t, s, B)
        c, _, body_c = order_of(t, s, C)
        # C stands for an order made before keyed tokens: a random token whose hash
        # alone is stored.
        legacy = uuid.uuid4().hex + uuid.uuid4().hex
        s.sql("UPDATE replenishment_order SET token_keyed = 0, token_hash = UNHEX('%s')"
              " WHERE order_id = UNHEX('%s')" % (token_hash(legacy), c.replace("-", "")))
        pauses = len(inbox(s, kind="ad_resume"))

        s.stop("db")
        r = post(s, a, token_a, body_a)
        t.is_(r.status, 202, "database stopped: the callback of %s answers 202" % A)
        t.is_((r.json().get("status"), r.json().get("order_id"), r.json().get("delivered")),
              ("accepted", a, REORDER), "the answer says accepted, with the order and quantity")
        t.ok("will be applied" in r.json().get("detail", ""),
             "and that it will be applied", r.json())
        caught = spool_catch(s, "callback", a)
        t.ok(caught and caught[0] in ("incoming", "active", "deferred"),
             "the callback is on disk in the spool queue `callback`", caught)
        raw = caught[1] if caught else b""
        head, _, rest = raw.partition(b"\n\n")
        length = [int(ln[len(b"length: "):]) for ln in head.splitlines()
                  if ln.startswith(b"length: ")]
        try:
            stored = json.loads(rest[:length[0]]) if length else None
        except ValueError:
            stored = None
        t.ok(stored == {"order_id": a, "quantity": REORDER, "sku": A},
             "it holds the order, the quantity and the product", raw)
        t.ok(raw and token_a.encode() not in raw, "and not the token", raw)
        t.is_(caught[2] & 0o077 if caught else None, 0, "the file is readable by restock alone")

        # Crashes between the 202 and the database's return lose nothing.
        s.kill("worker")
        s.kill("callback")
        s.start("callback", "worker")
        r = post(s, b, token_b, body_b)
        t.is_(r.status, 202, "after kill -9 and a restart, %s's callback answers 202 too" % B)
        r2 = post(s, b, token_b, body_b)
        t.is_(r2.status, 202, "the same callback again while waiting: 202, one message")
        t.is_([n for n in spool_files(s, "callback", "incoming") +
               spool_files(s, "callback", "deferred") + spool_files(s, "callback", "active")
               if n == b], [b], "one stored message for %s" % B)

        r = post(s, c, legacy, body_c)
        t.is_(r.status, 503, "an order of a random token cannot be checked without the database:"
              " 503")
        no_db_details(t, s, r, "legacy-token callback")
        for method, path in (("POST", "/checkout"), ("GET", "/healthz"),
                             ("GET", "/products/CP-502199")):
            r = s.request(method, path, b"" if method == "POST" else None)
            t.is_(r.status, 503, "sales %s %s: 503" % (method, path))
            no_db_details(t, s, r, "sales %s %s" % (method, path))
        t.ok("event=database_unavailable" in s.log("sales") and
             "event=callback_db_failed" in s.log("callback"),
             "what the database said is logged")

        s.start("db")
        for sku, order in ((A, a), (B, b)):
            t.ok(s.wait_until(lambda: orders(s, sku)[-1]["status"] == "fulfilled", 60),
                 "database back: %s's stored callback is applied" % sku, orders(s, sku))
            t.is_((s.stock(sku), orders(s, sku)[-1]["delivered"]), (REORDER, REORDER),
                  "%s: the stock is restored once, the order records the delivery" % sku)
            t.ok(s.wait_until(lambda: [e for e in outbox(s, sku, "stock_arrived") if e[2]], 30),
                 "%s: its stock_arrived event is taken by the worker" % sku)
            t.is_(len(outbox(s, sku, "stock_arrived")), 1, "%s: one stock_arrived event" % sku)
            t.ok(s.wait_until(lambda: spool_find(s, "callback", order) == ["done"], 30),
                 "%s: the stored callback is done" % sku, spool_find(s, "callback", order))
        p = s.restockctl("status")
        lines = {ln.split()[0]: ln.split() for ln in p.stdout.splitlines() if ln.strip()}
        queue = dict(zip(lines.get("queue", [])[1:], lines.get("callback", [])[1:]))
        t.ok(queue.get("done") == "2" and queue.get("dead") == "0",
             "restockctl status shows the callback queue: 2 done, none dead", p.stdout)
        got = wait_mails(s, count=pauses + 2, kind="ad_resume", to=AD_MANAGER)
        for sku in (A, B):
            t.is_(len([m for m in got if "(%s)" % sku in m.subject]), 1,
                  "%s: one ad resume email" % sku)

        for sku, order, token, data in ((A, a, token_a, body_a), (B, b, token_b, body_b)):
            r = post(s, order, token, data)
            t.is_((r.status, r.json().get("status")), (200, "fulfilled"),
                  "%s: a replay afterwards answers 200, fulfilled" % sku)
            t.is_((s.stock(sku), len(outbox(s, sku, "stock_arrived"))), (REORDER, 1),
                  "%s: and changes nothing" % sku)

        r = post(s, c, legacy, body_c)
        t.is_((r.status, r.json().get("stock")), (200, REORDER),
              "database back: the random token is accepted by its stored hash, applied")
        r = post(s, c, uuid.uuid4().hex + uuid.uuid4().hex, body_c)
        t.ok(is_error(r, 403), "another random token is not", r)
        t.ok(s.wait_until(lambda: len(inbox(s, kind="ad_resume", to=AD_MANAGER)) >= pauses + 3, 60),
             "the resume email of %s comes too" % C)
        t.is_(len(inbox(s, kind="ad_resume", to=AD_MANAGER)), pauses + 3,
              "one ad resume email per delivery, none twice")


if __name__ == "__main__":
    run_tests(body)
