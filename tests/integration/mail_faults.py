"""Integration test of the mail queue against an SMTP relay that fails (issue 4):
down during the sell-out and started later → the email arrives, once; answering
4xx and then accepting → delivered after retries that the spool and the logs show;
answering 5xx → the message is in spool/mail/dead with the relay's reply, is not
retried, and the operators get an alert (issue 10) naming its recipient, subject and
the relay's reply; an alert that dies in turn is only logged, never alerted about."""

import re

from harness import Stack, run_tests
from inbox import AD_MANAGER, OPERATORS, call_back, check_headers, inbox, wait_mails
from replenish_common import (STATES, alerts, factory_requests, outbox, sell_out, spool_files,
                              spool_find, spool_message)

ENV = {
    # No factory callbacks: only the pause emails travel, one per product.
    "RESTOCK_FACTORY_ARGS": "--silent",
    "RESTOCK_SWEEP_INTERVAL": "1",
    "RESTOCK_BACKOFF_MIN": "1",
    "RESTOCK_BACKOFF_MAX": "2",
}


def pause_event(t, s, sku):
    """Sells sku out; returns the id of its stock_empty event (the mail's id)."""
    sell_out(s, sku)
    events = s.wait_until(lambda: outbox(s, sku, "stock_empty"))
    t.ok(events, "%s: the sell-out wrote its stock_empty event" % sku)
    return events[0][0] if events else "?"


def headers_of(s, state, event):
    got = spool_message(s, "mail", state, event)
    return got[0] if got else None


def smtp_down(t, s):
    sku = "CP-502101"
    s.stop("smtp")
    event = pause_event(t, s, sku)
    # A minute in production; here a few retries' worth (backoff 1..2 s).
    head = s.wait_until(lambda: (h := headers_of(s, "deferred", event)) and
                        int(h.get("attempts", 0)) >= 4 and h, timeout=60)
    t.ok(head, "with the relay down the email waits in spool/mail/deferred, retried", head)
    t.ok(head and "refused" in head.get("last-error", "").lower(),
         "its last error says the connection was refused", head)
    t.is_(s.sql_value("SELECT taken_at IS NOT NULL FROM outbox WHERE event_id = UNHEX('%s')"
                      % event.replace("-", "")), "1",
          "the event is taken: the message is on disk, not in the database")
    t.is_(inbox(s), [], "nothing was received meanwhile")

    s.start("smtp")
    got = wait_mails(s, containing=sku)
    t.is_(len(got), 1, "the relay back, the pause email arrives")
    if got:
        check_headers(t, got[0], AD_MANAGER, "delayed pause email")
        t.is_(got[0]["Message-ID"], "<%s@donut-states.example>" % event,
              "it is the email of the sell-out")
    t.ok(s.wait_until(lambda: spool_find(s, "mail", event) == ["done"]),
         "its message is done, and nowhere else", spool_find(s, "mail", event))
    return sku


def smtp_tempfail(t, s):
    sku = "CP-502102"
    s.stop("smtp")
    s.start("smtp", env={"RESTOCK_SMTP_ARGS": "--tempfail 2"})
    event = pause_event(t, s, sku)
    got = wait_mails(s, containing=sku)
    t.is_(len(got), 1, "a relay answering 451 twice, then 250: the email arrives")
    t.is_(len(re.findall(r"event=rejected .*451", s.log("smtp"))), 2,
          "the relay refused it twice before")
    retries = re.findall(r"event=deferred queue=mail id=%s attempts=(\d+) .*451" % event,
                         s.log("worker"))
    t.is_(retries, ["1", "2"], "the worker logged both deferrals with the 451 reply")
    # Logged once the message is done, which is after the relay has it.
    t.ok(s.wait_until(lambda: re.search(r"event=delivered queue=mail id=%s attempts=3\b" % event,
                                        s.log("worker"))),
         "and the delivery at the third attempt")
    s.wait_until(lambda: headers_of(s, "done", event))
    head = headers_of(s, "done", event)
    t.ok(head and head.get("attempts") == "2" and "451" in head.get("last-error", ""),
         "the done message keeps its 2 failed attempts and the last 451", head)
    return sku


def smtp_permfail(t, s, delivered):
    sku = "CP-502103"
    s.stop("smtp")
    # The relay refuses the ad manager's address only: the alert to the operators
    # about the dead email gets through.
    s.start("smtp", env={"RESTOCK_SMTP_ARGS": "--permfail-rcpt " + AD_MANAGER})
    event = pause_event(t, s, sku)
    t.ok(s.wait_until(lambda: headers_of(s, "dead", event)),
         "a relay answering 550: the email goes to spool/mail/dead")
    head = headers_of(s, "dead", event) or {}
    reply = "550 5.1.1 smtp-sink rejects mail to %s" % AD_MANAGER
    t.ok(reply in head.get("last-error", ""),
         "with the relay's reply in its last-error header", head)
    t.ok(head.get("died-at") and head.get("death-reason", "").startswith("permanent failure: ")
         and reply in head.get("death-reason", "") and head.get("attempts") == "1",
         "dead at its first attempt, the reply as the reason", head)
    # The line comes after the rename into dead/: wait for it, do not race it.
    t.ok(s.wait_until(lambda: re.search(r"event=dead queue=mail id=%s .*550" % event,
                                        s.log("worker"))),
         "the worker logged its death with the reply")
    listed = s.restockctl("dlq", "list")
    t.ok(listed.returncode == 0 and event in listed.stdout,
         "restockctl dlq list shows it", listed.stdout + listed.stderr)

    told = wait_mails(s, kind="mail_dead")
    t.is_(len(told), 1, "the operators are told of the dead email")
    if told:
        m = told[0]
        check_headers(t, m, OPERATORS, "dead email alert")
        t.ok(AD_MANAGER in m.subject and "품절: 부산도너츠 말차 (%s)" % sku in m.subject,
             "its subject names the recipient and the dead email's subject", m.subject)
        t.ok("받는 사람: %s\n" % AD_MANAGER in m.body and reply in m.body
             and "restockctl dlq redrive %s" % event in m.body,
             "its body names the recipient, the relay's reply and the redrive", m.body)

    # A relay refusing everything: redriven, the email dies again, its alert dies
    # too, and that is only logged: no alert about an alert.
    s.stop("smtp")
    s.start("smtp", env={"RESTOCK_SMTP_ARGS": "--permfail"})
    t.is_(s.restockctl("dlq", "redrive", event).returncode, 0, "the dead email is redriven")
    dead_alert = s.wait_until(lambda: [n for st, n, _ in alerts(s, "mail_dead") if st == "dead"])
    t.ok(dead_alert, "its second death's alert is refused too and dead", alerts(s, "mail_dead"))
    t.ok(s.wait_until(lambda: re.search(r"event=alert_dead id=%s to=\"%s\" .*550"
                                        % (re.escape(dead_alert[0]) if dead_alert else "-",
                                           re.escape(OPERATORS)), s.log("worker"))),
         "the worker logged the dead alert with its recipient and the reply")
    t.is_(len(alerts(s, "mail_dead")), 2,
          "no alert about the dead alert is queued (one per death of the email)")

    # Back to a relay that accepts everything: the factory's callback for the first
    # product sends its resume email, and the dead ones stay dead: no retry.
    s.stop("smtp")
    s.start("smtp")
    sent = factory_requests(s, delivered)
    t.is_(call_back(s, sent[0]["body"]) if sent else None, 200,
          "the factory calls back for %s" % delivered)
    t.ok(wait_mails(s, kind="ad_resume"), "its resume email is delivered")
    t.is_(spool_find(s, "mail", event), ["dead"], "the 5xx email is still only in dead/")
    t.is_(len(re.findall(r"event=rejected", s.log("smtp"))), 5,
          "the relays refused it once, then once more with its alert (2 rejections"
          " before were the 451s)")
    t.is_(inbox(s, to=AD_MANAGER, containing=sku), [], "it was never delivered")
    t.is_(len(inbox(s, to=OPERATORS)), 1, "the operators received one alert in all")


def body(t):
    with Stack(t, env=ENV) as s:
        down = smtp_down(t, s)
        smtp_tempfail(t, s)
        smtp_permfail(t, s, down)
        t.is_(sorted(m.kind for m in inbox(s)), ["ad_pause", "ad_pause", "ad_resume", "mail_dead"],
              "in all: the two pause emails the relay took, one resume email and the alert")
        t.is_(len(set(m["Message-ID"] for m in inbox(s))), len(inbox(s)),
              "no email was received twice")
        t.is_(sum(len(spool_files(s, "mail", st)) for st in STATES if st not in ("done", "dead")),
              0, "nothing is left waiting in the mail queue")


run_tests(body)
