"""A real consumer accepts restock's webhook signatures: lib/webhook_sig signs (through
tests/integration/webhook_sign) and the Standard Webhooks reference library, the npm
package standardwebhooks installed from tests/webhooks/package-lock.json by
scripts/deps and run by Debian's /usr/bin/node (tests/webhooks/verify.js), verifies.
Plain deliveries of many bodies, secrets of 24, 32 and 64 bytes and ids made from
event and endpoint verify; during a rotation the two-signature header verifies with
the old and with the new secret, every one of them; a forged signature, a tampered
body or id, another secret and a stale or future timestamp are rejected by the
library. Not the project's own verifier: that one is tested in
tests/unit/webhook_sig_test.c."""

import base64
import json
import os
import subprocess
import tempfile
import time
import uuid

from harness import BUILDDIR, SANITIZER_MARKS, SRCDIR, run_tests

NODE = "/usr/bin/node"  # Debian's nodejs, whatever else is on PATH
CONSUMER = os.path.join(SRCDIR, "tests", "webhooks")
SIGN = os.path.join(BUILDDIR, "tests", "integration", "webhook_sign")
ROTATIONS = 40

# Bodies as restock sends them (the contract's JSON event) and the awkward ones:
# text beyond ASCII, whitespace and escapes, nothing, a large one.
BODIES = [
    b'{"type":"stock.sold_out","timestamp":"2024-05-01T12:00:00Z","data":{"sku":"donut"}}',
    '{"type":"order.opened","data":{"name":"Cr\u00e8me br\u00fbl\u00e9e \u2615"}}'.encode(),
    b'{\n  "type": "hold.expired",\n\t"data": {"s": "a\\u0000b\\"c\\\\"}\n}\n',
    b"{}",
    b"",
    json.dumps({"type": "stock.arrived", "data": {"lines": [
        {"sku": "sku-%d" % i, "quantity": i} for i in range(600)]}}).encode(),
]


def key_secret(nbytes):
    # (os.urandom: the module `secrets` is tests/integration/secrets.py here)
    return "whsec_" + base64.b64encode(os.urandom(nbytes)).decode()


class Signer:
    """webhook_sign, one process answering one line per request."""

    def __init__(self):
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([SIGN], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)

    def ask(self, *fields):
        self.proc.stdin.write("\t".join(fields) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().rstrip("\n")

    def sign(self, msg_id, ts, body, *secret):
        return self.ask("sign", msg_id, str(ts), body.hex(), *secret)

    def close(self):
        """webhook_sign's exit status and what it wrote on stderr."""
        self.proc.stdin.close()
        status = self.proc.wait(timeout=30)
        self.stderr.seek(0)
        return status, self.stderr.read()


def consume(deliveries):
    """The library's answer to each delivery (id, timestamp, body, signature, secret)."""
    lines = "".join(json.dumps({"id": d[0], "timestamp": str(d[1]),
                                "body": base64.b64encode(d[2]).decode(), "signature": d[3],
                                "secret": d[4]}) + "\n" for d in deliveries)
    p = subprocess.run([NODE, os.path.join(CONSUMER, "verify.js")], input=lines,
                       capture_output=True, text=True, cwd=CONSUMER, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("verify.js failed: %s" % p.stderr)
    return p.stdout.splitlines()


def installed(t):
    """The consumer's library is the lockfile's, run by Debian's node."""
    t.ok(os.access(NODE, os.X_OK), "Debian's node is at %s" % NODE)
    with open(os.path.join(CONSUMER, "package-lock.json"), encoding="utf-8") as f:
        locked = json.load(f)["packages"]["node_modules/standardwebhooks"]["version"]
    path = os.path.join(CONSUMER, "node_modules", "standardwebhooks", "package.json")
    have = None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            have = json.load(f)["version"]
    return t.is_(have, locked, "standardwebhooks %s is installed from the lockfile (scripts/deps "
                 "test runs npm ci --prefix tests/webhooks)" % locked)


def plain(t, signer):
    cases, now = [], int(time.time())
    for i in range(30):
        secret = signer.ask("new") if i % 3 == 0 else key_secret((24, 64)[i % 3 - 1])
        msg_id = signer.ask("id", str(uuid.uuid4()), str(uuid.uuid4()), "1")
        body = BODIES[i % len(BODIES)]
        cases.append((msg_id, now, body, signer.sign(msg_id, now, body, secret), secret))
    t.ok(all(c[0].startswith("msg_") and c[3].startswith("v1,") for c in cases),
         "restock signs 30 deliveries (secrets of 32, 24 and 64 bytes, %d bodies)" % len(BODIES),
         [c[3] for c in cases if not c[3].startswith("v1,")][:3])
    # The reference vector (the library's own test), signed by restock, to the library.
    vector = ("msg_p5jXN8AQM9LWM0D4loKWxJek", now, b'{"test": 2432232314}')
    cases.append(vector + (signer.sign(*vector, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                           "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
    answers = consume(cases)
    bad = [(c[0], len(c[2]), a) for c, a in zip(cases, answers) if a != "ok"]
    t.ok(len(answers) == len(cases) and not bad,
         "the reference library verifies every one of %d deliveries" % len(cases), bad[:5])
    return cases


def rotation(t, signer):
    old, new, stranger = signer.ask("new"), signer.ask("new"), signer.ask("new")
    now, signed = int(time.time()), []
    for i in range(ROTATIONS):
        msg_id = signer.ask("id", str(uuid.uuid4()), str(uuid.uuid4()), "1")
        body = BODIES[i % len(BODIES)]
        signed.append((msg_id, now, body, signer.sign(msg_id, now, body, new, old)))
    t.ok(all(len(s[3].split(" ")) == 2 for s in signed),
         "during a rotation each header carries two signatures", signed[0][3])
    for name, secret in (("old", old), ("new", new)):
        answers = consume([s + (secret,) for s in signed])
        failures = [a for a in answers if a != "ok"]
        t.ok(len(answers) == ROTATIONS and not failures,
             "a consumer with the %s secret verifies all %d rotated deliveries, no failure"
             % (name, ROTATIONS), failures[:3])
    answers = consume([s + (stranger,) for s in signed])
    t.ok(answers == ["rejected: No matching signature found"] * ROTATIONS,
         "a consumer with another secret rejects every one", answers[:3])


def flip(text, at):
    """text with its character at `at` changed to another base64 character."""
    return text[:at] + ("B" if text[at] == "A" else "A") + text[at + 1:]


def rejected(t, signer, cases):
    msg_id, _, body, _, secret = cases[0]
    now = int(time.time())
    header = signer.sign(msg_id, now, body, secret)
    other = signer.ask("new")
    attempts = [
        ("a forged signature (one character changed)", (msg_id, now, body, flip(header, 10)),
         "No matching signature found"),
        ("a forged signature (the last character)", (msg_id, now, body, flip(header, 45)),
         "No matching signature found"),
        ("a body changed by one byte", (msg_id, now, body + b" ", header),
         "No matching signature found"),
        ("another webhook-id", (flip(msg_id, 5), now, body, header), "No matching signature found"),
        ("another timestamp", (msg_id, now + 1, body, header), "No matching signature found"),
        ("a signature by another secret",
         (msg_id, now, body, signer.sign(msg_id, now, body, other)), "No matching signature found"),
        ("the right MAC under another version", (msg_id, now, body, "v2" + header[2:]),
         "No matching signature found"),
    ]
    for name, ts in (("stale", now - 3600), ("future", now + 3600)):
        attempts.append(("a %s timestamp (signed correctly, an hour off)" % name,
                         (msg_id, ts, body, signer.sign(msg_id, ts, body, secret)),
                         "Message timestamp too %s" % ("old" if name == "stale" else "new")))
    # Inside the 5 minutes: the reference library's tolerance, not a stricter one.
    fresh = now - 200
    attempts.append(("a timestamp 200 s old (control: within the tolerance)",
                     (msg_id, fresh, body, signer.sign(msg_id, fresh, body, secret)), None))
    answers = consume([a[1] + (secret,) for a in attempts])
    for (name, _, why), answer in zip(attempts, answers):
        if why is None:
            t.is_(answer, "ok", "the library accepts " + name)
        else:
            t.is_(answer, "rejected: " + why, "the library rejects " + name)


def refusals(t, signer):
    bad = "whsec_" + "Zm9v" * 4  # 12 bytes: too short
    answer = signer.sign("msg_1", int(time.time()), b"{}", bad)
    t.ok(answer.startswith("error: ") and bad[6:] not in answer,
         "restock refuses to sign with a malformed secret, without quoting it", answer)
    answer = signer.sign("msg.1", int(time.time()), b"{}", signer.ask("new"))
    t.ok(answer.startswith("error: "), "and an id with a dot (ambiguous in id.timestamp.body)",
         answer)


def body(t):
    if not installed(t):
        return
    signer = Signer()
    try:
        cases = plain(t, signer)
        rotation(t, signer)
        rejected(t, signer, cases)
        refusals(t, signer)
    finally:
        status, errors = signer.close()
    t.ok(status == 0 and not any(m in errors for m in SANITIZER_MARKS),
         "webhook_sign ends well, with no sanitizer report", "status %d: %s" % (status, errors))


if __name__ == "__main__":  # webhooks_e2e.py imports its Signer
    run_tests(body)
