"""A plain (unproven) query sees the state of one height even when a block commits while it reads.

Plain queries run on the read worker's thread (``node.service.ReadWorker``) while the event loop
commits blocks, so an answer that reads two keys could otherwise take one from before a commit and
one from after it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from core.api import Query
from core.errors import StorageError
from core.state import StateView
from node.state_store import PinnedState
from tests.node.helpers import open_ledger
from tests.node.test_chain import grow


class NoParams(BaseModel):
    pass


def test_a_read_spanning_a_commit_sees_one_height(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "db")
    grow(ledger, 1)
    app = ledger.app
    before = {key: value for key, value in app.state.scan(b"")}
    seen: dict[str, object] = {}

    def answer(state: StateView, _params: NoParams) -> int:
        first = dict(state.scan(b""))
        grow(ledger, 2)  # two blocks commit between the answer's two reads
        second = dict(state.scan(b""))
        seen.update(first=first, second=second)
        return len(second)

    query: Query[NoParams, int] = Query("test_two_reads", "two scans", NoParams, int, provable=False)
    app.reads.add(query, answer)
    app.query("test_two_reads", NoParams())
    assert seen["first"] == seen["second"] == before
    assert dict(app.state.scan(b"")) != before  # the commits did change the state the read did not see


def test_a_pinned_read_refuses_writes(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "db")
    pinned = ledger.app.state.pinned()
    assert isinstance(pinned, PinnedState)
    with pytest.raises(StorageError, match="read-only"):
        pinned.set(b"k", b"v")
    assert ledger.app.state.get(b"k") is None
