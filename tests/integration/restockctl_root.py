"""Integration test of restockctl run by root on a spool that belongs to the
unprivileged worker user (here `nobody`), who can plant symlinks in it: restockctl
switches to the spool's owner before it touches the spool, so that what it creates
belongs to that owner, and it opens no folder or message through a symlink. A
state folder replaced by a link to another folder, and a dead message replaced by
a link to a message file elsewhere: `dlq redrive --all` writes nothing where the
links point. The redrive of a real message writes its audit row first (issue 24),
with the actor restockctl:root although restockctl then acts as nobody. Root is
needed (skipped otherwise); the stack is a database alone: restockctl reads the
configuration and the spool, and writes the audit row."""

import json
import os
import pwd
import shutil
import subprocess
import tempfile

from harness import BUILDDIR, Stack, run_tests
from replenish_common import dead_spool_message

RESTOCKCTL = os.path.join(BUILDDIR, "ctl", "restockctl")


def ctl(conf, *args):
    return subprocess.run([RESTOCKCTL, "-c", conf] + list(args), capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("RESTOCK_")})


def owners(top):
    """(path, uid) of everything under top."""
    out = []
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(folder, name)
            out.append((path, os.lstat(path).st_uid))
    return out


def body(t):
    if os.geteuid() != 0:
        t.ok(True, "# SKIP restockctl as root needs root")
        return
    with Stack(t, ["db"]) as s:
        with open(s.info["RESTOCK_CONFIG"]) as f:
            db_lines = "".join(line for line in f if line.startswith("db_"))
        as_root(t, s, db_lines)


def as_root(t, s, db_lines):
    nobody = pwd.getpwnam("nobody")
    top = tempfile.mkdtemp(prefix="restock-root-")
    try:
        os.chmod(top, 0o755)
        spool = os.path.join(top, "spool")
        os.mkdir(spool, 0o700)
        os.chown(spool, nobody.pw_uid, nobody.pw_gid)
        conf = os.path.join(top, "restock.conf")
        with open(conf, "w") as f:
            f.write("spool_dir = %s\n" % spool + db_lines)
        os.chmod(conf, 0o600)  # root's only: restockctl reads it before it switches

        r = ctl(conf, "dlq", "list")
        t.is_(r.returncode, 0, "restockctl dlq list as root on a spool of nobody: " + r.stderr)
        made = owners(spool)
        t.ok(made and all(uid == nobody.pw_uid for _, uid in made),
             "the queue folders it made belong to the spool's owner, not root",
             [p for p, uid in made if uid != nobody.pw_uid])

        # A state folder root may read but its owner may not: as root it would be read.
        dead = os.path.join(spool, "factory", "dead")
        os.chown(dead, 0, 0)
        r = ctl(conf, "dlq", "list")
        t.ok(r.returncode == 1 and "Permission denied" in r.stderr,
             "it acts as the spool's owner: a folder only root may read is refused", r.stderr)
        os.chown(dead, nobody.pw_uid, nobody.pw_gid)

        # Planted links: mail/dead is a link to a folder elsewhere holding a dead
        # message; factory/dead/ID is a link to a dead message file elsewhere.
        elsewhere = os.path.join(top, "elsewhere")
        os.mkdir(elsewhere)
        lured = os.path.join(elsewhere, "lured-1")
        with open(lured, "wb") as f:
            f.write(dead_spool_message("lured-1", "mail", json.dumps({"kind": "alert"}).encode()))
        target_file = os.path.join(top, "target-file")
        with open(target_file, "wb") as f:
            f.write(dead_spool_message("linked-1", "factory", b"{}"))
        before = {p: open(p, "rb").read() for p in (lured, target_file)}
        mail_dead = os.path.join(spool, "mail", "dead")
        shutil.rmtree(mail_dead)
        os.symlink(elsewhere, mail_dead)
        os.symlink(target_file, os.path.join(dead, "linked-1"))
        for p in (mail_dead, os.path.join(dead, "linked-1")):
            os.lchown(p, nobody.pw_uid, nobody.pw_gid)

        r = ctl(conf, "dlq", "redrive", "--all")
        t.ok(r.returncode != 0 and "mail/dead" in r.stderr,
             "a state folder replaced by a symlink is refused, with the folder named", r.stderr)
        t.ok(sorted(os.listdir(elsewhere)) == ["lured-1"] and
             all(open(p, "rb").read() == data for p, data in before.items()),
             "nothing is written where the links point", sorted(os.listdir(elsewhere)))
        incoming = os.path.join(spool, "factory", "incoming")
        t.is_(os.listdir(incoming), [], "the linked message is not redriven into incoming/")

        # With the folder link gone, the message link alone: refused or left alone.
        os.unlink(mail_dead)
        os.mkdir(mail_dead, 0o700)
        os.chown(mail_dead, nobody.pw_uid, nobody.pw_gid)
        r = ctl(conf, "dlq", "redrive", "--all")
        t.ok(os.listdir(incoming) == [] and
             os.path.islink(os.path.join(dead, "linked-1")) and
             all(open(p, "rb").read() == data for p, data in before.items()),
             "a dead message that is a symlink is not followed: not redriven, its target "
             "untouched", r.stdout + r.stderr)

        # A real dead message is redriven, and what restockctl writes is the owner's.
        real = os.path.join(mail_dead, "real-1")
        with open(real, "wb") as f:
            f.write(dead_spool_message("real-1", "mail", json.dumps({"kind": "alert"}).encode()))
        os.chown(real, nobody.pw_uid, nobody.pw_gid)
        r = ctl(conf, "dlq", "redrive", "real-1")
        t.is_(r.returncode, 0, "a real dead message is redriven as root: " + r.stderr)
        redriven = os.path.join(spool, "mail", "incoming", "real-1")
        t.ok(os.path.exists(redriven) and os.lstat(redriven).st_uid == nobody.pw_uid,
             "the redriven file belongs to the spool's owner, never root")
        t.is_(s.sql("SELECT actor, action, target FROM audit_log"),
              [["restockctl:root", "dlq.redrive", "real-1"]],
              "its audit row names root, who ran restockctl, not the spool's owner")
        left = [p for p, uid in owners(spool) if uid != nobody.pw_uid]
        t.is_(left, [], "nothing in the spool belongs to root")

        # A spool of root's that others may write: root refuses to act on it.
        open_spool = os.path.join(top, "open")
        os.mkdir(open_spool)
        os.chmod(open_spool, 0o777)
        with open(conf, "w") as f:
            f.write("spool_dir = %s\n" % open_spool)
        r = ctl(conf, "dlq", "list")
        t.ok(r.returncode == 1 and "refusing to act as root" in r.stderr and
             len(r.stderr.strip().splitlines()) == 1 and os.listdir(open_spool) == [],
             "a root-owned spool others may write is refused with a one-line reason", r.stderr)
    finally:
        shutil.rmtree(top, ignore_errors=True)


run_tests(body)
