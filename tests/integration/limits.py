"""Integration test of customer limits (issue 20 item 3, ../shared/DESIGN.md "Clients
and limits", docs/design.md §4.1) on the real stack: an authenticated API client's
Restock-Customer buys at most a product's max_per_customer units over limit_window:
past it, 409 "reason":"limit" with the limit and nothing sold; another customer, or the
same customer id of another client, is not affected; once the window has passed the
customer buys again; products without a limit and anonymous checkouts answer as
before; a bad or anonymous Restock-Customer is a 400 that sells nothing; 1,000
concurrent checkouts of one customer over 32 connections sell exactly the limit; a
cart with a limited line is refused whole; a keyed limited checkout replays its
answer; `restockctl product set SKU max_per_customer=N` sets it and `restockctl
products` shows it; refusals are counted in restock_checkouts_total{result="limit"}."""

import re
import urllib.request

from harness import Response, Stack, run_tests

DONUT = "CP-502101"
SHELF = "CP-502102"
WINDOW = 2  # limit_window, seconds: the window test waits for it to pass


def add_client(t, s, name):
    p = s.restockctl("client", "add", name)
    t.ok(p.returncode == 0, "restockctl client add %s succeeds" % name, p.stderr)
    m = re.search(r"^(rsk_[A-Za-z0-9_-]{43})$", p.stdout, re.M)
    return m.group(1) if m else "rsk_" + "x" * 43


def headers(client=None, customer=None, key=None):
    h = {}
    if client is not None:
        h["Authorization"] = "Bearer " + client
    if customer is not None:
        h["Restock-Customer"] = customer
    if key is not None:
        h["Idempotency-Key"] = key
    return h


def buy(s, client=None, customer=None, sku=DONUT, quantity=1, key=None, lines=None):
    body = {"lines": lines} if lines is not None else {"sku": sku, "quantity": quantity}
    return s.request("POST", "/checkout", body, headers=headers(client, customer, key))


def checkouts_metric(s, result):
    with urllib.request.urlopen(s.info["METRICS_URL"], timeout=10) as r:
        text = r.read().decode()
    m = re.search(r'^restock_checkouts_total\{result="%s"\} (\S+)$' % result, text, re.M)
    return float(m.group(1)) if m else 0.0


def stock_up(s, sku, stock, limit):
    s.sql("UPDATE product SET stock = %d, sold_total = 0, reorder_point = -1 WHERE sku = '%s'"
          % (stock, sku))
    s.sql("DELETE FROM customer_purchase")
    p = s.restockctl("product", "set", sku, "max_per_customer=%d" % limit)
    return p


def ctl(t, s):
    p = stock_up(s, DONUT, 100, 2)
    t.ok(p.returncode == 0, "restockctl product set SKU max_per_customer=2 succeeds", p.stderr)
    t.ok("max_per_customer=2" in p.stdout, "and says the new setting", p.stdout)
    t.is_(s.sql_value("SELECT max_per_customer FROM product WHERE sku = '%s'" % DONUT), "2",
          "the product row holds it")
    p = s.restockctl("products")
    header = p.stdout.splitlines()[0].split() if p.stdout else []
    line = [dict(zip(header, l.split())) for l in p.stdout.splitlines() if l.startswith(DONUT)]
    t.ok(line and line[0].get("limit") == "2",
         "restockctl products shows it in its limit column", p.stdout)
    p = s.restockctl("product", "set", DONUT, "max_per_customer=-1")
    t.ok(p.returncode != 0 and "max_per_customer" in p.stderr,
         "a negative max_per_customer is refused, saying why", p.stderr)
    t.is_(s.sql_value("SELECT max_per_customer FROM product WHERE sku = '%s'" % DONUT), "2",
          "and changes nothing")


def contract(t, s, a, b):
    stock_up(s, DONUT, 100, 2)
    limit = checkouts_metric(s, "limit")
    r = buy(s, a, "alice", quantity=2)
    t.is_((r.status, r.json().get("remaining")), (200, 98),
          "a customer buys up to the limit (2): 200, as any sale")
    r = buy(s, a, "alice")
    t.is_(r.status, 409, "one more for that customer: 409")
    t.is_(r.json(), {"message": "구매 한도 초과! 남은 재고: 98", "sku": DONUT, "remaining": 98,
                     "reason": "limit", "limit": 2, "allowed": 0},
          "with reason limit, the limit, the units still allowed (0) and the stock remaining")
    t.is_(s.stock(), 98, "nothing sold")
    t.is_(checkouts_metric(s, "limit") - limit, 1.0,
          'the refusal counted in restock_checkouts_total{result="limit"}')
    stock_up(s, DONUT, 100, 3)
    buy(s, a, "alice", quantity=2)
    r = buy(s, a, "alice", quantity=2)
    t.is_((r.status, r.json().get("reason"), r.json().get("allowed")), (409, "limit", 1),
          "2 more over a limit of 3 after 2: 409, allowed 1")
    r = buy(s, a, "alice", quantity=1)
    t.is_(r.status, 200, "and the 1 allowed sells")
    stock_up(s, DONUT, 100, 2)
    buy(s, a, "alice", quantity=2)
    t.is_(buy(s, a, "bob", quantity=2).status, 200, "another customer of the client is not affected")
    t.is_(buy(s, b, "alice", quantity=2).status, 200,
          "the same customer id of another client is another customer")
    t.is_(buy(s, a, sku=DONUT, quantity=3).status, 200,
          "the client's own checkout without a customer is not limited")
    t.is_(buy(s, quantity=3).status, 200, "nor is an anonymous one")
    t.is_(s.stock(), 88, "those sold what they asked for (2+2+2+3+3 of 100)")
    r = buy(s, a, "alice", quantity=3)
    t.is_((r.status, r.json().get("reason")), (409, "limit"),
          "a quantity over the limit alone: 409 limit")
    s.sql("UPDATE product SET stock = 1, reorder_point = -1 WHERE sku = '%s'" % SHELF)
    r = buy(s, a, "alice", sku=SHELF, quantity=1)
    t.is_((r.status, r.json().get("remaining")), (200, 0),
          "a product without a limit sells to a customer as before")
    r = buy(s, a, "alice", sku=SHELF, quantity=1)
    t.is_((r.status, r.json().get("reason")), (409, None),
          "and its sold-out 409 has no reason: not a limit")
    t.is_(buy(s, a, "alice", sku="NO-SUCH-SKU").status, 404, "an unknown sku: 404")


def window(t, s, a):
    # A short window for this test only: the others keep the default (a day), so
    # that a slow machine never sees their windows pass.
    s.stop("sales")
    s.start("sales", env={"RESTOCK_LIMIT_WINDOW": str(WINDOW)})
    stock_up(s, DONUT, 100, 1)
    t.is_(buy(s, a, "carol").status, 200, "limit 1: the first sells")
    t.is_(buy(s, a, "carol").status, 409, "the second, within limit_window: 409")
    # Poll until the window has passed: every refusal before that sells nothing.
    got = []

    def sells():
        r = buy(s, a, "carol")
        got.append(r.status)
        return r.status == 200

    s.wait_until(sells, timeout=30, interval=0.2)
    t.ok(set(got[:-1]) <= {409} and got[-1] == 200,
         "after limit_window (%d s) the customer buys again" % WINDOW, got)
    t.is_(s.stock(), 98, "two units sold in all")
    s.stop("sales")
    s.start("sales")


def bad_header(t, s, a):
    stock_up(s, DONUT, 10, 2)
    bad = checkouts_metric(s, "bad_request")
    r = buy(s, None, "alice")
    t.is_(r.status, 400, "Restock-Customer without a client key: 400")
    t.ok("Restock-Customer" in r.json().get("error", ""), "saying why", r.json())
    for customer, why in (("x" * 65, "65 characters"), ("al ice", "a space"),
                          ("caf\u00e9", "a non-ASCII character")):
        r = s.request("POST", "/checkout", {"sku": DONUT},
                      headers={"Authorization": "Bearer " + a,
                               "Restock-Customer": customer.encode("utf-8").decode("latin-1")})
        t.is_(r.status, 400, "Restock-Customer with %s: 400" % why)
    r = buy(s, a, "x" * 64)
    t.is_(r.status, 200, "64 visible characters are a customer")
    t.is_(s.stock(), 9, "the 400s sold nothing")
    t.is_(checkouts_metric(s, "bad_request") - bad, 4.0, "each counted as a bad request")


def duplicate_header(t, s, a):
    import http.client
    stock_up(s, DONUT, 10, 2)
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
    conn.putrequest("POST", "/checkout")
    for name, value in (("Authorization", "Bearer " + a), ("Restock-Customer", "a"),
                        ("Restock-Customer", "b"), ("Content-Type", "application/json"),
                        ("Content-Length", "2")):
        conn.putheader(name, value)
    conn.endheaders(b"{}")
    r = conn.getresponse()
    s.record("POST", "/checkout", Response(r.status, dict(r.getheaders()), r.read()))
    conn.close()
    t.is_(r.status, 400, "two Restock-Customer headers: 400")
    t.is_(s.stock(), 10, "nothing sold")


def concurrent(t, s, a):
    stock_up(s, DONUT, 5000, 2)
    answers = s.concurrently(1000, 32, lambda i: ("POST", "/checkout", {"sku": DONUT}),
                             headers=headers(a, "dave"))
    statuses = [r.status for r in answers]
    t.is_(statuses.count(200), 2, "1,000 concurrent checkouts of one customer, limit 2: two sell")
    t.ok(statuses.count(409) == 998, "every other one is a 409 (none 503)", sorted(set(statuses)))
    t.ok(all(r.json().get("reason") == "limit" for r in answers if r.status == 409),
         "each with reason limit")
    t.is_(s.stock(), 4998, "exactly 2 units sold")
    t.is_(s.sql_value("SELECT SUM(units) FROM customer_purchase WHERE customer = 'dave'"), "2",
          "and 2 recorded for the customer")


def carts(t, s, a):
    stock_up(s, DONUT, 100, 2)
    s.sql("UPDATE product SET stock = 50, sold_total = 0, reorder_point = -1 WHERE sku = '%s'"
          % SHELF)
    r = buy(s, a, "erin", lines=[{"sku": SHELF, "quantity": 5}, {"sku": DONUT, "quantity": 2}])
    t.is_(r.status, 200, "a cart within the limit sells")
    r = buy(s, a, "erin", lines=[{"sku": SHELF, "quantity": 5}, {"sku": DONUT, "quantity": 1}])
    t.is_((r.status, r.json()),
          (409, {"message": "구매 한도 초과!", "lines": [
              {"sku": SHELF, "quantity": 5, "remaining": 45},
              {"sku": DONUT, "quantity": 1, "remaining": 98, "limit": 2}],
              "reason": "limit", "limit": 2}),
          "a cart with a line over the customer's limit: 409 limit, the line marked")
    t.is_((s.stock(DONUT), s.stock(SHELF)), (98, 45), "the whole cart refused: nothing sold")
    r = buy(s, a, "frank", lines=[{"sku": SHELF, "quantity": 1}, {"sku": DONUT, "quantity": 3}])
    t.is_((r.status, r.json().get("reason")), (409, "limit"),
          "a cart line over the limit alone: 409 limit")
    r = buy(s, lines=[{"sku": SHELF, "quantity": 1}, {"sku": DONUT, "quantity": 3}])
    t.is_(r.status, 200, "the same cart anonymous: not limited")
    r = buy(s, a, "frank", lines=[{"sku": DONUT, "quantity": 1}])
    t.is_(r.status, 200, "a cart's limited line counts for the customer")
    t.is_(buy(s, a, "frank", quantity=2).status, 409, "so a checkout after it hits the limit")


def keyed(t, s, a):
    stock_up(s, DONUT, 100, 2)
    r1 = buy(s, a, "gina", quantity=2, key="limit-key-0001")
    t.is_(r1.status, 200, "a keyed limited checkout sells")
    r2 = buy(s, a, "gina", quantity=2, key="limit-key-0001")
    t.is_((r2.status, r2.body, r2.headers.get("Idempotent-Replayed")), (200, r1.body, "true"),
          "its retry replays the answer, not a limit refusal")
    r3 = buy(s, a, "gina", quantity=1, key="limit-key-0002")
    t.is_((r3.status, r3.json().get("reason")), (409, "limit"), "a new key over the limit: 409")
    r4 = buy(s, a, "gina", quantity=1, key="limit-key-0002")
    t.is_((r4.status, r4.body, r4.headers.get("Idempotent-Replayed")), (409, r3.body, "true"),
          "and that refusal replays too")
    t.is_(s.stock(), 98, "2 sold in all")


def body(t):
    with Stack(t, env={"RESTOCK_FACTORY_ARGS": "--silent"}) as s:
        a = add_client(t, s, "shop-a")
        b = add_client(t, s, "shop-b")
        ctl(t, s)
        contract(t, s, a, b)
        window(t, s, a)
        bad_header(t, s, a)
        duplicate_header(t, s, a)
        carts(t, s, a)
        keyed(t, s, a)
        concurrent(t, s, a)


if __name__ == "__main__":
    run_tests(body)
