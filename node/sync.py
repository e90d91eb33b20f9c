"""Block sync: a lagging or new validator fetches committed blocks from peers.

It trusts no peer. Every block must arrive with a commit certificate that
carries a quorum of valid validator signatures for exactly that height and
block hash (checked against the genesis validator set), and must link to this
validator's own last block (previous hash, previous certificate hash, state
hash). A peer that sends anything else is reported and another is tried. A
failure of this validator's own store (a full disk) is not the peer's: it
ends the sync task, which the runtime's supervisor turns into a stop.

Wire format on the SYNC channel (canonical msgpack):
``["get_blocks", from_height, count]`` and
``["blocks", [[block_bytes, certificate_bytes], ...]]``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from consensus import CommitCertificate, Verifier
from core import codec
from core.block import Block
from core.errors import FbciError, PeerMisbehaved, StorageError
from node.application import Application
from node.consensus_driver import Spawn, unsupervised
from node.ledger import Ledger

log = logging.getLogger(__name__)

MAX_BLOCKS_PER_RESPONSE = 64
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
REQUEST_TIMEOUT_S = 3.0

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
        stored = app.stored_block(height)
        size += len(stored.raw) + len(stored.certificate)
        if items and size > MAX_RESPONSE_BYTES:
            break
        items.append([stored.raw, stored.certificate])
    return codec.encode(["blocks", items])


class BlockSyncer:
    """Fetches blocks up to a target height, verifying each before applying it."""

    def __init__(self, ledger: Ledger, *, chain_id: str, validators: tuple[bytes, ...], verifier: Verifier,
                 send: SendSync, peers: PeersNow, on_synced: Callable[[int, CommitCertificate], None],
                 on_misbehaviour: Callable[[bytes, str], None], spawn: Spawn = unsupervised) -> None:
        self.app = ledger.app
        self.blocks = ledger.blocks
        self.chain_id = chain_id
        self.validators = validators
        self.max_block_bytes = ledger.params.max_block_bytes
        self.verifier = verifier
        self.send = send
        self.peers = peers
        self.on_synced = on_synced
        self.on_misbehaviour = on_misbehaviour
        self.spawn = spawn
        self.target = 0
        self._task: asyncio.Task[None] | None = None
        self._responses: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue(maxsize=16)

    @property
    def syncing(self) -> bool:
        return self._task is not None and not self._task.done()

    def request_sync(self, height: int, hint: bytes | None) -> None:
        self.target = max(self.target, height)
        if not self.syncing and self.target > self._height():
            self._task = self.spawn(self._run(hint), "block-sync")

    def on_response(self, sender: bytes, payload: Any) -> None:
        try:
            self._responses.put_nowait((sender, payload))
        except asyncio.QueueFull:
            log.warning("dropping an unrequested sync response from %s", sender.hex()[:12])

    async def join(self) -> None:
        """Wait until the running sync (if any) has reached its target."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, hint: bytes | None) -> None:
        order = [hint] if hint else []
        attempt = 0
        while self._height() < self.target:
            candidates = order + [p for p in self.peers() if p not in order]
            if not candidates:
                await asyncio.sleep(REQUEST_TIMEOUT_S / 3)  # no peer connected yet: poll again shortly
                continue
            peer = candidates[attempt % len(candidates)]
            attempt += 1
            start = self._height() + 1
            self.send(peer, codec.encode(["get_blocks", start, MAX_BLOCKS_PER_RESPONSE]))
            try:
                sender, payload = await asyncio.wait_for(self._await_from(peer), REQUEST_TIMEOUT_S)
            except asyncio.TimeoutError:
                continue
            try:
                applied = self.apply_batch(payload)
            except StorageError:  # this validator's own disk, not the peer: ends the task (and the node)
                raise
            except FbciError as exc:
                log.warning("sync: peer %s sent a bad batch: %s", sender.hex()[:12], exc.message)
                self.on_misbehaviour(sender, "bad_sync_batch")
                continue
            if not applied:
                order = []  # this peer has nothing newer; rotate
        log.info("block sync reached height %d", self._height())

    def _height(self) -> int:
        return self.app.info().height

    async def _await_from(self, peer: bytes) -> tuple[bytes, Any]:
        while True:
            sender, payload = await self._responses.get()
            if sender == peer:
                return sender, payload

    def apply_batch(self, payload: Any) -> int:
        """Verify and apply one ``blocks`` response; raises on the first thing a peer got wrong.

        Blocks are committed without a per-block fsync and made durable once,
        before consensus hears of them, also when a later item is refused (the
        ones before it were verified and stay applied).
        """
        if not (isinstance(payload, list) and len(payload) == 2 and payload[0] == "blocks"
                and isinstance(payload[1], list)):
            raise PeerMisbehaved("a sync response is ['blocks', [[block, certificate], ...]]")
        applied: list[CommitCertificate] = []
        try:
            for item in payload[1]:
                if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, bytes) for x in item)):
                    raise PeerMisbehaved("each synced item is [block bytes, certificate bytes]")
                block = Block.decode(item[0], max_size=self.max_block_bytes)
                certificate = CommitCertificate.decode(item[1])
                if certificate.height != block.height or certificate.block_hash != block.hash:
                    raise PeerMisbehaved(f"certificate does not certify block {block.height}")
                if block.height <= self._height():
                    continue
                certificate.verify(self.chain_id, self.validators, self.verifier)
                self.app.process_proposal(block, None)
                self.blocks.commit(block, item[1], item[0], durable=False)
                applied.append(certificate)
        finally:
            if applied:
                self.app.sync()
                for certificate in applied:
                    self.on_synced(certificate.height, certificate)
        return len(applied)
