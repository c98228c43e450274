"""Deliveries are checked against the order (issue 10): a callback claiming more than
was ordered changes nothing, answers 422, and the operators get one over_delivery
email naming the order, what was ordered and claimed, and the command that records a
real over-delivery (`restockctl orders fulfil --over`), which fulfil refuses without
--over; the same holds for a callback stored during an outage (202) and found over
when applied. Less than ordered is applied and recorded short (row and `restockctl
orders`). A quantity key of another case is a clear 400 that changes nothing; a
product whose sku is 32 Hangul characters is called back like any other; a 400 that
quotes input never cuts a character in half. Tokens of the previous key are accepted
while callback_key_previous holds it, refused after."""

import os
import subprocess

from callback import is_error, order_of, post
from harness import BUILDDIR, Stack, run_tests
from inbox import OPERATORS, wait_mails
from replenish_common import REORDER, add_products, orders, outbox, spool_find

HANGUL_SKU = "가나다라마바사아자차카타파하거너더러머버서어저처커터퍼허고노도로"


def delivery(s, order):
    return s.sql_value("SELECT IFNULL(delivery, '') FROM replenishment_order"
                       " WHERE order_id = UNHEX('%s')" % order.replace("-", ""))


def unchanged(t, s, sku, what):
    t.ok(s.stock(sku) == 0 and orders(s, sku)[-1]["status"] == "sent" and
         outbox(s, sku, "stock_arrived") == [],
         "%s: stock, order and outbox unchanged" % what, (s.stock(sku), orders(s, sku)))


def over_alert(t, s, order, claimed):
    got = wait_mails(s, kind="over_delivery", containing=order, to=OPERATORS)
    t.is_(len(got), 1, "the operators get one over_delivery email for %s" % order)
    if got:
        m = got[0]
        t.ok("주문 수량: %d" % REORDER in m.body and "콜백의 입고 수량: %d" % claimed in m.body
             and "restockctl orders fulfil --over %s %d" % (order, claimed) in m.body,
             "it names the order, what was ordered and claimed, and the fulfil command", m.body)


def over_delivery(t, s, sku):
    order, token, body = order_of(t, s, sku)
    r = post(s, order, token, dict(body, MessageAttributeProductCnt=REORDER + 1))
    t.ok(is_error(r, 422), "%d of %d ordered answers 422 with an error" % (REORDER + 1, REORDER),
         r)
    t.ok("%d" % REORDER in r.json().get("error", "") and "%d" % (REORDER + 1) in
         r.json().get("error", ""), "the error says what was ordered and claimed", r.json())
    unchanged(t, s, sku, "over-delivery")
    t.is_([e[1] for e in outbox(s, sku)], ["stock_empty", "delivery_refused"],
          "one delivery_refused event")
    over_alert(t, s, order, REORDER + 1)

    p = s.restockctl("orders", "fulfil", order, str(REORDER + 1))
    lines = p.stderr.strip().splitlines()
    t.ok(p.returncode != 0 and len(lines) == 1 and "--over" in lines[0],
         "restockctl fulfil of more than ordered is refused with a one-line reason", p.stderr)
    unchanged(t, s, sku, "refused fulfil")
    p = s.restockctl("orders", "fulfil", "--over", order, str(REORDER + 1))
    t.ok(p.returncode == 0, "with --over it is recorded", p.stderr)
    t.is_((s.stock(sku), orders(s, sku)[-1]["status"], delivery(s, order)),
          (REORDER + 1, "fulfilled", "over"), "stock, order fulfilled, delivery over")


def stored_over_delivery(t, s, sku):
    order, token, body = order_of(t, s, sku)
    s.stop("db")
    r = post(s, order, token, dict(body, MessageAttributeProductCnt=str(REORDER * 3)))
    t.is_(r.status, 202, "database down: an over-delivery cannot be told yet: 202")
    s.start("db")
    t.ok(s.wait_until(lambda: spool_find(s, "callback", order) == ["done"], 60),
         "database back: the stored callback is handled", spool_find(s, "callback", order))
    unchanged(t, s, sku, "stored over-delivery")
    over_alert(t, s, order, REORDER * 3)


def short_delivery(t, s, sku):
    order, token, body = order_of(t, s, sku)
    lower = {k: v for k, v in body.items() if k != "MessageAttributeProductCnt"}
    lower["messageattributeproductcnt"] = REORDER
    r = post(s, order, token, lower)
    t.ok(is_error(r, 400) and "MessageAttributeProductCnt" in r.json()["error"] and
         "case" in r.json()["error"],
         "a quantity key of another case: a clear 400", r)
    unchanged(t, s, sku, "key of another case")
    t.ok("event=delivery_retry" not in s.log("callback"), "no transaction was even tried")

    r = post(s, order, token, dict(body, MessageAttributeProductCnt="가" * 50))
    error = r.json().get("error", "") if r.status == 400 else ""
    t.ok(is_error(r, 400) and "가" * 13 in error and "\ufffd" not in error,
         "a 400 quoting Hangul input cuts whole characters", r)

    r = post(s, order, token, dict(body, MessageAttributeProductCnt=REORDER - 3))
    t.is_((r.status, r.json().get("delivery"), r.json().get("stock")), (200, "short", REORDER - 3),
          "%d of %d: applied, 200, the answer says short" % (REORDER - 3, REORDER))
    t.is_((s.stock(sku), orders(s, sku)[-1]["delivered"], delivery(s, order)),
          (REORDER - 3, REORDER - 3, "short"), "the order row records a short delivery")
    p = s.restockctl("orders")
    line = [ln for ln in p.stdout.splitlines() if ln.startswith(order)]
    t.ok(line and " short " in line[0], "restockctl orders shows it short", p.stdout)


def hangul_sku(t, s):
    sku = add_products(s, 1, prefix="H")[0]
    s.sql("UPDATE product SET sku = '%s' WHERE sku = '%s'" % (HANGUL_SKU, sku))
    t.is_(len(HANGUL_SKU), 32, "a sku of 32 Hangul characters (96 bytes)")
    order, token, body = order_of(t, s, HANGUL_SKU)
    t.is_(body.get("MessageAttributeProductId"), HANGUL_SKU, "the factory got the whole sku")
    r = post(s, order, token, body)
    t.is_((r.status, r.json().get("sku"), r.json().get("stock")), (200, HANGUL_SKU, REORDER),
          "its callback works: 200, the sku whole, the stock back")


def rotation(t, s, skus):
    old = s.info["CALLBACK_KEY"]
    new = "%064x" % (int(old, 16) ^ 1)
    first, second = (order_of(t, s, sku) for sku in skus)
    s.stop("callback")
    s.start("callback", env={"RESTOCK_CALLBACK_KEY": new, "RESTOCK_CALLBACK_KEY_PREVIOUS": old})
    order, token, body = first
    r = post(s, order, token, body)
    t.is_(r.status, 200, "rotated: a token of the previous key is accepted while"
          " callback_key_previous holds it")
    s.stop("callback")
    s.start("callback", env={"RESTOCK_CALLBACK_KEY": new, "RESTOCK_CALLBACK_KEY_PREVIOUS": ""})
    order, token, body = second
    r = post(s, order, token, body)
    t.ok(is_error(r, 403), "once it is gone, a token of that key is refused: 403", r)
    unchanged(t, s, skus[1], "token of a retired key")

    s.stop("callback")
    s.start("callback")


def refuses_to_start(t, s):
    for program in ("fcgi/restock-callback", "workers/restock-worker"):
        for value, what in (("", "no key"), ("0123abc", "a malformed key")):
            # A spool of its own: the stack's worker holds the stack's.
            env = dict(s.env, RESTOCK_CONFIG=s.info["RESTOCK_CONFIG"], RESTOCK_CALLBACK_KEY=value,
                       RESTOCK_SPOOL_DIR=os.path.join(s.dir, "spool-" + what.replace(" ", "-")))
            p = subprocess.run([os.path.join(BUILDDIR, program)], env=env, capture_output=True,
                               text=True, timeout=60)
            lines = p.stderr.strip().splitlines()
            t.ok(p.returncode != 0 and len(lines) == 1 and "callback_key" in lines[0] and
                 "start_failed" in lines[0] and (value == "" or value not in lines[0]),
                 "%s, %s: refuses to start with a one-line error naming callback_key" %
                 (program, what), p.stderr)


def body(t):
    env = {"RESTOCK_FACTORY_ARGS": "--silent", "RESTOCK_SWEEP_INTERVAL": "1",
           "RESTOCK_BACKOFF_MIN": "1", "RESTOCK_BACKOFF_MAX": "2"}
    with Stack(t, env=env, private_db=True) as s:
        skus = add_products(s, 5)
        over_delivery(t, s, skus[0])
        short_delivery(t, s, skus[1])
        hangul_sku(t, s)
        rotation(t, s, skus[2:4])
        refuses_to_start(t, s)
        stored_over_delivery(t, s, skus[4])


if __name__ == "__main__":
    run_tests(body)
