"""Integration test of the API clients (issue 18, item 3; docs/design.md §4.1) on the
real stack: `restockctl client add` prints a key once, `list` and `revoke` never
show it, and the database keeps only its SHA-256; two clients that send the same
Idempotency-Key with the same request each get their own sale, and a key one client
used first does not answer the other 422; an anonymous key shorter than 16
characters answers 400 that says why, a client's short key is its own; a revoked,
unknown or malformed bearer key answers 401 with WWW-Authenticate: Bearer and sells
nothing; with checkout_require_client = yes an anonymous checkout answers 401 and a
client's is taken; no key appears in any log."""

import glob
import hashlib
import os
import base64
import re
import urllib.request

from harness import Stack, run_tests

DONUT = "CP-502101"


def add_client(t, s, name):
    p = s.restockctl("client", "add", name)
    t.is_(p.returncode, 0, "restockctl client add %s succeeds" % name)
    keys = re.findall(r"^(rsk_[A-Za-z0-9_-]{43})$", p.stdout, re.M)
    t.is_(len(keys), 1, "and prints one key, on a line of its own")
    ident = re.search(r"^client (\d+) %s added" % re.escape(name), p.stdout, re.M)
    t.ok(ident is not None, "and the client's id", p.stdout)
    # Without one (a build without clients), a key of the right form that no
    # client has, so that the tests below still show what such a build does.
    return (int(ident.group(1)) if ident else None), (keys[0] if keys else
                                                      "rsk_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))


def checkout(s, key=None, client=None, sku=DONUT, quantity=1):
    headers = {}
    if key is not None:
        headers["Idempotency-Key"] = key
    if client is not None:
        headers["Authorization"] = "Bearer " + client
    return s.request("POST", "/checkout", {"sku": sku, "quantity": quantity}, headers=headers)


def answer(r):
    return (r.status, r.json().get("remaining"), r.headers.get("Idempotent-Replayed"))


def checkouts_metric(s, result):
    with urllib.request.urlopen(s.info["METRICS_URL"], timeout=10) as r:
        text = r.read().decode()
    m = re.search(r'^restock_checkouts_total\{result="%s"\} (\S+)$' % result, text, re.M)
    return float(m.group(1)) if m else None


def stored_keys(s, key):
    return int(s.sql_value("SELECT COUNT(*) FROM checkout_key WHERE idem_key = '%s'" % key))


def keys_are_hashed(t, s, clients):
    rows = s.sql("SELECT name, HEX(key_hash) FROM api_client")
    stored = {name: digest.lower() for name, digest in rows}
    for name, key in clients.items():
        t.is_(stored.get(name), hashlib.sha256(key.encode()).hexdigest(),
              "%s: what is stored is the SHA-256 of its key" % name)
    dump = "\n".join("\t".join(r) for r in s.sql(
        "SELECT client_id, name, HEX(key_hash), created_at, last_used_at, revoked_at,"
        " active_name FROM api_client"))
    t.ok(not any(key in dump or key[4:] in dump for key in clients.values()),
         "no key is in the api_client table", dump)


def two_clients_one_key(t, s, a, b):
    s.sql("UPDATE product SET stock = 10, reorder_point = 0 WHERE sku = '%s'" % DONUT)
    first_a = checkout(s, "order-1001", a)
    t.is_(answer(first_a), (200, 9, None), "client A's order-1001 sells: 200, remaining 9")
    first_b = checkout(s, "order-1001", b)
    t.is_(answer(first_b), (200, 8, None),
          "client B's order-1001, the same request: its own sale, remaining 8, not a replay")
    t.is_(s.stock(), 8, "two sales: stock 8")
    again_a = checkout(s, "order-1001", a)
    t.is_((again_a.status, again_a.body, again_a.headers.get("Idempotent-Replayed")),
          (200, first_a.body, "true"), "A's retry replays A's answer")
    again_b = checkout(s, "order-1001", b)
    t.is_((again_b.status, again_b.body, again_b.headers.get("Idempotent-Replayed")),
          (200, first_b.body, "true"), "B's retry replays B's answer")
    t.is_(s.stock(), 8, "and nothing more is sold")
    t.is_(stored_keys(s, "order-1001"), 2, "one stored key row per client")

    # A key another client used first, with another request, is not a 422.
    t.is_(answer(checkout(s, "order-2002", b, quantity=3)), (200, 5, None),
          "B's order-2002 of 3 units sells")
    t.is_(answer(checkout(s, "order-2002", a, quantity=1)), (200, 4, None),
          "A's order-2002 of 1 unit sells too: not 422, B's key is B's")
    t.is_(checkout(s, "order-2002", a, quantity=2).status, 422,
          "A's own key with another quantity is still 422")
    t.is_(s.stock(), 4, "stock 4")


def anonymous_keys(t, s, a):
    s.sql("UPDATE product SET stock = 10 WHERE sku = '%s'" % DONUT)
    rows = int(s.sql_value("SELECT COUNT(*) FROM checkout_key"))
    short = checkout(s, "order-1001")
    t.is_(short.status, 400, "an anonymous key of 10 characters answers 400")
    t.ok("at least 16 characters" in short.json().get("error", ""), "saying why", short)
    t.is_(checkout(s, "k" * 15).status, 400, "so does one of 15")
    t.is_((s.stock(), int(s.sql_value("SELECT COUNT(*) FROM checkout_key"))), (10, rows),
          "nothing sold, no key stored")
    t.is_(answer(checkout(s, "k" * 16)), (200, 9, None), "an anonymous key of 16 is taken")
    t.is_(answer(checkout(s, "k" * 16, a)), (200, 8, None),
          "the same key from client A is A's own: another sale")
    t.is_(answer(checkout(s, "k1", a)), (200, 7, None),
          "a client's key may be short: k1 in A's scope sells")
    t.is_(answer(checkout(s)), (200, 6, None), "an anonymous checkout without a key sells")


def bad_bearer(t, s, a, keys):
    s.sql("UPDATE product SET stock = 10 WHERE sku = '%s'" % DONUT)
    rows = int(s.sql_value("SELECT COUNT(*) FROM checkout_key"))
    unknown = "rsk_" + "A" * 43
    for value, what in (("Bearer " + unknown, "an unknown key"),
                        ("Bearer " + a[:-1], "a key cut short"),
                        ("Basic dXNlcjpwYXNz", "another scheme"),
                        ("Bearer", "no key")):
        for key in (None, "bad-bearer-key-0001"):
            r = s.request("POST", "/checkout", {"sku": DONUT},
                          headers=dict({"Authorization": value},
                                       **({"Idempotency-Key": key} if key else {})))
            t.is_(r.status, 401, "%s%s answers 401" % (what, " with an Idempotency-Key"
                                                       if key else ""))
            t.ok(r.headers.get("WWW-Authenticate", "").startswith("Bearer "),
                 "with WWW-Authenticate: Bearer", r.headers)
            t.ok("Authorization" in r.json().get("error", ""), "and a JSON error", r)
            t.ok(unknown not in r.body.decode() and a[:-1] not in r.body.decode(),
                 "that does not quote the key")
    t.is_((s.stock(), int(s.sql_value("SELECT COUNT(*) FROM checkout_key"))), (10, rows),
          "nothing sold, no key stored")

    p = s.restockctl("client", "revoke", "client-a")
    t.is_((p.returncode, "revoked" in p.stdout), (0, True), "restockctl client revoke client-a")
    r = checkout(s, "after-revoke", a)
    t.is_(r.status, 401, "A's key, revoked, answers 401")
    t.is_(r.headers.get("WWW-Authenticate"), 'Bearer realm="restock", error="invalid_token"',
          'with WWW-Authenticate: Bearer ... error="invalid_token"')
    t.is_(r.json(), {"error": "Authorization: the client key is unknown or revoked"},
          "saying the key is unknown or revoked")
    t.is_(checkout(s, None, a).status, 401, "also without an Idempotency-Key")
    t.is_(s.stock(), 10, "nothing sold")
    p = s.restockctl("client", "revoke", "client-a")
    t.is_((p.returncode, "no active client" in p.stderr), (1, True),
          "revoking client-a again by name: there is no active client of that name")
    ident = s.sql_value("SELECT client_id FROM api_client WHERE name = 'client-a'")
    p = s.restockctl("client", "revoke", ident)
    t.is_((p.returncode, "already" in p.stdout), (0, True), "by its id: revoked already, exit 0")
    t.is_(s.restockctl("client", "revoke", "no-such-client").returncode, 1,
          "an unknown client: exit 1")
    t.ok(checkouts_metric(s, "unauthorized") >= 10,
         'restock_checkouts_total{result="unauthorized"} counts the 401s')

    # The name of a revoked client may be given again, to a new key.
    ident, renewed = add_client(t, s, "client-a")
    keys["client-a (renewed)"] = renewed
    t.is_(answer(checkout(s, "order-1001", renewed)), (200, 9, None),
          "a new client-a: its own scope again (order-1001 sells)")


def listing(t, s, keys):
    p = s.restockctl("client", "list")
    t.is_(p.returncode, 0, "restockctl client list succeeds")
    lines = p.stdout.splitlines()
    t.ok(lines and lines[0].split()[:3] == ["id", "name", "created"], "with a header", p.stdout)
    by_name = {}
    for line in lines[1:]:
        by_name.setdefault(line.split()[1], []).append(line)
    t.is_(sorted(by_name), ["client-a", "client-b", "client-c"], "every client, by name")
    t.ok("never" in by_name["client-c"][0], "client-c was never used", by_name)
    t.ok("never" not in by_name["client-b"][0], "client-b's last use is shown", by_name)
    revoked = [ln for ln in by_name["client-a"] if not ln.rstrip().endswith("-")]
    t.ok(len(revoked) == 1 and len(by_name["client-a"]) == 2,
         "two client-a: one revoked, the other active", by_name)
    shown = p.stdout + p.stderr
    shown += s.restockctl("config", "show").stdout + s.restockctl("status").stdout
    t.ok(not any(k in shown or k[4:] in shown for k in keys.values()),
         "no key in restockctl's list, config show or status")


def require_client(t, s, b):
    s.stop("sales")
    s.start("sales", env={"RESTOCK_CHECKOUT_REQUIRE_CLIENT": "yes"})
    s.sql("UPDATE product SET stock = 10 WHERE sku = '%s'" % DONUT)
    r = checkout(s)
    t.is_(r.status, 401, "checkout_require_client = yes: an anonymous checkout answers 401")
    t.is_(r.headers.get("WWW-Authenticate"), 'Bearer realm="restock"',
          "with WWW-Authenticate: Bearer (no error: no key was sent)")
    t.ok("Bearer" in r.json().get("error", ""), "and an error saying what to send", r)
    t.is_(checkout(s, "anonymous-key-0001").status, 401, "a keyed anonymous checkout too")
    t.is_(s.stock(), 10, "nothing sold")
    t.is_(answer(checkout(s, "order-3003", b)), (200, 9, None), "client B's checkout sells")
    t.is_(s.request("GET", "/products/" + DONUT).status, 200, "product reads stay open")
    s.stop("sales")
    s.start("sales")
    t.is_(answer(checkout(s)), (200, 8, None), "back to no: anonymous checkouts sell again")


def no_key_in_logs(t, s, keys):
    found = []
    for path in glob.glob(os.path.join(s.dir, "log", "*")):
        with open(path, errors="replace") as f:
            text = f.read()
        found += ["%s in %s" % (name, os.path.basename(path)) for name, key in keys.items()
                  if key in text or key[4:] in text]
    t.is_(found, [], "no client key appears in any log (nginx's, the programs', MariaDB's)")


def body(t):
    with Stack(t) as s:
        keys = {}
        _, a = add_client(t, s, "client-a")
        _, b = add_client(t, s, "client-b")
        _, keys["client-c"] = add_client(t, s, "client-c")
        keys["client-a"], keys["client-b"] = a, b
        t.is_(s.restockctl("client", "add", "client-b").returncode, 1,
              "a second active client-b is refused")
        t.is_(s.restockctl("client", "add", "123").returncode, 1, "a name of digits is refused")
        two_clients_one_key(t, s, a, b)
        keys_are_hashed(t, s, keys)
        anonymous_keys(t, s, a)
        bad_bearer(t, s, a, keys)
        listing(t, s, keys)
        require_client(t, s, b)
        no_key_in_logs(t, s, keys)


if __name__ == "__main__":
    run_tests(body)
