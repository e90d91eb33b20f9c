"""``fbci status`` never shows a validator whose consensus loop stopped as healthy."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from client import status
from client.status import NodeRow


def _report(*rows: NodeRow) -> dict[str, object]:
    return {"nodes": [asdict(r) for r in rows], "common_height": 5, "diverged": False, "chain_ids": ["c"],
            "unreachable": 0, "stopped": sum(r.consensus_running is False for r in rows)}


def _row(name: str, running: bool, last_ms: int) -> NodeRow:
    return NodeRow(f"http://{name}", name, "c", 5, "ab" * 32, 0, 3, 0, False, running, last_ms, "ab" * 32)


def test_a_stuck_node_is_named_and_the_check_fails(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    healthy, stuck = _row("node0", True, 1_000_000), _row("node1", False, 900_000)

    async def fake_collect(urls: list[str]) -> dict[str, object]:
        return _report(healthy, stuck)

    monkeypatch.setattr(status, "collect", fake_collect)
    assert status.show_status(["http://node0", "http://node1"], as_json=False) == 1
    out = capsys.readouterr().out
    assert "STOPPED" in out and "1 node(s) answer but their consensus is not running" in out
    monkeypatch.setattr(status, "collect", lambda urls: _healthy())
    assert status.show_status(["http://node0"], as_json=False) == 0


async def _healthy() -> dict[str, object]:
    return _report(_row("node0", True, 1_000_000))


def test_the_last_commit_is_shown_as_an_age() -> None:
    text = status._table(_report(_row("node0", True, 1_000_000)), now_ms=1_002_500)
    assert "2.5s ago" in text and "running" in text
