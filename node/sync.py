"""Block sync: a lagging or new validator fetches committed blocks from peers.

It trusts no peer. Every block must arrive with a commit certificate that
carries a quorum of valid validator signatures for exactly that height and
block hash (checked against the validator set of that height, which the
chain itself decided two blocks earlier, so a node syncing from genesis
checks every certificate across every change), and must link to this
validator's own last block (previous hash, previous certificate hash, state
hash). A peer that sends anything else is reported and another is tried. A
failure of this validator's own store (a full disk) is not the peer's: it
ends the sync task, which the runtime's supervisor turns into a stop.

Fast, because signature checks are the bound and nothing else should be:

- each certificate is verified once. A block's LastCommit is the previous
  block's certificate again; when its bytes equal the certificate this
  validator just committed that block with, the application does not verify
  it a second time (``LedgerApplication._check_last_commit``), so a block of a
  4-validator chain costs 3 signature checks, not 6;
- verification runs on a thread pool (``cryptography`` releases the GIL): the
  certificates of a response and, given the node's signature cache, its
  transactions' signatures are checked there, all at once, and only what
  passed is applied, in order, on the event loop;
- a window of ``IN_FLIGHT`` requests for consecutive ranges is kept out,
  spread over the peers, so the next responses are on their way (and being
  verified) while this one is applied. Responses are applied strictly in
  height order; the first range that fails (a timeout, a peer not connected,
  a bad batch, a response cut short by its size limit) ends the round, and the
  next starts again from this validator's height with the next peer.

Applied blocks are made durable by the node's writer thread (one sync per
response, off the event loop) before consensus or any observer hears of them.

Wire format on the SYNC channel (canonical msgpack):
``["get_blocks", from_height, count]`` and
``["blocks", [[block_bytes, certificate_bytes], ...]]``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from consensus import CommitCertificate, Verifier
from core import codec
from core.block import Block
from core.errors import FbciError, NotFound, PeerMisbehaved, StorageError
from core.hashing import sha256
from core.tx import Transaction
from node.application import Application, FinalizedBlock
from node.consensus_driver import Spawn, unsupervised
from node.diskwriter import DiskWriter
from node.ledger import Ledger

log = logging.getLogger(__name__)

MAX_BLOCKS_PER_RESPONSE = 64
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
REQUEST_TIMEOUT_S = 3.0
IN_FLIGHT = 4
VERIFY_THREADS = max(2, min(4, os.cpu_count() or 1))

SendSync = Callable[[bytes, bytes], bool]
PeersNow = Callable[[], list[bytes]]


def serve_request(app: Application, payload: Any) -> bytes | None:
    """Answer a peer's ``get_blocks`` from the block store; ``None`` for anything else."""
    if not (isinstance(payload, list) and len(payload) == 3 and payload[0] == "get_blocks"):
        return None
    start, count = payload[1], payload[2]
    if not (isinstance(start, int) and isinstance(count, int) and start >= 1 and count >= 1):
        raise PeerMisbehaved("get_blocks needs a start height >= 1 and a count >= 1")
    items: list[list[bytes]] = []
    size = 0
    for height in range(start, min(app.info().height, start + min(count, MAX_BLOCKS_PER_RESPONSE) - 1) + 1):
        try:
            stored = app.stored_block(height)
        except NotFound:  # below the snapshot a state-synced store starts at: an empty answer, ask another
            break
        size += len(stored.raw) + len(stored.certificate)
        if items and size > MAX_RESPONSE_BYTES:
            break
        items.append([stored.raw, stored.certificate])
    return codec.encode(["blocks", items])


class SignatureSet(Protocol):
    """The node's signature cache (``node.execution.SignatureCache``): hashes of transactions of this chain
    that decoded and carried a valid signature."""

    def __contains__(self, tx_hash: bytes) -> bool: ...

    def add(self, tx_hash: bytes) -> None: ...


@dataclass(frozen=True)
class SyncedItem:
    """One block of a response, decoded, its certificate checked to name it."""

    block: Block
    certificate: CommitCertificate
    raw_block: bytes
    raw_certificate: bytes
    checked_with: tuple[bytes, ...] = ()
    """The set the certificate verified against on the pool: the latest the chain had decided when the
    response came in. If a block applied before it changes its height's set, it is verified again."""


def decode_batch(payload: Any, max_block_bytes: int) -> list[SyncedItem]:
    """The shape of a ``blocks`` response; raises on the first thing a peer got wrong (no signature checked)."""
    if not (isinstance(payload, list) and len(payload) == 2 and payload[0] == "blocks"
            and isinstance(payload[1], list)):
        raise PeerMisbehaved("a sync response is ['blocks', [[block, certificate], ...]]")
    items: list[SyncedItem] = []
    for item in payload[1]:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, bytes) for x in item)):
            raise PeerMisbehaved("each synced item is [block bytes, certificate bytes]")
        block = Block.decode(item[0], max_size=max_block_bytes)
        certificate = CommitCertificate.decode(item[1])
        if certificate.height != block.height or certificate.block_hash != block.hash:
            raise PeerMisbehaved(f"certificate does not certify block {block.height}")
        items.append(SyncedItem(block, certificate, item[0], item[1]))
    return items


Fetched = tuple[bytes, list[SyncedItem] | FbciError] | None
"""What one request came back with: the peer and its verified items (or what it got wrong); None if none came."""


def _first_height(payload: Any) -> int | None:
    """The height a response starts at, from its first certificate; None if empty or not readable."""
    try:
        return CommitCertificate.decode(payload[1][0][1]).height
    except (FbciError, LookupError, TypeError):
        return None


class BlockSyncer:
    """Fetches blocks up to a target height, verifying each before applying it.

    ``signatures``: the node's signature cache; given it, transactions' signatures are verified on the pool
    too, and the application then finds them there. ``writer``: the node's disk writer (``node/diskwriter``).
    """

    def __init__(self, ledger: Ledger, *, chain_id: str, verifier: Verifier,
                 send: SendSync, peers: PeersNow, on_synced: Callable[[int, CommitCertificate], None],
                 on_misbehaviour: Callable[[bytes, str], None], spawn: Spawn = unsupervised,
                 writer: DiskWriter | None = None, signatures: SignatureSet | None = None,
                 verify_threads: int = VERIFY_THREADS) -> None:
        self.app = ledger.app
        self.blocks = ledger.blocks
        self.chain_id = chain_id
        self.max_block_bytes = ledger.params.max_block_bytes
        self.max_tx_bytes = ledger.params.max_tx_bytes
        self.verifier = verifier
        self.send = send
        self.peers = peers
        self.on_synced = on_synced
        self.on_misbehaviour = on_misbehaviour
        self.spawn = spawn
        self.writer = writer or DiskWriter()
        self.signatures = signatures
        self.verify_threads = verify_threads
        self.target = 0
        self._task: asyncio.Task[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._waiting: dict[bytes, list[tuple[int, asyncio.Future[Any]]]] = {}
        """Requests out, by peer: (start height, the future its response lands in)."""

    @property
    def syncing(self) -> bool:
        return self._task is not None and not self._task.done()

    def request_sync(self, height: int, hint: bytes | None) -> None:
        self.target = max(self.target, height)
        if not self.syncing and self.target > self._height():
            self._task = self.spawn(self._run(hint), "block-sync")

    def on_response(self, sender: bytes, payload: Any) -> None:
        """Match a response to the request it answers: from that peer, starting at its height (an empty or
        unreadable one goes to that peer's oldest request, which then judges it)."""
        start = _first_height(payload)
        waiting = self._waiting.get(sender, [])
        for i, (want, future) in enumerate(waiting):
            if not future.done() and (start is None or start == want):
                del waiting[i]
                future.set_result(payload)
                return
        log.warning("dropping an unrequested sync response from %s", sender.hex()[:12])

    async def join(self) -> None:
        """Wait until the running sync (if any) has reached its target."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def _run(self, hint: bytes | None) -> None:
        order = [hint] if hint else []
        attempt = 0
        while self._height() < self.target:
            connected = self.peers()
            candidates = [p for p in order if p in connected] + [p for p in connected if p not in order]
            if not candidates:
                await asyncio.sleep(REQUEST_TIMEOUT_S / 3)  # no peer connected yet: poll again shortly
                continue
            window: deque[asyncio.Future[Fetched]] = deque()
            first = next_start = self._height() + 1
            try:
                while True:
                    while len(window) < IN_FLIGHT and next_start <= self.target:  # keep the window full
                        peer = candidates[attempt % len(candidates)]
                        attempt += 1
                        window.append(asyncio.ensure_future(self._fetch(peer, next_start)))
                        next_start += MAX_BLOCKS_PER_RESPONSE
                    if not window:
                        break
                    outcome = await window.popleft()
                    if outcome is None or not await self._apply_verified(*outcome):
                        order = []  # timed out, nothing newer or a bad batch: the next round rotates
                        break
            finally:
                for fetch in window:
                    fetch.cancel()
                await asyncio.gather(*window, return_exceptions=True)
            if self._height() < first:
                await asyncio.sleep(REQUEST_TIMEOUT_S / 30)  # a round that got nothing does not spin
        log.info("block sync reached height %d", self._height())

    def _height(self) -> int:
        return self.app.info().height

    async def _fetch(self, peer: bytes, start: int) -> Fetched:
        """Request the range at ``start`` from ``peer`` and verify what comes back on the pool.

        None on a timeout or a peer not connected; a peer's error is returned, not raised, so it is
        judged in height order."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(peer, [])
        waiting.append((start, future))
        try:
            if not self.send(peer, codec.encode(["get_blocks", start, MAX_BLOCKS_PER_RESPONSE])):
                return None
            payload = await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        except asyncio.TimeoutError:
            return None
        finally:
            if (start, future) in waiting:
                waiting.remove((start, future))
        try:
            items = await self._verify(decode_batch(payload, self.max_block_bytes))
        except FbciError as exc:
            return peer, exc
        return peer, items

    async def _verify(self, items: list[SyncedItem]) -> list[SyncedItem]:
        """Every certificate against the latest decided set, and the transactions' signatures, on the pool;
        the items, with the set each certificate passed with.

        Raises the error of the lowest item that failed; what passed is only recorded for the transactions
        (in the signature cache), since the certificates are checked for exactly these decoded items."""
        loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.verify_threads, thread_name_prefix="sync-verify")
        sets = [self.app.validator_set(item.block.height).keys for item in items]
        checks = [loop.run_in_executor(self._pool, item.certificate.verify, self.chain_id, keys, self.verifier)
                  for item, keys in zip(items, sets)]
        txs = [] if self.signatures is None else [raw for item in items for raw in item.block.txs
                                                  if sha256(raw) not in self.signatures]
        tx_checks = [loop.run_in_executor(self._pool, self._tx_signature_ok, raw) for raw in txs]
        outcomes = await asyncio.gather(*checks, return_exceptions=True)
        if self.signatures is not None:
            for tx_hash in await asyncio.gather(*tx_checks):
                if tx_hash is not None:
                    self.signatures.add(tx_hash)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [replace(item, checked_with=keys) for item, keys in zip(items, sets)]

    def _tx_signature_ok(self, raw: bytes) -> bytes | None:
        """The hash of a transaction of this chain whose signature is valid, else None (the application
        then refuses it, naming why)."""
        try:
            tx = Transaction.decode(raw, max_size=self.max_tx_bytes)
        except FbciError:
            return None
        return sha256(raw) if tx.chain_id == self.chain_id and tx.verify_signature(raw) else None

    async def _apply_verified(self, sender: bytes, items: list[SyncedItem] | FbciError) -> bool:
        """Apply a verified response in order, reporting the peer of a bad one; whether the round goes on."""
        if isinstance(items, list) and items and items[0].block.height > self._height() + 1:
            return False  # an earlier response stopped short (its size limit): ask again from our height
        done: list[tuple[FinalizedBlock, CommitCertificate]] = []
        try:
            if isinstance(items, FbciError):
                raise items
            await self._apply(items, done)
        except StorageError:  # this validator's own disk, not the peer: ends the task (and the node)
            raise
        except FbciError as exc:
            log.warning("sync: peer %s sent a bad batch: %s", sender.hex()[:12], exc.message)
            self.on_misbehaviour(sender, "bad_sync_batch")
            return False
        finally:
            await self._durable(done)
        return bool(done)

    async def _apply(self, items: list[SyncedItem], done: list[tuple[FinalizedBlock, CommitCertificate]]) -> None:
        """Linkage, execution and storage (no fsync) of verified items, appended to ``done`` as they commit;
        each block only once what it reads beside state is here (``BlockExecutor.ready``)."""
        for item in items:
            if item.block.height > self._height():
                await self.blocks.ready(item.block)
                self._apply_one(item, done)

    def _apply_one(self, item: SyncedItem, done: list[tuple[FinalizedBlock, CommitCertificate]]) -> None:
        if item.block.height <= self._height():
            return
        keys = self.app.validator_set(item.block.height).keys  # decided: the block before it is applied
        if keys != item.checked_with:
            item.certificate.verify(self.chain_id, keys, self.verifier)
        self.app.process_proposal(item.block, None)
        done.append((self.blocks.finalize(item.block, item.raw_certificate, item.raw_block, durable=False),
                     item.certificate))

    async def _durable(self, done: list[tuple[FinalizedBlock, CommitCertificate]]) -> None:
        """One sync on the writer thread for the lot; then the observers and consensus hear of them."""
        if not done:
            return

        def announce() -> None:
            for finalized, certificate in done:
                self.blocks.announce(finalized)
                self.on_synced(certificate.height, certificate)

        await self.writer.submit(self.app.sync, then=announce)

    def apply_batch(self, payload: Any) -> int:
        """Verify and apply one ``blocks`` response on the calling thread (tools and tests; the sync task
        verifies on the pool); raises on the first thing a peer got wrong.

        Blocks are committed without a per-block fsync and made durable once,
        before consensus hears of them, also when a later item is refused (the
        ones before it were verified and stay applied).
        """
        done: list[tuple[FinalizedBlock, CommitCertificate]] = []
        try:
            items = decode_batch(payload, self.max_block_bytes)
            for item in items:
                self._apply_one(item, done)
        finally:
            if done:
                self.app.sync()
                for finalized, certificate in done:
                    self.blocks.announce(finalized)
                    self.on_synced(certificate.height, certificate)
        return len(done)
