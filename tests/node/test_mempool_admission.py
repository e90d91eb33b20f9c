"""Admission under overload (issue 16 part 4): shed before verifying, hint when to retry, share room fairly.

A node past its peak used to verify, gossip and hold every transaction it was
offered, and committed fewer for it. These tests pin what replaced that: a
full mempool answers ``mempool_full`` with ``retry_after_ms`` (from the rate
recent blocks drained it) and the sender's ``next_nonce``, and does so without
verifying a signature, at the RPC edge and in the mempool; one flooding sender
stops at its share, so another sender still gets in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from unittest.mock import Mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.crypto import PrivateKey
from core.errors import MempoolFull
from core.tx import Transaction
from node.app_reads import RPC_QUERIES
from node.application import CheckedTx, CheckTxRequest, FinalizedBlock
from node.ledger import Ledger
from node import mempool as mempool_module
from node.mempool import BACKLOG_FLOOR_TXS, BACKLOG_S, GAP_SLACK, Mempool
from node.rpc.server import create_app
from tests.node.conftest import FakeNode
from tests.node.helpers import ADMIN, CHAIN, GATEWAY, HOSPITAL, echo_tx, make_block, open_ledger
from tests.node.test_rpc_hardening import CountingCache
from tests.node.test_rpc_server import call, post


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = open_ledger(tmp_path / "ledger", mempool_max_txs=8, mempool_max_bytes=1 << 20)
    yield ledger
    ledger.app.database.close()  # type: ignore[attr-defined]


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> Mock:
    """A spy on every signature verification (``call_count``), which still verifies."""
    spy = Mock(side_effect=Transaction.verify_signature)
    monkeypatch.setattr(Transaction, "verify_signature", lambda tx, raw=None: spy(tx, raw))
    return spy


def drained(mempool: Mempool, blocks: int, txs_per_block: int, interval_ms: int) -> None:
    """Tell the mempool that ``blocks`` blocks committed, each carrying ``txs_per_block`` (not its own)."""
    for h in range(1, blocks + 1):
        block = make_block(h, [b"t%d-%d" % (h, i) for i in range(txs_per_block)])
        block = replace(block, header=replace(block.header, time_ms=interval_ms * h))
        mempool.update(FinalizedBlock(block, b"", {}, {}))


def fill(mempool: Mempool) -> None:
    """Eight transactions from three senders, none past its fair share: the mempool is then full."""
    for key, nonces in ((HOSPITAL, (1, 2, 3)), (GATEWAY, (1, 2, 3)), (ADMIN, (1, 2))):
        for n in nonces:
            mempool.add(echo_tx(key, n).encode())
    assert len(mempool) == mempool.max_txs == 8


def test_a_full_mempool_refuses_with_retry_after_and_next_nonce_without_verifying(ledger, verifications) -> None:
    mempool = ledger.mempool
    drained(mempool, 3, 1, 100)  # 10 transactions a second, a block every 100 ms
    fill(mempool)
    before = verifications.call_count
    assert before == 8  # each admitted one was verified
    with pytest.raises(MempoolFull) as refused:
        mempool.add(echo_tx(HOSPITAL, 4).encode())
    assert verifications.call_count == before  # shed before CheckTx: no signature was verified for it
    assert refused.value.code == -32005 and refused.value.reason == "mempool_full"
    # room for a quarter of the capacity (2 of 8) at 10 tx/s: 200 ms (over a block); the sender's run is 1..3
    assert refused.value.data == {"scope": "mempool", "retry_after_ms": 200, "next_nonce": 4}
    with pytest.raises(MempoolFull) as stranger:
        mempool.add(echo_tx(PrivateKey(bytes([9]) * 32), 1).encode())
    assert "next_nonce" not in stranger.value.data  # nothing of its is pending: account_get knows


def test_the_hint_follows_the_drain_rate_and_is_bounded(ledger) -> None:
    mempool = ledger.mempool
    assert mempool.retry_after_ms() == 1000  # no block has drained anything yet
    drained(mempool, 4, 1, 1000)  # one transaction a second
    fill(mempool)
    assert mempool.retry_after_ms() == 2000
    drained(mempool, 16, 100, 10)  # 10 tx/ms: a quarter of the room is sooner than the next block
    assert mempool.retry_after_ms() == 50  # the block interval (10 ms), raised to the bounds' floor
    drained(mempool, 16, 1, 100_000)  # a slow chain: the longest wait
    assert mempool.retry_after_ms() == 30_000
    drained(mempool, 20, 0, 1000)  # blocks that drained nothing: no estimate, so the default
    assert mempool.retry_after_ms() == 1000


def test_capacity_follows_what_a_saturated_chain_commits_in_the_backlog_window(tmp_path) -> None:
    ledger = open_ledger(tmp_path / "big", mempool_max_txs=100_000, mempool_max_bytes=1 << 30)
    try:
        mempool = ledger.mempool
        assert mempool.capacity() == 100_000  # nothing measured yet
        drained(mempool, 5, 3000, 1000)
        assert mempool.capacity() == 100_000  # 3,000 tx/s, but each block emptied the mempool: it keeps up
        mempool.add(echo_tx(HOSPITAL, 5).encode())  # left behind by every block (a nonce gap)
        drained(mempool, 16, 3000, 1000)
        assert mempool.capacity() == int(3000 * BACKLOG_S)
        drained(mempool, 16, 10, 1000)
        assert mempool.capacity() == BACKLOG_FLOOR_TXS
    finally:
        ledger.app.database.close()  # type: ignore[attr-defined]


def test_one_flooding_sender_stops_at_its_share_and_another_still_gets_in(ledger) -> None:
    mempool = ledger.mempool
    admitted = []
    for n in range(1, 9):
        try:
            mempool.add(echo_tx(HOSPITAL, n).encode())
            admitted.append(n)
        except MempoolFull as exc:
            assert exc.data["scope"] == "sender" and exc.data["next_nonce"] == admitted[-1] + 1
    assert admitted == [1, 2, 3, 4, 5] and len(mempool) < mempool.max_txs
    mempool.add(echo_tx(GATEWAY, 1).encode())
    mempool.add(echo_tx(GATEWAY, 2).encode())
    assert mempool.pending_nonces(GATEWAY.public_key.raw) == {1, 2}
    assert mempool.reap(10, 1 << 20)[:2] == [echo_tx(HOSPITAL, 1).encode(), echo_tx(HOSPITAL, 2).encode()]


def test_past_half_full_a_nonce_gap_is_refused_with_the_nonce_to_resume_from(ledger, verifications) -> None:
    """A flood whose refusals left gaps must not fill the mempool with transactions no block can take."""
    mempool = ledger.mempool
    mempool.add(echo_tx(HOSPITAL, 3).encode())  # below half: out of order is normal in gossip
    for n in (1, 2, 3):
        mempool.add(echo_tx(GATEWAY, n).encode())
    verified = verifications.call_count
    with pytest.raises(MempoolFull) as gap:
        mempool.add(echo_tx(GATEWAY, 4 + GAP_SLACK + 1).encode())
    assert gap.value.data["scope"] == "nonce_gap" and gap.value.data["next_nonce"] == 4
    assert verifications.call_count == verified
    with pytest.raises(MempoolFull) as new_sender:
        mempool.add(echo_tx(ADMIN, 2 + GAP_SLACK).encode())  # nothing pending: its committed nonce from CheckTx
    assert new_sender.value.data["next_nonce"] == 1
    mempool.add(echo_tx(GATEWAY, 4 + GAP_SLACK).encode())  # a little out of order: a client spreading nonces
    mempool.add(echo_tx(HOSPITAL, 1).encode())  # the sender resubmits from where the node is
    mempool.add(echo_tx(HOSPITAL, 2).encode())
    assert mempool.reap(10, 1 << 20)[:3] == [echo_tx(GATEWAY, n).encode() for n in (1, 2, 3)]
    assert len(mempool.reap(10, 1 << 20)) == 6  # GATEWAY's early one waits for its predecessors


def test_past_half_full_the_transactions_behind_a_gap_it_took_earlier_are_evicted(ledger) -> None:
    """Taken while there was room, they would hold it until their TTL; no block can take them meanwhile."""
    mempool = ledger.mempool
    stuck = echo_tx(HOSPITAL, 2 + GAP_SLACK)
    mempool.add(stuck.encode())
    for n in (1, 2, 3):
        mempool.add(echo_tx(GATEWAY, n).encode())
    drained(mempool, 1, 0, 1000)  # a block that took none of them: the mempool is half full
    assert stuck.hash not in mempool and mempool.pending_nonces(GATEWAY.public_key.raw) == {1, 2, 3}
    assert mempool.pending_nonces(HOSPITAL.public_key.raw) == set() and len(mempool) == 3


class EdgeNode(FakeNode):
    """The RPC edge over a real ledger's mempool, whose room check the edge asks first."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self.ledger = ledger

    def check_room(self, sender: bytes | None, size: int) -> None:
        self.ledger.mempool.check_room(sender, size)

    async def submit_tx(self, raw: bytes) -> bytes:
        return self.ledger.mempool.add(raw).hash


async def test_the_rpc_edge_sheds_before_it_verifies(serve, ledger) -> None:
    cache = CountingCache()
    app = create_app(EdgeNode(ledger), RPC_QUERIES, chain_id=CHAIN, signatures=cache)
    fill(ledger.mempool)
    async with serve(app) as client:
        _, refused = await post(client, call("tx_submit", [echo_tx(HOSPITAL, 4).encode().hex()]))
    assert cache.verified == 0
    assert refused["error"]["code"] == -32005
    assert refused["error"]["data"] == {"reason": "mempool_full", "scope": "mempool", "retry_after_ms": 1000,
                                        "next_nonce": 4}


class NoCheck:
    """CheckTx that accepts everything at committed nonce 0: the property is about room, not rules."""

    def check_tx(self, request: CheckTxRequest) -> CheckedTx:
        return CheckedTx(committed_nonce=0)


KEYS = [PrivateKey(bytes([40 + i]) * 32) for i in range(4)]
TXS = {(k, n): Transaction.create(KEYS[k], CHAIN, n, "test.echo", {"msg": b"m"}).encode()
       for k in range(len(KEYS)) for n in range(1, 17)}


@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(2, 12), senders=st.lists(st.integers(0, len(KEYS) - 1), max_size=40))
def test_room_is_shared_fairly_whatever_the_arrival_order(capacity: int, senders: list[int]) -> None:
    """No sender holds more than half the capacity (plus one), and a sender with nothing pending is only
    refused when the mempool is full."""
    mempool = Mempool(NoCheck(), max_txs=capacity, max_bytes=1 << 20, max_tx_bytes=4096)  # type: ignore[arg-type]
    sent = dict.fromkeys(range(len(KEYS)), 0)
    for k in senders:
        pub = KEYS[k].public_key.raw
        had = len(mempool.pending_nonces(pub))
        try:
            mempool.add(TXS[(k, sent[k] + 1)])
            sent[k] += 1
        except MempoolFull as exc:
            assert had or len(mempool) == capacity, exc.data
        assert len(mempool.pending_nonces(pub)) <= capacity // 2 + 1
        assert len(mempool) <= capacity



def test_a_relayed_transaction_has_the_whole_genesis_bound(ledger, monkeypatch) -> None:
    """What a peer admitted into its own backlog is kept (verified now, not inside that peer's proposal)."""
    monkeypatch.setattr(mempool_module, "BACKLOG_FLOOR_TXS", 4)
    mempool = ledger.mempool
    mempool.add(echo_tx(ADMIN, 3).encode())  # left behind by every block: the chain is saturated
    drained(mempool, 3, 1, 1000)  # and slow: clients get a backlog of 4 of the genesis 8
    assert mempool.capacity() == 4
    for key, n in ((HOSPITAL, 1), (GATEWAY, 1), (HOSPITAL, 2)):
        mempool.add(echo_tx(key, n).encode())
    with pytest.raises(MempoolFull):
        mempool.add(echo_tx(GATEWAY, 2).encode())
    mempool.add(echo_tx(GATEWAY, 2).encode(), relayed=True)
    assert len(mempool) == 5
