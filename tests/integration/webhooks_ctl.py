"""Integration test of the webhook endpoints (issue 22, item 1; docs/design.md §4.11)
on the real stack: `restockctl webhook add` prints the endpoint's id and its secret
(whsec_ + base64 of 32 bytes) once, and the row holds the secret only sealed; the
worker's key (the stack's credential webhook_key) opens it, through
lib/webhook_endpoint (tests/integration/webhook_open); `list`, `disable`,
`enable`, `rotate` and `ping` show and change what they say (a ping to a
loopback endpoint without webhook_allow is refused by the egress guard), and the fan-out
finds the enabled endpoints of a type; a bad URL, an unknown type, an unknown or
malformed id, a missing public key: a one-line error, exit 1, nothing changed in
the table; no secret in any log nor in any other output; restockctl run as an
unprivileged user (nobody), who cannot read webhook_key, adds and rotates
endpoints whose secrets the worker's key opens."""

import base64
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid

from harness import BUILDDIR, Stack, run_tests

SECRET = re.compile(r"^(whsec_[A-Za-z0-9+/]{43}=)$", re.M)
OPEN = os.path.join(BUILDDIR, "tests", "integration", "webhook_open")
TYPES = ("stock.reorder_point,stock.sold_out,stock.arrived,order.opened,order.sent,"
         "order.fulfilled,order.failed,order.overdue,delivery.refused,hold.expired")


class Outputs:
    """Everything restockctl printed, to look for secrets where they must not be."""

    def __init__(self):
        self.text = []

    def run(self, s, *args, env=None, user=None, config=None):
        e = dict(s.env)
        e["RESTOCK_CONFIG"] = config or s.info["RESTOCK_CONFIG"]
        e.update(env or {})
        pre = None
        if user is not None:
            def pre():
                os.setgroups([])
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
        p = subprocess.run([os.path.join(BUILDDIR, "ctl", "restockctl")] + list(args), env=e,
                           capture_output=True, text=True, preexec_fn=pre)
        self.text.append((" ".join(args), p.stdout, p.stderr))
        return p


def table(s):
    """The whole table, every column as text or hex: what a copy of the database holds."""
    return s.sql("SELECT HEX(endpoint_id), url, IFNULL(events, 'NULL'), HEX(secret_sealed),"
                 " IFNULL(HEX(previous_sealed), 'NULL'), IFNULL(rotated_at, 'NULL'), status,"
                 " IFNULL(disabled_reason, 'NULL'), IFNULL(disabled_at, 'NULL'), created_at"
                 " FROM webhook_endpoint ORDER BY endpoint_id")


def row(s, ident):
    rows = s.sql("SELECT url, IFNULL(events, 'NULL'), LENGTH(secret_sealed),"
                 " IFNULL(HEX(previous_sealed), 'NULL'), rotated_at IS NOT NULL, status,"
                 " IFNULL(disabled_reason, 'NULL'), disabled_at IS NOT NULL,"
                 " created_at IS NOT NULL, HEX(secret_sealed) FROM webhook_endpoint"
                 " WHERE endpoint_id = UNHEX(REPLACE('%s', '-', ''))" % ident)
    return rows[0] if rows else None


def opened(s, *ids, env=None):
    """The worker's view: ID -> (current, previous or '-')."""
    e = dict(s.env)
    e["RESTOCK_CONFIG"] = s.info["RESTOCK_CONFIG"]
    e.update(env or {})
    p = subprocess.run([OPEN] + list(ids), env=e, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("webhook_open: " + p.stderr)
    return {line.split()[0]: tuple(line.split()[1:]) for line in p.stdout.splitlines()}


def subscribed(s, kind):
    e = dict(s.env)
    e["RESTOCK_CONFIG"] = s.info["RESTOCK_CONFIG"]
    p = subprocess.run([OPEN, "--subscribed", kind], env=e, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("webhook_open: " + p.stderr)
    return p.stdout.split()


def add(t, s, out, url, *more, **kw):
    p = out.run(s, "webhook", "add", url, *more, **kw)
    t.is_(p.returncode, 0, "webhook add %s %s succeeds" % (url, " ".join(more)))
    m = re.search(r"^webhook endpoint ([0-9a-f-]{36}) added: (\S+), events: (\S+)$", p.stdout,
                  re.M)
    t.ok(m is not None and m.group(2) == url, "  it prints the endpoint's id and URL", p.stdout)
    secrets = SECRET.findall(p.stdout)
    t.is_(len(secrets), 1, "  and one whsec_ secret (base64 of 32 bytes), on a line of its own")
    t.ok(p.stdout.count("whsec_") == 1 and "whsec_" not in p.stderr,
         "  the secret is printed once, only there")
    return (m.group(1) if m else None), (secrets[0] if secrets else None)


def refused(t, s, out, args, words, name, env=None):
    before = table(s)
    p = out.run(s, *args, env=env)
    t.ok(p.returncode == 1 and p.stderr.startswith("restockctl: ") and
         p.stderr.count("\n") == 1 and all(w in p.stderr for w in words),
         "%s: exit 1, one line saying %s" % (name, " / ".join(words)), p.stderr + p.stdout)
    t.ok("whsec_" not in p.stdout + p.stderr, "  no secret printed")
    t.is_(table(s), before, "  nothing changed in webhook_endpoint")


def test_add_and_open(t, s, out):
    p = out.run(s, "webhook", "list")
    t.is_((p.returncode, len(p.stdout.splitlines())), (0, 1), "webhook list: the header alone")
    a, secret_a = add(t, s, out, "https://hooks.example.com/restock")
    b, secret_b = add(t, s, out, "http://127.0.0.1:9/erp?x=1", "--events",
                      "order.sent, stock.sold_out,order.sent")
    t.ok(uuid.UUID(a).version == 7 and uuid.UUID(b).version == 7 and a < b,
         "the ids are time-ordered UUIDs (version 7)", (a, b))
    ra, rb = row(s, a), row(s, b)
    t.is_(ra[:9], ["https://hooks.example.com/restock", "NULL", "98", "NULL", "0", "0", "NULL",
                   "0", "1"], "A's row: its URL, every type (NULL), a 98-byte box, enabled")
    t.is_(rb[1], "stock.sold_out,order.sent", "B's row: its types, once each, in the types' order")
    dump = "\n".join("\t".join(r) for r in table(s))
    clear = [(x, x[6:], base64.b64decode(x[6:]).hex().upper(), x.encode().hex().upper())
             for x in (secret_a, secret_b)]
    t.ok(not any(form in dump for forms in clear for form in forms),
         "no secret is in the table in clear (as text, base64, bytes or the text's bytes)", dump)
    t.is_(opened(s, a, b), {a: (secret_a, "-"), b: (secret_b, "-")},
          "the worker's key (credential webhook_key) opens each sealed secret: the one printed")
    p = out.run(s, "webhook", "list")
    lines = {l.split()[0]: l.split() for l in p.stdout.splitlines()[1:]}
    created = s.sql_value("SELECT DATE_FORMAT(created_at, '%%Y-%%m-%%d %%H:%%i:%%s') FROM"
                          " webhook_endpoint WHERE endpoint_id = UNHEX(REPLACE('%s', '-', ''))"
                          % a)
    t.is_(lines.get(a), [a, "enabled"] + created.split() +
          ["-", "all", "https://hooks.example.com/restock", "-"],
          "webhook list: A enabled, created (UTC), not rotating, all types, its URL, no reason")
    t.is_(lines.get(b, [None] * 8)[5:8], ["stock.sold_out,order.sent",
                                          "http://127.0.0.1:9/erp?x=1", "-"], "  B with its types")
    t.ok("whsec_" not in p.stdout, "  and no secret")
    return a, secret_a, b, secret_b


def test_bad_input(t, s, out, a):
    refused(t, s, out, ("webhook", "add", "ftp://hooks.example.com/"), ["https:// or http://"],
            "another scheme")
    refused(t, s, out, ("webhook", "add", "https://ops:hunter2@hooks.example.com/"),
            ["user or password"], "credentials in the URL")
    refused(t, s, out, ("webhook", "add", "https://hooks example.com/"), ["blank"], "a blank")
    refused(t, s, out, ("webhook", "add", "https:///x"), ["no host"], "no host")
    refused(t, s, out, ("webhook", "add", "https://h.example:70000/"), ["port"], "a bad port")
    refused(t, s, out, ("webhook", "add", "https://h.example/" + "a" * 2100), ["longer than 2048"],
            "a URL too long")
    refused(t, s, out, ("webhook", "add", "https://h.example/", "--events", "order.sent,order.lost"),
            ['unknown type "order.lost"', TYPES], "an unknown type")
    refused(t, s, out, ("webhook", "add", "https://h.example/", "--events", "ping"),
            ["ping is not subscribed to"], "ping as a subscription")
    refused(t, s, out, ("webhook", "add"), ["usage: restockctl webhook add"], "no URL")
    refused(t, s, out, ("webhook", "add", "https://h.example/"),
            ["/nonexistent/webhook_key.pub", "restockctl webhook key"], "no public key to seal to",
            env={"RESTOCK_WEBHOOK_PUBLIC_KEY": "/nonexistent/webhook_key.pub"})
    unknown = str(uuid.uuid4())
    for command in ("disable", "enable", "rotate", "ping"):
        refused(t, s, out, ("webhook", command, unknown), ["no webhook endpoint " + unknown],
                "webhook %s of an unknown id" % command)
        refused(t, s, out, ("webhook", command, "hooks-1"), ['"hooks-1" is not an endpoint id'],
                "webhook %s of a malformed id" % command)
    refused(t, s, out, ("webhook", "disable", a, "--reason", "line\nbreak"), ["control"],
            "a reason of two lines")


def test_disable_enable(t, s, out, a, b):
    t.is_(sorted(subscribed(s, "order.sent")), sorted([a, b]),
          "the fan-out of order.sent: A (every type) and B (subscribed)")
    t.is_(subscribed(s, "stock.arrived"), [a], "of stock.arrived: A only")
    p = out.run(s, "webhook", "disable", a, "--reason", "ERP maintenance")
    t.ok(p.returncode == 0 and "disabled: nothing more is sent to it" in p.stdout,
         "webhook disable A --reason: disabled", p.stdout + p.stderr)
    first = row(s, a)
    t.is_(first[5:8], ["1", "ERP maintenance", "1"], "  the row: disabled by an operator, why, when")
    t.is_(subscribed(s, "order.sent"), [b], "  the fan-out of order.sent leaves A out")
    p = out.run(s, "webhook", "disable", a, "--reason", "again")
    t.ok(p.returncode == 0 and "was disabled already: nothing changed" in p.stdout,
         "disabling it again: nothing changed", p.stdout)
    t.is_(row(s, a), first, "  the row keeps the first reason and time")
    p = out.run(s, "webhook", "list")
    line = [l for l in p.stdout.splitlines() if l.startswith(a)]
    t.ok(line and " disabled " in line[0] and line[0].endswith(": ERP maintenance"),
         "webhook list shows A disabled, when and why", p.stdout)
    p = out.run(s, "webhook", "ping", a)
    t.ok(p.returncode == 1 and "is disabled: nothing sent" in p.stderr,
         "webhook ping of a disabled endpoint: nothing sent, it says so", p.stderr)
    p = out.run(s, "webhook", "enable", a)
    t.ok(p.returncode == 0 and "enabled: events from now on are sent to it" in p.stdout,
         "webhook enable A: enabled", p.stdout + p.stderr)
    t.is_(row(s, a)[5:8], ["0", "NULL", "0"], "  the row: enabled, no reason, no time")
    p = out.run(s, "webhook", "enable", a)
    t.ok(p.returncode == 0 and "was enabled already: nothing changed" in p.stdout,
         "enabling it again: nothing changed", p.stdout)
    t.is_(sorted(subscribed(s, "order.sent")), sorted([a, b]), "  A is in the fan-out again")
    p = out.run(s, "webhook", "disable", b)
    t.ok(p.returncode == 0 and row(s, b)[5:7] == ["1", "NULL"],
         "webhook disable without a reason: disabled, no reason", p.stdout + p.stderr)
    out.run(s, "webhook", "enable", b)


def test_rotate_and_ping(t, s, out, b, secret_b):
    before = row(s, b)
    p = out.run(s, "webhook", "rotate", b)
    t.is_(p.returncode, 0, "webhook rotate B succeeds")
    secrets = SECRET.findall(p.stdout)
    t.ok(len(secrets) == 1 and secrets[0] != secret_b and p.stdout.count("whsec_") == 1,
         "  it prints one new secret, once", p.stdout)
    t.ok("86400 s (webhook_rotation_overlap)" in p.stdout,
         "  and says how long the old one still signs", p.stdout)
    after = row(s, b)
    t.ok(after[3] == before[9] and after[4] == "1" and after[9] != before[9],
         "the row: the old box is the previous one, a new box, the rotation's time")
    new = secrets[0] if secrets else None
    t.is_(opened(s, b), {b: (new, secret_b)},
          "the worker opens both: the new secret and, during the overlap, the old one")
    t.is_(opened(s, b, env={"RESTOCK_WEBHOOK_ROTATION_OVERLAP": "0"}), {b: (new, "-")},
          "with webhook_rotation_overlap 0 the old one no longer signs")
    line = [l.split() for l in out.run(s, "webhook", "list").stdout.splitlines()
            if l.startswith(b)]
    t.ok(line and re.match(r"\d{4}-\d\d-\d\d$", line[0][4]), "webhook list shows B rotating (since when)",
         line)
    line = [l.split() for l in out.run(s, "webhook", "list",
                                       env={"RESTOCK_WEBHOOK_ROTATION_OVERLAP": "0"})
            .stdout.splitlines() if l.startswith(b)]
    t.ok(line and line[0][4] == "-", "  and not once the overlap is over", line)
    p = out.run(s, "webhook", "rotate", b)
    newer = SECRET.findall(p.stdout)
    t.is_(opened(s, b), {b: (newer[0] if newer else None, new)},
          "a second rotation: the previous secret is the one rotated out last")

    before = table(s)
    p = out.run(s, "webhook", "ping", b, "--wait", "3")
    t.ok(p.returncode == 1 and re.search(r"^ping msg_[A-Za-z0-9_-]{44} queued for webhook "
                                         r"endpoint %s$" % b, p.stdout, re.M) and
         "not delivered in 3 s" in p.stderr and "refused by the egress guard" in p.stderr and
         "127.0.0.1 (loopback)" in p.stderr,
         "webhook ping of B (127.0.0.1, webhook_allow empty): queued, then the egress guard's "
         "refusal as its last error, exit 1", p.stderr + p.stdout)
    t.is_(table(s), before, "  nothing changed in the endpoint's row")
    return [new] + newer


def test_as_nobody(t, s, out):
    """restockctl as an unprivileged user: the configuration copied where it may
    read it, the credentials folder beside it the stack's (root's 0700, with
    webhook_key): it cannot read the private key, and needs only the public one."""
    nobody = pwd.getpwnam("nobody")
    top = tempfile.mkdtemp(prefix="restock-nobody-")
    try:
        os.chmod(top, 0o755)
        config = os.path.join(top, "restock.conf")
        shutil.copy(s.info["RESTOCK_CONFIG"], config)
        os.chmod(config, 0o644)
        os.symlink(os.path.join(s.dir, "credentials"), os.path.join(top, "credentials"))
        p = out.run(s, "config", "show", user=nobody, config=config)
        t.ok(p.returncode == 0 and re.search(r"^webhook_key = \t# default$", p.stdout, re.M),
             "as nobody, restockctl cannot read webhook_key", p.stdout + p.stderr)
        p = out.run(s, "webhook", "key", user=nobody, config=config)
        t.ok(p.returncode == 1 and "webhook_key is not set" in p.stderr,
             "  and cannot publish it (webhook key: root's)", p.stderr)
        ident, secret = add(t, s, out, "https://nobody.example/in", "--events", "hold.expired",
                            user=nobody, config=config)
        t.is_(opened(s, ident), {ident: (secret, "-")},
              "an endpoint added by nobody: the worker's key opens its secret")
        p = out.run(s, "webhook", "rotate", ident, user=nobody, config=config)
        rotated = SECRET.findall(p.stdout)
        t.is_(opened(s, ident), {ident: (rotated[0] if rotated else None, secret)},
              "rotated by nobody: both open")
        return [secret] + rotated
    finally:
        shutil.rmtree(top, ignore_errors=True)


def body(t):
    out = Outputs()
    # A database of its own: its socket must be reachable by nobody, which the
    # suite's shared server's folder is not.
    with Stack(t, ["db", "worker"], private_db=True) as s:
        a, secret_a, b, secret_b = test_add_and_open(t, s, out)
        test_bad_input(t, s, out, a)
        test_disable_enable(t, s, out, a, b)
        secrets = [secret_a, secret_b] + test_rotate_and_ping(t, s, out, b, secret_b)
        if os.geteuid() == 0:
            secrets += test_as_nobody(t, s, out)
        else:
            t.ok(True, "# SKIP restockctl as another user needs root")
        secrets = [x for x in secrets if x]
        leaked = []
        for folder, _, files in os.walk(os.path.join(s.dir, "log")):
            for name in files:
                with open(os.path.join(folder, name), errors="replace") as f:
                    text = f.read()
                leaked += [name for x in secrets if x in text or x[6:] in text]
        t.is_(leaked, [], "no secret in any log of the stack (%d secrets)" % len(secrets))
        printed = [cmd for cmd, o, e in out.text
                   if ("whsec_" in o and not cmd.startswith(("webhook add", "webhook rotate")))
                   or "whsec_" in e]
        t.is_(printed, [], "no secret in any other output of restockctl")
        t.ok(not any("Sanitizer" in e or "runtime error" in e for _, _, e in out.text),
             "no sanitizer report from restockctl")


if __name__ == "__main__":
    run_tests(body)
