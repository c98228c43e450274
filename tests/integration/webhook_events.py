"""Integration test of the webhook events (issue 22, item 2; docs/design.md §4.5 and
§4.14) on the real stack: every outbox kind is written with what it reports, in its
transaction (an order_sent whose insert fails leaves the order unsent, and one
order_sent is written once it is); a hold_expired only while an enabled endpoint
subscribes to hold.expired; the sweep puts one message per webhook type of an event
and enabled endpoint subscribed to it into the spool queue `webhook` (id: the
webhook-id, key: the endpoint, no claim; body: webhook_id, endpoint_id, event_id,
type, payload; payload: type, timestamp, data with event_id and the type's fields),
none for an unsubscribed or disabled endpoint; a second sweep of the same events
makes the same messages (same ids, nothing new). The endpoints are not reachable
(the stack allows no loopback delivery): the messages stay in the spool, waiting or
deferred, where the test reads them."""

import base64
import datetime
import json
import os
import re
import uuid

from harness import Stack, run_tests
from hold_common import expire_now, hold
from replenish_common import (DONUT, as_uuid, factory_requests, sell_out, sim_config,
                              spool_dir, spool_files, spool_read)

TYPES = ["stock.reorder_point", "stock.sold_out", "stock.arrived", "order.opened",
         "order.sent", "order.fulfilled", "order.failed", "order.overdue", "delivery.refused",
         "hold.expired"]
KIND_TYPES = {
    "stock_empty": ["stock.reorder_point", "stock.sold_out", "order.opened"],
    "reorder": ["stock.reorder_point", "order.opened"],
    "sold_out": ["stock.sold_out"],
    "stock_arrived": ["stock.arrived", "order.fulfilled"],
    "delivery_refused": ["delivery.refused"],
    "order_sent": ["order.sent"],
    "order_failed": ["order.failed"],
    "order_overdue": ["order.overdue"],
    "hold_expired": ["hold.expired"],
}
ORDER_FIELDS = {"event_id", "order_id", "product_id", "sku", "product_name"}
DATA_FIELDS = {
    "stock.reorder_point": ORDER_FIELDS | {"quantity"},
    "stock.sold_out": ORDER_FIELDS | {"quantity"},
    "stock.arrived": ORDER_FIELDS | {"quantity"},
    "order.opened": ORDER_FIELDS | {"factory_identifier", "quantity", "reason"},
    "order.sent": ORDER_FIELDS | {"factory_identifier", "quantity", "sent_at"},
    "order.overdue": ORDER_FIELDS | {"factory_identifier", "quantity", "sent_at"},
    "order.failed": ORDER_FIELDS | {"factory_identifier", "quantity", "reason"},
    "order.fulfilled": ORDER_FIELDS | {"factory_identifier", "quantity", "delivered"},
    "delivery.refused": ORDER_FIELDS | {"factory_identifier", "quantity", "claimed", "reason"},
    "hold.expired": {"event_id", "hold_id", "quantity", "expires_at", "lines"},
}
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
OTHER = "CP-502102"  # the reorder point, the sell-out under its order, an over-delivery
FAILING = "CP-502103"  # its order dies at the factory (422)
HELD = "CP-502103"


def webhook_id(event, endpoint, kind_type):
    raw = uuid.UUID(event).bytes + uuid.UUID(endpoint).bytes + bytes([TYPES.index(kind_type)])
    return "msg_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def events(s, kind=None):
    """Every outbox row: dicts of event, kind, order, product, hold, quantity, reason,
    taken, created (microseconds since the epoch, UTC)."""
    rows = s.sql("SELECT HEX(event_id), kind, IFNULL(HEX(order_id), ''),"
                 " IFNULL(HEX(product_id), ''), IFNULL(HEX(hold_id), ''), quantity,"
                 " IFNULL(reason, 'NULL'), taken_at IS NOT NULL,"
                 " CAST(UNIX_TIMESTAMP(created_at) * 1000000 AS SIGNED) FROM outbox"
                 "%s ORDER BY seq" % (" WHERE kind = '%s'" % kind if kind else ""))
    return [{"event": as_uuid(r[0]), "kind": r[1], "order": as_uuid(r[2]) if r[2] else None,
             "product": as_uuid(r[3]) if r[3] else None,
             "hold": as_uuid(r[4]) if r[4] else None, "quantity": int(r[5]), "reason": r[6],
             "taken": r[7] == "1", "created": int(r[8])} for r in rows]


def order_of(s, sku):
    """The product's newest order: (id, status, quantity)."""
    r = s.sql("SELECT HEX(r.order_id), r.status, r.quantity FROM replenishment_order r"
              " JOIN product p ON p.product_id = r.product_id WHERE p.sku = '%s'"
              " ORDER BY r.created_at DESC LIMIT 1" % sku)
    return (as_uuid(r[0][0]), r[0][1], int(r[0][2])) if r else (None, None, None)


def hooks(s):
    """The webhook queue's messages, in whatever state the driver left them (the
    egress guard refuses the loopback endpoints: never delivered): name -> (headers,
    raw body)."""
    got = {}
    for state in ("incoming", "active", "deferred", "dead", "done"):
        for name in spool_files(s, "webhook", state):
            m = spool_read(os.path.join(spool_dir(s, "webhook", state), name))
            if m is not None:
                got[name] = m
    return got


def add_endpoint(t, s, url, *more):
    p = s.restockctl("webhook", "add", url, *more)
    m = re.search(r"^webhook endpoint ([0-9a-f-]{36}) added", p.stdout, re.M)
    t.ok(p.returncode == 0 and m, "webhook add %s %s" % (url, " ".join(more)), p.stderr)
    return m.group(1) if m else None


def all_taken(s):
    return all(e["taken"] for e in events(s))


def test_hold_unheard(t, s):
    r = hold(s, [(HELD, 1)], ttl=60)
    t.is_(r.status, 201, "a hold of one unit, with no endpoint registered")
    hid = r.json().get("hold")
    expire_now(s, [hid])
    t.ok(s.wait_until(lambda: s.sql_value("SELECT status FROM hold WHERE hold_id = UNHEX('%s')"
                                          % hid.replace("-", "")) == "3", timeout=30),
         "  the worker expires it")
    t.is_(events(s, "hold_expired"), [],
          "  no hold_expired row: no enabled endpoint subscribes to hold.expired")


def test_order_sent_atomic(t, s):
    """The order_sent row is written in the transaction that marks the order sent: an
    insert that fails takes the change back with it."""
    # NULL into a NOT NULL column: the insert fails (one statement, no IF block).
    s.sql("CREATE TRIGGER no_sent BEFORE INSERT ON outbox FOR EACH ROW"
          " SET NEW.kind = IF(NEW.kind = 'order_sent', NULL, NEW.kind)")
    t.is_(sell_out(s, DONUT).status, 409, "the donut sells out: its order opens")
    t.ok(s.wait_until(lambda: len(factory_requests(s, DONUT)) >= 1, timeout=30),
         "  the factory took its order (201)")
    t.ok(s.wait_until(lambda: "but marking it sent failed" in s.log("worker"), timeout=30),
         "  marking it sent failed (the event's insert was refused)")
    t.is_((order_of(s, DONUT)[1], events(s, "order_sent")),
          ("open", []), "  so the order is still open and no order_sent row exists")
    s.sql("DROP TRIGGER no_sent")
    t.ok(s.wait_until(lambda: order_of(s, DONUT)[1] == "sent", timeout=60),
         "without the refusal, the next attempt marks it sent")
    sent = events(s, "order_sent")
    t.is_([(e["order"], e["quantity"]) for e in sent], [(order_of(s, DONUT)[0], order_of(s, DONUT)[2])],
          "  with one order_sent row: its order and quantity")


def test_kinds(t, s):
    """Every kind's row, with what it reports."""
    donut_order, _, donut_qty = order_of(s, DONUT)
    t.ok(s.wait_until(lambda: events(s, "order_overdue"), timeout=30),
         "the donut's callback does not come (silent factory): order_overdue written")
    p = s.restockctl("orders", "fulfil", donut_order, str(donut_qty))
    t.ok(p.returncode == 0, "restockctl orders fulfil of the donut's order", p.stderr)
    # The reorder point above 0: the sale that crosses it opens the order on sale.
    stock = s.stock(OTHER)
    s.sql("UPDATE product SET reorder_point = %d WHERE sku = '%s'" % (stock - 1, OTHER))
    t.is_(s.request("POST", "/checkout", {"sku": OTHER, "quantity": 1}).status, 200,
          "a sale crosses %s's reorder point" % OTHER)
    t.ok(s.wait_until(lambda: events(s, "reorder"), timeout=30), "  a reorder row")
    t.is_(sell_out(s, OTHER).status, 409, "then its shelf empties under the order")
    other_order, _, other_qty = order_of(s, OTHER)
    p = s.restockctl("orders", "fulfil", other_order, str(other_qty + 1000))
    t.ok(p.returncode != 0 or "refused" in p.stdout + p.stderr,
         "a delivery of more than was ordered is refused", p.stdout + p.stderr)
    # Fulfilled, so that its callback never becomes overdue later, during the checks.
    p = s.restockctl("orders", "fulfil", other_order, str(other_qty))
    t.ok(p.returncode == 0, "then its order is fulfilled", p.stderr)
    sim_config(s, answer_status=422)
    t.is_(sell_out(s, FAILING).status, 409, "%s sells out; the factory answers 422" % FAILING)
    t.ok(s.wait_until(lambda: events(s, "order_failed"), timeout=60),
         "  its message dies: order_failed written")
    sim_config(s, answer_status=0)
    got = {}
    for e in events(s):
        got.setdefault(e["kind"], []).append(e)
    t.is_(sorted(got), sorted(k for k in KIND_TYPES if k != "hold_expired"),
          "a row of every kind of an order")
    failing_order, status, failing_qty = order_of(s, FAILING)
    t.is_(status, "failed", "  the failing order is failed")
    f = got.get("order_failed", [{}])[0]
    t.ok(f.get("order") == failing_order and f.get("quantity") == failing_qty and
         "422" in f.get("reason", ""), "  order_failed: its order, quantity, and why (422)", f)
    o = [e for e in got.get("order_overdue", []) if e["order"] == donut_order]
    t.ok(len(o) == 1 and o[0].get("quantity") == donut_qty,
         "  order_overdue: once, the donut's order and quantity", o)
    a = sorted((e["order"], e["quantity"]) for e in got.get("stock_arrived", []))
    t.is_(a, sorted([(donut_order, donut_qty), (other_order, other_qty)]),
          "  stock_arrived: one per delivery, its order and the units delivered")
    r = got.get("delivery_refused", [{}])
    t.ok(len(r) == 1 and r[0].get("order") == other_order and r[0].get("quantity") ==
         other_qty + 1000, "  delivery_refused: the claimed quantity", r)
    return got


def test_hold_heard(t, s):
    r = hold(s, [(DONUT, 2)], ttl=60)
    t.is_(r.status, 201, "a hold, while an enabled endpoint subscribes to every type")
    hid = r.json().get("hold")
    lines = r.json().get("lines")
    expire_now(s, [hid])
    t.ok(s.wait_until(lambda: events(s, "hold_expired"), timeout=30),
         "  its expiry writes a hold_expired row")
    e = events(s, "hold_expired")[0]
    t.is_((e["hold"], e["order"], e["product"], e["quantity"]),
          (hid, None, None, sum(x["quantity"] for x in lines)),
          "  with the hold, no order nor product, its units")
    return hid, lines


def check_messages(t, s, endpoints, hid, lines):
    a, b, c = endpoints
    t.ok(s.wait_until(lambda: all_taken(s), timeout=60), "every event is taken by a sweep")
    want = {}
    for e in events(s):
        for kt in KIND_TYPES[e["kind"]]:
            for ep, subscribed in ((a, True), (b, kt == "order.sent"), (c, False)):
                if subscribed:
                    want[webhook_id(e["event"], ep, kt)] = (e, ep, kt)
    # The driver moves them between folders (a retry takes one from deferred/
    # back to active/): a listing may pass one by; read until one sees them all.
    s.wait_until(lambda: sorted(hooks(s)) == sorted(want), timeout=30)
    msgs = hooks(s)
    t.is_(sorted(msgs), sorted(want),
          "the queue webhook holds one message per type of every event for A (every type), "
          "per order.sent for B, none for C (disabled)")
    bad = []
    for name, (headers, raw) in msgs.items():
        if name not in want:
            continue
        e, ep, kt = want[name]
        body = json.loads(raw)
        payload = json.loads(body.get("payload", "null"))
        data = payload.get("data", {}) if isinstance(payload, dict) else {}
        created = datetime.datetime.fromtimestamp(e["created"] / 1e6, datetime.timezone.utc)
        checks = [
            headers.get("id") == name,
            headers.get("key") == ep,
            headers.get("claim", "0") == "0",
            body.get("webhook_id") == name,
            body.get("endpoint_id") == ep,
            body.get("event_id") == e["event"],
            body.get("type") == kt,
            isinstance(body.get("payload"), str),
            payload.get("type") == kt,
            STAMP.match(payload.get("timestamp", "")) is not None,
            payload.get("timestamp") == created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            set(data) == DATA_FIELDS[kt],
            data.get("event_id") == e["event"],
        ]
        if kt != "hold.expired":
            checks += [data.get("order_id") == e["order"], data.get("product_id") == e["product"],
                       isinstance(data.get("sku"), str) and data["sku"].startswith("CP-")]
        if kt in ("stock.reorder_point", "stock.sold_out", "stock.arrived", "order.sent",
                  "order.overdue", "order.failed", "order.opened"):
            checks.append(data.get("quantity") == e["quantity"])
        if kt == "order.fulfilled":
            checks.append(data.get("delivered") == e["quantity"])
        if kt == "delivery.refused":
            checks.append(data.get("claimed") == e["quantity"] and
                          data.get("quantity") < e["quantity"])
        if kt == "order.failed":
            checks.append(data.get("reason") == e["reason"])
        if kt == "order.opened":
            checks.append(data.get("reason") == ("sold_out" if e["kind"] == "stock_empty"
                                                 else "reorder_point"))
        if kt in ("order.sent", "order.overdue"):
            checks.append(STAMP.match(data.get("sent_at") or "") is not None)
        if kt == "hold.expired":
            checks += [data.get("hold_id") == hid, data.get("quantity") == e["quantity"],
                       [(x["sku"], x["quantity"]) for x in data.get("lines", [])] ==
                       [(x["sku"], x["quantity"]) for x in lines],
                       STAMP.match(data.get("expires_at") or "") is not None]
        if not all(checks):
            bad.append((name, kt, [i for i, c in enumerate(checks) if not c], body))
    t.ok(not bad, "each message: id and key (the endpoint), no claim; its body and payload "
         "(type, timestamp of the event in UTC, data with event_id and the type's fields)",
         bad[:3])
    return msgs


def test_resweep(t, s, before):
    """Events made untaken again are swept again: the same messages (a put of an id
    the spool has is a no-op)."""
    t.ok(s.wait_until(lambda: s.sql_value("SELECT COUNT(*) FROM outbox_claim WHERE done_at IS"
                                          " NULL") == "0", timeout=60),
         "every claim of the events has ended")
    s.sql("UPDATE outbox SET taken_at = NULL")
    t.ok(s.wait_until(lambda: all_taken(s), timeout=60),
         "events made untaken again (a take cut off) are taken again by the next sweep")
    s.wait_until(lambda: sorted(hooks(s)) == sorted(before), timeout=30)
    after = hooks(s)
    t.is_(sorted(after), sorted(before), "  the same webhook messages, nothing more")
    t.ok(all(after[n][1] == before[n][1] for n in before), "  with the same bodies")


def body(t):
    env = {"RESTOCK_SWEEP_INTERVAL": "1", "RESTOCK_WATCH_INTERVAL": "1",
           "RESTOCK_CALLBACK_TIMEOUT": "2"}
    with Stack(t, env=env) as s:
        sim_config(s, silent=True)
        test_hold_unheard(t, s)
        a = add_endpoint(t, s, "https://a.example/hooks")
        b = add_endpoint(t, s, "https://b.example/hooks", "--events", "order.sent")
        c = add_endpoint(t, s, "https://c.example/hooks")
        p = s.restockctl("webhook", "disable", c)
        t.ok(p.returncode == 0, "endpoint C disabled", p.stderr)
        test_order_sent_atomic(t, s)
        test_kinds(t, s)
        hid, lines = test_hold_heard(t, s)
        msgs = check_messages(t, s, (a, b, c), hid, lines)
        test_resweep(t, s, msgs)


if __name__ == "__main__":
    run_tests(body)
