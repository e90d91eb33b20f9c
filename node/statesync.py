"""State sync: a validator with an empty home restores a peer's snapshot instead of replaying the chain.

CometBFT's state sync is the reference; what differs is what a chunk is
checked against. There, chunks are opaque and the app hash is checked once
the whole snapshot is applied; here every chunk is a key range with the proof
of a complete scan over it (``core.snapshot``), checked against the certified
root as it arrives, so a bad chunk is caught alone and its sender known.

1. Discover: ask every connected peer for its snapshots (``list_snapshots``)
   and take the newest height above this validator's own.
2. Trust: follow the peer's validator-set schedule (it comes with the
   listing) from genesis's set through every change up to S + 1, each on the
   certified block before it, then fetch blocks S and S + 1 with their
   certificates (block sync's ``get_blocks``) and verify them against the
   sets so followed (``node/snapshot_trust.py``); the root to restore is
   block S + 1's ``state_hash``. A peer whose schedule or blocks do not check
   out, or that offered another root for S, is banned.
3. Fetch: the snapshot's ranges go out to the peers that offered it, a few at
   a time each (:class:`ChunkScheduler`). A chunk that does not verify bans
   its sender for the rest of this sync (CometBFT's ``reject_senders``: never
   asked again, logged at warning, counted in ``fbci_state_sync_banned_peers``)
   and its range goes to another peer. With every peer banned or silent
   (after listing the snapshots again, in case the peers dropped the one
   being fetched) the sync fails with ``state_sync_failed`` and nothing is
   restored.
4. Restore: state, block S and its certificate in one batch
   (``node/snapshots.py``), then the node starts as if it had stopped at S:
   block sync fetches S + 1 onwards and consensus begins.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

from core.block import Block
from core.errors import FbciError, StateSyncFailed
from core.snapshot import (
    Chunk, ChunkReply, ChunkRequest, ListSnapshots, RestoredSnapshot, SnapshotInfo, SnapshotList, StateSyncMessage,
    decode_message, verify_chunk,
)
from core import codec
from core.validators import ScheduledSet
from node.application import Application
from node.snapshot_serving import ChunkServer
from node.snapshot_trust import ChainTrust, changes_to_follow, follow_change, verify_snapshot_header

log = logging.getLogger(__name__)

Send = Callable[[bytes, bytes], bool]
PeersNow = Callable[[], list[bytes]]


@dataclass(frozen=True)
class Timing:
    connect_s: float = 10.0
    """How long to wait for the configured peers to connect before asking the ones that did."""
    request_s: float = 10.0
    per_peer: int = 2
    """Chunk requests out to one peer at once."""
    max_timeouts: int = 3
    """A peer silent this many times is asked no more (not banned: it may only be slow)."""
    rounds: int = 3
    """Listings of the peers' snapshots before giving up (see :meth:`StateSync.run`)."""


@dataclass(frozen=True)
class Offer:
    peer: bytes
    snapshot: SnapshotInfo
    schedule: tuple[ScheduledSet, ...]
    """The validator sets the peer says its chain decided (``node/snapshot_trust.py`` checks them)."""


class Bans:
    """The peers this sync no longer asks (``reject_senders``)."""

    def __init__(self, on_ban: Callable[[bytes, str], None]) -> None:
        self.on_ban = on_ban
        self.banned: set[bytes] = set()

    def ban(self, peer: bytes, why: str) -> None:
        if peer in self.banned:
            return
        self.banned.add(peer)
        log.warning("state sync: banned peer %s for the rest of this sync: %s", peer.hex()[:12], why)
        self.on_ban(peer, why)


FetchChunk = Callable[[bytes, ChunkRequest], Awaitable[ChunkReply | None]]


class ChunkScheduler:
    """Every range of one snapshot, fetched from ``peers`` in parallel and verified against ``root``.

    A range comes back whole, short (its rest is queued again, at the front) or bad (its sender is
    banned and the range re-queued for another peer). Pure of I/O: ``fetch`` carries the requests."""

    def __init__(self, height: int, root: bytes, boundaries: tuple[bytes, ...], peers: list[bytes],
                 fetch: FetchChunk, bans: Bans, timing: Timing = Timing()) -> None:
        self.height = height
        self.root = root
        self.fetch = fetch
        self.bans = bans
        self.timing = timing
        self.peers = [p for p in peers if p not in bans.banned]
        limits: list[bytes | None] = [*boundaries[1:], None]
        self.ranges: deque[tuple[bytes, bytes | None]] = deque(zip(boundaries, limits))
        self.items: dict[bytes, bytes] = {}
        self._timeouts = {peer: 0 for peer in self.peers}

    def _free_peer(self, busy: dict[bytes, int]) -> bytes | None:
        usable = [p for p in self.peers if p not in self.bans.banned and self._timeouts[p] < self.timing.max_timeouts
                  and busy.get(p, 0) < self.timing.per_peer]
        return min(usable, key=lambda p: (busy.get(p, 0), self._timeouts[p]), default=None)

    async def run(self) -> dict[bytes, bytes]:
        pending: dict[asyncio.Future[ChunkReply | None], tuple[bytes, tuple[bytes, bytes | None]]] = {}
        try:
            while self.ranges or pending:
                busy: dict[bytes, int] = {}
                for peer, _ in pending.values():
                    busy[peer] = busy.get(peer, 0) + 1
                while self.ranges and (peer := self._free_peer(busy)) is not None:
                    wanted = self.ranges.popleft()
                    pending[asyncio.ensure_future(self.fetch(peer, ChunkRequest(self.height, *wanted)))] = (peer, wanted)
                    busy[peer] = busy.get(peer, 0) + 1
                if not pending:
                    raise StateSyncFailed(
                        f"no peer is left to serve the snapshot of height {self.height} ({len(self.bans.banned)} "
                        f"banned for bad chunks, the others silent); nothing was restored")
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    peer, wanted = pending.pop(future)
                    self._judge(peer, wanted, future.result())
        finally:
            for future in pending:
                future.cancel()
        return self.items

    def _judge(self, peer: bytes, wanted: tuple[bytes, bytes | None], reply: ChunkReply | None) -> None:
        start, limit = wanted
        if reply is None or reply.chunk is None:  # silent, or no longer keeps it: ask someone else
            self._timeouts[peer] = self.timing.max_timeouts if reply is not None else self._timeouts[peer] + 1
            self.ranges.append(wanted)
            return
        try:
            chunk = Chunk.decode(reply.chunk)
            pairs = verify_chunk(chunk, self.root, start, limit)
        except FbciError as exc:
            self.bans.ban(peer, f"a chunk of the snapshot of height {self.height} does not verify: {exc.message}")
            self.ranges.append(wanted)
            return
        self.items.update(pairs)
        if chunk.end != limit:
            assert chunk.end is not None  # verify_chunk: a chunk ends at or before a set limit
            self.ranges.appendleft((chunk.end, limit))


class StateSyncClient:
    """Requests to peers and the replies that answer them, matched by peer and what was asked."""

    def __init__(self, send: Send, timeout_s: float) -> None:
        self.send = send
        self.timeout_s = timeout_s
        self._waiting: dict[tuple[bytes, Any], asyncio.Future[Any]] = {}

    def on_reply(self, sender: bytes, message: StateSyncMessage | list[Any]) -> None:
        if isinstance(message, SnapshotList):
            key: Any = "snapshots"
        elif isinstance(message, ChunkReply):
            key = ("chunk", message.height, message.start, message.limit)
        else:
            key = "blocks"
        future = self._waiting.pop((sender, key), None)
        if future is None or future.done():
            log.debug("state sync: dropping an unrequested reply from %s", sender.hex()[:12])
            return
        future.set_result(message)

    async def _ask(self, peer: bytes, key: Any, payload: bytes) -> Any:
        if (peer, key) in self._waiting:
            return None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[(peer, key)] = future
        try:
            if not self.send(peer, payload):
                return None
            return await asyncio.wait_for(future, self.timeout_s)
        except asyncio.TimeoutError:
            return None
        finally:
            if self._waiting.get((peer, key)) is future:
                del self._waiting[(peer, key)]

    async def snapshots(self, peer: bytes) -> SnapshotList | None:
        return await self._ask(peer, "snapshots", ListSnapshots().encode())

    async def chunk(self, peer: bytes, request: ChunkRequest) -> ChunkReply | None:
        return await self._ask(peer, ("chunk", request.height, request.start, request.limit), request.encode())

    async def blocks(self, peer: bytes, start: int, count: int) -> Any:
        return await self._ask(peer, "blocks", codec.encode(["get_blocks", start, count]))


@dataclass(frozen=True)
class Joined:
    """A restored snapshot, and where block sync goes on: the certified block after it, from the peer that
    served that block (peers' own heights are not trusted as a target: consensus messages lead on)."""

    snapshot: RestoredSnapshot
    target: int
    hint: bytes


class StateSync:
    """One state sync of an empty store: discover, trust a header, fetch, hand back the snapshot."""

    def __init__(self, client: StateSyncClient, trust: ChainTrust, peers: PeersNow, expected_peers: int,
                 bans: Bans, timing: Timing = Timing()) -> None:
        self.client = client
        self.trust = trust
        self.peers = peers
        self.expected_peers = expected_peers
        self.bans = bans
        self.timing = timing

    async def run(self, own_height: int) -> Joined | None:
        """The newest verified snapshot above ``own_height``; None when no peer offers one (the node then
        block-syncs from its own height). Raises :class:`StateSyncFailed` when offers exist but none
        could be fetched and verified.

        A snapshot can be dropped by its peers while it is being fetched (they took the next-but-one),
        so a round that found no usable peer lists the snapshots again, up to ``rounds`` times; a round
        in which every offering peer is banned ends it at once."""
        tried: list[int] = []
        for round_ in range(self.timing.rounds):
            offers = [o for o in await self._discover() if o.peer not in self.bans.banned]
            heights = sorted({o.snapshot.height for o in offers if o.snapshot.height > own_height}, reverse=True)
            if not heights:
                if round_ == 0 and not self.bans.banned:
                    log.info("state sync: no peer offers a snapshot above height %d; block sync from there",
                             own_height)
                    return None
                break
            for height in heights:
                tried.append(height)
                joined = await self._try(height, [o for o in offers if o.snapshot.height == height])
                if joined is not None:
                    return joined
        raise StateSyncFailed(f"no snapshot offered at heights {sorted(set(tried), reverse=True)} could be fetched "
                              f"and verified ({len(self.bans.banned)} peers banned); nothing was restored")

    async def _discover(self) -> list[Offer]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timing.connect_s
        while len(self.peers()) < self.expected_peers and loop.time() < deadline:
            await asyncio.sleep(0.1)  # polling the transport's links: nothing to await on it
        peers = self.peers()
        lists = await asyncio.gather(*(self.client.snapshots(peer) for peer in peers))
        return [Offer(peer, snapshot, listed.schedule) for peer, listed in zip(peers, lists)
                if listed is not None for snapshot in listed.snapshots]

    async def _try(self, height: int, offers: list[Offer]) -> Joined | None:
        trusted = await self._certified(height, offers)
        if trusted is None:
            return None
        server, (block, raw, certificate, root) = trusted
        for offer in offers:
            if offer.snapshot.root != root:
                self.bans.ban(offer.peer, f"offered a root for height {height} that no certificate covers")
        honest = [o for o in offers if o.peer not in self.bans.banned]
        if not honest:
            return None
        log.info("state sync: fetching the snapshot of height %d (%d keys, root %s) from %d peers", height,
                 honest[0].snapshot.keys, root.hex()[:12], len(honest))
        scheduler = ChunkScheduler(height, root, honest[0].snapshot.boundaries, [o.peer for o in honest],
                                   self.client.chunk, self.bans, self.timing)
        try:
            items = await scheduler.run()
        except StateSyncFailed as exc:
            log.warning("state sync: %s", exc.message)
            return None
        return Joined(RestoredSnapshot(height, items, root, block, raw, certificate), height + 1, server)

    async def _certified(self, height: int, offers: list[Offer]
                         ) -> tuple[bytes, tuple[Block, bytes, bytes, bytes]] | None:
        """The first offering peer's blocks ``height`` and ``height + 1``, verified against the validator sets
        of its schedule once each change up to ``height + 1`` is followed from genesis (see
        ``node/snapshot_trust.py``), with that peer."""
        for offer in offers:
            if offer.peer in self.bans.banned:
                continue
            try:
                verified = await self._verified(offer, height)
            except FbciError as exc:
                self.bans.ban(offer.peer, f"the header of snapshot {height} does not verify: {exc.message}")
                continue
            if verified is not None:
                return offer.peer, verified
        return None

    async def _verified(self, offer: Offer, height: int) -> tuple[Block, bytes, bytes, bytes] | None:
        """None when the peer went silent; raises on a schedule or a block that does not check out."""
        trusted = [ScheduledSet(1, self.trust.genesis)]
        for change in changes_to_follow(self.trust, offer.schedule, height + 1):
            payload = await self.client.blocks(offer.peer, change.start - 1, 1)
            if payload is None:
                return None
            follow_change(payload, change, trusted, self.trust)
        payload = await self.client.blocks(offer.peer, height, 2)
        return None if payload is None else verify_snapshot_header(payload, height, trusted, self.trust)


class _Inline(Executor):
    """Runs each job at once on the caller's thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the future's owner, as a thread pool does
            future.set_exception(exc)
        return future


class StateSyncEndpoint:
    """The state-sync half of the SYNC channel for the runtime: answers peers' snapshot requests, and while
    this validator joins, takes the replies (block sync's ``blocks`` too) for its :class:`StateSync`."""

    def __init__(self, app: Application, send: Send, timing: Timing = Timing(), *,
                 chunks: Executor | None = None, on_refused: Callable[[bytes], None] = lambda _peer: None) -> None:
        """``chunks`` cuts the chunks peers ask for (``node/snapshot_serving.py``); a runtime passes a
        :class:`node.service.ReadWorker`, and without one (in-process tests) they are cut inline."""
        self.app = app
        self.send = send
        self.timing = timing
        self.client: StateSyncClient | None = None
        self.chunks = ChunkServer(app.snapshot_chunk, send, chunks or _Inline(), on_refused=on_refused)

    @property
    def joining(self) -> bool:
        return self.client is not None

    def handle(self, sender: bytes, message: Any) -> bool:
        """Whether ``message`` was state sync's (or a reply a join is waiting for); raises
        :class:`core.errors.BadStateSyncMessage` for a malformed one."""
        parsed = decode_message(message)
        if isinstance(parsed, ListSnapshots):
            self.send(sender, self.app.list_snapshots().encode())
        elif isinstance(parsed, ChunkRequest):
            self.chunks.request(sender, parsed)
        elif parsed is not None or (self.client is not None and isinstance(message, list) and message
                                    and message[0] == "blocks"):
            if self.client is not None:
                self.client.on_reply(sender, parsed if parsed is not None else message)
        else:
            return False
        return True

    async def join(self, trust: ChainTrust, peers: PeersNow, expected_peers: int,
                   on_ban: Callable[[bytes, str], None]) -> Joined | None:
        """Restore the newest verified snapshot into the application (None: none offered)."""
        self.client = StateSyncClient(self.send, self.timing.request_s)
        try:
            joined = await StateSync(self.client, trust, peers, expected_peers, Bans(on_ban), self.timing).run(
                self.app.info().height)
        finally:
            self.client = None
        if joined is not None:
            self.app.restore_snapshot(joined.snapshot)
        return joined
