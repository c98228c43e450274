#!/usr/bin/python3
"""Integration test of a sale whose commit's answer is lost (design.md §4.1, "In
doubt"): restock-sales talks to MariaDB through a proxy on a unix socket that, once
armed, cuts the connection at a commit, after the server has it (the server commits,
the answer never arrives) or before (the server never sees it and rolls back). Either
way restock cannot know what the database did: it answers 504, never the 503 that
promises nothing was done, and a retry with the same Idempotency-Key learns which:
the stored 200 replayed when the sale was made, a sale made afresh when it was not.
A plain checkout (no key, one autocommit statement) cut after the server ran it is a
504 too, and was sold. The hold routes take the same path: a keyed hold and a keyed
confirm whose commit is cut answer 504, and their retries learn what was done."""

import os
import signal
import socket
import struct
import threading
import uuid

from harness import Stack, run_tests
from sales import OwnSales

DONUT = "CP-502101"
COM_QUERY, COM_STMT_EXECUTE = 0x03, 0x17


class CuttingProxy:
    """Relays MySQL protocol between a unix socket and the server's. arm(): the next
    client packet of that command (and text prefix) is the cut: 'after' forwards it
    and closes both sides when the server's answer comes, without relaying it;
    'before' closes both sides instead of forwarding it."""

    def __init__(self, path, server_path):
        self.path, self.server_path = path, server_path
        self.lock = threading.Lock()
        self.armed = None
        self.cut = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        os.chmod(path, 0o777)
        self.listener.listen(64)
        threading.Thread(target=self.accept, daemon=True).start()

    def arm(self, command, prefix, when):
        with self.lock:
            self.armed = (command, prefix, when)
            self.cut.clear()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self.server_path)
            state = {"drop": False}
            threading.Thread(target=self.to_server, args=(client, server, state),
                             daemon=True).start()
            threading.Thread(target=self.to_client, args=(client, server, state),
                             daemon=True).start()

    @staticmethod
    def close(*socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def to_server(self, client, server, state):
        buf = b""
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 4:
                    size = struct.unpack("<I", buf[:3] + b"\0")[0]
                    if len(buf) < 4 + size:
                        break
                    packet, buf = buf[:4 + size], buf[4 + size:]
                    payload = packet[4:]
                    with self.lock:
                        hit = (self.armed is not None and payload[:1] == bytes([self.armed[0]])
                               and payload[1:].upper().startswith(self.armed[1]))
                        when = self.armed[2] if hit else None
                        if hit:
                            self.armed = None
                    if when == "before":
                        self.cut.set()
                        self.close(client, server)
                        return
                    if when == "after":
                        state["drop"] = True
                    server.sendall(packet)
        except OSError:
            pass
        self.close(client, server)

    def to_client(self, client, server, state):
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                if state["drop"]:
                    self.cut.set()
                    break
                client.sendall(data)
        except OSError:
            pass
        self.close(client, server)

    def stop(self):
        self.listener.close()


def sold_total(s):
    return int(s.sql_value("SELECT sold_total FROM product WHERE sku = '%s'" % DONUT))


def key_status(s, key):
    return s.sql_value("SELECT status FROM checkout_key WHERE idem_key = '%s'" % key)


def held(s):
    return int(s.sql_value("SELECT held FROM product WHERE sku = '%s'" % DONUT))


def keyed(s, key):
    return s.request("POST", "/checkout", {"sku": DONUT, "quantity": 1},
                     headers={"Idempotency-Key": key})


def body(t):
    with Stack(t) as s:
        s.sql("UPDATE product SET stock = 100 WHERE sku = '%s'" % DONUT)
        proxy = CuttingProxy(os.path.join(s.dir, "sock", "db-proxy.sock"), s.info["DB_SOCKET"])
        own = OwnSales(t, s, RESTOCK_DB_SOCKET=proxy.path, RESTOCK_SALES_THREADS="2")
        try:
            r = keyed(s, str(uuid.uuid4()))
            t.is_(r.status, 200, "through the proxy, a keyed checkout sells")

            # The commit reaches the server; its answer is cut.
            key, before = str(uuid.uuid4()), sold_total(s)
            proxy.arm(COM_QUERY, b"COMMIT", "after")
            r = keyed(s, key)
            t.ok(proxy.cut.is_set(), "the proxy cut the connection after the COMMIT")
            t.is_(r.status, 504, "a commit whose answer was lost answers 504, not 503")
            t.ok("may or may not have been made" in r.json().get("error", "")
                 and "Idempotency-Key" in r.json().get("error", ""),
                 "the 504 says the sale is in doubt and how to learn its fate", r.json())
            t.is_((sold_total(s) - before, key_status(s, key)), (1, "200"),
                  "the server had committed it: sold, and its key stored with 200")
            r = keyed(s, key)
            t.is_((r.status, r.headers.get("Idempotent-Replayed")), (200, "true"),
                  "the retry with the same key learns it: the stored 200, replayed")
            t.is_(sold_total(s) - before, 1, "and sells nothing more")

            # The commit never reaches the server: it rolls the sale back.
            key, before = str(uuid.uuid4()), sold_total(s)
            proxy.arm(COM_QUERY, b"COMMIT", "before")
            r = keyed(s, key)
            t.ok(proxy.cut.is_set(), "the proxy cut the connection instead of the COMMIT")
            t.is_(r.status, 504, "restock cannot tell this case from the other: 504 again")
            t.is_((sold_total(s) - before, key_status(s, key)), (0, None),
                  "the server never committed: nothing sold, no key stored")
            r = keyed(s, key)
            t.is_((r.status, r.headers.get("Idempotent-Replayed")), (200, None),
                  "the retry with the same key sells afresh")
            t.is_(sold_total(s) - before, 1, "once")

            # A plain checkout: one autocommit statement, its answer cut.
            before = sold_total(s)
            proxy.arm(COM_STMT_EXECUTE, b"", "after")
            r = s.request("POST", "/checkout", b"")
            t.ok(proxy.cut.is_set(), "the proxy cut the plain checkout's statement's answer")
            t.is_(r.status, 504, "a plain checkout whose statement's answer was lost: 504")
            t.is_(sold_total(s) - before, 1, "the server had made it: sold")
            r = s.request("POST", "/checkout", b"")
            t.is_(r.status, 200, "the next checkout sells (the responder reconnected)")

            hold_in_doubt(t, s, proxy)
        finally:
            own.proc.send_signal(signal.SIGTERM)
            t.is_(own.wait(), 0, "the responder stops cleanly")
            proxy.stop()
        t.ok("event=sale_in_doubt" in s.log("sales"), "the responder logged each sale in doubt")


def hold_in_doubt(t, s, proxy):
    """A keyed hold and a keyed confirm whose commits are cut: 504, and the retry
    with the same key learns what the database did."""
    hold = {"lines": [{"sku": DONUT, "quantity": 2}]}

    key, before = str(uuid.uuid4()), held(s)
    proxy.arm(COM_QUERY, b"COMMIT", "after")
    r = s.request("POST", "/holds", hold, headers={"Idempotency-Key": key})
    t.ok(proxy.cut.is_set(), "the proxy cut the answer of the hold's COMMIT")
    t.is_(r.status, 504, "a hold whose commit's answer was lost answers 504")
    t.is_((held(s) - before, key_status(s, key)), (2, "201"),
          "the server had committed it: 2 units held, its key stored with 201")
    r = s.request("POST", "/holds", hold, headers={"Idempotency-Key": key})
    t.is_((r.status, r.headers.get("Idempotent-Replayed")), (201, "true"),
          "the retry with the same key learns it: the stored 201, replayed")
    t.is_(held(s) - before, 2, "and holds nothing more")
    hold_id = r.json().get("hold")

    key, before = str(uuid.uuid4()), held(s)
    proxy.arm(COM_QUERY, b"COMMIT", "before")
    r = s.request("POST", "/holds", hold, headers={"Idempotency-Key": key})
    t.is_(r.status, 504, "a hold whose commit never reached the server: 504 too")
    t.is_((held(s) - before, key_status(s, key)), (0, None),
          "nothing held, no key stored")
    r = s.request("POST", "/holds", hold, headers={"Idempotency-Key": key})
    t.is_((r.status, r.headers.get("Idempotent-Replayed"), held(s) - before), (201, None, 2),
          "the retry with the same key holds afresh, once")

    key, sold = str(uuid.uuid4()), sold_total(s)
    proxy.arm(COM_QUERY, b"COMMIT", "after")
    r = s.request("POST", "/holds/%s/confirm" % hold_id, b"", headers={"Idempotency-Key": key})
    t.is_(r.status, 504, "a confirm whose commit's answer was lost answers 504")
    t.is_(sold_total(s) - sold, 2, "the server had confirmed it: 2 sold")
    r = s.request("POST", "/holds/%s/confirm" % hold_id, b"", headers={"Idempotency-Key": key})
    t.is_((r.status, r.json().get("status"), r.headers.get("Idempotent-Replayed")),
          (200, "confirmed", "true"), "its retry learns it: the stored 200, confirmed")
    t.is_(sold_total(s) - sold, 2, "and sells nothing more")


if __name__ == "__main__":
    run_tests(body)
