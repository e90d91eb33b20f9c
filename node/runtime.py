"""One validator process: compose the application, its ledger, consensus, peers and RPC.

Resources start in dependency order on an ``AsyncExitStack`` and stop in
reverse, each only if it started (the aiohttp ``cleanup_ctx`` discipline), so
Ctrl-C and SIGTERM always close the RPC server, the peer links and LevelDB
cleanly. Nothing here decides anything: the consensus replica decides, the
application executes, and this module only carries messages between them.

Supervision is crash-only: every long-lived task (consensus loop, proposer,
block sync, own transactions, peer dialers and writers) starts through one
:class:`Supervisor`, and the first that ends with an exception stops the
process the same clean way, which then exits non-zero with that error
(``fbci node start`` prints it), so systemd (``deploy/fbci-validator.service``)
restarts it from its durable state. A task that died alone used to leave a
validator answering ``status`` at a frozen height for good. On the way out the
failure is written to the data directory, and the restarted validator posts it
as a signed critical alert (:mod:`node.crashreport`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from consensus import ChainSigner, CommitCertificate, Replica, ReplicaConfig, Start
from core import codec
from core.audit import ANCHOR_KIND
from core.blobs import ATTEST_KIND as BLOB_ATTEST_KIND
from core.blobs import CHUNK_BYTES, MAX_BLOB_BYTES
from core.crypto import HybridPrivateKey
from core.errors import AddressInUse, FbciError, StorageError, TaskFailed
from genesis.types import split_address
from ids.alerts import TX_KIND as ALERT_KIND
from ids.alerts import is_recorded
from node import logs
from node.app_reads import RPC_QUERIES
from node.app import LedgerApplication
from node.audit import Anchorer, AuditLog, anchor_every
from node.blobs.metrics import BlobCollector
from node.blobs.service import BlobService
from node.blobs.store import BlobStore
from node.config import NodeHome, load_home
from node.consensus_driver import ConsensusDriver, ProposalTiming
from node.crashreport import Crash, CrashReporter, record_crash
from node.diskwriter import DiskWriter
from node.evidence_tx import TX_KIND as EVIDENCE_KIND
from node.ledger import Ledger
from node.membership import PeerSet
from node.metrics import NodeMetrics
from node.misbehaviour import OwnTxSubmitter, SelfDefence, rpc_limiter
from node.read_auth import read_guard_for
from node.rpc.server import RpcLimits, create_app, start_rpc_server
from node.rpc.tls import server_ssl_context
from node.service import NodeService, ReadWorker
from node.gossip import GossipBatcher, admit_batch
from node.snapshot_trust import ChainTrust
from node.statesync import StateSyncEndpoint
from node.stores import Database, SigningMark
from node.sync import BlockSyncer, serve_request
from node.transport import Channel, PeerInfo, PeerTransport, QueueLimit
from node.wal import WriteAheadLog

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.001
"""How long a thread may hold the interpreter while another waits (Python's default is 5 ms): the event loop,
which carries consensus, gets it back from a busy state-reads worker (node.service) within a millisecond."""
JSON_ENVELOPE_BYTES = 64 * 1024  # the JSON-RPC request around a transaction's hex
# Per peer and channel, in payload bytes (and frames): a stopped peer pins at most ~64 MiB here, whatever
# the load; consensus has its own budget, so gossip can never crowd it out (node/transport/queues.py).
QUEUE_LIMITS = {
    Channel.CONSENSUS: QueueLimit(max_bytes=32 << 20, max_frames=10_000),
    Channel.SYNC: QueueLimit(max_bytes=16 << 20, max_frames=256),
    Channel.GOSSIP: QueueLimit(max_bytes=8 << 20, max_frames=20_000),
    Channel.BLOB: QueueLimit(max_bytes=16 << 20, max_frames=64),
}


def rpc_limits(max_tx_bytes: int) -> RpcLimits:
    """RPC limits that admit every transaction genesis allows: its hex, inside a JSON body.

    ``RpcLimits()`` alone caps a transaction at 256 KiB and a body at 1 MiB,
    below genesis' ``max_tx_bytes`` (1 MiB by default, sized for model deltas), and below a ``blob_put``
    of one chunk.
    """
    default = RpcLimits()
    return replace(default, max_tx_bytes=max_tx_bytes,
                   max_body_bytes=max(default.max_body_bytes, 2 * max(max_tx_bytes, CHUNK_BYTES) + JSON_ENVELOPE_BYTES))


@asynccontextmanager
async def _listening(address: str, what: str) -> AsyncIterator[None]:
    """A listen address another process holds is the operator's to fix, not an internal error."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise AddressInUse(f"cannot listen for {what} on {address}: {exc.strerror or exc}") from None
        raise


@dataclass(frozen=True)
class TaskFailure:
    """The first task that ended with an exception, and the exception."""

    task: str
    error: BaseException

    def as_error(self) -> FbciError:
        """What the process exits with: a storage error as itself (a full disk is not a bug), anything else
        as :class:`TaskFailed`, its traceback already in the log."""
        if isinstance(self.error, StorageError):
            return self.error
        return TaskFailed(f"the validator's {self.task} task failed with {type(self.error).__name__}: "
                          f"{self.error}; stopped so that a supervisor restarts it (the traceback is in the log)")


class Supervisor:
    """Starts the validator's tasks; the first one to fail is logged once and sets ``stop``."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.failure: TaskFailure | None = None
        self.on_failure: list[Callable[[str], None]] = []
        """Told the failed task's name (the failure metric), before the process stops."""

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A return or a cancellation is a task's own business; an exception is the process's."""
        error = None if task.cancelled() else task.exception()
        if error is None:
            return
        failure = TaskFailure(task.get_name(), error)
        if self.failure is None:
            self.failure = failure
        self.stop.set()
        if isinstance(error, StorageError):
            log.critical("validator task %s failed, stopping the validator: error[%d %s]: %s", failure.task,
                         error.code, error.reason, error.message)
        else:
            log.critical("validator task %s failed with an unexpected error, stopping the validator", failure.task,
                         exc_info=error)
        for observer in self.on_failure:
            observer(failure.task)


@dataclass
class Validator:
    home: NodeHome
    supervisor: Supervisor
    accept_wal_loss: bool = False

    async def start(self, stack: AsyncExitStack) -> None:
        """Build the parts bottom-up, each from parts that already exist, then start them in order."""
        doc, config, key = self.home.genesis, self.home.config, self.home.node_key
        # A bad TLS file stops the start before any store or socket opens.
        tls = None if config.rpc_tls is None else server_ssl_context(self.home.paths.root, config.rpc_tls)
        params = doc.params
        validators = tuple(bytes.fromhex(v.public_key) for v in doc.validators)
        me = key.public_key.raw
        data = self.home.data_path
        database = Database(data / "db")
        stack.callback(database.close)
        state_reads = ReadWorker()  # see node.service
        stack.callback(state_reads.shutdown, wait=True, cancel_futures=True)  # before the database closes
        blob_store = BlobStore(data / "blobs", MAX_BLOB_BYTES)  # FL versions of blob models go in at genesis
        application = LedgerApplication.open(doc, database, blobs=blob_store)
        self.ledger = ledger = Ledger.assemble(application, params)
        self.app = ledger.app
        writer = DiskWriter()  # the one thread that fsyncs (WAL and blocks), in order, off the event loop
        stack.callback(writer.close)  # after consensus and sync stop, before the database closes

        current = application.validator_set(application.height + 1).validators
        self.metrics = NodeMetrics(config.name, {v.public_key: v.name for v in current})
        self.supervisor.on_failure.append(self.metrics.on_task_failure)
        own = OwnTxSubmitter(key.ed25519 if isinstance(key, HybridPrivateKey) else key, doc.chain_id)
        self.defence = SelfDefence(
            config.name, lambda alert: own.offer(ALERT_KIND, alert.to_payload()),
            on_evidence_found=lambda proof: own.offer(EVIDENCE_KIND, {"evidence": proof}),
        )
        configured = [PeerInfo(p.name, bytes.fromhex(p.public_key), p.address) for p in config.peers]
        # reserved handshake slots for the chain's sets of the next two heights as this validator starts
        on_chain = {v.public_key: v for h in (1, 2)
                    for v in application.validator_set(application.height + h).validators}
        peer_set = PeerSet(application, me, configured)  # the allow-list follows the chain's validator set
        self.transport = PeerTransport(
            chain_id=doc.chain_id, key=key, listen=config.p2p_listen, peers=configured,
            on_message=self._on_peer_message, max_message_bytes=params.max_block_bytes * 2 + 65536,
            queue_limits=QUEUE_LIMITS, on_misbehaviour=self.defence.on_peer_misbehaviour,
            validator_hosts=[split_address(v.p2p_address)[0] for v in on_chain.values()],
            peer_keys=peer_set.key, spawn=self.supervisor.spawn,
        )
        peer_set.on_change = self.transport.set_peers
        self.blobs = blobs = BlobService(
            data / "blobs", me, send=lambda peer, payload: self.transport.send(peer, Channel.BLOB, payload,
                                                                                missing_ok=True),
            peers=self.transport.connected_peers, attest=lambda ref: own.offer(BLOB_ATTEST_KIND, {"ref": ref.model_dump()}),
            state=lambda: application.state, height=lambda: application.height,
            on_misbehaviour=self.defence.on_peer_misbehaviour, spawn=self.supervisor.spawn, store=blob_store)
        stack.callback(blobs.close)
        ledger.blocks.prerequisites.append(blobs.replicator.ensure_needed)
        verifier = application.verifier  # learns the key types of validators the chain admits
        wal = WriteAheadLog(data / "consensus.wal", SigningMark(database), accept_loss=self.accept_wal_loss)
        replica = Replica(ReplicaConfig(doc.chain_id, validators, me, params.base_timeout_ticks),
                          ChainSigner(key, doc.chain_id), verifier, application.validators_at)
        self.driver = ConsensusDriver(replica, ledger, wal, self.transport, me, ProposalTiming.from_params(params),
                                      on_evidence=self.defence.on_evidence, spawn=self.supervisor.spawn,
                                      mute_through=wal.lost_through, writer=writer)
        self.syncer = BlockSyncer(
            ledger, chain_id=doc.chain_id, verifier=verifier,
            send=lambda peer, payload: self.transport.send(peer, Channel.SYNC, payload, missing_ok=True),
            peers=self.transport.connected_peers, on_synced=self.driver.synced_to,
            on_misbehaviour=self.defence.on_peer_misbehaviour, spawn=self.supervisor.spawn, writer=writer,
            signatures=application.signatures,
        )
        self.driver.on_need_sync = self.syncer.request_sync
        chunk_cuts = ReadWorker()  # its own thread, so a joiner's chunks never queue behind RPC reads
        stack.callback(chunk_cuts.shutdown, wait=True, cancel_futures=True)  # before the database closes
        self.state_sync = StateSyncEndpoint(self.app, lambda peer, payload: self.transport.send(peer, Channel.SYNC,
                                                                                                payload),
                                            chunks=chunk_cuts, on_refused=self.metrics.on_chunk_request_refused)
        trail = AuditLog(database, config.name)
        application.serve_audit(trail, me)
        anchorer = Anchorer(trail, lambda: application.last_anchored(me), lambda p: own.offer(ANCHOR_KIND, p),
                            anchor_every(doc.app_state))
        reads = read_guard_for(doc.chain_id, RPC_QUERIES, doc.app_state, lambda path, p: self.service.query(path, p),
                               clock_ms=lambda: time.time_ns() // 1_000_000,
                               on_read=lambda outcome: trail.record_read(outcome, application.height))

        def rejected(sender: bytes | None, exc: FbciError) -> None:
            self.defence.on_tx_rejected(sender, exc)
            trail.record_tx_refusal(sender, exc, application.height, time.time_ns() // 1_000_000)

        self.service = NodeService(
            name=config.name, genesis=doc, app=self.app, mempool=ledger.mempool,
            gossip=GossipBatcher(lambda frame: self.transport.broadcast(Channel.GOSSIP, frame),
                                 asyncio.get_running_loop().call_soon).add,
            notify_work=self.driver.notify_work, view=lambda: self.driver.view,
            peers=lambda: len(self.transport.connected_peers()), syncing=lambda: self.syncer.syncing,
            on_rejected=rejected, consensus_running=lambda: self.driver.running,
            reads=state_reads,
        )
        crashes = CrashReporter(data, config.name.lower(), own.key.public_key.raw,
                                lambda alert: own.offer(ALERT_KIND, alert.to_payload()),
                                lambda alert: is_recorded(application.state, alert))
        ledger.blocks.observers += [peer_set.on_commit, self.service.on_commit, self.metrics.on_commit,
                                    self.defence.inspect_commit, anchorer.on_commit, crashes.on_commit,
                                    blobs.learn_uses]
        self.metrics.attach(self.app, ledger.mempool, self.driver, self.transport, self.syncer, self.service)
        self.metrics.registry.register(BlobCollector(blobs.store, blobs.counters, config.name))

        own.start(self.service, self.supervisor.spawn)
        crashes.start()  # the last run's failures, as alerts signed by this validator
        blobs.start()
        stack.push_async_callback(own.stop)
        async with _listening(config.p2p_listen, "p2p"):
            await self.transport.start()
        stack.push_async_callback(self.transport.stop)
        stack.push_async_callback(self.syncer.stop)
        joined = None
        if config.state_sync and self.app.info().height == 0:
            joined = await self.state_sync.join(ChainTrust(doc.chain_id, doc.validator_set(), verifier,
                                                           params.max_block_bytes),
                                                self.transport.connected_peers, len(config.peers),
                                                self.metrics.on_state_sync_ban)
            if joined is not None:
                peer_set.follow()  # the restored state's sets, before block sync asks its peers
        info = self.app.info()
        last_commit = CommitCertificate.decode(info.last_certificate) if info.height else None
        await self.driver.start(Start(info.height + 1, last_commit, wal.read_all()))
        stack.push_async_callback(self.driver.stop)
        if joined is not None:
            self.syncer.request_sync(joined.target, joined.hint)

        app = create_app(self.service, RPC_QUERIES, limits=rpc_limits(params.max_tx_bytes),
                         limiter=rpc_limiter(params), metrics_registry=self.metrics.registry,
                         on_misbehaviour=self.defence.on_rpc_misbehaviour, chain_id=doc.chain_id,
                         signatures=application.signatures, reads=reads,  # the mempool's own cache
                         committed=application.committed_height, offload=state_reads, blobs=blobs.endpoint)
        host, port = split_address(config.rpc_listen)
        async with _listening(config.rpc_listen, "JSON-RPC"):
            runner = await start_rpc_server(app, host, port, ssl_context=tls)
        stack.push_async_callback(runner.cleanup)
        log.info("validator %s up: height %d, rpc %s, p2p %s", config.name, info.height, config.rpc_listen,
                 config.p2p_listen)

    async def _on_peer_message(self, sender: bytes, channel: Channel, payload: bytes) -> None:
        try:
            if self.state_sync.joining and channel != Channel.SYNC:
                return  # no consensus or gossip before the state is restored
            if channel == Channel.CONSENSUS:
                self.driver.on_peer_message(sender, payload)
            elif channel == Channel.GOSSIP:
                relay = partial(self.ledger.mempool.add, relayed=True)
                if admit_batch(payload, relay, self.ledger.params.max_tx_bytes,
                               lambda why: self.defence.on_peer_misbehaviour(sender, why)):
                    self.driver.notify_work()
            elif channel == Channel.BLOB:
                self.blobs.replicator.on_message(sender, payload)
            else:
                message = codec.decode(payload)
                if self.state_sync.handle(sender, message):
                    return
                reply = serve_request(self.app, message)
                if reply is not None:
                    self.transport.send(sender, Channel.SYNC, reply)
                else:
                    self.syncer.on_response(sender, message)
        except FbciError as exc:
            self.defence.on_peer_misbehaviour(sender, f"{channel.name.lower()}: {exc.reason}")


async def serve(home: NodeHome, stop: asyncio.Event, *, accept_wal_loss: bool = False) -> None:
    """Run until ``stop`` is set, by a signal or by a failed task; after a failure, raise its error once
    everything has closed. A refusal to start (a lost WAL, a damaged store) is logged, then raised."""
    supervisor = Supervisor(stop)
    async with AsyncExitStack() as stack:
        validator = Validator(home, supervisor, accept_wal_loss)
        try:
            await validator.start(stack)
        except FbciError as exc:
            log.critical("validator %s refused to start: error[%d %s]: %s", home.config.name, exc.code, exc.reason,
                         exc.message)
            raise
        await stop.wait()
        log.info("stopping validator %s at height %d", home.config.name, validator.app.info().height)
    if supervisor.failure is not None:
        failure = supervisor.failure
        record_crash(home.data_path, Crash.of(failure.task, failure.error, time.time_ns() // 1_000_000))
        raise failure.as_error()


def run_validator(home: Path, *, accept_wal_loss: bool = False, state_sync: bool = False) -> int:
    """``fbci node start``: run until SIGINT or SIGTERM, then close everything cleanly; a failed task's
    error is raised after the same clean stop (the CLI prints it and exits 1). ``state_sync``: as the
    config's ``state_sync``."""
    checked = load_home(home)
    if state_sync:
        checked = replace(checked, config=checked.config.model_copy(update={"state_sync": True}))
    logs.configure(checked.config.name, checked.config.log_level)
    sys.setswitchinterval(SWITCH_INTERVAL_S)

    # Plain handlers rather than loop.add_signal_handler: closing the loop would put back
    # SIG_DFL, and a second SIGTERM (an impatient supervisor, Ctrl-C twice) arriving after
    # the stores closed would then kill the process and report a clean stop as a crash.
    wake: list[Callable[[], None]] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        for request_stop in wake:
            request_stop()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        wake.append(lambda: None if loop.is_closed() else loop.call_soon_threadsafe(stop.set))
        await serve(checked, stop, accept_wal_loss=accept_wal_loss)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    started = time.monotonic()
    try:
        asyncio.run(main())
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # interpreter shutdown would otherwise restore SIG_DFL
    log.info("validator stopped after %.1f s", time.monotonic() - started)
    return 0
