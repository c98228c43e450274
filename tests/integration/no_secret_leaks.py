"""Secrets leave no trace in the logs, and the product cache has one copy per product.

Each order's callback token travels in its callback URL (?token=…). After orders,
callbacks (good, forged, and one that restock-callback cannot answer because it is
stopped: nginx's 502 path), every file under the stack's log folder — nginx's access
and error logs, every program's log — is searched for every token the factory was
given: none may hold one. Product reads with a random query string (?x=…) share the
path's cached copy instead of each making a new one (X-Cache-Status tells)."""

import glob
import os
import uuid

from harness import Stack, run_tests
from replenish_common import callback_parts, factory_requests, sell_out

SKUS = ("CP-502101", "CP-502102")


def logs_with(s, secret):
    found = []
    for path in glob.glob(os.path.join(s.dir, "log", "**"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                if secret.encode() in f.read():
                    found.append(os.path.basename(path))
    return found


def body(t):
    with Stack(t, env={"RESTOCK_FACTORY_ARGS": "--delay 1"}) as s:
        tokens = []
        for sku in SKUS:
            t.is_(sell_out(s, sku).status, 409, "%s sold out" % sku)
            got = s.wait_until(lambda: factory_requests(s, sku), timeout=30)
            t.ok(got, "the factory received the order of %s" % sku)
            if got:
                order_id, token = callback_parts(got[0]["body"]["CallbackUrl"])
                tokens.append(token)
        t.ok(s.wait_until(lambda: all(s.stock(sku) > 0 for sku in SKUS), timeout=30),
             "both callbacks came through nginx and restocked")
        order_id, token = callback_parts(got[0]["body"]["CallbackUrl"])
        forged = "%064x" % uuid.uuid4().int
        r = s.request("POST", "/callbacks/factory/%s?token=%s" % (order_id, forged),
                      {"MessageAttributeProductCnt": 1})
        t.is_(r.status, 403, "a forged token answers 403")
        tokens.append(forged)
        # restock-callback stopped: nginx fails to reach it (its 502 path) and answers 503.
        s.stop("callback")
        r = s.request("POST", "/callbacks/factory/%s?token=%s" % (order_id, token),
                      {"MessageAttributeProductCnt": 1})
        t.is_(r.status, 503, "with restock-callback stopped, nginx answers 503")
        s.start("callback")
        s.stop("nginx")  # flushes nginx's buffered access log
        access = s.log("nginx-access")
        t.ok("/callbacks/factory/%s " % order_id in access,
             "the access log has the callbacks, by path")
        for i, secret in enumerate(tokens):
            t.is_(logs_with(s, secret), [], "token %d is in no log file" % (i + 1))
        t.ok("?token=" not in access, "no query string with a token in the access log")

        s.start("nginx")
        statuses = []
        for i in range(5):
            r = s.request("GET", "/products/CP-502103?x=%s" % uuid.uuid4().hex)
            statuses.append(r.status)
            if r.headers.get("X-Cache-Status") == "HIT":
                break
        t.ok(r.headers.get("X-Cache-Status") == "HIT",
             "a product read with a random query string is served from the path's copy",
             "X-Cache-Status: %s" % r.headers.get("X-Cache-Status"))
        t.is_(set(statuses), {200}, "and answers 200")


run_tests(body)
