"""Fixtures for tests that run real validator processes on 127.0.0.1.

``testnet`` builds a :class:`devnet.testnet.Testnet` in the test's temporary
directory and always stops every process it started, even when the test fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devnet.testnet import Testnet
from tests.ports import free_base_port


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
