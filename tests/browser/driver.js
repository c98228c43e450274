// tests/browser/driver.js: Debian's chromium (/usr/bin/chromium, headless) driven by
// puppeteer-core for the console's tests (tests/integration/console.py, through
// tests/integration/browser.py). It reads one JSON command a line on stdin and
// answers one JSON line on stdout ({"ok":true,"value":…} or {"ok":false,"error":…}),
// so that the Python test keeps the stack, the checkouts and the assertions, and the
// pages stay open between its steps (a sell-out must appear without a reload).
//
// Each "page" is a tab in a browser context of its own (its own cookies: an
// operator and a viewer side by side). The driver records, per page, every dialog
// (alert, confirm: none may open), page error and console message, and every
// answer of the admin API the page received (for the harness's OpenAPI check).
//
//   node driver.js [--chromium PATH]
'use strict';

const readline = require('readline');
const puppeteer = require('puppeteer-core');

const chromium = process.argv.includes('--chromium')
  ? process.argv[process.argv.indexOf('--chromium') + 1]
  : '/usr/bin/chromium';

const pages = new Map(); // name -> {page, context, dialogs, errors, console}

function pageOf(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page ${name}`);
  return p;
}

async function open(browser, c) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  const rec = { page, context, dialogs: [], errors: [], console: [], exchanges: [] };
  page.on('response', (r) => {
    const url = new URL(r.url());
    if (!url.pathname.startsWith('/admin/api/')) return;
    const exchange = {
      method: r.request().method(),
      path: url.pathname + url.search,
      status: r.status(),
      headers: r.headers(),
    };
    // The body is read later, when the test asks for the answers.
    rec.exchanges.push(r.text().then(
      (body) => ({ ...exchange, body }),
      () => ({ ...exchange, body: '' }),
    ));
  });
  page.on('dialog', async (d) => {
    rec.dialogs.push({ type: d.type(), message: d.message() });
    await d.dismiss();
  });
  page.on('pageerror', (e) => rec.errors.push(String(e.message || e)));
  page.on('console', (m) => rec.console.push(`${m.type()}: ${m.text()}`));
  await page.setViewport({ width: c.width || 1280, height: c.height || 900 });
  pages.set(c.page, rec);
  const res = await page.goto(c.url, { waitUntil: 'load' });
  return { status: res.status(), headers: res.headers() };
}

// The commands. Expressions (expr) are JavaScript evaluated in the page.
const commands = {
  open,
  async goto(browser, c) {
    const res = await pageOf(c.page).page.goto(c.url, { waitUntil: 'load' });
    return { status: res.status(), headers: res.headers() };
  },
  async eval(browser, c) {
    return pageOf(c.page).page.evaluate(c.expr);
  },
  // Waits until expr is truthy in the page (checked at every DOM change), returns
  // its value (an element as true: a node does not travel as JSON); times out
  // after c.timeout ms.
  async wait(browser, c) {
    const h = await pageOf(c.page).page.waitForFunction(c.expr, {
      timeout: c.timeout || 30000,
      polling: 'mutation',
    });
    try {
      return await h.evaluate((v) => (v instanceof Node ? true : v));
    } finally {
      await h.dispose();
    }
  },
  async type(browser, c) {
    const { page } = pageOf(c.page);
    await page.$eval(c.selector, (e) => {
      e.value = '';
    });
    await page.type(c.selector, c.text);
    return null;
  },
  async select(browser, c) {
    return pageOf(c.page).page.select(c.selector, c.value);
  },
  // A mouse click on the element (puppeteer finds it, scrolls to it, moves the
  // mouse, presses and releases: several round trips). The console redraws its
  // tables on each poll: an element found just before a redraw is detached by the
  // click's time, where a user's mouse would land on its redrawn twin. So a click
  // on a detached element is made again on the element the selector finds now
  // (a few times at most); any other failure is the test's.
  async click(browser, c) {
    const { page } = pageOf(c.page);
    for (let attempt = 1; ; attempt++) {
      try {
        await page.click(c.selector);
        return null;
      } catch (e) {
        if (attempt >= 5 || !/detached/i.test(String(e && e.message))) throw e;
      }
    }
  },
  async screenshot(browser, c) {
    await pageOf(c.page).page.screenshot({ path: c.path, fullPage: true });
    return c.path;
  },
  // Takes the page's network away (or gives it back): a laptop asleep.
  async offline(browser, c) {
    await pageOf(c.page).page.setOfflineMode(Boolean(c.offline));
    return null;
  },
  async record(browser, c) {
    const { dialogs, errors, console: messages } = pageOf(c.page);
    return { dialogs, errors, console: messages };
  },
  // The admin API's answers the page received since the last call.
  async exchanges(browser, c) {
    const rec = pageOf(c.page);
    const got = await Promise.all(rec.exchanges);
    rec.exchanges = [];
    return got;
  },
  async close(browser, c) {
    const p = pageOf(c.page);
    pages.delete(c.page);
    await p.context.close();
    return null;
  },
  async version(browser) {
    return browser.version();
  },
};

async function main() {
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    // --no-sandbox: the tests run as root (CI), where chromium refuses its sandbox.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
      '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
      '--disable-backgrounding-occluded-windows'],
  });
  const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
  say({ ok: true, value: 'ready' });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let c;
    try {
      c = JSON.parse(line);
      const fn = commands[c.cmd];
      if (!fn) throw new Error(`unknown command ${c.cmd}`);
      say({ ok: true, value: (await fn(browser, c)) ?? null });
    } catch (e) {
      say({ ok: false, error: String((e && e.message) || e) });
    }
  }
  await browser.close();
}

main().catch((e) => {
  process.stderr.write(`driver: ${e.stack || e}\n`);
  process.exit(1);
});
