#!/usr/bin/python3
# smtp_sink: a real SMTP server (Debian's python3-aiosmtpd) that stores every message
# it accepts as a file in a Maildir, for the local stack (scripts/stack) and the
# tests. Knobs make it misbehave the way relays do: 4xx and 5xx replies, AUTH,
# STARTTLS, slow answers. Run with /usr/bin/python3 (it has aiosmtpd).
#
#   smtp_sink.py --port N --maildir DIR [--ready-file F] [--tempfail N] [--permfail]
#                [--permfail-rcpt ADDR] [--fail-at mail|rcpt|data] [--auth USER:PASS] [--tls CERT KEY]
#                [--delay S] [--delay-at mail|rcpt|data|all]
#
# DIR/new/* are the messages, exactly as received (CRLF line ends kept) with a
# Return-Path, one Delivered-To per recipient and a Received header on top; the
# Received header's "with" names the protocol as RFC 3848 does (ESMTP, ESMTPS = TLS,
# ESMTPA = authenticated, ESMTPSA = both), so that tests can see TLS and AUTH were used.
# One line per event on stderr, `level smtp-sink key=value ...` like restock's own.
import argparse
import asyncio
import logging
import mailbox
import os
import signal
import ssl
import sys
import warnings
from email.utils import formatdate

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

PROGRAM = "smtp-sink"


def log(level, event, **fields):
    parts = [level, PROGRAM, "event=" + event]
    for k, v in fields.items():
        v = str(v).replace("\r", " ").replace("\n", " ")
        parts.append("%s=%s" % (k, '"%s"' % v if (" " in v or v == "") else v))
    sys.stderr.write(" ".join(parts) + "\n")
    sys.stderr.flush()


class Handler:
    """aiosmtpd handler: the fault knobs, then the Maildir."""

    def __init__(self, args):
        # mailbox.Maildir makes tmp/ new/ cur/ only when it makes the folder itself;
        # scripts/stack makes the folder first.
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(args.maildir, sub), mode=0o700, exist_ok=True)
        self.maildir = mailbox.Maildir(args.maildir, create=False)
        self.tempfail_left = args.tempfail
        self.permfail = args.permfail
        self.permfail_rcpt = args.permfail_rcpt
        self.fail_at = args.fail_at
        self.delay = args.delay
        self.delay_at = args.delay_at
        self.received = 0

    async def gate(self, phase):
        """Slows the answer down, then returns the reply that fails this transaction
        at this phase, or None to go on."""
        if self.delay > 0 and self.delay_at in (phase, "all"):
            await asyncio.sleep(self.delay)
        reply = None
        if phase != self.fail_at:
            return None
        if self.permfail:
            reply = "550 5.7.1 smtp-sink rejects every message (--permfail)"
        elif self.tempfail_left > 0:
            self.tempfail_left -= 1
            reply = "451 4.3.0 smtp-sink is busy, try again later (--tempfail)"
        if reply:
            log("info", "rejected", phase=phase, reply=reply)
        return reply

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = await self.gate("mail")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.permfail_rcpt and address.lower() == self.permfail_rcpt.lower():
            reply = "550 5.1.1 smtp-sink rejects mail to %s (--permfail-rcpt)" % address
            log("info", "rejected", phase="rcpt", reply=reply)
            return reply
        reply = await self.gate("rcpt")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = await self.gate("data")
        if reply:
            return reply
        protocol = "ESMTP" + ("S" if session.ssl is not None else "") + (
            "A" if session.authenticated else "")
        self.received += 1
        trace = "Return-Path: <%s>\r\n" % envelope.mail_from
        trace += "".join("Delivered-To: %s\r\n" % r for r in envelope.rcpt_tos)
        trace += "Received: from %s ([%s])\r\n\tby smtp-sink with %s id %d;\r\n\t%s\r\n" % (
            session.host_name, session.peer[0], protocol, self.received, formatdate())
        data = trace.encode("ascii", "replace") + envelope.original_content
        try:
            # Maildir.add writes into tmp/ and renames into new/: a reader of new/
            # never sees half a message. Bytes are stored as they are (CRLF kept).
            key = self.maildir.add(data)
        except OSError as e:
            log("error", "store_failed", error=e)
            return "451 4.3.0 smtp-sink cannot store the message"
        log("info", "received", id=key, mail_from=envelope.mail_from,
            rcpt_to=",".join(envelope.rcpt_tos), bytes=len(data), protocol=protocol,
            file=os.path.join(self.maildir._path, "new", key))
        return "250 2.0.0 OK stored as %s" % key


def make_authenticator(user, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == user.encode() and auth_data.password == password.encode())
        # The password is never logged, right or wrong.
        log("info", "auth", mechanism=mechanism, result="ok" if ok else "failed")
        # handled=False: aiosmtpd itself answers a failure (535), not this callback.
        return AuthResult(success=ok, handled=False)
    return authenticator


def parse_args(argv):
    p = argparse.ArgumentParser(description="SMTP server storing messages in a Maildir")
    p.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0: any)")
    p.add_argument("--maildir", required=True, help="Maildir where messages are stored")
    p.add_argument("--ready-file", help="written with the port once the server listens")
    p.add_argument("--tempfail", type=int, default=0, metavar="N",
                   help="answer the first N transactions with 451")
    p.add_argument("--permfail", action="store_true", help="answer every transaction with 550")
    p.add_argument("--permfail-rcpt", metavar="ADDR",
                   help="answer RCPT TO:<ADDR> with 550, accept the other recipients")
    p.add_argument("--fail-at", choices=("mail", "rcpt", "data"), default="data",
                   help="the command whose reply fails (default: the end of DATA)")
    p.add_argument("--auth", metavar="USER:PASS", help="require AUTH (PLAIN, LOGIN)")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="offer STARTTLS")
    p.add_argument("--delay", type=float, default=0, metavar="S",
                   help="wait S seconds before answering (timeouts)")
    p.add_argument("--delay-at", choices=("mail", "rcpt", "data", "all"), default="all",
                   help="the replies --delay slows: MAIL, RCPT, the end of DATA or all")
    args = p.parse_args(argv)
    if args.auth is not None and ":" not in args.auth:
        p.error("--auth wants USER:PASS")
    if args.tempfail < 0 or args.delay < 0:
        p.error("--tempfail and --delay must not be negative")
    return args


async def serve(args):
    loop = asyncio.get_running_loop()
    handler = Handler(args)  # an unusable maildir stops the start (OSError)
    tls_context = None
    if args.tls:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.tls[0], args.tls[1])
    kwargs = {}
    if args.auth is not None:
        user, password = args.auth.split(":", 1)
        kwargs = dict(authenticator=make_authenticator(user, password), auth_required=True,
                      auth_require_tls=False)

    def factory():
        return SMTP(handler, hostname="smtp-sink.localhost", tls_context=tls_context,
                    timeout=60, **kwargs)

    server = await loop.create_server(factory, host="127.0.0.1", port=args.port)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.ready_file)
    log("info", "listening", port=port, maildir=args.maildir, tls="yes" if tls_context else "no",
        auth="yes" if args.auth else "no", tempfail=args.tempfail,
        permfail="yes" if args.permfail else "no", fail_at=args.fail_at, delay=args.delay,
        delay_at=args.delay_at)
    await stop.wait()
    server.close()
    await server.wait_closed()
    log("info", "stopped", received=handler.received)


def main(argv):
    args = parse_args(argv)
    # aiosmtpd's own logger speaks on every command and warns about what the knobs
    # ask for on purpose (AUTH without TLS); only its errors (a handler's exception)
    # matter here.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr,
                        format="error " + PROGRAM + " event=aiosmtpd msg=\"%(message)s\"")
    warnings.filterwarnings("ignore", category=UserWarning, module="aiosmtpd")
    try:
        asyncio.run(serve(args))
    except OSError as e:
        log("error", "start_failed", port=args.port, error=e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
