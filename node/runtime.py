"""One validator process: compose the stores, the chain, consensus, peers and RPC.

Resources start in dependency order on an ``AsyncExitStack`` and stop in
reverse, each only if it started (the aiohttp ``cleanup_ctx`` discipline), so
Ctrl-C and SIGTERM always close the RPC server, the peer links and LevelDB
cleanly. Nothing here decides anything: the consensus replica decides, the
chain executes, and this module only carries messages between them.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from consensus import CommitCertificate, Ed25519Signer, Ed25519Verifier, Replica, ReplicaConfig, Start
from core import codec
from core.crypto import PrivateKey
from core.errors import AddressInUse, BadSignature, FbciError
from genesis.home import HomePaths, NodeConfig
from genesis.schema import GenesisDoc, load_genesis
from genesis.types import split_address
from ids.alerts import TX_KIND as ALERT_KIND
from node.chain import Chain, ChainParams
from genesis.home import load_config
from node import logs
from node.consensus_driver import ConsensusDriver, ProposalTiming
from node.evidence_tx import TX_KIND as EVIDENCE_KIND
from node.kinds import AppQueries, build_registry, genesis_hooks
from node.metrics import NodeMetrics
from node.rpc.server import RpcLimits, create_app, start_rpc_server
from node.misbehaviour import OwnTxSubmitter, SelfDefence, rpc_limiter
from node.service import NodeService
from node.stores import Database
from node.sync import BlockSyncer, serve_request
from node.transport import Channel, PeerInfo, PeerTransport
from node.wal import WriteAheadLog

log = logging.getLogger(__name__)

JSON_ENVELOPE_BYTES = 64 * 1024  # the JSON-RPC request around a transaction's hex
QUEUE_LIMITS = {Channel.CONSENSUS: 10_000, Channel.SYNC: 256, Channel.GOSSIP: 20_000}


def chain_params(doc: GenesisDoc) -> ChainParams:
    p = doc.params
    return ChainParams(p.max_tx_bytes, p.max_block_bytes, p.max_block_txs, p.max_clock_drift_ms,
                       p.mempool_max_txs, p.mempool_max_bytes)


def rpc_limits(max_tx_bytes: int) -> RpcLimits:
    """RPC limits that admit every transaction genesis allows: its hex, inside a JSON body.

    ``RpcLimits()`` alone caps a transaction at 256 KiB and a body at 1 MiB,
    below genesis' ``max_tx_bytes`` (1 MiB by default, sized for model deltas).
    """
    default = RpcLimits()
    return replace(default, max_tx_bytes=max_tx_bytes,
                   max_body_bytes=max(default.max_body_bytes, 2 * max_tx_bytes + JSON_ENVELOPE_BYTES))


@asynccontextmanager
async def _listening(address: str, what: str) -> AsyncIterator[None]:
    """A listen address another process holds is the operator's to fix, not an internal error."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise AddressInUse(f"cannot listen for {what} on {address}: {exc.strerror or exc}") from None
        raise


@dataclass
class Validator:
    home: Path
    config: NodeConfig
    genesis: GenesisDoc
    key: PrivateKey

    async def start(self, stack: AsyncExitStack) -> None:
        doc = self.genesis
        validators = tuple(bytes.fromhex(v.public_key) for v in doc.validators)
        me = self.key.public_key.raw
        data = self.home / self.config.data_dir
        database = Database(data / "db")
        stack.callback(database.close)
        registry = build_registry(doc.chain_id, validators)
        self.chain = Chain(doc.chain_id, validators, chain_params(doc), database, registry,
                           genesis_time_ms=doc.genesis_time_ms)
        self.chain.init_genesis(
            [(bytes.fromhex(a.public_key), a.name, list(a.roles)) for a in doc.accounts],
            genesis_hooks(doc),
        )
        replayed = self.chain.replay_unapplied()
        if replayed:
            log.info("re-executed %d stored blocks whose state a crash cut off", replayed)

        self.metrics = NodeMetrics(self.config.name)
        self.chain.on_commit.append(self.metrics.on_commit)
        verifier = Ed25519Verifier(doc.chain_id)
        wal = WriteAheadLog(data / "consensus.wal")
        replica = Replica(ReplicaConfig(doc.chain_id, validators, me, doc.params.base_timeout_ticks),
                          Ed25519Signer(self.key, doc.chain_id), verifier)
        self.transport = PeerTransport(
            chain_id=doc.chain_id, key=self.key, listen=self.config.p2p_listen,
            peers=[PeerInfo(p.name, bytes.fromhex(p.public_key), p.address) for p in self.config.peers],
            on_message=self._on_peer_message, max_message_bytes=doc.params.max_block_bytes * 2 + 65536,
            queue_limits=QUEUE_LIMITS, on_misbehaviour=self._on_peer_misbehaviour,
        )
        own = OwnTxSubmitter(self.key, doc.chain_id)
        self.defence = SelfDefence(
            self.config.name, lambda alert: own.offer(ALERT_KIND, alert.to_payload()), doc.params.max_tx_bytes,
            on_evidence_found=lambda proof: own.offer(EVIDENCE_KIND, {"evidence": proof}),
        )
        self.chain.on_commit.append(self.defence.inspect_commit)
        self.driver = ConsensusDriver(
            replica, self.chain, wal, self.transport, me,
            ProposalTiming(doc.params.propose_delay_ms, doc.params.block_interval_ms, doc.params.tick_ms),
            on_need_sync=lambda h, peer: self.syncer.request_sync(h, peer),
            on_evidence=self.defence.on_evidence,
        )
        self.syncer = BlockSyncer(
            self.chain, validators, verifier,
            send=lambda peer, payload: self.transport.send(peer, Channel.SYNC, payload),
            peers=self.transport.connected_peers, on_synced=self.driver.synced_to,
            on_misbehaviour=self._on_peer_misbehaviour,
        )
        self.service = NodeService(
            name=self.config.name, genesis=doc, chain=self.chain,
            gossip=lambda raw: self.transport.broadcast(Channel.GOSSIP, raw),
            notify_work=self.driver.notify_work, view=lambda: self.driver.view,
            peers=lambda: len(self.transport.connected_peers()), syncing=lambda: self.syncer.syncing,
            queries=AppQueries(), on_rejected=self.defence.on_tx_rejected,
        )
        own.start(self.service)
        stack.push_async_callback(own.stop)
        self.metrics.attach(self.chain, self.driver, self.transport, self.syncer, self.service)

        async with _listening(self.config.p2p_listen, "p2p"):
            await self.transport.start()
        stack.push_async_callback(self.transport.stop)
        stack.push_async_callback(self.syncer.stop)
        height = self.chain.height
        last_commit = CommitCertificate.decode(self.chain.blocks.certificate(height)) if height else None
        await self.driver.start(Start(height + 1, last_commit, wal.read_all()))
        stack.push_async_callback(self.driver.stop)

        app = create_app(self.service, limits=rpc_limits(doc.params.max_tx_bytes),
                         limiter=rpc_limiter(doc.params),
                         metrics_registry=self.metrics.registry, on_misbehaviour=self.defence.on_rpc_misbehaviour)
        host, port = split_address(self.config.rpc_listen)
        async with _listening(self.config.rpc_listen, "JSON-RPC"):
            runner = await start_rpc_server(app, host, port)
        stack.push_async_callback(runner.cleanup)
        log.info("validator %s up: height %d, rpc %s, p2p %s", self.config.name, self.chain.height,
                 self.config.rpc_listen, self.config.p2p_listen)

    async def _on_peer_message(self, sender: bytes, channel: Channel, payload: bytes) -> None:
        try:
            if channel == Channel.CONSENSUS:
                self.driver.on_peer_message(sender, payload)
            elif channel == Channel.GOSSIP:
                self._admit_gossip(sender, payload)
            else:
                message = codec.decode(payload)
                reply = serve_request(self.chain, message)
                if reply is not None:
                    self.transport.send(sender, Channel.SYNC, reply)
                else:
                    self.syncer.on_response(sender, message)
        except FbciError as exc:
            self._on_peer_misbehaviour(sender, f"{channel.name.lower()}: {exc.reason}")

    def _admit_gossip(self, sender: bytes, raw: bytes) -> None:
        """A transaction relayed by a peer validator is admitted like a client's.

        Already known, a used nonce, a full mempool: normal in gossip, dropped
        quietly. A bad signature is not: an honest validator only relays what
        its own admission verified.
        """
        try:
            self.chain.mempool.add(raw)
        except BadSignature:
            self._on_peer_misbehaviour(sender, "gossiped a transaction with a bad signature")
            return
        except FbciError:
            return
        self.driver.notify_work()

    def _on_peer_misbehaviour(self, peer: bytes | str, what: str) -> None:
        self.defence.on_peer_misbehaviour(peer, what)


async def serve(home: Path, config: NodeConfig, stop: asyncio.Event) -> None:
    paths = HomePaths(home)
    genesis = load_genesis(paths.genesis)
    key = PrivateKey.load(paths.node_key)
    async with AsyncExitStack() as stack:
        validator = Validator(home, config, genesis, key)
        await validator.start(stack)
        await stop.wait()
        log.info("stopping validator %s at height %d", config.name, validator.chain.height)


def run_validator(home: Path) -> int:
    """``fbci node start``: run until SIGINT or SIGTERM, then close everything cleanly."""
    config = load_config(home)
    logs.configure(config.name, config.log_level)

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
        await serve(home, config, stop)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    started = time.monotonic()
    asyncio.run(main())
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # interpreter shutdown would otherwise restore SIG_DFL
    log.info("validator stopped after %.1f s", time.monotonic() - started)
    return 0
