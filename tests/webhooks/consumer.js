// tests/webhooks/consumer.js: a webhook receiver as a shop would run one, on the
// Standard Webhooks reference library (npm standardwebhooks, installed from
// package-lock.json by scripts/deps), for restock's integration tests (run with
// Debian's /usr/bin/node by tests/integration/webhook_consumer.py).
//
//   node consumer.js LOG
//
// Listens on two ports of 127.0.0.1, printed on stdout as one JSON line
// {"port": P, "control": C} once both listen:
// - P takes the deliveries: every POST is verified with the library against the
//   secrets its path was given (verified when any of them accepts it) and
//   recorded as one JSON line appended to LOG:
//   {"path", "id", "timestamp", "signature", "type", "verified", "error",
//    "headers", "body", "status", "at"}
//   then answered as its path is steered (200 by default);
// - C steers it (always up): POST /path/<path> with a JSON object sets how <path>
//   answers, fields kept until changed: "secrets" (["whsec_…"]), "status",
//   "retry_after" (the header's value), "delay_ms" (before answering);
//   POST /down closes P (connections refused) and POST /up opens it again on the
//   same port.
"use strict";
const fs = require("node:fs");
const http = require("node:http");
const { Webhook } = require("standardwebhooks");

const logPath = process.argv[2];
if (!logPath) {
  process.stderr.write("usage: node consumer.js LOG\n");
  process.exit(2);
}
const paths = new Map(); // path -> {secrets, status, retry_after, delay_ms}
let port = 0;

function steering(path) {
  if (!paths.has(path)) paths.set(path, { secrets: [], status: 200, retry_after: null, delay_ms: 0 });
  return paths.get(path);
}

function readAll(req, done) {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => done(Buffer.concat(chunks)));
}

// The library's verdict: verified by any secret, else the first secret's error.
function verify(secrets, body, headers) {
  let error = secrets.length ? null : "no secret given for this path";
  for (const secret of secrets) {
    try {
      new Webhook(secret).verify(body, headers);
      return { verified: true, error: null };
    } catch (e) {
      if (error === null) error = e && e.message ? e.message : String(e);
    }
  }
  return { verified: false, error };
}

function deliver(req, res) {
  readAll(req, (body) => {
    const s = steering(req.url);
    const headers = {
      "webhook-id": req.headers["webhook-id"] || "",
      "webhook-timestamp": req.headers["webhook-timestamp"] || "",
      "webhook-signature": req.headers["webhook-signature"] || "",
    };
    const verdict = verify(s.secrets, body, headers);
    let type = null;
    try {
      type = JSON.parse(body.toString("utf8")).type;
    } catch (e) {
      type = null;
    }
    const record = {
      path: req.url,
      id: headers["webhook-id"],
      timestamp: headers["webhook-timestamp"],
      signature: headers["webhook-signature"],
      type,
      verified: verdict.verified,
      error: verdict.error,
      headers: req.headers,
      body: body.toString("utf8"),
      status: s.status,
      at: Date.now() / 1000,
    };
    fs.appendFileSync(logPath, JSON.stringify(record) + "\n");
    const answer = () => {
      const h = { "Content-Type": "text/plain" };
      if (s.retry_after !== null) h["Retry-After"] = String(s.retry_after);
      res.writeHead(s.status, h);
      res.end(s.status >= 200 && s.status < 300 ? "ok\n" : "not now\n");
    };
    if (s.delay_ms > 0) setTimeout(answer, s.delay_ms);
    else answer();
  });
}

let server = http.createServer(deliver);

function listen(done) {
  server.listen(port, "127.0.0.1", () => {
    port = server.address().port;
    done();
  });
}

const control = http.createServer((req, res) => {
  readAll(req, (body) => {
    const ok = () => {
      res.writeHead(200, { "Content-Type": "text/plain" });
      res.end("ok\n");
    };
    if (req.method === "POST" && req.url.startsWith("/path/")) {
      const s = steering(req.url.slice("/path".length));
      Object.assign(s, JSON.parse(body.toString("utf8") || "{}"));
      return ok();
    }
    if (req.method === "POST" && req.url === "/down") {
      // Kept-alive connections are cut too: refused means refused.
      server.close(() => ok());
      server.closeAllConnections();
      return;
    }
    if (req.method === "POST" && req.url === "/up") {
      server = http.createServer(deliver);
      return listen(ok);
    }
    res.writeHead(404);
    res.end("unknown control\n");
  });
});

listen(() => {
  control.listen(0, "127.0.0.1", () => {
    process.stdout.write(JSON.stringify({ port, control: control.address().port }) + "\n");
  });
});
