#!/usr/bin/python3
"""Factory simulator: behaves like the legacy factory API that restock orders from.

POST /api/manufactures with the JSON of docs/design.md answers 201 with
{"data":{"id":"<uuid>","reqestor":<requester>,"data":<the request>}} (the factory's own
spelling), keeps the order in memory only and, --delay seconds later, POSTs the identical
request body to its CallbackUrl with only Content-Type: application/json; it never
retries a callback and ignores the answer. Every field may be a string or a number.

Knobs (command line, or at run time by POST /_sim/config with a JSON object of the
same names with underscores): --delay S, --fail-rate P (answer 500 with probability P),
--fail-first N (answer 500 to the first N orders), --slow S (wait S before answering),
--duplicate-callbacks N (send each callback N times, at once), --silent (never call
back); at run time only: answer_status (not 0: answer every order with this status and
the bytes of answer_body_hex, as a factory answering in EUC-KR or with escape
sequences does; 0 is the normal behaviour). Random lead times (tests/sim/service_level):
--delay-sd S (knob delay_sd; default 0, the fixed --delay) draws each order's delay from
a gamma law of mean --delay and standard deviation S; the knob lead_times, a JSON object
{"<MessageAttributeFactoryId>": {"mean": M, "sd": S}, ...} (run time only), gives each
factory named in it a law of its own (sd 0: always M), the others keeping delay and
delay_sd. Each factory's draws come from a generator of its own, seeded from --seed and
its id, so that a seeded run gives each factory the same sequence of delays whatever
the other factories' orders. For tests: one JSON line per received request on stderr, GET /_sim/requests
(what was received: body, headers, peer, time), GET /_sim/callbacks (what was sent and
the status each got, or its error), GET /_sim/config, POST /_sim/reset (forget both
lists and the --fail-first count). --port 0 picks a free port; --port-file FILE then
tells which. Stdlib only; stops cleanly on SIGTERM.
"""

import argparse
import http.client
import http.server
import json
import os
import random
import signal
import socketserver
import sys
import threading
import time
import urllib.parse
import uuid

FIELDS = ("MessageGroupId", "MessageAttributeProductId", "MessageAttributeProductCnt",
          "MessageAttributeFactoryId", "MessageAttributeRequester", "CallbackUrl")
BODY_MAX = 1 << 20
CALLBACK_TIMEOUT = 30
LOG_BODY_MAX = 4096


class Factory:
    """The simulator's state, shared by the request threads and the callback timers."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.config = {
            "delay": args.delay,
            "delay_sd": args.delay_sd,
            "lead_times": {},
            "fail_rate": args.fail_rate,
            "fail_first": args.fail_first,
            "slow": args.slow,
            "duplicate_callbacks": args.duplicate_callbacks,
            "silent": args.silent,
            "answer_status": 0,
            "answer_body_hex": "",
        }
        self.requests = []
        self.callbacks = []
        self.orders_seen = 0
        self.timers = set()
        self.random = random.Random(args.seed)
        self.seed = args.seed
        self.lead_random = {}  # factory id -> its generator of delays
        self.stopping = False

    def knobs(self):
        with self.lock:
            return dict(self.config)

    def set_knobs(self, changes):
        """Validates every change before applying any; returns an error text or None."""
        checks = {
            "delay": lambda v: isinstance(v, (int, float)) and v >= 0,
            "delay_sd": lambda v: isinstance(v, (int, float)) and v >= 0,
            "lead_times": is_lead_times,
            "fail_rate": lambda v: isinstance(v, (int, float)) and 0 <= v <= 1,
            "fail_first": lambda v: isinstance(v, int) and v >= 0,
            "slow": lambda v: isinstance(v, (int, float)) and v >= 0,
            "duplicate_callbacks": lambda v: isinstance(v, int) and v >= 1,
            "silent": lambda v: isinstance(v, bool),
            "answer_status": lambda v: isinstance(v, int) and (v == 0 or 100 <= v <= 599),
            "answer_body_hex": lambda v: isinstance(v, str) and is_hex(v),
        }
        if not isinstance(changes, dict):
            return "the configuration must be a JSON object"
        for key, value in changes.items():
            if key not in checks:
                return "unknown knob %r" % key
            if isinstance(value, bool) and key != "silent" or not checks[key](value):
                return "bad value %r for %s" % (value, key)
        with self.lock:
            self.config.update(changes)
            if "fail_first" in changes:
                self.orders_seen = 0
        return None

    def record_request(self, entry):
        with self.lock:
            self.requests.append(entry)
            self.orders_seen += 1
            return self.orders_seen

    def should_fail(self, number):
        with self.lock:
            if number <= self.config["fail_first"]:
                return True
            return self.random.random() < self.config["fail_rate"]

    def delay_of(self, knobs, factory_id):
        """The delay of one order of factory_id: its law's draw, or the fixed delay."""
        law = knobs["lead_times"].get(factory_id, {"mean": knobs["delay"],
                                                  "sd": knobs["delay_sd"]})
        mean, sd = float(law["mean"]), float(law["sd"])
        if sd <= 0 or mean <= 0:
            return mean
        with self.lock:
            gen = self.lead_random.get(factory_id)
            if gen is None:
                gen = self.lead_random[factory_id] = random.Random(
                    "%s/%s" % (self.seed, factory_id))
            # Gamma of that mean and variance: shape (m/sd)^2, scale sd^2/m.
            return gen.gammavariate((mean / sd) ** 2, sd * sd / mean)

    def schedule_callback(self, url, body, factory_id=""):
        knobs = self.knobs()
        if knobs["silent"]:
            return
        timer = threading.Timer(self.delay_of(knobs, factory_id), self.call_back,
                                (url, body, knobs["duplicate_callbacks"]))
        timer.daemon = True
        with self.lock:
            if self.stopping:
                return
            self.timers.add(timer)
        timer.start()

    def call_back(self, url, body, copies):
        with self.lock:
            self.timers.discard(threading.current_thread())
        # The copies go out at once, each on its own connection, to provoke races.
        threads = [threading.Thread(target=self.send_callback, args=(url, body), daemon=True)
                   for _ in range(copies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def send_callback(self, url, body):
        entry = {"time": time.time(), "url": url, "body": body.decode("utf-8", "replace")}
        try:
            parts = urllib.parse.urlsplit(url)
            conn_class = (http.client.HTTPSConnection if parts.scheme == "https"
                          else http.client.HTTPConnection)
            conn = conn_class(parts.hostname, parts.port, timeout=CALLBACK_TIMEOUT)
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            try:
                conn.request("POST", path, body=body,
                             headers={"Content-Type": "application/json"})
                answer = conn.getresponse()
                entry["status"] = answer.status
                entry["answer"] = answer.read(65536).decode("utf-8", "replace")
            finally:
                conn.close()
        except Exception as exc:  # the legacy factory shrugs and forgets the order
            entry["status"] = None
            entry["error"] = "%s: %s" % (type(exc).__name__, exc)
        with self.lock:
            self.callbacks.append(entry)
        log({"event": "callback", "url": redact(url), "status": entry["status"],
             "error": entry.get("error")})

    def reset(self):
        with self.lock:
            self.requests = []
            self.callbacks = []
            self.orders_seen = 0

    def stop(self):
        with self.lock:
            self.stopping = True
            timers, self.timers = self.timers, set()
        for timer in timers:
            timer.cancel()


def log(obj):
    sys.stderr.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stderr.flush()


def redact(url):
    """The callback URL without its token, for the log."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def is_count(value):
    """A positive whole number, as a JSON number or a numeric string ("10" and 10)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0
    if isinstance(value, float):
        return value.is_integer() and value > 0
    if isinstance(value, str):
        return value.strip().isdigit() and int(value) > 0
    return False


def is_lead_times(value):
    """{"<factory id>": {"mean": M >= 0, "sd": S >= 0}, ...}"""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
    return isinstance(value, dict) and all(
        isinstance(law, dict) and set(law) == {"mean", "sd"} and number(law["mean"])
        and number(law["sd"]) for law in value.values())


def is_hex(text):
    try:
        bytes.fromhex(text)
        return True
    except ValueError:
        return False


def check_order(order):
    """The reason a request body is not an order, or None."""
    if not isinstance(order, dict):
        return "the body must be a JSON object"
    for field in FIELDS:
        value = order.get(field)
        if value is None or isinstance(value, (bool, list, dict)) or str(value).strip() == "":
            return "%s is missing or empty" % field
    if not is_count(order["MessageAttributeProductCnt"]):
        return "MessageAttributeProductCnt must be a positive whole number"
    url = urllib.parse.urlsplit(str(order["CallbackUrl"]))
    if url.scheme not in ("http", "https") or not url.hostname:
        return "CallbackUrl must be an http(s) URL"
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API behind its gateway
    server_version = "factory-sim/1"

    def log_message(self, fmt, *args):
        pass  # one JSON line per request instead, written by the handlers

    def answer(self, status, obj):
        self.answer_bytes(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"),
                          "application/json")

    def answer_bytes(self, status, data, content_type):
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up (timeout): nothing to do

    def read_body(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit() or int(length) > BODY_MAX:
            self.close_connection = True
            return None
        return self.rfile.read(int(length))

    def route(self):
        """The path without query string: a factory ignores what it does not know."""
        return urllib.parse.urlsplit(self.path).path

    def do_GET(self):
        factory = self.server.factory
        path = self.route()
        if path == "/_sim/requests":
            with factory.lock:
                self.answer(200, list(factory.requests))
        elif path == "/_sim/callbacks":
            with factory.lock:
                self.answer(200, list(factory.callbacks))
        elif path == "/_sim/config":
            self.answer(200, factory.knobs())
        else:
            self.answer(404, {"message": "Not Found"})

    def do_POST(self):
        factory = self.server.factory
        path = self.route()
        body = self.read_body()
        if body is None:
            self.answer(400 if self.headers.get("Content-Length") is None else 413,
                        {"message": "a body with Content-Length up to %d bytes is required"
                                    % BODY_MAX})
            return
        if path == "/api/manufactures":
            self.manufacture(factory, body)
        elif path == "/_sim/config":
            try:
                changes = json.loads(body)
            except ValueError:
                changes = None
            problem = factory.set_knobs(changes)
            if problem:
                self.answer(400, {"message": problem})
            else:
                self.answer(200, factory.knobs())
        elif path == "/_sim/reset":
            factory.reset()
            self.answer(200, {"message": "reset"})
        else:
            self.answer(404, {"message": "Not Found"})

    def manufacture(self, factory, raw):
        text = raw.decode("utf-8", "replace")
        try:
            order = json.loads(text)
        except ValueError:
            order = None
        entry = {"time": time.time(), "method": "POST", "path": self.path,
                 "peer": "%s:%d" % self.client_address[:2], "headers": dict(self.headers),
                 "body": order if order is not None else text}
        number = factory.record_request(entry)
        shown = order
        if isinstance(order, dict) and "CallbackUrl" in order:
            shown = dict(order, CallbackUrl=redact(str(order["CallbackUrl"])))
        if len(raw) > LOG_BODY_MAX:
            shown = "(%d bytes)" % len(raw)
        line = {"event": "request"}
        line.update(entry, body=shown)
        log(line)
        knobs = factory.knobs()
        if knobs["slow"] > 0:
            time.sleep(knobs["slow"])
        if factory.should_fail(number):
            self.answer(500, {"message": "Internal Server Error"})
            return
        if knobs["answer_status"]:
            self.answer_bytes(knobs["answer_status"], bytes.fromhex(knobs["answer_body_hex"]),
                              "text/plain; charset=euc-kr")
            return
        problem = check_order(order)
        if problem:
            self.answer(400, {"message": problem})
            return
        self.answer(201, {"data": {"id": str(uuid.uuid4()),
                                   "reqestor": order["MessageAttributeRequester"],
                                   "data": order}})
        factory.schedule_callback(str(order["CallbackUrl"]), raw,
                                  str(order["MessageAttributeFactoryId"]))


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the port here once listening")
    parser.add_argument("--delay", type=float, default=40.0,
                        help="seconds before the callback (default 40, like the real one)")
    parser.add_argument("--delay-sd", type=float, default=0.0,
                        help="standard deviation of a gamma-distributed delay (0: fixed)")
    parser.add_argument("--fail-rate", type=float, default=0.0,
                        help="answer 500 with this probability")
    parser.add_argument("--fail-first", type=int, default=0, help="answer 500 to the first N")
    parser.add_argument("--slow", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--duplicate-callbacks", type=int, default=1,
                        help="send each callback N times, concurrently")
    parser.add_argument("--silent", action="store_true", help="never call back")
    parser.add_argument("--seed", type=int, help="seed of --fail-rate's dice and the delays")
    args = parser.parse_args()
    if not 0 <= args.fail_rate <= 1 or args.duplicate_callbacks < 1 or min(
            args.delay, args.delay_sd, args.slow, args.fail_first) < 0:
        parser.error("knobs out of range")

    factory = Factory(args)
    try:
        server = Server((args.host, args.port), Handler)
    except OSError as exc:
        sys.exit("factory_sim: cannot listen on %s:%d: %s" % (args.host, args.port, exc))
    server.factory = factory
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.port_file)

    def on_term(signum, frame):
        # shutdown() waits for serve_forever, which runs in this very thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    log({"event": "listening", "port": port, "config": factory.knobs()})
    server.serve_forever()
    factory.stop()
    server.server_close()
    log({"event": "stopped"})


if __name__ == "__main__":
    main()
