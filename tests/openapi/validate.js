// tests/openapi/validate.js: checks HTTP exchanges against docs/openapi.yaml, the
// contract (docs/design.md "The OpenAPI document"). The integration harness
// (tests/integration/harness.py) records every answer a test receives, one JSON
// object a line, and runs this once when the stack closes:
//   node validate.js DOCUMENT EXCHANGES.jsonl [WEBHOOKS.jsonl ...]
// An exchange: {method, path (with its query), status, headers {lowercase: value},
// body (text)}; a webhook record (tests/webhooks/consumer.js): {verified, headers,
// body}. Prints one line per exchange that the document does not describe (its
// path, method, status, a required header, the Content-Type, or a body that fails
// its schema: ajv's message) and exits 1; prints "checked N" and exits 0 otherwise.
// The schemas are JSON Schema 2020-12 (OpenAPI 3.1), checked by ajv, not by us.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const os = require("os");
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats").default;

const [docPath, exchangesPath, ...webhookPaths] = process.argv.slice(2);

// The document as JSON, parsed from its YAML once per version of it: parsing the
// YAML took most of a run (half a second, at every stack's close), JSON.parse a few
// milliseconds. The copy is named by the text's hash, written whole (rename).
function loadDocument(path) {
  const text = fs.readFileSync(path, "utf8");
  const hash = crypto.createHash("sha256").update(text).digest("hex").slice(0, 32);
  const cached = require("path").join(os.tmpdir(), "restock-openapi-" + hash + ".json");
  try {
    return JSON.parse(fs.readFileSync(cached, "utf8"));
  } catch (e) {
    const doc = require("yaml").parse(text, { maxAliasCount: -1 });
    const tmp = cached + "." + process.pid;
    try {
      fs.writeFileSync(tmp, JSON.stringify(doc));
      fs.renameSync(tmp, cached);
    } catch (e2) {
      // No copy: the next run parses the YAML again.
    }
    return doc;
  }
}

const doc = loadDocument(docPath);
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
addFormats(ajv);
// The whole document is one schema resource: every "#/components/schemas/…" and
// every inline schema is reached by its JSON pointer from "openapi". Not checked
// against the meta-schema here (the linter checks the document; that took a
// quarter of a run).
ajv.addSchema(doc, "openapi", undefined, false);

const escapePointer = (s) => s.replace(/~/g, "~0").replace(/\//g, "~1");

// The object at a JSON pointer of the document, following the OpenAPI $refs of
// responses, headers and parameters: [object, its pointer].
function at(pointer) {
  let obj = doc;
  for (const part of pointer.split("/").slice(1)) {
    obj = obj[part.replace(/~1/g, "/").replace(/~0/g, "~")];
    if (obj === undefined) return [undefined, pointer];
  }
  if (obj && typeof obj.$ref === "string" && obj.$ref.startsWith("#/")) return at(obj.$ref.slice(1));
  return [obj, pointer];
}

const validators = new Map();
function validatorAt(pointer) {
  if (!validators.has(pointer)) validators.set(pointer, ajv.getSchema("openapi#" + pointer));
  return validators.get(pointer);
}

function schemaProblem(pointer, value) {
  const validate = validatorAt(pointer);
  if (validate(value)) return null;
  return validate.errors
    .map((e) => {
      const extra = e.params && e.params.additionalProperty !== undefined ? e.params.additionalProperty
        : e.params && e.params.unevaluatedProperty !== undefined ? e.params.unevaluatedProperty : null;
      return "body" + e.instancePath + " " + e.message + (extra !== null ? " (" + JSON.stringify(extra) + ")" : "");
    })
    .join(", ");
}

// The path templates, most literal first: /holds/{id}/confirm is tried as
// itself, /admin/openapi.yaml before any {param} of the same length.
const templates = Object.keys(doc.paths)
  .map((template) => ({
    template,
    params: (template.match(/\{/g) || []).length,
    re: new RegExp(
      "^" +
        template
          .split(/(\{[^}]+\})/)
          .map((part) => (part.startsWith("{") ? "[^/]+" : part.replace(/[.*+?^$()|[\]\\]/g, "\\$&")))
          .join("") +
        "$",
    ),
  }))
  .sort((a, b) => a.params - b.params);

function matchPath(path) {
  const bare = path.split("?")[0];
  for (const t of templates) if (t.re.test(bare)) return t.template;
  return null;
}

// Checks the answer's headers and body against the response object at pointer.
function checkResponse(pointer, ex) {
  const [response, rp] = at(pointer);
  const problems = [];
  const headers = ex.headers || {};
  for (const [name, h0] of Object.entries(response.headers || {})) {
    const [header, hp] = at(rp + "/headers/" + escapePointer(name));
    const value = headers[name.toLowerCase()];
    if (value === undefined) {
      if (header.required) problems.push("header " + name + " is required and missing");
      continue;
    }
    if (header.schema) {
      const p = schemaProblem(hp + "/schema", value);
      if (p) problems.push("header " + name + ": " + p.replace(/^body/, name));
    }
  }
  const content = response.content;
  const body = ex.body || "";
  if (!content) {
    if (body.length > 0) problems.push("a body where the document has none");
    return problems;
  }
  if (ex.method === "HEAD") return problems; // no body to check
  const type = (headers["content-type"] || "").split(";")[0].trim().toLowerCase();
  if (!(type in content)) {
    problems.push("Content-Type " + JSON.stringify(type) + " is not one of " + Object.keys(content).join(", "));
    return problems;
  }
  if (!type.endsWith("json")) return problems;
  let value;
  try {
    value = JSON.parse(body);
  } catch (e) {
    problems.push("the body is not JSON: " + e.message);
    return problems;
  }
  const p = schemaProblem(rp + "/content/" + escapePointer(type) + "/schema", value);
  if (p) problems.push(p);
  return problems;
}

// The document's response for an exchange: [pointer, problem].
function responseOf(ex) {
  const status = String(ex.status);
  const anyPath = doc["x-restock-any-path"] || {};
  const general = anyPath[status] ? anyPath[status].slice(1) : null;
  const template = matchPath(ex.path);
  if (template === null)
    return general ? [general, null] : [null, "no path of the document matches " + ex.path.split("?")[0]];
  const method = ex.method === "HEAD" ? "get" : ex.method.toLowerCase();
  const op = doc.paths[template][method];
  if (op === undefined)
    return general ? [general, null] : [null, "the document has no " + ex.method + " on " + template];
  const base = "/paths/" + escapePointer(template) + "/" + method + "/responses/";
  if (status in op.responses) return [base + status, null];
  if ("default" in op.responses) return [base + "default", null];
  return general ? [general, null] : [null, "status " + status + " is not in the document for " + ex.method + " " + template];
}

function checkExchange(ex) {
  const [pointer, problem] = responseOf(ex);
  if (problem) return [problem];
  return checkResponse(pointer, ex);
}

// A delivery restock signed: its type's requestBody in webhooks:, and its headers.
function checkWebhook(rec) {
  let value;
  try {
    value = JSON.parse(rec.body);
  } catch (e) {
    return ["the body is not JSON: " + e.message];
  }
  const hook = doc.webhooks[value && value.type];
  if (!hook || !hook.post) return ["webhook type " + JSON.stringify(value && value.type) + " is not in the document"];
  const base = "/webhooks/" + escapePointer(value.type) + "/post";
  const problems = [];
  for (let i = 0; i < (hook.post.parameters || []).length; i++) {
    const [param, pp] = at(base + "/parameters/" + i);
    if (param.in !== "header") continue;
    const v = (rec.headers || {})[param.name.toLowerCase()];
    if (v === undefined) {
      if (param.required) problems.push("header " + param.name + " is required and missing");
      continue;
    }
    const p = schemaProblem(pp + "/schema", v);
    if (p) problems.push("header " + param.name + ": " + p);
  }
  const p = schemaProblem(base + "/requestBody/content/application~1json/schema", value);
  if (p) problems.push(p);
  return problems;
}

function readLines(path) {
  if (!path || !fs.existsSync(path)) return [];
  // Whole lines only: a consumer may be writing its last one.
  const lines = fs.readFileSync(path, "utf8").split("\n");
  lines.pop();
  return lines.filter((line) => line.length > 0).map((line) => JSON.parse(line));
}

let checked = 0,
  failed = 0;
const short = (s) => (s.length > 300 ? s.slice(0, 300) + "…" : s);
for (const ex of readLines(exchangesPath)) {
  checked++;
  const problems = checkExchange(ex);
  if (problems.length) {
    failed++;
    console.log(ex.method + " " + ex.path + " -> " + ex.status + ": " + problems.join("; ") + " (body: " + short(JSON.stringify(ex.body || "")) + ")");
  }
}
for (const path of webhookPaths) {
  for (const rec of readLines(path)) {
    if (!rec.verified) continue; // not restock's: a test's forgery or replay
    checked++;
    const problems = checkWebhook(rec);
    if (problems.length) {
      failed++;
      console.log("webhook " + rec.path + " " + rec.type + ": " + problems.join("; ") + " (body: " + short(rec.body) + ")");
    }
  }
}
console.log("checked " + checked);
// exitCode, not exit(): a pipe (the harness reads one) gets every line before node ends.
process.exitCode = failed ? 1 : 0;
