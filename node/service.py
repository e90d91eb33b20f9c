"""The node as the RPC server sees it: :class:`NodeService` implements ``NodeApi``.

It turns client requests into calls on the mempool and the application's
boundary, and commits into answers: a ``tx_submit_commit`` caller waits on a
future that the commit observer resolves, so "committed" is only ever said
after the block and its certificate are on this validator's disk.

State queries run on ``reads``, a :class:`ReadWorker` the runtime gives it, not
on the event loop: a page of ``alerts_query`` costs milliseconds of decoding,
and eight clients looping it on the loop queued every consensus step behind
their pages. On the worker they share the interpreter with the loop instead
(the loop gets it back at least every switch interval), each job rests as
long as it ran, so readers who never stop take at most half of it, and
LevelDB reads are safe from any thread. Without ``reads`` (tests) they run
inline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from core.api import ACCOUNT, AccountGetParams, AccountInfo, AccountState, NewBlock, NodeStatus, Params, Receipt, TxCommitResult
from core.errors import FbciError, Timeout
from core.hashing import sha256
from core.tx import sender_of
from genesis.schema import GenesisDoc, GenesisWithHash, ValidatorInfo
from node.application import Application, FinalizedBlock
from node.mempool import Mempool
from node.rpc.subscriptions import EventHub

MAX_TRACKED_SUBMISSIONS = 100_000
T = TypeVar("T")


class ReadWorker(ThreadPoolExecutor):
    """One thread for reads, each job followed by a rest of ``rest`` times its run: under a read flood the
    worker holds the interpreter at most ``1 / (1 + rest)`` of the time; the readers wait, consensus does not."""

    def __init__(self, rest: float = 1.0, *, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(max_workers=1, thread_name_prefix="state-reads")
        self.rest = rest
        self._clock = clock
        self._sleep = sleep

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return super().submit(self._rested, fn, *args, **kwargs)

    def _rested(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        started = self._clock()
        try:
            return fn(*args, **kwargs)
        finally:
            self._sleep(self.rest * (self._clock() - started))  # the sleep releases the interpreter


class NodeService:
    """Implements ``node.rpc.node_api.NodeApi`` over a running validator's parts."""

    def __init__(self, *, name: str, genesis: GenesisDoc, app: Application, mempool: Mempool,
                 gossip: Callable[[bytes], None], notify_work: Callable[[], None], view: Callable[[], int],
                 peers: Callable[[], int], syncing: Callable[[], bool],
                 on_rejected: Callable[[bytes | None, FbciError], None],
                 consensus_running: Callable[[], bool] = lambda: False,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 reads: Executor | None = None) -> None:
        self.name = name
        self.genesis_doc = genesis
        self.app = app
        self.mempool = mempool
        self.gossip = gossip
        self.notify_work = notify_work
        self.view = view
        self.peers = peers
        self.syncing = syncing
        self.on_rejected = on_rejected
        self.consensus_running = consensus_running
        self.clock_ms = clock_ms
        self.reads = reads
        self.last_commit_ms = app.info().last_block_time_ms
        """When this validator last committed a block, by its own clock; until it has, the time in the
        latest stored block's header, so a node that commits nothing after a restart looks stale."""
        self.events = EventHub()
        self._waiters: dict[bytes, list[asyncio.Future[Receipt]]] = {}
        self.submitted_at: dict[bytes, float] = {}

    def on_commit(self, finalized: FinalizedBlock) -> None:
        self.last_commit_ms = self.clock_ms()
        for tx_hash, receipt in finalized.receipts.items():
            for future in self._waiters.pop(tx_hash, []):
                if not future.done():
                    future.set_result(receipt)
        header = finalized.block.header
        self.events.publish("new_block", NewBlock(header.height, finalized.block.hash, header.num_txs, header.time_ms))
        for alert in finalized.alerts:
            self.events.publish("new_alert", alert)

    async def status(self) -> NodeStatus:
        info = self.app.info()
        return NodeStatus(
            chain_id=self.genesis_doc.chain_id, validator=self.name, height=info.height,
            latest_block_hash=info.last_block_hash, view=self.view(), peers=self.peers(),
            mempool_size=len(self.mempool), syncing=self.syncing(), last_commit_time_ms=self.last_commit_ms,
            consensus_running=self.consensus_running(),
        )

    def check_room(self, sender: bytes | None, size: int) -> None:
        self.mempool.check_room(sender, size)

    async def submit_tx(self, raw: bytes) -> bytes:
        try:
            tx = self.mempool.add(raw)
        except FbciError as exc:
            self.on_rejected(sender_of(raw), exc)
            raise
        if len(self.submitted_at) >= MAX_TRACKED_SUBMISSIONS:  # never-committed entries must not pile up
            del self.submitted_at[next(iter(self.submitted_at))]
        self.submitted_at[tx.hash] = time.monotonic()
        self.gossip(raw)
        self.notify_work()
        return tx.hash

    async def submit_tx_commit(self, raw: bytes, timeout_s: float) -> TxCommitResult:
        tx_hash = sha256(raw)
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx_hash, []).append(future)
        try:
            await self.submit_tx(raw)
            receipt = await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except asyncio.TimeoutError:
            raise Timeout(f"transaction {tx_hash.hex()} was not committed within {timeout_s} s; "
                          "it may still commit: query tx_get") from None
        finally:
            waiters = self._waiters.get(tx_hash)
            if waiters and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[tx_hash]
        return TxCommitResult(hash=tx_hash, height=receipt.height, index=receipt.index, receipt=receipt)

    async def validators(self) -> list[ValidatorInfo]:
        """The set deciding the next height (the chain's, which consortium decisions change)."""
        members = self.app.validator_set(self.app.info().height + 1).validators
        if [v.public_key.hex() for v in members] == [v.public_key for v in self.genesis_doc.validators]:
            return list(self.genesis_doc.validators)
        return [ValidatorInfo.model_validate({
            "name": v.name, "public_key": v.public_key.hex(), "p2p_address": v.p2p_address,
            **({"key_type": v.key_type, "ml_dsa_public_key": v.ml_dsa_public_key.hex()} if v.ml_dsa_public_key else {}),
        }) for v in members]

    async def genesis(self) -> GenesisWithHash:
        return GenesisWithHash(genesis=self.genesis_doc, hash=self.genesis_doc.hash().hex())

    async def account(self, public_key: bytes) -> AccountInfo:
        state = self.app.query(ACCOUNT.path, AccountGetParams(public_key=public_key))
        committed = state if isinstance(state, AccountState) else None
        nonce = committed.nonce if committed else 0
        pending = self.mempool.pending_nonces(public_key)
        while nonce + 1 in pending:
            nonce += 1
        return AccountInfo(public_key=public_key, roles=committed.roles if committed else (), next_nonce=nonce + 1,
                           name=committed.name if committed else None)

    async def query(self, path: str, params: Params, *, prove: bool = False) -> object:
        if self.reads is None:
            return self.app.query(path, params, prove=prove)
        return await asyncio.get_running_loop().run_in_executor(
            self.reads, partial(self.app.query, path, params, prove=prove))
