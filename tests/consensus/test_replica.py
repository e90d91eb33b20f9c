"""One replica driven by hand: ordering of effects, recovery, evidence, bounded memory."""

from __future__ import annotations

import dataclasses

import pytest

from consensus import (
    BlockValidated, Broadcast, Commit, CommitBlock, MessageReceived, Persist, PrePrepare, Prepare, ProposalReady,
    Replica, ReplicaConfig, ReportEvidence, RequestProposal, SetTimer, Start, TimerFired, ValidateBlock,
    ViewChange,
)
from consensus.messages import SignedMessage
from core.errors import InvalidInput
from tests.consensus.fakes import FakeSigner, FakeVerifier, make_block, validator_keys
from tests.consensus.sim import CHAIN, Simulation

KEYS = validator_keys(4)


def replica(i: int = 0, n: int = 4) -> Replica:
    keys = validator_keys(n)
    return Replica(ReplicaConfig(CHAIN, keys, keys[i], 5), FakeSigner(keys[i]), FakeVerifier())


def signed(msg: SignedMessage) -> SignedMessage:
    return dataclasses.replace(msg, signature=FakeSigner(msg.sender).sign(msg.kind, msg.sign_bytes(CHAIN)))


def received(msg: SignedMessage) -> MessageReceived:
    return MessageReceived(msg.sender, msg)


def test_a_single_validator_commits_alone() -> None:
    r = replica(0, 1)
    assert RequestProposal(1, 0) in r.step(Start(1, None, ()))
    block, h = make_block(1, 0, r.cfg.me)
    actions = r.step(ProposalReady(1, 0, block, h))
    commits = [a for a in actions if isinstance(a, CommitBlock)]
    assert [c.height for c in commits] == [1] and commits[0].certificate.block_hash == h
    assert RequestProposal(2, 0) in actions and r.height == 2


def test_every_signed_message_is_persisted_before_it_is_sent() -> None:
    """The ordering rule of consensus.events: a Persist precedes the Broadcast that depends on it."""
    r = replica(1)  # primary of height 1, view 0 is validators[(1 + 0) % 4]
    r.step(Start(1, None, ()))
    block, h = make_block(1, 0, r.cfg.me)
    actions = r.step(ProposalReady(1, 0, block, h))
    for i, action in enumerate(actions):
        if isinstance(action, Broadcast):
            persisted = [a.record.payload for a in actions[:i] if isinstance(a, Persist)]
            from consensus import encode_message
            assert encode_message(action.message) in persisted


def test_events_before_start_are_a_caller_error() -> None:
    with pytest.raises(InvalidInput):
        replica().step(TimerFired("x"))


def _prepared_replica() -> tuple[Replica, list, bytes]:
    r = replica(0)
    wal: list = []
    def run(event):
        out = r.step(event)
        wal.extend(a.record for a in out if isinstance(a, Persist))
        return out
    run(Start(1, None, ()))
    block, h = make_block(1, 0, KEYS[1])
    out = run(received(signed(PrePrepare(1, 0, h, block, KEYS[1], b""))))
    assert ValidateBlock(1, 0, block, h) in out
    out = run(BlockValidated(1, h, True))
    assert any(isinstance(a, Broadcast) and isinstance(a.message, Prepare) for a in out)
    return r, wal, h


def test_restart_from_the_wal_never_signs_a_conflicting_vote() -> None:
    """PBFT 4.5: replicas must "remember the messages they sent" across crashes to avoid equivocating."""
    _, wal, h = _prepared_replica()
    again = replica(0)
    out = again.step(Start(1, None, tuple(wal)))
    resent = [a.message for a in out if isinstance(a, Broadcast)]
    assert [type(m) for m in resent] == [Prepare] and resent[0].block_hash == h
    other, other_hash = make_block(1, 0, KEYS[1], salt=7)
    out = again.step(received(signed(PrePrepare(1, 0, other_hash, other, KEYS[1], b""))))
    out += again.step(BlockValidated(1, other_hash, True))
    assert not [a for a in out if isinstance(a, (Persist, Broadcast))]


def test_restart_keeps_the_view_and_the_prepared_certificate() -> None:
    r, wal, h = _prepared_replica()
    for k in KEYS[2:]:
        wal.extend(a.record for a in r.step(received(signed(Prepare(1, 0, h, k, b"")))) if isinstance(a, Persist))
    assert r.prepared is not None
    wal.extend(a.record for a in r.step(TimerFired("pbft/1/0")) if isinstance(a, Persist))
    again = replica(0)
    out = again.step(Start(1, None, tuple(wal)))
    assert again.view == 1 and again.in_view_change and again.prepared == r.prepared
    assert SetTimer("pbft/1/1", 10) in out
    vc = [a.message for a in out if isinstance(a, Broadcast) and isinstance(a.message, ViewChange)]
    assert vc and vc[0].prepared == r.prepared


def test_double_vote_becomes_evidence_once() -> None:
    r, _, h = _prepared_replica()
    first = signed(Commit(1, 0, h, KEYS[3], b""))
    second = signed(Commit(1, 0, bytes(32), KEYS[3], b""))
    r.step(received(first))
    out = r.step(received(second)) + r.step(received(signed(Commit(1, 0, bytes([1]) * 32, KEYS[3], b""))))
    reports = [a.evidence for a in out if isinstance(a, ReportEvidence)]
    assert len(reports) == 1 and reports[0].validator == KEYS[3]
    reports[0].verify(CHAIN, KEYS, FakeVerifier())


def test_bad_signatures_are_counted_and_change_nothing() -> None:
    r, _, h = _prepared_replica()
    forged = dataclasses.replace(signed(Prepare(1, 0, h, KEYS[2], b"")), signature=b"\x00" * 32)
    assert r.step(received(forged)) == [] and r.rejected == {"bad signature": 1}


def test_memory_stays_bounded_over_a_thousand_heights() -> None:
    sim = Simulation(4, seed=1)
    footprints = {}
    for target in (100, 1000):
        sim.run_until(10**9, stop=lambda t=target: sim.min_honest_height() >= t)
        footprints[target] = max(nd.replica.footprint() for nd in sim.nodes)
        for nd in sim.nodes:
            nd.store = {nd.tip: nd.store[nd.tip]}  # the block store is the node's, not consensus's
    assert footprints[1000] <= footprints[100] <= 64
    assert all(len(nd.wal) <= 8 for nd in sim.nodes)
