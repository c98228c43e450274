#!/usr/bin/env python3
"""scripts/freeport.py: prints a free TCP port of 127.0.0.1 for a program to listen on
(scripts/stack, and the integration tests import free_port from here).

A port the kernel hands out for bind(0) comes from the ephemeral range, the one it
also takes the source ports of outgoing connections from: while a program of a stack
is stopped for a restart, a connection of any other test running beside it may take
its port, and the restart fails with "Address already in use". So the port is picked
at random below that range, among those nothing listens on."""
import random
import socket


def ephemeral_start():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    top = ephemeral_start()
    low = 10000 if top > 11000 else 1024
    for _ in range(1000):
        port = random.randrange(low, top)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    s = socket.socket()  # the range below is full: the kernel's choice
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


if __name__ == "__main__":
    print(free_port())
