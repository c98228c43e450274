// tests/webhooks/verify.js: a webhook consumer as a shop would write one, on the
// Standard Webhooks reference library (npm standardwebhooks, installed from
// package-lock.json by scripts/deps), verifying what restock signed
// (tests/integration/webhook_sig.py runs it with Debian's /usr/bin/node).
// Reads one delivery a line, as JSON:
//   {"id": "...", "timestamp": "...", "body": "<base64 of the bytes>",
//    "signature": "v1,... [v1,...]", "secret": "whsec_..."}
// and answers each with one line: "ok", or "rejected: <the library's error>".
// The library checks the timestamp against this machine's clock (5 minutes).
"use strict";
const readline = require("node:readline");
const { Webhook } = require("standardwebhooks");

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on("line", (line) => {
  let answer;
  try {
    const d = JSON.parse(line);
    const headers = {
      "webhook-id": d.id,
      "webhook-timestamp": d.timestamp,
      "webhook-signature": d.signature,
    };
    // The body's bytes exactly as they came over the wire.
    new Webhook(d.secret).verify(Buffer.from(d.body, "base64"), headers);
    answer = "ok";
  } catch (e) {
    answer = "rejected: " + (e && e.message ? e.message : String(e)).replace(/\n/g, " ");
  }
  process.stdout.write(answer + "\n");
});
