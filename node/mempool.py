"""Pending transactions: admission, deduplication, ordering, eviction, bounds.

Admission decodes the envelope, refuses bytes already pending, and asks the
application's ``check_tx`` (CometBFT's CheckTx: chain, kind, signature,
registered sender with a permitted role, nonce against committed state, and
the contract run on a throwaway buffer), so a transaction execution would
refuse is refused at the door with the same reason. The mempool itself adds
"no other pending transaction of this sender uses this nonce" and its bounds
in count and bytes; a full mempool answers :class:`MempoolFull` instead of
growing. Reaping returns, per sender, only the run of nonces that continues
from the committed nonce, so a proposer never includes a transaction that
must fail its nonce check; the committed nonce comes from ``check_tx`` and
then from each committed block (:meth:`Mempool.update`), never from a store.
A transaction still pending ``ttl_blocks`` after it was admitted is evicted
(CometBFT's TTL): one whose earlier nonce was lost would otherwise hold its
place forever.

Overload is shed at the door, cheaply: :meth:`Mempool.check_room` needs only
the sender and the size, so the RPC edge and ``add`` ask it before any
decode or signature check, and a node past its peak spends microseconds, not
a verification, on each transaction it cannot keep. Clients get a backlog of
what recent blocks commit in ``BACKLOG_S`` (:meth:`Mempool.capacity`), gossip
the whole genesis bound. Room is shared fairly: a sender may hold no more
pending transactions (or bytes) than the room left for everyone else, so one
flooding sender stops at half the mempool and the others still get in; and
past half full a transaction behind a nonce gap is refused. A refusal carries
``retry_after_ms`` (how long the mempool takes to drain a quarter of its
capacity at the rate recent blocks drained it) and, when the mempool knows
it, the sender's ``next_nonce``, so a client resubmits from where the node is
instead of leaving a nonce gap.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from core.errors import AlreadyKnown, BadNonce, MempoolFull, TooLarge
from core.hashing import sha256
from core.tx import Transaction, sender_of
from node.application import Application, CheckTxRequest, FinalizedBlock

DEFAULT_TTL_BLOCKS = 300
DRAIN_WINDOW_BLOCKS = 16
"""Blocks whose commits estimate the drain rate behind ``retry_after_ms``."""
RETRY_AFTER_MS = (50, 30_000)
"""The hint's bounds; until recent blocks have drained something it is ``RETRY_AFTER_UNKNOWN_MS``."""
RETRY_AFTER_UNKNOWN_MS = 1000
BACKLOG_S = 2.0
"""While the chain is saturated, pending transactions are bounded to what recent blocks commit in this long."""
BACKLOG_FLOOR_TXS = 500
"""The backlog bound never falls below this."""
GAP_SLACK = 4
"""How far past a sender's next nonce a transaction may be and not count as behind a gap: a client that
spreads consecutive nonces over validators makes each see them a little out of order."""


@dataclass(frozen=True)
class PendingTx:
    tx: Transaction
    raw: bytes
    tx_hash: bytes
    seq: int
    admitted_at: int
    """The chain height when it was admitted."""


class Mempool:
    def __init__(self, app: Application, *, max_txs: int, max_bytes: int, max_tx_bytes: int,
                 ttl_blocks: int = DEFAULT_TTL_BLOCKS, height: int = 0) -> None:
        self.app = app
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_tx_bytes = max_tx_bytes
        self.ttl_blocks = ttl_blocks
        self._height = height
        self._by_hash: dict[bytes, PendingTx] = {}
        self._by_sender: dict[bytes, dict[int, PendingTx]] = {}
        self._committed_nonce: dict[bytes, int] = {}
        """For each sender with pending transactions: its nonce as of the last committed block."""
        self._sender_bytes: dict[bytes, int] = {}
        self._bytes = 0
        self._seq = 0
        self._drained: deque[tuple[int, int, int, bool]] = deque(maxlen=DRAIN_WINDOW_BLOCKS)
        """(block time ms, transactions, bytes) that each recent committed block took out, and whether it left
        transactions behind (then it took what the chain could: the rate is the chain's, not the offered)."""
        self._drain_per_ms: tuple[float, float] | None = None
        self._capacity = max_txs

    def __len__(self) -> int:
        return len(self._by_hash)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    def decoded(self, tx_hash: bytes) -> Transaction | None:
        """The decoded form of a pending transaction, so execution need not decode its bytes again."""
        entry = self._by_hash.get(tx_hash)
        return None if entry is None else entry.tx

    def pending_nonces(self, sender: bytes) -> set[int]:
        return set(self._by_sender.get(sender, {}))

    def next_nonce(self, sender: bytes) -> int | None:
        """The nonce this mempool expects next from ``sender``: its committed nonce plus its contiguous
        pending run, plus one; None when nothing of the sender's is pending (then it is in committed state)."""
        pending = self._by_sender.get(sender)
        if not pending:
            return None
        nonce = self._committed_nonce[sender] + 1
        while nonce in pending:
            nonce += 1
        return nonce

    def check_room(self, sender: bytes | None, size: int, *, relayed: bool = False) -> None:
        """Raise :class:`MempoolFull` if a ``size``-byte transaction from ``sender`` would not fit: the
        mempool's bounds, then the sender's fair share (no more than the room left for the others).
        ``sender`` None (bytes it cannot be read from, which decode will refuse) gets the bounds only.
        A ``relayed`` one (gossip) has the whole genesis bound: what a peer's own backlog admitted is
        kept, so it is verified now and not on the critical path when it arrives in that peer's proposal."""
        free_txs, free_bytes = self._room(relayed) - len(self._by_hash), self.max_bytes - self._bytes
        if free_txs < 1 or size > free_bytes:
            raise self._refusal(sender, "mempool", f"mempool is full ({len(self._by_hash)} transactions, "
                                f"{self._bytes} bytes); retry later")
        held = None if sender is None else self._by_sender.get(sender)
        if held and sender is not None and (len(held) > free_txs or self._sender_bytes[sender] > free_bytes):
            raise self._refusal(sender, "sender", f"this sender holds {len(held)} pending transactions "
                                f"({self._sender_bytes[sender]} bytes), its fair share of a mempool with room "
                                f"for {free_txs} more; retry later")

    def capacity(self) -> int:
        """How many client transactions may be pending now: ``max_txs`` while the chain keeps up (the latest
        block emptied the mempool), else what the chain commits in ``BACKLOG_S``. Past its peak a node that
        admitted more would only verify, gossip and hold transactions it cannot commit for many seconds, and
        commit fewer for it; a burst on a fast chain is still taken whole (its blocks' own rate is high)."""
        return self._capacity

    def _room(self, relayed: bool) -> int:
        return self.max_txs if relayed else self._capacity

    def _measure_drain(self) -> None:
        """After each block: the rate recent blocks took transactions and bytes out (for ``retry_after_ms``),
        and the capacity. That is ``max_txs`` unless the latest block left transactions behind; then it is
        what the chain commits in ``BACKLOG_S`` at the rate of the recent blocks that left some behind (each
        over the time since the block before it): they took all the chain could, so their rate is the
        chain's and not the offered load's, and one block is enough to react to overload."""
        if len(self._drained) < 2:
            return
        window = list(self._drained)
        elapsed = window[-1][0] - window[0][0]
        txs, size = sum(d[1] for d in window[1:]), sum(d[2] for d in window[1:])
        self._drain_per_ms = (txs / elapsed, size / elapsed) if elapsed > 0 and txs else None
        if not window[-1][3]:
            self._capacity = self.max_txs
            return
        full = [(d[1], d[0] - before[0]) for before, d in zip(window, window[1:]) if d[3]]
        interval = sum(ms for _, ms in full)
        backlog = math.ceil(sum(n for n, _ in full) * 1000 * BACKLOG_S / interval) if interval > 0 else 0
        self._capacity = min(self.max_txs, max(BACKLOG_FLOOR_TXS, backlog))

    def retry_after_ms(self) -> int:
        """How long the mempool takes to drain a quarter of its capacity (in its fuller dimension) at the
        rate recent blocks drained it: when a refused client may expect room."""
        rate = self._drain_per_ms
        if rate is None:  # nothing drained yet: no estimate, and no reason to park a client for long
            return RETRY_AFTER_UNKNOWN_MS
        capacity = self.capacity()
        if self._bytes / self.max_bytes > len(self._by_hash) / capacity:
            wait = (self._bytes - 3 * self.max_bytes / 4) / max(rate[1], 1e-9)
        else:
            wait = (len(self._by_hash) - 3 * capacity / 4) / rate[0]
        block_ms = (self._drained[-1][0] - self._drained[0][0]) / (len(self._drained) - 1)
        wait = max(wait, block_ms)  # nothing changes before the next block: sooner only adds load
        return min(max(math.ceil(wait), RETRY_AFTER_MS[0]), RETRY_AFTER_MS[1])

    def _check_gap(self, tx: Transaction, expected: int, relayed: bool) -> None:
        """Past half its capacity the mempool holds no transaction behind a nonce gap: such a transaction
        cannot be reaped until the gap fills, and a flood whose refusals left gaps would otherwise fill the
        mempool with them, drain nothing and refuse the very transactions that fill the gaps."""
        if tx.nonce > expected + GAP_SLACK and 2 * len(self._by_hash) >= self._room(relayed):
            refusal = self._refusal(tx.sender, "nonce_gap", f"nonce {tx.nonce} leaves a gap: the next nonce "
                                    f"this mempool can order is {expected}; resubmit from it")
            refusal.data["next_nonce"] = expected
            raise refusal

    def _refusal(self, sender: bytes | None, scope: str, message: str) -> MempoolFull:
        data: dict[str, object] = {"scope": scope, "retry_after_ms": self.retry_after_ms()}
        next_nonce = None if sender is None else self.next_nonce(sender)
        if next_nonce is not None:
            data["next_nonce"] = next_nonce
        return MempoolFull(message, data=data)

    def add(self, raw: bytes, *, relayed: bool = False) -> Transaction:
        """Admit one encoded transaction or raise the reason it is refused (room before CheckTx, so a full
        mempool refuses without verifying a signature)."""
        if len(raw) > self.max_tx_bytes:
            raise TooLarge(f"transaction is {len(raw)} bytes; the limit is {self.max_tx_bytes}")
        tx_hash = sha256(raw)  # == tx.hash once decode accepts it: it accepts only the canonical encoding
        if tx_hash in self._by_hash:
            raise AlreadyKnown(f"transaction {tx_hash.hex()} is already in the mempool")
        self.check_room(sender_of(raw), len(raw), relayed=relayed)
        tx = Transaction.decode(raw, max_size=self.max_tx_bytes)
        pending_for_sender = self._by_sender.get(tx.sender, {})
        expected = self.next_nonce(tx.sender)
        if expected is not None:
            self._check_gap(tx, expected, relayed)  # known without CheckTx: refused before any signature is verified
        checked = self.app.check_tx(CheckTxRequest(tx, raw, tx_hash, bool(pending_for_sender)))
        if tx.nonce in pending_for_sender:
            raise BadNonce(f"another pending transaction from this sender already uses nonce {tx.nonce}")
        if expected is None:
            self._check_gap(tx, checked.committed_nonce + 1, relayed)
        self._seq += 1
        entry = PendingTx(tx, raw, tx_hash, self._seq, self._height)
        self._by_hash[tx_hash] = entry
        self._by_sender.setdefault(tx.sender, {})[tx.nonce] = entry
        self._committed_nonce[tx.sender] = checked.committed_nonce
        self._sender_bytes[tx.sender] = self._sender_bytes.get(tx.sender, 0) + len(raw)
        self._bytes += len(raw)
        return tx

    def reap(self, max_txs: int, max_bytes: int) -> list[bytes]:
        """Transactions for the next block: arrival order, each sender's nonces contiguous."""
        next_nonce: dict[bytes, int] = {}
        chosen: list[bytes] = []
        used = 0
        progressed = True
        remaining = list(self._by_hash.values())  # insertion order, which is seq order
        while progressed and len(chosen) < max_txs:
            progressed = False
            deferred = []
            for entry in remaining:
                sender = entry.tx.sender
                if sender not in next_nonce:
                    next_nonce[sender] = self._committed_nonce[sender] + 1
                if entry.tx.nonce != next_nonce[sender]:
                    deferred.append(entry)
                    continue
                if len(chosen) >= max_txs or used + len(entry.raw) > max_bytes:
                    return chosen
                chosen.append(entry.raw)
                used += len(entry.raw)
                next_nonce[sender] += 1
                progressed = True
            remaining = deferred
        return chosen

    def update(self, finalized: FinalizedBlock) -> None:
        """After a committed block: drop every transaction it carried (whatever its outcome),
        each sender's entries whose nonce it used up, and entries past their TTL."""
        height = self._height = finalized.block.height
        for tx_hash in finalized.receipts:
            entry = self._by_hash.get(tx_hash)
            if entry is not None:
                self._drop(entry)
        for sender, committed in finalized.committed_nonces.items():
            entries = self._by_sender.get(sender)
            if entries is None:
                continue
            self._committed_nonce[sender] = committed
            for nonce, entry in list(entries.items()):
                if nonce <= committed:
                    self._drop(entry)
        expired = [e for e in self._by_hash.values() if e.admitted_at <= height - self.ttl_blocks]
        for entry in expired:
            self._drop(entry)
        if 2 * len(self._by_hash) >= self._capacity:
            self._evict_gapped()
        block = finalized.block
        self._drained.append((block.header.time_ms, len(block.txs), sum(len(raw) for raw in block.txs),
                              bool(self._by_hash)))
        self._measure_drain()

    def _evict_gapped(self) -> None:
        """Past half its capacity the mempool keeps no transaction behind a nonce gap (see ``_check_gap``),
        including those it took while it had room: they would hold the room a saturated chain's backlog
        needs until their TTL, and no block can take them before their sender fills the gap."""
        for sender, entries in list(self._by_sender.items()):
            expected = self._committed_nonce[sender] + 1
            while expected in entries:
                expected += 1
            for nonce in [n for n in entries if n > expected + GAP_SLACK]:
                self._drop(entries[nonce])

    def _drop(self, entry: PendingTx) -> None:
        del self._by_hash[entry.tx_hash]
        entries = self._by_sender[entry.tx.sender]
        del entries[entry.tx.nonce]
        self._sender_bytes[entry.tx.sender] -= len(entry.raw)
        if not entries:
            del self._by_sender[entry.tx.sender]
            del self._committed_nonce[entry.tx.sender]
            del self._sender_bytes[entry.tx.sender]
        self._bytes -= len(entry.raw)
