"""The webhook consumer of the tests (tests/webhooks/consumer.js, on the npm
reference library standardwebhooks, run with Debian's /usr/bin/node): started in
a stack's folder, its deliveries read back from its log, its answers steered, and
endpoints registered with `restockctl webhook add` (a stack that delivers to it
sets webhook_allow = loopback: configure(s, webhook_allow="loopback"))."""

import json
import os
import re
import signal
import urllib.request

from harness import SRCDIR, spawn, stop_process, wait_until

NODE = "/usr/bin/node"
CONSUMER = os.path.join(SRCDIR, "tests", "webhooks", "consumer.js")


def configure(s, **settings):
    """Sets keys in the stack's restock.conf; with a running worker, reloads it
    and waits for the reload."""
    path = s.info["RESTOCK_CONFIG"]
    with open(path) as f:
        lines = [l for l in f if l.split("=")[0].strip() not in settings]
    lines += ["%s = %s\n" % kv for kv in settings.items()]
    with open(path, "w") as f:
        f.writelines(lines)
    if os.path.exists(os.path.join(s.dir, "pid", "worker.pid")):
        before = s.log("worker").count("event=reloaded")
        s.signal("worker", signal.SIGHUP)
        s.wait_until(lambda: s.log("worker").count("event=reloaded") > before)


def no_secret_logged(t, s):
    """No webhook secret in what the worker and the SMTP sink wrote."""
    out = "".join(s.log(n) for n in ("worker", "smtp"))
    t.ok("whsec_" not in out, "no secret in the logs")


class Consumer:
    """consumer.js on 127.0.0.1: url(path) is where an endpoint points; steer()
    sets how a path answers; records() is every delivery it got, verified or not
    by the library."""

    def __init__(self, s, name="consumer"):
        self.s = s
        self.log = os.path.join(s.dir, "%s.jsonl" % name)
        s.webhook_logs.append(self.log)  # its deliveries checked against docs/openapi.yaml
        out = os.path.join(s.dir, "log", "%s.out" % name)
        open(self.log, "a").close()
        self.proc = spawn([NODE, CONSUMER, self.log], out, env=dict(os.environ, NODE_PATH=""))
        self.ports = None

        def ready():
            with open(out) as f:
                line = f.readline()
            if line.endswith("\n"):
                self.ports = json.loads(line)
            return self.ports is not None
        if not wait_until(ready, timeout=30):
            raise RuntimeError("consumer.js did not start: " + open(out).read())

    def close(self):
        stop_process(self.proc)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.ports["port"], path)

    def _control(self, what, body=None):
        data = json.dumps(body or {}).encode()
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.ports["control"], what),
                                     data=data, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()

    def steer(self, path, **how):
        """secrets=[...], status=N, retry_after=text or None, delay_ms=N."""
        self._control("/path" + path, how)

    def down(self):
        self._control("/down")

    def up(self):
        self._control("/up")

    def records(self, path=None):
        with open(self.log) as f:
            got = [json.loads(line) for line in f if line.endswith("\n")]
        return [r for r in got if path is None or r["path"] == path]

    def wait_records(self, path, count, timeout=30):
        """The path's records once there are count of them (or what there is)."""
        wait_until(lambda: len(self.records(path)) >= count, timeout=timeout)
        return self.records(path)

    def register(self, t, path, *more):
        """`restockctl webhook add` of url(path): (endpoint id, secret), the
        consumer given the secret for path."""
        p = self.s.restockctl("webhook", "add", self.url(path), *more)
        m = re.search(r"^webhook endpoint ([0-9a-f-]{36}) added", p.stdout, re.M)
        secret = re.search(r"^(whsec_\S+)$", p.stdout, re.M)
        t.ok(p.returncode == 0 and m and secret, "webhook add %s" % path, p.stdout + p.stderr)
        if not (m and secret):
            raise RuntimeError("webhook add failed")
        self.steer(path, secrets=[secret.group(1)])
        return m.group(1), secret.group(1)
