"""What the blob JSON-RPC methods do on a validator: admit, store, answer.

An upload is not a transaction, so it has no signer to charge: it is charged
to the client address that began it. A new upload is admitted only while that
address's unfinished uploads, and all of them together, stay within their byte
budgets (a finished blob frees its share; the pruner deletes an unreferenced
upload after its TTL). Each call costs one rate-limit token at the dispatcher,
like every call. Every chunk is checked against its ref before a byte is
written, so bad input changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from core.blob_api import BlobChunk, BlobPutParams, BlobPutResult, BlobRefParams, BlobStatus, ChunkParams
from core.blobs import BlobRef
from core.errors import BadChunk, BlobTooLarge, QuotaExceeded
from node.blobs.replication import BlobCounters
from node.blobs.store import BlobStore

T = TypeVar("T")


@dataclass(frozen=True)
class UploadQuota:
    per_client_bytes: int = 2 << 30
    """Unfinished uploads one client address may hold, in bytes of the blobs' sizes."""
    total_bytes: int = 8 << 30
    """Unfinished uploads of all clients together."""


class BlobEndpoint:
    """Implements ``node.rpc.methods.BlobApi`` over the node's blob store."""

    def __init__(self, store: BlobStore, io: Executor, on_complete: Callable[[BlobRef], None],
                 counters: BlobCounters, quota: UploadQuota = UploadQuota()) -> None:
        self.store = store
        self.io = io
        self.on_complete = on_complete
        self.counters = counters
        self.quota = quota
        self._owners: dict[bytes, tuple[str, int]] = {}
        """The client address that began each unfinished upload this run, and its size."""

    async def _run_io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    def _admit(self, ref: BlobRef, client: str) -> None:
        if ref.size > self.store.max_blob_bytes:
            raise BlobTooLarge(f"a blob of {ref.size} bytes exceeds this chain's limit of {self.store.max_blob_bytes}",
                               data={"max_blob_bytes": self.store.max_blob_bytes})
        if ref.sha256 in self._owners or self.store.held_chunks(ref):
            return  # an upload under way (perhaps resumed after a restart): no new budget
        mine = sum(size for owner, size in self._owners.values() if owner == client)
        if mine + ref.size > self.quota.per_client_bytes:
            raise QuotaExceeded(f"{client} has {mine} bytes of unfinished uploads; another {ref.size} would pass "
                                f"its budget of {self.quota.per_client_bytes}", data={"scope": "client"})
        if self.store.partial_bytes() + ref.size > self.quota.total_bytes:
            raise QuotaExceeded("this validator holds as many unfinished uploads as it takes; retry later",
                                data={"scope": "node"})
        self._owners[ref.sha256] = (client, ref.size)

    async def put(self, p: BlobPutParams, client: str) -> BlobPutResult:
        ref = p.ref
        self._admit(ref, client)
        already = self.store.has(ref)
        try:
            complete = await self._run_io(self.store.put_chunk, ref, p.index, p.chunk, p.proof)
        except BadChunk:
            self.counters.bad_chunks["client"] += 1
            raise
        finally:
            if not self.store.held_chunks(ref):  # refused before anything was stored: the budget is free again
                self._owners.pop(ref.sha256, None)
        self.counters.chunks_in["client"] += 1
        if complete:
            self._owners.pop(ref.sha256, None)
            if not already:
                self.on_complete(ref)
        return BlobPutResult(complete=complete, held=len(self.store.held_chunks(ref)))

    async def status(self, p: BlobRefParams) -> BlobStatus:
        ref = p.ref
        held = await self._run_io(self.store.held_chunks, ref)
        return BlobStatus(held=held, complete=self.store.has(ref))

    async def get(self, p: ChunkParams) -> BlobChunk:
        answer = await self._run_io(self.store.get_chunk, p.ref, p.index)
        self.counters.chunks_out["client"] += 1
        return BlobChunk(chunk=answer.chunk, proof=answer.proof)
