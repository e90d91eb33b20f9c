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
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import AlreadyKnown, BadNonce, MempoolFull, TooLarge
from core.hashing import sha256
from core.tx import Transaction
from node.application import Application, CheckTxRequest, FinalizedBlock

DEFAULT_TTL_BLOCKS = 300


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
        self._bytes = 0
        self._seq = 0

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

    def add(self, raw: bytes) -> Transaction:
        """Admit one encoded transaction or raise the reason it is refused."""
        if len(raw) > self.max_tx_bytes:
            raise TooLarge(f"transaction is {len(raw)} bytes; the limit is {self.max_tx_bytes}")
        tx = Transaction.decode(raw, max_size=self.max_tx_bytes)
        tx_hash = sha256(raw)  # == tx.hash: decode accepted only the canonical encoding
        if tx_hash in self._by_hash:
            raise AlreadyKnown(f"transaction {tx_hash.hex()} is already in the mempool")
        pending_for_sender = self._by_sender.get(tx.sender, {})
        checked = self.app.check_tx(CheckTxRequest(tx, raw, tx_hash, bool(pending_for_sender)))
        if tx.nonce in pending_for_sender:
            raise BadNonce(f"another pending transaction from this sender already uses nonce {tx.nonce}")
        if len(self._by_hash) >= self.max_txs or self._bytes + len(raw) > self.max_bytes:
            raise MempoolFull(
                f"mempool is full ({len(self._by_hash)} transactions, {self._bytes} bytes); retry later"
            )
        self._seq += 1
        entry = PendingTx(tx, raw, tx_hash, self._seq, self._height)
        self._by_hash[tx_hash] = entry
        self._by_sender.setdefault(tx.sender, {})[tx.nonce] = entry
        self._committed_nonce[tx.sender] = checked.committed_nonce
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

    def _drop(self, entry: PendingTx) -> None:
        del self._by_hash[entry.tx_hash]
        entries = self._by_sender[entry.tx.sender]
        del entries[entry.tx.nonce]
        if not entries:
            del self._by_sender[entry.tx.sender]
            del self._committed_nonce[entry.tx.sender]
        self._bytes -= len(entry.raw)
