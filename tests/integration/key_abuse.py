"""Integration test of key-space abuse (issue 18, item 4) on the real stack: a keyed
checkout of an unknown sku stores no key row (its retry answers 404 again, nothing
was sold), while a keyed 409 is still stored; a backlog of expired keys, inserted
directly, is deleted in one prune pass (one keys_pruned line for all of it), not
10,000 rows per watch; nginx's checkout rate limits, off as shipped, limit nothing
under a burst, and once turned on as docs/operations.md says (the snippet's switch
set to on, a low rate) answer the excess 429 with a JSON body and Retry-After,
keyed and anonymous checkouts counted apart, and the excess sells nothing."""

import os
import re

from harness import SRCDIR, Stack, run_tests

DONUT = "CP-502101"
BACKLOG = 50000


def rows(s):
    return int(s.sql_value("SELECT COUNT(*) FROM checkout_key"))


def keyed(s, key, sku=DONUT, quantity=1):
    return s.request("POST", "/checkout", {"sku": sku, "quantity": quantity},
                     headers={"Idempotency-Key": key})


def unknown_sku(t, s):
    before = rows(s)
    answers = [keyed(s, "unknown-sku-key-%04d" % i, sku="NO-SUCH-%d" % i) for i in range(30)]
    t.is_(sorted(set(r.status for r in answers)), [404], "30 keyed checkouts of unknown skus: 404")
    t.is_(rows(s), before, "and no key row is stored for any of them")
    again = keyed(s, "unknown-sku-key-0000", sku="NO-SUCH-0")
    t.is_((again.status, again.json(), again.headers.get("Idempotent-Replayed")),
          (404, {"message": "상품 없음"}, None), "a retry answers 404 again, not a replay")
    t.is_(rows(s), before, "still no row")
    # The same key then used for a real product is a new checkout that sells.
    s.sql("UPDATE product SET stock = 5 WHERE sku = '%s'" % DONUT)
    r = keyed(s, "unknown-sku-key-0000")
    t.is_((r.status, r.json().get("remaining")), (200, 4), "the key's next use sells")
    s.sql("UPDATE product SET stock = 0 WHERE sku = '%s'" % DONUT)
    r = keyed(s, "sold-out-key-00001")
    t.is_(r.status, 409, "a keyed checkout of a sold-out product: 409")
    t.is_(rows(s), before + 2, "a 200 and a 409 are stored (their retries must replay)")


def prune_backlog(t, s):
    # BACKLOG rows two days old (past idempotency_retention, a day), in one
    # statement, and one young key that must stay.
    s.sql("INSERT INTO checkout_key (idem_key, fingerprint, status, body, created_at)"
          " SELECT CONCAT('expired-', n), UNHEX(SHA2('x', 256)), 200, '{}',"
          " NOW(6) - INTERVAL 2 DAY - INTERVAL n SECOND FROM"
          " (SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d AS n FROM"
          + " CROSS JOIN ".join(" (SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL"
                                " SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL"
                                " SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL"
                                " SELECT 9) %s" % x for x in "abcef")
          + ") seq WHERE n < %d" % BACKLOG)
    t.is_(int(s.sql_value("SELECT COUNT(*) FROM checkout_key WHERE idem_key LIKE 'expired-%'")),
          BACKLOG, "%d expired keys inserted" % BACKLOG)
    young = rows(s) - BACKLOG
    pruned = re.compile(r"event=keys_pruned count=(\d+)")
    start = len(pruned.findall(s.log("worker")))
    t.ok(s.wait_until(lambda: len(pruned.findall(s.log("worker"))) > start, timeout=60),
         "the worker logs a prune")
    counts = [int(c) for c in pruned.findall(s.log("worker"))[start:]]
    t.is_(counts[:1], [BACKLOG], "one pass deletes the whole backlog (one keys_pruned line, "
          "count=%d), not 10,000 a watch" % BACKLOG)
    t.is_(rows(s), young, "no expired key is left; the young ones stay")


def checkout_burst(s, keyed_count, anonymous_count, prefix):
    """keyed_count keyed checkouts, then anonymous_count anonymous ones, as fast as
    four connections send them, from one address."""
    def make(i):
        return "POST", "/checkout", {"sku": DONUT, "quantity": 1}

    keyed_answers = [keyed(s, "%s-%06d-burst" % (prefix, i)) for i in range(keyed_count)]
    anonymous = s.concurrently(anonymous_count, 4, make)
    return keyed_answers, anonymous


def limits_off(t, s):
    s.sql("UPDATE product SET stock = 100000 WHERE sku = '%s'" % DONUT)
    keyed_answers, anonymous = checkout_burst(s, 60, 300, "limits-off")
    t.is_(sorted(set(r.status for r in keyed_answers)), [200],
          "limits as shipped (off): 60 keyed checkouts in a row all sell")
    t.is_(sorted(set(r.status for r in anonymous)), [200],
          "and 300 anonymous ones from four connections at once too")


def limits_on(t, s):
    with open(os.path.join(SRCDIR, "nginx", "restock-limits.conf")) as f:
        shipped = f.read()
    # The operator's edit (docs/operations.md): the switch on, a rate of one a
    # minute (so that only the site's burst passes while the test runs).
    turned_on = shipped.replace("default off;", "default on;")
    turned_on = re.sub(r"rate=\d+r/s", "rate=1r/m", turned_on)
    t.ok(turned_on.count("rate=1r/m") == 2 and "default on;" in turned_on,
         "the shipped snippet has the documented switch and two rates")
    path = os.path.join(s.dir, "limits-on.conf")
    with open(path, "w") as f:
        f.write(turned_on)
    s.stop("nginx")
    s.start("nginx", env={"RESTOCK_NGINX_LIMITS": path})

    s.sql("UPDATE product SET stock = 100000 WHERE sku = '%s'" % DONUT)
    sold_before = int(s.sql_value("SELECT sold_total FROM product WHERE sku = '%s'" % DONUT))
    keyed_answers, anonymous = checkout_burst(s, 40, 80, "limits-on")
    keyed_ok = [r for r in keyed_answers if r.status == 200]
    keyed_limited = [r for r in keyed_answers if r.status == 429]
    t.is_(len(keyed_ok) + len(keyed_limited), 40, "keyed checkouts: 200 or 429, nothing else")
    t.ok(21 <= len(keyed_ok) <= 22, "the burst passes (20 keyed, and one for the rate)",
         len(keyed_ok))
    t.ok(keyed_limited and all(r.json().get("error", "").startswith("too many checkouts")
                               for r in keyed_limited),
         "the excess answers 429 with a JSON error", keyed_limited[:1])
    t.ok(keyed_limited and all(r.headers.get("Retry-After") == "1" for r in keyed_limited),
         "and Retry-After", keyed_limited[:1])
    anon_ok = [r for r in anonymous if r.status == 200]
    anon_limited = [r for r in anonymous if r.status == 429]
    t.is_(len(anon_ok) + len(anon_limited), 80, "anonymous checkouts: 200 or 429, nothing else")
    t.ok(51 <= len(anon_ok) <= 52,
         "anonymous ones are counted apart: their own burst (50, and one) passes", len(anon_ok))
    t.ok(anon_limited and all(r.json().get("error", "").startswith("too many checkouts")
                              for r in anon_limited), "their excess answers 429 too")
    sold = int(s.sql_value("SELECT sold_total FROM product WHERE sku = '%s'" % DONUT))
    t.is_(sold - sold_before, len(keyed_ok) + len(anon_ok), "only the answered 200s sold")
    t.is_(s.request("GET", "/products/" + DONUT).status, 200, "product reads are not limited")


def body(t):
    with Stack(t) as s:
        unknown_sku(t, s)
        prune_backlog(t, s)
        limits_off(t, s)
        limits_on(t, s)


if __name__ == "__main__":
    run_tests(body)
