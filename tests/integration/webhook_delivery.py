"""Integration test of webhook delivery (issue 22, item 3; docs/design.md §4.14) on
the real stack: the worker's queue `webhook` POSTs each message to its endpoint,
signed with its secret, and the test consumer (tests/webhooks/consumer.js) verifies
every delivery with the Standard Webhooks reference library (npm standardwebhooks).
Messages are put as `restockctl webhook ping` puts them (the events' fan-out is
another part's). What a user sees is asserted: the ping's exit and words, the
consumer's records (id, headers, body, the library's verdict), the spool message's
state, attempts, due time and reasons, the endpoint's row and `webhook list`, the
operators' emails, the worker's metrics.

Covered: 2xx delivered and verified (a delivery signed with another secret is
rejected by the library); one endpoint's events one at a time and in order, a slow
endpoint delaying neither another endpoint nor the mail queue; 410 disables the
endpoint (operators told once), its messages wait unsent and go once it is enabled;
Retry-After in seconds and as an HTTP-date honoured, at least 1 s, at most
backoff_max x 12;
rotation verified with the old and with the new secret; a consumer that is down
(connection refused) gets the event once it is up; an endpoint failing longer than
webhook_disable_after disabled (operators told once); webhook_lifetime -> dead with
its reason -> operators told -> `dlq redrive` delivers it with the same webhook-id;
no webhook_key: the worker starts and deliveries wait saying why (also in
`restockctl status`), a malformed one stops the start; an endpoint no longer in the
database: dead at once; egress refused without webhook_allow; the metrics."""

import email.utils
import json
import os
import re
import urllib.request

from harness import Stack, run_tests
from inbox import inbox, wait_mails
from webhook_consumer import Consumer, configure, no_secret_logged

STATES = ("incoming", "active", "deferred", "dead", "done")
WID = re.compile(r"^ping (msg_[A-Za-z0-9_-]{44}) queued for webhook endpoint ", re.M)
# The stack's own settings, in its configuration file so that a reload changes
# them (environment variables would win over the file).
SETTINGS = {"webhook_allow": "loopback", "backoff_min": "1", "backoff_max": "1",
            "webhook_timeout": "30", "log_level": "debug"}


def ping(t, s, endpoint, wait="0"):
    p = s.restockctl("webhook", "ping", endpoint, "--wait", wait)
    m = WID.search(p.stdout)
    if not m:
        t.diag("ping %s: %s" % (endpoint, p.stdout + p.stderr))
    return p, (m.group(1) if m else None)


def message(s, wid):
    """(state, headers) of a webhook message, wherever it is; (None, {})."""
    for _ in range(50):
        for state in STATES:
            try:
                with open(os.path.join(s.info["SPOOL_DIR"], "webhook", state, wid), "rb") as f:
                    head = f.read().partition(b"\n\n")[0].decode("utf-8", "replace")
            except FileNotFoundError:
                continue
            headers = {}
            for line in head.splitlines()[1:]:
                key, _, value = line.partition(": ")
                headers[key] = value
            return state, headers
    return None, {}


def wait_state(s, wid, state, timeout=30):
    return s.wait_until(lambda: message(s, wid)[0] == state, timeout=timeout)


def row(s, endpoint):
    rows = s.sql("SELECT status, IFNULL(disabled_reason, 'NULL'), failing_since IS NOT NULL"
                 " FROM webhook_endpoint WHERE endpoint_id = UNHEX(REPLACE('%s', '-', ''))"
                 % endpoint)
    return rows[0] if rows else None


def metrics(s):
    with urllib.request.urlopen(s.info["METRICS_URL"], timeout=10) as r:
        return r.read().decode()


def metric(text, name, **labels):
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^%s\{(.*)\} (\S+)$" % name, line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return None


def test_delivered(t, s, c):
    a, secret = c.register(t, "/a")
    p, wid = ping(t, s, a, "30")
    t.ok(p.returncode == 0 and p.stdout.rstrip().endswith("delivered") and wid,
         "webhook ping A --wait: queued, then delivered, exit 0", p.stdout + p.stderr)
    got = c.records("/a")
    t.is_(len(got), 1, "the consumer got one delivery")
    if not got:
        return a, secret
    r = got[0]
    t.ok(r["verified"] and r["error"] is None,
         "the reference library verified its signature with the endpoint's secret", r)
    t.is_(r["id"], wid, "its webhook-id is the message's id, as the ping printed it")
    t.ok(abs(int(r["timestamp"]) - r["at"]) < 60, "its webhook-timestamp is the attempt's time")
    t.ok(r["headers"].get("user-agent", "").startswith("restock-webhook/") and
         r["headers"].get("content-type") == "application/json",
         "User-Agent restock-webhook/<version>, Content-Type application/json", r["headers"])
    body = json.loads(r["body"])
    t.ok(body["type"] == "ping" and body["data"]["endpoint_id"] == a and
         re.match(r"^[0-9a-f-]{36}$", body["data"]["event_id"]) and
         re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", body["timestamp"]),
         "the body: type ping, data.event_id and endpoint_id, an RFC 3339 UTC timestamp", body)
    t.is_(message(s, wid)[0], "done", "the message is in done/")

    c.steer("/a", secrets=["whsec_" + "A" * 43 + "="])
    p, wid2 = ping(t, s, a, "30")
    got = c.wait_records("/a", 2)
    t.ok(p.returncode == 0 and len(got) == 2 and not got[1]["verified"] and
         "signature" in (got[1]["error"] or "").lower(),
         "checked against another secret, the library rejects the delivery", got[-1:])
    c.steer("/a", secrets=[secret])
    return a, secret


def test_order_slow_gone(t, s, c):
    slow, _ = c.register(t, "/slow")
    fast, _ = c.register(t, "/fast")
    gone, _ = c.register(t, "/gone")
    c.steer("/slow", delay_ms=8000)
    c.steer("/gone", status=410)
    _, w1 = ping(t, s, slow)
    _, w2 = ping(t, s, slow)
    c.wait_records("/slow", 1)
    p, _ = ping(t, s, fast, "20")
    t.ok(p.returncode == 0 and "delivered" in p.stdout,
         "while the slow endpoint holds its delivery, another endpoint's ping is delivered",
         p.stdout + p.stderr)
    _, wg = ping(t, s, gone)
    got = wait_mails(s, kind="webhook_disabled", containing=gone, timeout=20)
    t.is_(len(got), 1, "  and the mail queue sends the operators' email of a 410 meanwhile")
    t.ok(message(s, w1)[0] == "active" and len(c.records("/slow")) == 1,
         "  all while the slow endpoint's first delivery is still unanswered")
    t.is_(message(s, w2)[0], "incoming",
          "the slow endpoint's second event waits for the first (one at a time, in order)")
    got = c.wait_records("/slow", 2, timeout=40)
    t.ok(len(got) == 2 and got[0]["id"] == w1 and got[1]["id"] == w2 and
         got[1]["at"] >= got[0]["at"] + 7,
         "  and goes once the first is answered: in order, never two at once",
         [(r["id"], r["at"]) for r in got])

    # 410: disabled (gone), operators told once, the message waits unsent.
    t.is_(row(s, gone)[:2], ["2", "answered 410 Gone"], "a 410 disables the endpoint: gone")
    p = s.restockctl("webhook", "list")
    t.ok(any(l.startswith(gone) and " gone " in l for l in p.stdout.splitlines()),
         "  webhook list says gone", p.stdout)
    t.ok(s.wait_until(lambda: int(message(s, wg)[1].get("attempts", 0)) >= 3),
         "  its message is retried (attempts counted)", message(s, wg))
    state, head = message(s, wg)
    t.ok(state in ("deferred", "incoming", "active") and
         "is disabled (gone): not sent" in head.get("last-error", "") + str(head),
         "  never sent while disabled: it waits, saying why", head)
    t.is_(len(c.records("/gone")), 1, "  the consumer got the one delivery that answered 410")
    c.steer("/gone", status=200)
    p = s.restockctl("webhook", "enable", gone)
    t.ok(wait_state(s, wg, "done"), "enabled again, the waiting message is delivered")
    got = c.records("/gone")
    t.ok(len(got) == 2 and got[1]["id"] == wg and got[1]["verified"],
         "  with its webhook-id, verified", [(r["id"], r["verified"]) for r in got])
    t.is_(len(inbox(s, kind="webhook_disabled", containing=gone)), 1,
          "operators were told once of the disabling")
    got = inbox(s, kind="webhook_disabled", containing=gone)
    t.ok(got and "answered 410 Gone" in got[0].body and
         "restockctl webhook enable " + gone in got[0].body,
         "  the email says why and how to enable it", got[0].body if got else None)
    return slow, gone


def due_in(s, wid, record):
    """Seconds from the consumer's record of an attempt to the message's due time."""
    s.wait_until(lambda: message(s, wid)[0] == "deferred" and
                 float(message(s, wid)[1].get("due", "0 x").split()[0]) > record["at"] - 1)
    state, head = message(s, wid)
    return int(head.get("due", "0 x").split()[0]) - record["at"], head


def test_retry_after(t, s, c):
    ra, _ = c.register(t, "/ra")
    c.steer("/ra", status=503, retry_after="9")
    _, wid = ping(t, s, ra)
    got = c.wait_records("/ra", 1)
    wait, head = due_in(s, wid, got[0])
    t.ok(8 <= wait <= 10.5 and "(Retry-After: 9 s)" in head.get("last-error", ""),
         "503 with Retry-After: 9 (backoff_max is 1): the retry is due 9 s later", (wait, head))
    # Due in 9 s: the test moves on at once by redriving nothing; it waits.
    c.steer("/ra", status=429, retry_after="100000")
    got = c.wait_records("/ra", 2, timeout=20)
    wait, head = due_in(s, wid, got[1])
    t.ok(10.5 <= wait <= 13, "429 with Retry-After: 100000: capped at backoff_max x 12 (12 s)",
         (wait, head))
    # The next attempt comes at the due time just read: a date 5 s after it.
    when = email.utils.formatdate(int(head.get("due", "0").split()[0]) + 5, usegmt=True)
    c.steer("/ra", status=503, retry_after=when)
    got = c.wait_records("/ra", 3, timeout=20)
    wait, head = due_in(s, wid, got[2])
    t.ok(3 <= wait <= 6.5, "503 with Retry-After as an HTTP-date 5 s ahead: due then",
         (wait, when, head))
    c.steer("/ra", status=503, retry_after="0")
    got = c.wait_records("/ra", 4, timeout=20)
    wait, head = due_in(s, wid, got[3])
    t.ok(0 <= wait <= 2.5 and "(Retry-After: 1 s)" in head.get("last-error", ""),
         "503 with Retry-After: 0: waits 1 s at least", (wait, head))
    c.steer("/ra", status=200, retry_after=None)
    t.ok(wait_state(s, wid, "done"), "answered 200 at last: delivered")
    return ra


def test_rotation(t, s, c, a, old):
    p = s.restockctl("webhook", "rotate", a)
    new = re.search(r"^(whsec_\S+)$", p.stdout, re.M)
    t.ok(p.returncode == 0 and new, "webhook rotate A")
    for name, secrets in (("the new secret", [new.group(1)]), ("the old secret", [old])):
        c.steer("/a", secrets=secrets)
        p, wid = ping(t, s, a, "30")
        r = [x for x in c.records("/a") if x["id"] == wid]
        t.ok(p.returncode == 0 and r and r[0]["verified"] and
             len(r[0]["signature"].split()) == 2,
             "during the rotation a consumer holding %s verifies (two signatures)" % name,
             r[:1])
    c.steer("/a", secrets=[new.group(1)])


def test_down(t, s, c, a):
    c.down()
    p, wid = ping(t, s, a, "3")
    t.ok(p.returncode == 1 and "not delivered in 3 s" in p.stderr and
         "connection failed" in p.stderr,
         "the consumer down: ping exits 1 with the last error (connection refused)", p.stderr)
    c.up()
    t.ok(wait_state(s, wid, "done"), "up again, the event is delivered")
    got = [r for r in c.records("/a") if r["id"] == wid]
    t.ok(len(got) == 1 and got[0]["verified"], "  once, verified", got)


def test_disable_after(t, s, c):
    configure(s, webhook_disable_after="2")
    d, _ = c.register(t, "/failing")
    c.steer("/failing", status=500)
    _, wid = ping(t, s, d)
    t.ok(s.wait_until(lambda: row(s, d)[0] == "3", timeout=30),
         "failing longer than webhook_disable_after (2 s): the worker disables it (failing)",
         row(s, d))
    got = wait_mails(s, kind="webhook_disabled", containing=d, timeout=20)
    t.ok(len(got) == 1 and "failing" in got[0].subject,
         "operators are told, once", [m.subject for m in got])
    sent = len(c.records("/failing"))
    before = int(message(s, wid)[1].get("attempts", 0))
    s.wait_until(lambda: int(message(s, wid)[1].get("attempts", 0)) >= before + 2)
    t.is_(len(c.records("/failing")), sent, "  its message waits, not sent any more")
    configure(s, webhook_disable_after="432000")
    return d


def test_lifetime(t, s, c):
    configure(s, webhook_lifetime="5")
    life, _ = c.register(t, "/life")
    c.steer("/life", status=500)
    _, wid = ping(t, s, life)
    t.ok(wait_state(s, wid, "dead", timeout=40), "failing past webhook_lifetime (5 s): dead")
    state, head = message(s, wid)
    t.ok("queue lifetime of 5 s passed; last error: endpoint %s answered HTTP 500" % life
         in head.get("death-reason", "") and int(head.get("attempts", 0)) >= 2,
         "  its reason names the lifetime and the last error, after several attempts", head)
    got = wait_mails(s, kind="webhook_dead", containing=wid, timeout=20)
    t.ok(len(got) == 1 and "ping" in got[0].subject and life in got[0].subject and
         "restockctl dlq redrive " + wid in got[0].body,
         "operators are told once, with the redrive command", [m.subject for m in got])
    configure(s, webhook_lifetime="259200")
    c.steer("/life", status=200)
    p = s.restockctl("dlq", "redrive", wid)
    t.ok(p.returncode == 0 and wait_state(s, wid, "done"),
         "restockctl dlq redrive: delivered", p.stdout + p.stderr)
    got = c.records("/life")
    t.ok(got and got[-1]["id"] == wid and got[-1]["verified"] and
         all(r["id"] == wid for r in got),
         "  with the same webhook-id as every earlier attempt", [r["id"] for r in got])


def test_keys(t, s, c, a):
    gone_id, _ = c.register(t, "/deleted")
    s.stop("worker")
    _, lost = ping(t, s, gone_id)
    s.sql("DELETE FROM webhook_endpoint WHERE endpoint_id = UNHEX(REPLACE('%s', '-', ''))"
          % gone_id)
    s.start("worker", env={"RESTOCK_WEBHOOK_KEY": ""})
    t.ok(s.wait_until(lambda: "webhook_key=missing" in s.log("worker")) and
         "event=webhook_key_missing" in s.log("worker"),
         "without webhook_key the worker starts, and says so")
    p, wid = ping(t, s, a, "3")
    t.ok(p.returncode == 1 and "webhook_key is not set" in p.stderr,
         "  a ping waits, its last error saying webhook_key is not set", p.stderr)
    st = s.restockctl("status")
    t.ok("webhook deliveries waiting" in st.stdout and "webhook_key is not set" in st.stdout,
         "  restockctl status says so", st.stdout)
    t.ok(s.wait_until(lambda: message(s, lost)[0] == "deferred"),
         "  nothing is sent nor given up meanwhile", message(s, lost))
    s.stop("worker")
    try:
        s.start("worker", env={"RESTOCK_WEBHOOK_KEY": "not-hex"})
    except RuntimeError:
        pass
    t.ok(s.wait_until(lambda: "event=start_failed" in s.log("worker")) and
         "webhook_key" in s.log("worker").split("event=start_failed")[-1].split("\n")[0],
         "a malformed webhook_key stops the start, naming the key")
    s.stop("worker")
    s.start("worker")
    t.ok(wait_state(s, wid, "done"), "with its key back, the waiting ping is delivered")
    t.ok(wait_state(s, lost, "dead"), "a message of an endpoint no longer in the database: dead")
    t.ok("no such endpoint" in message(s, lost)[1].get("death-reason", ""),
         "  saying no such endpoint", message(s, lost))


def test_metrics_and_egress(t, s, c, a, slow, gone, ra, d):
    text = metrics(s)
    name = "restock_webhook_deliveries_total"
    t.ok(metric(text, name, endpoint=a, result="delivered") >= 5 and
         metric(text, name, endpoint=slow, result="delivered") == 2 and
         metric(text, name, endpoint=gone, result="gone") == 1 and
         metric(text, name, endpoint=ra, result="retry_after") == 4 and
         metric(text, name, endpoint=d, result="failed") >= 2,
         "restock_webhook_deliveries_total by endpoint and result",
         [l for l in text.splitlines() if l.startswith("restock_webhook")])
    age = metric(text, "restock_webhook_oldest_waiting_seconds", endpoint=d)
    t.ok(age is not None and age >= 1 and
         metric(text, "restock_webhook_oldest_waiting_seconds", endpoint=a) is None,
         "restock_webhook_oldest_waiting_seconds: the disabled endpoint's waiting event, "
         "none for one with nothing waiting", age)
    configure(s, webhook_allow="")
    p, wid = ping(t, s, a, "3")
    t.ok(p.returncode == 1 and "refused by the egress guard" in p.stderr and
         "loopback" in p.stderr,
         "webhook_allow emptied (reload): a loopback endpoint is refused by the egress guard",
         p.stderr)
    t.ok(s.wait_until(lambda: (metric(metrics(s), name, endpoint=a, result="refused_egress")
                               or 0) >= 1), "  counted as refused_egress")
    configure(s, webhook_allow="loopback")
    t.ok(wait_state(s, wid, "done"), "allowed again (reload): delivered")


def body(t):
    with Stack(t, ["db", "smtp"]) as s:
        configure(s, **SETTINGS)
        s.start("worker")
        c = Consumer(s)
        try:
            a, secret = test_delivered(t, s, c)
            slow, gone = test_order_slow_gone(t, s, c)
            ra = test_retry_after(t, s, c)
            test_rotation(t, s, c, a, secret)
            test_down(t, s, c, a)
            d = test_disable_after(t, s, c)
            test_metrics_and_egress(t, s, c, a, slow, gone, ra, d)
            test_lifetime(t, s, c)
            test_keys(t, s, c, a)
            no_secret_logged(t, s)
        finally:
            c.close()


if __name__ == "__main__":
    run_tests(body)
