"""Transaction gossip in batches: one frame per peer for what one event-loop turn admitted (issue 16 part 1).

Relaying each admitted transaction as its own frame cost a seal, a websocket
message and a ``write()`` per transaction per peer, about a third of the
non-signature work a validator did per transaction. :class:`GossipBatcher`
collects what the node admits until the loop next runs its callbacks (a
JSON-RPC batch of a hundred transactions is admitted in one turn), then
broadcasts them as one frame, cut so that no frame passes ``max_bytes``.

The frame is the transactions' encodings, each behind its length as a 4-byte
big-endian integer: nothing to parse but lengths, and each transaction keeps
the canonical bytes its signature and hash are over. The receiver admits
each one on its own (:func:`split_batch`), so one bad transaction costs only
itself (and its sender's standing); a frame whose lengths do not add up is
the sender's fault as a whole and is refused with :class:`DecodeError`.
"""

from __future__ import annotations

from collections.abc import Callable

from core.errors import BadSignature, DecodeError, FbciError

LENGTH_BYTES = 4
GOSSIP_BATCH_BYTES = 256 * 1024
"""A batch frame's target size: large enough that per-frame costs vanish, small enough that a consensus
frame queued behind it waits well under a millisecond on loopback."""


def encode_batch(txs: list[bytes]) -> bytes:
    return b"".join(len(raw).to_bytes(LENGTH_BYTES, "big") + raw for raw in txs)


def split_batch(frame: bytes, max_tx_bytes: int) -> list[bytes]:
    """The transactions of a gossip frame; :class:`DecodeError` if its lengths do not tile it exactly."""
    txs, at, end = [], 0, len(frame)
    while at < end:
        if end - at < LENGTH_BYTES:
            raise DecodeError(f"gossip frame ends inside a length, at byte {at}")
        size = int.from_bytes(frame[at:at + LENGTH_BYTES], "big")
        at += LENGTH_BYTES
        if size == 0 or size > max_tx_bytes or at + size > end:
            raise DecodeError(f"gossip frame names a {size}-byte transaction at byte {at} of {end}")
        txs.append(frame[at:at + size])
        at += size
    return txs


class GossipBatcher:
    """``add`` an admitted transaction; ``schedule`` (the loop's ``call_soon``) runs the flush once per turn."""

    def __init__(self, broadcast: Callable[[bytes], None], schedule: Callable[[Callable[[], None]], object],
                 max_bytes: int = GOSSIP_BATCH_BYTES) -> None:
        self._broadcast = broadcast
        self._schedule = schedule
        self._max_bytes = max_bytes
        self._pending: list[bytes] = []
        self._size = 0
        self._scheduled = False

    def add(self, raw: bytes) -> None:
        framed = LENGTH_BYTES + len(raw)
        if self._pending and self._size + framed > self._max_bytes:
            self.flush()  # a transaction bigger than a batch still travels, alone
        self._pending.append(raw)
        self._size += framed
        if not self._scheduled:
            self._scheduled = True
            self._schedule(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._pending:
            frame, self._pending, self._size = encode_batch(self._pending), [], 0
            self._broadcast(frame)


def admit_batch(frame: bytes, admit: Callable[[bytes], object], max_tx_bytes: int,
                report: Callable[[str], None]) -> int:
    """Admit each transaction of a peer's gossip frame on its own; returns how many were admitted.

    Already known, a used nonce, a full mempool: normal in gossip, dropped
    quietly. A bad signature is not: an honest validator only relays what its
    own admission verified, so it is ``report``-ed, and only that transaction
    is lost. A frame that does not split raises :class:`DecodeError`.
    """
    admitted = 0
    for raw in split_batch(frame, max_tx_bytes):
        try:
            admit(raw)
        except BadSignature:
            report("gossiped a transaction with a bad signature")
            continue
        except FbciError:
            continue
        admitted += 1
    return admitted
