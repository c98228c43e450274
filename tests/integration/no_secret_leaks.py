"""Secrets leave no trace in the logs, and the product cache has one copy per product.

Each order's callback token travels in its callback URL (?token=…). After orders,
callbacks (good, forged, and one that restock-callback cannot answer because it is
stopped: nginx's 502 path), every file under the stack's log folder — nginx's access
and error logs, every program's log — is searched for every token the factory was
given: none may hold one. Product reads with a random query string (?x=…) share the
path's cached copy instead of each making a new one (X-Cache-Status tells). A webhook
endpoint's secrets (printed once by `restockctl webhook add` and `rotate`) are in no
log, no spool file, no answer of `restockctl webhook list` or `status`, and not in the
database as text, after a ping the worker signed with both of them."""

import glob
import os
import re
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


def files_with(root, secret):
    found = []
    for path in glob.glob(os.path.join(root, "**"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                if secret.encode() in f.read():
                    found.append(os.path.relpath(path, root))
    return found


def webhook_secrets(t, s):
    """Two secrets of an endpoint, used by the worker to sign a ping, kept secret."""
    p = s.restockctl("webhook", "add", "http://127.0.0.1:9/hooks")
    m = re.search(r"^webhook endpoint ([0-9a-f-]{36}) added", p.stdout, re.M)
    first = re.findall(r"whsec_[A-Za-z0-9+/=]+", p.stdout)
    t.ok(p.returncode == 0 and m and len(first) == 1, "webhook add prints its secret once",
         p.stderr)
    if not (m and first):
        return
    endpoint = m.group(1)
    p = s.restockctl("webhook", "rotate", endpoint)
    second = re.findall(r"whsec_[A-Za-z0-9+/=]+", p.stdout)
    t.ok(p.returncode == 0 and len(second) == 1 and second != first,
         "webhook rotate prints the new one once", p.stderr)
    # The worker opens both (the rotation's overlap) to sign the ping; the egress
    # guard then refuses 127.0.0.1 (this stack allows no loopback): exit 1.
    p = s.restockctl("webhook", "ping", endpoint, "--wait", "20")
    t.ok(p.returncode == 1 and "egress" in p.stdout + p.stderr,
         "the ping was signed and then refused by the egress guard", p.stdout + p.stderr)
    shown = s.restockctl("webhook", "list").stdout + s.restockctl("status").stdout
    for i, secret in enumerate(first + second):
        t.is_(logs_with(s, secret), [], "webhook secret %d is in no log file" % (i + 1))
        t.is_(files_with(s.info["SPOOL_DIR"], secret), [],
              "webhook secret %d is in no spool file" % (i + 1))
        t.ok(secret not in shown, "nor in webhook list or status")
        t.is_(s.sql_value("SELECT COUNT(*) FROM webhook_endpoint WHERE"
                          " INSTR(secret_sealed, '%s') OR INSTR(IFNULL(previous_sealed, ''), '%s')"
                          % (secret, secret)), "0",
              "nor in the database as text (sealed to the worker's key)")


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
        webhook_secrets(t, s)


run_tests(body)
