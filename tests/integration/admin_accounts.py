"""Integration test of the admin API's accounts and sessions (issue 24, item 2;
docs/design.md "Admin accounts and the audit trail") on a real MariaDB:
`restockctl admin add --password-stdin` makes an account whose password is stored
only as an Argon2id hash; a password shorter than 12 characters, a bad name or
role, or no terminal without --password-stdin is refused and makes nothing;
`admin list` shows no hash; the login (tests/integration/admin_login.c, the
library restock-admin calls) answers alike for an unknown name, a wrong password,
a disabled or a locked account; 5 wrong passwords lock the account, then even the
right one is refused, until `admin unlock`; two wrong logins at once both count;
a right login resets the count; `admin disable` refuses logins and ends sessions,
`enable` allows them again; `admin role` changes the role and ends sessions;
`admin passwd` replaces the password. Sessions: stored as the SHA-256 of their
token, touched by a lookup, expired when idle or past their lifetime, gone at
logout. No password and no hash appears in any output or log."""

import hashlib
import os
import re
import subprocess

from harness import BUILDDIR, Stack, run_tests

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple-들어가요-2026"
ADMIN_LOGIN = os.path.join(BUILDDIR, "tests", "integration", "admin_login")


def ctl(s, *args, password=None):
    """restockctl with the password on stdin (None: stdin closed, no terminal)."""
    env = dict(s.env)
    env["RESTOCK_CONFIG"] = s.info["RESTOCK_CONFIG"]
    return subprocess.run([os.path.join(BUILDDIR, "ctl", "restockctl")] + list(args), env=env,
                          input=password, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL if password is None else None)


def login_cmd(s, *args):
    env = dict(s.env)
    env["RESTOCK_CONFIG"] = s.info["RESTOCK_CONFIG"]
    return [ADMIN_LOGIN] + list(args), env


def login(s, name, password):
    argv, env = login_cmd(s, "login", name)
    p = subprocess.run(argv, env=env, input=password + "\n", capture_output=True, text=True)
    m = re.match(r"result=(\S+) account=(\d+)", p.stdout)
    return m.group(1) if m else "failed: " + p.stderr


def session(s, *args):
    argv, env = login_cmd(s, *args)
    p = subprocess.run(argv, env=env, capture_output=True, text=True)
    return dict(kv.split("=", 1) for kv in p.stdout.split()) if p.returncode == 0 else {
        "error": p.stderr}


def account(s, name):
    rows = s.sql("SELECT role, failures, locked_until IS NOT NULL AND locked_until > "
                 "UTC_TIMESTAMP(6), disabled, password_hash FROM admin_account WHERE name = '%s'"
                 % name)
    return rows[0] if rows else None


def outputs_clean(t, outputs, secrets):
    text = "\n".join(outputs)
    found = [s for s in secrets if s and s in text]
    t.is_(found, [], "no password or hash in any output of restockctl")


def adding(t, s, outputs):
    p = ctl(s, "admin", "add", "alice", "--role", "operator", "--password-stdin",
            password=PASSWORD + "\n")
    outputs += [p.stdout, p.stderr]
    t.is_(p.returncode, 0, "admin add alice --role operator --password-stdin: " + p.stderr)
    row = account(s, "alice")
    t.ok(row is not None and row[0] == "operator", "alice is an operator", row)
    t.ok(row is not None and row[4].startswith("$argon2id$") and PASSWORD not in row[4],
         "her password is stored as an Argon2id hash only", row and row[4][:20])

    refusals = [
        (("admin", "add", "bob", "--role", "viewer", "--password-stdin"), "eleven char\n",
         "shorter than 12", "a password of 11 characters"),
        (("admin", "add", "bob", "--role", "root", "--password-stdin"), PASSWORD + "\n",
         "viewer or operator", "a role other than viewer or operator"),
        (("admin", "add", "-bob", "--role", "viewer", "--password-stdin"), PASSWORD + "\n",
         "usage", "a name starting with '-'"),
        (("admin", "add", "bob", "--role", "viewer"), None, "--password-stdin",
         "no terminal and no --password-stdin"),
        (("admin", "add", "alice", "--role", "viewer", "--password-stdin"), PASSWORD + "\n",
         "exists", "a second alice"),
    ]
    for args, pw, says, what in refusals:
        p = ctl(s, *args, password=pw)
        outputs += [p.stdout, p.stderr]
        t.ok(p.returncode == 1 and says in p.stderr, "refused: %s (%s)" % (what, p.stderr.strip()))
    t.is_(s.sql_value("SELECT COUNT(*) FROM admin_account"), "1",
          "the refusals made no account")
    t.is_(s.sql_value("SELECT COUNT(*) FROM audit_log"), "1",
          "and wrote no audit row (only alice's add)")
    p = ctl(s, "admin", "add", "bob", "--role", "viewer", "--password-stdin",
            password=PASSWORD + "\n")
    t.is_(p.returncode, 0, "bob is added as a viewer")

    p = ctl(s, "admin", "list")
    outputs += [p.stdout, p.stderr]
    lines = {line.split()[0]: line for line in p.stdout.splitlines()[1:] if line.strip()}
    t.ok(p.returncode == 0 and "operator" in lines.get("alice", "") and
         "viewer" in lines.get("bob", ""), "admin list shows alice and bob with their roles",
         p.stdout)
    t.ok("argon2" not in p.stdout and "$" not in p.stdout, "and no hash", p.stdout)


def logins(t, s):
    t.is_(login(s, "alice", PASSWORD), "ok", "alice logs in with her password")
    t.ok(s.sql_value("SELECT last_login_at IS NOT NULL FROM admin_account WHERE name = 'alice'")
         == "1", "her last login is noted")
    t.is_(login(s, "nobody", PASSWORD), "unknown", "an unknown name: refused (unknown)")
    for i in range(4):
        t.is_(login(s, "alice", "wrong password %d" % i), "wrong_password",
              "wrong password %d refused" % (i + 1))
    t.is_(account(s, "alice")[1], "4", "four failures in a row counted")
    t.is_(login(s, "alice", PASSWORD), "ok", "the right password before the fifth: in")
    t.is_(account(s, "alice")[1], "0", "and the count starts again")

    for i in range(5):
        login(s, "alice", "wrong again %d" % i)
    t.is_(account(s, "alice")[2], "1", "five wrong passwords in a row lock alice")
    t.is_(login(s, "alice", PASSWORD), "locked", "while locked even the right password is refused")
    p = ctl(s, "admin", "list")
    t.ok(re.search(r"^alice .*locked until", p.stdout, re.M), "admin list says she is locked",
         p.stdout)
    p = ctl(s, "admin", "unlock", "alice")
    t.ok(p.returncode == 0 and "unlocked" in p.stdout, "admin unlock alice: " + p.stderr)
    t.is_(login(s, "alice", PASSWORD), "ok", "after the unlock her password lets her in")
    p = ctl(s, "admin", "unlock", "alice")
    t.ok(p.returncode == 0 and "nothing changed" in p.stdout, "a second unlock changes nothing")

    # Two wrong logins at once: both counted (one UPDATE each, under the row's lock).
    procs = []
    for i in range(2):
        argv, env = login_cmd(s, "login", "bob")
        procs.append(subprocess.Popen(argv, env=env, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True))
    for p in procs:
        p.communicate("not bob's password\n")
    t.is_(account(s, "bob")[1], "2", "two concurrent wrong logins both count")
    t.is_(login(s, "bob", PASSWORD), "ok", "bob's right password resets them")


def sessions(t, s):
    alice = s.sql_value("SELECT account_id FROM admin_account WHERE name = 'alice'")
    first = session(s, "session", alice)
    t.ok(re.fullmatch(r"[A-Za-z0-9_-]{43}", first.get("token", "")) and
         re.fullmatch(r"[A-Za-z0-9_-]{43}", first.get("csrf", "")) and
         re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first.get("expires", "")),
         "a session: a token and a CSRF token of 43 base64url characters, an end in UTC", first)
    token = first.get("token", "")
    stored = s.sql("SELECT HEX(token_hash), csrf_token FROM admin_session")
    t.ok([hashlib.sha256(token.encode()).hexdigest().upper(), first.get("csrf")] in stored,
         "the database keeps the SHA-256 of the token, not the token", stored)
    t.ok(not any(token in "".join(r) for r in stored), "the token itself is not stored")
    t.is_(session(s, "lookup", token).get("state"), "valid", "its lookup finds it valid")
    t.is_(session(s, "lookup", "A" * 43).get("state"), "none", "another token finds none")

    s.sql("UPDATE admin_session SET last_seen_at = last_seen_at - INTERVAL 1801 SECOND")
    t.is_(session(s, "lookup", token).get("state"), "expired",
          "idle for longer than admin_session_idle (1800 s): expired")
    second = session(s, "session", alice)["token"]
    s.sql("UPDATE admin_session SET created_at = created_at - INTERVAL 43201 SECOND,"
          " expires_at = expires_at - INTERVAL 43201 SECOND")
    t.is_(session(s, "lookup", second).get("state"), "expired",
          "past admin_session_lifetime (43200 s), however busy: expired")
    third = session(s, "session", alice)["token"]
    t.is_(session(s, "logout", third).get("deleted"), "1", "logout deletes the session")
    t.is_(session(s, "lookup", third).get("state"), "none", "which is then unknown")

    fourth = session(s, "session", alice)["token"]
    p = ctl(s, "admin", "role", "alice", "viewer")
    t.ok(p.returncode == 0 and "is now viewer" in p.stdout, "admin role alice viewer: " + p.stderr)
    t.is_(account(s, "alice")[0], "viewer", "alice is a viewer")
    t.is_(session(s, "lookup", fourth).get("state"), "none", "and her session ended with the change")

    fifth = session(s, "session", alice)["token"]
    p = ctl(s, "admin", "disable", "alice")
    t.ok(p.returncode == 0 and "disabled" in p.stdout, "admin disable alice: " + p.stderr)
    t.is_(session(s, "lookup", fifth).get("state"), "none", "her session ended")
    t.is_(login(s, "alice", PASSWORD), "disabled", "a disabled account cannot log in")
    p = ctl(s, "admin", "enable", "alice")
    t.ok(p.returncode == 0 and "enabled" in p.stdout, "admin enable alice: " + p.stderr)
    t.is_(login(s, "alice", PASSWORD), "ok", "enabled again, she logs in")

    sixth = session(s, "session", alice)["token"]
    p = ctl(s, "admin", "passwd", "alice", "--password-stdin", password=NEW_PASSWORD + "\n")
    t.is_(p.returncode, 0, "admin passwd alice --password-stdin: " + p.stderr)
    t.is_(session(s, "lookup", sixth).get("state"), "none", "a new password ends her sessions")
    t.is_(login(s, "alice", PASSWORD), "wrong_password", "the old password no longer works")
    t.is_(login(s, "alice", NEW_PASSWORD), "ok", "the new one does")
    p = ctl(s, "admin", "passwd", "alice", "--password-stdin", password="too short\n")
    t.ok(p.returncode == 1 and "shorter than 12" in p.stderr, "a short new password is refused")
    t.is_(login(s, "alice", NEW_PASSWORD), "ok", "and changed nothing")
    p = ctl(s, "admin", "disable", "carol")
    t.ok(p.returncode == 1 and "no account carol" in p.stderr, "an unknown account: refused")
    return [token, second, third]


def no_secrets(t, s, outputs, tokens):
    hashes = [r[0] for r in s.sql("SELECT password_hash FROM admin_account")]
    outputs += [ctl(s, "audit", "--limit", "100").stdout, ctl(s, "admin", "list").stdout]
    outputs_clean(t, outputs, [PASSWORD, NEW_PASSWORD] + hashes)
    audit = "\n".join("\t".join(r) for r in s.sql("SELECT * FROM audit_log"))
    t.ok(not any(x in audit for x in [PASSWORD, NEW_PASSWORD, "argon2"] + hashes),
         "the audit trail holds no password and no hash", audit)
    found = []
    for folder, _, files in os.walk(os.path.join(s.dir, "log")):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
            found += ["%s in %s" % (secret[:6], name)
                      for secret in [PASSWORD, NEW_PASSWORD] + hashes + tokens
                      if secret.encode() in data]
    t.is_(found, [], "no password, hash or session token in any log")


def body(t):
    with Stack(t, ["db"]) as s:
        outputs = []
        adding(t, s, outputs)
        logins(t, s)
        tokens = sessions(t, s)
        no_secrets(t, s, outputs, tokens)


if __name__ == "__main__":
    run_tests(body)
