"""The OpenAPI document (docs/openapi.yaml): the public site serves it, byte for
byte, at /openapi.yaml; and the validator that every integration test runs at its
stack's close (harness.Stack.validate_exchanges) refuses what the document does not
describe: a real answer with a field added, a status or a path the document lacks, a
required header missing, a webhook delivery with a field added. The admin site serves
it too, and every admin route is called once, so that its answers are validated (at
close, like every test's answers)."""

import json
import os
import subprocess

from harness import NODE, OPENAPI, OPENAPI_VALIDATOR, Stack, run_tests


def validate(s, name, exchanges, webhooks=None):
    """Runs the validator on exchanges (and webhook records): (exit status, its
    lines without the count)."""
    paths = []
    for suffix, records in (("", exchanges), ("-webhooks", webhooks)):
        if records is None:
            continue
        path = os.path.join(s.dir, "%s%s.jsonl" % (name, suffix))
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        paths.append(path)
    p = subprocess.run([NODE, OPENAPI_VALIDATOR, OPENAPI] + paths, capture_output=True, text=True)
    return p.returncode, [ln for ln in p.stdout.splitlines() if not ln.startswith("checked ")]


def exchange(method, path, r, body=None):
    return {"method": method, "path": path, "status": r.status,
            "headers": {k.lower(): v for k, v in r.headers.items()},
            "body": body if body is not None else r.body.decode("utf-8")}


def body(t):
    with Stack(t) as s:
        r = s.request("GET", "/openapi.yaml")
        with open(OPENAPI, "rb") as f:
            want = f.read()
        t.is_(r.status, 200, "GET /openapi.yaml: 200")
        t.ok(r.body == want, "  the document, byte for byte", r.body[:200])
        t.is_(r.headers.get("Content-Type"), "application/yaml", "  as application/yaml")

        donut = s.request("GET", "/product/donut")
        sold = s.request("POST", "/checkout", {"quantity": 1})
        t.is_((donut.status, sold.status), (200, 200), "a product read and a checkout answer 200")
        good = [exchange("GET", "/product/donut", donut), exchange("POST", "/checkout", sold)]
        rc, lines = validate(s, "good", good)
        t.ok(rc == 0 and lines == [], "the validator passes the real answers", lines)

        # A field restock would add without the document: refused, named.
        added = dict(donut.json(), colour="glazed")
        rc, lines = validate(s, "added", [exchange("GET", "/product/donut", donut,
                                                   json.dumps(added, ensure_ascii=False))])
        t.ok(rc == 1 and len(lines) == 1 and "GET /product/donut -> 200" in lines[0] and
             "must NOT have unevaluated properties (\"colour\")" in lines[0],
             "a field added to the product: refused, the field named", lines)

        # A status and a path the document lacks, a required header missing.
        teapot = exchange("POST", "/checkout", sold)
        teapot["status"] = 418
        elsewhere = exchange("GET", "/product/donut", donut)
        elsewhere["path"] = "/product/cruller"
        no_allow = {"method": "PUT", "path": "/checkout", "status": 405,
                    "headers": {"content-type": "application/json; charset=utf-8"},
                    "body": '{"error":"method PUT is not allowed"}'}
        rc, lines = validate(s, "wrong", [teapot, elsewhere, no_allow])
        t.is_(rc, 1, "a status, a path and a header the document lacks: refused")
        for want in ("status 418 is not in the document for POST /checkout",
                     "no path of the document matches /product/cruller",
                     "header Allow is required and missing"):
            t.ok(any(want in ln for ln in lines), "  saying: " + want, lines)

        # The webhooks: a delivery of the document's shape passes, one with a field
        # added does not, one the consumer could not verify is not restock's.
        payload = {"type": "ping", "timestamp": "2026-12-07T07:30:12.123456Z",
                   "data": {"event_id": "0b6b5c1e-7a4e-4f0e-9d57-6a1f4a3b2c10",
                            "endpoint_id": "5f2c0a6e-1111-4a4b-9c9c-0123456789ab"}}
        headers = {"webhook-id": "msg_1", "webhook-timestamp": "1796628612",
                   "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="}
        hook = {"path": "/h", "verified": True, "headers": headers, "body": json.dumps(payload)}
        extra = dict(hook, body=json.dumps(dict(payload, data=dict(payload["data"], x=1))))
        forged = dict(extra, verified=False)
        rc, lines = validate(s, "hooks", [], [hook, forged])
        t.ok(rc == 0 and lines == [], "a ping delivery passes; an unverified one is not checked",
             lines)
        rc, lines = validate(s, "hooks-extra", [], [extra])
        t.ok(rc == 1 and len(lines) == 1 and "(\"x\")" in lines[0],
             "a delivery with a field added: refused", lines)

        admin_tour(t, s)


def admin_tour(t, s):
    """Every admin route once, as an operator (their answers validated at close);
    the admin site serves the document too."""
    r = s.admin_request("GET", "/admin/openapi.yaml")
    with open(OPENAPI, "rb") as f:
        t.ok(r.status == 200 and r.body == f.read(), "GET /admin/openapi.yaml: the document")
    a = s.admin_login("tour", s.admin_account("tour"))
    r = s.request("POST", "/holds", {"lines": [{"sku": "CP-502101", "quantity": 1}]})
    t.is_(r.status, 201, "a hold, for the admin API's holds to show")
    for path in ("/admin/api/session", "/admin/api/status", "/admin/api/orders?limit=5",
                 "/admin/api/products", "/admin/api/products/CP-502101", "/admin/api/holds",
                 "/admin/api/dead", "/admin/api/clients", "/admin/api/webhooks",
                 "/admin/api/accounts", "/admin/api/audit?limit=5"):
        t.is_(a.get(path).status, 200, "GET %s: 200" % path)
    for path in ("/admin/api/orders/00000000-0000-0000-0000-000000000000",
                 "/admin/api/products/NO-SUCH", "/admin/api/messages/nope"):
        t.is_(a.get(path).status, 404, "GET %s: 404" % path)
    r = a.request("PATCH", "/admin/api/products/CP-502101", {"reorder_point": 1})
    t.is_(r.status, 200, "PATCH a product's reorder point: 200")
    r = a.request("POST", "/admin/api/clients", {"name": "tour-client"})
    t.is_(r.status, 201, "POST /admin/api/clients: 201")
    client = r.json().get("id") if r.status == 201 else 0
    t.is_(a.request("POST", "/admin/api/clients/%s/revoke" % client).status, 200,
          "revoke it: 200")
    r = a.request("POST", "/admin/api/webhooks", {"url": "https://hooks.example.net/restock"})
    t.is_(r.status, 201, "POST /admin/api/webhooks: 201")
    hook = r.json().get("id") if r.status == 201 else "none"
    for action, status in (("rotate", 200), ("ping", 200), ("disable", 200), ("ping", 409),
                           ("enable", 200)):
        r = a.request("POST", "/admin/api/webhooks/%s/%s" % (hook, action))
        t.is_(r.status, status, "webhook %s: %d" % (action, status))
    r = a.request("POST", "/admin/api/dead/nope/redrive")
    t.is_(r.status, 404, "redrive of no message: 404")
    r = a.request("POST", "/admin/api/orders/00000000-0000-0000-0000-000000000000/fulfil",
                  {"quantity": 1})
    t.is_(r.status, 404, "fulfil of no order: 404")
    t.is_(a.request("POST", "/admin/api/status").status, 405, "POST /admin/api/status: 405")
    t.is_(a.request("DELETE", "/admin/api/session").status, 200, "logout: 200")
    t.is_(a.get("/admin/api/status").status, 401, "then 401")


run_tests(body)
