"""Free loopback port runs for tests that start real servers.

Ports come from below Linux's ephemeral range (32768+), where the kernel
hands out client and port-0 sockets: a run picked there can be taken by an
unrelated outgoing connection between the check and the server's bind. Each
process starts at a different offset so concurrent test runs rarely probe
the same ports.
"""

from __future__ import annotations

import os
import socket

LOW, HIGH = 20000, 32000
_next = [LOW + (os.getpid() * 97) % (HIGH - LOW)]


def _free(base: int, count: int) -> bool:
    sockets = []
    try:
        for port in range(base, base + count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for s in sockets:
            s.close()


def free_base_port(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    for _ in range(1000):
        base = _next[0]
        _next[0] = LOW + (base - LOW + count + 11) % (HIGH - LOW - count)
        if _free(base, count):
            return base
    raise RuntimeError("no run of free loopback ports found")
