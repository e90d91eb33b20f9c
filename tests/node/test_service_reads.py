"""State reads run on a worker that rests as long as each read ran (``node.service.ReadWorker``): a read flood
gets at most half of the interpreter, and the event loop that carries consensus the rest. The effect on honest
commit latency is measured by ``bench/bench_alerts_query.py``, not here."""

from __future__ import annotations

import pytest

from node.service import ReadWorker


def test_the_read_worker_rests_as_long_as_each_read_ran() -> None:
    """So readers that never stop hold the interpreter at most half the time (``rest=1``)."""
    clock = iter([10.0, 10.25, 20.0, 20.5])  # the first read takes a quarter of a second, the second half of one
    slept: list[float] = []
    with ReadWorker(rest=1.0, clock=lambda: next(clock), sleep=slept.append) as worker:
        assert worker.submit(lambda a, b: a + b, 2, b=3).result() == 5
        with pytest.raises(ZeroDivisionError):  # a failed read rests too, and its error reaches the caller
            worker.submit(lambda: 1 // 0).result()
    assert slept == [0.25, 0.5]
