"""Integration test of the Sales API (docs/design.md §4.1) through nginx on the real
stack: every route's status and body, and the product row in the database (with held,
the units in holds, off the stock); the 400s
leave the stock alone; the database going away answers 503 and coming back serves
again without a restart; SIGTERM finishes the request in flight and exits 0."""

import http.client
import json
import os
import re
import signal
import subprocess
import threading

from harness import BUILDDIR, Response, Stack, run_tests

DONUT = "CP-502101"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FIELDS = {"product_id", "sku", "name", "price", "stock", "held", "factory_id", "ad_id"}
NOT_FOUND = {"message": "상품 없음"}


def db_product(s, sku):
    """The product row as the API shows it, read straight from the database."""
    rows = s.sql("SELECT LOWER(HEX(product_id)), sku, name, price, stock, held,"
                 " LOWER(HEX(factory_id)), LOWER(HEX(ad_id)) FROM product WHERE sku = '%s'" % sku)
    if not rows:
        return None
    pid, sku, name, price, stock, held, fid, aid = rows[0]

    def uuid(h):
        if h == "NULL":
            return None
        return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
    return {"product_id": uuid(pid), "sku": sku, "name": name, "price": int(price),
            "stock": int(stock), "held": int(held), "factory_id": uuid(fid), "ad_id": uuid(aid)}


def bought(n):
    return {"message": "구매 완료! 남은 재고: %d" % n, "sku": DONUT, "remaining": n}


def refused(n, sku=DONUT, replenishment="requested"):
    body = {"message": "구매 실패! 남은 재고: %d" % n, "sku": sku, "remaining": n}
    if replenishment:
        body["replenishment"] = replenishment
    return body


def test_products(t, s):
    r = s.request("GET", "/product/donut")
    t.is_(r.status, 200, "GET /product/donut answers 200")
    t.is_(r.headers.get("Content-Type"), "application/json; charset=utf-8",
          "as JSON in UTF-8")
    t.ok("부산도너츠".encode("utf-8") in r.body, "Korean text is sent unescaped")
    donut = r.json()
    t.is_(set(donut), FIELDS, "the product has exactly the documented fields")
    t.is_(donut, db_product(s, DONUT), "and they are the database row of %s" % DONUT)
    t.is_((donut["name"], donut["price"], donut["stock"]), ("부산도너츠", 19900, 3),
          "the seeded donut: 부산도너츠, 19,900 won, stock 3")
    t.ok(all(UUID.match(donut[k]) for k in ("product_id", "factory_id", "ad_id")),
         "ids are canonical UUID text", donut)
    t.is_(donut["product_id"], "c9a4f1e2-d3b5-4a6f-8e7d-6c5b4a392801", "the seeded product id")

    # A product without factory and ad shows them as null.
    s.sql("INSERT INTO product (product_id, sku, name, price, stock) VALUES"
          " (UNHEX('00000000000040008000000000000001'), 'AA-000001', '빈 상품', 1000, 7)")
    r = s.request("GET", "/products")
    t.is_(r.status, 200, "GET /products answers 200")
    skus = [row[0] for row in s.sql("SELECT sku FROM product ORDER BY sku")]
    t.is_([p["sku"] for p in r.json()], skus, "every product, ordered by sku")
    t.is_(r.json(), [db_product(s, sku) for sku in skus], "each as its database row")
    plain = [p for p in r.json() if p["sku"] == "AA-000001"][0]
    t.is_((plain["factory_id"], plain["ad_id"]), (None, None), "NULL ids are null")
    s.sql("DELETE FROM product WHERE sku = 'AA-000001'")

    r = s.request("GET", "/products/CP-502102")
    t.is_((r.status, r.json()), (200, db_product(s, "CP-502102")),
          "GET /products/CP-502102 answers the row")
    t.is_(r.json()["name"], "부산도너츠 초코", "by its sku")
    r = s.request("GET", "/products/NO-SUCH")
    t.is_((r.status, r.json()), (404, NOT_FOUND), "an unknown sku answers 404 상품 없음")
    r = s.request("GET", "/products/" + "X" * 40)
    t.is_((r.status, r.json()), (404, NOT_FOUND), "a sku longer than any answers 404 too")

    r = s.request("GET", "/healthz")
    t.is_((r.status, r.json()), (200, {"status": "ok"}), "GET /healthz answers 200 ok")


def test_held(t, s):
    """A held unit is off the shelf: the product JSON's stock drops and held shows it
    (once nginx's one-second cache of product reads has passed)."""
    choco = "CP-502102"

    def shown(path):
        got = s.request("GET", path).json()
        got = got if isinstance(got, list) else [got]
        return [(p.get("stock"), p.get("held")) for p in got if p.get("sku") == choco]

    r = s.request("POST", "/holds", {"lines": [{"sku": choco, "quantity": 2}]})
    t.is_(r.status, 201, "a hold of 2 of %s" % choco)
    for path in ("/products/" + choco, "/products"):
        s.wait_until(lambda: shown(path) == [(1, 2)], timeout=10)
        t.is_(shown(path), [(1, 2)], "GET %s: stock 1 (what can be bought now), held 2" % path)
    t.is_(s.request("GET", "/products/" + choco).json(), db_product(s, choco), "the database row's")
    hold_id = r.json().get("hold", "none") if r.status == 201 else "none"
    t.is_(s.request("DELETE", "/holds/" + hold_id).status, 200, "the hold released")
    s.wait_until(lambda: shown("/products/" + choco) == [(3, 0)], timeout=10)
    t.is_(shown("/products/" + choco), [(3, 0)], "stock 3 again, held 0")


def test_checkout(t, s):
    # Content-Length: 0, no body, a full body, and the first version's body with an
    # unknown field: each buys one donut.
    bodies = [(b"", "an empty body (Content-Length: 0)"),
              ({"sku": DONUT, "quantity": 1}, "sku and quantity"),
              ({"MessageAttributeFactoryId": "FF-500293"}, "only an unknown field (ignored)")]
    for left, (body, what) in zip((2, 1, 0), bodies):
        r = s.request("POST", "/checkout", body)
        t.is_((r.status, r.json()), (200, bought(left)), "checkout with %s answers 200" % what)
        t.is_(s.stock(), left, "the stock is %d" % left)
    r = s.request("POST", "/checkout", None)
    t.is_((r.status, r.json()), (409, refused(0)), "the fourth checkout answers 409")
    t.is_(s.stock(), 0, "the stock stays 0")

    r = s.request("POST", "/checkout", {"sku": "CP-502102", "quantity": 2})
    t.is_((r.status, r.json()["remaining"]), (200, 1), "quantity 2 takes two")
    t.is_(s.stock("CP-502102"), 1, "the row shows it")
    r = s.request("POST", "/checkout", {"sku": "CP-502102", "quantity": 2})
    t.is_((r.status, r.json()), (409, refused(1, "CP-502102", None)),
          "two more than the one left answer 409 with what is left, and no replenishment:"
          " stock above 0 is no sell-out and nothing is on order (issue 11)")
    t.is_(s.stock("CP-502102"), 1, "and take nothing")

    r = s.request("POST", "/checkout", {"sku": "NO-SUCH", "quantity": 1})
    t.is_((r.status, r.json()), (404, NOT_FOUND), "checkout of an unknown sku answers 404")


def test_bad_requests(t, s):
    sku = "CP-502103"
    before = s.stock(sku)
    pad = "x" * 9000
    cases = [
        ('{"sku":', "malformed JSON", "malformed JSON"),
        ("[1]", "the body must be a JSON object", "an array"),
        ({"sku": sku, "quantity": "2"},
         'quantity must be an integer from 1 to 1000, not a string ("2")', "quantity \"2\""),
        ({"sku": sku, "quantity": 0}, "quantity must be an integer from 1 to 1000, not 0",
         "quantity 0"),
        ({"sku": sku, "quantity": 1001}, "quantity must be an integer from 1 to 1000, not 1001",
         "quantity 1001"),
        ({"sku": sku, "quantity": 1.5}, "quantity must be an integer from 1 to 1000, not 1.5",
         "quantity 1.5"),
        ({"sku": sku, "quantity": None}, "quantity must be an integer from 1 to 1000, not null",
         "quantity null"),
        ({"sku": 502103}, "sku must be a string of 1 to 32 characters, not 502103",
         "a number as sku"),
        ({"sku": ""}, "sku must be a string of 1 to 32 characters, not 0", "an empty sku"),
        ({"sku": "X" * 33}, "sku must be a string of 1 to 32 characters, not 33",
         "a sku of 33 characters"),
        ('{"sku":"%s\\u0000x"}' % sku, "a string holds \\u0000 (a NUL character)",
         "a sku with a NUL escape"),
        ('{"sku":"%s","quantity":9.9999999999999999}' % sku,
         "the number 9.9999999999999999 at byte", "a quantity of 9.9999999999999999"),
        ({"sku": sku, "pad": pad}, "request body larger than 8192 bytes",
         "a body over the responder's limit"),
        ({"sku": sku, "pad": "x" * 70000}, "request body larger than 64 KiB",
         "a body over nginx's cap"),
    ]
    for body, message, what in cases:
        r = s.request("POST", "/checkout", body)
        try:
            error = r.json().get("error", "")
        except ValueError:
            error = r.body
        t.is_(r.status, 400, "%s answers 400" % what)
        t.ok(error.startswith(message), "saying: %s" % message, r)
    # A header sent twice: which key (or client) a checkout has is not the proxy's
    # choice to make (nginx 1.22 passes both lines, and restock would take the first).
    for header, values in (("Idempotency-Key", ("k-aaaaaaaaaaaaaaaa-1", "k-aaaaaaaaaaaaaaaa-2")),
                           ("Authorization", ("Bearer rsk_one", "Bearer rsk_two"))):
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        try:
            conn.putrequest("POST", "/checkout")
            for value in values:
                conn.putheader(header, value)
            conn.putheader("Content-Type", "application/json")
            payload = json.dumps({"sku": sku}).encode()
            conn.putheader("Content-Length", str(len(payload)))
            conn.endheaders(payload)
            r = conn.getresponse()
            status, answer = r.status, r.read()
        finally:
            conn.close()
        t.is_(status, 400, "two %s headers answer 400" % header)
        if header == "Authorization":
            continue  # nginx itself refuses a repeated Authorization, with its own page
        s.record("POST", "/checkout", Response(status, dict(r.getheaders()), answer))
        t.ok(json.loads(answer).get("error", "").startswith(
             "%s: the header was sent more than once" % header), "saying the header came twice",
             answer)
    t.is_(s.stock(sku), before, "none of the refused checkouts changed the stock")
    t.is_(s.sql_value("SELECT COUNT(*) FROM checkout_key"), "0", "and no key was stored")


def test_methods_and_paths(t, s):
    for method, path, allow in (("GET", "/checkout", "POST"), ("POST", "/products", "GET, HEAD"),
                                ("DELETE", "/product/donut", "GET, HEAD"),
                                ("PUT", "/products/" + DONUT, "GET, HEAD"),
                                ("POST", "/healthz", "GET, HEAD")):
        r = s.request(method, path, b"" if method != "GET" else None)
        t.is_(r.status, 405, "%s %s answers 405" % (method, path))
        t.is_(r.headers.get("Allow"), allow, "with Allow: %s" % allow)
        t.ok("not allowed" in r.json().get("error", ""), "and an error saying so", r)
    r = s.request("HEAD", "/product/donut")
    t.is_(r.status, 200, "HEAD of a product answers 200")
    for path in ("/", "/nope", "/products/a/b", "/healthz/x", "/product/donut/", "/checkout2"):
        r = s.request("GET", path)
        t.is_((r.status, r.json()), (404, {"error": "not found"}), "GET %s answers 404" % path)
    # nginx decodes %XX: a path of bytes that are not UTF-8 reaches the responder.
    for path in ("/products/%FF%FE", "/products/CP-502101%C3%28"):
        r = s.request("GET", path)
        t.is_(r.status, 400, "GET %s (not UTF-8 once decoded) answers 400" % path)
        t.ok(r.body.decode("utf-8", "strict") and
             r.json().get("error", "").startswith("the request path is not valid UTF-8"),
             "with a UTF-8 JSON body saying why", r)


def test_database_down(t, s):
    password = s.info["DB_PASSWORD"]
    pid = open(os.path.join(s.dir, "pid", "sales.pid")).read().strip()
    s.sql("UPDATE product SET stock = 5 WHERE sku = '%s'" % DONUT)
    s.sql("UPDATE product SET max_per_customer = 2 WHERE sku = 'CP-502102'")
    added = s.restockctl("client", "add", "outage-client")
    key = re.search(r"^(rsk_[A-Za-z0-9_-]{43})$", added.stdout, re.M)
    t.ok(key is not None, "an API client is made for the outage", added.stderr)
    client = {"Authorization": "Bearer " + (key.group(1) if key else "")}
    before = {sku: s.stock(sku) for sku in ("CP-502102", "CP-502103")}
    s.stop("db")
    # A product never read before: nginx's one-second cache of product reads
    # cannot have it, so the responder must answer. The checkouts that need the
    # database before the sale (a client's key checked, a cart's transaction, a
    # customer's limit) answer 503 as the plain one does.
    cart = {"lines": [{"sku": "CP-502102", "quantity": 1}, {"sku": "CP-502103", "quantity": 1}]}
    for method, path, payload, extra, what in (
            ("POST", "/checkout", b"", {}, ""),
            ("GET", "/healthz", None, {}, ""),
            ("GET", "/products/CP-502103", None, {}, ""),
            ("POST", "/checkout", b"", client, " (an API client's)"),
            ("POST", "/checkout", cart, {}, " (a cart)"),
            ("POST", "/checkout", {"sku": "CP-502102"}, dict(client, **{"Restock-Customer": "c-1"}),
             " (a limited product's customer)")):
        r = s.request(method, path, payload, headers=extra)
        path += what
        t.is_(r.status, 503, "database stopped: %s %s answers 503" % (method, path))
        error = r.json().get("error", "")
        t.ok(error.startswith("service unavailable"), "saying the service is unavailable", r)
        t.ok(password not in error and s.info["DB_SOCKET"] not in error and
             "user" not in error and "database" not in error,
             "without the database's password, user, socket or name", error)
    s.start("db")
    t.is_(s.stock(), 5, "the checkout during the outage changed nothing")
    t.is_({sku: s.stock(sku) for sku in before}, before, "nor did the cart and the limited one")
    r = s.request("POST", "/checkout", b"")
    t.is_((r.status, r.json()), (200, bought(4)),
          "database back: checkout answers 200 without restarting the responder")
    t.is_(s.request("GET", "/healthz").status, 200, "and /healthz answers 200")
    t.is_(open(os.path.join(s.dir, "pid", "sales.pid")).read().strip(), pid,
          "the same responder process serves")
    t.ok("event=database_unavailable" in s.log("sales"), "the responder logged the outage")
    t.ok(password not in s.log("sales"), "its log never shows the database password")


def mysql_root(s, *args, **kw):
    return subprocess.Popen(["mariadb", "--no-defaults", "-S", s.info["DB_SOCKET"], "-u", "root",
                             "-N", "-B", "--unbuffered", s.info["DB_NAME"]] + list(args),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def root_value(s, query):
    """One value from a query as MariaDB's root (information_schema needs PROCESS)."""
    out, err = mysql_root(s).communicate(query)
    if err.strip():
        raise RuntimeError("SQL failed: %s: %s" % (query, err.strip()))
    return out.strip()


class OwnSales:
    """restock-sales started here instead of by scripts/stack, so that its exit
    status can be read; its lines go to the stack's log/sales.log."""

    def __init__(self, t, s, **env):
        s.stop("sales")
        self.sock = s.info["SALES_SOCKET"]
        env = dict(s.env, RESTOCK_CONFIG=s.info["RESTOCK_CONFIG"], **env)
        wrapper = os.environ.get("RESTOCK_WRAPPER", "").split()
        self.log = open(os.path.join(s.dir, "log", "sales.log"), "a")
        self.proc = subprocess.Popen(wrapper + [os.path.join(BUILDDIR, "fcgi", "restock-sales")],
                                     env=env, stdout=self.log, stderr=self.log)
        self.pidfile = os.path.join(s.dir, "pid", "sales.pid")
        with open(self.pidfile, "w") as f:  # so that the stack's stop ends it if the test fails
            f.write(str(self.proc.pid))
        t.ok(s.wait_until(lambda: os.path.exists(self.sock), timeout=60), "the responder listens")

    def wait(self):
        """Its exit status, once it has ended (it is killed after 60 s)."""
        try:
            status = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            status = "still running after 60 s"
        os.unlink(self.pidfile)
        self.log.close()
        return status


def test_sigterm_in_flight(t, s):
    """A checkout blocked on a row lock held by another session is in flight when
    SIGTERM arrives; the responder must answer it and then exit 0."""
    own = OwnSales(t, s, RESTOCK_DB_TIMEOUT="60")
    proc, sock = own.proc, own.sock
    s.sql("UPDATE product SET stock = 5 WHERE sku = '%s'" % DONUT)

    locker = mysql_root(s)
    locker.stdin.write("BEGIN; SELECT stock FROM product WHERE sku = '%s' FOR UPDATE;\n" % DONUT)
    locker.stdin.flush()
    t.is_(locker.stdout.readline().strip(), "5", "another session holds the donut's row lock")

    answer = {}

    def checkout():
        answer["r"] = s.request("POST", "/checkout", b"", timeout=120)
    client = threading.Thread(target=checkout)
    client.start()

    def waiting():
        return root_value(s, "SELECT COUNT(*) FROM information_schema.innodb_trx"
                                " WHERE trx_state = 'LOCK WAIT'") == "1"
    t.ok(s.wait_until(waiting, timeout=60), "the checkout waits for the lock")

    # The log also holds the lines of the responder scripts/stack ran before.
    mark = len(s.log("sales"))
    proc.send_signal(signal.SIGTERM)
    t.ok(s.wait_until(lambda: "event=stopping" in s.log("sales")[mark:], timeout=60),
         "the responder took SIGTERM and stopped accepting")
    r = s.request("GET", "/healthz")
    t.is_(r.status, 503, "it accepts no new request (nginx answers 503)")
    t.is_(proc.poll(), None, "it is still running: a request is in flight")

    locker.stdin.write("ROLLBACK;\n")
    locker.stdin.close()
    locker.wait()
    client.join(120)
    r = answer.get("r")
    t.ok(r is not None and r.status == 200, "the request in flight is answered 200", r)
    t.is_(r.json() if r else None, bought(4), "with its purchase")
    t.is_(s.stock(), 4, "and the purchase is in the database")
    t.is_(own.wait(), 0, "then the responder exits with status 0")
    t.ok("event=stopped" in s.log("sales")[mark:], "logging that it stopped")
    t.ok(not os.path.exists(sock), "and its socket is gone")


def body(t):
    with Stack(t, components=["db", "sales", "nginx"], private_db=True) as s:
        test_products(t, s)
        test_held(t, s)
        test_checkout(t, s)
        test_bad_requests(t, s)
        test_methods_and_paths(t, s)
        test_database_down(t, s)
        test_sigterm_in_flight(t, s)


if __name__ == "__main__":
    run_tests(body)
