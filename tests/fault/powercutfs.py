#!/usr/bin/python3
"""powercutfs: a FUSE file system for power-cut tests (issue 21), after Jepsen's LazyFS.

    powercutfs.py BACKING_DIR MOUNTPOINT [--control SOCKET] [--journal]

What the mount shows is the current state; what BACKING_DIR holds is only the durable
state, as a disk would after a power cut:
  - a file's data, size and mode are durable after fsync/fdatasync of that file;
  - a name (create, mkdir, mknod, symlink, link, rename, unlink, rmdir) is durable after
    fsync of its folder. A new file whose folder was never fsync'd is gone at a cut even
    if the file itself was fsync'd, and a rename whose folder was never fsync'd is undone:
    ext4 without auto_da_alloc, the strict reading of POSIX. A rename across folders is
    atomic: the fsync of either folder makes both sides durable (one journal entry).
  - a name made durable before its file's data shows the file's durable data (empty if
    the file was never fsync'd): the zero-length file after a crash.
  - --journal: any fsync (of a file or a folder) also makes every pending name durable,
    in order, as an ext4 journal commit does. MariaDB never fsyncs its folders after
    CREATE TABLE: without --journal a table created since the last sync-all is gone at
    a cut (stricter than ext4), with it the table stays once any commit fsyncs its log.
Everything not yet durable lives in this process (a page overlay per file, the current
names per folder) and is dropped by the control command "cut", or by the process's death.

BACKING_DIR is this file system's store, not a mirror of the tree: data/<ino> holds each
file's durable bytes and `journal` the durable names and attributes (JSON lines, replayed
and compacted at mount). Start with an empty folder; copy a tree in through the mount and
run `powercutctl SOCKET sync-all` to make it the durable starting state.

Control (a unix socket, default BACKING_DIR/control.sock; client: powercutctl, or
control() here), one request line, one JSON answer line:
  ping                  {"ok": true}
  stats                 counts of what a cut would drop
  cut [tear=N|random] [seed=S]
                        drops every un-synced write and name, in place: the mount then
                        shows the durable state, as after a reboot, without a remount.
                        Stop every program using the mount first (a power cut kills them):
                        their open files answer EBADF afterwards. tear=: first keeps a
                        prefix of the last un-synced write of each file (N bytes, or a
                        random length shorter than the write), a torn sector write.
  sync-all              makes everything durable (as `sync` would on a disk)
  freeze path=P [at=before|after]
                        arms a trap for the next fsync or fdatasync of a file, or fsync
                        of a folder, whose path in the mount starts with P: the call
                        blocks, before it makes anything durable (at=before, the
                        default) or after (at=after), until a cut (then it fails with
                        EIO, having made nothing more durable) or `thaw`. It holds the
                        program at an exact moment: between a write and its fsync,
                        between a rename and its folder's fsync, after a put's last
                        fsync and before what comes next. One trap at a time.
  wait-frozen [timeout=S]
                        waits until the trap has caught a call (default 30 s); answers
                        {"frozen": PATH} or {"frozen": null} on timeout
  thaw [fail=1]         disarms the trap and lets a caught call go on, or with fail=1
                        makes it fail with EIO (as a cut does). A program killed while
                        held cannot die before: the kernel waits for the answer of a
                        FUSE request it has sent, even for SIGKILL.
  stop                  unmounts and exits (un-synced state is lost, as at a cut)
Killing the process (even with SIGKILL) is a cut too: `umount -l MOUNTPOINT` and start it
again over the same BACKING_DIR to boot from the durable state.

Not supported: O_DIRECT is passed through as a buffered write (the kernel's FUSE takes it),
fallocate (ENOTSUP: glibc's posix_fallocate writes zeros instead), xattrs, RENAME_EXCHANGE.
Run it with Debian's /usr/bin/python3 (python3-pyfuse3, on trio).
"""

import errno
import json
import os
import random
import select
import socket
import stat
import subprocess
import sys
import time

PAGE = 4096
ROOT = 1


def control(path, command, timeout=30):
    """Sends one command line to a powercutfs control socket; returns the JSON answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data.decode())
    if "error" in answer:
        raise RuntimeError("powercutfs %s: %s" % (command, answer["error"]))
    return answer


class Mount:
    """A powercutfs mount for tests: start(), cut(), crash() (kill -9 and boot), stop()."""

    def __init__(self, backing, mountpoint, log=None, journal=False):
        self.journal = journal
        self.backing = backing
        self.mountpoint = mountpoint
        self.socket = os.path.join(backing, "control.sock")
        self.log = log
        self.proc = None

    def start(self, timeout=20):
        os.makedirs(self.backing, exist_ok=True)
        os.makedirs(self.mountpoint, exist_ok=True)
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        ready_r, ready_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                ["/usr/bin/python3", os.path.abspath(__file__), self.backing, self.mountpoint,
                 "--ready-fd", str(ready_w)]
                + (["--journal"] if self.journal else []),
                stdout=out,
                stderr=out,
                pass_fds=(ready_w,),
            )
            os.close(ready_w)
            ready_w = -1
            # Its byte once mounted, or the pipe's end when it exits first.
            readable, _, _ = select.select([ready_r], [], [], timeout)
            got = os.read(ready_r, 1) if readable else b""
        finally:
            os.close(ready_r)
            if ready_w >= 0:
                os.close(ready_w)
        if got == b"R":
            return
        if self.proc.poll() is not None or readable:
            raise RuntimeError("powercutfs exited with %s (log: %s)"
                               % (self.proc.wait(), self.log))
        raise RuntimeError("powercutfs did not come up in %s s (log: %s)" % (timeout, self.log))

    def command(self, cmd):
        return control(self.socket, cmd)

    def cut(self, tear=None, seed=None):
        cmd = "cut"
        if tear is not None:
            cmd += " tear=%s" % tear
        if seed is not None:
            cmd += " seed=%d" % seed
        return self.command(cmd)

    def freeze(self, path, at="before"):
        return self.command("freeze path=%s at=%s" % (path, at))

    def wait_frozen(self, timeout=30):
        """The path of the sync call the trap caught, or None after timeout seconds."""
        return control(self.socket, "wait-frozen timeout=%s" % timeout,
                       timeout=timeout + 10)["frozen"]

    def crash(self):
        """The daemon killed with SIGKILL (all un-synced state lost), then booted again."""
        self.proc.kill()
        self.proc.wait()
        subprocess.run(["umount", "-l", self.mountpoint], check=False, stderr=subprocess.DEVNULL)
        self.start()

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.command("stop")
                self.proc.wait(timeout=10)
            except (OSError, RuntimeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        if os.path.ismount(self.mountpoint):
            subprocess.run(["umount", "-l", self.mountpoint], check=False, stderr=subprocess.DEVNULL)
        self.proc = None


# ---------------------------------------------------------------------------------------
# The file system (imported only by the daemon: the client side needs no pyfuse3).


class Node:
    """An inode: its current state (what the mount shows) and its durable state."""

    __slots__ = (
        "ino",
        "kind",
        "mode",
        "uid",
        "gid",
        "rdev",
        "target",
        "atime",
        "mtime",
        "ctime",
        "nlink",
        "lookups",
        "opens",
        "fd",
        "size",
        "dsize",
        "floor",
        "pages",
        "last_write",
        "entries",
        "dentries",
        "renames",
        "changed",
        "durable",
        "dur_nlink",
        "dirty_attr",
    )

    def __init__(self, ino, kind, mode, uid, gid, now):
        self.ino = ino
        self.kind = kind  # "f" file, "d" folder, "l" symlink, "o" other (fifo, socket, device)
        self.mode = mode  # with the S_IFMT bits
        self.uid = uid
        self.gid = gid
        self.rdev = 0
        self.target = b""
        self.atime = self.mtime = self.ctime = now
        self.nlink = 0  # current names
        self.lookups = 0  # the kernel's references
        self.opens = 0
        self.fd = None  # data/<ino>, open while the file is
        self.size = 0  # current size
        self.dsize = 0  # durable size (data/<ino>'s)
        self.floor = 0  # durable bytes at or past floor are hidden (truncated since the sync)
        self.pages = {}  # page index -> bytearray(PAGE): current content not yet durable
        self.last_write = None  # (offset, bytes) of the last un-synced write, for tears
        self.entries = {} if kind == "d" else None  # current names -> ino
        self.dentries = {} if kind == "d" else None  # durable names -> ino
        self.renames = [] if kind == "d" else None  # pending cross-folder renames
        self.changed = set() if kind == "d" else None  # names changed since the last sync
        self.durable = None  # (mode, uid, gid, mtime) as last made durable
        self.dur_nlink = 0  # durable names
        self.dirty_attr = False


class Trap:
    """The armed freeze: paths starting with prefix, held before or after the sync."""

    def __init__(self, prefix, at, frozen, released):
        self.prefix, self.at, self.frozen, self.released = prefix, at, frozen, released
        self.caught = None  # the path of the call held
        self.fail = False


class Rename:
    """A rename across folders: one journal entry, durable when either folder is synced."""

    __slots__ = ("src", "old", "dst", "new", "ino", "src_done", "dst_done")

    def __init__(self, src, old, dst, new, ino):
        self.src, self.old, self.dst, self.new, self.ino = src, old, dst, new, ino
        self.src_done = self.dst_done = False


def _fserr(code):
    import pyfuse3

    return pyfuse3.FUSEError(code)


class Store:
    """The durable state in BACKING_DIR: data/<ino> and the journal of names and attributes."""

    def __init__(self, backing):
        self.backing = backing
        self.data_dir = os.path.join(backing, "data")
        self.journal_path = os.path.join(backing, "journal")
        os.makedirs(self.data_dir, exist_ok=True)
        self.journal = None

    def data_path(self, ino):
        return os.path.join(self.data_dir, str(ino))

    def load(self):
        """Replays the journal: {ino: attrs}, {dir ino: {name: ino}}, the highest ino seen."""
        attrs, dirs, top = {}, {}, ROOT
        try:
            with open(self.journal_path, "rb") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        break  # a record cut short by the process's death: the end
                    if "n" in rec:
                        attrs[rec["n"]] = rec
                        top = max(top, rec["n"])
                    else:
                        names = dirs.setdefault(rec["e"], {})
                        name = os.fsencode(rec["name"])
                        if rec["i"] is None:
                            names.pop(name, None)
                        else:
                            names[name] = rec["i"]
                            top = max(top, rec["i"])
        except FileNotFoundError:
            pass
        for name in os.listdir(self.data_dir):
            if name.isdigit():
                top = max(top, int(name))
        return attrs, dirs, top

    def open_journal(self, records):
        """Rewrites the journal with only records (compaction), then appends to it."""
        tmp = self.journal_path + ".new"
        with open(tmp, "w") as f:
            for rec in records:
                f.write(json.dumps(rec) + "\n")
        os.replace(tmp, self.journal_path)
        self.journal = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND)

    def append(self, records):
        # One write: the process's death leaves whole records (or a cut last line).
        if records:
            os.write(self.journal, "".join(json.dumps(r) + "\n" for r in records).encode())


def node_record(node):
    mode, uid, gid, mtime = node.durable
    rec = {"n": node.ino, "k": node.kind, "m": mode, "u": uid, "g": gid, "t": mtime}
    if node.kind == "l":
        rec["l"] = os.fsdecode(node.target)
    if node.kind == "o":
        rec["r"] = node.rdev
    return rec


def entry_record(dir_ino, name, ino):
    return {"e": dir_ino, "name": os.fsdecode(name), "i": ino}


class PowercutFS:
    """The pyfuse3 operations (made a subclass of pyfuse3.Operations in serve())."""

    def __init__(self, backing, journal=False):
        self.journal = journal  # names ride with any fsync (ext4's journal commit)
        self.store = Store(backing)
        self.nodes = {}
        self.handles = {}  # fh -> (ino, is_dir, listing for folders)
        self.next_fh = 1
        self.trap = None  # the armed freeze (Trap), or None
        self.boot()

    # --- the freeze trap: a sync call held at an exact moment ---

    def path_of(self, ino):
        """The node's current path in the mount ("a/b/c"), or None when it has no name."""
        parts = []
        while ino != ROOT:
            for d in self.nodes.values():
                if d.kind == "d" and ino in d.entries.values():
                    parts.append(next(k for k, v in d.entries.items() if v == ino))
                    ino = d.ino
                    break
            else:
                return None
        return "/".join(reversed([p.decode(errors="replace") if isinstance(p, bytes) else p
                                  for p in parts]))

    async def _caught(self, node, at):
        """Holds the sync call on node if the trap is armed for it at `at`."""
        t = self.trap
        if t is None or t.caught is not None or t.at != at:
            return
        path = self.path_of(node.ino)
        if path is None or not path.startswith(t.prefix):
            return
        t.caught = path
        t.frozen.set()
        await t.released.wait()
        if t.fail:
            raise _fserr(errno.EIO)

    def freeze(self, prefix, at):
        import trio

        if at not in ("before", "after"):
            return {"error": "at= takes before or after"}
        self.thaw()
        self.trap = Trap(prefix, at, trio.Event(), trio.Event())
        return {"ok": True}

    def thaw(self, fail=False):
        t, self.trap = self.trap, None
        if t is not None:
            t.fail = fail
            t.released.set()
        return {"ok": True, "caught": t.caught if t else None}

    # --- the durable state, at boot and at a cut ---

    def boot(self):
        """Builds the nodes from the store: every name reachable from the root, as durable."""
        attrs, dirs, top = self.store.load()
        # Never an ino again that the kernel may still hold from before a cut.
        self.next_ino = max(getattr(self, "next_ino", 0), top + 1)
        now = time.time_ns()
        if ROOT not in attrs:
            attrs[ROOT] = {"n": ROOT, "k": "d", "m": stat.S_IFDIR | 0o755, "u": 0, "g": 0, "t": now}
        self.nodes = {}
        records = []
        claimed = {ROOT}  # folders given a name: a folder reached twice keeps its first
        todo = [ROOT]
        while todo:
            ino = todo.pop()
            if ino in self.nodes or ino not in attrs:
                continue
            a = attrs[ino]
            node = Node(ino, a["k"], a["m"], a["u"], a["g"], a["t"])
            node.target = os.fsencode(a.get("l", ""))
            node.rdev = a.get("r", 0)
            node.durable = (node.mode, node.uid, node.gid, node.mtime)
            self.nodes[ino] = node
            records.append(node_record(node))
            if node.kind == "f":
                try:
                    node.dsize = os.stat(self.store.data_path(ino)).st_size
                except FileNotFoundError:
                    node.dsize = 0
                node.size = node.floor = node.dsize
            if node.kind == "d":
                for name, child in sorted(dirs.get(ino, {}).items()):
                    # (renames across folders synced apart): a tree, as fsck leaves it.
                    if child not in attrs or child in claimed:
                        continue
                    if attrs[child]["k"] == "d":
                        claimed.add(child)
                    node.dentries[name] = child
                    todo.append(child)
        for node in list(self.nodes.values()):
            if node.kind == "d":
                node.dentries = {n: i for n, i in node.dentries.items() if i in self.nodes}
                node.entries = dict(node.dentries)
                for name, child in node.dentries.items():
                    self.nodes[child].dur_nlink += 1
                    self.nodes[child].nlink += 1
                    records.append(entry_record(node.ino, name, child))
        self.nodes[ROOT].nlink = self.nodes[ROOT].dur_nlink = 1
        for name in os.listdir(self.store.data_dir):  # data of files no name reaches
            if not name.isdigit() or int(name) not in self.nodes:
                os.unlink(os.path.join(self.store.data_dir, name))
        if self.store.journal is not None:
            os.close(self.store.journal)
        self.store.open_journal(records)

    def cut(self, tear=None, seed=None):
        """Drops every un-synced state, in place; returns what was dropped and torn."""
        self.thaw(fail=True)  # a call held by the trap fails: its program is dead
        dropped = self.stats()
        torn = []
        if tear is not None:
            rng = random.Random(seed)
            for node in sorted(self.nodes.values(), key=lambda n: n.ino):
                if node.kind != "f" or node.last_write is None:
                    continue
                off, data = node.last_write
                keep = rng.randrange(len(data)) if tear == "random" else min(int(tear), len(data))
                if keep:
                    fd = self._data_fd(node, create=True)
                    os.pwrite(fd, data[:keep], off)
                    node.dsize = max(node.dsize, off + keep)
                torn.append({"ino": node.ino, "offset": off, "length": len(data), "kept": keep})
        for fd in [n.fd for n in self.nodes.values() if n.fd is not None]:
            os.close(fd)
        self.handles = {}
        # The kernel's references stay valid for the nodes that survive; the others
        # answer ESTALE until the kernel forgets them.
        lookups = {ino: n.lookups for ino, n in self.nodes.items()}
        self.boot()
        for ino, node in self.nodes.items():
            node.lookups = lookups.get(ino, 0)
        dropped["torn"] = torn
        return dropped

    def stats(self):
        files = [n for n in self.nodes.values() if n.kind == "f" and self._file_dirty(n)]
        names = 0
        dirs = []
        for d in self.nodes.values():
            if d.kind == "d":
                n = sum(1 for k in d.changed if d.entries.get(k) != d.dentries.get(k))
                if n or d.renames:
                    dirs.append(d)
                names += n
        return {
            "dirty_files": len(files),
            "dirty_pages": sum(len(n.pages) for n in files),
            "dirty_dirs": len(dirs),
            "pending_names": names,
            "nodes": len(self.nodes),
        }

    def sync_all(self):
        for node in list(self.nodes.values()):
            if node.kind != "d":
                self._sync_file(node)
        for node in list(self.nodes.values()):
            if node.kind == "d":
                self._sync_dir(node)
        return self.stats()

    # --- helpers ---

    def _node(self, ino):
        node = self.nodes.get(ino)
        if node is None:
            raise _fserr(errno.ESTALE)
        return node

    def _new_node(self, kind, mode, ctx):
        node = Node(self.next_ino, kind, mode, ctx.uid, ctx.gid, time.time_ns())
        self.next_ino += 1
        self.nodes[node.ino] = node
        return node

    def _data_fd(self, node, create=False):
        if node.fd is None:
            flags = os.O_RDWR | (os.O_CREAT if create else 0)
            try:
                node.fd = os.open(self.store.data_path(node.ino), flags, 0o600)
            except FileNotFoundError:
                return None
        return node.fd

    def _file_dirty(self, node):
        return bool(node.pages) or node.size != node.dsize or node.floor != node.dsize or node.dirty_attr

    def _maybe_free(self, node):
        if node.ino == ROOT or node.nlink or node.lookups or node.opens or node.dur_nlink:
            return
        if node.fd is not None:
            os.close(node.fd)
        try:
            os.unlink(self.store.data_path(node.ino))
        except FileNotFoundError:
            pass
        del self.nodes[node.ino]

    def _attr(self, node):
        import pyfuse3

        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino
        a.generation = 0
        a.entry_timeout = 0  # no caching: a cut changes the tree under the kernel
        a.attr_timeout = 0
        a.st_mode = node.mode
        # Folders report 1 link ("unknown"), so that find never skips a subfolder.
        a.st_nlink = max(node.nlink, 1) if node.kind != "d" else 1
        a.st_uid = node.uid
        a.st_gid = node.gid
        a.st_rdev = node.rdev
        a.st_size = node.size if node.kind == "f" else (len(node.target) if node.kind == "l" else 0)
        a.st_blksize = PAGE
        a.st_blocks = (a.st_size + 511) // 512
        a.st_atime_ns = node.atime
        a.st_mtime_ns = node.mtime
        a.st_ctime_ns = node.ctime
        return a

    def _entry(self, node):
        node.lookups += 1
        return self._attr(node)

    def _touch(self, node):
        node.mtime = node.ctime = time.time_ns()

    def _dir(self, ino):
        node = self._node(ino)
        if node.kind != "d":
            raise _fserr(errno.ENOTDIR)
        return node

    def _link(self, parent, name, node):
        if name in parent.entries:
            raise _fserr(errno.EEXIST)
        parent.entries[name] = node.ino
        parent.changed.add(name)
        node.nlink += 1
        self._touch(parent)

    def _unlink_name(self, parent, name):
        ino = parent.entries.pop(name)
        parent.changed.add(name)
        node = self.nodes[ino]
        node.nlink -= 1
        node.ctime = time.time_ns()
        self._touch(parent)
        self._maybe_free(node)

    # --- data: a page overlay over data/<ino> ---

    def _durable_read(self, node, off, length):
        """The durable bytes still visible in [off, off+length), zeros past them."""
        visible = min(node.floor, node.dsize)
        n = max(0, min(off + length, visible) - off)
        data = b""
        if n:
            fd = self._data_fd(node)
            data = os.pread(fd, n, off) if fd is not None else b""
        return data + bytes(length - len(data))

    def _page(self, node, idx):
        page = node.pages.get(idx)
        if page is None:
            page = bytearray(self._durable_read(node, idx * PAGE, PAGE))
            node.pages[idx] = page
        return page

    def _read(self, node, off, size):
        end = min(off + size, node.size)
        if off >= end:
            return b""
        if not node.pages:
            return self._durable_read(node, off, end - off)
        out = bytearray()
        pos = off
        while pos < end:
            idx, start = divmod(pos, PAGE)
            n = min(PAGE - start, end - pos)
            page = node.pages.get(idx)
            if page is None:
                out += self._durable_read(node, pos, n)
            else:
                out += page[start : start + n]
            pos += n
        return bytes(out)

    def _write(self, node, off, buf):
        pos, end, done = off, off + len(buf), 0
        while pos < end:
            idx, start = divmod(pos, PAGE)
            n = min(PAGE - start, end - pos)
            self._page(node, idx)[start : start + n] = buf[done : done + n]
            pos += n
            done += n
        node.size = max(node.size, end)
        node.last_write = (off, bytes(buf))
        self._touch(node)

    def _truncate(self, node, size):
        if size < node.size:
            for idx in [i for i in node.pages if (i + 1) * PAGE > size]:
                if idx * PAGE >= size:
                    del node.pages[idx]
                else:
                    page = node.pages[idx]
                    cut = size - idx * PAGE
                    page[cut:] = bytes(PAGE - cut)
            node.floor = min(node.floor, size)
        node.size = size
        node.last_write = None
        self._touch(node)

    def _sync_file(self, node):
        """fsync: the file's data, size and attributes become durable (not its names)."""
        if node.kind == "f" and (node.pages or node.size != node.dsize or node.floor != node.dsize):
            fd = self._data_fd(node, create=True)
            if node.floor < node.dsize:
                os.ftruncate(fd, node.floor)  # the hidden bytes read as zeros from now on
            for idx in sorted(node.pages):
                page = node.pages[idx]
                n = min(PAGE, node.size - idx * PAGE)
                if n > 0:
                    os.pwrite(fd, page[:n], idx * PAGE)
            os.ftruncate(fd, node.size)
            node.dsize = node.floor = node.size
            node.pages = {}
        node.last_write = None
        attrs = (node.mode, node.uid, node.gid, node.mtime)
        if attrs != node.durable:
            node.durable = attrs
            if node.dur_nlink:
                self.store.append([node_record(node)])
        node.dirty_attr = False

    def _dur_set(self, records, parent, name, ino):
        """Sets (or removes, ino None) a durable name, keeping the durable link counts."""
        old = parent.dentries.get(name)
        if old == ino:
            return None
        if old is not None:
            del parent.dentries[name]
            oldnode = self.nodes.get(old)
            if oldnode is not None:
                oldnode.dur_nlink -= 1
        if ino is not None:
            parent.dentries[name] = ino
            node = self.nodes[ino]
            if node.dur_nlink == 0:
                if node.durable is None:  # never synced: durable as created, empty
                    node.durable = (node.mode, node.uid, node.gid, node.mtime)
                records.append(node_record(node))
            node.dur_nlink += 1
        records.append(entry_record(parent.ino, name, ino))
        return old

    def _sync_dir(self, node):
        """fsync of a folder: its names become durable, and both sides of its renames."""
        records = []
        gone = []  # nodes that lost a durable name: maybe free now
        for r in node.renames:
            # The other side of a rename across folders, unless synced since.
            if r.src == node.ino and not r.dst_done:
                dst = self.nodes.get(r.dst)
                if dst is not None and r.ino in self.nodes:
                    gone.append(self._dur_set(records, dst, r.new, r.ino))
            elif r.dst == node.ino and not r.src_done:
                src = self.nodes.get(r.src)
                if src is not None and src.dentries.get(r.old) == r.ino:
                    self._dur_set(records, src, r.old, None)
            r.src_done = r.src_done or r.src == node.ino
            r.dst_done = r.dst_done or r.dst == node.ino
        node.renames = []
        changed, node.changed = node.changed, set()
        for name in sorted(changed):
            if node.dentries.get(name) != node.entries.get(name):
                gone.append(self._dur_set(records, node, name, node.entries.get(name)))
        for ino in gone:
            if ino in self.nodes:
                self._maybe_free(self.nodes[ino])
        attrs = (node.mode, node.uid, node.gid, node.mtime)
        if attrs != node.durable:
            node.durable = attrs
            if node.dur_nlink:
                records.append(node_record(node))
        self.store.append(records)

    # --- the FUSE operations ---

    async def lookup(self, parent_inode, name, ctx):
        parent = self._dir(parent_inode)
        if name == b".":
            return self._entry(parent)
        ino = parent.entries.get(name)
        if ino is None:
            raise _fserr(errno.ENOENT)
        return self._entry(self.nodes[ino])

    async def forget(self, inode_list):
        for ino, n in inode_list:
            node = self.nodes.get(ino)
            if node is not None:
                node.lookups = max(0, node.lookups - n)
                self._maybe_free(node)

    async def getattr(self, inode, ctx):
        return self._attr(self._node(inode))

    async def setattr(self, inode, attr, fields, fh, ctx):
        node = self._node(inode)
        if fields.update_size:
            if node.kind != "f":
                raise _fserr(errno.EINVAL)
            self._truncate(node, attr.st_size)
        if fields.update_mode:
            node.mode = stat.S_IFMT(node.mode) | (attr.st_mode & 0o7777)
        if fields.update_uid:
            node.uid = attr.st_uid
        if fields.update_gid:
            node.gid = attr.st_gid
        if fields.update_atime:
            node.atime = attr.st_atime_ns
        if fields.update_mtime:
            node.mtime = attr.st_mtime_ns
        node.ctime = time.time_ns()
        node.dirty_attr = True
        return self._attr(node)

    async def readlink(self, inode, ctx):
        node = self._node(inode)
        if node.kind != "l":
            raise _fserr(errno.EINVAL)
        return node.target

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        parent = self._dir(parent_inode)
        kind = "f" if stat.S_ISREG(mode) else "o"
        node = self._new_node(kind, mode & ~ctx.umask, ctx)
        node.rdev = rdev
        self._link(parent, name, node)
        return self._entry(node)

    async def mkdir(self, parent_inode, name, mode, ctx):
        parent = self._dir(parent_inode)
        if name in parent.entries:
            raise _fserr(errno.EEXIST)
        node = self._new_node("d", stat.S_IFDIR | (mode & ~ctx.umask & 0o7777), ctx)
        self._link(parent, name, node)
        return self._entry(node)

    async def symlink(self, parent_inode, name, target, ctx):
        parent = self._dir(parent_inode)
        node = self._new_node("l", stat.S_IFLNK | 0o777, ctx)
        node.target = bytes(target)
        self._link(parent, name, node)
        return self._entry(node)

    async def link(self, inode, new_parent_inode, new_name, ctx):
        node = self._node(inode)
        if node.kind == "d":
            raise _fserr(errno.EPERM)
        self._link(self._dir(new_parent_inode), new_name, node)
        node.ctime = time.time_ns()
        return self._entry(node)

    async def unlink(self, parent_inode, name, ctx):
        parent = self._dir(parent_inode)
        ino = parent.entries.get(name)
        if ino is None:
            raise _fserr(errno.ENOENT)
        if self.nodes[ino].kind == "d":
            raise _fserr(errno.EISDIR)
        self._unlink_name(parent, name)

    async def rmdir(self, parent_inode, name, ctx):
        parent = self._dir(parent_inode)
        ino = parent.entries.get(name)
        if ino is None:
            raise _fserr(errno.ENOENT)
        node = self.nodes[ino]
        if node.kind != "d":
            raise _fserr(errno.ENOTDIR)
        if node.entries:
            raise _fserr(errno.ENOTEMPTY)
        self._unlink_name(parent, name)

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        import pyfuse3

        src = self._dir(parent_inode_old)
        dst = self._dir(parent_inode_new)
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise _fserr(errno.EINVAL)
        ino = src.entries.get(name_old)
        if ino is None:
            raise _fserr(errno.ENOENT)
        node = self.nodes[ino]
        old = dst.entries.get(name_new)
        if old == ino:
            return
        if old is not None:
            if flags & pyfuse3.RENAME_NOREPLACE:
                raise _fserr(errno.EEXIST)
            target = self.nodes[old]
            if target.kind == "d":
                if node.kind != "d":
                    raise _fserr(errno.EISDIR)
                if target.entries:
                    raise _fserr(errno.ENOTEMPTY)
            elif node.kind == "d":
                raise _fserr(errno.ENOTDIR)
            self._unlink_name(dst, name_new)
        del src.entries[name_old]
        dst.entries[name_new] = ino
        src.changed.add(name_old)
        dst.changed.add(name_new)
        self._touch(src)
        self._touch(dst)
        node.ctime = time.time_ns()
        if src is not dst:
            r = Rename(src.ino, name_old, dst.ino, name_new, ino)
            src.renames.append(r)
            dst.renames.append(r)

    async def open(self, inode, flags, ctx):
        import pyfuse3

        node = self._node(inode)
        if node.kind != "f":
            raise _fserr(errno.EINVAL)
        if flags & os.O_TRUNC:  # libfuse's atomic_o_trunc: no setattr before the open
            self._truncate(node, 0)
        node.opens += 1
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = node.ino
        self._data_fd(node)
        return pyfuse3.FileInfo(fh=fh)

    async def create(self, parent_inode, name, mode, flags, ctx):
        parent = self._dir(parent_inode)
        if name in parent.entries:
            raise _fserr(errno.EEXIST)
        node = self._new_node("f", stat.S_IFREG | (mode & ~ctx.umask & 0o7777), ctx)
        self._link(parent, name, node)
        fi = await self.open(node.ino, flags, ctx)
        return fi, self._entry(node)

    def _fh_node(self, fh):
        ino = self.handles.get(fh)
        if ino is None or ino not in self.nodes:
            raise _fserr(errno.EBADF)  # a handle from before a cut
        return self.nodes[ino]

    async def read(self, fh, off, size):
        return self._read(self._fh_node(fh), off, size)

    async def write(self, fh, off, buf):
        self._write(self._fh_node(fh), off, buf)
        return len(buf)

    async def flush(self, fh):
        pass

    async def release(self, fh):
        ino = self.handles.pop(fh, None)
        node = self.nodes.get(ino)
        if node is not None:
            node.opens -= 1
            if node.opens == 0 and node.fd is not None:
                os.close(node.fd)
                node.fd = None
            self._maybe_free(node)

    async def fsync(self, fh, datasync):
        node = self._fh_node(fh)
        await self._caught(node, "before")
        self._sync_file(node)
        self._commit_names()
        await self._caught(node, "after")

    def _commit_names(self):
        """--journal: every pending name becomes durable, as an ext4 journal commit."""
        if self.journal:
            for node in [n for n in self.nodes.values() if n.kind == "d" and (n.changed or n.renames)]:
                self._sync_dir(node)

    async def opendir(self, inode, ctx):
        node = self._dir(inode)
        fh = self.next_fh
        self.next_fh += 1
        # A snapshot of the names: offsets into it never skip nor repeat a name.
        self.handles[fh] = (node.ino, sorted(node.entries.items()))
        return fh

    async def readdir(self, fh, start_id, token):
        import pyfuse3

        h = self.handles.get(fh)
        if not isinstance(h, tuple):
            raise _fserr(errno.EBADF)
        listing = h[1]
        for i in range(start_id, len(listing)):
            name, ino = listing[i]
            node = self.nodes.get(ino)
            if node is None:
                continue
            if not pyfuse3.readdir_reply(token, name, self._attr(node), i + 1):
                break
            node.lookups += 1

    async def releasedir(self, fh):
        self.handles.pop(fh, None)

    async def fsyncdir(self, fh, datasync):
        h = self.handles.get(fh)
        if not isinstance(h, tuple) or h[0] not in self.nodes:
            raise _fserr(errno.EBADF)
        node = self.nodes[h[0]]
        await self._caught(node, "before")
        self._sync_dir(node)
        self._commit_names()
        await self._caught(node, "after")

    async def statfs(self, ctx):
        import pyfuse3

        s = os.statvfs(self.store.backing)
        out = pyfuse3.StatvfsData()
        for f in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail"):
            setattr(out, f, getattr(s, f))
        out.f_namemax = 255
        return out


def serve(backing, mountpoint, control_path, journal=False, ready_fd=None):
    import pyfuse3
    import trio

    ops_class = type("PowercutOps", (PowercutFS, pyfuse3.Operations), {})
    fs = ops_class(backing, journal=journal)
    try:
        os.unlink(control_path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(control_path)
    listener.listen(16)
    options = set(pyfuse3.default_options)
    options |= {"fsname=powercutfs", "allow_other"}
    pyfuse3.init(fs, mountpoint, options)
    if ready_fd is not None:
        # Mounted, and the control socket listening: whoever started us may go on
        # (requests wait in the kernel and the socket's backlog until trio runs).
        os.write(ready_fd, b"R")
        os.close(ready_fd)

    def execute(line):
        words = line.split()
        if not words:
            return {"error": "empty command"}
        cmd, args = words[0], dict(w.split("=", 1) for w in words[1:] if "=" in w)
        if cmd == "ping":
            return {"ok": True}
        if cmd == "stats":
            return fs.stats()
        if cmd == "sync-all":
            return fs.sync_all()
        if cmd == "cut":
            tear = args.get("tear")
            if tear is not None and tear != "random" and not tear.isdigit():
                return {"error": "tear= takes a byte count or 'random'"}
            seed = int(args["seed"]) if args.get("seed", "").isdigit() else None
            return fs.cut(tear=tear, seed=seed)
        if cmd == "freeze":
            if "path" not in args:
                return {"error": "freeze takes path=PREFIX"}
            return fs.freeze(args["path"].lstrip("/"), args.get("at", "before"))
        if cmd == "thaw":
            return fs.thaw(fail=args.get("fail") == "1")
        if cmd == "stop":
            pyfuse3.terminate()
            return {"ok": True}
        return {"error": "unknown command %r (ping, stats, cut, sync-all, freeze, wait-frozen,"
                " thaw, stop)" % cmd}

    async def wait_frozen(line):
        args = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
        try:
            timeout = float(args.get("timeout", "30"))
        except ValueError:
            return {"error": "timeout= takes seconds"}
        t = fs.trap
        if t is None:
            return {"error": "no trap armed (freeze first)"}
        with trio.move_on_after(timeout):
            await t.frozen.wait()
        return {"frozen": t.caught}

    async def client(conn):
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = await conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            line = data.decode(errors="replace").strip()
            if line.split()[:1] == ["wait-frozen"]:
                answer = await wait_frozen(line)
            else:
                # Runs between two FUSE requests: a cut is atomic with respect to them.
                answer = execute(line)
            await conn.send(json.dumps(answer).encode() + b"\n")

    async def serve_control(nursery):
        sock = trio.socket.from_stdlib_socket(listener)
        while True:
            conn, _ = await sock.accept()
            nursery.start_soon(client, conn)

    async def signals(nursery):
        import signal

        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            async for _ in received:
                pyfuse3.terminate()
                return

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_control, nursery)
            nursery.start_soon(signals, nursery)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        pyfuse3.close(unmount=True)
        try:
            os.unlink(control_path)
        except FileNotFoundError:
            pass


def main(argv):
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("backing")
    p.add_argument("mountpoint")
    p.add_argument("--control", help="control socket (default BACKING/control.sock)")
    p.add_argument("--journal", action="store_true",
                   help="any fsync makes every pending name durable (ext4's journal commit)")
    p.add_argument("--ready-fd", type=int,
                   help="write one byte to this descriptor once mounted and listening")
    a = p.parse_args(argv)
    backing = os.path.abspath(a.backing)
    serve(backing, a.mountpoint, a.control or os.path.join(backing, "control.sock"), a.journal,
          a.ready_fd)


if __name__ == "__main__":
    main(sys.argv[1:])
