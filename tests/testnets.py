"""A testnet of real validator processes for a test module: started, ready, and always stopped."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from devnet.testnet import Testnet
from tests.ports import free_base_port


@contextmanager
def running_testnet(out_dir: Path, n_validators: int = 1, ready_s: float = 60.0) -> Iterator[Testnet]:
    with started(Testnet.create(n_validators, out_dir, free_base_port(4 * n_validators)), ready_s) as net:
        yield net


@contextmanager
def started(net: Testnet, ready_s: float = 60.0) -> Iterator[Testnet]:
    """``net`` started and past its first block; stopped on the way out, whatever happened."""
    try:
        net.start()
        net.wait_ready(ready_s, min_height=1)
        yield net
    finally:
        net.stop_all()


def run_in_threads(worker: Callable[[int], None], count: int, timeout_s: float) -> None:
    """``worker(0..count-1)`` each in its own thread, as separate hospitals would run; raises the first
    worker's error, or fails if one is still running after ``timeout_s``."""
    errors: list[BaseException] = []

    def guarded(j: int) -> None:
        try:
            worker(j)
        except BaseException as exc:  # reported by the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(j,), daemon=True) for j in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout_s)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), "a worker never finished"
