"""Integration test of the factory's callback, POST /callbacks/factory/{order}?token=…,
sent straight to nginx the way the legacy factory sends it: the first good callback
adds the delivered quantity once and fulfils the order; a repeated one, ten identical
ones at once, or the simulator's duplicate callbacks answer 200 and change nothing
more; a forged, missing or malformed token answers 403, an unknown order 404, a
malformed body 400, another method 405, all without touching stock or order. The
quantity may be a number or a numeric string ("10")."""

import concurrent.futures
import json
import uuid

from harness import Stack, run_tests
from replenish_common import (REORDER, callback_parts, factory_callbacks, factory_requests,
                              orders, outbox, sell_out, sim_config)

A, B, C = "CP-502101", "CP-502102", "CP-502103"


def order_of(t, s, sku):
    """Sells sku out and returns (order id, token, the factory's request body) once the
    factory has the order."""
    r = sell_out(s, sku)
    t.is_(r.status, 409, "%s sold out" % sku)
    got = s.wait_until(lambda: factory_requests(s, sku), timeout=30)
    t.ok(got, "the factory received the order of %s" % sku)
    if not got:
        raise RuntimeError("no factory order for %s" % sku)
    body = got[0]["body"]
    order_id, token = callback_parts(body["CallbackUrl"])
    t.ok(s.wait_until(lambda: orders(s, sku)[-1]["status"] == "sent"), "%s's order is sent" % sku)
    return order_id, token, body


def post(s, order_id, token, body, method="POST"):
    path = "/callbacks/factory/%s" % order_id
    if token is not None:
        path += "?token=" + token
    return s.request(method, path, body)


def is_error(r, status):
    try:
        return r.status == status and isinstance(r.json().get("error"), str)
    except ValueError:
        return False


def unchanged(t, s, sku, stock, what):
    t.ok(s.stock(sku) == stock and orders(s, sku)[-1]["status"] == "sent" and
         outbox(s, sku, "stock_arrived") == [],
         "%s: stock, order and outbox unchanged" % what,
         (s.stock(sku), orders(s, sku)[-1], outbox(s, sku)))


def refusals(t, s):
    order_id, token, body = order_of(t, s, A)
    stock = s.stock(A)
    t.is_(stock, 0, "the stock is 0 before any callback")

    forged = uuid.uuid4().hex + uuid.uuid4().hex
    r = post(s, order_id, forged, body)
    t.ok(is_error(r, 403), "a forged token answers 403 with an error", r)
    unchanged(t, s, A, stock, "forged token")
    r = post(s, order_id, token.upper(), body)
    t.ok(is_error(r, 403), "the token in upper case is another token: 403", r)
    r = post(s, order_id, None, body)
    t.ok(is_error(r, 403), "a missing token answers 403", r)
    r = post(s, order_id, token[:-1], body)
    t.ok(is_error(r, 403), "a token one digit short answers 403", r)
    r = post(s, order_id, "", body)
    t.ok(is_error(r, 403), "an empty token answers 403", r)
    unchanged(t, s, A, stock, "missing or malformed tokens")

    r = post(s, str(uuid.uuid4()), token, body)
    t.ok(is_error(r, 404), "an unknown order answers 404", r)
    r = post(s, "not-an-order", token, body)
    t.ok(is_error(r, 404), "a path that names no order answers 404", r)
    # nginx decodes %XX: the 404 used to echo these bytes, which are not UTF-8.
    r = post(s, order_id + "%C3%28%FF", token, body)
    t.ok(is_error(r, 400) and r.json()["error"].startswith("the request path is not valid UTF-8"),
         "a path that is not UTF-8 once decoded answers 400 saying so", r)

    for method in ("GET", "PUT", "DELETE"):
        r = post(s, order_id, token, None if method != "PUT" else body, method=method)
        t.ok(is_error(r, 405), "%s answers 405" % method, r)

    bad = [("not JSON", "MessageAttributeProductCnt=10"),
           ("a JSON array", [body]),
           ("a JSON string", "\"10\""),
           ("an empty body", ""),
           ("MessageAttributeProductCnt missing",
            {k: v for k, v in body.items() if k != "MessageAttributeProductCnt"}),
           ("MessageAttributeProductCnt 0", dict(body, MessageAttributeProductCnt=0)),
           ("MessageAttributeProductCnt -1", dict(body, MessageAttributeProductCnt=-1)),
           ("MessageAttributeProductCnt \"abc\"", dict(body, MessageAttributeProductCnt="abc")),
           ("MessageAttributeProductCnt 1.5", dict(body, MessageAttributeProductCnt=1.5)),
           ("MessageAttributeProductCnt \"1.5\"", dict(body, MessageAttributeProductCnt="1.5")),
           ("MessageAttributeProductCnt null", dict(body, MessageAttributeProductCnt=None)),
           ("MessageAttributeProductCnt true", dict(body, MessageAttributeProductCnt=True)),
           ("MessageAttributeProductCnt too big (100001)",
            dict(body, MessageAttributeProductCnt=100001)),
           ("MessageAttributeProductCnt 1e30", dict(body, MessageAttributeProductCnt=1e30)),
           ("MessageAttributeProductCnt 9.9999999999999999",
            json.dumps(dict(body, MessageAttributeProductCnt="@")).replace(
                '"@"', "9.9999999999999999")),
           ("another product's id", dict(body, MessageAttributeProductId=B))]
    for what, data in bad:
        if not isinstance(data, str):
            data = json.dumps(data)
        r = post(s, order_id, token, data)
        t.ok(is_error(r, 400), "%s answers 400 with an error" % what, r)
    unchanged(t, s, A, stock, "malformed bodies")

    # The legacy factory sends every field as a string or a number alike.
    r = post(s, order_id, token, dict(body, MessageAttributeProductCnt=str(REORDER)))
    t.is_(r.status, 200, "the quantity as the numeric string \"%d\" is accepted: 200" % REORDER)
    t.is_((r.json().get("status"), r.json().get("stock")), ("fulfilled", REORDER),
          "the answer says fulfilled, stock %d" % REORDER)
    t.is_(s.stock(A), REORDER, "the stock grew by %d" % REORDER)
    rows = orders(s, A)
    t.is_((rows[-1]["status"], rows[-1]["delivered"]), ("fulfilled", REORDER),
          "the order is fulfilled with the quantity delivered")
    t.is_(len(outbox(s, A, "stock_arrived")), 1, "one stock_arrived event")

    r = post(s, order_id, token, body)
    t.is_((r.status, r.json().get("status")), (200, "fulfilled"),
          "a repeated callback answers 200, fulfilled")
    r = post(s, order_id, token, dict(body, MessageAttributeProductCnt=99))
    t.is_(r.status, 200, "a repeated callback with another quantity answers 200 too")
    t.is_(s.stock(A), REORDER, "the stock changed once")
    t.is_(len(outbox(s, A, "stock_arrived")), 1, "still one stock_arrived event")
    r = post(s, order_id, forged, body)
    t.ok(is_error(r, 403), "a forged token on a fulfilled order still answers 403", r)
    t.is_(s.stock(A), REORDER, "and changes nothing")


def concurrent_callbacks(t, s):
    order_id, token, body = order_of(t, s, B)
    path = "/callbacks/factory/%s?token=%s" % (order_id, token)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda i: s.request("POST", path, body), range(10)))
    t.is_([r.status for r in answers], [200] * 10, "10 identical callbacks at once: all 200")
    fresh = [r for r in answers if r.json().get("delivered") == REORDER]
    t.is_(len(fresh), 1, "exactly one of them delivered the stock")
    t.is_(s.stock(B), REORDER, "the stock changed exactly once")
    t.is_([o["status"] for o in orders(s, B)], ["fulfilled"], "the order is fulfilled")
    t.is_(len(outbox(s, B, "stock_arrived")), 1, "one stock_arrived event")


def simulator_duplicates(t, s):
    # The simulator itself sends each callback 5 times at once.
    sim_config(s, silent=False, delay=0.2, duplicate_callbacks=5)
    r = sell_out(s, C)
    t.is_(r.status, 409, "%s sold out" % C)
    t.ok(s.wait_until(lambda: [o["status"] for o in orders(s, C)] == ["fulfilled"], timeout=30),
         "the factory's callback fulfils the order")
    order_id = orders(s, C)[0]["id"]
    cbs = s.wait_until(lambda: len(factory_callbacks(s, order_id)) == 5 and
                       factory_callbacks(s, order_id), timeout=30)
    t.is_([c["status"] for c in cbs or []], [200] * 5, "the factory's 5 copies all got 200")
    t.is_(s.stock(C), REORDER, "the stock changed exactly once")
    t.is_(len(outbox(s, C, "stock_arrived")), 1, "one stock_arrived event")


def body(t):
    env = {"RESTOCK_FACTORY_ARGS": "--silent --delay 0.2", "RESTOCK_SWEEP_INTERVAL": "1"}
    with Stack(t, env=env) as s:
        refusals(t, s)
        concurrent_callbacks(t, s)
        simulator_duplicates(t, s)


if __name__ == "__main__":
    run_tests(body)
