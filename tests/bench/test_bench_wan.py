"""bench_wan's operating-point search and comparison, against a fake load with a known capacity.

The real bench needs four validators under load for minutes; what can rot
unnoticed is the search (does it stop near the capacity, never above it?)
and the arithmetic of the comparison, which these pin down.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import bench_wan
from bench.common import LocalNet


def fake_net(keys: int = 2000) -> bench_wan.WanNet:
    local = LocalNet(net=None, chain_id="c", client_keys=[object()] * keys, rpc_urls=[], out_dir=None)  # type: ignore[list-item, arg-type]
    return bench_wan.WanNet(local, mesh=None, where="fake")  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_validators(monkeypatch: pytest.MonkeyPatch) -> None:
    """There are no mempools to wait for here."""
    monkeypatch.setattr(bench_wan, "settle", lambda wan: 0.0)


def capacity_load(capacity: float, p50_ms: float = 100.0) -> Any:
    async def open_loop(local: LocalNet, keys: list[Any], rate: float, duration: float) -> dict[str, Any]:
        return {"offered_tx_per_s": rate, "committed_tx_per_s": min(rate, capacity), "p50_ms": p50_ms,
                "p99_ms": 2 * p50_ms, "refused": 0, "keys": len(keys)}
    return open_loop


@pytest.mark.parametrize("capacity", [90.0, 450.0, 2500.0])
def test_the_search_ends_within_a_fifth_below_the_capacity(monkeypatch: pytest.MonkeyPatch, capacity: float) -> None:
    monkeypatch.setattr(bench_wan, "open_loop", capacity_load(capacity))
    rows = bench_wan.find_peak(fake_net(), step_s=1, max_steps=20, start=100)
    good = [r["offered_tx_per_s"] for r in rows if r["good"]]
    bad = [r["offered_tx_per_s"] for r in rows if not r["good"]]
    assert bad, "never saturated"
    best = max(good, default=0.0)
    assert best <= capacity / bench_wan.SATURATION
    assert min(bad) <= 1.2 * best or not good
    assert len(rows) < 20
    assert all(16 <= r["keys"] <= bench_wan.MAX_KEYS for r in rows)


def test_slow_commits_count_as_saturation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_wan, "open_loop", capacity_load(1e9, p50_ms=bench_wan.LATENCY_CAP_MS + 1))
    rows = bench_wan.find_peak(fake_net(), step_s=1, max_steps=3, start=100)
    assert [r["good"] for r in rows] == [False, False, False]


def test_each_delay_is_compared_with_the_zero_rows_and_the_floor() -> None:
    rows = [{"delay_ms": 0, "peak_committed_tx_per_s": 400.0, "light_p50_ms": 100.0, "floor_ms": 0},
            {"delay_ms": 80, "peak_committed_tx_per_s": 300.0, "light_p50_ms": 590.0, "floor_ms": 240},
            {"delay_ms": 0, "peak_committed_tx_per_s": 200.0, "light_p50_ms": 100.0, "floor_ms": 0}]
    base = bench_wan.compare(rows)
    assert base == {"peak_committed_tx_per_s": 300.0, "light_p50_ms": 100.0}  # the two 0 ms peaks' mean
    assert rows[1]["throughput_vs_0ms"] == 1.0
    assert rows[1]["added_p50_ms"] == 490.0 and rows[1]["added_over_floor"] == pytest.approx(490 / 240)
    assert rows[0]["added_over_floor"] is None


class Links:
    """Records what the bench sets on the links, in order."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def delay(self, name: str | None, ms: float) -> None:
        self.delays.append(ms)

    def loss(self, name: str | None, rate: float) -> None:
        pass


def test_light_latency_interleaves_the_delays_and_averages_their_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    links = Links()
    wan = fake_net()
    wan.mesh = links  # type: ignore[assignment]
    p50s = iter([10.0, 30.0, 90.0, 20.0, 50.0, 110.0])

    async def open_loop(local: LocalNet, keys: list[Any], rate: float, duration: float) -> dict[str, Any]:
        p50 = next(p50s)
        return {"p50_ms": p50, "p99_ms": 2 * p50}

    monkeypatch.setattr(bench_wan, "open_loop", open_loop)
    light = bench_wan.light_latency(wan, [0, 20, 80], rate=50, duration=1, rounds=2)
    assert links.delays == [0, 20, 80, 0, 20, 80]
    assert {d: v["light_p50_ms"] for d, v in light.items()} == {0: 15.0, 20: 40.0, 80: 100.0}
    assert light[80]["light_p99_ms"] == 220.0
