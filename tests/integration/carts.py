"""Integration test of carts (issue 20 item 1, ../shared/DESIGN.md "Carts and holds",
docs/design.md §4.1) through nginx on the real stack: POST /checkout with lines sells
every line (200, each line's remaining, the rows and sold_total) or none (409 with
"short" on the lines that did not fit, 404 on an unknown sku: the rows unchanged); each
malformed cart is a 400 that changes nothing; a keyed cart replays its answer and a
different cart under its key is a 422; a cart that crosses a product's reorder point
opens its order and the factory receives it, as a one-line sale does; 200 randomised
concurrent carts over 6 overlapping products are each all or nothing, without a 503;
the one-line checkout answers as before."""

import random
import re
import urllib.request
import uuid

from harness import Stack, run_tests
from replenish_common import add_products, factory_requests

DONUT = "CP-502101"
SHELF = "CP-502102"
EMPTY = "CP-502103"
SKUS = [DONUT, SHELF, EMPTY]


def cart(s, lines, key=None, extra=None):
    body = {"lines": lines}
    body.update(extra or {})
    return s.request("POST", "/checkout", body,
                     headers={"Idempotency-Key": key} if key else None)


def rows(s, skus):
    """(stock, sold_total) of each sku, straight from the database."""
    got = {}
    for sku in skus:
        stock, sold = s.sql("SELECT stock, sold_total FROM product WHERE sku = '%s'" % sku)[0]
        got[sku] = (int(stock), int(sold))
    return got


def checkouts_metric(s, result):
    with urllib.request.urlopen(s.info["METRICS_URL"], timeout=10) as r:
        text = r.read().decode()
    m = re.search(r'^restock_checkouts_total\{result="%s"\} (\S+)$' % result, text, re.M)
    return float(m.group(1)) if m else 0.0


def stock_up(s, stocks):
    for sku, n in stocks.items():
        s.sql("UPDATE product SET stock = %d, reorder_point = -1 WHERE sku = '%s'" % (n, sku))


def sold_all(t, s):
    stock_up(s, {DONUT: 10, SHELF: 5, EMPTY: 3})
    before = rows(s, SKUS)
    sold = checkouts_metric(s, "sold")
    r = cart(s, [{"sku": SHELF, "quantity": 2}, {"sku": DONUT, "quantity": 3},
                 {"sku": EMPTY, "quantity": 3}])
    t.is_((r.status, r.json()),
          (200, {"message": "구매 완료!", "lines": [
              {"sku": SHELF, "quantity": 2, "remaining": 3},
              {"sku": DONUT, "quantity": 3, "remaining": 7},
              {"sku": EMPTY, "quantity": 3, "remaining": 0}]}),
          "a cart that fits: 200, every line with what remains, in the request's order")
    after = rows(s, SKUS)
    t.is_({k: (after[k][0], after[k][1] - before[k][1]) for k in SKUS},
          {DONUT: (7, 3), SHELF: (3, 2), EMPTY: (0, 3)},
          "every line's stock taken and counted in sold_total")
    t.is_(checkouts_metric(s, "sold") - sold, 1.0,
          'the cart counts once in restock_checkouts_total{result="sold"}')


def refused(t, s):
    stock_up(s, {DONUT: 10, SHELF: 1, EMPTY: 0})
    before = rows(s, SKUS)
    n = checkouts_metric(s, "refused")
    r = cart(s, [{"sku": DONUT, "quantity": 4}, {"sku": SHELF, "quantity": 2},
                 {"sku": EMPTY, "quantity": 1}])
    t.is_((r.status, r.json()),
          (409, {"message": "구매 실패!", "lines": [
              {"sku": DONUT, "quantity": 4, "remaining": 10},
              {"sku": SHELF, "quantity": 2, "remaining": 1, "short": True},
              {"sku": EMPTY, "quantity": 1, "remaining": 0, "short": True}]}),
          "a cart with lines that do not fit: 409, short on those, each with what remains")
    t.is_(rows(s, SKUS), before, "nothing sold: the rows and sold_total unchanged")
    t.is_(checkouts_metric(s, "refused") - n, 1.0, 'counted once as result="refused"')


def unknown(t, s):
    stock_up(s, {DONUT: 10, SHELF: 5})
    before = rows(s, SKUS)
    r = cart(s, [{"sku": DONUT, "quantity": 1}, {"sku": "NO-SUCH", "quantity": 1},
                 {"sku": SHELF, "quantity": 1}])
    t.is_((r.status, r.json()), (404, {"message": "상품 없음"}),
          "a cart with an unknown sku: 404")
    t.is_(rows(s, SKUS), before, "nothing sold")


def malformed(t, s):
    stock_up(s, {DONUT: 10, SHELF: 5})
    before = rows(s, SKUS)
    line = {"sku": DONUT, "quantity": 1}
    many = [{"sku": "X-%02d" % i, "quantity": 1} for i in range(51)]
    cases = [
        ("no lines", {"lines": []}, "empty"),
        ("51 lines", {"lines": many}, "more than 50"),
        ("a duplicate sku", {"lines": [line, {"sku": SHELF, "quantity": 1}, dict(line)]},
         "named twice"),
        ("the same product in another case",
         {"lines": [line, {"sku": DONUT.lower(), "quantity": 1}]}, "one product"),
        ("quantity 0", {"lines": [{"sku": DONUT, "quantity": 0}]},
         "lines[0]: quantity must be an integer from 1 to 1000, not 0"),
        ("quantity 1001", {"lines": [line, {"sku": SHELF, "quantity": 1001}]},
         "lines[1]: quantity must be"),
        ("quantity a string", {"lines": [{"sku": DONUT, "quantity": "2"}]}, "quantity must be"),
        ("no quantity", {"lines": [{"sku": DONUT}]}, "must have sku and quantity"),
        ("no sku", {"lines": [{"quantity": 1}]}, "must have sku and quantity"),
        ("sku not a string", {"lines": [{"sku": 7, "quantity": 1}]}, "sku must be a string"),
        ("a line not an object", {"lines": [DONUT]}, "must be an object"),
        ("lines not an array", {"lines": {"sku": DONUT, "quantity": 1}}, "must be an array"),
        ("lines null", {"lines": None}, "must be an array"),
        ("lines beside sku", {"lines": [line], "sku": DONUT}, "not both"),
        ("lines beside quantity", {"lines": [line], "quantity": 1}, "not both"),
    ]
    for name, body, says in cases:
        r = s.request("POST", "/checkout", body)
        error = r.json().get("error", "") if r.status == 400 else ""
        t.ok(r.status == 400 and says in error, "%s: 400 saying %r" % (name, says),
             (r.status, r.body))
    t.is_(rows(s, SKUS), before, "the malformed carts changed nothing")


def keyed(t, s):
    stock_up(s, {DONUT: 10, SHELF: 5})
    lines = [{"sku": DONUT, "quantity": 2}, {"sku": SHELF, "quantity": 1}]
    first = cart(s, lines, key="cart-key-0001-anonymous")
    t.is_((first.status, first.headers.get("Idempotent-Replayed")), (200, None),
          "a keyed cart sells")
    again = cart(s, list(reversed(lines)), key="cart-key-0001-anonymous")
    t.is_((again.status, again.body, again.headers.get("Idempotent-Replayed")),
          (200, first.body, "true"),
          "the same lines (in another order) under its key: the stored answer, byte for byte")
    t.is_((s.stock(DONUT), s.stock(SHELF)), (8, 4), "sold once")
    other = cart(s, [{"sku": DONUT, "quantity": 3}, {"sku": SHELF, "quantity": 1}],
                 key="cart-key-0001-anonymous")
    t.is_(other.status, 422, "another cart under the key: 422")
    one = s.request("POST", "/checkout", {"sku": DONUT, "quantity": 2},
                    headers={"Idempotency-Key": "cart-key-0002-anonymous"})
    t.is_(one.status, 200, "a one-line checkout under a key")
    same = cart(s, [{"sku": DONUT, "quantity": 2}], key="cart-key-0002-anonymous")
    t.is_(same.status, 422, "a cart of that one line under its key is another request: 422")
    t.is_((s.stock(DONUT), s.stock(SHELF)), (6, 4), "the 422s sold nothing")
    stock_up(s, {SHELF: 0})
    no = cart(s, [{"sku": DONUT, "quantity": 1}, {"sku": SHELF, "quantity": 1}],
              key="cart-key-0003-anonymous")
    t.is_(no.status, 409, "a keyed cart refused: 409")
    stock_up(s, {SHELF: 5})
    t.is_((cart(s, [{"sku": DONUT, "quantity": 1}, {"sku": SHELF, "quantity": 1}],
                key="cart-key-0003-anonymous").body), no.body,
          "its retry after a restock replays the 409")
    t.is_(s.stock(DONUT), 6, "nothing sold")
    gone = cart(s, [{"sku": "NO-SUCH", "quantity": 1}], key="cart-key-0004-anonymous")
    t.is_(gone.status, 404, "a keyed cart with an unknown sku: 404")
    t.is_(s.sql_value("SELECT COUNT(*) FROM checkout_key WHERE idem_key ="
                      " 'cart-key-0004-anonymous'"), "0", "and not stored")


def reorder(t, s):
    """A cart that takes a product to its reorder point opens its order, and the
    factory receives it, as a one-line sale does."""
    a, b = add_products(s, 2, prefix="CART", stock=6)
    s.sql("UPDATE product SET reorder_point = 2 WHERE sku = '%s'" % a)
    r = cart(s, [{"sku": b, "quantity": 1}, {"sku": a, "quantity": 4}])
    t.is_((r.status, [x["remaining"] for x in r.json().get("lines", [])]), (200, [5, 2]),
          "a cart whose line takes a product to its reorder point sells")
    t.ok(s.wait_until(lambda: len(factory_requests(s, a)) == 1),
         "the product's order reaches the factory")
    t.is_(len(factory_requests(s, b)), 0, "the line above its point ordered nothing")


def concurrent(t, s):
    """200 carts of 1 to 4 lines over 6 products, in random orders, from 16 threads:
    each all or nothing, no 503 (no deadlock left unresolved)."""
    skus = []
    for i in range(6):
        sku = "RND-%d" % i
        s.sql("INSERT INTO product (product_id, sku, name, price, stock, factory_id,"
              " reorder_point) VALUES (UNHEX('%s'), '%s', 'random %d', 100, 120, NULL, -1)"
              % (uuid.uuid4().hex, sku, i))
        skus.append(sku)
    before = rows(s, skus)
    rnd = random.Random(20)
    carts = []
    for _ in range(200):
        chosen = rnd.sample(skus, rnd.randint(1, 4))
        carts.append([{"sku": k, "quantity": rnd.randint(1, 3)} for k in chosen])
    answers = s.concurrently(len(carts), 16,
                             lambda i: ("POST", "/checkout", {"lines": carts[i]}))
    statuses = [a.status for a in answers]
    t.ok(set(statuses) <= {200, 409}, "every cart answered 200 or 409 (no 503)",
         [a.body for a in answers if a.status not in (200, 409)][:3])
    t.ok(statuses.count(200) > 0 and statuses.count(409) > 0,
         "some sold and some refused (the stock ran short)", statuses.count(200))
    taken = {k: 0 for k in skus}
    wrong = []
    for c, a in zip(carts, answers):
        if a.status == 200:
            got = a.json()["lines"]
            if ([(x["sku"], x["quantity"]) for x in got] != [(x["sku"], x["quantity"]) for x in c]
                    or any(x["remaining"] < 0 for x in got)):
                wrong.append(a.body)
            for line in c:
                taken[line["sku"]] += line["quantity"]
    t.is_(wrong, [], "every 200 lists every line of its cart, in its order")
    after = rows(s, skus)
    t.is_({k: before[k][0] - after[k][0] for k in skus}, taken,
          "the stock taken per product is the sum of the sold carts' lines")
    t.is_({k: after[k][1] - before[k][1] for k in skus}, taken, "and so is sold_total's growth")
    t.ok(all(after[k][0] >= 0 for k in skus), "no stock below 0", after)
    for a in answers:
        if a.status == 409:
            short = [x for x in a.json()["lines"] if x.get("short")]
            if not short or any(x["quantity"] <= x["remaining"] for x in short):
                t.ok(False, "a 409 marks short the lines that did not fit", a.body)
                break
    else:
        t.ok(True, "every 409 marks short the lines that did not fit")


def one_line(t, s):
    stock_up(s, {DONUT: 5})
    r = s.request("POST", "/checkout", {"sku": DONUT, "quantity": 2})
    t.is_((r.status, r.json()),
          (200, {"message": "구매 완료! 남은 재고: 3", "sku": DONUT, "remaining": 3}),
          "the one-line checkout answers as before")
    r = s.request("POST", "/checkout")
    t.is_((r.status, r.json().get("remaining")), (200, 2), "and the empty body too")


def body(t):
    # A silent factory: no delivery adds stock behind the test's counts.
    with Stack(t, env={"RESTOCK_FACTORY_ARGS": "--silent"}) as s:
        sold_all(t, s)
        refused(t, s)
        unknown(t, s)
        malformed(t, s)
        keyed(t, s)
        reorder(t, s)
        concurrent(t, s)
        one_line(t, s)


if __name__ == "__main__":
    run_tests(body)
