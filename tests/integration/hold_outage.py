#!/usr/bin/env python3
"""Integration test of the holds' expiry through a database outage (issue 20,
docs/design.md §4.1 "Holds"): a hold falls due while the database is down; the
worker's expiry thread says so once (event=hold_expiry_failed), keeps trying, and
when the database is back it expires the hold (units back on the shelf, once),
says it recovered (event=hold_expiry_recovered), and no unit is lost or made."""

from harness import Stack, run_tests
from hold_common import add_product, expire_now, hold, ledger, products, status_of

SKU = "HO-1"


def body(t):
    with Stack(t, private_db=True) as s:
        add_product(s, SKU, 5)
        start = ledger(s)
        r = hold(s, [(SKU, 2)])
        t.is_(r.status, 201, "a hold of 2 is made")
        hid = r.json()["hold"]
        s.stop("worker")
        expire_now(s, [hid])
        s.stop("db")
        s.start("worker")  # starts without its database, as after a boot
        t.ok(s.wait_until(lambda: "event=hold_expiry_failed" in s.log("worker")),
             "the expiry says once that the database failed")
        s.start("db")
        t.ok(s.wait_until(lambda: status_of(s, hid) == "expired", timeout=60),
             "the database back: the hold that fell due meanwhile is expired")
        t.ok(s.wait_until(lambda: "event=hold_expiry_recovered" in s.log("worker")),
             "and the expiry says it recovered")
        t.is_(s.log("worker").count("event=hold_expiry_failed"), 1,
              "the failure was told once for the outage, not once a pass")
        t.is_(products(s, [SKU])[SKU][:3], (5, 0, 0), "its 2 units are back on the shelf, once")
        t.is_(ledger(s), start, "stock + held + sold - delivered is what it was, for every product")


if __name__ == "__main__":
    run_tests(body)
