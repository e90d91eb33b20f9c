"""Per-peer outgoing queues: one FIFO per channel, bounded in bytes and frames, drained by priority.

A peer's writer always takes CONSENSUS before SYNC before GOSSIP before BLOB, so a flood of
gossip can only delay consensus by the one frame already being written; and
each channel has its own budget, so gossip can never use up the room consensus
needs. ``push`` never waits: when a channel's budget is spent the new message
is dropped and counted (frames and bytes), which is how a slow or stopped peer
is kept from holding memory or stalling the caller (BFT consensus retransmits
what matters, block sync fetches the rest).

Budgets are in bytes because frames differ by five orders of magnitude (a
vote is ~200 bytes, a proposal carries a whole block): a frame count alone
once let one stopped peer pin over a gigabyte. An empty channel still takes
one frame of any size the transport allows, so a proposal larger than the
budget reaches an idle peer; a channel therefore holds at most
``max(max_bytes, one frame)``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum


class Channel(IntEnum):
    """Traffic classes sharing one connection; a lower value is sent first."""

    CONSENSUS = 0
    SYNC = 1
    GOSSIP = 2
    BLOB = 3
    """Blob chunks between validators (``node.blobs``): last, so a bulk transfer never delays a block."""


@dataclass(frozen=True)
class QueueLimit:
    """What one channel of one peer's queue may hold: payload bytes, and frames (bounding per-frame overhead)."""

    max_bytes: int
    max_frames: int

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_frames < 1:
            raise ValueError(f"queue limits must be >= 1; got {self}")


@dataclass
class PeerStats:
    """Counters for one peer, exported to Prometheus by the node."""

    sent: int = 0
    received: int = 0
    dropped: int = 0
    """Frames refused because their channel's budget was spent."""
    dropped_bytes: int = 0
    queued_bytes: int = 0
    """Payload bytes waiting for this peer now, all channels together."""
    reconnects: int = 0
    malformed: int = 0
    connected: bool = False


class PeerQueues:
    """Bounded per-channel queues with a wake-up event for the single writer."""

    def __init__(self, limits: Mapping[Channel, QueueLimit], stats: PeerStats) -> None:
        missing = [c.name for c in Channel if c not in limits]
        if missing:
            raise ValueError(f"queue limits are needed for every channel; missing: {missing}")
        self._limits = dict(limits)
        self._queues: dict[Channel, deque[bytes]] = {c: deque() for c in Channel}
        self._bytes = dict.fromkeys(Channel, 0)
        self._stats = stats
        self.ready = asyncio.Event()

    def push(self, channel: Channel, payload: bytes) -> bool:
        queue, limit, size = self._queues[channel], self._limits[channel], len(payload)
        if queue and (len(queue) >= limit.max_frames or self._bytes[channel] + size > limit.max_bytes):
            self._stats.dropped += 1
            self._stats.dropped_bytes += size
            return False
        queue.append(payload)
        self._bytes[channel] += size
        self._stats.queued_bytes += size
        self.ready.set()
        return True

    def pop(self) -> tuple[Channel, bytes] | None:
        """The oldest message of the highest-priority non-empty channel, or None."""
        for channel in Channel:
            queue = self._queues[channel]
            if queue:
                payload = queue.popleft()
                self._bytes[channel] -= len(payload)
                self._stats.queued_bytes -= len(payload)
                return channel, payload
        self.ready.clear()
        return None

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())
