"""Integration test of the retry policy under real outages (issue 10): a transient
failure costs time, never a manual step. The factory answering 500 and the SMTP relay
down for longer than the old attempts window (5 attempts) → both retried with capped
backoff, and once they are back the order is sent and fulfilled and the pause email
arrives, once, with nothing in dead/; a factory failing past a short queue lifetime →
the order is dead with a reason that says so, and the operators get a dead_letter
alert; a factory answering 400 in EUC-KR with escape sequences → a valid UTF-8 alert
and `restockctl orders` / `dlq list` without raw control bytes."""

import os
import re

from harness import Stack, run_tests
from inbox import AD_MANAGER, OPERATORS, check_headers, inbox, wait_mails
from replenish_common import (orders, outbox, sell_out, sim_config, spool_dir, spool_files,
                              spool_find, spool_message)

ENV = {
    "RESTOCK_FACTORY_ARGS": "--delay 1",
    "RESTOCK_SWEEP_INTERVAL": "1",
    "RESTOCK_BACKOFF_MIN": "1",
    "RESTOCK_BACKOFF_MAX": "2",
    "RESTOCK_ATTEMPT_TIMEOUT": "2",
}
OLD_MAX_ATTEMPTS = 5  # the attempt limit before issue 10
# Escape sequences and EUC-KR ("주문 거부" in EUC-KR is not UTF-8).
ANSWER = "주문 거부".encode("euc-kr") + b" \x1b[31mrefused\x1b[0m\r\n\x07done"


def event_of(t, s, sku):
    events = s.wait_until(lambda: outbox(s, sku, "stock_empty"))
    t.ok(events, "%s: the sell-out wrote its stock_empty event" % sku)
    return events[0][0] if events else "?"


def raw_controls(text):
    """The control characters (but line feeds) a terminal would obey."""
    return [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f]


def long_outage(t, s):
    sku = "CP-502101"
    sim_config(s, fail_rate=1)
    s.stop("smtp")
    sell_out(s, sku)
    event = event_of(t, s, sku)
    waited = s.wait_until(lambda: orders(s, sku) and
                          orders(s, sku)[0]["attempts"] >= 2 * OLD_MAX_ATTEMPTS, timeout=90)
    t.ok(waited, "the factory answering 500: the order is retried %d times and more"
         % (2 * OLD_MAX_ATTEMPTS), orders(s, sku))
    mail_head = spool_message(s, "mail", "deferred", event)
    t.ok(s.wait_until(lambda: (h := spool_message(s, "mail", "deferred", event)) and
                      int(h[0].get("attempts", 0)) > OLD_MAX_ATTEMPTS, timeout=30),
         "the relay down: the pause email is retried more than %d times" % OLD_MAX_ATTEMPTS,
         mail_head)
    t.is_(spool_files(s, "factory", "dead") + spool_files(s, "mail", "dead"), [],
          "nothing is in dead/")
    t.is_(orders(s, sku)[0]["status"], "open", "the order is still open")

    sim_config(s, fail_rate=0)
    t.ok(s.wait_until(lambda: orders(s, sku)[0]["sent"]), "the factory back: the order is sent")
    t.ok(s.wait_until(lambda: orders(s, sku)[0]["status"] == "fulfilled"),
         "and fulfilled by the factory's callback", orders(s, sku))
    s.start("smtp")
    got = wait_mails(s, containing=sku, to=AD_MANAGER, kind="ad_pause")
    t.is_(len(got), 1, "the relay back: the pause email arrives")
    t.ok(s.wait_until(lambda: spool_find(s, "mail", event) == ["done"]),
         "its message is done", spool_find(s, "mail", event))
    t.ok(wait_mails(s, kind="ad_resume", containing=sku), "the resume email follows")
    t.is_(len(inbox(s, kind="ad_pause", containing=sku)), 1, "the pause email arrived once")
    t.is_(len(orders(s, sku)), 1, "one order")
    t.is_(spool_files(s, "factory", "dead") + spool_files(s, "mail", "dead"), [],
          "nothing went to dead/")


def lifetime_passed(t, s):
    sku = "CP-502102"
    s.stop("worker")
    s.start("worker", env={"RESTOCK_FACTORY_LIFETIME": "5"})
    sim_config(s, fail_rate=1)
    sell_out(s, sku)
    event = event_of(t, s, sku)
    t.ok(s.wait_until(lambda: spool_message(s, "factory", "dead", event)),
         "the factory failing past a lifetime of 5 s: the order's message is dead")
    head = (spool_message(s, "factory", "dead", event) or [{}])[0]
    reason = head.get("death-reason", "")
    t.ok(reason.startswith("queue lifetime of 5 s passed; last error: ") and "HTTP 500" in reason,
         "its reason says the lifetime passed, with the last error", head)
    t.ok(int(head.get("attempts", 0)) >= 2, "after retries", head)
    t.ok(s.wait_until(lambda: orders(s, sku)[0]["status"] == "failed"), "the order is failed")
    told = wait_mails(s, kind="dead_letter", containing=sku)
    t.is_(len(told), 1, "the operators get a dead_letter alert")
    if told:
        check_headers(t, told[0], OPERATORS, "dead letter")
        t.ok("queue lifetime of 5 s passed" in told[0].body and "HTTP 500" in told[0].body,
             "it gives the reason and the last error", told[0].body)


def euc_kr_answer(t, s):
    sku = "CP-502103"
    sim_config(s, fail_rate=0, answer_status=400, answer_body_hex=ANSWER.hex())
    sell_out(s, sku)
    event = event_of(t, s, sku)
    t.ok(s.wait_until(lambda: spool_message(s, "factory", "dead", event)),
         "a factory answering 400: the order's message is dead at once")
    told = wait_mails(s, kind="dead_letter", containing=sku)
    t.is_(len(told), 1, "the operators get a dead_letter alert despite the EUC-KR answer")
    if told:
        m = told[0]
        check_headers(t, m, OPERATORS, "dead letter of a non-UTF-8 answer")
        t.ok("HTTP 400" in m.body and "\\xc1" in m.body and "\\x1b[31mrefused\\x1b[0m\\r\\n\\x07"
             in m.body, "it shows the answer's bytes as escapes", m.body)
        t.is_(raw_controls(m.body), [], "no raw control character in it")
    with open(os.path.join(spool_dir(s, "factory", "dead"), event), "rb") as f:
        raw = f.read()
    t.ok(b"answered HTTP 400" in raw and b"\\x1b[31mrefused\\x1b[0m" in raw,
         "the dead message's file records the answer, escaped", raw[:600])
    listed = s.restockctl("orders")
    t.ok(listed.returncode == 0 and "HTTP 400" in listed.stdout and "\\x1b[31m" in listed.stdout,
         "restockctl orders shows the order's last error, escaped", listed.stdout + listed.stderr)
    t.is_(raw_controls(listed.stdout), [], "without raw control bytes")
    dlq = s.restockctl("dlq", "list")
    t.ok(dlq.returncode == 0 and event in dlq.stdout and "\\x1b[31m" in dlq.stdout,
         "restockctl dlq list shows it, escaped", dlq.stdout + dlq.stderr)
    t.is_(raw_controls(dlq.stdout), [], "without raw control bytes")

    # A row written before restock sanitized such text still prints safely.
    s.sql("UPDATE replenishment_order SET last_error = CONCAT('old ', CHAR(27 USING utf8mb4), '[2J row')")
    listed = s.restockctl("orders")
    t.ok("old \\x1b[2J row" in listed.stdout, "an old row's escape is shown, not sent",
         listed.stdout)
    t.is_(raw_controls(listed.stdout), [], "restockctl orders prints no raw control byte")
    t.ok(re.search(r"event=dead queue=factory id=%s .*HTTP 400" % event, s.log("worker")),
         "the worker logged the death")
    t.is_(raw_controls(s.log("worker").replace("\n", "")), [], "its log has no raw control byte")


def body(t):
    with Stack(t, env=ENV) as s:
        long_outage(t, s)
        lifetime_passed(t, s)
        euc_kr_answer(t, s)


run_tests(body)
