"""What the replenishment tests (replenish*.py, callback.py, spool_corrupt.py, audit.py,
restockctl_root.py) observe
besides HTTP answers and rows: the factory simulator's record of what it received and
called back, the spool's files and headers, the mail queue and the SMTP sink's Maildir.
Also fixtures: extra products with their own factories, a product sold out by a
checkout."""

import email
import email.policy
import glob
import hashlib
import http.client
import json
import os
import re
import time
import uuid

DONUT = "CP-502101"
SEEDED = ("CP-502101", "CP-502102", "CP-502103")
REORDER = 10  # reorder_quantity of the seed
FACTORY = "FF-500293"
STATES = ("incoming", "active", "deferred", "dead", "done", "corrupt")
UUID_RE = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


# -- the factory simulator ----------------------------------------------------------
def sim(s, method, path, body=None):
    """One request to the factory simulator's /_sim API; returns its JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", int(s.info["FACTORY_PORT"]), timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        r = conn.getresponse()
        text = r.read()
        if r.status != 200:
            raise RuntimeError("factory simulator %s %s: %d %r" % (method, path, r.status, text))
        return json.loads(text)
    finally:
        conn.close()


def sim_config(s, **knobs):
    return sim(s, "POST", "/_sim/config", knobs)


def sim_reset(s):
    return sim(s, "POST", "/_sim/reset", {})


def factory_requests(s, sku=None):
    """Orders the factory received (optionally of one product), oldest first."""
    got = sim(s, "GET", "/_sim/requests")
    if sku is not None:
        got = [r for r in got if isinstance(r["body"], dict)
               and r["body"].get("MessageAttributeProductId") == sku]
    return got


def factory_callbacks(s, order_id=None):
    got = sim(s, "GET", "/_sim/callbacks")
    if order_id is not None:
        got = [c for c in got if "/callbacks/factory/%s?" % order_id in c["url"]]
    return got


def header(request, name):
    """A header of a received request, whatever its case."""
    for k, v in request["headers"].items():
        if k.lower() == name.lower():
            return v
    return None


def callback_parts(url):
    """(order id, token) of a CallbackUrl."""
    m = re.search(r"/callbacks/factory/(%s)\?token=([0-9a-f]{64})$" % UUID_RE, url)
    return (m.group(1), m.group(2)) if m else (None, None)


# -- database -----------------------------------------------------------------------
def as_uuid(hex32):
    return str(uuid.UUID(hex32.lower()))


def orders(s, sku):
    """The product's orders, oldest first: dicts of id, status, quantity, attempts,
    delivered, token_hash (hex), sent (sent_at not NULL)."""
    rows = s.sql(
        "SELECT HEX(r.order_id), r.status, r.quantity, r.attempts,"
        " IFNULL(r.delivered_quantity, ''), IFNULL(HEX(r.token_hash), ''),"
        " r.sent_at IS NOT NULL, r.overdue_reported_at IS NOT NULL"
        " FROM replenishment_order r JOIN product p ON p.product_id = r.product_id"
        " WHERE p.sku = '%s' ORDER BY r.created_at, r.order_id" % sku)
    return [{"id": as_uuid(r[0]), "status": r[1], "quantity": int(r[2]), "attempts": int(r[3]),
             "delivered": int(r[4]) if r[4] else None, "token_hash": r[5].lower(),
             "sent": r[6] == "1", "overdue_reported": r[7] == "1"} for r in rows]


def order_status(s, order_id):
    return s.sql_value("SELECT status FROM replenishment_order WHERE order_id = UNHEX('%s')"
                       % order_id.replace("-", ""))


# Kinds that make webhook events only (sql/015, design.md §4.14): outbox() leaves
# them out unless asked for by name, so that the factory's and the mail's tests
# see the events those hear.
WEBHOOK_ONLY = ("order_sent", "order_failed", "order_overdue", "hold_expired")


def outbox(s, sku, kind=None):
    """The product's outbox events: (event id, kind, taken); of every kind but the
    webhook-only ones, or of kind."""
    rows = s.sql(
        "SELECT HEX(o.event_id), o.kind, o.taken_at IS NOT NULL FROM outbox o"
        " JOIN product p ON p.product_id = o.product_id WHERE p.sku = '%s'%s ORDER BY o.seq"
        % (sku, " AND o.kind = '%s'" % kind if kind else
           " AND o.kind NOT IN (%s)" % ",".join("'%s'" % k for k in WEBHOOK_ONLY)))
    return [(as_uuid(r[0]), r[1], r[2] == "1") for r in rows]


def token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def add_products(s, n, prefix="XP", stock=0):
    """Inserts n products, each with a factory of its own (api NULL: the configured
    factory API) and no advertisement; returns their skus. At stock 0 a product is
    at its reorder point (0): the worker's next sweep orders it (issue 11)."""
    skus = []
    for i in range(n):
        sku = "%s-%03d" % (prefix, i)
        fid, pid = uuid.uuid4().hex, uuid.uuid4().hex
        s.sql("INSERT INTO factory (factory_id, identifier, name, api) VALUES"
              " (UNHEX('%s'), 'FF-%s', '%s factory', NULL)" % (fid, sku, sku))
        s.sql("INSERT INTO product (product_id, sku, name, price, stock, factory_id,"
              " reorder_quantity) VALUES (UNHEX('%s'), '%s', '%s product', 1000, %d,"
              " UNHEX('%s'), %d)" % (pid, sku, sku, stock, fid, REORDER))
        skus.append(sku)
    return skus


def sell_out(s, sku):
    """Buys what is left of the product, then one more: returns the 409 answer that
    turns the stock-out into an order."""
    left = s.stock(sku)
    if left > 0:
        r = s.request("POST", "/checkout", {"sku": sku, "quantity": left})
        if r.status != 200:
            raise RuntimeError("buying the last %d of %s: %r" % (left, sku, r))
    return s.request("POST", "/checkout", {"sku": sku, "quantity": 1})


# -- spool ----------------------------------------------------------------------------
def spool_dir(s, queue, state):
    return os.path.join(s.info["SPOOL_DIR"], queue, state)


def spool_files(s, queue, state):
    try:
        return sorted(n for n in os.listdir(spool_dir(s, queue, state)) if not n.startswith("."))
    except FileNotFoundError:
        return []


def spool_read(path):
    """A spool file as (headers dict, body bytes); headers that repeat (history) are
    lists. None when the file vanished meanwhile."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    head, _, rest = data.partition(b"\n\n")
    headers = {}
    for line in head.decode("utf-8", "replace").splitlines()[1:]:
        key, _, value = line.partition(": ")
        if key == "history":
            headers.setdefault(key, []).append(value)
        else:
            headers[key] = value
    length = int(headers.get("length", "0") or 0)
    return headers, rest[:length]


def dead_spool_message(mid, queue, body):
    """A dead spool message file in the format of docs/design.md §4.6 (bytes), as if
    the worker had given it up after 3 attempts."""
    now = int(time.time())
    utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    head = ("restock-spool 1\nid: %s\nqueue: %s\ncreated: %d.000000000 %s\nattempts: 3\n"
            "died-at: %d %s\ndeath-reason: test\nlength: %d\n\n"
            % (mid, queue, now, utc, now, utc, len(body))).encode()
    data = head + body + b"\n"
    return data + b"end " + hashlib.blake2b(data, digest_size=32).hexdigest().encode() + b"\n"


def spool_message(s, queue, state, name):
    return spool_read(os.path.join(spool_dir(s, queue, state), name))


def spool_catch(s, queue, name, tries=50):
    """Message name read from whichever folder holds it, as (state, raw bytes, file
    mode), or None. The worker may move it between a look and a read: the look is retried."""
    for _ in range(tries):
        for state in STATES:
            try:
                with open(os.path.join(spool_dir(s, queue, state), name), "rb") as f:
                    return state, f.read(), os.fstat(f.fileno()).st_mode
            except FileNotFoundError:
                continue
    return None


def spool_find(s, queue, name):
    """The states (folders) where message name is."""
    return [st for st in STATES if os.path.exists(os.path.join(spool_dir(s, queue, st), name))]


def mail_queue(s):
    """Every message of the mail queue, in any state: (state, name, JSON body)."""
    out = []
    for state in STATES:
        for name in spool_files(s, "mail", state):
            got = spool_message(s, "mail", state, name)
            if got is None:
                continue
            try:
                out.append((state, name, json.loads(got[1])))
            except ValueError:
                out.append((state, name, None))
    return out


def alerts(s, template):
    """Operator alerts of a template queued in the mail queue (any state)."""
    return [(state, name, m) for state, name, m in mail_queue(s)
            if m is not None and m.get("kind") == "alert" and m.get("template") == template]


def received_mail(s):
    """What the SMTP sink received: list of (to, subject, text body)."""
    out = []
    for path in sorted(glob.glob(os.path.join(s.info["MAIL_DIR"], "new", "*"))):
        with open(path, "rb") as f:
            msg = email.message_from_bytes(f.read(), policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",)) if msg.is_multipart() else msg
        try:
            text = part.get_content() if part is not None else ""
        except (LookupError, KeyError):
            text = ""
        out.append((str(msg["To"] or ""), str(msg["Subject"] or ""), text))
    return out
