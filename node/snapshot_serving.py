"""Serving snapshot chunks to joining peers without stalling this validator's own consensus.

Cutting a chunk walks the trie in pure Python (tens of milliseconds for
``node.snapshots.CHUNK_KEYS`` keys). Done inline on the event loop, one peer
asking fast enough would delay every consensus message this validator sends;
so chunks are cut on a :class:`node.service.ReadWorker`, whose rest after each
job caps the interpreter share cutting can take, and a peer gets only a few
requests in the worker at once. Past that cap a request is refused on the spot
and counted: an honest joiner keeps ``node.statesync.Timing.per_peer`` (2)
requests out per peer, so it never meets the cap, and a peer that floods gets
its excess dropped, not queued. The joiner's side needs nothing new: a request
that is never answered times out and is asked of another peer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor

from core.snapshot import ChunkReply, ChunkRequest

log = logging.getLogger(__name__)

PER_PEER = 4
"""Requests of one peer in the worker at once: twice what an honest joiner keeps out."""
TOTAL = 8
"""Requests of all peers in the worker at once, so several joiners still cannot build a backlog."""


class ChunkServer:
    """Cuts the chunks peers ask for on ``worker`` and sends each reply when it is cut."""

    def __init__(self, cut: Callable[[ChunkRequest], ChunkReply], send: Callable[[bytes, bytes], bool],
                 worker: Executor, *, per_peer: int = PER_PEER, total: int = TOTAL,
                 on_refused: Callable[[bytes], None] = lambda _peer: None) -> None:
        self.cut = cut
        self.send = send
        self.worker = worker
        self.per_peer = per_peer
        self.total = total
        self.on_refused = on_refused
        self._busy: dict[bytes, int] = {}

    @property
    def in_flight(self) -> int:
        return sum(self._busy.values())

    def request(self, peer: bytes, request: ChunkRequest) -> bool:
        """Start cutting ``request`` for ``peer`` (True), or refuse it over a cap (False). Runs on the loop."""
        if self._busy.get(peer, 0) >= self.per_peer or self.in_flight >= self.total:
            log.info("state sync: refused a chunk request from %s (%d of its requests are being cut)",
                     peer.hex()[:12], self._busy.get(peer, 0))
            self.on_refused(peer)
            return False
        self._busy[peer] = self._busy.get(peer, 0) + 1
        future = asyncio.get_running_loop().run_in_executor(self.worker, self.cut, request)
        future.add_done_callback(lambda done: self._finished(peer, request, done))
        return True

    def _finished(self, peer: bytes, request: ChunkRequest, done: asyncio.Future[ChunkReply]) -> None:
        left = self._busy[peer] - 1
        if left:
            self._busy[peer] = left
        else:
            del self._busy[peer]
        if done.cancelled():  # the worker shut down with the node
            return
        error = done.exception()
        if error is not None:  # a bug in cutting: the peer's request times out, the node keeps running
            log.error("state sync: cutting the chunk of height %d from %s failed", request.height,
                      request.start.hex(), exc_info=error)
            return
        self.send(peer, done.result().encode())
