"""Integration test of the ad manager's emails (issue 4) on the real stack, with the
SMTP sink requiring AUTH: a sell-out sends exactly one pause email (headers, decoded
Korean subject, body with product, sku, time and order) and pauses the ad, even with
200 failed checkouts after it; the factory's callback sends one resume email with
the delivered quantity and runs the ad again. A relay refusing restock's password
defers the email until it accepts it; the SMTP password never shows in any log,
nor in `restockctl config show`, even with log_level debug."""

import base64
import glob
import os
import secrets

from harness import Stack, run_tests
from inbox import (AD_MANAGER, LOCAL_TIME, ad_status, call_back, check_headers, inbox,
                   wait_mails)
from replenish_common import (DONUT, REORDER, factory_requests, orders, outbox, sell_out,
                              spool_files, spool_message)

CHOCO = "CP-502102"
USER = "restock-mailer"
PASSWORD = "pw-" + secrets.token_hex(12)
WRONG = "wrong-" + secrets.token_hex(12)

ENV = {
    "RESTOCK_LOG_LEVEL": "debug",  # the password must not leak even there
    "RESTOCK_SMTP_USER": USER,
    "RESTOCK_SMTP_PASSWORD": PASSWORD,
    "RESTOCK_SMTP_ARGS": "--auth %s:%s" % (USER, PASSWORD),
    # The test plays the factory's callback itself, when it has seen the ad paused.
    "RESTOCK_FACTORY_ARGS": "--silent",
    "RESTOCK_SWEEP_INTERVAL": "1",
    "RESTOCK_BACKOFF_MIN": "1",
    "RESTOCK_BACKOFF_MAX": "2",
    "RESTOCK_MAX_ATTEMPTS": "50",
}


def ad_email(t, s, kind, subject, event_kind, what):
    """The one email of kind the ad manager received for the donut, checked: headers,
    decoded subject, and a Message-ID made of its outbox event's id (the same if it
    is sent again). None when it did not come."""
    got = wait_mails(s, kind=kind)
    t.is_(len(got), 1, "the ad manager received a %s email" % what)
    if not got:
        return None
    m = got[0]
    check_headers(t, m, AD_MANAGER, "%s email" % what)
    t.is_(m.subject, subject, "%s email: the decoded Korean subject names the product and"
          " its sku" % what)
    events = outbox(s, DONUT, event_kind)
    t.is_(m["Message-ID"], "<%s@donut-states.example>" % (events[0][0] if events else "?"),
          "%s email: its Message-ID is the %s event's id" % (what, event_kind))
    return m


def pause_and_resume(t, s):
    t.is_(ad_status(s, DONUT), "1", "the donut's ad runs before the sell-out")
    r = sell_out(s, DONUT)
    t.ok(r.status == 409 and r.json().get("replenishment") == "requested",
         "the sell-out answers 409, replenishment requested", r)

    m = ad_email(t, s, "ad_pause", "[restock] 품절: 부산도너츠 (CP-502101) 광고를 일시중지해 주세요",
                 "stock_empty", "pause")
    if m is None:
        return
    order = orders(s, DONUT)[0]
    t.ok("부산도너츠 (CP-502101) 상품이 " in m.body and "재입고 주문: %s" % order["id"] in m.body,
         "the body names the product, its sku and the open order", m.body)
    t.ok(LOCAL_TIME.search(m.body.split("품절 시각: ", 1)[-1][:19]),
         "the body says when it sold out", m.body)
    t.ok("with ESMTPA" in (m["Received"] or ""), "it was sent after AUTH (ESMTPA)",
         m["Received"])
    t.ok(s.wait_until(lambda: ad_status(s, DONUT) == "0"), "the ad is paused (status FALSE)")

    # The rush goes on: every checkout fails, none opens another order or email.
    answers = s.concurrently(200, 8, lambda i: ("POST", "/checkout", {"sku": DONUT, "quantity": 1}))
    t.ok(all(a.status == 409 for a in answers), "200 more checkouts fail with 409",
         [a for a in answers if a.status != 409][:3])
    t.is_(len(orders(s, DONUT)), 1, "still one replenishment order")
    t.is_(len(outbox(s, DONUT, "stock_empty")), 1, "still one stock_empty event")

    sent = s.wait_until(lambda: factory_requests(s, DONUT))
    t.is_(len(sent or []), 1, "the factory got one order")
    if not sent:
        return
    t.is_(call_back(s, sent[0]["body"]), 200, "the factory's callback is accepted")
    m = ad_email(t, s, "ad_resume", "[restock] 재입고: 부산도너츠 (CP-502101) 광고를 다시 시작해 주세요",
                 "stock_arrived", "resume")
    if m is None:
        return
    t.ok("입고 수량: %d\n" % REORDER in m.body and "%d개 재입고" % REORDER in m.body,
         "the body gives the delivered quantity", m.body)
    t.ok("재입고 주문: %s" % order["id"] in m.body and LOCAL_TIME.search(m.body),
         "and the order and the time", m.body)
    t.ok(s.wait_until(lambda: ad_status(s, DONUT) == "1"), "the ad runs again (status TRUE)")
    t.is_(s.stock(DONUT), REORDER, "the delivered stock is in the warehouse")
    # The resume email went out after anything the 200 failed checkouts could have
    # caused (one product's events and emails go in order): one email per stock-out.
    t.is_(len(inbox(s, kind="ad_pause")), 1, "exactly one pause email for the stock-out")
    t.is_(len(inbox(s, to=AD_MANAGER)), 2, "the ad manager got two emails in all")
    t.is_(spool_files(s, "mail", "done"), sorted(e for e, _, _ in
                                                 outbox(s, DONUT, None)),
          "the mail queue delivered one message per event, named by it")


def auth_refused_then_accepted(t, s):
    s.stop("smtp")
    s.start("smtp", env={"RESTOCK_SMTP_ARGS": "--auth %s:%s" % (USER, WRONG)})
    sell_out(s, CHOCO)
    events = s.wait_until(lambda: outbox(s, CHOCO, "stock_empty"))
    event = events[0][0] if events else "?"

    def deferred():
        got = spool_message(s, "mail", "deferred", event)
        return got[0] if got else None
    head = s.wait_until(deferred)
    t.ok(head and "authentication" in head.get("last-error", "") and "535" in head["last-error"],
         "a relay refusing the password defers the email with its reply", head)
    t.is_(inbox(s, containing=CHOCO), [], "nothing was delivered meanwhile")

    s.stop("smtp")
    s.start("smtp")  # the stack's own settings: the right password
    got = wait_mails(s, containing=CHOCO)
    t.is_([m.kind for m in got], ["ad_pause"], "once the relay accepts it, the email arrives")
    t.ok(got and "with ESMTPA" in (got[0]["Received"] or ""), "after AUTH")
    t.ok(s.wait_until(lambda: spool_files(s, "mail", "done").count(event) == 1),
         "and its message is done")


def password_never_logged(t, s):
    plain = base64.b64encode(("\0%s\0%s" % (USER, PASSWORD)).encode()).decode()
    forms = (PASSWORD, base64.b64encode(PASSWORD.encode()).decode(), plain,
             WRONG, base64.b64encode(WRONG.encode()).decode())
    leaks = []
    for path in glob.glob(os.path.join(s.dir, "log", "*")):
        with open(path, errors="replace") as f:
            text = f.read()
        leaks += ["%s: %s" % (os.path.basename(path), form) for form in forms if form in text]
    t.ok("debug restock-worker " in s.log("worker"),
         "the worker logged at debug level (where SMTP replies are logged)")
    t.is_(leaks, [], "no log holds the SMTP password, plain or base64 (AUTH PLAIN, LOGIN)")
    shown = s.restockctl("config", "show")
    t.ok(shown.returncode == 0 and "smtp_password = ********" in shown.stdout
         and PASSWORD not in shown.stdout + shown.stderr,
         "restockctl config show masks it", shown.stdout[-500:] + shown.stderr)


def body(t):
    with Stack(t, env=ENV) as s:
        pause_and_resume(t, s)
        auth_refused_then_accepted(t, s)
        password_never_logged(t, s)


run_tests(body)
