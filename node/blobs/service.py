"""The validator's blob machinery in one piece: store, RPC endpoint, replication, pruning.

The runtime builds one :class:`BlobService` and wires it to the peer
transport (the BLOB channel), the RPC server (``blob_*`` methods), its own
transactions (``blob.attest``) and the block executor (fetch before execute);
the store is also the :class:`core.blobs.BlobSource` contracts read from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.blobs import MAX_BLOB_BYTES, BlobRef, keeps, needs
from core.state import StateView
from node.blobs.endpoint import BlobEndpoint, UploadQuota
from node.blobs.pruning import PrunePolicy, Uses, to_delete
from node.blobs.replication import BlobCounters, ReplicationTuning, Replicator, Spawn
from node.blobs.store import BlobStore

log = logging.getLogger(__name__)


class BlobService:
    def __init__(self, root: Path, me: bytes, *, send: Callable[[bytes, bytes], bool],
                 peers: Callable[[], list[bytes]], attest: Callable[[BlobRef], None],
                 state: Callable[[], StateView], height: Callable[[], int],
                 on_misbehaviour: Callable[[bytes, str], None], spawn: Spawn,
                 policy: PrunePolicy = PrunePolicy(), tuning: ReplicationTuning = ReplicationTuning(),
                 quota: UploadQuota = UploadQuota(), max_blob_bytes: int = MAX_BLOB_BYTES,
                 store: BlobStore | None = None) -> None:
        self.io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="blobs")
        """Blob file I/O and hashing, off the event loop and apart from the state-reads worker."""
        self.store = BlobStore(root, max_blob_bytes) if store is None else store
        """``store``: the one the application already writes model versions into (``LedgerApplication.open``)."""
        self.counters = BlobCounters()
        self.state = state
        self.spawn = spawn
        self.policy = policy
        self.replicator = Replicator(self.store, me, send=send, peers=peers, attest=attest, state=state,
                                     height=height, on_misbehaviour=on_misbehaviour, io=self.io, spawn=spawn,
                                     tuning=tuning, counters=self.counters)
        self.endpoint = BlobEndpoint(self.store, self.io, self.replicator.completed, self.counters, quota)
        self.uses = Uses(root / "uses.json")

    def start(self) -> None:
        self.learn_uses()
        self.spawn(self.replicator.announce_loop(), "blob-announce")
        self.spawn(self._prune_loop(), "blob-prune")

    def close(self) -> None:
        self.io.shutdown(wait=True, cancel_futures=True)

    def learn_uses(self, *_: object) -> None:
        """A commit observer: remember which rounds need which blobs (the pruner's memory)."""
        if self.uses.learn(needs(self.state())):
            self.uses.save()

    async def prune(self, now_s: float | None = None) -> list[BlobRef]:
        """Delete what the policy says to now; the deleted refs."""
        state = self.state()
        loop = asyncio.get_running_loop()
        holdings = await loop.run_in_executor(self.io, lambda: list(self.store.holdings()))
        doomed = to_delete(holdings, list(needs(state)), list(keeps(state)), self.uses, self.policy,
                           time.time() if now_s is None else now_s)
        for ref in doomed:
            await loop.run_in_executor(self.io, self.store.delete, ref)
            self.uses.forget(ref.sha256)
            log.info("pruned blob %s (%d bytes)", ref.sha256.hex()[:16], ref.size)
        if doomed:
            self.uses.save()
        return doomed

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(self.policy.interval_s)
            await self.prune()
