"""What the people restock writes to received, as the mail tests (mail*.py,
alerts.py) read it: the emails the stack's SMTP sink (tests/smtp_sink.py) stored in
<stack>/mail/new/, parsed with Python's email module (decoded RFC 2047 subject,
decoded body), the checks every email must pass, and the factory's callback played
by the test. The spool, the simulator and the rows: replenish_common.py. Not a test."""

import email
import email.header
import email.utils
import glob
import json
import os
import re
import urllib.parse

AD_MANAGER = "ad-manager@example.com"
OPERATORS = "ops@donut-states.example"
SENDER = "restock@donut-states.example"

# The subject's beginning tells which email it is (lib/mailtext.c's templates).
KINDS = (
    ("ad_pause", "[restock] 품절: "),
    ("ad_resume", "[restock] 재입고: "),
    ("dead_letter", "[restock] 처리 실패 "),
    ("callback_missing", "[restock] 공장 콜백 없음: "),
    ("corrupt", "[restock] 손상된 메시지 파일 "),
    ("spool_fault", "[restock] 스풀 디스크 오류 "),
    ("delay_warning", "[restock] 처리 지연: "),
    ("over_delivery", "[restock] 주문보다 많은 입고 콜백 거부: "),
    ("mail_dead", "[restock] 메일 전송 실패: "),
    ("webhook_dead", "[restock] 웹훅 전달 실패: "),
    ("webhook_disabled", "[restock] 웹훅 엔드포인트 중지됨 "),
)

LOCAL_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def decode_words(value):
    """An RFC 2047 header value as text (email.header.decode_header)."""
    out = []
    for part, charset in email.header.decode_header(value):
        if isinstance(part, bytes):
            part = part.decode(charset or "ascii")
        out.append(part)
    return "".join(out)


class Mail:
    """One received email: raw bytes, headers, decoded subject and body."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.raw = f.read()
        self.msg = email.message_from_bytes(self.raw)
        self.subject = decode_words(self.msg.get("Subject", ""))
        payload = self.msg.get_payload(decode=True) or b""
        charset = self.msg.get_content_charset() or "ascii"
        self.body = payload.decode(charset).replace("\r\n", "\n")
        self.kind = next((k for k, prefix in KINDS if self.subject.startswith(prefix)), None)

    def __getitem__(self, name):
        return self.msg[name]

    def to(self):
        return self.msg["To"]

    def __repr__(self):
        return "<mail %s to %s: %s>" % (os.path.basename(self.path), self.to(), self.subject)


def inbox(s, kind=None, to=None, containing=None):
    """The emails received so far, oldest first, optionally only one kind, one
    recipient, or those whose subject or body contains a text."""
    mails = []
    for path in glob.glob(os.path.join(s.dir, "mail", "new", "*")):
        m = Mail(path)
        if kind is not None and m.kind != kind:
            continue
        if to is not None and m.to() != to:
            continue
        if containing is not None and containing not in m.subject + "\n" + m.body:
            continue
        mails.append(m)
    mails.sort(key=lambda m: (os.stat(m.path).st_mtime, m.path))
    return mails


def wait_mails(s, count=1, timeout=60, **filters):
    """Waits until at least count emails match filters; returns them."""
    s.wait_until(lambda: len(inbox(s, **filters)) >= count, timeout=timeout, interval=0.2)
    return inbox(s, **filters)


def check_headers(t, m, to, what):
    """The headers every email of restock carries, as docs/design.md and issue 4 say."""
    t.is_(m["From"], SENDER, "%s: From is the configured sender" % what)
    t.is_(m["To"], to, "%s: To is %s" % (what, to))
    t.ok(m["Delivered-To"] == to, "%s: the SMTP envelope went to %s" % (what, to),
         m["Delivered-To"])
    date = email.utils.parsedate_to_datetime(m["Date"]) if m["Date"] else None
    t.ok(date is not None and date.tzinfo is not None,
         "%s: Date is an RFC 5322 date with its zone" % what, m["Date"])
    t.ok(re.match(r"^<[^<>@\s]+@donut-states\.example>$", m["Message-ID"] or ""),
         "%s: Message-ID is <token@sender's domain>" % what, m["Message-ID"])
    t.is_(m["MIME-Version"], "1.0", "%s: MIME-Version 1.0" % what)
    t.is_(m["Content-Type"], "text/plain; charset=UTF-8",
          "%s: Content-Type text/plain; charset=UTF-8" % what)
    t.ok(m["Content-Transfer-Encoding"] in ("base64", "quoted-printable"),
         "%s: the UTF-8 body has a 7-bit transfer encoding" % what,
         m["Content-Transfer-Encoding"])
    raw_subject = m.msg.get("Subject", "")
    t.ok(raw_subject.isascii() and "=?UTF-8?" in raw_subject.upper(),
         "%s: the Korean subject is RFC 2047 encoded UTF-8 on the wire" % what, raw_subject)
    head, _, body = m.raw.partition(b"\r\n\r\n")
    subject = re.search(rb"\r\nSubject:.*?\r\n(?! )", head, re.S)
    t.ok(m.raw.isascii() and all(len(line) <= 998 for line in head.split(b"\r\n"))
         and subject and all(len(line) <= 78 for line in subject.group(0).split(b"\r\n"))
         and all(len(line) <= 76 for line in body.split(b"\r\n")),
         "%s: 7-bit ASCII; the subject folded in lines of at most 78 characters, the body"
         " in lines of at most 76 (RFC 5322, 2045)" % what, head.decode("ascii", "replace"))


# -- the database and the factory --------------------------------------------------

def ad_status(s, sku):
    """The product's advertisement.status: '1' running, '0' paused."""
    return s.sql_value("SELECT a.status FROM advertisement a JOIN product p"
                       " ON p.ad_id = a.ad_id WHERE p.sku = '%s'" % sku)


def call_back(s, order):
    """Does what the legacy factory does when the goods are made: POSTs the order's
    identical body to its CallbackUrl with only Content-Type. Returns the status."""
    url = urllib.parse.urlsplit(order["CallbackUrl"])
    return s.request("POST", url.path + "?" + url.query, json.dumps(order), port=url.port).status
