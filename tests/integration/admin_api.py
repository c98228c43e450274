#!/usr/bin/env python3
"""The admin API (restock-admin behind its own nginx site, docs/design.md "The admin
API"), on the real stack, through the admin site as a browser would use it: login
(right, wrong, unknown: the same 401), lock-out after 5 failures and restockctl's
unlock, logout, idle expiry; the CSRF token, a foreign Origin, Sec-Fetch-Site and a
viewer's write refused with nothing changed; each read route's body against what
restockctl shows of the same state; each write route's effect (row, spool file,
setting) and its audit row (actor admin:<name>, source 127.0.0.1, before and after);
a dead order redriven and delivered by the factory simulator; Korean names; bad
bodies; the database down: 503. Every answer carries Cache-Control: no-store, and no
password, token or key reaches a log."""

import glob
import json
import os
import re

from harness import Stack, run_tests
from replenish_common import (DONUT, add_products, orders, sell_out, sim_config, spool_find)

ENV = {"RESTOCK_FACTORY_ARGS": "--delay 0.3", "RESTOCK_SWEEP_INTERVAL": "1",
       "RESTOCK_BACKOFF_MIN": "1", "RESTOCK_BACKOFF_MAX": "2", "RESTOCK_MAX_ATTEMPTS": "2",
       "RESTOCK_ATTEMPT_TIMEOUT": "2"}
SECRETS = []  # every password, token and key the test saw: none may be in a log


def no_store(t, r, what):
    t.is_(r.headers.get("Cache-Control"), "no-store", "%s: Cache-Control: no-store" % what)


def audit_rows(s, action):
    """The audit rows of action, oldest first: (actor, source, target, before, after)."""
    rows = s.sql("SELECT actor, source, target, IFNULL(before_json, 'null'),"
                 " IFNULL(after_json, 'null') FROM audit_log WHERE action = '%s' ORDER BY id"
                 % action)
    return [(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4])) for r in rows]


def audited(t, s, action, target, what, before=None, after=None):
    """The newest audit row of action names target, admin:op from 127.0.0.1, and
    holds the before and after fields asked for."""
    rows = [r for r in audit_rows(s, action) if r[2] == target]
    row = rows[-1] if rows else None
    t.ok(row is not None and row[0] == "admin:op" and row[1] == "127.0.0.1",
         "%s: audit row %s %s by admin:op from 127.0.0.1" % (what, action, target), row)
    for name, want in (("before", before), ("after", after)):
        if row and want is not None:
            got = row[3] if name == "before" else row[4]
            t.ok(isinstance(got, dict) and all(got.get(k) == v for k, v in want.items()),
                 "%s: its %s holds %s" % (what, name, want), got)
    return row


# -- sessions ------------------------------------------------------------------------
def logins(t, s):
    r = s.admin_request("POST", "/admin/api/session", {"name": "op", "password": OP_PW})
    t.is_(r.status, 200, "login: the right password answers 200")
    body = r.json()
    t.is_(sorted(body), ["csrf_token", "expires_at", "name", "role"],
          "login: the body is name, role, csrf_token, expires_at")
    t.is_((body["name"], body["role"]), ("op", "operator"), "login: its name and role")
    cookie = r.headers.get("Set-Cookie", "")
    t.ok(re.fullmatch(r"restock_admin=[A-Za-z0-9_-]{43}; Path=/admin; HttpOnly; SameSite=Strict",
                      cookie), "login: the cookie is HttpOnly, SameSite=Strict, Path=/admin, "
         "not Secure on loopback", cookie)
    no_store(t, r, "login")
    SECRETS.append(cookie.split(";")[0].split("=", 1)[1])
    SECRETS.append(body["csrf_token"])
    token = cookie.split(";")[0].split("=", 1)[1]
    t.is_(s.sql_value("SELECT COUNT(*) FROM admin_session WHERE token_hash = UNHEX(SHA2('%s', 256))"
                      % token), "1", "login: the database keeps the token's SHA-256")
    t.is_(s.sql_value("SELECT COUNT(*) FROM admin_session WHERE token_hash = '%s'" % token), "0",
          "login: and not the token")

    wrong = s.admin_request("POST", "/admin/api/session", {"name": "op", "password": "nope" * 4})
    unknown = s.admin_request("POST", "/admin/api/session",
                              {"name": "nobody", "password": OP_PW})
    t.ok(wrong.status == unknown.status == 401 and wrong.body == unknown.body and
         wrong.json() == {"error": "wrong name or password"},
         "login: a wrong password and an unknown name answer the same 401", (wrong, unknown))
    t.ok("Set-Cookie" not in wrong.headers, "login: a refused login sets no cookie")
    no_store(t, wrong, "refused login")
    log = s.log("admin")
    t.ok('event=admin_login result=wrong_password name="op" from=127.0.0.1' in log and
         'event=admin_login result=unknown name="nobody" from=127.0.0.1' in log,
         "login: each failure is logged with its reason, name and address", log[-2000:])

    for bad, why in ((b'{"name":"op",', "malformed JSON"),
                     ({"name": "op", "password": 5}, "a password that is not a string"),
                     ({"name": "op"}, "no password"),
                     ({"name": "op", "password": OP_PW, "remember": True}, "an unknown field")):
        r = s.admin_request("POST", "/admin/api/session", bad)
        t.ok(r.status == 400 and "error" in r.json(), "login: %s answers 400" % why, r)

    # The session: GET it (no new cookie), without a cookie 401.
    sess = s.admin_login("op", OP_PW)
    r = sess.get("/admin/api/session")
    t.ok(r.status == 200 and r.json()["name"] == "op" and "Set-Cookie" not in r.headers and
         r.json()["csrf_token"] == sess.csrf, "GET session: 200, the same body, no new cookie", r)
    r = s.admin_request("GET", "/admin/api/status")
    t.ok(r.status == 401 and r.json() == {"error": "login required"},
         "no cookie: 401 login required", r)
    r = s.admin_request("GET", "/admin/api/status",
                        headers={"Cookie": "restock_admin=" + "A" * 43})
    t.ok(r.status == 401 and r.json() == {"error": "login required"},
         "an unknown token: 401 login required", r)
    return sess


def lockout(t, s):
    pw = s.admin_account("locky", "viewer")
    SECRETS.append(pw)
    answers = [s.admin_request("POST", "/admin/api/session",
                               {"name": "locky", "password": "wrong-%d-password" % i})
               for i in range(5)]
    t.ok(all(a.status == 401 for a in answers), "lock-out: 5 wrong passwords answer 401")
    r = s.admin_request("POST", "/admin/api/session", {"name": "locky", "password": pw})
    t.ok(r.status == 401 and r.json() == {"error": "wrong name or password"},
         "lock-out: after 5 failures even the right password gets the same 401", r)
    t.ok('event=admin_login result=locked name="locky"' in s.log("admin"),
         "lock-out: the log says locked")
    p = s.restockctl("admin", "unlock", "locky")
    t.is_(p.returncode, 0, "lock-out: restockctl admin unlock succeeds")
    r = s.admin_request("POST", "/admin/api/session", {"name": "locky", "password": pw})
    t.is_(r.status, 200, "lock-out: after the unlock the right password logs in")


def logout(t, s):
    sess = s.admin_login("op", OP_PW)
    r = sess.request("DELETE", "/admin/api/session", csrf=False)
    t.ok(r.status == 403, "logout without the CSRF token: 403", r)
    r = sess.request("DELETE", "/admin/api/session")
    t.ok(r.status == 200 and r.json() == {"status": "logged_out"}, "logout: 200 logged_out", r)
    t.ok("Max-Age=0" in r.headers.get("Set-Cookie", ""), "logout: the cookie is ended",
         r.headers)
    r = sess.get("/admin/api/status")
    t.ok(r.status == 401 and r.json() == {"error": "login required"},
         "after logout the old cookie gets 401 login required", r)


def expiry(t, s):
    """admin_session_idle 10 s: the session ends when the database says its idle
    time has passed (polled there, not through the API, whose every request would
    keep it alive)."""
    s.stop("admin")
    s.start("admin", env={"RESTOCK_ADMIN_SESSION_IDLE": "10"})
    sess = s.admin_login("op", OP_PW)
    t.is_(sess.get("/admin/api/status").status, 200, "expiry: a fresh session reads")
    token = sess.cookie.split("=", 1)[1]
    idle = ("SELECT UTC_TIMESTAMP(6) > last_seen_at + INTERVAL 10 SECOND FROM admin_session"
            " WHERE token_hash = UNHEX(SHA2('%s', 256))" % token)
    t.ok(s.wait_until(lambda: s.sql_value(idle) == "1", timeout=60),
         "expiry: the session's idle time passes")
    r = sess.get("/admin/api/status")
    t.ok(r.status == 401 and r.json() == {"error": "session expired"},
         "expiry: then 401 session expired", r)
    no_store(t, r, "expired")


# -- cross-site requests and roles ----------------------------------------------------
def refusals(t, s, op, viewer):
    point = lambda: s.sql_value("SELECT reorder_point FROM product WHERE sku = '%s'" % DONUT)
    before = point()
    cases = (
        ("no CSRF token", op, {}, False),
        ("a wrong CSRF token", op, {"X-Restock-CSRF": "x" * 43}, False),
        ("another session's CSRF token", op, {"X-Restock-CSRF": viewer.csrf}, False),
        ("a foreign Origin", op, {"Origin": "http://evil.example"}, True),
        ("Sec-Fetch-Site: cross-site", op, {"Sec-Fetch-Site": "cross-site"}, True),
    )
    for what, sess, headers, csrf in cases:
        r = sess.request("PATCH", "/admin/api/products/" + DONUT, {"reorder_point": 7},
                         headers=headers, csrf=csrf)
        t.ok(r.status == 403 and r.json() == {"error": "cross-site request refused"},
             "%s: 403 cross-site request refused" % what, r)
        t.is_(point(), before, "%s: the reorder point is unchanged" % what)
    r = s.admin_request("POST", "/admin/api/session", {"name": "op", "password": OP_PW},
                        headers={"Origin": "http://evil.example"})
    t.ok(r.status == 403 and "Set-Cookie" not in r.headers,
         "a login POST from a foreign Origin: 403, no cookie", r)
    r = op.request("PATCH", "/admin/api/products/" + DONUT, {"reorder_point": before},
                   headers={"Origin": "http://127.0.0.1:%d" % s.admin_port,
                            "Sec-Fetch-Site": "same-origin"})
    t.is_(r.status, 200, "the site's own Origin and same-origin pass")

    r = viewer.request("PATCH", "/admin/api/products/" + DONUT, {"reorder_point": 7})
    t.ok(r.status == 403 and r.json() == {"error": "operator role required"},
         "a viewer's write: 403 operator role required", r)
    t.is_(point(), before, "a viewer's write: nothing changed")
    r = viewer.request("POST", "/admin/api/clients", {"name": "viewer-made"})
    t.is_(r.status, 403, "a viewer's client add: 403")
    t.is_(s.sql_value("SELECT COUNT(*) FROM api_client WHERE name = 'viewer-made'"), "0",
          "a viewer's client add: no client")
    t.is_(viewer.get("/admin/api/accounts").status, 403, "accounts: operators only")
    t.is_(viewer.get("/admin/api/status").status, 200, "a viewer reads")


# -- reads against restockctl ------------------------------------------------------------
def table(p):
    """restockctl's table output as rows of words (header first)."""
    return [ln.split() for ln in p.stdout.splitlines() if ln.strip()]


def reads(t, s, op):
    r = op.get("/admin/api/status")
    t.is_(r.status, 200, "status: 200")
    no_store(t, r, "status")
    got = r.json()
    rows = table(s.restockctl("status"))
    states = rows[0][1:7]
    for q in got["queues"]:
        line = [x for x in rows if x[0] == q["queue"]]
        t.ok(line and [q["states"][st] for st in states] == [int(x) for x in line[0][1:7]],
             "status: queue %s's counts as restockctl status shows them" % q["queue"],
             (q, line))
    ctl_orders = [ln for ln in s.restockctl("status").stdout.splitlines()
                  if ln.startswith("orders:")][0]
    want = dict(zip(ctl_orders.split()[1::2], map(int, ctl_orders.split()[2::2])))
    t.is_(got["orders"], want, "status: orders by status as restockctl status says")

    r = op.get("/admin/api/orders?limit=50")
    ctl = table(s.restockctl("orders"))[1:]
    api = r.json()["orders"]
    t.is_([(o["order_id"], o["sku"], o["quantity"], o["status"]) for o in api],
          [(c[0], c[1], int(c[2]), c[3]) for c in ctl],
          "orders: ids, skus, quantities and statuses as restockctl orders, newest first")
    t.is_(op.get("/admin/api/orders?limit=0").status, 400, "orders?limit=0: 400")
    t.is_(op.get("/admin/api/orders?limit=x").status, 400, "orders?limit=x: 400")
    r = op.get("/admin/api/orders?limt=5")
    t.ok(r.status == 400 and "limt" in r.json()["error"], "orders?limt=5 (a typo): 400, not ignored",
         r)

    r = op.get("/admin/api/products")
    api = {p["sku"]: p for p in r.json()["products"]}
    ctl = table(s.restockctl("products"))[1:]
    t.ok(len(api) == len(ctl) and all(
        (api[c[0]]["stock"], api[c[0]]["held"], api[c[0]]["reorder_point"]) ==
        (int(c[1]), int(c[2]), int(c[3])) for c in ctl),
        "products: stock, held and reorder point as restockctl products", (api, ctl))
    t.is_(api[DONUT]["name"], "부산도너츠", "products: the Korean name survives")
    one = op.get("/admin/api/products/" + DONUT)
    t.ok(one.status == 200 and one.json() == api[DONUT], "products/{sku}: the same product",
         one)
    r = op.get("/admin/api/products/NO-SUCH")
    t.ok(r.status == 404 and "error" in r.json(), "products/{unknown}: 404", r)

    r = op.get("/admin/api/holds")
    ctl = s.restockctl("holds").stdout
    t.ok(r.status == 200 and r.json()["holds"] == int(
        re.search(r"active holds: (\d+)", ctl).group(1)),
        "holds: the count as restockctl holds", (r, ctl))
    sku = r.json()["products"][0]["sku"] if r.json()["products"] else None
    t.ok(sku is not None and sku in ctl and r.json()["oldest"][0]["hold"] in ctl,
         "holds: the product and the oldest hold restockctl names", r)

    r = op.get("/admin/api/clients")
    ctl = table(s.restockctl("client", "list"))[1:]
    t.is_([(c["id"], c["name"]) for c in r.json()["clients"]],
          [(int(c[0]), c[1]) for c in ctl], "clients: as restockctl client list")
    t.ok(b'"key"' not in r.body and b"rsk_" not in r.body, "clients: no key in the list")

    r = op.get("/admin/api/webhooks")
    ctl = table(s.restockctl("webhook", "list"))[1:]
    t.is_([(w["id"], w["status"]) for w in r.json()["webhooks"]],
          [(c[0], c[1]) for c in ctl], "webhooks: ids and statuses as restockctl webhook list")
    t.ok(b"whsec_" not in r.body, "webhooks: no secret in the list")

    r = op.get("/admin/api/accounts")
    names = {a["name"]: a for a in r.json()["accounts"]}
    ctl = table(s.restockctl("admin", "list"))[1:]
    t.is_(sorted((a["name"], a["role"]) for a in r.json()["accounts"]),
          sorted((c[0], c[1]) for c in ctl), "accounts: names and roles as restockctl admin list")
    t.ok(set(names) >= {"op", "viewer", "locky"} and names["op"]["last_login"],
         "accounts: op, viewer and locky, op's last login", names)
    t.ok(b"argon2" not in r.body and b"password" not in r.body, "accounts: no hash")

    r = op.get("/admin/api/audit?limit=3")
    ctl = table(s.restockctl("audit", "--limit", "3"))[1:]
    t.is_([a["id"] for a in r.json()["audit"]], [int(c[0]) for c in ctl],
          "audit: the newest rows as restockctl audit, newest first")
    first = r.json()["audit"][-1]["id"]
    r = op.get("/admin/api/audit?limit=2&before=%d" % first)
    t.ok(all(a["id"] < first for a in r.json()["audit"]), "audit?before=: older rows only", r)


# -- writes, each with its audit row -------------------------------------------------------
def writes(t, s, op):
    r = op.request("PATCH", "/admin/api/products/" + DONUT, {"reorder_point": 1,
                                                            "reorder_auto": False})
    t.ok(r.status == 200 and r.json()["reorder_point"] == 1 and r.json()["sku"] == DONUT,
         "PATCH product: 200, the product with its new point", r)
    t.is_(s.sql_value("SELECT reorder_point FROM product WHERE sku = '%s'" % DONUT), "1",
          "PATCH product: the row says 1")
    audited(t, s, "product.set", DONUT, "PATCH product", {"reorder_point": 0},
            {"reorder_point": 1})
    count = len(audit_rows(s, "product.set"))
    for body, why in (({"bogus": 1}, "an unknown setting"), ({"reorder_point": -5}, "a negative point"),
                      ({"reorder_point": [1]}, "a list"), ({}, "no setting"),
                      ('{"reorder_point":', "malformed JSON")):
        r = op.request("PATCH", "/admin/api/products/" + DONUT, body)
        t.ok(r.status == 400 and "error" in r.json(), "PATCH product with %s: 400" % why, r)
    t.is_(s.sql_value("SELECT reorder_point FROM product WHERE sku = '%s'" % DONUT), "1",
          "bad PATCHes: nothing changed")
    t.is_(len(audit_rows(s, "product.set")), count, "bad PATCHes: no audit row")
    r = op.request("PATCH", "/admin/api/products/" + DONUT,
                   '{"reorder_point":1,"pad":"%s"}' % ("x" * 9000))
    t.ok(r.status == 413 and "error" in r.json(), "a body over body_limit: 413", r)
    no_store(t, r, "413")
    r = op.request("PATCH", "/admin/api/products/NO-SUCH", {"reorder_point": 1})
    t.is_(r.status, 404, "PATCH an unknown product: 404")

    r = op.request("POST", "/admin/api/clients", {"name": "sneaky", "admin": True})
    t.ok(r.status == 400 and "admin" in r.json()["error"], "client add with an unknown field: 400",
         r)
    t.is_(s.sql_value("SELECT COUNT(*) FROM api_client WHERE name = 'sneaky'"), "0",
          "client add with an unknown field: no client")
    r = op.request("POST", "/admin/api/clients", {"name": "storefront"})
    t.ok(r.status == 201 and r.json()["key"].startswith("rsk_"), "client add: 201 with its key", r)
    key, cid = r.json()["key"], r.json()["id"]
    SECRETS.append(key)
    pr = s.request("GET", "/products", headers={"Authorization": "Bearer " + key})
    t.is_(pr.status, 200, "client add: the key works on the public API")
    t.is_(s.sql_value("SELECT name FROM api_client WHERE client_id = %d" % cid), "storefront",
          "client add: its row")
    row = audited(t, s, "client.add", str(cid), "client add", after={"name": "storefront"})
    t.ok(row and key not in json.dumps(row), "client add: the key is not in the audit row")
    r = op.request("POST", "/admin/api/clients/%d/revoke" % cid)
    t.ok(r.status == 200 and r.json()["status"] == "revoked", "client revoke: 200", r)
    t.ok(s.sql_value("SELECT revoked_at IS NOT NULL FROM api_client WHERE client_id = %d" % cid)
         == "1", "client revoke: the row is revoked")
    audited(t, s, "client.revoke", str(cid), "client revoke")
    r = op.request("POST", "/admin/api/clients/999999/revoke")
    t.is_(r.status, 404, "revoke an unknown client: 404")

    r = op.request("POST", "/admin/api/webhooks", {"url": "https://hooks.example/in",
                                                   "events": ["order.sent", "stock.sold_out"]})
    t.ok(r.status == 201 and r.json()["secret"].startswith("whsec_") and
         sorted(r.json()["events"]) == ["order.sent", "stock.sold_out"],
         "webhook add: 201, its events, the secret once", r)
    wid, secret = r.json()["id"], r.json()["secret"]
    SECRETS.append(secret)
    t.is_(s.sql_value("SELECT url FROM webhook_endpoint WHERE endpoint_id = UNHEX('%s')"
                      % wid.replace("-", "")), "https://hooks.example/in", "webhook add: its row")
    row = audited(t, s, "webhook.add", wid, "webhook add")
    t.ok(row and secret not in json.dumps(row), "webhook add: no secret in the audit row")
    r = op.request("POST", "/admin/api/webhooks", {"url": "ftp://user:pw@h.example/x"})
    t.is_(r.status, 400, "webhook add with a URL that is not http(s): 400")
    r = op.request("POST", "/admin/api/webhooks", {"url": "https://h.example/", "events": ["x"]})
    t.is_(r.status, 400, "webhook add with an unknown event type: 400")
    status = lambda: s.sql_value("SELECT status FROM webhook_endpoint WHERE endpoint_id ="
                                 " UNHEX('%s')" % wid.replace("-", ""))
    r = op.request("POST", "/admin/api/webhooks/%s/disable" % wid, {"reason": "moving"})
    t.ok(r.status == 200 and r.json()["status"] == "disabled" and status() == "1",
         "webhook disable: 200, the row disabled", r)
    audited(t, s, "webhook.disable", wid, "webhook disable")
    r = op.request("POST", "/admin/api/webhooks/%s/ping" % wid)
    t.is_(r.status, 409, "ping a disabled endpoint: 409")
    r = op.request("POST", "/admin/api/webhooks/%s/enable" % wid)
    t.ok(r.status == 200 and r.json()["status"] == "enabled" and status() == "0",
         "webhook enable: 200, the row enabled", r)
    audited(t, s, "webhook.enable", wid, "webhook enable")
    r = op.request("POST", "/admin/api/webhooks/%s/rotate" % wid)
    t.ok(r.status == 200 and r.json()["secret"].startswith("whsec_") and
         r.json()["secret"] != secret and r.json()["rotating"],
         "webhook rotate: 200, a new secret once", r)
    SECRETS.append(r.json()["secret"])
    audited(t, s, "webhook.rotate", wid, "webhook rotate", after={"secret": "rotated"})
    r = op.request("POST", "/admin/api/webhooks/%s/ping" % wid)
    t.ok(r.status == 200 and r.json()["ping"].startswith("msg_"), "webhook ping: queued", r)
    ping = r.json()["ping"]
    t.ok(spool_find(s, "webhook", ping), "webhook ping: its message is in the webhook queue")
    m = op.get("/admin/api/messages/" + ping)
    t.ok(m.status == 200 and m.json()["queue"] == "webhook", "messages/{ping}: found", m)
    r = op.request("POST", "/admin/api/webhooks/%s/enable" % ("0" * 36))
    t.is_(r.status, 404, "an unknown endpoint: 404")


def redrive(t, s, op):
    """A factory that refuses (400, permanent) kills the order's message at once; the
    API lists it dead, shows it, redrives it; the factory then delivers it."""
    sku = add_products(s, 1, prefix="AD", stock=1)[0]
    sim_config(s, answer_status=400)
    t.is_(sell_out(s, sku).status, 409, "redrive: %s sold out" % sku)
    t.ok(s.wait_until(lambda: orders(s, sku) and orders(s, sku)[-1]["status"] == "failed",
                      timeout=60), "redrive: the refused order failed", orders(s, sku))
    order = orders(s, sku)[-1]["id"]
    dead = op.get("/admin/api/dead").json()["dead"]
    product = s.sql_value("SELECT LOWER(HEX(product_id)) FROM product WHERE sku = '%s'" % sku)
    mine = [d for d in dead if d["queue"] == "factory" and
            (d["key"] or "").replace("-", "") == product]
    t.ok(mine and mine[0]["reason"] and mine[0]["died_at"],
         "dead: the factory message, with its reason and time", dead)
    ctl = s.restockctl("dlq", "list").stdout
    t.ok(mine and mine[0]["id"] in ctl, "dead: as restockctl dlq list shows it", ctl)
    mid = mine[0]["id"] if mine else "none"
    m = op.get("/admin/api/messages/" + mid)
    t.ok(m.status == 200 and m.json()["state"] == "dead" and m.json()["body"]["sku"] == sku and
         m.json()["body"]["order_id"] == order, "messages/{id}: dead, its body", m)
    t.ok(m.status == 200 and m.json()["body"]["token"] == "(hidden)" and
         not re.search(rb"[0-9a-f]{64}", m.body), "messages/{id}: the callback token hidden",
         m.body[:800])
    ctl = s.restockctl("dlq", "show", mid).stdout
    t.ok("state:        dead" in ctl and str(m.json()["attempts"]) in ctl,
         "messages/{id}: as restockctl dlq show")
    t.ok(op.get("/admin/api/orders/" + order).json()["status"] == "failed",
         "orders/{id}: failed")

    sim_config(s, answer_status=0)
    r = op.request("POST", "/admin/api/dead/%s/redrive" % mid)
    t.ok(r.status == 200 and "factory" in r.json()["redriven"], "redrive: 200", r)
    audited(t, s, "dlq.redrive", mid, "redrive", {"state": "dead"})
    t.ok(s.wait_until(lambda: orders(s, sku)[-1]["status"] == "fulfilled", timeout=60),
         "redrive: the factory simulator delivers it, the order is fulfilled", orders(s, sku))
    t.ok(s.wait_until(lambda: spool_find(s, "factory", mid) == ["done"]),
         "redrive: the spool file moved to done/", spool_find(s, "factory", mid))
    r = op.request("POST", "/admin/api/dead/%s/redrive" % mid)
    t.ok(r.status == 409 and "not dead" in r.json()["error"], "redrive of a done message: 409",
         r)
    r = op.request("POST", "/admin/api/dead/%s/redrive" % ("f" * 32))
    t.is_(r.status, 404, "redrive of no message: 404")

    o = op.get("/admin/api/orders/" + order)
    events = [e["event"] for e in o.json()["timeline"]]
    # The redrive reopened the order (its failed_at is gone): the failure stays in
    # its outbox event, order_failed.
    t.ok(o.status == 200 and events[0] == "opened" and "event order_failed" in events and
         events.index("event order_failed") < events.index("fulfilled") and "sent" in events
         and all(e["at"].endswith("Z") for e in o.json()["timeline"]),
         "orders/{id}: the timeline, opened … failed … sent … fulfilled, RFC 3339 UTC", events)
    t.is_(op.get("/admin/api/orders/" + "0" * 8 + "-0000-4000-8000-" + "0" * 12).status, 404,
          "orders/{unknown}: 404")


def fulfil(t, s, op):
    sku = add_products(s, 1, prefix="AF", stock=1)[0]
    sim_config(s, silent=True)  # the factory takes it and never calls back
    t.is_(sell_out(s, sku).status, 409, "fulfil: %s sold out" % sku)
    t.ok(s.wait_until(lambda: orders(s, sku) and orders(s, sku)[-1]["status"] == "sent",
                      timeout=60), "fulfil: the order is sent", orders(s, sku))
    sim_config(s, silent=False)
    order = orders(s, sku)[-1]["id"]
    r = op.request("POST", "/admin/api/orders/%s/fulfil" % order, {"quantity": 999})
    t.ok(r.status == 409, "fulfil more than ordered: 409", r)
    t.is_(s.stock(sku), 0, "fulfil more than ordered: nothing changed")
    r = op.request("POST", "/admin/api/orders/%s/fulfil" % order, {"quantity": "3"})
    t.is_(r.status, 400, "fulfil with a quantity that is a string: 400")
    r = op.request("POST", "/admin/api/orders/%s/fulfil" % order, {"quantity": 4})
    t.ok(r.status == 200 and r.json()["stock"] == 4, "fulfil: 200, stock 4", r)
    t.is_((orders(s, sku)[-1]["status"], s.stock(sku)), ("fulfilled", 4),
          "fulfil: the order fulfilled, the stock in the row")
    audited(t, s, "order.fulfil", order, "fulfil")
    r = op.request("POST", "/admin/api/orders/%s/fulfil" % order, {"quantity": 4})
    t.ok(r.status == 200 and r.json()["repeated"], "fulfil again: 200 repeated", r)
    t.is_(s.stock(sku), 4, "fulfil again: nothing changed")


def routes(t, s, op):
    r = op.request("PUT", "/admin/api/status")
    t.ok(r.status == 405 and "GET" in r.headers.get("Allow", ""), "wrong method: 405 with Allow",
         r)
    r = op.get("/admin/api/nothing-here")
    t.ok(r.status == 404 and "error" in r.json(), "unknown route: 404", r)
    no_store(t, r, "404")
    r = s.request("GET", "/admin/api/status")
    t.is_(r.status, 404, "the public site does not serve the admin API")


def db_down(t, s, op):
    s.stop("db")
    r = op.get("/admin/api/status")
    t.ok(r.status == 503 and "error" in r.json(), "the database down: 503", r)
    no_store(t, r, "503")
    r = s.admin_request("POST", "/admin/api/session", {"name": "op", "password": OP_PW})
    t.is_(r.status, 503, "the database down: a login answers 503")


def no_secrets(t, s):
    logs = ""
    for path in glob.glob(os.path.join(s.dir, "log", "*.log")):
        with open(path, encoding="utf-8", errors="replace") as f:
            logs += f.read()
    leaked = [x[:8] + "…" for x in SECRETS if x and x in logs]
    t.ok(SECRETS and not leaked, "no password, token, key or secret in any log (%d checked)"
         % len(SECRETS), leaked)


OP_PW = None


def main(t):
    global OP_PW
    with Stack(t, env=ENV, private_db=True) as s:
        OP_PW = s.admin_account("op", "operator")
        viewer_pw = s.admin_account("viewer", "viewer")
        SECRETS.extend([OP_PW, viewer_pw])
        routes(t, s, s.admin_login("op", OP_PW))
        op = logins(t, s)
        viewer = s.admin_login("viewer", viewer_pw)
        lockout(t, s)
        refusals(t, s, op, viewer)
        # A hold and a client, for the reads to find.
        h = s.request("POST", "/holds", {"lines": [{"sku": "CP-502102", "quantity": 1}]})
        t.is_(h.status, 201, "a hold for the reads")
        s.restockctl("client", "add", "ctl-client", check=True)
        writes(t, s, op)
        redrive(t, s, op)
        fulfil(t, s, op)
        reads(t, s, op)
        logout(t, s)
        expiry(t, s)
        op = s.admin_login("op", OP_PW)
        db_down(t, s, op)
        no_secrets(t, s)


run_tests(main)
