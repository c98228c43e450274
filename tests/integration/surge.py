"""Integration test of a surge (the viral-video scenario): stock 500, then 2,000
checkouts from 64 concurrent clients through nginx. Exactly 500 are sold, each
remaining stock value from 499 down to 0 is handed out exactly once, the other
1,500 answer 409, and the database ends at 0: nothing oversold, nothing lost."""

from collections import Counter

from harness import Stack, run_tests

DONUT = "CP-502101"
STOCK, CHECKOUTS, CLIENTS = 500, 2000, 64


def body(t):
    with Stack(t, components=["db", "sales", "nginx"]) as s:
        s.sql("UPDATE product SET stock = %d WHERE sku = '%s'" % (STOCK, DONUT))
        t.is_(s.stock(), STOCK, "the donut's stock is %d" % STOCK)

        # Half send the first version's empty body, half a full one: both buy one.
        def checkout(i):
            return ("POST", "/checkout", {"sku": DONUT, "quantity": 1} if i % 2 else None)
        answers = s.concurrently(CHECKOUTS, CLIENTS, checkout)

        statuses = Counter(r.status for r in answers)
        t.is_(dict(statuses), {200: STOCK, 409: CHECKOUTS - STOCK},
              "exactly %d answers 200 and %d answer 409" % (STOCK, CHECKOUTS - STOCK))
        sold = sorted(r.json()["remaining"] for r in answers if r.status == 200)
        t.ok(sold == list(range(STOCK)),
             "the 200s' remaining values are 0 to %d, each once" % (STOCK - 1),
             "duplicates: %s" % [v for v, n in Counter(sold).items() if n > 1][:10])
        t.ok(all(r.json()["message"] == "구매 완료! 남은 재고: %d" % r.json()["remaining"]
                 for r in answers if r.status == 200), "each 200 says what is left")
        refused = [r.json() for r in answers if r.status == 409]
        t.ok(all(j == {"message": "구매 실패! 남은 재고: 0", "sku": DONUT, "remaining": 0,
                       "replenishment": "requested"} for j in refused),
             "each 409 says 구매 실패! 남은 재고: 0", refused[:3])
        t.is_(s.stock(), 0, "the database ends at 0: nothing oversold")


if __name__ == "__main__":
    run_tests(body)
