"""Integration test of orders the factory took but never called back for (a silent
factory): after callback_timeout operators get one `callback_missing` email per order,
in the mail queue and at the SMTP server, and only once, however many times the worker
looks again; an order whose callback came is never reported."""

from harness import Stack, run_tests
from replenish_common import alerts, orders, received_mail, sell_out, sim_config

ENV = {"RESTOCK_FACTORY_ARGS": "--silent --delay 0.3", "RESTOCK_SWEEP_INTERVAL": "1",
       "RESTOCK_CALLBACK_TIMEOUT": "3"}
A, B, C = "CP-502101", "CP-502102", "CP-502103"
SUBJECT = "공장 콜백 없음"


def queued(s, order_id):
    return [a for a in alerts(s, "callback_missing") if a[2]["vars"].get("order_id") == order_id]


def mailed(s, order_id):
    return [m for m in received_mail(s)
            if "ops@donut-states.example" in m[0] and SUBJECT in m[1] and order_id in m[1]]


def overdue(t, s, sku):
    t.is_(sell_out(s, sku).status, 409, "%s sold out" % sku)
    t.ok(s.wait_until(lambda: orders(s, sku) and orders(s, sku)[-1]["status"] == "sent"),
         "%s's order is sent to a factory that will not call back" % sku)
    order_id = orders(s, sku)[-1]["id"]
    t.ok(s.wait_until(lambda: mailed(s, order_id), timeout=40),
         "after callback_timeout operators are emailed about %s's order" % sku)
    t.is_(len(queued(s, order_id)), 1, "one callback_missing alert in the mail queue")
    got = queued(s, order_id)
    t.ok(got and got[0][2]["vars"].get("sku") == sku, "it names the product", got)
    t.ok(orders(s, sku)[-1]["overdue_reported"], "the order records that it was reported")
    t.is_(orders(s, sku)[-1]["status"], "sent", "the order is still sent")
    return order_id


def body(t):
    with Stack(t, env=ENV) as s:
        first = overdue(t, s, A)

        sim_config(s, silent=False)
        t.is_(sell_out(s, C).status, 409, "%s sold out" % C)
        t.ok(s.wait_until(lambda: [o["status"] for o in orders(s, C)] == ["fulfilled"],
                          timeout=30), "%s's order is called back and fulfilled" % C)
        fulfilled = orders(s, C)[0]["id"]
        sim_config(s, silent=True)

        # The second report comes from a later look of the worker, which saw the
        # first order again.
        overdue(t, s, B)
        t.is_(len(mailed(s, first)), 1, "the first order was reported once, not again")
        t.is_(len(queued(s, first)), 1, "one alert in the queue for it")
        t.is_(queued(s, fulfilled) + mailed(s, fulfilled), [],
              "the fulfilled order was never reported")


if __name__ == "__main__":
    run_tests(body)
