"""Integration test of holds (issue 20 items 2, 3, 5; ../shared/DESIGN.md "Carts and
holds", docs/design.md §4.1) through nginx on the real stack, one part per row of the
contract: POST /holds 201 (Location, expires_at, each line's remaining; the units off
the shelf at once: the product's stock drops and its held grows), 409 nothing held,
404 unknown sku, 400 malformed; GET 200 and 404 (unknown, malformed, another client's);
confirm 200 (sold: sold_total grows, held drops), again the same 200, 409 released or
expired (also when the confirm itself finds it past expires_at); extend 200 with the
new expires_at, 409 when not held; DELETE 200 released, again the same 200, 409
confirmed, 200 "expired" when the worker expired it. Every bad request changes
nothing (every product's row, the holds' rows and lines, the customers' purchases).
Idempotency-Key on each hold route: the stored answer byte for byte with
Idempotent-Replayed: true, 422 for another request under the key. Limits: units held
for a customer count toward max_per_customer until released or expired, and 1,000
concurrent holds and checkouts of one customer take exactly the limit. A hold opens
the reorder point's order and marks the sell-out once: releases, expiries and holds
again never send a second pause nor a resume before the delivery. The worker expires
due holds (also after a restart), within a second of expires_at (p99 of the database's
own timestamps, ended_at - expires_at, over 200 holds), and a confirm racing the
expiry ends each hold exactly once."""

import math
import re
import urllib.request
import uuid

from harness import Stack, run_tests
from hold_common import (STARTED, act, add_product, auth, db_expires, expire_now, hex_id,
                         hold, ids_in, ledger, parse_expires, products, state, status_of,
                         statuses)
from inbox import ad_status, inbox
from limits import add_client
from replenish_common import factory_requests, mail_queue, orders, outbox

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ENV = {"RESTOCK_FACTORY_ARGS": "--silent", "RESTOCK_SWEEP_INTERVAL": "1",
       "RESTOCK_LOG_LEVEL": "debug"}  # the worker logs each sweep


def hold_id(r):
    try:
        return r.json().get("hold") or "00000000-0000-4000-8000-000000000000"
    except ValueError:
        return "00000000-0000-4000-8000-000000000000"


def hold_json(hid, status, expires_at, lines):
    return {"hold": hid, "status": status, "expires_at": expires_at,
            "lines": [{"sku": k, "quantity": q} for k, q in lines]}


def seconds_left(s, hid):
    """The hold's expires_at - now, by the database's clock (NaN: no such hold)."""
    return float(s.sql_value("SELECT TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at)"
                             " / 1e6 FROM hold WHERE hold_id = UNHEX('%s')" % hex_id(hid)) or "nan")


def ttl_of(s, hid):
    """The hold's expires_at - created_at, seconds (the row's own clock: the two are
    read a moment apart, so within a fraction of a millisecond of the ttl)."""
    return float(s.sql_value("SELECT TIMESTAMPDIFF(MICROSECOND, created_at, expires_at) / 1e6"
                             " FROM hold WHERE hold_id = UNHEX('%s')" % hex_id(hid)) or "nan")


def expired_by_worker(t, s, hid, what):
    """Makes the hold due and waits for the worker to expire it."""
    expire_now(s, [hid])
    t.ok(s.wait_until(lambda: status_of(s, hid) == "expired", timeout=30),
         "%s: the worker expires the hold once it is due" % what, status_of(s, hid))


def metric(s, name):
    with urllib.request.urlopen(s.info["METRICS_URL"], timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else 0.0


def created(t, s):
    a, b = add_product(s, "HA-1", 10), add_product(s, "HA-2", 5)
    r = hold(s, [(b, 2), (a, 3)], ttl=120)
    j = r.json() if r.status == 201 else {}
    hid = j.get("hold", "")
    t.is_(r.status, 201, "POST /holds that fits: 201")
    t.ok(UUID_RE.match(hid), "its hold id is a canonical UUID", j)
    t.is_(r.headers.get("Location"), "/holds/" + hid, "Location: /holds/<id>")
    t.is_(sorted(j), ["expires_at", "hold", "lines", "status"], "the hold's fields")
    t.is_((j.get("status"), j.get("lines")),
          ("held", [{"sku": b, "quantity": 2, "remaining": 3},
                    {"sku": a, "quantity": 3, "remaining": 7}]),
          "status held, each line with what remains, in the request's order")
    got, row = parse_expires(j.get("expires_at")), db_expires(s, hid)
    t.ok(got and row and abs((got - row).total_seconds()) < 0.001,
         "expires_at is RFC 3339 UTC with milliseconds, the row's", (j.get("expires_at"), row))
    t.ok(abs(ttl_of(s, hid) - 120) < 0.1, "expires_at = created_at + ttl 120 s", ttl_of(s, hid))
    t.is_(products(s, [a, b]), {a: (7, 3, 0), b: (3, 2, 0)},
          "the units are off the shelf: stock drops, held grows, nothing sold")
    p = s.request("GET", "/products/" + a).json()
    t.is_((p.get("stock"), p.get("held")), (7, 3), "the product JSON shows stock 7, held 3")
    t.is_(status_of(s, hid), "held", "the hold row is held")
    t.is_(s.sql("SELECT p.sku, l.quantity FROM hold_line l JOIN product p ON p.product_id ="
                " l.product_id WHERE l.hold_id = UNHEX('%s') ORDER BY l.line" % hex_id(hid)),
          [[b, "2"], [a, "3"]], "its lines, numbered in the request's order")
    r = hold(s, [(a, 1)])
    t.ok(abs(ttl_of(s, hold_id(r)) - 600) < 0.1, "no ttl: hold_ttl, 600 s", ttl_of(s, hold_id(r)))
    made = {}
    for ttl in (30, 86400):
        r = hold(s, [(a, 1)], ttl=ttl)
        made[ttl] = hold_id(r)
        t.ok(r.status == 201 and seconds_left(s, made[ttl]) > ttl - 5,
             "ttl %d (a bound) holds" % ttl, r)
    t.is_(products(s, [a]), {a: (4, 6, 0)}, "each hold took its units")
    # Released now: expiring 30 s later, in the middle of a later test's before and
    # after (the whole database's state), it failed one under load.
    t.is_(act(s, made[30], "release").status, 200, "the 30 s hold released")


def refused(t, s):
    a, b = add_product(s, "HB-1", 10), add_product(s, "HB-2", 1)
    before = state(s)
    r = hold(s, [(a, 4), (b, 2)])
    t.is_((r.status, r.json()),
          (409, {"message": "구매 실패!", "lines": [
              {"sku": a, "quantity": 4, "remaining": 10},
              {"sku": b, "quantity": 2, "remaining": 1, "short": True}]}),
          "a hold with a line that does not fit: 409, short on it, each with what remains")
    t.is_(state(s), before, "nothing held")
    t.is_(hold(s, [(b, 1)]).status, 201, "the last unit held")
    before = state(s)
    r = hold(s, [(b, 1)])
    t.is_((r.status, r.json().get("lines")),
          (409, [{"sku": b, "quantity": 1, "remaining": 0, "short": True}]),
          "a held unit is off the shelf: another hold of it is a 409")
    t.is_(s.request("POST", "/checkout", {"sku": b}).status, 409, "and so is a checkout")
    t.is_(state(s)["products"], before["products"], "nothing changed")
    before = state(s)
    r = hold(s, [(a, 1), ("NO-SUCH-SKU", 1)])
    t.is_((r.status, r.json()), (404, {"message": "상품 없음"}), "an unknown sku: 404 상품 없음")
    t.is_(state(s), before, "nothing held")


def malformed(t, s):
    a, b = add_product(s, "HC-1", 10), add_product(s, "HC-2", 10)
    before = state(s)
    line = {"sku": a, "quantity": 1}
    cases = [
        ("no lines", {"lines": []}),
        ("no body", None),
        ("51 lines", {"lines": [{"sku": "X-%02d" % i, "quantity": 1} for i in range(51)]}),
        ("a sku twice", {"lines": [line, {"sku": b, "quantity": 1}, dict(line)]}),
        ("quantity 0", {"lines": [{"sku": a, "quantity": 0}]}),
        ("quantity 1001", {"lines": [{"sku": a, "quantity": 1001}]}),
        ("quantity a string", {"lines": [{"sku": a, "quantity": "1"}]}),
        ("lines not an array", {"lines": line}),
        ("ttl 29", {"lines": [line], "ttl": 29}),
        ("ttl 86401", {"lines": [line], "ttl": 86401}),
        ('ttl "60"', {"lines": [line], "ttl": "60"}),
        ("ttl 1.5", {"lines": [line], "ttl": 1.5}),
        ("ttl -1", {"lines": [line], "ttl": -1}),
        ("malformed JSON", '{"lines": [{"sku": "%s", "quantity": 1}' % a),
    ]
    for name, body in cases:
        r = s.request("POST", "/holds", body)
        try:
            error = r.json().get("error")
        except ValueError:
            error = None
        t.ok(r.status == 400 and isinstance(error, str) and error,
             "POST /holds with %s: 400 with an error" % name, r)
    t.is_(state(s), before, "the malformed holds changed nothing")


def get(t, s, client, other):
    a = add_product(s, "HD-1", 5)
    r = hold(s, [(a, 2)], ttl=300)
    hid = hold_id(r)
    g = act(s, hid, "get")
    t.is_((g.status, g.json()),
          (200, hold_json(hid, "held", r.json().get("expires_at"), [(a, 2)])),
          "GET /holds/{id}: 200, its status, expires_at and lines")
    mine = hold_id(hold(s, [(a, 1)], client=client))
    before = state(s)
    for what, path_id in (("an unknown id", str(uuid.uuid4())),
                          ("a malformed id", "not-a-uuid"),
                          ("an id without dashes", hex_id(hid)),
                          ("an id one digit short", hid[:-1]),
                          ("an id with a non-hex digit", hid[:-1] + "g")):
        g = act(s, path_id, "get")
        t.ok(g.status == 404 and "error" in g.json(), "GET of %s: 404 with an error" % what, g)
    t.is_(act(s, mine, "get", client=client).status, 200, "a client GETs its own hold")
    t.is_(act(s, mine, "get").status, 404, "an anonymous GET of a client's hold: 404")
    t.is_(act(s, mine, "get", client=other).status, 404, "another client's GET: 404")
    t.is_(act(s, hid, "get", client=client).status, 404,
          "a client's GET of an anonymous hold: 404")
    t.is_(state(s), before, "the GETs changed nothing")
    return mine


def confirm(t, s, client, mine):
    a = add_product(s, "HE-1", 10)
    r = hold(s, [(a, 3)])
    hid, expires_at = hold_id(r), r.json().get("expires_at")
    c = act(s, hid, "confirm")
    t.is_((c.status, c.json()), (200, hold_json(hid, "confirmed", expires_at, [(a, 3)])),
          "confirm: 200, status confirmed")
    t.is_(products(s, [a]), {a: (7, 0, 3)}, "the units are sold: held drops, sold_total grows")
    t.is_((status_of(s, hid), s.sql_value("SELECT ended_at IS NOT NULL FROM hold WHERE"
                                          " hold_id = UNHEX('%s')" % hex_id(hid))),
          ("confirmed", "1"), "the row is confirmed, with when it ended")
    before = state(s)
    again = act(s, hid, "confirm")
    t.is_((again.status, again.body), (200, c.body), "confirm again: the same 200")
    t.is_(state(s), before, "selling nothing more")
    t.is_(act(s, hid, "get").json().get("status"), "confirmed", "GET says confirmed")
    t.is_(act(s, mine, "confirm").status, 404, "an anonymous confirm of a client's hold: 404")
    t.is_(status_of(s, mine), "held", "and leaves it held")

    r = hold(s, [(a, 2)])
    hid = hold_id(r)
    act(s, hid, "release")
    before = state(s)
    c = act(s, hid, "confirm")
    t.is_((c.status, {k: c.json().get(k) for k in ("hold", "status", "expires_at", "lines")}),
          (409, hold_json(hid, "released", r.json().get("expires_at"), [(a, 2)])),
          "confirm of a released hold: 409, the hold JSON with status released")
    t.is_(state(s), before, "nothing sold")

    r = hold(s, [(a, 2)])
    hid = hold_id(r)
    expired_by_worker(t, s, hid, "confirm of an expired hold")
    t.is_(products(s, [a]), {a: (7, 0, 3)}, "the expired hold's units are back on the shelf")
    before = state(s)
    c = act(s, hid, "confirm")
    t.is_((c.status, c.json().get("status")), (409, "expired"),
          "confirm of an expired hold: 409, status expired")
    t.is_(state(s), before, "nothing sold")

    # Past expires_at, and the worker (stopped) has not expired it: the confirm does.
    s.stop("worker")
    hid = hold_id(hold(s, [(a, 4)]))
    expire_now(s, [hid])
    before = products(s, [a])
    c = act(s, hid, "confirm")
    t.is_((c.status, c.json().get("status")), (409, "expired"),
          "confirm of a hold past expires_at that the worker has not expired: 409 expired")
    t.is_((products(s, [a]), status_of(s, hid)),
          ({a: (before[a][0] + 4, before[a][1] - 4, before[a][2])}, "expired"),
          "the confirm expired it: its units back on the shelf at once, nothing sold")
    s.start("worker")


def extend(t, s):
    a = add_product(s, "HF-1", 10)
    r = hold(s, [(a, 1)], ttl=60)
    hid = first = hold_id(r)
    e = act(s, hid, "extend", {"ttl": 3600})
    j = e.json() if e.status == 200 else {}
    t.is_((e.status, j.get("hold"), j.get("status"), j.get("lines")),
          (200, hid, "held", [{"sku": a, "quantity": 1}]), "extend: 200, the hold JSON")
    got, row = parse_expires(j.get("expires_at")), db_expires(s, hid)
    t.ok(got and row and abs((got - row).total_seconds()) < 0.001,
         "with the new expires_at, the row's", (j.get("expires_at"), row))
    t.ok(3590 < seconds_left(s, hid) <= 3600, "now + ttl 3600 s", seconds_left(s, hid))
    e = act(s, hid, "extend")
    t.ok(e.status == 200 and 590 < seconds_left(s, hid) <= 600,
         "extend without a body: now + hold_ttl 600 s", (e, seconds_left(s, hid)))
    before = state(s)
    for body, what in (({"ttl": 29}, "ttl 29"), ({"ttl": 86401}, "ttl 86401"),
                       ({"ttl": "60"}, 'ttl "60"'), ({"ttl": 1.5}, "ttl 1.5"),
                       ('{"ttl": ', "malformed JSON")):
        e = act(s, hid, "extend", body)
        t.ok(e.status == 400 and "error" in e.json(), "extend with %s: 400" % what, e)
    t.is_(state(s), before, "the bad extends changed nothing")

    ended = {"confirmed": hold_id(hold(s, [(a, 1)])), "released": hold_id(hold(s, [(a, 1)])),
             "expired": hold_id(hold(s, [(a, 1)]))}
    act(s, ended["confirmed"], "confirm")
    act(s, ended["released"], "release")
    expired_by_worker(t, s, ended["expired"], "extend of an expired hold")
    before = state(s)
    for status, hid in ended.items():
        e = act(s, hid, "extend", {"ttl": 600})
        t.is_((e.status, e.json().get("status")), (409, status),
              "extend of a %s hold: 409, status %s" % (status, status))
    t.is_(state(s), before, "changing nothing")

    s.stop("worker")
    hid, idle = hold_id(hold(s, [(a, 1)])), hold_id(hold(s, [(a, 2)]))
    expire_now(s, [hid, idle])
    e = act(s, hid, "extend", {"ttl": 600})
    t.is_((e.status, e.json().get("status")), (409, "expired"),
          "extend of a hold already past expires_at: 409 expired")
    t.ok(seconds_left(s, hid) < 0, "its expires_at unchanged", seconds_left(s, hid))
    t.is_(status_of(s, idle), "held", "a due hold no request touched stays held while the"
          " worker is down")
    s.start("worker")
    t.ok(s.wait_until(lambda: status_of(s, idle) == "expired", timeout=30),
         "the restarted worker expires it (its state is the database's)")
    t.is_(products(s, [a]), {a: (8, 1, 1)},
          "stock 8: 1 sold, 1 held by the extended hold, the rest back")


def release(t, s):
    a = add_product(s, "HG-1", 10)
    r = hold(s, [(a, 3)])
    hid = hold_id(r)
    d = act(s, hid, "release")
    t.is_((d.status, d.json()),
          (200, hold_json(hid, "released", r.json().get("expires_at"), [(a, 3)])),
          "DELETE /holds/{id}: 200, status released")
    t.is_((products(s, [a]), status_of(s, hid)), ({a: (10, 0, 0)}, "released"),
          "the units are back on the shelf, the row released")
    before = state(s)
    again = act(s, hid, "release")
    t.is_((again.status, again.body), (200, d.body), "DELETE again: the same 200")
    t.is_(state(s), before, "changing nothing")

    hid = hold_id(hold(s, [(a, 2)]))
    act(s, hid, "confirm")
    before = state(s)
    d = act(s, hid, "release")
    t.is_((d.status, d.json().get("status")), (409, "confirmed"),
          "DELETE of a confirmed hold: 409, status confirmed")
    t.is_(state(s), before, "the sold units stay sold")

    hid = hold_id(hold(s, [(a, 2)]))
    expired_by_worker(t, s, hid, "DELETE of an expired hold")
    before = state(s)
    d = act(s, hid, "release")
    t.is_((d.status, d.json().get("status")), (200, "expired"),
          "DELETE of an expired hold: 200, status expired")
    t.is_(state(s), before, "its units were back already: nothing changed")
    t.is_(products(s, [a]), {a: (8, 0, 2)}, "stock 8, held 0, sold 2")


def unknown_ids(t, s):
    before = state(s)
    for what, path_id in (("an unknown hold", str(uuid.uuid4())), ("a malformed id", "xyz"),
                          ("an id of 37 characters", str(uuid.uuid4()) + "a")):
        for route in ("confirm", "extend", "release"):
            r = act(s, path_id, route)
            t.ok(r.status == 404 and "error" in r.json(), "%s of %s: 404" % (route, what), r)
    t.is_(state(s), before, "changing nothing")


def keyed(t, s):
    a = add_product(s, "HH-1", 20)
    k = "hold-key-0001-anonymous"
    first = hold(s, [(a, 2)], ttl=300, key=k)
    t.is_((first.status, first.headers.get("Idempotent-Replayed")), (201, None),
          "a keyed POST /holds holds")
    before = state(s)
    again = hold(s, [(a, 2)], ttl=300, key=k)
    t.is_((again.status, again.body, again.headers.get("Idempotent-Replayed")),
          (201, first.body, "true"), "its retry: the stored 201, byte for byte, replayed")
    other = hold(s, [(a, 3)], ttl=300, key=k)
    t.is_(other.status, 422, "another hold under the key: 422")
    t.is_(state(s), before, "the retry and the 422 held nothing more")

    h1, h2, h3 = hold_id(first), hold_id(hold(s, [(a, 1)])), hold_id(hold(s, [(a, 1)]))
    keyed_route(t, s, "confirm", h1, h2, "hold-key-0002-anonymous")
    t.is_(act(s, h2, "confirm", key=k).status, 422, "a confirm under the POST /holds's key: 422")
    keyed_route(t, s, "extend", h2, h3, "hold-key-0003-anonymous", {"ttl": 1000})
    before = state(s)
    t.is_(act(s, h2, "extend", {"ttl": 2000}, key="hold-key-0003-anonymous").status, 422,
          "another ttl under the extend's key: 422")
    t.is_(state(s), before, "expires_at unchanged")
    keyed_route(t, s, "release", h2, h3, "hold-key-0004-anonymous")
    t.is_([status_of(s, h) for h in (h1, h2, h3)], ["confirmed", "released", "held"],
          "each keyed request acted once, on its own hold")


def keyed_route(t, s, route, hid, other, key, body=None):
    """A keyed request of route on hold hid, its retry (the stored answer byte for
    byte, replayed: for extend, the first expires_at, not a new one), and the key
    on hold other (422); the retry and the 422 change nothing."""
    first = act(s, hid, route, body, key=key)
    before = state(s)
    again = act(s, hid, route, body, key=key)
    t.is_((first.status, again.status, again.body, again.headers.get("Idempotent-Replayed")),
          (200, 200, first.body, "true"), "a keyed %s's retry replays its 200 byte for byte"
          % route)
    t.is_(act(s, other, route, body, key=key).status, 422,
          "a %s of another hold under that key: 422" % route)
    t.is_(state(s), before, "the %s's replay and 422 changed nothing" % route)


def limits(t, s, client):
    a = add_product(s, "HL-1", 100)
    s.restockctl("product", "set", a, "max_per_customer=2", check=True)
    h = hold_id(hold(s, [(a, 2)], client=client, customer="alice"))
    t.is_(status_of(s, h), "held", "a customer holds 2, the limit")
    before = state(s)
    r = s.request("POST", "/checkout", {"sku": a}, headers=auth(client, "alice"))
    t.is_((r.status, r.json().get("reason"), r.json().get("limit")), (409, "limit", 2),
          "the held units count: a checkout of 1 more is a 409, reason limit")
    r = hold(s, [(a, 1)], client=client, customer="alice")
    t.is_((r.status, r.json().get("reason"), r.json().get("limit")), (409, "limit", 2),
          "and so is a hold of 1 more")
    t.is_(state(s), before, "nothing sold or held")
    t.is_(hold(s, [(a, 1)], client=client, customer="bob").status, 201,
          "another customer holds")
    t.is_(act(s, h, "release", client=client).status, 200, "alice's hold released")
    r = s.request("POST", "/checkout", {"sku": a}, headers=auth(client, "alice"))
    t.is_(r.status, 200, "its units no longer count: the checkout sells")
    h = hold_id(hold(s, [(a, 1)], client=client, customer="alice"))
    r = s.request("POST", "/checkout", {"sku": a}, headers=auth(client, "alice"))
    t.is_(r.status, 409, "1 sold + 1 held: at the limit again")
    expired_by_worker(t, s, h, "a customer's hold")
    r = s.request("POST", "/checkout", {"sku": a}, headers=auth(client, "alice"))
    t.is_(r.status, 200, "an expired hold's units no longer count: the checkout sells")

    m = add_product(s, "HL-2", 5000)
    s.restockctl("product", "set", m, "max_per_customer=2", check=True)
    answers = s.concurrently(
        1000, 32, lambda i: ("POST", "/holds", {"lines": [{"sku": m, "quantity": 1}]}) if i % 2
        else ("POST", "/checkout", {"sku": m}), headers=auth(client, "dave"))
    got = [r.status for r in answers]
    t.is_(got.count(201) + got.count(200), 2,
          "1,000 concurrent holds and checkouts of one customer, limit 2: two succeed")
    t.ok(got.count(409) == 998 and all(r.json().get("reason") == "limit"
                                       for r in answers if r.status == 409),
         "every other one is a 409 with reason limit (none 503)", sorted(set(got)))
    stock, held, sold = products(s, [m])[m]
    t.is_((stock, held + sold), (4998, 2), "exactly 2 units taken (held or sold)")
    t.is_(s.sql_value("SELECT SUM(units) FROM customer_purchase WHERE customer = 'dave'"), "2",
          "and 2 counted for the customer")


def reorder(t, s):
    p = add_product(s, "HR-1", 6, reorder_point=2)
    r = hold(s, [(p, 4)])
    t.is_((r.status, r.json().get("lines", [{}])[0].get("remaining")), (201, 2),
          "a hold that takes the stock to the reorder point")
    t.is_(len(orders(s, p)), 1, "opens its order at once, as a sale does")
    t.ok(s.wait_until(lambda: len(factory_requests(s, p)) == 1),
         "the factory receives the order")


def sold_out(t, s):
    """A hold to 0 pauses the ad once; releases, expiries and holds to 0 again do not
    flap it; the delivery resumes it once."""
    q = add_product(s, "HS-1", 3, reorder_point=0, ad=True)
    h1 = hold_id(hold(s, [(q, 3)]))
    t.is_(products(s, [q])[q][:2], (0, 3), "a hold takes the last units")
    t.is_(len(orders(s, q)), 1, "it opened the order")
    t.ok(s.wait_until(lambda: ad_status(s, q) == "0"), "the ad is paused")
    t.ok(s.wait_until(lambda: len(inbox(s, kind="ad_pause", containing=q)) == 1),
         "one pause email")
    t.is_(act(s, h1, "release").status, 200, "the hold released: the units back")
    h2, h3 = hold_id(hold(s, [(q, 2)])), hold_id(hold(s, [(q, 1)]))
    t.is_(products(s, [q])[q][:2], (0, 3), "held to 0 again")
    expired_by_worker(t, s, h2, "a hold of the sold-out product")
    h4 = hold_id(hold(s, [(q, 2)]))
    t.is_(products(s, [q])[q][:2], (0, 3), "and held to 0 once more")
    act(s, h3, "release")
    act(s, h4, "release")
    t.is_(products(s, [q])[q][:2], (3, 0), "all released: stock 3, nothing held")
    # What the worker would do with a second sell-out or a resume is done after two
    # sweeps begun after the last release, and any email of it queued then sent.
    t.ok(s.wait_sweep_passes(s.sweep_passes(), 2), "the worker sweeps twice")
    t.ok(s.wait_until(lambda: not [m for m in mail_queue(s) if m[0] != "done"], timeout=60),
         "the mail queue is empty")
    t.is_([e[1] for e in outbox(s, q) if e[1] in ("sold_out", "stock_empty")], ["stock_empty"],
          "one sell-out event for the order (stock_empty: the hold that emptied it opened it)")
    t.is_((len(inbox(s, kind="ad_pause", containing=q)),
           len(inbox(s, kind="ad_resume", containing=q))), (1, 0),
          "still one pause email and no resume: no flapping")
    t.is_(ad_status(s, q), "0", "the ad stays paused until the delivery")
    t.is_(len(orders(s, q)), 1, "still one order")
    t.ok(s.wait_until(lambda: [o["status"] for o in orders(s, q)] == ["sent"]),
         "the order is sent")
    p = s.restockctl("orders", "fulfil", (orders(s, q) or [{"id": "none"}])[0]["id"], "10")
    t.ok(p.returncode == 0, "the delivery is recorded", p.stderr)
    t.ok(s.wait_until(lambda: ad_status(s, q) == "1"), "the ad runs again")
    t.ok(s.wait_until(lambda: len(inbox(s, kind="ad_resume", containing=q)) == 1),
         "one resume email, at the delivery")


def expiry_lag(t, s):
    """200 holds made due 1 to 3 s from now (the worker has slept on a hold ttl
    600 s away: it must see them before they are due), then the lag of each, by the
    database's own timestamps: ended_at - expires_at."""
    p = add_product(s, "HX-1", 1000)
    lag_count = metric(s, "restock_hold_expiry_lag_seconds_count")
    answers = s.concurrently(200, 8, lambda i: ("POST", "/holds",
                                                {"lines": [{"sku": p, "quantity": 1}]}))
    ids = [hold_id(r) for r in answers if r.status == 201]
    t.is_(len(ids), 200, "200 holds")
    s.sql("UPDATE hold SET expires_at = UTC_TIMESTAMP(6) + INTERVAL 1000000 +"
          " FLOOR(RAND() * 2000000) MICROSECOND WHERE hold_id IN (%s)" % ids_in(ids))
    t.ok(s.wait_until(lambda: set(statuses(s, ids).values()) == {"expired"}, timeout=60),
         "the worker expires every one")
    lags = sorted(float(v[0]) for v in s.sql(
        "SELECT TIMESTAMPDIFF(MICROSECOND, expires_at, ended_at) / 1e6 FROM hold"
        " WHERE hold_id IN (%s)" % ids_in(ids)))
    p99 = lags[math.ceil(0.99 * len(lags)) - 1] if lags else 99
    t.diag("expiry lag over %d holds: min %.3f s, median %.3f s, p99 %.3f s, max %.3f s"
           % (len(lags), lags[0], lags[len(lags) // 2], p99, lags[-1]) if lags else "no lags")
    t.ok(lags and lags[0] >= 0, "none expired before its expires_at", lags[:3])
    t.ok(p99 < 1.0, "p99 of the expiry lag (ended_at - expires_at) under 1 s: %.3f s" % p99)
    t.is_(products(s, [p]), {p: (1000, 0, 0)}, "every unit back on the shelf, once")
    # Counted after the expiry's commit: the rows may say expired a moment before.
    t.ok(s.wait_until(lambda: metric(s, "restock_hold_expiry_lag_seconds_count") - lag_count
                      >= 200, timeout=30),
         "restock_hold_expiry_lag_seconds counted each")


def race(t, s):
    """Confirms racing the expiry: holds due within 0.5 s, confirmed concurrently."""
    p = add_product(s, "HY-1", 1000)
    start = ledger(s)[p]
    answers = s.concurrently(150, 8, lambda i: ("POST", "/holds",
                                                {"lines": [{"sku": p, "quantity": 1 + i % 2}]}))
    ids = [hold_id(r) for r in answers if r.status == 201]
    units = {hold_id(r): r.json()["lines"][0]["quantity"] for r in answers if r.status == 201}
    t.is_(len(ids), 150, "150 holds")
    s.sql("UPDATE hold SET expires_at = UTC_TIMESTAMP(6) + INTERVAL FLOOR(RAND() * 500000)"
          " MICROSECOND WHERE hold_id IN (%s)" % ids_in(ids))
    confirms = s.concurrently(len(ids), 16,
                              lambda i: ("POST", "/holds/%s/confirm" % ids[i], None))
    got = {i: (r.status, r.json().get("status")) for i, r in zip(ids, confirms)}
    t.ok(set(got.values()) <= {(200, "confirmed"), (409, "expired")},
         "each confirm answers 200 confirmed or 409 expired", set(got.values()))
    t.ok(s.wait_until(lambda: "held" not in statuses(s, ids).values(), timeout=30),
         "every hold ended")
    ended = statuses(s, ids)
    t.is_({i: ended.get(i) for i in ids},
          {i: "confirmed" if got[i][0] == 200 else "expired" for i in ids},
          "each ended exactly as its confirm was answered: confirmed XOR expired")
    sold = sum(units[i] for i in ids if got[i][0] == 200)
    t.diag("%d confirmed, %d expired" % (sum(1 for i in ids if got[i][0] == 200),
                                         sum(1 for i in ids if got[i][0] == 409)))
    t.is_(products(s, [p]), {p: (1000 - sold, 0, sold)},
          "sold_total is the confirmed units, held 0, the rest back on the shelf")
    t.is_(ledger(s)[p], start, "initial + delivered = stock + held + sold_total")


def body(t):
    with Stack(t, env=ENV) as s:
        client = add_client(t, s, "hold-shop")
        other = add_client(t, s, "other-shop")
        start = ledger(s)
        created(t, s)
        refused(t, s)
        malformed(t, s)
        mine = get(t, s, client, other)
        confirm(t, s, client, mine)
        extend(t, s)
        release(t, s)
        unknown_ids(t, s)
        keyed(t, s)
        limits(t, s, client)
        reorder(t, s)
        sold_out(t, s)
        expiry_lag(t, s)
        race(t, s)
        start.update(STARTED)
        t.is_(ledger(s), start,
              "every product: initial stock + delivered = stock + held + sold_total")
        t.ok(all(v[1] >= 0 and v[0] >= 0 for v in products(s).values()),
             "no stock or held below 0")
        t.is_(int(s.sql_value("SELECT COUNT(*) FROM product p WHERE held <> (SELECT"
                              " IFNULL(SUM(l.quantity), 0) FROM hold_line l JOIN hold h ON"
                              " h.hold_id = l.hold_id WHERE h.status = 0 AND l.product_id ="
                              " p.product_id)")), 0,
              "every product's held is the units of its held holds")


if __name__ == "__main__":
    run_tests(body)
