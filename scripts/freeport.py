#!/usr/bin/env python3
"""scripts/freeport.py: prints a free TCP port of 127.0.0.1 for a program to listen on.
scripts/stack runs it; the integration tests (harness.free_port) and the cluster bed
import free_port from here.

A port the kernel hands out for a bind to port 0 comes from its ephemeral range, the
one it also takes the local ports of outgoing connections from: such a port is free
only for the moment. Any outgoing connection of this machine (another test's, running
beside) may take it and keep it in TIME_WAIT for a minute, and a listener started
later on it (a program restarted, a Galera node's SST or IST receiver when it rejoins)
fails with EADDRINUSE. Outside that range only a listener bound on purpose can hold
it: the port is picked at random there, among those nothing holds now.

Tests run side by side (make -j): two of them could pick one port before either
program binds it, or one pick the port of a program another test is restarting.
So a port handed out is also reserved for RESERVED_FOR seconds by a file
created exclusively in a folder all pickers on this machine share."""
import os
import random
import socket
import tempfile
import time

GIVEN = set()  # by this process: not handed out twice
RESERVED_FOR = 3600  # seconds: longer than any test's stack lives
RESERVATIONS = os.path.join(tempfile.gettempdir(), "restock-ports")


def reserve(port):
    """1 when port is now this caller's for RESERVED_FOR seconds, 0 when another
    picker holds it."""
    os.makedirs(RESERVATIONS, mode=0o1777, exist_ok=True)
    path = os.path.join(RESERVATIONS, str(port))
    for _ in range(2):
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return 1
        except FileExistsError:
            try:
                if time.time() - os.stat(path).st_mtime < RESERVED_FOR:
                    return 0
                os.unlink(path)  # stale: its stack is long gone
            except FileNotFoundError:
                pass
    return 0


def ephemeral_range():
    """The ports the kernel gives to outgoing connections (and to a bind to port 0)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    low, high = ephemeral_range()
    first, last = (10000, low - 1) if low > 12000 else (high + 1, 65535)
    rnd = random.Random()
    for _ in range(2000):
        port = rnd.randint(first, last)
        if port in GIVEN or not reserve(port):
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))  # no SO_REUSEADDR: TIME_WAIT counts as used
        except OSError:
            continue
        finally:
            s.close()
        GIVEN.add(port)
        return port
    raise RuntimeError("no free port in %d-%d" % (first, last))


if __name__ == "__main__":
    print(free_port())
