"""A small TCP proxy that injects network faults between two validators.

The fault tests (CometBFT's e2e "disconnect" perturbation, Jepsen's
partitions) need to cut one link and heal it while real processes run. Each
validator's outbound peer address can point at one ``FaultProxy`` per link,
and the test drives it:

- ``cut()`` resets every connection through the link and refuses new ones, as
  a failed link does (peers see the error at once and start redialling);
- ``blackhole()`` keeps connections open but silently drops their bytes, as a
  partition does (peers only notice through heartbeats);
- ``heal()`` forwards again; connections that lost bytes in a blackhole are
  closed, since their streams can no longer be trusted;
- ``delay(ms, jitter_ms)`` adds latency to every chunk in both directions,
  ``jitter_ms`` of it random, keeping order;
- ``loss(rate)`` emulates packet loss the way a TCP stream experiences it: a
  lost segment is retransmitted after a timeout, so a chunk that would have
  lost one of its packets arrives ``retransmit_ms`` late, and everything
  behind it waits too (head-of-line blocking). Bytes are never dropped from a
  stream that stays open: TCP would not deliver a stream with holes.

Streams only: the proxy never parses what it forwards.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, TypeVar

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
SEGMENT = 1448
"""Payload bytes per TCP segment on a 1500-byte Ethernet MTU: the unit a loss rate applies to."""
RETRANSMIT_MS = 200.0
"""Linux's minimum retransmission timeout: how late a lost segment (and what follows it) arrives."""
T = TypeVar("T")


class LinkState(Enum):
    UP = "up"
    CUT = "cut"
    BLACKHOLE = "blackhole"


@dataclass
class ProxyStats:
    accepted: int = 0
    refused: int = 0
    active: int = 0
    bytes_forwarded: int = 0
    bytes_dropped: int = 0


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class FaultProxy:
    """Forwards ``listen`` to ``target`` until told otherwise; ``address`` is where it listens."""

    def __init__(self, listen: str, target: str, *, seed: int | None = None) -> None:
        self._listen = listen
        self.target = target
        self.state = LinkState.UP
        self._delay = 0.0
        self._jitter = 0.0
        self._loss = 0.0
        self._retransmit = RETRANSMIT_MS / 1000.0
        self._random = random.Random(seed)
        self._stats = ProxyStats()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._tainted: set[asyncio.Task[None]] = set()
        self.address = ""

    @property
    def stats(self) -> ProxyStats:
        return replace(self._stats, active=len(self._links))

    async def start(self) -> None:
        host, port = _split(self._listen)
        self._server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
        bound = self._server.sockets[0].getsockname()
        self.address = f"{bound[0]}:{bound[1]}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset_all()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def cut(self) -> None:
        self.state = LinkState.CUT
        await self._reset_all()

    def blackhole(self) -> None:
        self.state = LinkState.BLACKHOLE
        self._tainted |= self._links

    async def heal(self) -> None:
        self.state = LinkState.UP
        tainted, self._tainted = self._tainted, set()
        await self._cancel(tainted)

    def delay(self, ms: float, jitter_ms: float = 0.0) -> None:
        """Hold every chunk ``ms`` plus up to ``jitter_ms`` milliseconds (uniform) before forwarding it.

        Order is kept, as on a TCP stream: a chunk never overtakes an earlier
        one, so jitter delays whatever queues behind a late chunk. 0 turns it off."""
        if ms < 0 or jitter_ms < 0:
            raise ValueError("delay and jitter must be >= 0 ms")
        self._delay = ms / 1000.0
        self._jitter = jitter_ms / 1000.0

    def loss(self, rate: float, retransmit_ms: float = RETRANSMIT_MS) -> None:
        """Lose each TCP segment with probability ``rate``: a chunk with a lost segment comes ``retransmit_ms`` late."""
        if not 0.0 <= rate < 1.0:
            raise ValueError("loss rate must be in [0, 1)")
        self._loss = rate
        self._retransmit = retransmit_ms / 1000.0

    def _due(self, now: float, size: int, previous: float) -> float:
        """When a chunk of ``size`` bytes that arrived at ``now`` may leave, never before the one ahead of it."""
        due = now + self._delay
        if self._jitter:
            due += self._random.uniform(0.0, self._jitter)
        if self._loss:
            delivered = (1.0 - self._loss) ** math.ceil(size / SEGMENT)  # every segment of the chunk got through
            if self._random.random() >= delivered:
                due += self._retransmit
        return max(due, previous)

    async def _reset_all(self) -> None:
        await self._cancel(set(self._links))

    @staticmethod
    async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.state is LinkState.CUT:
            self._stats.refused += 1
            writer.transport.abort()
            return
        self._stats.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        if self.state is LinkState.BLACKHOLE:
            self._tainted.add(task)
        try:
            await self._link(reader, writer)
            writer.close()  # flushes what is buffered, then closes
        except asyncio.CancelledError:
            writer.transport.abort()  # cut, heal after a blackhole, or stop: a hard reset
        finally:
            self._links.discard(task)
            self._tainted.discard(task)

    async def _link(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.state is LinkState.BLACKHOLE:
            while data := await client_reader.read(_CHUNK):  # no upstream while partitioned
                self._stats.bytes_dropped += len(data)
            return
        host, port = _split(self.target)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            log.debug("proxy %s -> %s: %r", self.address, self.target, exc)
            return
        pumps = [asyncio.create_task(self._pump(client_reader, up_writer)),
                 asyncio.create_task(self._pump(up_reader, client_writer))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            up_writer.close()
        except asyncio.CancelledError:
            up_writer.transport.abort()
            raise
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction until EOF; chunks wait out the delay in order, or vanish in a blackhole."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.create_task(self._send_due(queue, writer))
        loop = asyncio.get_running_loop()
        last_due = 0.0
        try:
            while data := await reader.read(_CHUNK):
                if self.state is LinkState.BLACKHOLE:
                    self._stats.bytes_dropped += len(data)
                else:
                    last_due = self._due(loop.time(), len(data), last_due)
                    queue.put_nowait((last_due, data))
            queue.put_nowait(None)
            await sender  # forward what is still delayed before this direction ends
        except ConnectionError:
            pass
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_due(self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while (item := await queue.get()) is not None:
            due, data = item
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)  # the injected latency itself
            if self.state is LinkState.BLACKHOLE:
                self._stats.bytes_dropped += len(data)
                continue
            writer.write(data)
            await writer.drain()
            self._stats.bytes_forwarded += len(data)


class ProxyMesh:
    """One FaultProxy per directed link of a testnet, on an event loop of its own thread.

    The thread lets synchronous callers (the ``fbci testnet`` command, pytest
    fixtures driving real processes) cut and heal links while the proxies keep
    forwarding in the background. Links are named ``(dialer, peer)``.
    Proxies listen on ``listen_host``: loopback for a testnet on one host, the
    bridge's address for validators in their own network namespaces.
    """

    def __init__(self, listen_host: str = "127.0.0.1") -> None:
        self.listen_host = listen_host
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy-mesh", daemon=True)
        self._thread.start()
        self.links: dict[tuple[str, str], FaultProxy] = {}

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        async def wrapped() -> T:
            return await make()
        return asyncio.run_coroutine_threadsafe(wrapped(), self._loop).result(timeout=30)

    def add(self, dialer: str, peer: str, target: str, listen: str | None = None) -> str:
        """Start a proxy for the link ``dialer -> peer``; returns the address the dialer should use."""
        proxy = FaultProxy(listen or f"{self.listen_host}:0", target, seed=len(self.links))
        self._call(proxy.start)
        self.links[(dialer, peer)] = proxy
        return proxy.address

    def _touching(self, name: str | None) -> list[FaultProxy]:
        return [p for (a, b), p in self.links.items() if name is None or name in (a, b)]

    def isolate(self, name: str) -> None:
        """Cut every link to and from ``name``: its connections reset, new ones are refused."""
        for proxy in self._touching(name):
            self._call(proxy.cut)

    def partition(self, name: str) -> None:
        """Blackhole every link of ``name``: connections stay up but carry nothing."""
        for proxy in self._touching(name):
            self._call(lambda p=proxy: _now(p.blackhole))

    def split(self, *groups: set[str]) -> None:
        """Cut every link between two different groups; links inside a group stay up."""
        def group(name: str) -> int:
            return next((k for k, members in enumerate(groups) if name in members), -1)

        for (a, b), proxy in self.links.items():
            if group(a) != group(b):
                self._call(proxy.cut)

    def heal(self, name: str | None = None) -> None:
        """Heal the links of ``name`` (all links when None)."""
        for proxy in self._touching(name):
            self._call(proxy.heal)

    def delay(self, name: str | None, ms: float, jitter_ms: float = 0.0) -> None:
        """One-way latency on the links of ``name`` (all when None): each link carries both directions."""
        for proxy in self._touching(name):
            self._call(lambda p=proxy: _now(p.delay, ms, jitter_ms))

    def loss(self, name: str | None, rate: float, retransmit_ms: float = RETRANSMIT_MS) -> None:
        for proxy in self._touching(name):
            self._call(lambda p=proxy: _now(p.loss, rate, retransmit_ms))

    def close(self) -> None:
        for proxy in self.links.values():
            self._call(proxy.stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


async def _now(fn: Callable[..., None], *args: Any) -> None:
    """Run a plain proxy method on the mesh's loop thread, where the proxy lives."""
    fn(*args)
