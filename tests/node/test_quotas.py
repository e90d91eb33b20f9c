"""Per-member storage quotas: a proposer leaves a sender's excess for later, a validator refuses a block
that breaks a budget, CheckTx refuses what a full window cannot take, and windows start afresh."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.block import Block
from core.errors import InvalidInput, QuotaExceeded
from core.hashing import merkle_root
from core.state import MemoryState
from core.tx import Transaction
from node.application import CheckTxRequest
from node.ledger import Ledger
from node.quotas import MemberQuota
from tests.node.helpers import ADMIN, CHAIN, GATEWAY, HOSPITAL, VKEYS, certify, echo_tx, open_ledger

KEYS = [ADMIN, HOSPITAL, GATEWAY]
BLOCK_BYTES, WINDOW_BYTES, WINDOW_BLOCKS = 5000, 9000, 4


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    ledger = open_ledger(tmp_path / "q", member_block_bytes=BLOCK_BYTES, member_window_bytes=WINDOW_BYTES,
                         quota_window_blocks=WINDOW_BLOCKS)
    yield ledger
    ledger.app.database.close()


def big(key, nonce: int, size: int = 1800) -> Transaction:
    return echo_tx(key, nonce, msg=bytes([nonce % 256]) * size)


def commit_next(ledger: Ledger, now_ms: int) -> Block:
    block = ledger.propose(VKEYS[0], now_ms)
    ledger.app.process_proposal(Block.decode(block.encode(), max_size=1 << 20), now_ms)
    ledger.blocks.commit(block, certify(block))
    return block


def bytes_from(block: Block, key) -> int:
    return sum(len(raw) for raw in block.txs if Transaction.decode(raw, max_size=1 << 20).sender == key.public_key.raw)


def test_a_flooding_member_is_held_to_its_budgets_while_others_commit(ledger: Ledger) -> None:
    for nonce in range(1, 8):  # about 13 kB pending from the hospital: more than its 9 kB window allows
        ledger.mempool.add(big(HOSPITAL, nonce).encode())
    ledger.mempool.add(echo_tx(GATEWAY, 1).encode())
    first = commit_next(ledger, 10_000)
    assert 0 < bytes_from(first, HOSPITAL) <= BLOCK_BYTES and bytes_from(first, GATEWAY) > 0
    second = commit_next(ledger, 10_001)
    assert bytes_from(first, HOSPITAL) + bytes_from(second, HOSPITAL) <= WINDOW_BYTES
    assert len(ledger.mempool) > 0  # the rest waits for the next window
    late = big(HOSPITAL, 8)
    with pytest.raises(QuotaExceeded, match="does not fit before height 4"):
        ledger.app.check_tx(CheckTxRequest(late, late.encode(), late.hash, sender_has_pending=True))


def test_a_window_full_sender_is_refused_at_the_door_and_welcome_in_the_next_window(ledger: Ledger) -> None:
    nonce = 0
    refused = None
    for height in range(1, WINDOW_BLOCKS):  # heights 1..3 share window 0 (heights 0..3)
        for _ in range(2):
            nonce += 1
            try:
                ledger.mempool.add(big(HOSPITAL, nonce).encode())
            except QuotaExceeded as exc:
                refused = exc
                nonce -= 1
        commit_next(ledger, 10_000 + height)
    assert refused is not None and refused.data["retry_at_height"] == WINDOW_BLOCKS
    assert refused.code == -32005 and refused.reason == "quota_exceeded"
    commit_next(ledger, 20_000)  # height 4: a new window
    ledger.mempool.add(big(HOSPITAL, nonce + 1).encode())
    assert bytes_from(commit_next(ledger, 20_001), HOSPITAL) > 0


def test_a_block_breaking_a_budget_is_refused_naming_the_sender(ledger: Ledger) -> None:
    txs = [big(HOSPITAL, n).encode() for n in range(1, 4)]  # about 5.5 kB from one sender in one block
    good = ledger.propose(VKEYS[0], 10_000)
    header = dataclasses.replace(good.header, txs_root=merkle_root(txs), num_txs=len(txs))
    with pytest.raises(InvalidInput, match="member_block_bytes"):
        ledger.app.process_proposal(Block(header, tuple(txs), good.last_commit), 10_000)


def test_quota_usage_is_state_every_validator_computes_alike(tmp_path) -> None:
    a, b = (open_ledger(tmp_path / n, member_block_bytes=BLOCK_BYTES, member_window_bytes=WINDOW_BYTES,
                        quota_window_blocks=WINDOW_BLOCKS) for n in ("a", "b"))
    for nonce in range(1, 4):
        a.mempool.add(big(HOSPITAL, nonce).encode())
    block = a.propose(VKEYS[0], 10_000)
    for ledger in (a, b):
        ledger.blocks.commit(block, certify(block))
    assert a.app.info().state_hash == b.app.info().state_hash
    assert a.app.quota.used(a.app.state, HOSPITAL.public_key.raw, 2) == bytes_from(block, HOSPITAL) > 0


sizes = st.lists(st.tuples(st.integers(0, 2), st.integers(100, 3000)), max_size=25)


@settings(max_examples=80, deadline=None)
@given(planned=sizes, used=st.lists(st.integers(0, WINDOW_BYTES), min_size=3, max_size=3))
def test_what_a_proposer_keeps_always_passes_the_validators_check(planned, used) -> None:
    """fit keeps each sender's nonce order, drops a sender's whole tail at its first excess, and its output
    passes check_block; any block check_block passes stays within both budgets."""
    quota = MemberQuota(BLOCK_BYTES, WINDOW_BYTES, WINDOW_BLOCKS)
    state = MemoryState()
    quota.charge(state, {k.public_key.raw: u for k, u in zip(KEYS, used)}, 1)
    nonces = [0, 0, 0]
    txs = []
    for who, size in planned:
        nonces[who] += 1
        txs.append(Transaction.create(KEYS[who], CHAIN, nonces[who], "test.echo", {"msg": b"x" * size}).encode())
    kept = quota.fit(state, txs, 2)
    quota.check_block(state, kept, 2)
    for i, key in enumerate(KEYS):
        mine = [raw for raw in txs if Transaction.decode(raw, max_size=1 << 20).sender == key.public_key.raw]
        kept_mine = [raw for raw in kept if raw in mine]
        assert kept_mine == mine[:len(kept_mine)]  # a prefix: no nonce gap
        total = sum(map(len, kept_mine))
        assert total <= BLOCK_BYTES and used[i] + total <= WINDOW_BYTES
        if len(kept_mine) < len(mine):  # and it stopped only where the next one would not fit
            nxt = len(mine[len(kept_mine)])
            assert total + nxt > BLOCK_BYTES or used[i] + total + nxt > WINDOW_BYTES
