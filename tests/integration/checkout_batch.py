"""Integration test of combined checkouts (issue 13): the checkouts of one product
that arrive while its statement is in flight go together in the next one.

  - a surge with mixed quantities (stock 500, 2,000 checkouts from 64 clients):
    exactly 500 units sold, each 200's remaining stock consistent with the final
    stock (the units each buyer took, [remaining, remaining + quantity), cover the
    500 units exactly once), no two buyers told the same remaining, one order;
  - the sell-out inside a batch: whole quantities in arrival order, exactly one
    replenishment order and one stock_empty event;
  - a batch whose statement fails (the database killed): every member answers
    503 and the stock is untouched;
  - SIGTERM with a batch in flight: each member answered, exit status 0.

A batch is made on purpose by holding the product's row lock in another session:
the first checkout's UPDATE waits for it, the next ones queue in restock-sales
(each logs event=checkout_submitted at debug level), and the lock's release lets
the first statement end and the batch's run."""

import signal
import threading
from collections import Counter

from harness import Stack, run_tests
from sales import OwnSales, mysql_root, root_value

DONUT, CHOCO, MATCHA = "CP-502101", "CP-502102", "CP-502103"
# Long enough for a statement that waits on the row lock (the default is 5 s). A
# ping before every statement outside a transaction (db_idle_check 0): a killed
# server closes its connections one by one, and a batch's statement written into
# one not closed yet is in doubt (504) as rightly as the one in flight; pinged
# first, the dying connection is replaced, and the batch behind it is always 503.
ENV = {"RESTOCK_LOG_LEVEL": "debug", "RESTOCK_DB_TIMEOUT": "60", "RESTOCK_DB_IDLE_CHECK": "0"}


def orders(s, sku):
    return int(s.sql_value(
        "SELECT COUNT(*) FROM replenishment_order r JOIN product p ON p.product_id ="
        " r.product_id WHERE p.sku = '%s'" % sku))


def stock_empty_events(s, sku):
    return int(s.sql_value(
        "SELECT COUNT(*) FROM outbox o JOIN product p ON p.product_id = o.product_id"
        " WHERE p.sku = '%s' AND o.kind = 'stock_empty'" % sku))


def batches_line(log):
    """The responder's event=checkout_batches line, logged when it stops."""
    lines = [line for line in log.splitlines() if "event=checkout_batches" in line]
    return lines[-1] if lines else ""


def largest_batch(log):
    for word in batches_line(log).split():
        if word.startswith("largest="):
            return int(word.split("=")[1])
    return 0


class Locked:
    """The sku's row lock held by another session, and checkouts sent meanwhile:
    the first waits in the database, the others queue in the responder."""

    def __init__(self, t, s, sku):
        self.t, self.s, self.sku = t, s, sku
        self.answers = []
        self.threads = []
        self.mark = len(s.log("sales"))
        self.locker = mysql_root(s)
        self.locker.stdin.write("BEGIN; SELECT stock FROM product WHERE sku = '%s' FOR UPDATE;\n"
                                % sku)
        self.locker.stdin.flush()
        t.ok(self.locker.stdout.readline().strip() != "", "another session holds %s's row lock"
             % sku)

    def submitted(self):
        return self.s.log("sales")[self.mark:].count("event=checkout_submitted")

    def send(self, quantity):
        index = len(self.threads)
        self.answers.append(None)

        def checkout():
            self.answers[index] = self.s.request("POST", "/checkout", (
                '{"sku":"%s","quantity":%d}' % (self.sku, quantity)).encode(), timeout=120)
        thread = threading.Thread(target=checkout)
        thread.start()
        self.threads.append(thread)

    def first_waits(self, quantity=1):
        self.send(quantity)
        self.t.ok(self.s.wait_until(lambda: root_value(
            self.s, "SELECT COUNT(*) FROM information_schema.innodb_trx"
                    " WHERE trx_state = 'LOCK WAIT'") == "1", timeout=60),
            "the first checkout's statement waits for the lock")

    def queue(self, quantities):
        """One after the other, so that the order of arrival is the order here."""
        arrived = True
        for q in quantities:
            self.send(q)
            n = len(self.threads)
            arrived = arrived and self.s.wait_until(lambda: self.submitted() == n, timeout=60)
        self.t.ok(arrived, "%d more checkouts arrive while it is in flight" % len(quantities))

    def release(self):
        try:
            self.locker.stdin.write("ROLLBACK;\n")
            self.locker.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # the database went away with the session
        self.locker.wait(60)

    def outcomes(self):
        """Releases the lock; each checkout's (status, remaining), in sending order."""
        self.release()
        for thread in self.threads:
            thread.join(120)
        return [(r.status, r.json().get("remaining")) if r else None for r in self.answers]


def batch(t, s, sku, stock, first, queued):
    """Stock, then a checkout of first waiting on the row lock and the queued
    quantities behind it; their outcomes once the lock is released."""
    s.sql("UPDATE product SET stock = %d WHERE sku = '%s'" % (stock, sku))
    locked = Locked(t, s, sku)
    locked.first_waits(first)
    locked.queue(queued)
    return locked.outcomes()


def test_mixed_surge(t, s):
    stock, checkouts, clients = 500, 2000, 64
    pattern = (1, 2, 1, 3, 1, 4)
    s.sql("UPDATE product SET stock = %d WHERE sku = '%s'" % (stock, DONUT))

    def checkout(i):
        return ("POST", "/checkout", {"sku": DONUT, "quantity": pattern[i % len(pattern)]})
    answers = s.concurrently(checkouts, clients, checkout)
    asked = [pattern[i % len(pattern)] for i in range(checkouts)]

    statuses = Counter(r.status for r in answers)
    t.is_(set(statuses), {200, 409}, "every checkout answers 200 or 409")
    sold = [(r.json()["remaining"], q) for r, q in zip(answers, asked) if r.status == 200]
    final = s.stock(DONUT)
    t.is_(final, 0, "the stock ends at 0")
    t.is_(sum(q for _, q in sold), stock, "exactly %d units were sold" % stock)
    units = Counter(u for remaining, q in sold for u in range(remaining, remaining + q))
    t.ok(sorted(units) == list(range(final, stock)) and all(n == 1 for n in units.values()),
         "the units each buyer was told they took cover the %d exactly once" % stock,
         [u for u, n in units.items() if n > 1][:10])
    remainings = Counter(remaining for remaining, _ in sold)
    t.ok(all(n == 1 for n in remainings.values()), "no two buyers were told the same remaining",
         [v for v, n in remainings.items() if n > 1][:10])
    refused = [(r.json(), q) for r, q in zip(answers, asked) if r.status == 409]
    # Sold out (0 left): the order is requested. Fewer left than asked but some
    # (reorder point 0): no sell-out, nothing on order, no replenishment field.
    t.ok(all(j["remaining"] < q and
             j.get("replenishment") == ("requested" if j["remaining"] == 0 else None)
             for j, q in refused),
         "each 409 had fewer units left than it asked for; replenishment requested once sold"
         " out, none while some were left", refused[:3])
    t.ok(any(j["remaining"] == 0 for j, _ in refused), "some 409s came once it was sold out",
         Counter(j["remaining"] for j, _ in refused))
    t.is_(orders(s, DONUT), 1, "the sell-out opened exactly one order")
    t.is_(stock_empty_events(s, DONUT), 1, "and one stock_empty event")


def test_sell_out_in_batch(t, s):
    before = orders(s, CHOCO)
    # 2 units will be left for the batch: the 2 fits, what follows finds none.
    t.is_(batch(t, s, CHOCO, 3, 1, [2, 1, 1, 3]),
          [(200, 2), (200, 0), (409, 0), (409, 0), (409, 0)],
          "the first buys alone; in the batch whole quantities in arrival order: 2 fits,"
          " what follows finds none")
    t.is_(s.stock(CHOCO), 0, "the stock is 0")
    t.is_(orders(s, CHOCO) - before, 1, "the sell-out inside the batch opened exactly one order")
    t.is_(stock_empty_events(s, CHOCO), 1, "and one stock_empty event")


def test_batch_allocation(t, s):
    # 5 left for the batch of 4, 3, 1, 1: the 4 fits (1 left), the 3 does not, then 1.
    got = batch(t, s, MATCHA, 6, 1, [4, 3, 1, 1])
    t.is_(got[:3] + got[4:], [(200, 5), (200, 1), (409, 0), (409, 0)],
          "a batch that does not fit: each quantity whole or not at all, in arrival order")
    t.is_(got[3], (200, 0), "a later smaller quantity still takes what is left")
    t.is_(s.stock(MATCHA), 0, "the stock is what was not sold: 0")


def test_failed_batch(t, s):
    s.sql("UPDATE product SET stock = 5 WHERE sku = '%s'" % DONUT)
    locked = Locked(t, s, DONUT)
    locked.first_waits(1)
    locked.queue([1, 2, 1, 1])
    # Killed, not stopped: a clean shutdown ends the lock holder's session first,
    # and the waiting UPDATE could commit before the server goes (sold, but the
    # buyer told 503). Killed, nothing commits; restarted, nothing is left.
    s.kill("db")
    locked.release()
    for thread in locked.threads:
        thread.join(120)
    answers = locked.answers
    # The one in flight had its statement sent when the server died: restock cannot
    # know it did not run (here it waited for the lock), so it says so (504, in
    # doubt); the batch behind it never reached the server: 503, nothing done.
    t.is_([r.status if r else None for r in answers], [504] + [503] * 4,
          "the database gone: the checkout in flight answers 504 (in doubt), every member"
          " of the batch behind it 503")
    t.ok("may or may not have been made" in answers[0].json().get("error", ""),
         "the 504 says the sale may or may not have been made", answers[0].json())
    t.ok(all(r.json().get("error", "").startswith("service unavailable") for r in answers[1:]),
         "the 503s say the service is unavailable")
    s.start("db")
    t.is_(s.stock(DONUT), 5, "and the stock is untouched")
    r = s.request("POST", "/checkout", b"")
    t.is_((r.status, r.json().get("remaining")), (200, 4), "the database back, checkout sells")


def test_sigterm_with_batch(t, s):
    s.stop("sales")
    surge = batches_line(s.log("sales"))
    t.ok(largest_batch(surge) >= 2, "in the surge of 64 clients, checkouts were combined", surge)
    mark = len(s.log("sales"))
    own = OwnSales(t, s, **ENV)
    s.sql("UPDATE product SET stock = 10 WHERE sku = '%s'" % DONUT)
    locked = Locked(t, s, DONUT)
    locked.first_waits(1)
    locked.queue([1, 1, 2, 1])
    own.proc.send_signal(signal.SIGTERM)
    t.ok(s.wait_until(lambda: "event=stopping" in s.log("sales")[mark:], timeout=60),
         "SIGTERM with a batch waiting: the responder stops accepting")
    t.is_(own.proc.poll(), None, "and goes on: the batch is in flight")
    t.is_(locked.outcomes(), [(200, 9), (200, 8), (200, 7), (200, 5), (200, 4)],
          "each checkout is answered 200 with its own remaining")
    t.is_(s.stock(DONUT), 4, "and every sale is in the database")
    t.is_(own.wait(), 0, "then the responder exits with status 0")
    t.ok(largest_batch(s.log("sales")[mark:]) == 4, "its log counts the batch of 4 checkouts",
         batches_line(s.log("sales")[mark:]))


def body(t):
    with Stack(t, components=["db", "sales", "nginx"], env=ENV, private_db=True) as s:
        test_mixed_surge(t, s)
        test_sell_out_in_batch(t, s)
        test_batch_allocation(t, s)
        test_failed_batch(t, s)
        test_sigterm_with_batch(t, s)


if __name__ == "__main__":
    run_tests(body)
