"""Integration test of a real deadlock inside a nested transaction (issue 18, item 1;
lib/db.h: a nested transaction never runs itself again, only the outermost one
does): a keyed checkout turned away from an empty shelf whose open order is not
yet marked sold out marks it, and counts the customer turned away, in a savepoint
of its own transaction (order.c inside sale.c's keyed transaction). Another
MariaDB session holds the open order's row, which the nested part waits for, and
then asks for the key's row the keyed checkout inserted: InnoDB breaks the
deadlock by rolling the keyed checkout's whole transaction back. What the client
is answered must match the rows: a 503 has committed nothing and stored no key; a
409 has marked the order sold out with one outbox event, counted one customer
turned away and stored its answer under the key. A retry with the same key counts
nobody again, and two copies of one key in flight run once. (No worker runs: its
sweep would mark the order sold out itself.)"""

import queue
import subprocess
import threading

from harness import Stack, run_tests

EMPTY = "CP-502103"


class Session:
    """A MariaDB session of its own (root: information_schema needs PROCESS), fed
    statements one at a time; each answer is read up to a marker printed after it,
    errors included (--force goes on after one)."""

    def __init__(self, s):
        self.p = subprocess.Popen(
            ["mariadb", "--no-defaults", "-S", s.info["DB_SOCKET"], "-u", "root", "-N", "-B",
             "--unbuffered", "--force", s.info["DB_NAME"]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        self.n = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, sql):
        """Sends a statement without waiting for its answer; answer(n) reads it."""
        self.n += 1
        self.p.stdin.write("%s;\nSELECT 'answered-%d';\n" % (sql, self.n))
        self.p.stdin.flush()
        return self.n

    def answer(self, n, timeout=60):
        """The lines statement n printed (its rows, or its error)."""
        out = []
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None or line == "answered-%d" % n:
                return out
            out.append(line)

    def run(self, sql):
        return self.answer(self.send(sql))

    def close(self):
        self.p.stdin.close()
        self.p.wait(60)


def root_value(s, query):
    p = subprocess.run(["mariadb", "--no-defaults", "-S", s.info["DB_SOCKET"], "-u", "root", "-N",
                        "-B", s.info["DB_NAME"], "-e", query], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("SQL failed: %s: %s" % (query, p.stderr.strip()))
    return p.stdout.strip()


def lock_waits(s):
    """Transactions waiting for a row lock now."""
    return int(root_value(s, "SELECT COUNT(*) FROM information_schema.innodb_trx"
                             " WHERE trx_state = 'LOCK WAIT'"))


def keyed(s, key):
    return s.request("POST", "/checkout", {"sku": EMPTY, "quantity": 1},
                     headers={"Idempotency-Key": key}, timeout=120)


def in_thread(fn, *args):
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("r", fn(*args)))
    th.start()
    return th, box


ORDER = ("SELECT r.order_id FROM replenishment_order r JOIN product p"
         " ON p.product_id = r.product_id WHERE p.sku = '%s' AND r.status <> 'fulfilled'" % EMPTY)


def empty_shelf(t, s):
    """EMPTY sold out with its order open but not marked sold out (as between the
    emptying sale's two transactions, or after a crash there): a checkout turned
    away marks it, in a savepoint of the keyed checkout's transaction. Answers
    how many outbox events the order has."""
    s.sql("UPDATE product SET stock = 0, reorder_point = -1 WHERE sku = '%s'" % EMPTY)
    s.sql("UPDATE replenishment_order r JOIN product p ON p.product_id = r.product_id"
          " SET r.status = 'fulfilled', r.open_product_id = NULL WHERE p.sku = '%s'" % EMPTY)
    r = s.request("POST", "/checkout", {"sku": EMPTY, "quantity": 1})
    t.is_((r.status, r.json().get("replenishment")), (409, "requested"),
          "a checkout turned away from the empty shelf opens its order")
    s.sql("UPDATE replenishment_order SET sold_out_at = NULL, turned_away = 0,"
          " turned_away_units = 0 WHERE order_id = (%s)" % ORDER)
    return events(s)


def events(s):
    return int(s.sql_value("SELECT COUNT(*) FROM outbox WHERE order_id = (%s)" % ORDER))


def effects(s, key, before):
    """What is committed: whether the open order is marked sold out, its outbox
    events since before, the customers it counts turned away, and the key's
    stored status (None: no row)."""
    sold_out, turned = s.sql("SELECT sold_out_at IS NOT NULL, turned_away FROM"
                             " replenishment_order WHERE order_id = (%s)" % ORDER)[0]
    status = s.sql_value("SELECT status FROM checkout_key WHERE idem_key = '%s'" % key)
    return int(sold_out), events(s) - before, int(turned), status


def consistent(t, s, key, r, before, what):
    """The rows say what the answer said."""
    got = effects(s, key, before)
    if r.status == 503:
        t.is_(got, (0, 0, 0, None),
              "%s: answered 503, and nothing is committed (sold-out mark, outbox event,"
              " customer turned away, key row)" % what)
    else:
        t.is_(got, (1, 1, 1, str(r.status)),
              "%s: answered %d, and its one effect is committed: the order marked sold out"
              " with one outbox event, one customer turned away, the answer stored under its"
              " key" % (what, r.status))


def deadlock(t, s, locker, copies):
    """Runs the deadlock with copies keyed checkouts of one key in flight; their
    answers."""
    heavy = locker.send("BEGIN")
    # Many changed rows make the locker the heavier side: InnoDB rolls back the
    # lighter one, the keyed checkout.
    locker.answer(heavy)
    t.is_(locker.run("UPDATE nested_weight SET n = n + 1"), [],
          "the other session changes 200 rows")
    # The order's row alone (by its primary key, not through product).
    order = s.sql_value("SELECT HEX(order_id) FROM (%s) o" % ORDER)
    t.is_(locker.run("SELECT turned_away FROM replenishment_order WHERE order_id = UNHEX('%s')"
                     " FOR UPDATE" % order), ["0"],
          "and holds the row of the empty product's open order")
    waiting = []
    for i in range(copies):
        waiting.append(in_thread(keyed, s, "deadlock-test-key-%d" % copies))
        t.ok(s.wait_until(lambda: lock_waits(s) == i + 1),
             "keyed checkout %d waits for a row lock (%s)" % (i + 1, "the order's, in its"
                                                             " nested transaction" if i == 0 else
                                                             "the key's, held by the first"))
    asked = locker.send("SELECT COUNT(*) FROM checkout_key"
                        " WHERE idem_key = 'deadlock-test-key-%d' FOR UPDATE"
                        % copies)
    answer = locker.answer(asked)
    t.ok(not any("ERROR" in line for line in answer),
         "the other session gets the key's row: the keyed checkout was the deadlock's victim",
         answer)
    t.is_(locker.run("ROLLBACK"), [], "the other session lets the order's row go")
    answers = []
    for th, box in waiting:
        th.join(120)
        answers.append(box.get("r"))
    t.ok(all(a is not None for a in answers), "every keyed checkout was answered")
    return [a for a in answers if a is not None]


def one_copy(t, s, locker):
    before = empty_shelf(t, s)
    r = deadlock(t, s, locker, 1)[0]
    t.ok(r.status in (409, 503), "the keyed checkout answers 409 or 503", r)
    consistent(t, s, "deadlock-test-key-1", r, before, "a deadlock in the nested transaction")
    t.is_((r.status, r.json().get("replenishment")), (409, "requested"),
          "the whole keyed checkout ran again: 409, replenishment requested")
    again = keyed(s, "deadlock-test-key-1")
    t.is_(again.status, 409, "its retry with the same key answers 409")
    if r.status == 409:
        t.is_((again.body, again.headers.get("Idempotent-Replayed")), (r.body, "true"),
              "the stored answer, replayed")
    t.is_(effects(s, "deadlock-test-key-1", before), (1, 1, 1, "409"),
          "the order marked sold out once (one outbox event), one customer turned away:"
          " counted once")
    t.ok("event=db_retry" in s.log("sales"), "the responder logged the retry")


def two_copies(t, s, locker):
    before = empty_shelf(t, s)
    a, b = deadlock(t, s, locker, 2)
    t.is_(sorted([a.status, b.status]), [409, 409], "both copies of the key answer 409")
    t.is_(a.body, b.body, "with the same body")
    t.is_(sorted(r.headers.get("Idempotent-Replayed") or "-" for r in (a, b)), ["-", "true"],
          "one of them ran, the other is its replay")
    t.is_(effects(s, "deadlock-test-key-2", before), (1, 1, 1, "409"),
          "the order marked sold out once (one outbox event), one customer turned away")


def body(t):
    with Stack(t, ["db", "sales", "nginx"], private_db=True) as s:
        rows = ", ".join("(%d, 0)" % i for i in range(200))
        root_value(s, "CREATE TABLE nested_weight (id INT PRIMARY KEY, n INT NOT NULL)"
                      " ENGINE=InnoDB; INSERT INTO nested_weight VALUES " + rows)
        locker = Session(s)
        try:
            one_copy(t, s, locker)
            two_copies(t, s, locker)
        finally:
            locker.close()
        t.is_(s.sanitizer_reports(), "", "no sanitizer report")


if __name__ == "__main__":
    run_tests(body)
