"""What the hold tests (holds.py, hold_surge.py) share: the requests of the hold
routes (../shared/DESIGN.md "Carts and holds"), and what they observe in the
database: a product's stock, held and sold_total, a hold's row, and the identity
every product keeps at every moment, initial stock + delivered = stock + held +
sold_total. Not a test."""

import datetime
import re
import uuid

from limits import headers as auth  # noqa: F401 (the hold tests import it from here)
from inbox import AD_MANAGER

# The stock each product of add_product began with, by sku: its side of the identity.
STARTED = {}
HOLD_STATUS = {"0": "held", "1": "confirmed", "2": "released", "3": "expired"}
EXPIRES_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def hold(s, lines, ttl=None, client=None, customer=None, key=None, raw=None):
    """POST /holds with lines ([(sku, quantity)] or dicts) and ttl; raw: the body as is."""
    if raw is None:
        raw = {"lines": [{"sku": x[0], "quantity": x[1]} if isinstance(x, tuple) else x
                         for x in lines]}
        if ttl is not None:
            raw["ttl"] = ttl
    return s.request("POST", "/holds", raw, headers=auth(client, customer, key))


def act(s, hold_id, what, body=None, client=None, key=None):
    """GET (what "get"), confirm, extend or DELETE (what "release") of a hold."""
    h = auth(client, None, key)
    if what == "get":
        return s.request("GET", "/holds/" + hold_id, headers=h)
    if what == "release":
        return s.request("DELETE", "/holds/" + hold_id, headers=h)
    return s.request("POST", "/holds/%s/%s" % (hold_id, what), body, headers=h)


def hex_id(hold_id):
    return hold_id.replace("-", "")


def ids_in(ids):
    return ",".join("UNHEX('%s')" % hex_id(i) for i in ids) or "NULL"


def products(s, skus=None):
    """{sku: (stock, held, sold_total)} straight from the database."""
    where = " WHERE sku IN (%s)" % ",".join("'%s'" % k for k in skus) if skus else ""
    return {r[0]: (int(r[1]), int(r[2]), int(r[3]))
            for r in s.sql("SELECT sku, stock, held, sold_total FROM product" + where)}


def delivered(s):
    """{sku: units delivered by the product's orders}."""
    return {r[0]: int(r[1]) for r in s.sql(
        "SELECT p.sku, IFNULL(SUM(r.delivered_quantity), 0) FROM product p LEFT JOIN"
        " replenishment_order r ON r.product_id = p.product_id GROUP BY p.sku")}


def ledger(s):
    """{sku: (stock + held + sold_total) - delivered}: what each product had at the
    start, if no unit was lost or made; the same at every moment."""
    got, d = products(s), delivered(s)
    return {k: v[0] + v[1] + v[2] - d.get(k, 0) for k, v in got.items()}


def state(s):
    """Everything a request on holds may change: every product's row, the holds'
    rows and statuses, their lines, the customers' purchases."""
    return {"products": products(s),
            "holds": s.sql("SELECT HEX(hold_id), status, expires_at FROM hold ORDER BY hold_id"),
            "lines": s.sql_value("SELECT COUNT(*) FROM hold_line"),
            "purchases": s.sql_value("SELECT COUNT(*) FROM customer_purchase")}


def status_of(s, hold_id):
    """The hold row's status name, None when there is no row."""
    v = s.sql_value("SELECT status FROM hold WHERE hold_id = UNHEX('%s')" % hex_id(hold_id))
    return HOLD_STATUS.get(v, v)


def expire_now(s, ids, seconds=1):
    """Makes holds due without waiting for them: expires_at a second in the past.
    Run again when InnoDB chose it as a deadlock's victim (it locks the holds' rows
    beside the responders and the worker)."""
    for attempt in range(10):
        try:
            s.sql("UPDATE hold SET expires_at = UTC_TIMESTAMP(6) - INTERVAL %d SECOND"
                  " WHERE hold_id IN (%s)" % (seconds, ids_in(ids)))
            return
        except RuntimeError as e:
            if "Deadlock found" not in str(e) or attempt == 9:
                raise


def statuses(s, ids):
    """{hold id: status name} of the holds ids (hex of the database, as canonical UUIDs)."""
    rows = s.sql("SELECT LOWER(HEX(hold_id)), status FROM hold WHERE hold_id IN (%s)"
                 % ids_in(ids))
    canon = {hex_id(i): i for i in ids}
    return {canon.get(h, h): HOLD_STATUS.get(v, v) for h, v in rows}


def parse_expires(text):
    """expires_at (RFC 3339 UTC with milliseconds) as a datetime; None if malformed."""
    if not isinstance(text, str) or not EXPIRES_AT.match(text):
        return None
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def db_expires(s, hold_id):
    """The hold row's expires_at as a datetime."""
    v = s.sql_value("SELECT expires_at FROM hold WHERE hold_id = UNHEX('%s')" % hex_id(hold_id))
    return datetime.datetime.strptime(v, "%Y-%m-%d %H:%M:%S.%f") if v else None


def add_product(s, sku, stock, reorder_point=-1, ad=False):
    """A product of its own factory (the configured factory API), with stock units,
    its reorder point (-1: never orders) and, with ad, an advertisement whose
    manager is AD_MANAGER. Returns the sku."""
    fid, pid, aid = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    s.sql("INSERT INTO factory (factory_id, identifier, name, api) VALUES"
          " (UNHEX('%s'), 'FF-%s', '%s factory', NULL)" % (fid, sku, sku))
    if ad:
        s.sql("INSERT INTO advertisement (ad_id, status, manager_email) VALUES"
              " (UNHEX('%s'), TRUE, '%s')" % (aid, AD_MANAGER))
    s.sql("INSERT INTO product (product_id, sku, name, price, stock, factory_id,"
          " reorder_point, reorder_quantity, ad_id) VALUES (UNHEX('%s'), '%s', '%s donut',"
          " 1000, %d, UNHEX('%s'), %d, 10, %s)"
          % (pid, sku, sku, stock, fid, reorder_point, "UNHEX('%s')" % aid if ad else "NULL"))
    STARTED[sku] = stock
    return sku
