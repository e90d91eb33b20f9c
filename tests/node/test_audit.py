"""The audit trail on one validator: events in LevelDB, anchors on chain, proofs that catch tampering."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.audit import proof_problem
from core import codec
from core.audit import event_leaf, merkle_path, root_from_path
from core.errors import ContractRejected, NotFound
from core.hashing import merkle_root
from core.state import MemoryState, TxContext
from node import audit_anchor
from node.audit import Anchorer, AuditLog
from node.read_auth import ReadOutcome
from node.stores import Database

VALIDATOR = bytes([7]) * 32


def outcome(i: int, code: int = 0) -> ReadOutcome:
    return ReadOutcome(method="consent_history", client="127.0.0.1", time_ms=1000 + i, code=code,
                       reason="ok" if code == 0 else "read_forbidden", entity={"patient": f"{i:064x}"},
                       reader=bytes([i % 5]) * 32, reader_name=f"reader{i % 5}", roles=("auditor",))


def commit_anchor(state: MemoryState, payload: dict, height: int) -> dict:
    ctx = TxContext("t", height, 0, VALIDATOR, frozenset({"validator"}), bytes([height]) * 32, "node0")
    return audit_anchor.anchor(state, ctx, payload)


@pytest.fixture
def trail(tmp_path: Path):
    database = Database(tmp_path / "db")
    yield AuditLog(database, "node0"), database
    database.close()


def _anchored(trail: AuditLog, n: int) -> MemoryState:
    state = MemoryState()
    for i in range(n):
        trail.record_read(outcome(i, code=-32147 if i % 3 == 0 else 0), height=i)
    payload = trail.due_anchor(lambda: audit_anchor.last_anchored(state, VALIDATOR))
    assert payload is not None and (payload["from_seq"], payload["to_seq"]) == (0, n)
    commit_anchor(state, payload, height=20)
    return state


def _problems(trail: AuditLog, state: MemoryState, n: int) -> dict[int, str | None]:
    out: dict[int, str | None] = {}
    for seq in range(n):
        try:
            out[seq] = proof_problem(trail.proof(seq, lambda s: audit_anchor.covering(state, VALIDATOR, s)), seq)
        except NotFound as exc:
            out[seq] = exc.message
    return out


def test_every_event_proves_against_the_anchor_and_refusals_are_events_too(trail) -> None:
    log, _ = trail
    state = _anchored(log, 7)
    assert _problems(log, state, 7) == dict.fromkeys(range(7))
    refused = [log.event(s) for s in range(7) if log.event(s).outcome == "4"]
    assert [e.seq for e in refused] == [0, 3, 6] and refused[0].outcome_reason == "read_forbidden"
    assert refused[0].action == "R" and refused[0].entity_type == "consent_history" and refused[0].observer == "node0"
    log.record_read(outcome(7), height=30)  # after the anchor: shown as not anchored yet
    assert "not anchored" in _problems(log, state, 8)[7]


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder"])
def test_editing_deleting_or_reordering_a_stored_event_is_caught(trail, tamper: str) -> None:
    log, database = trail
    state = _anchored(log, 6)
    key = lambda seq: b"audit/e/" + seq.to_bytes(8, "big")  # noqa: E731
    if tamper == "edit":
        doc = codec.decode(database.db.get(key(2)))
        doc["agent_name"] = "someone-else"
        database.db.put(key(2), codec.encode(doc))
    elif tamper == "delete":
        database.db.delete(key(2))
    else:
        two, three = database.db.get(key(2)), database.db.get(key(3))
        database.db.put(key(2), three)
        database.db.put(key(3), two)
    problems = _problems(log, state, 6)
    assert problems[2] is not None and all(problems[s] is not None for s in range(6) if s != 2 or tamper != "delete")
    if tamper == "delete":
        assert "no audit event 2" in problems[2]
    if tamper == "reorder":
        assert "reordered" in problems[2]


def test_anchors_tile_the_history_without_gap_or_overlap() -> None:
    state = MemoryState()
    root = bytes(32)
    commit_anchor(state, {"from_seq": 0, "to_seq": 4, "root": root}, 10)
    for bad, why in [({"from_seq": 5, "to_seq": 9}, "starts at 4"), ({"from_seq": 0, "to_seq": 9}, "starts at 4"),
                     ({"from_seq": 4, "to_seq": 4}, "covers 1..")]:
        before = state.snapshot()
        with pytest.raises(ContractRejected, match=why):
            commit_anchor(state, {**bad, "root": root}, 11)
        assert state.snapshot() == before
    commit_anchor(state, {"from_seq": 4, "to_seq": 6, "root": root}, 12)
    assert [(a.from_seq, a.to_seq, a.height) for a in audit_anchor.anchors(state, VALIDATOR)] == [(0, 4, 10), (4, 6, 12)]
    assert audit_anchor.covering(state, VALIDATOR, 5).from_seq == 4 and audit_anchor.covering(state, VALIDATOR, 6) is None
    assert audit_anchor.last_anchored(state, VALIDATOR) == (6, 12)


def test_the_anchorer_offers_each_range_once_every_n_blocks(trail) -> None:
    log, _ = trail
    state = MemoryState()
    offered: list[dict] = []
    anchorer = Anchorer(log, lambda: audit_anchor.last_anchored(state, VALIDATOR), offered.append, every=5)

    class Block:
        def __init__(self, height: int) -> None:
            self.block = type("B", (), {"height": height})()

    for h in range(1, 6):
        anchorer.on_commit(Block(h))  # type: ignore[arg-type]
    assert offered == []  # nothing recorded: no anchor
    log.record_read(outcome(0), height=5)
    for h in range(6, 21):
        anchorer.on_commit(Block(h))  # type: ignore[arg-type]
    assert [(p["from_seq"], p["to_seq"]) for p in offered] == [(0, 1)]  # 10 and 15 wait for the first offer
    anchorer.on_commit(Block(25))  # type: ignore[arg-type]  still uncommitted 3 * 5 blocks on: offered again
    assert len(offered) == 2
    commit_anchor(state, offered[-1], 26)
    anchorer.on_commit(Block(30))  # type: ignore[arg-type]
    assert len(offered) == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=33), st.data())
def test_a_merkle_path_rebuilds_exactly_the_root_of_its_leaves(leaves: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(leaves) - 1))
    path = merkle_path(leaves, index)
    assert root_from_path(leaves[index], path) == merkle_root(leaves)
    assert root_from_path(leaves[index] + b"!", path) != merkle_root(leaves)
    other = data.draw(st.integers(0, len(leaves) - 1))
    if leaves[other] != leaves[index]:
        assert root_from_path(leaves[other], path) != merkle_root(leaves)


def test_the_leaf_commits_to_every_field(trail) -> None:
    log, _ = trail
    event = log.record_read(outcome(1), height=3)
    for field, value in [("outcome", "4"), ("agent_address", "10.0.0.1"), ("recorded_ms", 5), ("observer", "node1")]:
        assert event_leaf(event.model_copy(update={field: value})) != event_leaf(event)


def test_a_page_scans_a_bounded_number_of_events_and_says_where_to_resume(trail,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from core.audit import AuditEventsParams
    from node import audit

    log, _ = trail
    for i in range(9):
        log.record_read(outcome(i), height=i)
    monkeypatch.setattr(audit, "MAX_SCAN", 4)
    nothing = lambda: (0, None)  # noqa: E731
    wanted = AuditEventsParams(actor=bytes([3]) * 32)  # reader3: events 3 and 8
    first = log.page(wanted, nothing)  # looks at 0..3 only
    assert [e.seq for e in first.events] == [3] and first.resume_from == 4
    second = log.page(wanted.model_copy(update={"from_seq": 4}), nothing)
    assert second.events == [] and second.resume_from == 8
    last = log.page(wanted.model_copy(update={"from_seq": 8}), nothing)
    assert [e.seq for e in last.events] == [8] and last.resume_from is None
    one = log.page(wanted.model_copy(update={"limit": 1}), nothing)  # the limit reached: resume after it
    assert [e.seq for e in one.events] == [3] and one.resume_from == 4
