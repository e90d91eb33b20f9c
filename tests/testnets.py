"""A testnet of real validator processes for a test module: started, ready, and always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devnet.testnet import Testnet
from tests.ports import free_base_port


@contextmanager
def running_testnet(out_dir: Path, n_validators: int = 1, ready_s: float = 60.0) -> Iterator[Testnet]:
    net = Testnet.create(n_validators, out_dir, free_base_port(4 * n_validators))
    try:
        net.start()
        net.wait_ready(ready_s, min_height=1)
        yield net
    finally:
        net.stop_all()
