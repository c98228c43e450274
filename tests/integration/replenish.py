"""Integration test of replenishment on the whole stack (docs/design.md §1 and §3): a
sold-out checkout sends exactly one order, with the exact JSON of the factory API, and
the factory's callback puts the stock back, after which the product sells again; a
surge of 1,000 failed checkouts from 32 clients still makes one order; a worker that
was stopped during the sell-out sends the order once it starts; restockctl status and
orders show all of it."""

import re
from collections import Counter

from harness import Stack, run_tests
from replenish_common import (DONUT, FACTORY, REORDER, UUID_RE, callback_parts,
                              factory_callbacks, factory_requests, header, orders, outbox,
                              sell_out, sim_config, spool_files, token_hash)

SURGE, CLIENTS = 1000, 32


def ad_status(s, sku=DONUT):
    return s.sql_value("SELECT a.status FROM advertisement a JOIN product p ON p.ad_id = a.ad_id"
                       " WHERE p.sku = '%s'" % sku)


def sold_out_round_trip(t, s):
    sim_config(s, delay=2, silent=False)
    for left in (2, 1, 0):
        r = s.request("POST", "/checkout", {"sku": DONUT, "quantity": 1})
        t.is_((r.status, r.json().get("remaining")), (200, left), "checkout sells, %d left" % left)
    r = s.request("POST", "/checkout", {"sku": DONUT, "quantity": 1})
    t.is_(r.status, 409, "the checkout after the last donut answers 409")
    t.is_(r.json(), {"message": "구매 실패! 남은 재고: 0", "sku": DONUT, "remaining": 0,
                     "replenishment": "requested"}, "the 409 says a replenishment is requested")

    got = s.wait_until(lambda: factory_requests(s, DONUT), timeout=30)
    t.is_(len(got), 1, "the factory received one order")
    if not got:
        return
    req = got[0]
    body = req["body"]
    t.is_(req["path"], "/api/manufactures", "POSTed to /api/manufactures")
    t.is_(header(req, "Content-Type"), "application/json", "Content-Type: application/json")
    t.ok(isinstance(body, dict) and sorted(body) == sorted([
        "MessageGroupId", "MessageAttributeProductId", "MessageAttributeProductCnt",
        "MessageAttributeFactoryId", "MessageAttributeRequester", "CallbackUrl"]),
        "the body has exactly the six fields of the factory API", body)
    if not isinstance(body, dict):
        return
    t.is_(body.get("MessageGroupId"), "stock-arrival-group", "MessageGroupId")
    t.is_(body.get("MessageAttributeProductId"), DONUT, "MessageAttributeProductId is the sku")
    cnt = body.get("MessageAttributeProductCnt")
    t.ok(type(cnt) is int and cnt == REORDER,
         "MessageAttributeProductCnt is the number %d (reorder quantity)" % REORDER, repr(cnt))
    t.is_(body.get("MessageAttributeFactoryId"), FACTORY, "MessageAttributeFactoryId")
    t.is_(body.get("MessageAttributeRequester"), "restock",
          "MessageAttributeRequester is the configured requester")
    url = body.get("CallbackUrl", "")
    t.ok(re.fullmatch(re.escape(s.url) + r"/callbacks/factory/" + UUID_RE + r"\?token=[0-9a-f]{64}",
                      url), "CallbackUrl is <public_url>/callbacks/factory/<order>?token=<64 hex>",
         url)
    order_id, token = callback_parts(url)

    rows = orders(s, DONUT)
    t.is_(len(rows), 1, "one order row for the donut")
    if len(rows) != 1:
        return
    t.is_(rows[0]["id"], order_id, "the callback URL names the order")
    t.is_(header(req, "Idempotency-Key"), order_id, "Idempotency-Key is the order id")
    t.is_(rows[0]["quantity"], REORDER, "the order is for the reorder quantity")
    t.is_(rows[0]["token_hash"], token_hash(token or ""),
          "the order stores the token's SHA-256, not the token")
    t.ok(s.wait_until(lambda: orders(s, DONUT)[0]["status"] in ("sent", "fulfilled")),
         "the order is sent")
    t.ok(s.wait_until(lambda: [e[1:] for e in outbox(s, DONUT)] == [("stock_empty", True)]),
         "one stock_empty event, taken", outbox(s, DONUT))
    t.is_(ad_status(s), "0", "the donut's ad is paused while it is sold out")

    t.ok(s.wait_until(lambda: orders(s, DONUT)[0]["status"] == "fulfilled", timeout=30),
         "the callback fulfils the order")
    # The order is fulfilled when the callback commits; the simulator records the
    # answer when it has read it, a moment later.
    answered = lambda: [c["status"] for c in factory_callbacks(s, order_id)]
    t.ok(s.wait_until(lambda: answered() == [200]), "the factory's callback was answered 200",
         answered())
    t.is_(s.stock(DONUT), REORDER, "the stock is back: %d" % REORDER)
    t.is_(orders(s, DONUT)[0]["delivered"], REORDER, "the order records what was delivered")
    t.ok(s.wait_until(lambda: [e[1:] for e in outbox(s, DONUT, "stock_arrived")] ==
                      [("stock_arrived", True)]), "one stock_arrived event, taken")
    t.ok(s.wait_until(lambda: ad_status(s) == "1"), "the ad runs again once stock is back")
    r = s.request("POST", "/checkout", {"sku": DONUT, "quantity": 1})
    t.is_((r.status, r.json().get("remaining")), (200, REORDER - 1), "the next checkout sells")
    t.is_(len(factory_requests(s, DONUT)), 1, "still one order at the factory")


def surge_after_sell_out(t, s, sku):
    # A silent factory never calls back: the stock stays 0 for the whole surge.
    sim_config(s, silent=True)
    s.sql("UPDATE product SET stock = 0 WHERE sku = '%s'" % sku)
    answers = s.concurrently(SURGE, CLIENTS,
                             lambda i: ("POST", "/checkout", {"sku": sku, "quantity": 1}))
    statuses = Counter(r.status for r in answers)
    t.is_(dict(statuses), {409: SURGE}, "all %d checkouts answer 409" % SURGE)
    t.ok(all(r.json().get("replenishment") == "requested" for r in answers if r.status == 409),
         "each says the replenishment is requested")
    t.ok(s.wait_until(lambda: [o["status"] for o in orders(s, sku)] == ["sent"], timeout=30),
         "one order, sent", orders(s, sku))
    t.is_(len(outbox(s, sku, "stock_empty")), 1, "one stock_empty event in the outbox")
    t.is_(len(factory_requests(s, sku)), 1, "exactly one request reached the factory")
    sim_config(s, silent=False)


def worker_stopped(t, s, sku):
    s.stop("worker")
    r = sell_out(s, sku)
    t.is_(r.status, 409, "with the worker stopped the sell-out still answers 409")
    t.is_([o["status"] for o in orders(s, sku)], ["open"], "the order is open")
    t.is_([e[1:] for e in outbox(s, sku)], [("stock_empty", False)],
          "its event waits in the outbox")
    t.is_(factory_requests(s, sku), [], "nothing reached the factory yet")
    s.start("worker")
    t.ok(s.wait_until(lambda: factory_requests(s, sku), timeout=30),
         "once started, the worker sends the order")
    t.ok(s.wait_until(lambda: [o["status"] for o in orders(s, sku)] == ["fulfilled"],
                      timeout=30), "and the callback fulfils it")
    t.is_(s.stock(sku), REORDER, "the stock is back")
    t.is_(len(factory_requests(s, sku)), 1, "the factory received it once")


def restockctl_views(t, s):
    p = s.restockctl("status")
    t.is_(p.returncode, 0, "restockctl status exits 0")
    lines = {ln.split()[0]: ln.split() for ln in p.stdout.splitlines() if ln.strip()}
    heads = lines.get("queue", [])
    factory = dict(zip(heads[1:], lines.get("factory", [])[1:]))
    done = str(len(spool_files(s, "factory", "done")))
    t.ok(factory.get("done") == done and factory.get("dead") == "0",
         "status shows the factory queue's %s done and 0 dead" % done, p.stdout)
    t.ok("orders: " in p.stdout and "fulfilled 2" in p.stdout and "sent 1" in p.stdout,
         "status counts the orders by status (2 fulfilled, 1 sent)", p.stdout)
    p = s.restockctl("orders")
    t.is_(p.returncode, 0, "restockctl orders exits 0")
    for o in orders(s, DONUT) + orders(s, "CP-502102") + orders(s, "CP-502103"):
        line = [ln for ln in p.stdout.splitlines() if ln.startswith(o["id"])]
        t.ok(line and o["status"] in line[0].split(),
             "orders lists %s as %s" % (o["id"], o["status"]), p.stdout)


def body(t):
    env = {"RESTOCK_FACTORY_ARGS": "--delay 1", "RESTOCK_SWEEP_INTERVAL": "1"}
    with Stack(t, env=env) as s:
        sold_out_round_trip(t, s)
        surge_after_sell_out(t, s, "CP-502102")
        worker_stopped(t, s, "CP-502103")
        restockctl_views(t, s)


if __name__ == "__main__":
    run_tests(body)
