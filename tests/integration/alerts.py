"""Integration test of the operators' alert emails (issue 4) on the real stack: an
order whose factory callback never comes → one callback_missing email after
callback_timeout, not repeated at later sweeps; a factory failing until max_attempts
→ one dead_letter email naming the order, the product and the redrive command, and
that command works. Later watches (watch_interval 1 s, each pass logged) are
counted, not waited for in seconds."""

import re

from harness import Stack, run_tests
from inbox import OPERATORS, check_headers, inbox, wait_mails
from replenish_common import (FACTORY, REORDER, alerts, factory_requests, mail_queue,
                              order_status, orders, outbox, sell_out, sim_config, spool_find)

ENV = {
    "RESTOCK_FACTORY_ARGS": "--silent",  # the factory never calls back
    "RESTOCK_CALLBACK_TIMEOUT": "3",
    "RESTOCK_MAX_ATTEMPTS": "3",
    "RESTOCK_BACKOFF_MIN": "1",
    "RESTOCK_BACKOFF_MAX": "2",
    "RESTOCK_SWEEP_INTERVAL": "1",
    "RESTOCK_WATCH_INTERVAL": "1",
    "RESTOCK_LOG_LEVEL": "debug",  # the worker logs each watch pass
}


def callback_missing(t, s):
    sku = "CP-502101"
    sell_out(s, sku)
    t.ok(s.wait_until(lambda: orders(s, sku) and orders(s, sku)[0]["status"] == "sent"),
         "the order is sent to the factory, which stays silent")
    order = orders(s, sku)[0]["id"]
    got = wait_mails(s, kind="callback_missing", containing=order)
    t.is_(len(got), 1, "after callback_timeout the operators get a callback_missing email")
    if not got:
        return order
    m = got[0]
    check_headers(t, m, OPERATORS, "callback_missing alert")
    t.is_(m.subject, "[restock] 공장 콜백 없음: 주문 %s (부산도너츠)" % order,
          "its decoded subject names the order and the product")
    t.ok("상품: 부산도너츠 (%s)" % sku in m.body and "공장: 부산도너츠 공장 (%s)" % FACTORY in m.body
         and "restockctl orders" in m.body,
         "the body names the product, the factory and how to look", m.body)
    t.ok(orders(s, sku)[0]["overdue_reported"], "the order is marked as reported")
    t.is_(order_status(s, order), "sent", "and is still waiting for its callback")
    return order


def dead_letter(t, s):
    sku = "CP-502102"
    sim_config(s, fail_rate=1)
    sell_out(s, sku)
    got = wait_mails(s, kind="dead_letter", containing=sku)
    t.is_(len(got), 1, "a factory failing max_attempts times: operators get a dead_letter email")
    if not got:
        return None
    m = got[0]
    order = orders(s, sku)[0]["id"]
    event = outbox(s, sku, "stock_empty")[0][0]
    check_headers(t, m, OPERATORS, "dead_letter alert")
    t.ok(m.subject.startswith("[restock] 처리 실패 (factory 큐): ") and sku in m.subject,
         "its decoded subject names the queue and the product", m.subject)
    t.ok("내용: 공장 주문 / factory order %s: %s x %d → %s\n" % (order, sku, REORDER, FACTORY)
         in m.body, "it says what failed: the order, product, quantity and factory", m.body)
    t.ok("시도 횟수: 3\n" in m.body and "HTTP 500" in m.body.split("마지막 오류: ", 1)[-1],
         "the body gives the attempts and the factory's last error", m.body)
    t.ok("restockctl dlq redrive %s" % event in m.body, "and the command that redrives it",
         m.body)
    t.is_(len(factory_requests(s, sku)), 3, "the factory was asked 3 times (max_attempts)")
    t.is_(order_status(s, order), "failed", "the order is failed")
    t.is_(spool_find(s, "factory", event), ["dead"], "its message is in spool/factory/dead")

    # The operator does what the email says, once the factory works again.
    sim_config(s, fail_rate=0)
    command = re.search(r"restockctl dlq redrive (\S+)", m.body)
    p = s.restockctl(*command.group(0).split()[1:])
    t.ok(p.returncode == 0, "the email's redrive command succeeds", p.stderr)
    t.ok(s.wait_until(lambda: order_status(s, order) == "sent"),
         "the redriven order reaches the factory", order_status(s, order))
    t.is_(len(factory_requests(s, sku)), 4, "with one more request")
    return order


def body(t):
    with Stack(t, env=ENV) as s:
        late = callback_missing(t, s)
        redriven = dead_letter(t, s)
        # The redriven order's callback never comes either: its own alert.
        if redriven:
            t.ok(wait_mails(s, kind="callback_missing", containing=redriven),
                 "the redriven order, sent and silent, gets its own callback_missing email")
        # Later watches of the worker find the same late orders: no new emails,
        # once what the mail queue holds has gone out.
        t.ok(s.wait_watch_passes(s.watch_passes(), 3), "the worker's watch passes again")
        t.ok(s.wait_until(lambda: all(state == "done" for state, _, _ in mail_queue(s))),
             "the mail queue has sent everything", mail_queue(s))
        for order in (late, redriven):
            t.is_(len(inbox(s, kind="callback_missing", containing=order)), 1,
                  "one callback_missing email for order %s, not one per watch" % order)
        t.is_(len(inbox(s, kind="dead_letter")), 1, "one dead_letter email in all")
        t.is_(len(alerts(s, "callback_missing")), 2, "two callback_missing alerts were queued")
        t.is_(set(m.to() for m in inbox(s, to=None) if m.kind != "ad_pause"
                  and m.kind != "ad_resume"), {OPERATORS}, "every alert went to the operators")


run_tests(body)
