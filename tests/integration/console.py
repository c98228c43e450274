"""The admin console (console/, served at /admin/ by the admin site) in a real browser:
Debian's chromium, headless, driven by puppeteer-core (tests/integration/browser.py).
On the real stack, an operator and a viewer made with `restockctl admin add
--password-stdin` log in; the operator sees a sell-out appear without a reload (the
product sold out with its open order), follows the dead order's timeline, redrives
it once the factory is healthy and watches it delivered, changes a reorder point and
finds it in the audit trail; the viewer has no redrive button and a forced request
is refused 403; a product named with markup shows as text (no dialog, no element),
a Korean name shows; the viewer's page, idle past admin_session_idle, is logged out
("session expired"). Screenshots are saved in the build's
tests/integration/console.screenshots/ (docs/console.png is one of them)."""

import json
import os
import secrets
import subprocess
import time

import browser
from harness import BUILDDIR, Response, Stack, run_tests
from replenish_common import (DONUT, add_products, order_status, orders, outbox, sell_out,
                              sim_config, spool_find)

SHOTS = os.path.join(BUILDDIR, "tests", "integration", "console.screenshots")
IDLE = 10  # admin_session_idle (its least): the pages poll every 2 s; only an idle one expires
MARKUP = "<img src=x onerror=alert(1)>"
KOREAN = "찹쌀 도넛 (한정판)"
ENV = {"RESTOCK_FACTORY_ARGS": "--delay 0.5", "RESTOCK_SWEEP_INTERVAL": "1",
       "RESTOCK_BACKOFF_MIN": "1", "RESTOCK_BACKOFF_MAX": "2",
       "RESTOCK_ADMIN_SESSION_IDLE": str(IDLE)}


def js(value):
    """A Python value as a JavaScript literal (JSON is one)."""
    return json.dumps(value)


def text_of(selector):
    """A page expression: the text of the first element selector finds, or null."""
    return "(document.querySelector(%s) || {}).textContent" % js(selector)


def cells_of(selector):
    """A page expression: the cells' texts of each row selector finds."""
    return ("[...document.querySelectorAll(%s)].map(r => [...r.cells].map(c => c.textContent))"
            % js(selector))


def login(t, b, page, name, password, role):
    b.type(page, "#login-name", name)
    b.type(page, "#login-password", password)
    b.click(page, "#login-submit")
    got = b.wait(page, "document.body.dataset.view === 'console' && %s" % text_of("#who-role"))
    t.is_(got, role, "%s logs in and is shown as %s" % (name, role))


def body(t):
    why = browser.missing()
    if why:
        t.bail(why)
    with Stack(t, env=ENV) as s, browser.Browser(SHOTS) as b:
        t.diag("browser: %s; screenshots in %s" % (b.version(), SHOTS))
        admin = s.info["ADMIN_URL"] + "/admin/"
        kr, mk = add_products(s, 2, prefix="CN", stock=5)
        s.sql("UPDATE product SET name = '%s' WHERE sku = '%s'" % (KOREAN, kr))
        s.sql("UPDATE product SET name = '%s' WHERE sku = '%s'" % (MARKUP, mk))
        op_password = s.admin_account("ops", "operator", secrets.token_urlsafe(18))
        viewer_password = s.admin_account("watcher", "viewer", secrets.token_urlsafe(18))

        # -- the page, its policy, the login -------------------------------------
        got = b.open("op", admin)
        csp = got["headers"].get("content-security-policy", "")
        t.ok(got["status"] == 200 and "script-src 'self'" in csp and "unsafe-inline" not in csp,
             "the console's page comes with a Content-Security-Policy: script-src 'self'", got)
        t.ok(b.wait("op", "document.body.dataset.view === 'login'"),
             "without a session the page shows the login form")
        b.type("op", "#login-name", "ops")
        b.type("op", "#login-password", op_password + "x")
        b.click("op", "#login-submit")
        t.is_(b.wait("op", text_of("#login-message")), "wrong name or password",
              "a wrong password is refused, and the page says so")
        b.screenshot("op", "login-refused")
        login(t, b, "op", "ops", op_password, "operator")
        b.eval("op", "window.restockNoReload = 1")

        # -- text from the server is text ----------------------------------------
        cell = "#products tr[data-sku=%s] td:nth-child(2)"
        t.is_(b.wait("op", text_of(cell % js(kr))), KOREAN, "the Korean name is shown as it is")
        t.is_(b.wait("op", text_of(cell % js(mk))), MARKUP,
              "the name with markup is shown as its characters")
        t.is_(b.eval("op", "document.querySelectorAll('img, [onerror]').length"), 0,
              "and makes no element (no <img>, no onerror)")
        t.is_(b.record("op")["dialogs"], [], "and runs nothing (no alert)")
        fonts = subprocess.run(["fc-list", ":lang=ko", "family"], capture_output=True,
                               text=True).stdout.strip()
        t.ok(fonts, "a font with Hangul is installed for the browser (scripts/deps)", fonts)

        # -- a reorder point changed, in the audit trail -----------------------------
        b.select("op", "#settings-sku", kr)
        b.type("op", "#settings-point", "2")
        b.click("op", "#settings-save")
        got = b.wait("op", "%s.find(c => c[4] === %s)"
                     % (cells_of("#audit tr[data-action='product.set']"), js(kr)))
        t.ok(got and got[1:4] == ["admin:ops", "127.0.0.1", "product.set"] and
             "reorder_point 0 \u2192 2" in got[5],
             "the change is in the audit trail: by admin:ops from 127.0.0.1, 0 to 2", got)
        t.is_(s.sql_value("SELECT reorder_point FROM product WHERE sku = '%s'" % kr), "2",
              "and in the database")

        # -- a sell-out appears, with its open order, without a reload ------------
        soldout = "#soldout li[data-sku=%s]" % js(DONUT)
        t.ok(b.wait("op", "document.querySelector('#products tr[data-sku=%s]') && "
                    "!document.querySelector(%s)" % (js(DONUT), js(soldout))),
             "the donut is in stock: not in the sold-out list")
        # The factory refuses the order permanently (4xx): it goes dead at once.
        sim_config(s, answer_status=422, answer_body_hex=b'{"error":"no"}'.hex())
        t.is_(sell_out(s, DONUT).status, 409, "the donut sells out through the public site")
        order = s.wait_until(lambda: orders(s, DONUT), 30)
        order = order[-1]["id"] if order else "none"
        t.ok(b.wait("op", "document.querySelector(%s)" % js(
             soldout + " button[data-order=%s]" % js(order))),
             "the console shows it sold out with its open order", order)
        t.is_(b.eval("op", "window.restockNoReload"), 1, "without a reload")

        event = s.wait_until(lambda: outbox(s, DONUT, "stock_empty"), 30)
        event = event[-1][0] if event else "none"
        t.ok(s.wait_until(lambda: spool_find(s, "factory", event) == ["dead"], 60),
             "the refused order's message is dead", spool_find(s, "factory", event))
        dead_row = "#dead tr[data-message=%s]" % js(event)
        t.ok(b.wait("op", "document.querySelector(%s)" % js(dead_row + " button[data-redrive]")),
             "the dead letter is listed with a redrive button")
        b.click("op", soldout + " button[data-order]")
        t.ok(b.wait("op", "document.querySelector('#timeline li[data-event=failed]')"),
             "the order's timeline shows it failed")
        b.screenshot("op", "sold-out-dead")

        # -- a viewer: no button, and a forced request is refused ---------------------
        b.open("viewer", admin)
        b.wait("viewer", "document.body.dataset.view === 'login'")
        login(t, b, "viewer", "watcher", viewer_password, "viewer")
        t.ok(b.wait("viewer", "document.querySelector(%s)" % js(dead_row)),
             "the viewer sees the dead letter")
        t.is_(b.eval("viewer", "document.querySelectorAll('button[data-redrive]').length"), 0,
              "but no redrive button")
        t.ok(b.eval("viewer", "document.getElementById('settings-section').hidden"),
             "nor the reorder point form")
        forced = b.eval("viewer", """fetch('/admin/api/dead/' + %s + '/redrive', {
            method: 'POST', credentials: 'same-origin',
            headers: {'X-Restock-CSRF': state.csrf}})
            .then(async r => ({status: r.status, body: await r.json()}))""" % js(event))
        t.is_(forced, {"status": 403, "body": {"error": "operator role required"}},
              "a redrive forced by the viewer (with its CSRF token) is refused 403")
        t.is_(spool_find(s, "factory", event), ["dead"], "and the message stays dead")
        b.screenshot("viewer", "viewer")

        # -- the operator redrives it, and watches it delivered ---------------------
        sim_config(s, answer_status=0)
        b.click("op", dead_row + " button[data-redrive]")
        row = "#orders tr[data-order-id=%s] td:nth-child(4)" % js(order)
        t.is_(b.wait("op", "%s === 'fulfilled' && %s" % (text_of(row), text_of(row)), 60),
              "fulfilled", "the redriven order becomes fulfilled on the page")
        t.is_(order_status(s, order), "fulfilled", "as in the database")
        t.ok(b.wait("op", "document.querySelector('#timeline li[data-event=fulfilled]')"),
             "its timeline shows the delivery")
        t.ok(b.wait("op", "!document.querySelector(%s)" % js(soldout)),
             "the donut leaves the sold-out list")
        t.ok(b.wait("op", "!document.querySelector(%s)" % js(dead_row)),
             "and the dead letter is gone")
        t.ok(b.wait("op", "document.querySelector(\"#audit tr[data-action='dlq.redrive']\")"),
             "the redrive is in the audit trail")
        b.screenshot("op", "delivered")


        # -- an idle page is logged out ------------------------------------------------
        b.offline("viewer", True)  # the viewer's laptop asleep: its page stops asking
        asleep = time.monotonic()
        s.wait_until(lambda: time.monotonic() > asleep + IDLE + 1, IDLE + 5)
        b.offline("viewer", False)
        t.is_(b.wait("viewer", "document.body.dataset.view === 'login' && "
                     + text_of("#login-message"), 15), "session expired",
              "the idle viewer's page is logged out: session expired")
        b.screenshot("viewer", "expired")
        t.ok(b.wait("op", "document.body.dataset.view === 'console'"),
             "the operator's page, which kept asking, is still logged in")

        for page in ("op", "viewer"):
            # What the pages received is checked against docs/openapi.yaml at close.
            got = b.exchanges(page)
            t.diag("%s page: %d answers of the admin API" % (page, len(got)))
            for e in got:
                s.record(e["method"], e["path"],
                         Response(e["status"], e["headers"], e["body"].encode("utf-8")))
            rec = b.record(page)
            t.is_(rec["dialogs"], [], "%s page: no dialog opened (alert, confirm)" % page)
            t.is_(rec["errors"], [], "%s page: no script error" % page)


run_tests(body)
