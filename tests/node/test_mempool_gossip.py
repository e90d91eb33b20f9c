"""Gossip in batches (issue 16 part 1): one frame per turn per peer, under the frame limit, one bad tx costs itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import DecodeError
from core.tx import Transaction
from node.gossip import LENGTH_BYTES, GossipBatcher, admit_batch, encode_batch, split_batch
from node.ledger import Ledger
from tests.node.helpers import GATEWAY, HOSPITAL, echo_tx, open_ledger

txs_strategy = st.lists(st.binary(min_size=1, max_size=300), max_size=30)


@given(txs_strategy)
def test_a_batch_splits_into_exactly_the_transactions_it_was_made_of(txs: list[bytes]) -> None:
    assert split_batch(encode_batch(txs), max_tx_bytes=300) == txs


@given(st.binary(max_size=200))
def test_any_frame_splits_into_what_re_encodes_to_it_or_is_refused(frame: bytes) -> None:
    try:
        txs = split_batch(frame, max_tx_bytes=100)
    except DecodeError:
        return
    assert encode_batch(txs) == frame and all(0 < len(t) <= 100 for t in txs)


def test_a_frame_that_names_a_transaction_past_the_limit_is_refused() -> None:
    with pytest.raises(DecodeError):
        split_batch(encode_batch([b"x" * 101]), max_tx_bytes=100)
    with pytest.raises(DecodeError):
        split_batch(encode_batch([b"ok"])[:-1], max_tx_bytes=100)


class Turns:
    """A fake ``call_soon``: callbacks run only when the test ends the turn."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def __call__(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)

    def end(self) -> None:
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()


@given(st.lists(st.integers(1, 120), max_size=60))
def test_one_turn_becomes_frames_under_the_limit_holding_everything_in_order(sizes: list[int]) -> None:
    frames: list[bytes] = []
    turns = Turns()
    batcher = GossipBatcher(frames.append, turns, max_bytes=256)
    txs = [bytes([i % 256]) * size for i, size in enumerate(sizes)]
    for raw in txs:
        batcher.add(raw)
    turns.end()
    assert [t for f in frames for t in split_batch(f, 1000)] == txs
    assert all(len(f) <= 256 for f in frames)
    assert len(frames) <= 1 + sum(LENGTH_BYTES + s for s in sizes) // (256 - 124)  # no frame far below the limit


def test_a_transaction_larger_than_a_batch_travels_alone() -> None:
    frames: list[bytes] = []
    turns = Turns()
    batcher = GossipBatcher(frames.append, turns, max_bytes=64)
    batcher.add(b"a" * 10)
    batcher.add(b"b" * 100)
    batcher.add(b"c" * 10)
    turns.end()
    assert [split_batch(f, 1000) for f in frames] == [[b"a" * 10], [b"b" * 100], [b"c" * 10]]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = open_ledger(tmp_path / "ledger")
    yield ledger
    ledger.app.database.close()  # type: ignore[attr-defined]


def test_one_bad_transaction_in_a_batch_costs_only_itself_and_is_reported(ledger) -> None:
    good, also_good = echo_tx(HOSPITAL, 1), echo_tx(GATEWAY, 1)
    forged = Transaction(good.chain_id, GATEWAY.public_key.raw, 2, "test.echo", {"msg": b"x"}, good.signature)
    reports: list[str] = []
    frame = encode_batch([good.encode(), forged.encode(), b"\x93not a tx", also_good.encode(), good.encode()])
    admitted = admit_batch(frame, ledger.mempool.add, 4096, reports.append)
    assert admitted == 2 and good.hash in ledger.mempool and also_good.hash in ledger.mempool
    assert reports == ["gossiped a transaction with a bad signature"]  # the malformed one and the duplicate: quiet
