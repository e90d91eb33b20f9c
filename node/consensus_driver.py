"""The short, boring loop around the pure consensus replica.

It turns the world into replica events (peer messages, timer firings,
proposals, validation answers, sync progress) and carries out the replica's
actions strictly in the order returned. The one ordering rule that makes
crash safety work lives here: a ``Persist`` is appended to the write-ahead
log and fsynced before any later ``Send``/``Broadcast`` in the same list
leaves the process. Everything is processed on one asyncio task, so the
replica is never stepped concurrently.

No fsync runs on the event loop: WAL appends and compactions, and the sync
that makes a committed block durable, are jobs of one ordered
:class:`node.diskwriter.DiskWriter` thread. The loop goes on serving peers
and RPC calls while a job runs; this task waits for every job submitted so
far to be durable before it sends any message (so a vote, and anything that
carries it, is on disk first), and a committed block's observers (the RPC
waiters, subscriptions, the mempool) hear of it only once it is durable.
Consensus steps *can* run ahead of the disk (stepping is memory only); what
leaves the process cannot.

It reaches the application only through its :class:`node.ledger.Ledger`: the
:class:`node.application.Application` boundary (build and check proposals)
and the block executor (commit). A proposed block is decoded once, when it
is validated; the commit of that block reuses the decoded form.

Its two tasks (the replica loop and the proposer) are started through the
``spawn`` it is given: the runtime's supervisor, under which any exception
that escapes them (a full disk at a WAL append, a bug) stops the process
instead of leaving a validator that answers ``status`` but never commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from consensus import (
    Action, BlockExecuted, BlockValidated, Broadcast, CancelTimer, CommitBlock, CommitCertificate, CommitProof, Event, Evidence,
    Message, MessageReceived, NeedSync, Persist, ProposalReady, Replica, ReportEvidence, RequestProposal, Send,
    SetTimer, SyncedTo, TimerFired, ValidateBlock, WalRecord, decode_message, encode_message,
)
from core.block import Block
from core.errors import FbciError
from genesis.schema import ChainParams
from node.diskwriter import DiskWriter
from node.ledger import Ledger
from node.transport import Channel
from node.wal import WriteAheadLog

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]
"""Starts a named long-lived task; the runtime passes its supervisor's (``node/runtime.py``)."""


def unsupervised(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """A plain task, for tests and tools that drive one part alone: a failure only ends the task."""
    return asyncio.create_task(coro, name=name)


class Outbox(Protocol):
    """Where consensus messages go: the peer transport (with no peers, a lone validator's sends go nowhere)."""

    def send(self, peer: bytes, channel: Channel, payload: bytes, *, missing_ok: bool = False) -> bool:
        """``missing_ok``: a peer the validator set dropped is skipped, not an error."""
        ...

    def broadcast(self, channel: Channel, payload: bytes) -> None: ...


@dataclass(frozen=True)
class ProposalTiming:
    """Propose as soon as there is work: wait ``batch_ms`` after the first pending
    transaction (so a burst lands in one block), or ``empty_block_ms`` with none."""

    batch_ms: int
    empty_block_ms: int
    tick_ms: int

    @classmethod
    def from_params(cls, p: ChainParams) -> ProposalTiming:
        return cls(p.propose_delay_ms, p.block_interval_ms, p.tick_ms)


class ConsensusDriver:
    def __init__(self, replica: Replica, ledger: Ledger, wal: WriteAheadLog, outbox: Outbox, me: bytes,
                 timing: ProposalTiming, on_evidence: Callable[[Evidence], None],
                 clock: Callable[[], float] = time.time, *, spawn: Spawn = unsupervised,
                 mute_through: int = 0, writer: DiskWriter | None = None) -> None:
        self.replica = replica
        self.ledger = ledger
        self.app = ledger.app
        self.mempool = ledger.mempool
        self.wal = wal
        self.writer = writer or DiskWriter()
        """Shared with block sync (``node/runtime.py``), so both commit paths' writes keep one order."""
        self.outbox = outbox
        self.me = me
        self.timing = timing
        self.on_evidence = on_evidence
        self.on_need_sync: Callable[[int, bytes | None], None] = lambda height, peer: None
        """Set by whoever runs block sync (it needs the driver's ``synced_to`` in turn)."""
        self.clock = clock
        self.spawn = spawn
        self.mute_through = mute_through
        """After an accepted WAL loss (``WriteAheadLog.lost_through``): this validator may already have
        signed, and forgotten, votes at heights up to this one, so nothing it signs there is sent; the
        others' certificates carry it past them."""
        self.view = 0
        """The replica's current view at the height it is deciding (0 until a view change)."""
        self.view_changes = 0
        """Views entered by view change since start (a new height's return to view 0 is not one)."""
        self._view_height = 0
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        """``None``: no event, a background write failed (see :meth:`_watch`)."""
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._proposal: tuple[int, int] | None = None
        self._validated: dict[bytes, Block] = {}
        """Blocks this validator voted valid, by hash, until their height is committed."""
        self._work = asyncio.Event()
        self._idle = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- inputs -----------------------------------------------------------------------------

    def feed(self, event: Event) -> None:
        self._queue.put_nowait(event)

    def on_peer_message(self, sender: bytes, payload: bytes) -> None:
        try:
            message = decode_message(payload)
        except FbciError as exc:
            log.warning("undecodable consensus message from %s: %s", sender.hex()[:12], exc.message)
            raise
        self.feed(MessageReceived(sender, message))

    def notify_work(self) -> None:
        """The mempool gained a transaction: a pending proposal may go early."""
        self._work.set()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, start_event: Event) -> None:
        self.feed(start_event)
        self._tasks = [self.spawn(self._run(), "consensus"), self.spawn(self._proposer(), "proposer")]

    @property
    def running(self) -> bool:
        """Whether the replica loop is alive (``status`` says so, so a dead loop cannot look healthy)."""
        return bool(self._tasks) and not self._tasks[0].done()

    async def stop(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def settled(self) -> None:
        """Return once every event fed so far is processed and its actions carried out (tests, tools),
        writes included: a trailing ``Persist`` that no send follows is on the writer thread until then."""
        await self._idle.wait()
        await self.writer.drained()

    async def _run(self) -> None:
        while True:
            if self._queue.empty():
                self._idle.set()
            event = await self._queue.get()
            self._idle.clear()
            if event is None or self.writer.failure is not None:
                await self.writer.drained()  # raises the failed write's error: the supervisor stops the node
            if event is not None:
                await self._process(event)

    async def _process(self, first: Event) -> None:
        events: deque[Event] = deque([first])
        while events:
            event = events.popleft()
            try:
                actions = self.replica.step(event)
            except FbciError as exc:  # a bad peer message: counted by the caller, never fatal
                log.warning("consensus refused %s: %s", type(event).__name__, exc.message)
                continue
            self._observe_view()
            durable: list[WalRecord] = []  # consecutive Persists share one fsync, still before the next send
            for action in actions:
                if isinstance(action, Persist):
                    durable.append(action.record)
                    continue
                if durable:
                    self._append(durable)
                    durable = []
                follow_up = await self._perform(action)
                if follow_up is not None:
                    events.append(follow_up)
            if durable:
                self._append(durable)

    def _append(self, records: list[WalRecord]) -> None:
        self._watch(self.writer.submit(lambda: self.wal.append_all(records)))

    def _watch(self, write: asyncio.Future[object]) -> None:
        """A write nobody awaits now: the next send awaits it (the writer is ordered), and a failure
        wakes the loop, which then raises it."""
        def failed(future: asyncio.Future[object]) -> None:
            if not future.cancelled() and future.exception() is not None:
                self._queue.put_nowait(None)

        write.add_done_callback(failed)

    async def _perform(self, action: Action) -> Event | None:
        if isinstance(action, Send):
            if self._may_send(action.message):
                await self.writer.drained()
                self.outbox.send(action.to, Channel.CONSENSUS, encode_message(action.message), missing_ok=True)
        elif isinstance(action, Broadcast):
            if self._may_send(action.message):
                await self.writer.drained()
                self.outbox.broadcast(Channel.CONSENSUS, encode_message(action.message))
        elif isinstance(action, SetTimer):
            self._set_timer(action.name, action.ticks)
        elif isinstance(action, CancelTimer):
            handle = self._timers.pop(action.name, None)
            if handle is not None:
                handle.cancel()
        elif isinstance(action, RequestProposal):
            self._proposal = (action.height, action.view)
            self._work.set()
        elif isinstance(action, ValidateBlock):
            return BlockValidated(action.height, action.block_hash, self._validate(action.block, action.block_hash))
        elif isinstance(action, CommitBlock):
            await self._commit(action)
            return BlockExecuted(action.height)
        elif isinstance(action, NeedSync):
            self.on_need_sync(action.height, action.peer)
        elif isinstance(action, ReportEvidence):
            self.on_evidence(action.evidence)
        return None

    def _may_send(self, message: Message) -> bool:
        """A certificate proves itself; a signed message is held back at a height a lost WAL covered."""
        return isinstance(message, CommitProof) or message.height > self.mute_through

    def _observe_view(self) -> None:
        """Mirror the replica's (height, view) for ``status`` and the metrics.

        Read from the replica after every step: a RequestProposal only reaches
        the primary, so the other replicas would never see their view move.
        """
        height, view = self.replica.height, self.replica.view
        if height == self._view_height and view > self.view:
            self.view_changes += view - self.view
            log.info("view change at height %d: view %d", height, view)
        self._view_height, self.view = height, view

    def _validate(self, raw: bytes, block_hash: bytes) -> bool:
        """Consensus treats blocks as opaque, so the hash it votes on is checked here too."""
        try:
            block = Block.decode(raw, max_size=self.ledger.params.max_block_bytes)
            if block.hash != block_hash:
                log.warning("refusing proposed block: its hash is not the one proposed")
                return False
            if block.height <= self.app.info().height:  # block sync committed it first: late, not suspect
                log.info("not validating the proposed block of height %d: this validator already committed it",
                         block.height)
                return False
            self.app.process_proposal(block, int(self.clock() * 1000))
        except FbciError as exc:
            log.warning("refusing proposed block: %s", exc.message)
            return False
        self._validated[block_hash] = block
        return True

    async def _commit(self, action: CommitBlock) -> None:
        """Execute and write the block on the loop without a sync, make it durable on the writer (after
        the WAL records that voted for it), and only then tell the observers and go to the next height."""
        validated, self._validated = self._validated, {}
        if await self._synced_past(action.height):
            return
        block = validated.get(action.block_hash)
        if block is None:  # decided without this validator's vote (a certificate it learned of)
            block = Block.decode(action.block, max_size=self.ledger.params.max_block_bytes)
        await self.ledger.blocks.ready(block)
        if await self._synced_past(action.height):  # while it waited for the block's blobs
            return
        blocks = self.ledger.blocks
        finalized = blocks.finalize(block, action.certificate.encode(), action.block,  # canonical: decode accepted it
                                    durable=False)
        await self.writer.submit(self.app.sync, then=lambda: blocks.announce(finalized))
        self.compact_wal(action.height)

    async def _synced_past(self, height: int) -> bool:
        """Whether block sync already applied ``height``; then its sync is queued before anything of ours."""
        if height > self.app.info().height:
            return False
        await self.writer.drained()
        return True

    def compact_wal(self, committed_height: int) -> None:
        """Drop the records of every height up to ``committed_height``, whose block is durable now, when
        the writer is idle: the WAL stays bounded to the height being decided (see ``node/wal.py``)."""
        self._watch(self.writer.submit_idle(lambda: self.wal.truncate_before(committed_height + 1)))

    def _set_timer(self, name: str, ticks: int) -> None:
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        delay = ticks * self.timing.tick_ms / 1000
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(delay, self.feed, TimerFired(name))

    async def _proposer(self) -> None:
        """Answer the latest RequestProposal once there is work or the empty-block interval passes."""
        while True:
            request = self._proposal
            if request is None:
                self._work.clear()
                await self._work.wait()
                continue
            await self._batch_window()
            if self._proposal != request:
                continue  # superseded by a newer view or height while we waited
            self._proposal = None
            if request[0] != self.app.info().height + 1:
                continue
            block = self.ledger.propose(self.me, int(self.clock() * 1000))
            self.feed(ProposalReady(request[0], request[1], block.encode(), block.hash))

    async def _batch_window(self) -> None:
        """Wait for the first pending transaction (at most ``empty_block_ms``), then
        ``batch_ms`` more so that a burst of transactions lands in one block."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timing.empty_block_ms / 1000
        while not len(self.mempool) and loop.time() < deadline:
            self._work.clear()
            try:
                await asyncio.wait_for(self._work.wait(), deadline - loop.time())
            except asyncio.TimeoutError:
                break
        if len(self.mempool):
            await asyncio.sleep(self.timing.batch_ms / 1000)

    def synced_to(self, height: int, certificate: CommitCertificate) -> None:
        self.compact_wal(height)
        self.feed(SyncedTo(height, certificate))
