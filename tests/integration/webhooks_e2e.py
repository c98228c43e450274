"""End-to-end test of restock's webhooks (issue 22, "Done when"; docs/design.md
§4.14) on the real stack, verified by the Standard Webhooks reference library
(npm standardwebhooks in tests/webhooks/consumer.js): every event comes from a real
flow (sales, holds, the factory simulator's callbacks and errors, a silent factory,
`restockctl orders fulfil`), every endpoint is registered with `restockctl webhook
add`, and what the consumer recorded is what is asserted.

1. Every one of the ten types delivered to an endpoint of every type, each
   delivery verified by the library, each webhook-id once (repeats counted), the
   body's type and data as §4.14 says, checked against the database; an endpoint
   subscribed to a list gets those types only.
2. Outage: the consumer down (connection refused) through several retries, then
   up: every event arrives, once by webhook-id, verified, in the order made.
3. Rotation while events flow: the consumer holds the old secret only, then the
   new one only; not one delivery fails verification.
4. kill -9 of the worker while 60 hold.expired deliveries are in flight: after a
   restart every webhook-id arrives, verified (repeats counted and shown).
5. Forged and stale deliveries (a recorded delivery replayed with one byte of its
   body changed, signed with another secret, or re-signed 10 minutes old) are
   rejected by the library.
6. A dead endpoint (500 to everything) does not hold back the factory, the mail
   queue or a healthy endpoint: all of them are served while its message waits.
7. With real events: a 410 disables the endpoint (operators told), a
   Retry-After is honoured.
And the README's consumer example, copied from the README as it stands, run
with node and the library: a real delivery handled once, its repeat dropped, a
forgery refused."""

import collections
import datetime
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request

from harness import SRCDIR, Stack, free_port, run_tests, spawn, stop_process
from hold_common import add_product, expire_now, hold, status_of
from inbox import AD_MANAGER, wait_mails
from replenish_common import DONUT, factory_requests, orders, sell_out, sim_config
from webhook_consumer import NODE, Consumer, configure, no_secret_logged
from webhook_delivery import due_in, message, row, wait_state
from webhook_events import DATA_FIELDS, KIND_TYPES, TYPES, all_taken, events, webhook_id
from webhook_sig import Signer, installed, key_secret

FAILING = "CP-502103"  # the factory answers 422: its order dies (order.failed)
ENV = {"RESTOCK_SWEEP_INTERVAL": "1", "RESTOCK_WATCH_INTERVAL": "1",
       "RESTOCK_CALLBACK_TIMEOUT": "3", "RESTOCK_FACTORY_ARGS": "--delay 0.5"}
# Short retries, in the configuration file (a reload applies them).
SETTINGS = {"webhook_allow": "loopback", "backoff_min": "1", "backoff_max": "2",
            "sweep_interval": "1", "log_level": "debug"}
KILL_HOLDS = 60


class Endpoint:
    """An endpoint registered with `restockctl webhook add` for the consumer's
    path, with the outbox events it can hear: those written after it (every event
    before it was taken when it was added)."""

    def __init__(self, t, s, c, path, types=None):
        t.ok(s.wait_until(lambda: all_taken(s), timeout=60),
             "%s: every earlier event is taken before it is added" % path)
        self.since = len(events(s))
        self.s, self.c, self.path, self.types = s, c, path, types
        more = ("--events", ",".join(types)) if types else ()
        self.id, self.secret = c.register(t, path, *more)

    def expected(self):
        """(webhook-id, type, event) of every message the fan-out made for it, in
        the order they were made: the events' order (outbox seq), then the type's
        (the fan-out's)."""
        out = []
        for e in events(self.s)[self.since:]:
            for kt in sorted(KIND_TYPES[e["kind"]], key=TYPES.index):
                if self.types is None or kt in self.types:
                    out.append((webhook_id(e["event"], self.id, kt), kt, e))
        return out

    def records(self):
        return self.c.records(self.path)

    def arrived(self, ids=None):
        """Whether every expected webhook-id (or those of ids) was recorded."""
        got = {r["id"] for r in self.records()}
        want = ids if ids is not None else [w for w, _, _ in self.expected()]
        return all(w in got for w in want)

    def wait_all(self, timeout=60):
        """Waits until every event is taken and each of its messages arrived."""
        return self.s.wait_until(lambda: all_taken(self.s) and self.arrived(), timeout=timeout,
                                 interval=0.2)


def repeats(records):
    """{webhook-id: times} of the ids recorded more than once."""
    return {k: n for k, n in collections.Counter(r["id"] for r in records).items() if n > 1}


def unverified(records):
    return [(r["id"], r["type"], r["error"]) for r in records if not r["verified"]]


def skus(s):
    return {r[0]: r[1] for r in s.sql("SELECT LOWER(HEX(product_id)), sku FROM product")}


def first_message(ep, types=None):
    """The first expected webhook-id of ep (of one of types)."""
    return next((w for w, kt, _ in ep.expected() if types is None or kt in types), None)


def attempts(s, wid):
    return int(message(s, wid)[1].get("attempts", 0) or 0)


def check_data(s, record, want):
    """What is wrong with a delivered body against §4.14 and the database."""
    wid, kt, e = want
    body = json.loads(record["body"])
    data = body.get("data", {})
    created = datetime.datetime.fromtimestamp(e["created"] / 1e6, datetime.timezone.utc)
    bad = []
    checks = {
        "type": body.get("type") == kt == record["type"],
        "timestamp": body.get("timestamp") == created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "fields": set(data) == DATA_FIELDS[kt],
        "event_id": data.get("event_id") == e["event"],
    }
    if kt == "hold.expired":
        checks["hold_id"] = data.get("hold_id") == e["hold"]
        checks["quantity"] = data.get("quantity") == e["quantity"]
    else:
        product = skus(s).get((e["product"] or "").replace("-", ""))
        checks["order_id"] = data.get("order_id") == e["order"]
        checks["product_id"] = data.get("product_id") == e["product"]
        checks["sku"] = data.get("sku") == product
        if kt == "order.fulfilled":
            checks["delivered"] = data.get("delivered") == e["quantity"]
        elif kt == "delivery.refused":
            checks["claimed"] = data.get("claimed") == e["quantity"]
        else:
            checks["quantity"] = data.get("quantity") == e["quantity"]
    bad = [k for k, ok in checks.items() if not ok]
    return (wid, kt, bad, body) if bad else None


def test_every_type(t, s, c):
    every = Endpoint(t, s, c, "/all")
    listed = Endpoint(t, s, c, "/list", ["stock.sold_out", "order.sent"])
    # The donut: its order opens at the sell-out, is sent, its callback never
    # comes (overdue), a delivery of more than ordered is refused, then it is
    # fulfilled by hand.
    sim_config(s, silent=True)
    t.is_(sell_out(s, DONUT).status, 409, "the donut sells out: its order opens")
    t.ok(s.wait_until(lambda: events(s, "order_overdue"), timeout=60),
         "  sent to a silent factory, it becomes overdue")
    sim_config(s, silent=False)
    donut = orders(s, DONUT)[-1]
    p = s.restockctl("orders", "fulfil", donut["id"], str(donut["quantity"] + 1000))
    t.ok(events(s, "delivery_refused"), "  a delivery of more than ordered is refused",
         p.stdout + p.stderr)
    p = s.restockctl("orders", "fulfil", donut["id"], str(donut["quantity"]))
    t.ok(p.returncode == 0, "  restockctl orders fulfil delivers it", p.stderr)
    sim_config(s, answer_status=422)
    t.is_(sell_out(s, FAILING).status, 409, "%s sells out; the factory answers 422" % FAILING)
    t.ok(s.wait_until(lambda: events(s, "order_failed"), timeout=60), "  its order fails")
    sim_config(s, answer_status=0)
    sku = add_product(s, "WE-HOLD", 5)
    r = hold(s, [(sku, 2)], ttl=60)
    t.is_(r.status, 201, "a hold of 2 units")
    expire_now(s, [r.json().get("hold")])
    t.ok(s.wait_until(lambda: events(s, "hold_expired"), timeout=30), "  it expires")

    t.ok(every.wait_all(), "every message of every event arrived at the endpoint of every type",
         len(every.records()))
    got = every.records()
    want = every.expected()
    t.is_(sorted({r["type"] for r in got}), sorted(TYPES),
          "  each of the ten types at least once")
    t.is_(unverified(got), [], "  every delivery verified by the reference library")
    dups = repeats(got)
    t.diag("repeated webhook-ids at the endpoint of every type: %d %s" % (len(dups), dups))
    t.is_(dups, {}, "  each webhook-id delivered once")
    t.is_(sorted({r["id"] for r in got}), sorted(w for w, _, _ in want),
          "  exactly the webhook-ids of its events and types, nothing else")
    first = {}
    for r in got:
        first.setdefault(r["id"], r)
    bad = [b for b in (check_data(s, first[w[0]], w) for w in want if w[0] in first) if b]
    t.is_(bad[:3], [], "  each body's type, timestamp and data (event, order, product, sku, "
          "hold, quantities) as the database has them")
    listed.wait_all()
    got = listed.records()
    t.ok(got and {r["type"] for r in got} == {"stock.sold_out", "order.sent"} and
         sorted(r["id"] for r in got) == sorted(w for w, _, _ in listed.expected()) and
         not unverified(got),
         "the endpoint subscribed to stock.sold_out and order.sent got those only, verified",
         [(r["type"], r["verified"]) for r in got])
    return every


def test_dead_endpoint(t, s, c):
    """Items 6 and 7: one sell-out heard by a healthy endpoint, a dead one (500),
    one answering 410, one answering 503 with Retry-After."""
    healthy = Endpoint(t, s, c, "/healthy", ["stock.sold_out", "order.opened", "order.sent"])
    dead = Endpoint(t, s, c, "/dead", ["stock.sold_out", "order.opened"])
    gone = Endpoint(t, s, c, "/gone", ["stock.sold_out"])
    ra = Endpoint(t, s, c, "/ra", ["stock.sold_out"])
    c.steer("/dead", status=500)
    c.steer("/gone", status=410)
    c.steer("/ra", status=503, retry_after="5")
    sku = add_product(s, "WE-DEAD", 2, ad=True)
    t.is_(sell_out(s, sku).status, 409, "%s sells out while one endpoint answers 500" % sku)
    t.ok(s.wait_until(lambda: factory_requests(s, sku), timeout=30),
         "  the factory gets its order")
    t.ok(wait_mails(s, kind="ad_pause", to=AD_MANAGER, containing=sku, timeout=30),
         "  the ad manager's pause email arrives")
    t.ok(healthy.wait_all(), "  the healthy endpoint gets its events",
         [r["type"] for r in healthy.records()])
    wid = first_message(dead)
    t.ok(s.wait_until(lambda: attempts(s, wid) >= 2), "  the dead endpoint's message is retried",
         message(s, wid))
    state, head = message(s, wid)
    t.ok(state in ("deferred", "active") and "answered HTTP 500" in head.get("last-error", "") and
         all(r["status"] == 500 for r in dead.records()),
         "  all while the dead endpoint's first message is still waiting (deferred), "
         "never delivered", (state, head))
    later = [w for w, _, _ in dead.expected()[1:]]
    t.ok(later and not any(r["id"] in later for r in dead.records()) and
         all(message(s, w)[0] in ("incoming", "deferred", "active") for w in later),
         "  its later message waits behind it", [message(s, w)[0] for w, _, _ in dead.expected()])

    # 410 with a real event: disabled (gone), operators told.
    t.ok(s.wait_until(lambda: row(s, gone.id)[0] == "2"), "a 410 to a real event: the endpoint "
         "is disabled", row(s, gone.id))
    p = s.restockctl("webhook", "list")
    t.ok(any(l.startswith(gone.id) and " gone " in l for l in p.stdout.splitlines()),
         "  webhook list says gone", p.stdout)
    t.ok(wait_mails(s, kind="webhook_disabled", containing=gone.id, timeout=30),
         "  the operators' email arrives")
    # Retry-After with a real event: due 5 s after the answer (backoff_max is 2).
    got = c.wait_records("/ra", 1)
    rid = first_message(ra)
    wait, head = due_in(s, rid, got[-1])  # the last attempt's (one comes every 5 s)
    t.ok(4 <= wait <= 6.5 and
         "(Retry-After: 5 s)" in head.get("last-error", ""),
         "503 with Retry-After: 5 to a real event: retried 5 s later", (wait, head))
    c.steer("/ra", status=200, retry_after=None)
    t.ok(wait_state(s, rid, "done"), "  then delivered")

    c.steer("/dead", status=200)
    t.ok(dead.wait_all(), "the dead endpoint answering 200 again gets its events")
    t.is_(unverified(healthy.records() + dead.records() + ra.records()), [],
          "  every delivery to these endpoints verified")


def test_outage(t, s, c, every):
    out = Endpoint(t, s, c, "/out", ["stock.reorder_point", "stock.sold_out", "order.opened",
                                     "order.sent", "stock.arrived", "order.fulfilled"])
    c.down()
    sku = add_product(s, "WE-OUT", 2)
    t.is_(sell_out(s, sku).status, 409, "the consumer down (connection refused): %s sells out"
          % sku)
    t.ok(s.wait_until(lambda: orders(s, sku) and orders(s, sku)[-1]["status"] == "fulfilled",
                      timeout=60), "  its order is sent and its delivery arrives meanwhile")
    first = first_message(out)
    t.ok(s.wait_until(lambda: all_taken(s) and attempts(s, first) >= 3, timeout=60),
         "  the endpoint's first message is retried 3 times (deferred/ says so)",
         message(s, first))
    t.is_(len(out.records()), 0, "  nothing arrived")
    c.up()
    t.ok(out.wait_all(), "up again: every event arrives")
    want = [w for w, _, _ in out.expected()]
    got = out.records()
    t.is_(len(want), 6, "  6 messages: 3 of the sell-out, order.sent, 2 of the arrival")
    t.is_(repeats(got), {}, "  each once by webhook-id")
    t.is_(unverified(got), [], "  all verified")
    t.is_([r["id"] for r in got], want, "  in the order they were made",)
    t.ok(every.wait_all(), "the endpoint of every type gets them too")
    t.is_(unverified(every.records()), [], "  verified")


def flow(s, sku, stop, made):
    """Holds that expire one after the other until stop is set: hold.expired
    events flowing (each hold made once the previous one expired)."""
    while not stop.is_set():
        r = hold(s, [(sku, 1)], ttl=60)
        if r.status != 201:
            made.append(("failed", r.status))
            return
        hid = r.json()["hold"]
        expire_now(s, [hid])
        made.append(hid)
        # Expired before the next, and before the flow ends: no event of the
        # flow is written after it (another endpoint would hear it).
        s.wait_until(lambda: status_of(s, hid) == "expired")


def test_rotation(t, s, c):
    rot = Endpoint(t, s, c, "/rot", ["hold.expired"])
    sku = add_product(s, "WE-ROT", 1000)
    stop, made = threading.Event(), []
    thread = threading.Thread(target=flow, args=(s, sku, stop, made))
    thread.start()
    try:
        t.ok(s.wait_until(lambda: len(rot.records()) >= 3, timeout=60),
             "hold.expired events flow to the endpoint, verified with its secret")
        p = s.restockctl("webhook", "rotate", rot.id)
        new = re.search(r"^(whsec_\S+)$", p.stdout, re.M)
        t.ok(p.returncode == 0 and new, "webhook rotate while they flow", p.stderr)
        n = len(rot.records())
        t.ok(s.wait_until(lambda: len([r for r in rot.records()[n:]
                                       if len(r["signature"].split()) == 2]) >= 3, timeout=60),
             "  deliveries carry two signatures; the consumer holds the old secret only")
        c.steer("/rot", secrets=[new.group(1)])
        n = len(rot.records())
        t.ok(s.wait_until(lambda: len(rot.records()) >= n + 3, timeout=60),
             "  then the consumer holds the new secret only, and events keep arriving")
    finally:
        stop.set()
        thread.join()
    t.ok(not any(isinstance(h, tuple) for h in made), "every hold of the flow was made", made)
    t.ok(rot.wait_all(), "every event of the flow arrived (%d)" % len(made))
    got = rot.records()
    t.ok(len(got) >= 9 and not unverified(got),
         "not one delivery failed verification, before, during or after the rotation "
         "(%d deliveries)" % len(got), unverified(got))
    p = s.restockctl("webhook", "disable", rot.id)
    t.ok(p.returncode == 0, "the rotation's endpoint disabled (its test is over)", p.stderr)


def test_kill(t, s, c, every):
    slow = Endpoint(t, s, c, "/slow", ["hold.expired"])
    c.steer("/slow", delay_ms=150)
    sku = add_product(s, "WE-KILL", KILL_HOLDS)
    ids = []
    for _ in range(KILL_HOLDS):
        r = hold(s, [(sku, 1)], ttl=60)
        ids.append(r.json().get("hold") if r.status == 201 else None)
    t.ok(all(ids), "%d holds of one unit each" % KILL_HOLDS)
    expire_now(s, ids)
    t.ok(s.wait_until(lambda: len(slow.records()) >= 10, timeout=60),
         "they expire at once; deliveries answered slowly (150 ms each) begin")
    s.kill("worker")
    before = {r["id"] for r in slow.records()}
    t.ok(len(before) < KILL_HOLDS, "kill -9 of the worker with %d of %d delivered"
         % (len(before), KILL_HOLDS))
    s.start("worker")
    t.ok(slow.wait_all(timeout=90), "restarted, every webhook-id arrives")
    got = slow.records()
    want = [w for w, _, _ in slow.expected()]
    t.is_(len(want), KILL_HOLDS, "  one per hold")
    t.is_(sorted({r["id"] for r in got}), sorted(want), "  exactly those ids")
    t.is_(unverified(got), [], "  all verified")
    dups = repeats(got)
    t.diag("kill -9: %d deliveries of %d webhook-ids; repeated (same id, at least once): %s"
           % (len(got), len(want), dups or "none"))
    t.ok(all(n <= 2 for n in dups.values()), "  a repeat at most once per id (the one in flight)",
         dups)
    t.ok(every.wait_all(), "the endpoint of every type got them too")
    t.is_(unverified(every.records()), [], "  verified")


def post(url, record, body=None, headers=None):
    """POSTs a recorded delivery again, as an attacker could; the answer's status."""
    h = {"Content-Type": "application/json", "webhook-id": record["id"],
         "webhook-timestamp": record["timestamp"], "webhook-signature": record["signature"]}
    h.update(headers or {})
    req = urllib.request.Request(url, data=body or record["body"].encode(), headers=h,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def replay(c, path, record, body=None, headers=None):
    """A recorded delivery replayed to the consumer's path: its record of it."""
    post(c.url(path), record, body, headers)
    return c.records(path)[-1]


def one_byte_changed(raw):
    return raw[:-2] + (b"]" if raw[-2:-1] != b"]" else b")") + raw[-1:]


def test_forged(t, s, c, every):
    record = every.records()[-1]
    c.steer("/replay", secrets=[every.secret])
    r = replay(c, "/replay", record)
    t.ok(r["verified"], "a recorded delivery replayed as it was verifies (the control)", r)
    raw = record["body"].encode()
    r = replay(c, "/replay", record, body=one_byte_changed(raw))
    t.ok(not r["verified"] and r["error"] == "No matching signature found",
         "its body changed by one byte: rejected by the library", r["error"])
    signer = Signer()
    try:
        other = signer.sign(record["id"], record["timestamp"], raw, key_secret(32))
        r = replay(c, "/replay", record, headers={"webhook-signature": other})
        t.ok(not r["verified"] and r["error"] == "No matching signature found",
             "signed with another secret: rejected", r["error"])
        old = str(int(time.time()) - 600)
        resigned = signer.sign(record["id"], old, raw, every.secret)
        r = replay(c, "/replay", record,
                   headers={"webhook-timestamp": old, "webhook-signature": resigned})
        t.ok(not r["verified"] and r["error"] == "Message timestamp too old",
             "a timestamp 10 minutes old, signed correctly: rejected as stale", r["error"])
    finally:
        status, errors = signer.close()
    t.ok(status == 0, "webhook_sign ended well", errors)


def readme_example(t, s, every):
    """The README's consumer example, as it stands, run with Debian's node and the
    library: a real delivery handled once, its replay dropped, a forgery refused."""
    with open(os.path.join(SRCDIR, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    code = next((b for b in re.findall(r"\n  ```js\n(.*?)\n  ```\n", readme, re.S)
                 if 'require("standardwebhooks")' in b), None)
    t.ok(code, "the README has a consumer example on standardwebhooks")
    if not code:
        return
    port = free_port()
    handled = os.path.join(s.dir, "readme-handled.jsonl")
    open(handled, "w").close()
    path = os.path.join(s.dir, "readme-consumer.js")
    with open(path, "w") as f:
        f.write('const handle = (e) => require("node:fs").appendFileSync(%s, JSON.stringify(e)'
                ' + "\\n");\n' % json.dumps(handled))
        f.write(re.sub(r"^  ", "", code, flags=re.M).replace(".listen(8000)",
                                                            ".listen(%d)" % port))
    env = dict(os.environ, RESTOCK_SECRET=every.secret,
               NODE_PATH=os.path.join(SRCDIR, "tests", "webhooks", "node_modules"))
    proc = spawn([NODE, path], os.path.join(s.dir, "log", "readme-consumer.log"), env)
    try:
        url = "http://127.0.0.1:%d/" % port
        record = every.records()[-1]
        up = s.wait_until(lambda: proc.poll() is not None or listening(port))
        t.ok(up and proc.poll() is None, "the example starts")
        got = [post(url, record), post(url, record),
               post(url, record, body=one_byte_changed(record["body"].encode()))]
        with open(handled) as f:
            events_handled = [json.loads(line) for line in f]
        t.ok(got == [204, 204, 400] and len(events_handled) == 1 and
             events_handled[0]["type"] == record["type"],
             "  a real delivery is handled once (204), its repeat dropped (204), a forgery "
             "refused (400)", (got, events_handled))
    finally:
        stop_process(proc)


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def body(t):
    if not installed(t):
        return
    with Stack(t, env=ENV) as s:
        configure(s, **SETTINGS)
        c = Consumer(s)
        try:
            every = test_every_type(t, s, c)
            test_dead_endpoint(t, s, c)
            test_outage(t, s, c, every)
            test_rotation(t, s, c)
            test_kill(t, s, c, every)
            test_forged(t, s, c, every)
            readme_example(t, s, every)
            no_secret_logged(t, s)
        finally:
            c.close()


if __name__ == "__main__":
    run_tests(body)
