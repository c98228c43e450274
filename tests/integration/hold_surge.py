"""Integration test of a surge of holds with crashes (issue 20 item 5, ../shared/DESIGN.md
"Carts and holds"): 64 clients hold one hot product (and a cold one beside it now and
then) and buy it with keyed checkouts; of the holds a third are confirmed, a third
released (DELETE), a third left to expire (made due in the database rather than
waited for); meanwhile the responders (restock-sales) and then the worker are killed
with SIGKILL and started again. A request whose connection died has an unknown
outcome: confirms, DELETEs and keyed checkouts are asked again until answered (each
is idempotent), a POST /holds is counted as unknown and any hold it made is found in
the database and left to expire. When every hold has ended: every hold answered 201
ended exactly once, as its client was told (confirmed, released or expired), every
confirm answered 200 and every checkout answered 200 is in sold_total and nothing
else is (no unit sold twice), held is 0, and for every product initial stock +
delivered = stock + held + sold_total (no unit lost or made)."""

import http.client
import os
import threading

from harness import Stack, alive, run_tests
from hold_common import (add_product, expire_now, hex_id, ids_in, ledger, products,
                         statuses)

CLIENTS, ROUNDS = 64, 6
HOT, COLD = "SURGE-HOT", ["SURGE-COLD-%d" % i for i in range(3)]
FATES = ("confirm", "release", "expire")
ENV = {"RESTOCK_FACTORY_ARGS": "--silent", "RESTOCK_SWEEP_INTERVAL": "1"}


class Client:
    """One client's requests, each on a connection of its own: a killed responder
    fails the requests in flight and nothing more."""

    def __init__(self, s):
        self.s = s

    def once(self, method, path, body=None, key=None):
        """(status, JSON body, Idempotent-Replayed), or (None, None, None) when the
        answer is unknown: the connection failed, or nginx found no responder (its
        502 and 504, which it answers 503, as restock-sales does without its
        database: a 503 is taken as unknown too)."""
        h = {"Idempotency-Key": key} if key else {}
        try:
            r = self.s.request(method, path, body, headers=h, timeout=30)
        except (OSError, http.client.HTTPException):
            return None, None, None
        if r.status in (502, 503, 504):
            return None, None, None
        try:
            return r.status, r.json(), r.headers.get("Idempotent-Replayed")
        except ValueError:
            return r.status, None, None

    def until_answered(self, method, path, body=None, key=None):
        """Asks again (the request is idempotent) until a definite answer, each time
        once restock-sales answers its health check again (it was killed, or its
        database connection is back); (None, None, None) when it does not come back
        within 30 s, or after 20 tries."""
        for _ in range(20):
            got = self.once(method, path, body, key)
            if got[0] is not None:
                return got
            if not self.s.wait_until(self.responder_back, timeout=30):
                break
        return None, None, None

    def responder_back(self):
        try:
            return self.s.request("GET", "/healthz", timeout=5).status == 200
        except (OSError, http.client.HTTPException):
            return False


def alive_component(s, name):
    """Whether the component's process (its pid file) still runs."""
    try:
        with open(os.path.join(s.dir, "pid", name + ".pid")) as f:
            return alive(int(f.read()))
    except (OSError, ValueError):
        return False


def body(t):
    with Stack(t, env=ENV) as s:
        add_product(s, HOT, 400)
        for sku in COLD:
            add_product(s, sku, 150)
        start = ledger(s)
        before = products(s)
        lock = threading.Lock()
        told = {}          # hold id -> (fate, lines, answer of its confirm or DELETE)
        unknown = []       # POST /holds whose outcome is unknown
        refused = [0]      # POST /holds answered 409
        bought = {}        # sku -> units of checkouts answered 200
        due = []           # hold ids to make due (the main thread does)
        done = [0]         # rounds finished
        progress = threading.Condition(lock)
        odd = []           # answers no request should get
        sales = {}         # key -> (sku, replayed, remaining) of each checkout answered 200
        unanswered = {}    # sku -> checkouts never answered (the responder gone for good)

        def client(c):
            try:
                rounds(c)
            except Exception as e:  # a thread's crash must fail the test, not vanish
                with lock:
                    odd.append(("client %d" % c, repr(e)))

        def rounds(c):
            cl = Client(s)
            for k in range(ROUNDS):
                fate = FATES[(c + k) % 3]
                lines = [{"sku": HOT, "quantity": 1 + k % 2}]
                if (c + k) % 4 == 0:
                    lines.append({"sku": COLD[c % 3], "quantity": 1})
                status, j, _ = cl.once("POST", "/holds", {"lines": lines, "ttl": 600})
                if status == 201:
                    hid = j["hold"]
                    if fate == "expire":
                        answer = None
                        with lock:
                            due.append(hid)
                    elif fate == "confirm":
                        answer = cl.until_answered("POST", "/holds/%s/confirm" % hid)
                    else:
                        answer = cl.until_answered("DELETE", "/holds/" + hid)
                    with lock:
                        told[hid] = (fate, [(x["sku"], x["quantity"]) for x in lines], answer)
                elif status == 409:
                    with lock:
                        refused[0] += 1
                elif status is None:
                    with lock:
                        unknown.append(lines)
                else:
                    with lock:
                        odd.append(("POST /holds", status, j))
                sku = COLD[(c + k) % 3] if k % 3 == 0 else HOT
                key = "surge-checkout-%02d-%02d" % (c, k)
                status, j, replayed = cl.until_answered(
                    "POST", "/checkout", {"sku": sku, "quantity": 1}, key=key)
                with lock:
                    if status == 200:
                        bought[sku] = bought.get(sku, 0) + 1
                        sales[key] = (sku, replayed, j.get("remaining"))
                    elif status is None:
                        unanswered[sku] = unanswered.get(sku, 0) + 1
                        odd.append(("checkout never answered", key))
                    elif status != 409:
                        odd.append(("checkout", status, j))
                    done[0] += 1
                    progress.notify_all()

        def flush():
            with lock:
                batch = list(due)
                del due[:]
            if batch:
                expire_now(s, batch)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for th in threads:
            th.start()
        total = CLIENTS * ROUNDS
        killed = []
        while any(th.is_alive() for th in threads):
            flush()
            if not killed and done[0] >= total // 3:
                s.kill("sales")
                killed.append(("sales", done[0]))
                s.start("sales")
            elif len(killed) == 1 and done[0] >= 2 * total // 3:
                s.kill("worker")
                killed.append(("worker", done[0]))
                s.start("worker")
            with progress:
                progress.wait(0.1)  # the next round finished, or a flush is due
        for th in threads:
            th.join()
        flush()
        t.is_([k[0] for k in killed], ["sales", "worker"],
              "the responders, then the worker, were killed (kill -9) during the surge "
              "(after %s of %d rounds)" % ([k[1] for k in killed], total))
        t.ok(not odd, "every answer was one the contract allows", (len(odd), odd[:5]))

        # Holds no client knows of (their POST's answer was lost) expire too.
        every = [r[0] for r in s.sql("SELECT LOWER(HEX(hold_id)) FROM hold")]
        known = {hex_id(h) for h in told}
        orphans = [h for h in every if h not in known]
        # And so do those whose confirm or DELETE was never answered (only when the
        # responder died for good): whatever became of them, they end.
        expire_now(s, orphans + [h for h, v in told.items() if v[2] and v[2][0] is None])
        t.ok(len(orphans) <= len(unknown),
             "the holds no client was told of (%d) are at most the POSTs answered unknown (%d)"
             % (len(orphans), len(unknown)))
        t.ok(s.wait_until(lambda: s.sql_value("SELECT COUNT(*) FROM hold WHERE status = 0") == "0",
                          timeout=90), "every hold ends")

        ended = statuses(s, list(told))
        want, wrong = {}, []
        for hid, (fate, lines, answer) in told.items():
            if fate == "expire":
                want[hid] = "expired"
            elif answer and answer[0] == 200:
                want[hid] = "confirmed" if fate == "confirm" else "released"
            else:
                wrong.append((hid, fate, answer))
        t.is_(wrong, [], "every confirm and DELETE of a held hold answered 200")
        t.is_({h: ended.get(h) for h in want}, want,
              "every hold answered 201 ended once, as its client was told: confirmed, released"
              " or expired")
        rows = s.sql("SELECT LOWER(HEX(l.hold_id)), p.sku, l.quantity FROM hold_line l JOIN"
                     " product p ON p.product_id = l.product_id WHERE l.hold_id IN (%s)"
                     " ORDER BY l.hold_id, l.line" % ids_in(list(told)))
        got_lines = {}
        for h, sku, q in rows:
            got_lines.setdefault(h, []).append((sku, int(q)))
        t.ok(all(got_lines.get(hex_id(h)) == v[1] for h, v in told.items()),
             "each hold's lines are those its client asked for")

        confirmed = [h for h in told if ended.get(h) == "confirmed"]
        t.is_(s.sql_value("SELECT COUNT(*) FROM hold WHERE status = 1"), str(len(confirmed)),
              "no hold was confirmed but those whose confirm answered 200")
        sold = dict(bought)
        for h in confirmed:
            for sku, q in told[h][1]:
                sold[sku] = sold.get(sku, 0) + q
        after = products(s)
        skus = [HOT] + COLD
        grew = {k: after[k][2] - before[k][2] for k in skus}
        if not t.ok(all(sold.get(k, 0) <= grew[k] <= sold.get(k, 0) + unanswered.get(k, 0)
                        for k in skus),
                    "sold_total grew by the checkouts answered 200 and the confirms answered"
                    " 200 (and at most the checkouts never answered): no unit sold twice, none"
                    " told sold and not sold", (grew, sold, unanswered)):
            stored = {r[0] for r in s.sql("SELECT idem_key FROM checkout_key")}
            t.diag("checkouts answered 200 without a stored key: %r" % sorted(
                (k, v) for k, v in sales.items() if k not in stored))
            t.diag("checkouts answered 200 replayed: %r" % sorted(
                (k, v) for k, v in sales.items() if v[1]))
        t.is_({k: after[k][1] for k in skus}, {k: 0 for k in skus}, "held is 0 everywhere")
        t.ok(all(v[0] >= 0 for v in after.values()), "no stock below 0")
        t.is_(ledger(s), start,
              "for every product, initial stock + delivered = stock + held + sold_total")
        t.ok(alive_component(s, "sales") and alive_component(s, "worker"),
             "the restarted responders and worker still run: none crashed")
        counts = {f: sum(1 for v in told.values() if v[0] == f) for f in FATES}
        t.diag("holds %d (refused %d), confirmed %d, released %d, expired %d (+%d unknown to"
               " their clients), unknown outcomes %d; checkouts sold %d"
               % (len(told), refused[0], counts["confirm"], counts["release"],
                  counts["expire"], len(orphans), len(unknown), sum(bought.values())))


if __name__ == "__main__":
    run_tests(body)
