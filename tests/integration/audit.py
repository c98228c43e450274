"""Integration test of the audit trail (issue 24, item 3; docs/design.md "Admin
accounts and the audit trail") on the real stack: each change restockctl makes —
product set, orders fulfil, dlq redrive, client add and revoke, webhook add,
disable, enable and rotate, admin add — writes exactly one audit_log row, with
actor restockctl:<the user who ran it>, source local, its action and target, and
before and after as JSON that never holds a key or a secret; a change that fails
(bad input, unknown target, or an audit row the database refuses) writes no row
and changes nothing: the row is in the change's transaction; a change that
changed nothing (already so) writes none; the database itself refuses UPDATE and
DELETE on audit_log; `restockctl audit` prints the rows newest first, --limit and
--before page them."""

import json
import os
import pwd
import re
import subprocess

from harness import BUILDDIR, Stack, run_tests
from replenish_common import (DONUT, dead_spool_message, orders, sell_out, spool_dir,
                              spool_files)

ME = "restockctl:" + pwd.getpwuid(os.getuid()).pw_name


def rows_after(s, last):
    """The audit rows after id last, oldest first, as dicts."""
    rows = s.sql("SELECT id, actor, source, action, target, IFNULL(before_json, 'null'),"
                 " IFNULL(after_json, 'null') FROM audit_log WHERE id > %d ORDER BY id" % last)
    return [{"id": int(r[0]), "actor": r[1], "source": r[2], "action": r[3], "target": r[4],
             "before": json.loads(r[5]), "after": json.loads(r[6])} for r in rows]


def last_id(s):
    return int(s.sql_value("SELECT IFNULL(MAX(id), 0) FROM audit_log"))


def ctl(s, args, stdin=None):
    env = dict(s.env)
    env["RESTOCK_CONFIG"] = s.info["RESTOCK_CONFIG"]
    return subprocess.run([os.path.join(BUILDDIR, "ctl", "restockctl")] + list(args), env=env,
                          input=stdin or "", capture_output=True, text=True)


def one_row(t, s, what, args, action, target=None, check=None, stdin=None):
    """Runs restockctl args, which must succeed and write exactly one row of action
    (on target when given); check(row) says more. Returns the row and the output."""
    before = last_id(s)
    p = ctl(s, args, stdin)
    t.is_(p.returncode, 0, "%s succeeds: %s" % (what, p.stderr.strip()))
    rows = rows_after(s, before)
    t.is_([(r["action"], r["actor"], r["source"]) for r in rows], [(action, ME, "local")],
          "%s: one row, %s by %s from local" % (what, action, ME))
    row = rows[0] if rows else {"target": None, "before": None, "after": None}
    if target is not None:
        t.is_(row["target"], target, "%s: its target is %s" % (what, target))
    if check is not None:
        t.ok(check(row), "%s: before %s, after %s" % (what, json.dumps(row["before"]),
                                                     json.dumps(row["after"])), row)
    return row, p


def no_row(t, s, what, args, says=None, status=1):
    before = last_id(s)
    p = s.restockctl(*args)
    t.ok(p.returncode == status and (says is None or says in p.stdout + p.stderr),
         "%s: exit %d%s (%s)" % (what, status, ", says " + says if says else "",
                                 (p.stderr or p.stdout).strip()))
    t.is_(rows_after(s, before), [], "%s: no audit row" % what)
    return p


def settings(s, sku=DONUT):
    return s.sql("SELECT reorder_point, reorder_level, max_per_customer FROM product"
                 " WHERE sku = '%s'" % sku)[0]


def products(t, s):
    old = settings(s)
    one_row(t, s, "product set", ("product", "set", DONUT, "reorder_point=3",
                                  "max_per_customer=4"), "product.set", DONUT,
            lambda r: r["before"]["reorder_point"] == int(old[0]) and
            r["after"]["reorder_point"] == 3 and r["after"]["max_per_customer"] == 4 and
            r["before"]["max_per_customer"] == int(old[2]))
    now = settings(s)
    no_row(t, s, "product set with an unknown key", ("product", "set", DONUT, "colour=red"),
           "unknown key")
    no_row(t, s, "product set out of range", ("product", "set", DONUT, "reorder_point=-5"))
    no_row(t, s, "product set of an unknown sku", ("product", "set", "NO-SUCH", "reorder_point=1"),
           "unknown sku")
    t.is_(settings(s), now, "the refused changes changed nothing")

    # The row is in the change's transaction: when the database refuses the row,
    # the change is rolled back with it.
    s.sql("CREATE TRIGGER audit_test_refuse BEFORE INSERT ON audit_log FOR EACH ROW"
          " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit refused by the test'")
    try:
        no_row(t, s, "product set whose audit row is refused",
               ("product", "set", DONUT, "reorder_point=7"), "audit refused by the test")
        t.is_(settings(s), now, "and its change was rolled back: reorder_point still 3")
        clients_before = s.sql_value("SELECT COUNT(*) FROM api_client")
        p = no_row(t, s, "client add whose audit row is refused", ("client", "add", "lost"))
        t.ok(not re.search(r"rsk_", p.stdout), "it prints no key", p.stdout)
        t.is_(s.sql_value("SELECT COUNT(*) FROM api_client"), clients_before,
              "and no client was made")
    finally:
        s.sql("DROP TRIGGER audit_test_refuse")


def fulfil(t, s):
    t.is_(sell_out(s, DONUT).status, 409, "the donut sells out")
    sent = s.wait_until(lambda: [o for o in orders(s, DONUT) if o["status"] == "sent"], 30)
    t.ok(sent, "its order is sent to the silent factory", orders(s, DONUT))
    order = sent[0]["id"] if sent else "00000000-0000-0000-0000-000000000000"
    quantity = sent[0]["quantity"] if sent else 1
    one_row(t, s, "orders fulfil", ("orders", "fulfil", order, str(quantity)), "order.fulfil",
            order, lambda r: r["after"]["delivered"] == quantity and
            r["before"]["ordered"] == quantity and r["after"]["stock"] == s.stock(DONUT))
    no_row(t, s, "orders fulfil a second time", ("orders", "fulfil", order, str(quantity)),
           "already", status=0)
    no_row(t, s, "orders fulfil of an unknown order",
           ("orders", "fulfil", "00000000-0000-7000-8000-000000000000", "1"), "unknown order")


def redrive(t, s):
    dead = spool_dir(s, "mail", "dead")
    os.makedirs(dead, exist_ok=True)
    with open(os.path.join(dead, "audit-1"), "wb") as f:
        f.write(dead_spool_message("audit-1", "mail", json.dumps({"kind": "alert"}).encode()))
    # The worker stopped meanwhile: running, it would take the redriven message (not a
    # mail it can send) and put it back in dead/ before it is looked for (CI saw it).
    s.stop("worker")
    try:
        one_row(t, s, "dlq redrive", ("dlq", "redrive", "audit-1"), "dlq.redrive", "audit-1",
                lambda r: r["before"] == {"queue": "mail", "state": "dead"} and
                r["after"] == {"queue": "mail", "state": "waiting"})
        t.ok("audit-1" not in spool_files(s, "mail", "dead"), "and the message left dead/")
    finally:
        s.start("worker")
    no_row(t, s, "dlq redrive of no such message", ("dlq", "redrive", "audit-2"), "no dead")


def clients(t, s):
    row, p = one_row(t, s, "client add", ("client", "add", "shop-1"), "client.add", None,
                     lambda r: r["after"] == {"name": "shop-1", "revoked": False})
    key = re.findall(r"^(rsk_\S+)$", p.stdout, re.M)
    ident = s.sql_value("SELECT client_id FROM api_client WHERE name = 'shop-1'")
    t.is_(row["target"], ident, "its target is the client's id")
    one_row(t, s, "client revoke", ("client", "revoke", "shop-1"), "client.revoke", ident,
            lambda r: r["before"] == {"revoked": False} and r["after"] == {"revoked": True})
    no_row(t, s, "client revoke again", ("client", "revoke", ident), "already", status=0)
    no_row(t, s, "client add of a bad name", ("client", "add", "123"), "digits")
    return key


def webhooks(t, s):
    row, p = one_row(t, s, "webhook add", ("webhook", "add", "https://hooks.example/r",
                                           "--events", "stock.sold_out"), "webhook.add", None,
                     lambda r: r["before"] is None and r["after"] == {
                         "url": "https://hooks.example/r", "events": "stock.sold_out",
                         "status": "enabled"})
    secrets = re.findall(r"whsec_\S+", p.stdout)
    hook = row["target"]
    one_row(t, s, "webhook disable", ("webhook", "disable", hook, "--reason", "maintenance"),
            "webhook.disable", hook,
            lambda r: r["before"] == {"status": "enabled"} and
            r["after"] == {"status": "disabled", "reason": "maintenance"})
    no_row(t, s, "webhook disable again", ("webhook", "disable", hook), "already", status=0)
    one_row(t, s, "webhook enable", ("webhook", "enable", hook), "webhook.enable", hook,
            lambda r: r["before"] == {"status": "disabled"} and r["after"] == {"status": "enabled"})
    row, p = one_row(t, s, "webhook rotate", ("webhook", "rotate", hook), "webhook.rotate", hook,
                     lambda r: r["after"] == {"secret": "rotated"})
    secrets += re.findall(r"whsec_\S+", p.stdout)
    no_row(t, s, "webhook add of a bad url", ("webhook", "add", "ftp://x.example/"))
    no_row(t, s, "webhook rotate of no endpoint",
           ("webhook", "rotate", "00000000-0000-7000-8000-000000000000"), "no webhook")
    t.is_(len(secrets), 2, "add and rotate each printed a secret")
    return secrets


def append_only(t, s):
    count = s.sql_value("SELECT COUNT(*) FROM audit_log")
    for what, query in (("UPDATE", "UPDATE audit_log SET actor = 'someone else'"),
                        ("DELETE", "DELETE FROM audit_log")):
        try:
            s.sql(query)
            refused = ""
        except RuntimeError as e:
            refused = str(e)
        t.ok("append-only" in refused, "%s on audit_log is refused by the database" % what,
             refused)
    t.is_(s.sql_value("SELECT COUNT(*) FROM audit_log"), count, "no row was removed")
    t.is_(s.sql_value("SELECT COUNT(*) FROM audit_log WHERE actor = 'someone else'"), "0",
          "none was changed")


def listing(t, s, secrets):
    p = s.restockctl("audit")
    lines = p.stdout.splitlines()[1:]
    ids = [int(line.split()[0]) for line in lines]
    t.ok(p.returncode == 0 and ids and ids == sorted(ids, reverse=True),
         "restockctl audit prints the rows newest first", p.stdout)
    t.is_(len(ids), int(s.sql_value("SELECT COUNT(*) FROM audit_log")), "all of them (under 50)")
    newest = lines[0].split() if lines else []
    t.ok(newest[2:5] == [ME, "local", "admin.add"] if newest else False,
         "the newest is the admin add, by %s from local" % ME, lines[:1])
    p = s.restockctl("audit", "--limit", "2")
    t.is_([int(line.split()[0]) for line in p.stdout.splitlines()[1:]], ids[:2],
          "--limit 2: the newest two")
    p = s.restockctl("audit", "--limit", "2", "--before", str(ids[1]) if len(ids) > 1 else "1")
    t.is_([int(line.split()[0]) for line in p.stdout.splitlines()[1:]], ids[2:4],
          "--before the second: the next two")
    p = s.restockctl("audit", "--limit", "0")
    t.ok(p.returncode == 1 and "limit" in p.stderr, "--limit 0 is refused", p.stderr)
    dump = "\n".join("\t".join(r) for r in s.sql("SELECT * FROM audit_log"))
    found = [x[:8] for x in secrets if x and x in dump]
    t.is_(found, [], "no client key and no webhook secret in the audit trail")


def body(t):
    with Stack(t, env={"RESTOCK_FACTORY_ARGS": "--silent", "RESTOCK_SWEEP_INTERVAL": "1"}) as s:
        products(t, s)
        fulfil(t, s)
        redrive(t, s)
        secrets = clients(t, s)
        secrets += webhooks(t, s)
        one_row(t, s, "admin add", ("admin", "add", "ops", "--role", "viewer",
                                    "--password-stdin"), "admin.add", "ops",
                lambda r: r["before"] is None and r["after"] == {"role": "viewer",
                                                                  "disabled": False},
                stdin="a long enough password\n")
        append_only(t, s)
        listing(t, s, secrets)


if __name__ == "__main__":
    run_tests(body)
