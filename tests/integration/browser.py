"""A real browser for the integration tests: Debian's chromium, headless, driven by
puppeteer-core (tests/browser/driver.js, its npm packages installed from
tests/browser/package-lock.json by scripts/deps). One driver process holds the
browser; each command is one JSON line to it and one back, so the pages stay open
while the test acts on the stack beside them.

    with Browser(screenshots_dir) as b:
        b.open("op", url)
        b.wait("op", "document.body.dataset.view === 'login'")
        b.screenshot("op", "login")
"""

import json
import os
import shutil
import subprocess

from harness import SRCDIR

DRIVER = os.path.join(SRCDIR, "tests", "browser", "driver.js")
CHROMIUM = "/usr/bin/chromium"
NODE = "/usr/bin/node"


def missing():
    """Why the browser cannot run here (a reason for a skip), or None."""
    for path, what in ((NODE, "Debian's nodejs"), (CHROMIUM, "Debian's chromium")):
        if not os.access(path, os.X_OK):
            return "%s (%s) is not installed: scripts/deps test" % (what, path)
    modules = os.path.join(SRCDIR, "tests", "browser", "node_modules", "puppeteer-core")
    if not os.path.isdir(modules):
        return "puppeteer-core is not installed in tests/browser: scripts/deps test"
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(self, shots):
        """shots: the folder screenshots are saved in (made anew)."""
        self.shots = shots
        shutil.rmtree(shots, ignore_errors=True)
        os.makedirs(shots)
        self.stderr = open(os.path.join(shots, "driver.log"), "w")
        self.proc = subprocess.Popen([NODE, DRIVER, "--chromium", CHROMIUM],
                                     cwd=os.path.dirname(DRIVER), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     bufsize=1)
        ready = self._answer()
        if ready != "ready":
            raise BrowserError("driver did not start: %r" % ready)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()

    def _answer(self):
        line = self.proc.stdout.readline()
        if not line:
            raise BrowserError("the driver stopped (log: %s)" % self.stderr.name)
        a = json.loads(line)
        if not a["ok"]:
            raise BrowserError(a["error"])
        return a["value"]

    def command(self, cmd, **args):
        args["cmd"] = cmd
        self.proc.stdin.write(json.dumps(args) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    # -- the commands (tests/browser/driver.js) ------------------------------------
    def open(self, page, url):
        """A new tab with cookies of its own; returns the document's status, headers."""
        return self.command("open", page=page, url=url)

    def goto(self, page, url):
        return self.command("goto", page=page, url=url)

    def eval(self, page, expr):
        return self.command("eval", page=page, expr=expr)

    def wait(self, page, expr, timeout=30):
        """Waits until the expression is truthy in the page; returns its value, or
        None when it is not within timeout seconds."""
        try:
            return self.command("wait", page=page, expr=expr, timeout=int(timeout * 1000))
        except BrowserError as e:
            if "Waiting failed" in str(e) or "timeout" in str(e).lower():
                return None
            raise

    def type(self, page, selector, text):
        return self.command("type", page=page, selector=selector, text=text)

    def select(self, page, selector, value):
        return self.command("select", page=page, selector=selector, value=value)

    def click(self, page, selector):
        return self.command("click", page=page, selector=selector)

    def offline(self, page, offline):
        return self.command("offline", page=page, offline=offline)

    def record(self, page):
        """The page's dialogs, errors and console messages so far."""
        return self.command("record", page=page)

    def exchanges(self, page):
        """The admin API's answers the page received since the last call: dicts of
        method, path, status, headers and body (text)."""
        return self.command("exchanges", page=page)

    def screenshot(self, page, name):
        return self.command("screenshot", page=page, path=os.path.join(self.shots, name + ".png"))

    def version(self):
        return self.command("version")
