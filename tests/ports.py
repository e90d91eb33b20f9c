"""Free loopback port runs for tests that start real servers.

Ports come from below Linux's ephemeral range (32768+), where the kernel
hands out client and port-0 sockets: a run picked there can be taken by an
unrelated outgoing connection between the check and the server's bind. A run
is free when checked and bound only later, by the servers a test starts, so
two pytest-xdist workers walking the same ports could both find a run free
and then race for it (CI saw a validator refuse to start with
``address_in_use``): each worker takes its own share of the range. Each
process starts at a different offset in its share, so separate test runs
rarely probe the same ports.
"""

from __future__ import annotations

import os
import socket



def _share(low: int, high: int) -> tuple[int, int]:
    """This pytest-xdist worker's part of [low, high): ``gwN`` of M workers takes the N-th M-th."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or workers < 2:
        return low, high
    width = (high - low) // workers
    index = int(worker[2:]) % workers
    return low + index * width, low + (index + 1) * width


LOW, HIGH = _share(20000, 32000)
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
