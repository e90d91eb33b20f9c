"""Per-peer outgoing queues: one bounded FIFO per channel, drained by priority.

A peer's writer always takes CONSENSUS before SYNC before GOSSIP, so a flood of
gossip can only delay consensus by the one frame already being written. Each
queue is bounded and ``push`` never waits: when a queue is full the new
message is dropped and counted, which is how a slow peer is kept from holding
memory or stalling the caller (BFT consensus retransmits what matters).
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


@dataclass
class PeerStats:
    """Counters for one peer, exported to Prometheus by the node."""

    sent: int = 0
    received: int = 0
    dropped: int = 0
    reconnects: int = 0
    malformed: int = 0
    connected: bool = False


class PeerQueues:
    """Bounded per-channel queues with a wake-up event for the single writer."""

    def __init__(self, limits: Mapping[Channel, int], stats: PeerStats) -> None:
        missing = [c.name for c in Channel if limits.get(c, 0) < 1]
        if missing:
            raise ValueError(f"queue limits must be >= 1 for every channel; missing or bad: {missing}")
        self._limits = dict(limits)
        self._queues: dict[Channel, deque[bytes]] = {c: deque() for c in Channel}
        self._stats = stats
        self.ready = asyncio.Event()

    def push(self, channel: Channel, payload: bytes) -> bool:
        queue = self._queues[channel]
        if len(queue) >= self._limits[channel]:
            self._stats.dropped += 1
            return False
        queue.append(payload)
        self.ready.set()
        return True

    def pop(self) -> tuple[Channel, bytes] | None:
        """The oldest message of the highest-priority non-empty channel, or None."""
        for channel in Channel:
            queue = self._queues[channel]
            if queue:
                return channel, queue.popleft()
        self.ready.clear()
        return None

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())
