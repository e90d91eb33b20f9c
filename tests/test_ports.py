"""The test suite's port runs: each pytest-xdist worker probes only its own share of the range."""

from __future__ import annotations

import pytest

from tests import ports


def test_workers_get_disjoint_shares_that_cover_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    shares = []
    for index in range(3):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        shares.append(ports._share(20000, 32000))
    assert shares == [(20000, 24000), (24000, 28000), (28000, 32000)]


def test_a_single_process_run_has_the_whole_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert ports._share(20000, 32000) == (20000, 32000)


def test_a_run_is_found_inside_this_workers_share() -> None:
    base = ports.free_base_port(8)
    assert ports.LOW <= base and base + 8 <= ports.HIGH
