"""Moving blobs between validators: announce what is held, pull what is missing, attest what is complete.

A validator that completes a blob (from a client's ``blob_put`` or a peer)
announces it with ``have`` and attests it on chain (``blob.attest``). A peer
that lacks an announced blob pulls its chunks from every validator known to
hold it, ``in_flight`` requests at a time spread over those sources, and
checks each chunk against the ref before it is written. A chunk that does not
verify is the sender's misbehaviour (counted, logged at warning) and that
chunk is asked of another source; a source that times out or answers
``missing`` is skipped for that chunk the same way. Announcements repeat every
``announce_interval_s`` to every validator that has not attested the blob on
chain, so a validator that was down or restarted mid-transfer catches up
without anyone noticing it was gone; its own pull resumes from the chunks its
store kept.

Nothing here blocks a peer's reader: a ``get`` is answered from a task (the
disk read runs on the blob executor), a ``chunk`` only resolves the request
waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.block import Block
from core.blobs import BlobRef, attestations, available_at, needs, refs_in
from core.errors import BadBlobMessage, BadChunk, BlobMismatch, FbciError, StorageError
from core.state import StateView
from core.tx import Transaction
from node.blobs import messages
from node.blobs.messages import Chunk, Get, Have, Missing
from node.blobs.store import BlobStore

log = logging.getLogger(__name__)
T = TypeVar("T")
Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


@dataclass
class BlobCounters:
    """What the metrics export (``node.blobs.metrics``)."""

    chunks_in: dict[str, int] = field(default_factory=lambda: {"client": 0, "peer": 0})
    chunks_out: dict[str, int] = field(default_factory=lambda: {"client": 0, "peer": 0})
    bad_chunks: dict[str, int] = field(default_factory=lambda: {"client": 0, "peer": 0})
    completed: int = 0


@dataclass(frozen=True)
class ReplicationTuning:
    in_flight: int = 4
    """Chunk requests outstanding per blob (each is one CHUNK_BYTES frame)."""
    request_timeout_s: float = 15.0
    announce_interval_s: float = 5.0
    """How often complete blobs are announced to the validators that have not attested them (and, if this one
    has not either, attested again)."""
    attest_retry_s: float = 20.0
    max_serving: int = 4
    """Chunk answers being read from disk at once; the rest wait their turn."""
    max_waiting: int = 64
    """``get``s waiting to be answered, from all peers; past that they are dropped (the asker retries elsewhere)."""
    per_source: int = 6
    """Chunk requests outstanding to one peer, over all the blobs being pulled: 12 MiB of answers, within the
    BLOB channel's 16 MiB queue at the sender, so its answers are not dropped there."""


class Replicator:
    def __init__(self, store: BlobStore, me: bytes, *, send: Callable[[bytes, bytes], bool],
                 peers: Callable[[], list[bytes]], attest: Callable[[BlobRef], None],
                 state: Callable[[], StateView], height: Callable[[], int],
                 on_misbehaviour: Callable[[bytes, str], None], io: Executor, spawn: Spawn,
                 tuning: ReplicationTuning = ReplicationTuning(), counters: BlobCounters | None = None) -> None:
        self.store = store
        self.me = me
        self.send = send
        self.peers = peers
        self.attest = attest
        self.state = state
        self.height = height
        self.on_misbehaviour = on_misbehaviour
        self.io = io
        self.spawn = spawn
        self.tuning = tuning
        self.counters = counters or BlobCounters()
        self._sources: dict[bytes, set[bytes]] = {}
        self._new_source: dict[bytes, asyncio.Event] = {}
        self._pulls: dict[bytes, asyncio.Task[None]] = {}
        self._waiting: dict[tuple[bytes, int, bytes], asyncio.Future[Chunk | Missing]] = {}
        self._attested_at: dict[bytes, float] = {}
        self._waiting_gets = 0
        self._serve_gate = asyncio.Semaphore(tuning.max_serving)
        self._source_gates: dict[bytes, asyncio.Semaphore] = {}

    async def _run_io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    # -- this node completed a blob ------------------------------------------------------------

    def completed(self, ref: BlobRef) -> None:
        """Announce and attest a blob that just became complete here."""
        self.counters.completed += 1
        self._announce(ref)

    def _announce(self, ref: BlobRef, *, only_unattested: bool = False) -> None:
        """``have`` to the connected peers (with ``only_unattested``, those that have not attested this ref on
        chain: a validator that was down when the blob went round still learns of it); and this validator's
        own attestation, unless the chain has it or one was sent within ``attest_retry_s``."""
        attested = {a.validator for a in attestations(self.state(), ref.sha256) if a.ref == ref}
        payload = messages.encode(Have(ref=ref))
        for peer in self.peers():
            if not (only_unattested and peer in attested):
                self.send(peer, payload)
        last = self._attested_at.get(ref.sha256)
        if self.me not in attested and (last is None or time.monotonic() - last > self.tuning.attest_retry_s):
            self._attested_at[ref.sha256] = time.monotonic()
            self.attest(ref)

    async def announce_loop(self) -> None:
        """Keep announcing each complete blob to the validators that have not attested it."""
        while True:
            await asyncio.sleep(self.tuning.announce_interval_s)
            for ref in await self._run_io(self.store.complete_refs):
                self._announce(ref, only_unattested=True)

    # -- peers' messages -----------------------------------------------------------------------

    def on_message(self, sender: bytes, payload: bytes) -> None:
        """Handle one BLOB-channel message; a malformed one is the sender's misbehaviour."""
        try:
            message = messages.decode(payload)
        except BadBlobMessage as exc:
            log.warning("peer %s: %s", sender.hex()[:16], exc.message)
            self.on_misbehaviour(sender, f"blob: {exc.reason}")
            return
        if isinstance(message, Have):
            self._learned_source(message.ref, sender)
        elif isinstance(message, Get):
            self._serve(sender, message)
        else:
            future = self._waiting.pop((message.ref.sha256, message.index, sender), None)
            if future is not None and not future.done():
                future.set_result(message)

    def _learned_source(self, ref: BlobRef, sender: bytes) -> None:
        if ref.size > self.store.max_blob_bytes or self.store.has(ref):
            return
        self._sources.setdefault(ref.sha256, set()).add(sender)
        self._new_source.setdefault(ref.sha256, asyncio.Event()).set()
        self._start_pull(ref)

    def _start_pull(self, ref: BlobRef) -> asyncio.Task[None]:
        task = self._pulls.get(ref.sha256)
        if task is None or task.done():
            task = self._pulls[ref.sha256] = self.spawn(self._pull(ref), f"blob-pull-{ref.sha256.hex()[:8]}")
        return task

    def _serve(self, sender: bytes, message: Get) -> None:
        if self._waiting_gets >= self.tuning.max_waiting:
            return
        self._waiting_gets += 1
        self.spawn(self._answer(sender, message), "blob-serve")

    async def _answer(self, sender: bytes, message: Get) -> None:
        try:
            async with self._serve_gate:
                answer = await self._run_io(self.store.get_chunk, message.ref, message.index)
        except FbciError as exc:
            if isinstance(exc, StorageError):  # this validator's own disk: the node's problem, not the asker's
                raise
            self.send(sender, messages.encode(Missing(ref=message.ref, index=message.index)))
        else:
            self.counters.chunks_out["peer"] += 1
            self.send(sender, messages.encode(Chunk(ref=message.ref, index=message.index, chunk=answer.chunk,
                                                    proof=answer.proof)))
        finally:
            self._waiting_gets -= 1

    # -- pulling -------------------------------------------------------------------------------

    async def fetch(self, ref: BlobRef, sources: Iterable[bytes]) -> None:
        """Return once this node holds ``ref`` complete, pulling it from ``sources`` (and any other
        validator that announces it meanwhile)."""
        if self.store.has(ref):
            return
        self._sources.setdefault(ref.sha256, set()).update(s for s in sources if s != self.me)
        self._new_source.setdefault(ref.sha256, asyncio.Event()).set()
        while not self.store.has(ref):
            await asyncio.shield(self._start_pull(ref))

    async def _pull(self, ref: BlobRef) -> None:
        sha = ref.sha256
        refused: dict[int, set[bytes]] = {}
        gate = asyncio.Semaphore(self.tuning.in_flight)
        backoff = 0.0
        while not self.store.has(ref):
            await asyncio.sleep(backoff)  # a back-off after a pass that got nothing, not a synchronisation
            connected = set(self.peers())
            sources = sorted(self._sources.get(sha, set()) & connected)
            if not sources:
                event = self._new_source.setdefault(sha, asyncio.Event())
                event.clear()
                try:
                    await asyncio.wait_for(event.wait(), self.tuning.request_timeout_s)
                except TimeoutError:
                    log.info("blob %s: no connected validator holds it; the pull stops until one announces it",
                             sha.hex()[:16])
                    return
                continue
            held = set(await self._run_io(self.store.held_chunks, ref))
            missing = [i for i in range(ref.chunks) if i not in held]
            if backoff == 0.0:
                log.info("blob %s: pulling %d of %d chunks from %d validators", sha.hex()[:16], len(missing),
                         ref.chunks, len(sources))
            try:
                await asyncio.gather(*(self._fetch_chunk(ref, i, sources, refused, gate) for i in missing))
            except BlobMismatch as exc:
                log.warning("blob %s: %s", sha.hex()[:16], exc.message)
                return
            progressed = len(await self._run_io(self.store.held_chunks, ref)) > len(held)
            backoff = 0.0 if progressed else min(2 * backoff or 0.1, 5.0)

    async def _fetch_chunk(self, ref: BlobRef, index: int, sources: list[bytes], refused: dict[int, set[bytes]],
                           gate: asyncio.Semaphore) -> None:
        tried = refused.setdefault(index, set())
        candidates = [s for s in sources if s not in tried]
        if not candidates:  # every source failed this chunk once: give them all another chance next pass
            tried.clear()
            return
        source = candidates[index % len(candidates)]
        per_source = self._source_gates.setdefault(source, asyncio.Semaphore(self.tuning.per_source))
        async with gate, per_source:
            if self.store.has(ref):
                return
            key = (ref.sha256, index, source)
            future: asyncio.Future[Chunk | Missing] = asyncio.get_running_loop().create_future()
            self._waiting[key] = future
            try:
                if not self.send(source, messages.encode(Get(ref=ref, index=index))):
                    tried.add(source)
                    return
                answer = await asyncio.wait_for(future, self.tuning.request_timeout_s)
            except TimeoutError:
                tried.add(source)
                return
            finally:
                self._waiting.pop(key, None)
            if isinstance(answer, Missing) or answer.ref != ref:
                tried.add(source)
                return
            try:
                complete = await self._run_io(self.store.put_chunk, ref, index, answer.chunk, answer.proof)
            except BadChunk as exc:
                tried.add(source)
                self.counters.bad_chunks["peer"] += 1
                log.warning("blob %s: peer %s sent a bad chunk %d: %s", ref.sha256.hex()[:16], source.hex()[:16],
                            index, exc.message)
                self.on_misbehaviour(source, "blob: bad_chunk")
                return
            self.counters.chunks_in["peer"] += 1
            if complete:
                self.completed(ref)

    # -- fetch before execute ------------------------------------------------------------------

    async def ensure_needed(self, block: Block) -> None:
        """Before ``block`` executes: hold every blob available to it that an open round needs or one of its
        transactions names (a round may take an update and close in the same block).

        At least f + 1 of the quorum that attested it are honest and serve it, so this returns on an honest
        validator; it waits (logging) rather than execute a block whose result it could not compute."""
        state, height = self.state(), block.height
        wanted = {need.ref.sha256 for need in needs(state)}
        for raw in block.txs:
            try:
                wanted.update(ref.sha256 for ref in refs_in(Transaction.decode(raw, max_size=len(raw)).payload))
            except FbciError:
                continue  # execution refuses it; it names no blob
        for sha in sorted(wanted):
            ref = available_at(state, sha, height)
            if ref is None or self.store.has(ref):
                continue
            holders = [a.validator for a in attestations(state, ref.sha256) if a.ref == ref]
            log.info("block %d needs blob %s, which this validator lacks: fetching it from %d attesters",
                     height, ref.sha256.hex()[:16], len(holders))
            await self.fetch(ref, holders)
