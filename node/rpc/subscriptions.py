"""Fan-out of node events to websocket subscribers, with bounded queues.

The node calls :meth:`EventHub.publish` from its event loop when a block is
committed or an alert recorded; ``publish`` never awaits, so a subscriber that
stops reading can never slow the node or the other subscribers. Each
subscription holds at most ``max_pending`` undelivered events; one more and the
subscription is dropped and its ``on_overflow`` callback fires, which the
websocket layer uses to cut the slow client off (a client that cannot keep up
would otherwise see a silently gapped stream).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Callable
from core.errors import InvalidInput, LimitExceeded

TOPICS: frozenset[str] = frozenset({"new_block", "new_alert"})


class Subscription:
    """An async iterator of one topic's events; ends when closed, raises ``LimitExceeded`` after overflow."""

    def __init__(self, hub: EventHub, topic: str, max_pending: int,
                 on_overflow: Callable[[Subscription], None] | None) -> None:
        self.id = secrets.token_hex(8)
        self.topic = topic
        self._hub = hub
        self._max_pending = max_pending
        self._on_overflow = on_overflow
        self._pending: deque[object] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self.overflowed = False

    def offer(self, event: object) -> None:
        if self._closed:
            return
        if len(self._pending) >= self._max_pending:
            self.overflowed = True
            self._pending.clear()
            self.close()
            if self._on_overflow is not None:
                self._on_overflow(self)
            return
        self._pending.append(event)
        self._wakeup.set()

    def close(self) -> None:
        """Stop receiving; an iterator waiting on this subscription finishes."""
        if not self._closed:
            self._closed = True
            self._hub.discard(self)
            self._wakeup.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> object:
        while not self._pending:
            if self.overflowed:
                raise LimitExceeded(f"subscriber fell more than {self._max_pending} events behind")
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._pending.popleft()


class EventHub:
    """Topic -> live subscriptions. Single event loop; not thread-safe (publish from the loop)."""

    def __init__(self) -> None:
        self._subs: dict[str, dict[str, Subscription]] = {topic: {} for topic in TOPICS}

    def subscribe(self, topic: str, *, max_pending: int = 256,
                  on_overflow: Callable[[Subscription], None] | None = None) -> Subscription:
        if topic not in self._subs:
            raise InvalidInput(f"unknown topic {topic!r}; topics are {sorted(TOPICS)}", data={"param": "topic"})
        sub = Subscription(self, topic, max_pending, on_overflow)
        self._subs[topic][sub.id] = sub
        return sub

    def publish(self, topic: str, event: object) -> None:
        """Queue ``event`` for every subscriber of ``topic``; drops the ones that are full."""
        for sub in list(self._subs[topic].values()):
            sub.offer(event)

    def discard(self, sub: Subscription) -> None:
        self._subs[sub.topic].pop(sub.id, None)

    def subscriber_count(self, topic: str) -> int:
        return len(self._subs[topic])
