"""Integration test harness: TAP output, and the real stack (MariaDB, responders,
nginx, ...) started by scripts/stack in a private temporary folder, stopped at the end.

A test script:

    from harness import Tap, Stack
    t = Tap()
    with Stack(t) as s:
        status, body = s.request("GET", "/product/donut")
        t.is_(status, 200, "donut answers 200")
    t.done()

Environment: RESTOCK_SRCDIR and RESTOCK_BUILDDIR (set by make check); RESTOCK_KEEP=1
keeps the stack's folder for a look after a failure; RESTOCK_DB_SERVER (set by
scripts/test) names a MariaDB server shared by the stacks (scripts/stack share): each
gets a database of its own copied from a migrated template instead of a server of its
own, unless it asks for a private one (Stack(private_db=True)).
"""

import concurrent.futures
import glob
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

# configure --disable-integration-tests (make distcheck): every script skips.
if os.environ.get("RESTOCK_INTEGRATION_TESTS") == "no":
    print("1..0 # SKIP integration tests disabled (configure --disable-integration-tests)")
    sys.exit(0)

SRCDIR = os.environ.get("RESTOCK_SRCDIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILDDIR = os.environ.get("RESTOCK_BUILDDIR") or os.path.join(SRCDIR, "build")
STACK = os.path.join(SRCDIR, "scripts", "stack")
# The contract every answer is checked against when a stack closes (docs/design.md,
# "The OpenAPI document"): tests/openapi/validate.js, on Debian's node.
OPENAPI = os.path.join(SRCDIR, "docs", "openapi.yaml")
OPENAPI_VALIDATOR = os.path.join(SRCDIR, "tests", "openapi", "validate.js")
NODE = "/usr/bin/node"
sys.path.insert(0, os.path.join(SRCDIR, "scripts"))
from freeport import free_port  # noqa: E402,F401 (the tests import it from here)

# What a sanitizer or valgrind prints when a program of ours misbehaves.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "ERROR: UndefinedBehaviorSanitizer", "definitely lost: ", "Invalid read",
                   "Invalid write")


class Tap:
    """Test Anything Protocol writer for automake's tap-driver."""

    def __init__(self):
        self.count = 0
        self.failed = 0
        self.lock = threading.Lock()

    def ok(self, cond, name, detail=None):
        with self.lock:
            self.count += 1
            if not cond:
                self.failed += 1
            print("%sok %d - %s" % ("" if cond else "not ", self.count, name), flush=True)
            if not cond and detail is not None:
                self.diag(detail)
        return bool(cond)

    def is_(self, got, want, name):
        return self.ok(got == want, name, "got %r, want %r" % (got, want))

    def diag(self, text):
        for line in str(text).splitlines() or [""]:
            print("# " + line, flush=True)

    def done(self):
        print("1..%d" % self.count, flush=True)
        sys.exit(1 if self.failed else 0)

    def bail(self, why):
        print("Bail out! %s" % why, flush=True)
        sys.exit(1)


def run_tests(body):
    """Runs body(tap) and turns an exception into a failed test with its traceback."""
    t = Tap()
    try:
        body(t)
    except Exception:  # a crash of the test itself must show, not pass silently
        t.ok(False, "test script ran to its end", traceback.format_exc())
    t.done()


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:200])


class AdminSession:
    """A browser's login to the admin site: its session cookie and CSRF token,
    sent with every request as the console sends them (same origin)."""

    def __init__(self, stack, login):
        self.stack = stack
        self.login = login
        self.cookie = login.headers.get("Set-Cookie", "").split(";")[0]
        self.csrf = login.json()["csrf_token"]

    def request(self, method, path, body=None, headers=None, csrf=True, timeout=30):
        """A request with the session's cookie and, unless csrf is False, its
        X-Restock-CSRF token; headers add to or replace them."""
        h = {"Cookie": self.cookie}
        if csrf:
            h["X-Restock-CSRF"] = self.csrf
        h.update(headers or {})
        return self.stack.admin_request(method, path, body, h, timeout)

    def get(self, path):
        return self.request("GET", path)


class Stack:
    """The whole stack, or the components asked for, in a temporary folder."""

    def __init__(self, tap, components=None, env=None, private_db=False):
        """private_db: a MariaDB server of the stack's own even when the suite shares
        one (RESTOCK_DB_SERVER, scripts/test): for a test that stops, kills or
        restarts it, sets its globals, or counts the server's transactions."""
        self.tap = tap
        self.components = components
        self.env = dict(os.environ)
        if private_db:
            self.env.pop("RESTOCK_DB_SERVER", None)
        self.env["RESTOCK_BUILDDIR"] = BUILDDIR
        self.env.update(env or {})
        self.dir = tempfile.mkdtemp(prefix="restock-it-")
        os.chmod(self.dir, 0o755)
        self.info = {}
        self.workers = {}  # name -> Popen of the workers started by start_worker
        # Every answer a test receives, for the OpenAPI validation at close; and the
        # logs of the webhook consumers whose deliveries are checked with them.
        self.exchanges = os.path.join(self.dir, "openapi-exchanges.jsonl")
        self.exchanges_lock = threading.Lock()
        self.webhook_logs = []

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self):
        try:
            self.start(*(self.components or []))
        except BaseException:
            # __exit__ does not run when __enter__ fails: stop what did start.
            self.close(failed=True)
            raise
        return self

    def __exit__(self, *exc):
        self.close(failed=exc[0] is not None)
        return False

    def _stack(self, command, components, env=None):
        e = dict(self.env)
        e.update(env or {})
        args = [STACK, command, "--dir", self.dir, "--port", "0", "--builddir", BUILDDIR]
        p = subprocess.run(args + list(components), env=e, capture_output=True, text=True)
        if p.returncode != 0:
            self.tap.diag(p.stdout + p.stderr)
            self.tap.diag(self.logs())
            raise RuntimeError("scripts/stack %s %s failed" % (command, " ".join(components)))

    def start(self, *components, env=None):
        self._stack("start", components, env)
        with open(os.path.join(self.dir, "stack.env")) as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key:
                    self.info[key] = value
        self.url = self.info["RESTOCK_URL"]
        self.port = int(self.info["RESTOCK_PORT"])
        self.admin_port = int(self.info.get("ADMIN_PORT") or 0)

    def stop(self, *components):
        self._stack("stop", components)

    def start_worker(self, name="worker2", env=None):
        """Another restock-worker on this stack's database, as on a second host: its
        own spool_dir (DIR/spool-NAME), metrics_dir, metrics port and doorbell
        endpoint (no responder rings it: it sweeps every sweep_interval). Its
        worker_id is the default (host:spool_dir); log/NAME.log, pid/NAME.pid.
        Returns its configuration's own settings."""
        own = {"spool_dir": os.path.join(self.dir, "spool-" + name),
               "metrics_dir": os.path.join(self.dir, "metrics-" + name),
               "metrics_listen": "127.0.0.1:%d" % free_port(),
               "bus_endpoint": "ipc://%s/sock/%s-bus.sock" % (self.dir, name)}
        path = os.path.join(self.dir, name + ".conf")
        with open(self.info["RESTOCK_CONFIG"]) as f:
            lines = [ln for ln in f if ln.partition("=")[0].strip() not in own]
        with open(path, "w") as f:
            f.writelines(lines)
            f.writelines("%s = %s\n" % kv for kv in own.items())
        os.chmod(path, 0o600)
        e = dict(self.env)
        e.update(env or {})
        e["RESTOCK_CONFIG"] = path
        log_path = os.path.join(self.dir, "log", name + ".log")
        started = self.log(name).count("event=started ")
        p = spawn(os.environ.get("RESTOCK_WRAPPER", "").split() +
                  [os.path.join(BUILDDIR, "workers", "restock-worker")], log_path, e)
        self.workers[name] = p
        with open(os.path.join(self.dir, "pid", name + ".pid"), "w") as f:
            f.write("%d\n" % p.pid)
        if not self.wait_until(lambda: self.log(name).count("event=started ") > started or
                               p.poll() is not None, timeout=60):
            raise RuntimeError("%s did not start: %s" % (name, self.log(name)[-2000:]))
        if p.poll() is not None:
            raise RuntimeError("%s exited: %s" % (name, self.log(name)[-2000:]))
        own["config"] = path
        return own

    def stop_worker(self, name="worker2"):
        """Stops a worker of start_worker cleanly (SIGTERM; SIGKILL after 20 s)."""
        stop_process(self.workers.pop(name, None))
        try:
            os.unlink(os.path.join(self.dir, "pid", name + ".pid"))
        except FileNotFoundError:
            pass

    def signal(self, component, sig):
        """Sends a signal (SIGSTOP, SIGCONT, ...) to a running component."""
        with open(os.path.join(self.dir, "pid", component + ".pid")) as f:
            os.kill(int(f.read()), sig)

    def kill(self, component, sig=9):
        """Kills a component abruptly (no clean shutdown), as a crash would."""
        pidfile = os.path.join(self.dir, "pid", component + ".pid")
        with open(pidfile) as f:
            pid = int(f.read())
        os.kill(pid, sig)
        if component in self.workers:  # our child: reaped, not left a zombie
            self.workers.pop(component).wait()
        # A process killed in an fsync dies when the fsync returns: seconds on a
        # busy disk. Gone (every thread), it holds no lock (the worker's spool
        # lock) any more.
        if not wait_until(lambda: not alive(pid), timeout=120, interval=0.02):
            raise RuntimeError("%s (pid %d) still alive 120 s after signal %d"
                               % (component, pid, sig))
        os.unlink(pidfile)

    def close(self, failed=False):
        # The answers are all in: their validation runs while the stack stops.
        validation = self.validate_exchanges()
        try:
            for name in list(self.workers):
                self.stop_worker(name)
            self._stack("stop", [])
        finally:
            self.report_validation(validation)
            reports = self.sanitizer_reports()
            self.tap.ok(not reports, "no sanitizer or valgrind report in the programs' logs",
                        reports)
            failed = failed or self.tap.failed
            if failed or os.environ.get("RESTOCK_KEEP"):
                self.tap.diag("stack folder kept: " + self.dir)
                if failed:
                    self.tap.diag(self.logs(tail=40))
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    # -- observations ----------------------------------------------------------
    def log(self, name):
        try:
            with open(os.path.join(self.dir, "log", name + ".log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def watch_passes(self, name="worker"):
        """How many passes of its watch a worker logged (event=watch_pass, at debug
        level: run it with RESTOCK_LOG_LEVEL=debug)."""
        return self.log(name).count("event=watch_pass ")

    def wait_watch_passes(self, since, more, name="worker", timeout=60):
        """Waits until the worker logged `more` passes of its watch after `since`
        (a count of watch_passes): what those passes would do is done."""
        return self.wait_until(lambda: self.watch_passes(name) >= since + more, timeout=timeout)

    def sweep_passes(self, name="worker"):
        """How many sweeps of the outbox a worker logged (event=sweep_pass, at debug
        level: run it with RESTOCK_LOG_LEVEL=debug)."""
        return self.log(name).count("event=sweep_pass ")

    def wait_sweep_passes(self, since, more, name="worker", timeout=60):
        """Waits until the worker logged `more` sweeps after `since` (a count of
        sweep_passes): what those sweeps would do is done."""
        return self.wait_until(lambda: self.sweep_passes(name) >= since + more, timeout=timeout)

    def logs(self, tail=20):
        out = []
        for path in sorted(glob.glob(os.path.join(self.dir, "log", "*.log"))):
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()[-tail:]
            out.append("--- %s\n%s" % (os.path.basename(path), "\n".join(lines)))
        return "\n".join(out)

    def sanitizer_reports(self):
        found = []
        for path in glob.glob(os.path.join(self.dir, "log", "*.log")):
            if os.path.basename(path).startswith(("db", "nginx", "factory", "smtp", "migrate")):
                continue
            with open(path, errors="replace") as f:
                text = f.read()
            for mark in SANITIZER_MARKS:
                at = text.find(mark)
                if at >= 0 and not (mark == "definitely lost: " and
                                    text[at:].startswith("definitely lost: 0 bytes")):
                    found.append("%s: %s" % (os.path.basename(path), text[max(0, at - 200):at + 1500]))
                    break
        return "\n".join(found)

    def request(self, method, path, body=None, headers=None, timeout=30, port=None):
        """One HTTP request through nginx (the public site, or the site on port);
        body may be bytes, str or a JSON-able object. The answer is recorded for the
        OpenAPI validation at close."""
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode("utf-8")
        h = {"Content-Type": "application/json"} if body is not None else {}
        h.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return self.record(method, path, Response(r.status, dict(r.getheaders()), r.read()))
        finally:
            conn.close()

    def record(self, method, path, response):
        """Notes an answer that a test received from restock (through request and
        concurrently, or by its own means) for the OpenAPI validation at close;
        returns it."""
        line = json.dumps({"method": method, "path": path, "status": response.status,
                           "headers": {k.lower(): v for k, v in response.headers.items()},
                           "body": response.body.decode("utf-8", "replace")},
                          ensure_ascii=False)
        with self.exchanges_lock, open(self.exchanges, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        return response

    def validate_exchanges(self):
        """Starts the check of every recorded answer, and of every delivery the
        webhook consumers verified, against docs/openapi.yaml, in one run of the
        validator: its process (None when nothing was recorded), or a string saying
        why it could not start, for report_validation."""
        logs = [p for p in self.webhook_logs if os.path.exists(p)]
        if not os.path.exists(self.exchanges) and not logs:
            return None
        if not os.path.exists(os.path.join(os.path.dirname(OPENAPI_VALIDATOR), "node_modules")):
            return "the validator's npm packages are missing: scripts/deps test"
        return subprocess.Popen([NODE, OPENAPI_VALIDATOR, OPENAPI, self.exchanges] + logs,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, NODE_PATH=""))

    def report_validation(self, validation):
        """The validator's verdict as TAP: one test, or a failed one naming each
        answer the document does not describe (20 at most, then a count)."""
        if validation is None:
            return
        if isinstance(validation, str):
            self.tap.ok(False, "answers match docs/openapi.yaml", validation)
            return
        stdout, stderr = validation.communicate()
        out = stdout.splitlines()
        problems = [ln for ln in out if not ln.startswith("checked ")]
        if validation.returncode == 0 and not problems:
            self.tap.ok(True, "answers match docs/openapi.yaml (%s)" % (out[-1] if out else ""))
            return
        if not problems:  # the validator itself failed
            self.tap.ok(False, "answers match docs/openapi.yaml", stderr[-2000:])
        for line in problems[:20]:
            self.tap.ok(False, "answer matches docs/openapi.yaml: " + line[:200], line)
        if len(problems) > 20:
            self.tap.ok(False, "answers match docs/openapi.yaml: %d more" % (len(problems) - 20))

    # -- the admin API (its own nginx site, ADMIN_PORT) ----------------------------
    def admin_request(self, method, path, body=None, headers=None, timeout=30):
        """One request to the admin site, as it comes: no cookie, no CSRF token."""
        return self.request(method, path, body, headers, timeout, port=self.admin_port)

    def admin_account(self, name, role="operator", password=None):
        """Makes an admin account with restockctl (the password on stdin); returns
        its password."""
        password = password or "pw-%s-0123456789" % name
        self.restockctl("admin", "add", name, "--role", role, "--password-stdin",
                        input=password + "\n", check=True)
        return password

    def admin_login(self, name, password):
        """Logs in through the admin site: an AdminSession, or AssertionError with
        the answer when the login is refused."""
        r = self.admin_request("POST", "/admin/api/session", {"name": name, "password": password})
        if r.status != 200:
            raise AssertionError("admin login %s: %r" % (name, r))
        return AdminSession(self, r)

    def sql(self, query):
        """Runs SQL as the application's user; returns rows as lists of strings."""
        p = subprocess.run(
            ["mariadb", "--no-defaults", "-S", self.info["DB_SOCKET"], "-u", self.info["DB_USER"],
             "-p" + self.info["DB_PASSWORD"], "-N", "-B", "--default-character-set=utf8mb4",
             self.info["DB_NAME"], "-e", query], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("SQL failed: %s: %s" % (query, p.stderr.strip()))
        return [line.split("\t") for line in p.stdout.splitlines()]

    def sql_value(self, query):
        rows = self.sql(query)
        return rows[0][0] if rows else None

    def stock(self, sku="CP-502101"):
        return int(self.sql_value("SELECT stock FROM product WHERE sku = '%s'" % sku))

    def restockctl(self, *args, check=False, input=None):
        env = dict(self.env)
        env["RESTOCK_CONFIG"] = self.info["RESTOCK_CONFIG"]
        p = subprocess.run([os.path.join(BUILDDIR, "ctl", "restockctl")] + list(args),
                           env=env, capture_output=True, text=True, input=input)
        if check and p.returncode != 0:
            raise RuntimeError("restockctl %s: %s" % (" ".join(args), p.stderr.strip()))
        return p

    def wait_until(self, predicate, timeout=30, interval=0.1):
        """Polls predicate until it is true; returns its last value."""
        return wait_until(predicate, timeout, interval)

    def concurrently(self, total, clients, make_request, headers=None):
        """Sends total requests from clients threads, each on its own keep-alive
        connection; make_request(i) gives (method, path, body); headers are sent
        with each. Returns responses."""
        per = [list(range(c, total, clients)) for c in range(clients)]
        results = [None] * total

        def client(indexes):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            for i in indexes:
                method, path, body = make_request(i)
                data = json.dumps(body).encode() if body is not None else None
                h = {"Content-Type": "application/json"} if data is not None else {}
                h.update(headers or {})
                # No retry: a request that failed may have been served, and a
                # checkout sent twice would be counted twice. http.client opens a
                # new connection by itself when nginx answered "Connection: close".
                conn.request(method, path, body=data, headers=h)
                r = conn.getresponse()
                results[i] = self.record(method, path,
                                         Response(r.status, dict(r.getheaders()), r.read()))
            conn.close()

        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            for f in [pool.submit(client, idx) for idx in per]:
                f.result()
        return results


def wait_until(predicate, timeout=30, interval=0.1):
    """Polls predicate until it is true; returns its last value."""
    deadline = time.time() + timeout
    value = predicate()
    while not value and time.time() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def spawn(argv, log_path, env=None):
    """Starts a long-running program, its output appended to log_path: how the tests
    (beside scripts/stack's components) and the cluster bed start their programs."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_process(proc, timeout=20):
    """Stops a program of spawn (or any child): SIGCONT (a stopped one must run to
    stop), SIGTERM, SIGKILL after timeout seconds; reaped."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def alive(pid):
    """Whether a process runs: one that exited and waits to be reaped (a zombie; its
    new parent may reap it seconds later) does not. Every thread counts: a killed
    process's first thread can be a zombie while another still ends an fsync, with the
    process's files (the worker's spool lock) still open."""
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except (FileNotFoundError, ProcessLookupError):
        return False
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, task)) as f:
                if f.read().rpartition(")")[2].split()[0] not in ("Z", "X"):
                    return True
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return False
