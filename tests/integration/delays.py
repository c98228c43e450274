"""Integration test of the delay warning (issue 4): with the factory failing and the
SMTP relay down, messages wait (retried, never dead: no attempt limit, a lifetime of
days); once the oldest waiting message of a queue is older than delay_warning,
operators are told, and told again while it keeps waiting (issue 10: once per
delay_warning period, at most once per watch of the worker), and the warnings reach
them when the relay is back; once nothing waits, no further warning. The test counts
the worker's watch passes (watch_interval 1 s, each pass logged), not seconds."""

from harness import Stack, run_tests
from inbox import OPERATORS, check_headers, inbox, wait_mails
from replenish_common import alerts, orders, outbox, sell_out, sim_config, spool_find

ENV = {
    "RESTOCK_FACTORY_ARGS": "--fail-rate 1 --silent",
    "RESTOCK_DELAY_WARNING": "3",
    "RESTOCK_BACKOFF_MIN": "1",
    "RESTOCK_BACKOFF_MAX": "2",
    "RESTOCK_SWEEP_INTERVAL": "1",
    "RESTOCK_WATCH_INTERVAL": "1",
    "RESTOCK_LOG_LEVEL": "debug",  # the worker logs each watch pass
}
# Passes that span more than one delay_warning period (3 s): the passes are at least
# watch_interval (1 s) apart, so the oldest message's period changes in between.
PERIOD_PASSES = 4
SKU = "CP-502101"


def queued_warnings(s, queue):
    return [(state, name) for state, name, m in alerts(s, "delay_warning")
            if m.get("vars", {}).get("queue") == queue]


def body(t):
    with Stack(t, env=ENV) as s:
        s.stop("smtp")
        sell_out(s, SKU)
        events = s.wait_until(lambda: outbox(s, SKU, "stock_empty"))
        event = events[0][0] if events else "?"
        got = s.wait_until(lambda: queued_warnings(s, "factory") and queued_warnings(s, "mail"))
        t.ok(got, "the factory failing and the relay down: a delay warning is queued for"
             " each queue", alerts(s, "delay_warning"))
        # Later watches find the same oldest messages still waiting: told again,
        # once per delay_warning period, at most once per watch (the one under way
        # when the count was taken may add one).
        first = {q: len(queued_warnings(s, q)) for q in ("factory", "mail")}
        since = s.watch_passes()
        t.ok(s.wait_watch_passes(since, PERIOD_PASSES), "the worker's watch passes")
        passes = s.watch_passes() - since
        for q in ("factory", "mail"):
            n = len(queued_warnings(s, q))
            t.ok(first[q] + 1 <= n <= first[q] + passes + 1,
                 "the %s queue still waiting: warned again, at most once per watch" % q,
                 (first[q], n, passes))
        where = [spool_find(s, q, event) for q in ("factory", "mail")]
        t.ok(all(len(w) == 1 and w[0] in ("incoming", "active", "deferred") for w in where),
             "the order and the pause email are still waiting, retried", where)
        t.is_(orders(s, SKU)[0]["status"], "open", "the order is still open, not failed")

        # The factory and the relay come back: everything goes out, the warnings too.
        sim_config(s, fail_rate=0)
        s.start("smtp")
        t.ok(s.wait_until(lambda: orders(s, SKU)[0]["status"] == "sent"),
             "the order reaches the factory")
        t.ok(wait_mails(s, kind="ad_pause"), "the pause email arrives")
        # A watch that looked just before may still queue one; after the next, none.
        s.wait_watch_passes(s.watch_passes(), 2)
        queued = len(alerts(s, "delay_warning"))
        warned = wait_mails(s, count=queued, kind="delay_warning")
        by_queue = sorted(m.subject for m in warned)
        t.ok(len(warned) == queued >= 4, "operators get every delay warning queued", by_queue)
        for m in warned:
            check_headers(t, m, OPERATORS, "delay warning")
        t.ok(any(m.subject.startswith("[restock] 처리 지연: factory 큐의 메시지가 ") for m in warned)
             and any(m.subject.startswith("[restock] 처리 지연: mail 큐의 메시지가 ")
                     for m in warned),
             "one names the factory queue, one the mail queue", by_queue)
        t.ok(all("대기 중인 메시지: " in m.body and "restockctl status" in m.body for m in warned),
             "they say how many messages wait and how to look")

        # Nothing waits any more: later watches (more than a period's) have nothing to tell.
        t.ok(s.wait_watch_passes(s.watch_passes(), PERIOD_PASSES), "more watch passes")
        t.is_(len(inbox(s, kind="delay_warning")), queued, "no further delay warning")
        t.is_(len(alerts(s, "delay_warning")), queued, "none queued either")


run_tests(body)
