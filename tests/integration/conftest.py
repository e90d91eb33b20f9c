"""Fixtures for tests that run real validator processes on 127.0.0.1.

``free_base_port`` finds a run of free loopback ports by binding them, so
several suites (or several engineers' runs) never fight over a port, and
``testnet`` builds a :class:`node.testnet.Testnet` in the test's temporary
directory and always stops every process it started, even when the test fails.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from node.testnet import Testnet

_next_candidate = [20000 + (hash(Path.cwd()) % 200) * 100]


def _ports_free(base: int, count: int) -> bool:
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
    """The first port of ``count`` consecutive free loopback ports."""
    for _ in range(500):
        base = _next_candidate[0]
        _next_candidate[0] = 20000 + (base - 20000 + count + 7) % 40000
        if _ports_free(base, count):
            return base
    raise RuntimeError("no run of free loopback ports found")


@pytest.fixture
def testnet(tmp_path: Path) -> Iterator[Callable[..., Testnet]]:
    """``testnet(n, proxies=False)`` -> a started Testnet, stopped at teardown."""
    started: list[Testnet] = []

    def make(n: int, *, proxies: bool = False, **kwargs: object) -> Testnet:
        net = Testnet.create(n, tmp_path / f"net{len(started)}", free_base_port(2 * n + 2),
                             proxies=proxies, **kwargs)
        started.append(net)
        net.start()
        return net

    yield make
    for net in started:
        net.stop_all()
