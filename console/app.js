// console/app.js: restock's admin console, plain JavaScript over the admin API
// (/admin/api, docs/design.md §4.16 and §4.17). It logs in, then polls every POLL_MS and
// redraws the queues, products, sold-out products and their open orders, recent
// orders, the chosen order's timeline, dead letters and the audit trail.
//
// Every text that comes from the server is put in the page with textContent (el()
// below), never innerHTML: a product named "<img src=x onerror=…>" is shown as
// those characters, and the admin site's Content-Security-Policy (script-src
// 'self') is a second wall, not the first.
'use strict';

const API = '/admin/api';
const POLL_MS = 2000;

const state = {
  csrf: null, // the session's CSRF token, from the login (or session) answer
  role: null,
  timer: null,
  busy: false, // a poll in flight: the next tick waits for it
  order: null, // the order whose timeline is shown
  skus: '', // the settings form's product list, to redraw it only when it changes
  points: new Map(), // sku → reorder point, to fill the form when a product is chosen
};

const $ = (id) => document.getElementById(id);

// An element with its text (never parsed as HTML) and its attributes.
function el(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function row(cells, attrs) {
  const tr = el('tr', null, attrs);
  for (const c of cells) {
    const td = el('td');
    if (c instanceof Node) td.appendChild(c);
    else td.textContent = c === undefined || c === null ? '-' : String(c);
    tr.appendChild(td);
  }
  return tr;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// The array an answer holds under key ({"products": […]}), or none.
function list(body, key) {
  return body && Array.isArray(body[key]) ? body[key] : [];
}

function first(obj, ...keys) {
  for (const k of keys) if (obj && obj[k] !== undefined && obj[k] !== null) return obj[k];
  return undefined;
}

function age(secs) {
  if (secs === undefined || secs === null || secs < 0) return 'none';
  const s = Math.round(secs);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${s}s`;
}

function percent(x) {
  return typeof x === 'number' ? `${(100 * x).toFixed(1)}%` : x;
}

// An RFC 3339 time as "2026-12-07 10:39:16" (UTC, to the second); the whole
// text stays in the cell's title.
function when(text) {
  const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)/.exec(text || '');
  if (!m) return el('time', text ?? '-');
  return el('time', `${m[1]} ${m[2]}`, { datetime: text, title: text });
}

// What an audit row changed: the keys whose values differ, "key before → after";
// everything when there is no before (an account added) or no after.
function change(before, after) {
  const obj = (x) => x && typeof x === 'object' && !Array.isArray(x);
  if (!obj(before) || !obj(after)) return `${json(before)} → ${json(after)}`;
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
  const diff = keys.filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]));
  if (diff.length === 0) return 'no change';
  return diff.map((k) => `${k} ${json(before[k] ?? null)} → ${json(after[k] ?? null)}`).join(', ');
}

function json(x) {
  if (x === undefined || x === null || x === '') return '-';
  return typeof x === 'string' ? x : JSON.stringify(x);
}

// The error an answer carries ({"error": …}), or its status.
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// One request to the admin API. The session cookie goes with it (same origin);
// every change carries the session's CSRF token. A 401 ends the session here:
// the logged-out view with the server's reason ("session expired").
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD' && state.csrf) headers['X-Restock-CSRF'] = state.csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(API + path, {
    method,
    headers,
    credentials: 'same-origin',
    cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let answer = null;
  try {
    answer = await res.json();
  } catch (e) {
    answer = null;
  }
  if (!res.ok) {
    const message = (answer && answer.error) || `HTTP ${res.status}`;
    // The first 401 says why (a poll's later reads may only say "login required").
    if (res.status === 401 && path !== '/session' && state.csrf) loggedOut(message);
    throw new ApiError(res.status, message);
  }
  return answer;
}

// --- login and logout --------------------------------------------------------

function loggedOut(message) {
  clearInterval(state.timer);
  state.timer = null;
  state.csrf = null;
  state.role = null;
  $('console-view').hidden = true;
  $('who').hidden = true;
  $('login-view').hidden = false;
  $('login-message').textContent = message || '';
  document.body.dataset.view = 'login';
}

function loggedIn(session) {
  state.csrf = session.csrf_token;
  state.role = session.role;
  $('who-name').textContent = session.name;
  $('who-role').textContent = session.role;
  $('who').hidden = false;
  $('login-view').hidden = true;
  $('console-view').hidden = false;
  $('login-message').textContent = '';
  // A viewer sees no way to change anything (the server refuses anyway: 403).
  const writer = session.role === 'operator';
  for (const w of document.querySelectorAll('.write')) w.hidden = !writer;
  document.body.dataset.role = session.role;
  document.body.dataset.view = 'console';
  poll();
  state.timer = setInterval(poll, POLL_MS);
}

async function login(ev) {
  ev.preventDefault();
  const name = $('login-name').value;
  const password = $('login-password').value;
  $('login-password').value = '';
  $('login-submit').disabled = true;
  try {
    loggedIn(await api('POST', '/session', { name, password }));
  } catch (e) {
    $('login-message').textContent = e.message;
  } finally {
    $('login-submit').disabled = false;
  }
}

async function logout() {
  try {
    await api('DELETE', '/session');
  } catch (e) {
    // Already gone (401 did the rest) or the server is down: log out here anyway.
  }
  loggedOut('logged out');
}

// --- the views ---------------------------------------------------------------

// /status: {"queues": [{"queue", "states": {state: count}, "oldest_waiting_seconds"}],
// "orders": {status: count}}. The states are the columns, in the server's order.
function drawQueues(status) {
  const queues = list(status, 'queues');
  const states = [];
  for (const q of queues)
    for (const k of Object.keys(q.states || {})) if (!states.includes(k)) states.push(k);
  const head = el('tr');
  for (const h of ['queue', ...states, 'oldest waiting']) head.appendChild(el('th', h));
  $('queues').tHead.replaceChildren(head);
  fill(
    $('queues').tBodies[0],
    queues.map((q) => {
      const counts = states.map((k) => (q.states || {})[k] ?? 0);
      return row([q.queue, ...counts, age(q.oldest_waiting_seconds)], { 'data-queue': q.queue });
    }),
  );
  const parts = Object.entries(status.orders || {}).map(([k, v]) => `${k} ${v}`);
  $('orders-by-status').textContent = parts.length ? parts.join(', ') : 'none';
}

// A UUID as its first 8 digits (the whole in the title): enough to tell a few
// dozen apart, and the tables stay narrow.
function short(id) {
  const text = /^[0-9a-f]{8}-[0-9a-f-]{27}$/.test(id || '') ? `${id.slice(0, 8)}…` : id;
  return el('span', text, { title: id ?? '' });
}

function orderLink(id) {
  const b = el('button', null, { type: 'button', class: 'link', 'data-order': id });
  b.appendChild(short(id));
  b.addEventListener('click', () => {
    state.order = id;
    showOrder(id).catch((e) => {
      $('order-summary').textContent = e.message;
    });
  });
  return b;
}

// An order not fulfilled yet (open, sent, or failed and waiting for a redrive):
// orders.open_product_id keeps one such order per product.
function isOpen(o) {
  return o.status !== 'fulfilled';
}

function drawProducts(products, orders) {
  fill(
    $('products').tBodies[0],
    products.map((p) =>
      row(
        [
          p.sku,
          p.name,
          p.stock,
          p.held,
          p.reorder_point,
          p.reorder_level,
          percent(p.service_level),
          percent(p.achieved),
          percent(p.fill_rate),
          p.on_order,
        ],
        { 'data-sku': p.sku },
      ),
    ),
  );
  // Sold out as the API says (no stock), with the open orders that bring it back.
  const soldOut = products.filter((p) => p.sold_out);
  $('soldout').replaceChildren(
    ...soldOut.map((p) => {
      const li = el('li', null, { 'data-sku': p.sku });
      li.appendChild(el('span', p.sku, { class: 'sku' }));
      li.appendChild(el('span', p.name, { class: 'name' }));
      const open = orders.filter((o) => o.sku === p.sku && isOpen(o));
      if (open.length === 0) li.appendChild(el('span', 'no open order', { class: 'none' }));
      for (const o of open) {
        const span = el('span', null, { class: 'open-order' });
        span.appendChild(orderLink(o.order_id));
        span.appendChild(el('span', ` ${o.status}`, { class: 'status' }));
        li.appendChild(span);
      }
      return li;
    }),
  );
  if (soldOut.length === 0) $('soldout').appendChild(el('li', 'none', { class: 'none' }));
  state.points = new Map(products.map((p) => [p.sku, p.reorder_point]));
  // The settings form's products, redrawn only when they change (keeps a choice).
  const skus = products.map((p) => p.sku).join('\n');
  if (skus !== state.skus) {
    const chosen = $('settings-sku').value;
    state.skus = skus;
    $('settings-sku').replaceChildren(
      ...products.map((p) => el('option', `${p.sku} — ${p.name}`, { value: p.sku })),
    );
    if (products.some((p) => p.sku === chosen)) $('settings-sku').value = chosen;
    else choose();
  }
}

function drawOrders(orders) {
  fill(
    $('orders').tBodies[0],
    orders.map((o) => {
      const id = o.order_id;
      const created = when(o.created_at);
      return row([orderLink(id), o.sku, o.quantity, o.status, created], { 'data-order-id': id });
    }),
  );
}

// The chosen order's timeline, fetched now (a click) and at every poll.
async function showOrder(id) {
  drawTimeline(await api('GET', `/orders/${encodeURIComponent(id)}`), id);
}

function drawTimeline(o, id) {
  if (state.order !== id) return; // another one was chosen meanwhile
  $('order-id').textContent = id;
  $('order-summary').textContent =
    `${o.sku ?? '-'} · ${o.quantity ?? '-'} units · ${o.status ?? '-'}`;
  $('timeline').replaceChildren(
    ...list(o, 'timeline').map((t) => {
      const li = el('li', null, { 'data-event': t.event });
      li.appendChild(when(t.at));
      li.appendChild(el('span', t.event, { class: 'event' }));
      if (t.detail !== undefined && t.detail !== null)
        li.appendChild(el('span', json(t.detail), { class: 'detail' }));
      return li;
    }),
  );
}

function drawDead(dead) {
  const writer = state.role === 'operator';
  fill(
    $('dead').tBodies[0],
    dead.map((m) => {
      const id = m.id;
      let action = '';
      if (writer) {
        action = el('button', 'Redrive', { type: 'button', 'data-redrive': id });
        action.addEventListener('click', () => redrive(id, action));
      }
      return row(
        [
          short(id),
          m.queue,
          when(m.died_at),
          m.attempts,
          first(m, 'last_error', 'reason', 'unreadable'),
          action,
        ],
        { 'data-message': id },
      );
    }),
  );
}

function drawAudit(entries) {
  fill(
    $('audit').tBodies[0],
    entries.map((a) =>
      row([when(a.at), a.actor, a.source, a.action, a.target, change(a.before, a.after)], {
        'data-audit-id': String(a.id),
        'data-action': a.action,
      }),
    ),
  );
}

// One round of reads; the sections whose read failed keep what they showed.
async function poll() {
  if (state.busy || !state.csrf) return;
  state.busy = true;
  const problems = [];
  const read = async (path, draw) => {
    if (!state.csrf) return; // logged out by an earlier read of this round
    try {
      draw(await api('GET', path));
    } catch (e) {
      if (e.status !== 401) problems.push(`${path}: ${e.message}`);
    }
  };
  try {
    let orders = [];
    await read('/status', drawQueues);
    await read('/orders?limit=50', (b) => {
      orders = list(b, 'orders');
      drawOrders(orders);
    });
    await read('/products', (b) => drawProducts(list(b, 'products'), orders));
    await read('/dead', (b) => drawDead(list(b, 'dead')));
    await read('/audit?limit=50', (b) => drawAudit(list(b, 'audit')));
    const id = state.order;
    if (id) await read(`/orders/${encodeURIComponent(id)}`, (o) => drawTimeline(o, id));
  } finally {
    state.busy = false;
  }
  if (!state.csrf) return; // logged out meanwhile
  $('updated').textContent = new Date().toLocaleTimeString();
  $('poll-error').textContent = problems.join('; ');
  document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
}

// --- the changes (operator) ----------------------------------------------------

async function redrive(id, button) {
  button.disabled = true;
  try {
    await api('POST', `/dead/${encodeURIComponent(id)}/redrive`);
    $('dead-result').textContent = `${id} redriven`;
  } catch (e) {
    $('dead-result').textContent = `${id}: ${e.message}`;
    button.disabled = false;
  }
  poll();
}

// The chosen product's reorder point in the form, to change from.
function choose() {
  const point = state.points.get($('settings-sku').value);
  $('settings-point').value = point === undefined ? '' : String(point);
}

async function saveSettings(ev) {
  ev.preventDefault();
  const sku = $('settings-sku').value;
  const point = Number($('settings-point').value);
  $('settings-save').disabled = true;
  try {
    await api('PATCH', `/products/${encodeURIComponent(sku)}`, { reorder_point: point });
    $('settings-result').textContent = `${sku}: reorder point ${point}`;
  } catch (e) {
    $('settings-result').textContent = `${sku}: ${e.message}`;
  } finally {
    $('settings-save').disabled = false;
  }
  poll();
}

// --- start: an existing session (the cookie) or the login form ------------------

async function start() {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  $('settings-form').addEventListener('submit', saveSettings);
  $('settings-sku').addEventListener('change', choose);
  try {
    loggedIn(await api('GET', '/session'));
  } catch (e) {
    loggedOut(e.status === 401 ? '' : e.message);
  }
}

document.addEventListener('DOMContentLoaded', start);
