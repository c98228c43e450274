"""An operator records a delivery whose callback was lost (the factory calls back
once and never again): `restockctl orders fulfil ORDER QUANTITY` restocks exactly as
the callback would have, once, and refuses what is not an order or a quantity."""

from harness import Stack, run_tests
from replenish_common import DONUT, REORDER, orders, outbox, sell_out


def body(t):
    # The factory takes orders but never calls back.
    with Stack(t, env={"RESTOCK_FACTORY_ARGS": "--silent", "RESTOCK_SWEEP_INTERVAL": "1"}) as s:
        t.is_(sell_out(s, DONUT).status, 409, "the donut sells out")
        sent = s.wait_until(lambda: [o for o in orders(s, DONUT) if o["status"] == "sent"], 30)
        t.ok(sent, "its order is sent to the silent factory", orders(s, DONUT))
        order = sent[0]["id"] if sent else "00000000-0000-0000-0000-000000000000"

        p = s.restockctl("orders", "fulfil", order, str(REORDER))
        t.is_(p.returncode, 0, "orders fulfil succeeds")
        t.ok("fulfilled" in p.stdout and "stock now %d" % REORDER in p.stdout,
             "it says what it did", p.stdout + p.stderr)
        t.is_(s.stock(DONUT), REORDER, "the stock is back")
        t.is_(orders(s, DONUT)[0]["status"], "fulfilled", "the order is fulfilled")
        t.is_(orders(s, DONUT)[0]["delivered"], REORDER, "with the delivered quantity")
        arrived = s.wait_until(lambda: [e for e in outbox(s, DONUT, "stock_arrived") if e[2]], 30)
        t.is_(len(arrived), 1, "one stock_arrived event, taken by the worker (ad resume email)")

        p = s.restockctl("orders", "fulfil", order, str(REORDER))
        t.ok(p.returncode == 0 and "already" in p.stdout, "a second time changes nothing",
             p.stdout + p.stderr)
        t.is_(s.stock(DONUT), REORDER, "the stock is not added twice")

        for args, what in (((order, "0"), "quantity 0"), ((order, "ten"), "quantity not a number"),
                           (("not-an-order", "1"), "an id that is not a UUID"),
                           (("7d1f6d4e-3c52-4a3b-9d0e-2f6a5b4c3d21", "1"), "an unknown order"),
                           ((order,), "a missing quantity")):
            p = s.restockctl("orders", "fulfil", *args)
            lines = p.stderr.strip().splitlines()
            t.ok(p.returncode != 0 and len(lines) == 1 and lines[0].startswith("restockctl: "),
                 "%s: refused with a one-line reason" % what, p.stderr)
        t.is_(s.stock(DONUT), REORDER, "refusals change nothing")


run_tests(body)
