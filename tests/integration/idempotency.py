"""Integration test of the checkout's Idempotency-Key (issue 14, docs/design.md §4.1)
on the real stack: the same key and request twice sells once and answers the same
status and body, byte for byte, the second time with Idempotent-Replayed: true; the
same key with another request is a 422 that changes nothing; 20 concurrent requests
with one key sell once and all answer the same; a 409 is replayed as it was, even
after a restock, while a 404 is not stored and is asked again; bad keys answer 400 and sell nothing; the database killed
between two requests: a key whose checkout committed is answered what it was, a key
answered 503 runs afresh, as does one whose sale timed out on a row lock after its
key was inserted; a keyed sale that crosses the reorder point opens one order,
a keyed refusal on an empty shelf opens it in the same transaction; a checkout
without the header is what it was; the worker deletes keys past their retention, and
a key reused after that is a new checkout."""

import re
import subprocess
import threading
import urllib.request

from harness import Stack, run_tests

DONUT = "CP-502101"
SHELF = "CP-502102"
EMPTY = "CP-502103"


def keyed(s, key, body=None, sku=DONUT, quantity=1):
    if body is None:
        body = {"sku": sku, "quantity": quantity}
    return s.request("POST", "/checkout", body, headers={"Idempotency-Key": key})


def sold_total(s, sku=DONUT):
    return int(s.sql_value("SELECT sold_total FROM product WHERE sku = '%s'" % sku))


def keys_stored(s):
    return int(s.sql_value("SELECT COUNT(*) FROM checkout_key"))


def open_orders(s, sku):
    return int(s.sql_value(
        "SELECT COUNT(*) FROM replenishment_order r JOIN product p"
        " ON p.product_id = r.product_id WHERE p.sku = '%s' AND r.status <> 'fulfilled'" % sku))


def replayed(r):
    return r.headers.get("Idempotent-Replayed")


def checkouts_metric(s, result):
    with urllib.request.urlopen(s.info["METRICS_URL"], timeout=10) as r:
        text = r.read().decode()
    m = re.search(r'^restock_checkouts_total\{result="%s"\} (\S+)$' % result, text, re.M)
    return float(m.group(1)) if m else None


def same_key_twice(t, s):
    s.sql("UPDATE product SET stock = 10, reorder_point = 0 WHERE sku = '%s'" % DONUT)
    before = sold_total(s)
    first = keyed(s, "order-1001-anonymous", {"sku": DONUT, "quantity": 2})
    t.is_((first.status, first.json()),
          (200, {"message": "구매 완료! 남은 재고: 8", "sku": DONUT, "remaining": 8}),
          "a keyed checkout sells: 200 with what it left")
    t.is_(replayed(first), None, "the first answer is not marked replayed")
    again = keyed(s, "order-1001-anonymous", {"sku": DONUT, "quantity": 2})
    t.is_(again.status, 200, "the same key and request again answers 200")
    t.is_(again.body, first.body, "with the same body, byte for byte")
    t.is_(replayed(again), "true", "and Idempotent-Replayed: true")
    t.is_((s.stock(), sold_total(s) - before), (8, 2), "sold once: stock 8, sold_total +2")
    # The fingerprint is of the request as parsed: spacing, field order, unknown
    # fields and the quoted form of the key do not make it another request.
    spaced = keyed(s, '"order-1001-anonymous"', '{ "quantity" : 2 ,"sku":"%s", "x": 1 }' % DONUT)
    t.is_((spaced.status, spaced.body, replayed(spaced)), (200, first.body, "true"),
          'the key quoted ("order-1001-anonymous") and the JSON spelled otherwise: the same replay')
    t.is_(s.stock(), 8, "still sold once")
    other = keyed(s, "order-1001-anonymous", {"sku": DONUT, "quantity": 3})
    t.is_(other.status, 422, "the same key with another quantity answers 422")
    t.ok("another checkout" in other.json().get("error", ""), "with an error saying why",
         other)
    other = keyed(s, "order-1001-anonymous", {"sku": SHELF, "quantity": 2})
    t.is_(other.status, 422, "the same key with another sku answers 422")
    t.is_((s.stock(), s.stock(SHELF) >= 0, sold_total(s) - before), (8, True, 2),
          "and nothing changed")
    t.is_(keyed(s, "order-1001-anonymous", {"sku": DONUT, "quantity": 2}).body, first.body,
          "the key still replays its own answer")
    t.is_(keyed(s, "ORDER-1001-anonymous", {"sku": DONUT, "quantity": 2}).status, 200,
          "keys are case-sensitive: ORDER-1001 is another key, and sells")
    t.is_(s.stock(), 6, "stock 6")
    t.is_(checkouts_metric(s, "replayed"), 3.0, 'restock_checkouts_total{result="replayed"} 3')
    t.is_(checkouts_metric(s, "key_mismatch"), 2.0,
          'restock_checkouts_total{result="key_mismatch"} 2')


def concurrent_duplicates(t, s):
    s.sql("UPDATE product SET stock = 50 WHERE sku = '%s'" % DONUT)
    before = sold_total(s)
    answers = [None] * 20
    start = threading.Barrier(20)

    def client(i):
        start.wait()
        answers[i] = keyed(s, "burst-key-1-anonymous", {"sku": DONUT, "quantity": 1})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    t.ok(all(a is not None for a in answers), "20 concurrent requests with one key answered")
    answers = [a for a in answers if a is not None]
    t.is_(sorted(set((a.status, a.body) for a in answers)),
          [(200, answers[0].body)], "all 200 with the same body")
    t.is_(answers[0].json().get("remaining"), 49, "the one sale's")
    t.is_(sorted(replayed(a) or "-" for a in answers), ["-"] + ["true"] * 19,
          "19 of them replayed")
    t.is_((s.stock(), sold_total(s) - before), (49, 1), "one sale: stock 49, sold_total +1")


def refusals_replay(t, s):
    # A 409 short of the quantity, while stock is left: no replenishment.
    s.sql("UPDATE product SET stock = 2, reorder_point = 0 WHERE sku = '%s'" % SHELF)
    first = keyed(s, "short-1-anonymous", sku=SHELF, quantity=5)
    t.is_((first.status, first.json()),
          (409, {"message": "구매 실패! 남은 재고: 2", "sku": SHELF, "remaining": 2}),
          "a keyed checkout of more than is left answers 409")
    s.sql("UPDATE product SET stock = 100 WHERE sku = '%s'" % SHELF)
    again = keyed(s, "short-1-anonymous", sku=SHELF, quantity=5)
    t.is_((again.status, again.body, replayed(again)), (409, first.body, "true"),
          "after a restock the same key still answers that 409, replayed")
    t.is_(s.stock(SHELF), 100, "and sells nothing")
    t.is_(keyed(s, "short-2-anonymous", sku=SHELF, quantity=5).status, 200,
          "a new key for the same request sells")

    missing = keyed(s, "missing-1-anonymous", sku="NO-SUCH-SKU")
    t.is_((missing.status, missing.json()), (404, {"message": "상품 없음"}),
          "a keyed checkout of an unknown sku answers 404")
    t.is_(s.sql_value("SELECT COUNT(*) FROM checkout_key"
                      " WHERE idem_key = 'missing-1-anonymous'"), "0",
          "a 404 is not stored: it sold and changed nothing (issue 18)")
    again = keyed(s, "missing-1-anonymous", sku="NO-SUCH-SKU")
    t.is_((again.status, again.body, replayed(again)), (404, missing.body, None),
          "its retry is asked again, and answers the same 404")


def bad_keys(t, s):
    s.sql("UPDATE product SET stock = 10 WHERE sku = '%s'" % DONUT)
    before, stored = sold_total(s), keys_stored(s)
    for value, what in (("", "an empty key"), ("k" * 256, "a key of 256 characters"),
                        ("a\x01b", "a key with a control character"),
                        ("a\x7fb", "a key with DEL"), ("a b", "a bare key with a space"),
                        ('"', "a lone quote"), ('"abc', "a quote not closed"),
                        ('"a\\nb"', "a quoted key with an unknown escape"),
                        ('"abc";x', "text after the closing quote"),
                        ('""', "an empty quoted key")):
        r = keyed(s, value)
        t.is_(r.status, 400, "%s answers 400" % what)
        t.ok("Idempotency-Key" in r.json().get("error", ""), "naming the header", r)
    r = s.request("POST", "/checkout", {"sku": DONUT},
                  headers={"Idempotency-Key": "caf\u00e9".encode("latin-1")})
    t.is_(r.status, 400, "a key with a byte above ASCII answers 400")
    t.is_((s.stock(), sold_total(s) - before, keys_stored(s) - stored), (10, 0, 0),
          "nothing sold, no key stored")
    r = keyed(s, "k" * 255)
    t.is_(r.status, 200, "a key of 255 characters is taken")
    r = keyed(s, '"with space and \\"quote\\""')
    t.is_(r.status, 200, "a quoted key may hold spaces and escaped quotes")
    r = keyed(s, "bad-body-anonymous", "{not json")
    t.is_(r.status, 400, "a keyed checkout with a malformed body answers 400")
    t.is_(s.sql_value("SELECT COUNT(*) FROM checkout_key"
                      " WHERE idem_key = 'bad-body-anonymous'"), "0",
          "and its key is not stored: a 400 is answered before it")


def database_killed(t, s):
    s.sql("UPDATE product SET stock = 20 WHERE sku = '%s'" % DONUT)
    first = keyed(s, "before-outage-anonymous")
    t.is_((first.status, first.json().get("remaining")), (200, 19), "a keyed sale: 200")
    s.kill("db")
    down = keyed(s, "before-outage-anonymous")
    t.is_(down.status, 503, "database killed: its retry answers 503")
    t.is_(down.headers.get("Retry-After"), "5", "with Retry-After")
    fresh = keyed(s, "during-outage-anonymous")
    t.is_(fresh.status, 503, "a new key answers 503 too")
    s.start("db")
    again = keyed(s, "before-outage-anonymous")
    t.is_((again.status, again.body, replayed(again)), (200, first.body, "true"),
          "database back: the committed checkout's key answers its 200, remaining 19")
    t.is_(s.stock(), 19, "and sells nothing more")
    retry = keyed(s, "during-outage-anonymous")
    t.is_((retry.status, retry.json().get("remaining"), replayed(retry)), (200, 18, None),
          "the key answered 503 stored nothing: its retry runs afresh and sells")
    again = keyed(s, "during-outage-anonymous")
    t.is_((again.status, again.body), (200, retry.body), "and is replayed from then on")
    t.is_(s.stock(), 18, "one sale each")


def sale_times_out(t, s):
    """The sale's UPDATE waits on a row lock held by another session past
    db_timeout: 503. The batch's transaction was sent whole, its commit with it
    (one round trip): when the lock goes, the server may finish it, or the
    connection's end may roll it back. Either way the key answers one sale: its
    retry replays the committed sale, or runs afresh and sells."""
    s.sql("UPDATE product SET stock = 7 WHERE sku = '%s'" % DONUT)
    locker = subprocess.Popen(
        ["mariadb", "--no-defaults", "-S", s.info["DB_SOCKET"], "-u", s.info["DB_USER"],
         "-p" + s.info["DB_PASSWORD"], "-N", "-B", "--unbuffered", s.info["DB_NAME"]],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    locker.stdin.write("BEGIN; SELECT stock FROM product WHERE sku = '%s' FOR UPDATE;\n" % DONUT)
    locker.stdin.flush()
    t.is_(locker.stdout.readline().strip(), "7", "another session holds the donut's row lock")
    r = keyed(s, "stuck-1-anonymous")
    t.is_(r.status, 503, "a keyed checkout whose sale waits past db_timeout answers 503")
    locker.stdin.write("ROLLBACK;\n")
    locker.stdin.close()
    locker.wait()
    stored = s.sql_value("SELECT COUNT(*) FROM checkout_key"
                         " WHERE idem_key = 'stuck-1-anonymous'")
    t.is_((stored, s.stock()), ("1", 6) if stored == "1" else ("0", 7),
          "its key is stored with its sale, or neither is")
    retry = keyed(s, "stuck-1-anonymous")
    t.is_((retry.status, retry.json().get("remaining"), replayed(retry)),
          (200, 6, "true" if stored == "1" else None),
          "its retry replays the sale, or runs afresh and sells")
    t.is_(s.stock(), 6, "once")


def reorder_point(t, s):
    s.sql("UPDATE product SET stock = 3, reorder_point = 1 WHERE sku = '%s'" % SHELF)
    s.sql("DELETE o FROM outbox o JOIN product p ON p.product_id = o.product_id"
          " WHERE p.sku = '%s'" % SHELF)
    s.sql("UPDATE replenishment_order r JOIN product p ON p.product_id = r.product_id"
          " SET r.status = 'fulfilled', r.open_product_id = NULL WHERE p.sku = '%s'" % SHELF)
    r = keyed(s, "cross-1-anonymous", sku=SHELF, quantity=2)
    t.is_((r.status, r.json().get("remaining")), (200, 1),
          "a keyed sale that takes the stock to the reorder point sells")
    t.is_(open_orders(s, SHELF), 1, "and opens one order")
    t.is_(keyed(s, "cross-1-anonymous", sku=SHELF, quantity=2).body, r.body, "its retry replays")
    t.is_((open_orders(s, SHELF), s.stock(SHELF)), (1, 1), "still one order, stock 1")

    # The first version's policy (reorder_point -1): the order is opened by a
    # checkout turned away from the empty shelf, here inside the keyed
    # checkout's transaction.
    s.sql("UPDATE product SET stock = 0, reorder_point = -1 WHERE sku = '%s'" % EMPTY)
    s.sql("UPDATE replenishment_order r JOIN product p ON p.product_id = r.product_id"
          " SET r.status = 'fulfilled', r.open_product_id = NULL WHERE p.sku = '%s'" % EMPTY)
    r = keyed(s, "empty-1-anonymous", sku=EMPTY)
    t.is_((r.status, r.json().get("replenishment")), (409, "requested"),
          "a keyed checkout turned away from an empty shelf: 409, replenishment requested")
    t.is_(open_orders(s, EMPTY), 1, "the order is open")
    again = keyed(s, "empty-1-anonymous", sku=EMPTY)
    t.is_((again.status, again.body), (409, r.body), "its retry replays the 409")
    t.is_(open_orders(s, EMPTY), 1, "and opens nothing more")
    turned = s.sql_value("SELECT r.turned_away FROM replenishment_order r JOIN product p"
                         " ON p.product_id = r.product_id WHERE p.sku = '%s'"
                         " AND r.status <> 'fulfilled'" % EMPTY)
    t.is_(turned, "1", "the customer is counted turned away once, not per retry")


def unkeyed(t, s):
    s.sql("UPDATE product SET stock = 10 WHERE sku = '%s'" % DONUT)
    stored = keys_stored(s)
    a = s.request("POST", "/checkout", {"sku": DONUT, "quantity": 1})
    b = s.request("POST", "/checkout", {"sku": DONUT, "quantity": 1})
    t.is_([(x.status, x.json().get("remaining")) for x in (a, b)], [(200, 9), (200, 8)],
          "without the header, two checkouts are two sales")
    t.is_((replayed(a), replayed(b)), (None, None), "neither is marked replayed")
    t.is_(keys_stored(s), stored, "and no key is stored")


def retention(t, s):
    s.sql("UPDATE product SET stock = 10 WHERE sku = '%s'" % DONUT)
    r = keyed(s, "old-key-anonymous")
    t.is_((r.status, r.json().get("remaining")), (200, 9), "a keyed sale")
    s.sql("UPDATE checkout_key SET created_at = NOW(6) - INTERVAL 2 DAY"
          " WHERE idem_key IN ('old-key-anonymous', 'order-1001-anonymous')")
    t.ok(s.wait_until(lambda: s.sql_value(
        "SELECT COUNT(*) FROM checkout_key WHERE idem_key = 'order-1001-anonymous'") == "0",
        timeout=60),
        "the worker deletes a key older than idempotency_retention")
    t.ok("event=keys_pruned" in s.log("worker"), "and logs how many")
    t.ok(int(s.sql_value("SELECT COUNT(*) FROM checkout_key")) > 0, "younger keys stay")
    r = keyed(s, "old-key-anonymous")
    t.is_((r.status, r.json().get("remaining"), replayed(r)), (200, 8, None),
          "a key reused after its retention is a new checkout")


def body(t):
    # A short db_timeout (the default is 30 s, longer than a Galera failover) so
    # that sale_times_out's wait on a row lock ends well within the client's.
    with Stack(t, env={"RESTOCK_DB_TIMEOUT": "5"}, private_db=True) as s:
        same_key_twice(t, s)
        concurrent_duplicates(t, s)
        refusals_replay(t, s)
        bad_keys(t, s)
        reorder_point(t, s)
        unkeyed(t, s)
        retention(t, s)
        sale_times_out(t, s)
        database_killed(t, s)


if __name__ == "__main__":
    run_tests(body)
