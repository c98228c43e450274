"""The OpenAPI document (docs/openapi.yaml): the public site serves it, byte for
byte, at /openapi.yaml; and the validator that every integration test runs at its
stack's close (harness.Stack.validate_exchanges) refuses what the document does not
describe: a real answer with a field added, a status or a path the document lacks, a
required header missing, a webhook delivery with a field added. (The answers of this
test, like every test's, are validated at close too.)"""

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
             "must NOT have additional properties (\"colour\")" in lines[0],
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


run_tests(body)
