#!/usr/bin/python3
"""Unit test of powercutfs (tests/fault/powercutfs.py), the power-cut file system: for
each case, operations on the mount and the same operations on a plain folder must show
the same tree; then a cut, and the mount must show what a plain folder shows after only
the operations that a sync made durable (the model); then the daemon is killed with
SIGKILL and booted again over its store, and the mount must show the same. Skipped (TAP
skip) without /dev/fuse, python3-pyfuse3 or root (allow_other)."""

import os
import random
import shutil
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from fuse_skip import skip_unless_fuse  # noqa: E402

skip_unless_fuse()

from harness import run_tests  # noqa: E402
from powercutfs import Mount  # noqa: E402


# --- operations, the same on the mount and on a plain folder ---


def on_file(path, flags, act, sync=None):
    """act(fd) on path opened with flags, then sync(fd) (os.fsync, os.fdatasync) if given."""
    fd = os.open(path, flags, 0o644)
    try:
        act(fd)
        if sync:
            sync(fd)
    finally:
        os.close(fd)


def put(path, data, sync=False):
    on_file(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, lambda fd: os.write(fd, data), sync and os.fsync)


def pwrite(path, data, off, sync=False):
    on_file(path, os.O_WRONLY, lambda fd: os.pwrite(fd, data, off), sync and os.fsync)


def truncate(path, size, sync=False):
    on_file(path, os.O_WRONLY, lambda fd: os.ftruncate(fd, size), sync and os.fdatasync)


def fsync(path):
    on_file(path, os.O_RDONLY, os.fsync)


def snapshot(root):
    """The tree under root: {relative path: ("f", mode, bytes) | ("d", mode) | ("l", target)}."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if os.path.islink(path):
                out[rel] = ("l", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("d", st.st_mode & 0o7777)
            else:
                with open(path, "rb") as f:
                    out[rel] = ("f", st.st_mode & 0o7777, f.read())
    return out


def describe(entry):
    if entry is None:
        return "absent"
    if entry[0] != "f":
        return repr(entry)
    return "file mode %o, %d bytes" % (entry[1], len(entry[2]))


def differences(got, want):
    lines = []
    for k in sorted(set(got) | set(want)):
        g, w = got.get(k), want.get(k)
        if g != w:
            line = "%s: got %s, want %s" % (k, describe(g), describe(w))
            if g and w and g[0] == w[0] == "f":
                line += ", first difference at byte %d" % next(
                    (i for i, (x, y) in enumerate(zip(g[2], w[2])) if x != y), min(len(g[2]), len(w[2]))
                )
            lines.append(line)
    return "\n".join(lines) or "same"


# --- the cases: (name, setup, ops, durable[, tear, seed]) ---
# setup runs everywhere and is then made durable; ops runs on the mount and on the
# plain folder; durable(root, answer) runs on the model: what must survive the cut.


def synced(op):
    """op, then the fsync of the case's folder."""

    def op_and_fsync(root, answer=None):
        op(root)
        fsync(root)

    return op_and_fsync


def nothing(root, answer=None):
    pass


def case_fsynced(root, answer=None):
    put(os.path.join(root, "f"), b"acknowledged", sync=True)
    fsync(root)


def new_file(root):
    put(os.path.join(root, "f"), b"never synced")


def existing(root):
    put(os.path.join(root, "f"), b"old content, synced")


def rewrite(root):
    put(os.path.join(root, "f"), b"new")


def file_only(root):
    put(os.path.join(root, "f"), b"data synced, name not", sync=True)


def folder_only(root):
    put(os.path.join(root, "f"), b"data not synced")
    fsync(root)


def empty_file(root, answer=None):
    put(os.path.join(root, "f"), b"")


def two_files(root):
    put(os.path.join(root, "a"), b"A")
    put(os.path.join(root, "b"), b"B")


def rename_ab(root, answer=None):
    os.rename(os.path.join(root, "a"), os.path.join(root, "b"))


rename_ab_sync = synced(rename_ab)


def unlink_a(root, answer=None):
    os.unlink(os.path.join(root, "a"))


unlink_a_sync = synced(unlink_a)


def long_file(root):
    put(os.path.join(root, "f"), bytes(range(256)) * 40)


def truncate_f(root, answer=None):
    truncate(os.path.join(root, "f"), 10)


def truncate_extend_sync(root, answer=None):
    # Shrunk then grown again: the bytes in between read as zeros, before and after.
    truncate(os.path.join(root, "f"), 100)
    truncate(os.path.join(root, "f"), 9000)
    pwrite(os.path.join(root, "f"), b"tail", 8000, sync=True)


def mkdir_with_file(root, answer=None):
    os.mkdir(os.path.join(root, "d"))
    put(os.path.join(root, "d", "f"), b"in a new folder", sync=True)
    fsync(os.path.join(root, "d"))


def mkdir_sync(root, answer=None):
    os.mkdir(os.path.join(root, "d"))
    fsync(root)


def a_folder(root):
    os.mkdir(os.path.join(root, "d"))


def rmdir_d(root, answer=None):
    os.rmdir(os.path.join(root, "d"))


rmdir_d_sync = synced(rmdir_d)


def two_folders(root):
    os.mkdir(os.path.join(root, "x"))
    os.mkdir(os.path.join(root, "y"))
    put(os.path.join(root, "x", "f"), b"moving")


def move_xy_sync_y(root, answer=None):
    os.rename(os.path.join(root, "x", "f"), os.path.join(root, "y", "f"))
    fsync(os.path.join(root, "y"))


def move_xy_sync_x(root, answer=None):
    os.rename(os.path.join(root, "x", "f"), os.path.join(root, "y", "f"))
    fsync(os.path.join(root, "x"))


def one_file(root):
    put(os.path.join(root, "a"), b"linked")


def link_ab(root, answer=None):
    os.link(os.path.join(root, "a"), os.path.join(root, "b"))


link_ab_sync = synced(link_ab)


def chmod_a(root, answer=None):
    os.chmod(os.path.join(root, "a"), 0o600)


def chmod_a_fsync(root, answer=None):
    chmod_a(root)
    fsync(os.path.join(root, "a"))


def spool_put(root, answer=None, last_sync=True):
    """The worker's spool: write, fsync, rename (no replace), fsync of the folder."""
    tmp, final = os.path.join(root, ".tmp-1"), os.path.join(root, "order-1")
    put(tmp, b'{"order": 1}', sync=True)
    os.rename(tmp, final)
    if last_sync:
        fsync(root)


def spool_put_unsynced(root, answer=None):
    spool_put(root, last_sync=False)


def hundred_a(root):
    put(os.path.join(root, "f"), b"A" * 100)


def two_writes(root, answer=None):
    pwrite(os.path.join(root, "f"), b"C" * 10, 0)
    pwrite(os.path.join(root, "f"), b"B" * 50, 100)


def torn(root, answer):
    """Only the last write's prefix that the cut's answer says it kept."""
    kept = [x["kept"] for x in answer["torn"]]
    assert len(kept) == 1, answer
    pwrite(os.path.join(root, "f"), b"B" * kept[0], 100)


BIG = random.Random(21).randbytes(24 << 20)


def big_setup(root):
    put(os.path.join(root, "big"), BIG)


def big_ops(root, answer=None):
    # Rewrites a middle that spans pages unaligned, grows the file, adds a new one.
    pwrite(os.path.join(root, "big"), b"x" * 100000, 5000001)
    pwrite(os.path.join(root, "big"), b"end", len(BIG) + 12345)
    put(os.path.join(root, "big2"), BIG[: 8 << 20], sync=True)


def big_synced(root, answer=None):
    put(os.path.join(root, "big3"), BIG[: 12 << 20], sync=True)
    fsync(root)


WRITERS, ROUNDS = 8, 150


def writer_files(root):
    for i in range(WRITERS):
        put(os.path.join(root, "w%d" % i), b"")


def chunk(i, r):
    return (b"%d.%d;" % (i, r)) * 7


def writers(root, answer=None):
    """WRITERS threads append to a file each, an fsync every 7th write."""

    def run(i):
        fd = os.open(os.path.join(root, "w%d" % i), os.O_WRONLY | os.O_APPEND)
        for r in range(ROUNDS):
            os.write(fd, chunk(i, r))
            if r % 7 == 6:
                os.fsync(fd)
        os.close(fd)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(WRITERS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def writers_synced(root, answer=None):
    last = (ROUNDS // 7) * 7  # the writes up to the last fsync
    for i in range(WRITERS):
        put(os.path.join(root, "w%d" % i), b"".join(chunk(i, r) for r in range(last)))


CASES = [
    ("a file fsync'd with its folder survives", nothing, case_fsynced, case_fsynced),
    ("a new file never synced is gone", nothing, new_file, nothing),
    ("an existing file rewritten without fsync keeps its old content", existing, rewrite, nothing),
    ("a new file fsync'd in a folder never fsync'd is gone", nothing, file_only, nothing),
    ("a new name fsync'd by its folder, its data never: an empty file", nothing, folder_only, empty_file),
    ("a rename without the folder's fsync is undone", two_files, rename_ab, nothing),
    ("a rename with the folder's fsync stays", two_files, rename_ab_sync, rename_ab_sync),
    ("an unlink without the folder's fsync is undone", two_files, unlink_a, nothing),
    ("an unlink with the folder's fsync stays", two_files, unlink_a_sync, unlink_a_sync),
    ("a truncate without fsync is undone", long_file, truncate_f, nothing),
    ("a truncate and extend with fdatasync stays, zeros between", long_file, truncate_extend_sync,
     truncate_extend_sync),
    ("a new folder whose parent was never fsync'd is gone with its files", nothing, mkdir_with_file, nothing),
    ("a new folder with its parent's fsync stays", nothing, mkdir_sync, mkdir_sync),
    ("an rmdir without the parent's fsync is undone", a_folder, rmdir_d, nothing),
    ("an rmdir with the parent's fsync stays", a_folder, rmdir_d_sync, rmdir_d_sync),
    ("a rename across folders is whole when only the target folder is fsync'd", two_folders, move_xy_sync_y,
     move_xy_sync_y),
    ("a rename across folders is whole when only the source folder is fsync'd", two_folders, move_xy_sync_x,
     move_xy_sync_y),
    ("a hard link without the folder's fsync is gone", one_file, link_ab, nothing),
    ("a hard link with the folder's fsync stays", one_file, link_ab_sync, link_ab_sync),
    ("a chmod without fsync is undone", one_file, chmod_a, nothing),
    ("a chmod with the file's fsync stays", one_file, chmod_a_fsync, chmod_a_fsync),
    ("the spool's write, fsync, rename, folder fsync: the file is there", nothing, spool_put, spool_put),
    ("the spool's put without the folder's fsync: nothing", nothing, spool_put_unsynced, nothing),
    ("a tear of 20 bytes keeps 20 bytes of the last write only", hundred_a, two_writes, torn, "20", None),
    ("a random tear keeps a prefix of the last write", hundred_a, two_writes, torn, "random", 7),
    ("a large file: un-synced rewrites undone, synced ones kept", big_setup, big_ops, nothing),
    ("a large file fsync'd with its folder survives", nothing, big_synced, big_synced),
    ("concurrent writers keep each what they fsync'd", writer_files, writers, writers_synced),
]


def body(t):
    top = tempfile.mkdtemp(prefix="powercutfs-test-")
    mount = Mount(os.path.join(top, "backing"), os.path.join(top, "mnt"), log=os.path.join(top, "log"))
    try:
        mount.start()
        t.ok(os.path.ismount(mount.mountpoint), "the file system mounts")
        run_cases(t, mount, top)
        control_checks(t, mount)
        fuzz(t, mount, top, seed=int(os.environ.get("POWERCUTFS_SEED", "2021")))
        odirect(t, mount)
        freeze(t, mount)
    finally:
        mount.stop()
    journal = Mount(os.path.join(top, "backing-j"), os.path.join(top, "mnt-j"), log=os.path.join(top, "log-j"),
                    journal=True)
    try:
        journal.start()
        journal_mode(t, journal)
    finally:
        journal.stop()

    if t.failed:
        t.diag("kept for a look: %s" % top)
    else:
        shutil.rmtree(top, ignore_errors=True)


def run_cases(t, mount, top):
    for n, case in enumerate(CASES):
        name, setup, ops, durable = case[:4]
        tear, seed = case[4:] if len(case) > 4 else (None, None)
        folder = "case%02d" % n
        m = os.path.join(mount.mountpoint, folder)
        everything = os.path.join(top, "plain-all", folder)
        model = os.path.join(top, "plain-durable", folder)
        for root in (m, everything, model):
            os.makedirs(root)
            setup(root)
        mount.command("sync-all")
        ops(m)
        ops(everything)
        ok = t.ok(snapshot(m) == snapshot(everything), "%s: before the cut, as on a plain file system" % name,
                  differences(snapshot(m), snapshot(everything)))
        answer = mount.cut(tear=tear, seed=seed)
        durable(model, answer)
        want = snapshot(model)
        ok &= t.ok(snapshot(m) == want, "%s: after the cut" % name, differences(snapshot(m), want))
        if tear == "random":
            kept = answer["torn"][0]
            t.ok(0 <= kept["kept"] < kept["length"] == 50, "%s: a strict prefix (%d of %d bytes)"
                 % (name, kept["kept"], kept["length"]))
        mount.crash()
        got = snapshot(m)
        t.ok(got == want, "%s: after kill -9 and a boot over the store" % name, differences(got, want))


def control_checks(t, mount):
    root = os.path.join(mount.mountpoint, "stats")
    os.mkdir(root)
    put(os.path.join(root, "f"), b"pending")
    s = mount.command("stats")
    t.ok(s["dirty_files"] == 1 and s["dirty_dirs"] == 2 and s["pending_names"] == 2,
         "stats counts one dirty file, two folders with a new name each", s)
    s = mount.command("sync-all")
    t.ok(s["dirty_files"] == s["dirty_dirs"] == s["pending_names"] == s["dirty_pages"] == 0,
         "after sync-all nothing is pending", s)
    put(os.path.join(root, "f"), b"changed")
    for bad in ("cut tear=lots", "format", ""):
        try:
            mount.command(bad)
            t.ok(False, "%r is refused" % bad)
        except RuntimeError as e:
            t.ok("powercutfs" in str(e), "%r is refused: %s" % (bad, e))
    with open(os.path.join(root, "f"), "rb") as f:
        t.is_(f.read(), b"changed", "a refused command changed nothing")


def fuzz(t, mount, top, seed):
    """Random operations on the mount and on a plain folder: the same tree; after
    sync-all and a cut, still the same tree (sync-all made everything durable)."""
    rng = random.Random(seed)
    m = os.path.join(mount.mountpoint, "fuzz")
    plain = os.path.join(top, "plain-fuzz")
    for root in (m, plain):
        os.mkdir(root)
    names = ["a", "b", "c", "d/a", "d/b", "e/a"]
    for step in range(400):
        op = rng.choice(["write", "write", "pwrite", "truncate", "rename", "unlink", "mkdir", "rmdir", "link", "fsync"])
        a, b = rng.choice(names), rng.choice(names)
        off, size = rng.randrange(20000), rng.randrange(1, 9000)
        data = rng.randbytes(size)
        results = []
        for root in (m, plain):
            try:
                pa, pb = os.path.join(root, a), os.path.join(root, b)
                if op == "write":
                    put(pa, data, sync=rng.random() < 0.3)
                elif op == "pwrite":
                    pwrite(pa, data, off)
                elif op == "truncate":
                    truncate(pa, off)
                elif op == "rename":
                    os.rename(pa, pb)
                elif op == "unlink":
                    os.unlink(pa)
                elif op == "mkdir":
                    os.mkdir(os.path.dirname(pa) if "/" in a else pa)
                elif op == "rmdir":
                    os.rmdir(os.path.dirname(pa) if "/" in a else pa)
                elif op == "link":
                    os.link(pa, pb)
                else:
                    fsync(os.path.dirname(pa))
                results.append(None)
            except OSError as e:
                results.append(e.errno)
        if results[0] != results[1]:
            t.ok(False, "fuzz step %d: %s %s %s: the mount answers as a plain file system" % (step, op, a, b),
                 "mount errno %r, plain errno %r" % tuple(results))
            return
    t.ok(snapshot(m) == snapshot(plain), "fuzz (seed %d): 400 random operations show as on a plain file system"
         % seed, differences(snapshot(m), snapshot(plain)))
    mount.command("sync-all")
    mount.cut()
    t.ok(snapshot(m) == snapshot(plain), "fuzz: after sync-all and a cut, everything is there",
         differences(snapshot(m), snapshot(plain)))


def journal_mode(t, mount):
    """--journal: names ride with any fsync, as on ext4; without an fsync they still go."""
    root = mount.mountpoint
    os.mkdir(os.path.join(root, "table"))
    put(os.path.join(root, "table", "x.frm"), b"frm")  # as CREATE TABLE: no folder fsync
    put(os.path.join(root, "unsynced"), b"u")
    mount.cut()
    t.is_(sorted(os.listdir(root)), [], "--journal: names without any fsync after them are gone")
    os.mkdir(os.path.join(root, "table"))
    put(os.path.join(root, "table", "x.frm"), b"frm")
    put(os.path.join(root, "log"), b"commit", sync=True)  # a commit's fsync of its log
    put(os.path.join(root, "after"), b"a")
    mount.cut()
    mask = os.umask(0)
    os.umask(mask)
    dmode, fmode = 0o777 & ~mask, 0o644 & ~mask
    want = {"table": ("d", dmode), "table/x.frm": ("f", fmode, b""), "log": ("f", fmode, b"commit")}
    got = snapshot(root)
    t.ok(got == want, "--journal: an fsync of another file makes earlier names durable, not later ones",
         differences(got, want))


def odirect(t, mount):
    """InnoDB opens its files with O_DIRECT by default (innodb_flush_method=O_DIRECT)."""
    import mmap

    path = os.path.join(mount.mountpoint, "direct")
    buf = mmap.mmap(-1, 8192)  # page-aligned, as O_DIRECT wants
    buf.write(b"D" * 8192)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    try:
        os.write(fd, buf)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync(mount.mountpoint)
    mount.cut()
    with open(path, "rb") as f:
        t.is_(f.read(), b"D" * 8192, "an O_DIRECT write fsync'd survives the cut")


def freeze(t, mount):
    """The trap holds a sync call at an exact moment: before it (a cut then drops what
    it would have made durable, and the call fails), after it (what it made durable
    stays), or until thawed."""
    d = os.path.join(mount.mountpoint, "frz")
    os.makedirs(d)
    mount.command("sync-all")

    def in_thread(fn):
        out = {}

        def run():
            try:
                fn()
                out["ok"] = True
            except OSError as e:
                out["errno"] = e.errno
        th = threading.Thread(target=run)
        th.start()
        return th, out

    t.ok("error" in control_answer(mount, "freeze path=frz at=sometime"),
         "freeze: a bad at= is refused")
    mount.freeze("frz/a", "before")
    th, out = in_thread(lambda: put(os.path.join(d, "a"), b"held", sync=True))
    t.is_(mount.wait_frozen(timeout=20), "frz/a", "before: the fsync of frz/a is held")
    t.ok(th.is_alive(), "before: the writer waits in its fsync")
    mount.cut()
    th.join(20)
    t.is_(out.get("errno"), 5, "before: the held fsync fails with EIO at the cut")
    t.ok(not os.path.exists(os.path.join(d, "a")), "before: nothing it would have synced survives")

    put(os.path.join(d, "b"), b"synced", sync=True)
    mount.freeze("frz", "after")
    th, out = in_thread(lambda: fsync(d))
    t.is_(mount.wait_frozen(timeout=20), "frz", "after: the fsync of folder frz is held")
    mount.cut()
    th.join(20)
    with open(os.path.join(d, "b"), "rb") as f:
        t.is_(f.read(), b"synced", "after: what the held fsync made durable survives the cut")

    mount.freeze("frz/c", "before")
    th, out = in_thread(lambda: put(os.path.join(d, "c"), b"thawed", sync=True))
    t.is_(mount.wait_frozen(timeout=20), "frz/c", "thaw: the fsync of frz/c is held")
    t.is_(mount.command("thaw")["caught"], "frz/c", "thaw: names the call it lets go")
    th.join(20)
    t.ok(out.get("ok"), "thaw: the held fsync goes on and succeeds", out)
    fsync(d)
    mount.cut()
    with open(os.path.join(d, "c"), "rb") as f:
        t.is_(f.read(), b"thawed", "thaw: the fsync did its work")
    mount.freeze("nowhere", "before")
    t.is_(mount.wait_frozen(timeout=0.2), None, "wait-frozen: null when nothing was caught")
    mount.command("thaw")


def control_answer(mount, cmd):
    try:
        return mount.command(cmd)
    except RuntimeError as e:
        return {"error": str(e)}


run_tests(body)
