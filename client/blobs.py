"""Pushing a blob to a validator and pulling one back, chunk by chunk, resumably and verified.

:func:`push_blob` first asks ``blob_status`` which chunks the validator holds
and sends only the others, so calling it again after either side died (a
killed validator, a dropped connection, a restarted training job) resumes the
upload where it stopped and ends with the same ref. :func:`pull_blob` checks
every chunk against the ref's ``chunk_root`` as it arrives and the whole
against its ``sha256``, so a validator that lies is caught at the first bad
chunk (:class:`core.errors.BadChunk`), never trusted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from client.rpc import RpcClient
from core.blob_api import (
    BLOB_AVAILABILITY, BLOB_GET, BLOB_PUT, BLOB_STATUS, BlobAvailability, BlobAvailabilityParams, BlobChunk,
    BlobPutResult, BlobRefParams, BlobStatus,
)
from core.blobs import BlobRef, blob_ref, chunk_hashes, chunk_proof, split, verify_chunk
from core.errors import BlobMismatch
from core.hashing import sha256
from core.wire import from_wire


async def blob_status(rpc: RpcClient, ref: BlobRef) -> BlobStatus:
    parsed: BlobStatus = from_wire(BlobStatus, await rpc.call(BLOB_STATUS, BlobRefParams.of(ref)))
    return parsed


async def push_blob(rpc: RpcClient, data: bytes | Path, *, in_flight: int = 2) -> BlobRef:
    """Upload ``data`` (or the file at that path) to the validator behind ``rpc``; its ref once the validator
    holds it complete. ``in_flight``: chunks sent at once (each is a request of twice its size in hex)."""
    blob = data.read_bytes() if isinstance(data, Path) else data
    ref = blob_ref(blob)
    status = await blob_status(rpc, ref)
    if status.complete:
        return ref
    held = set(status.held)
    hashes, chunks = chunk_hashes(blob), split(blob)
    named = BlobRefParams.of(ref)
    gate = asyncio.Semaphore(in_flight)

    async def send(index: int) -> BlobPutResult:
        async with gate:
            params = {**named, "index": index, "chunk": chunks[index].hex(),
                      "proof": [h.hex() for h in chunk_proof(hashes, index)]}
            result: BlobPutResult = from_wire(BlobPutResult, await rpc.call(BLOB_PUT, params))
            return result

    results = await asyncio.gather(*(send(i) for i in range(ref.chunks) if i not in held))
    if not any(r.complete for r in results) and not (await blob_status(rpc, ref)).complete:
        raise BlobMismatch(f"every chunk of blob {ref.sha256.hex()} was sent but the validator does not hold it "
                           "complete")
    return ref


async def pull_blob(rpc: RpcClient, ref: BlobRef, *, in_flight: int = 2) -> bytes:
    """The blob ``ref`` names, from the validator behind ``rpc``, every chunk verified as it arrives."""
    gate = asyncio.Semaphore(in_flight)

    async def fetch(index: int) -> bytes:
        async with gate:
            answer = BlobChunk.from_json(await rpc.call(BLOB_GET, {**BlobRefParams.of(ref), "index": index}))
        verify_chunk(ref, index, answer.chunk, answer.proof)
        return answer.chunk

    blob = b"".join(await asyncio.gather(*(fetch(i) for i in range(ref.chunks))))
    if sha256(blob) != ref.sha256:
        raise BlobMismatch(f"the chunks verify but the blob's SHA-256 is not {ref.sha256.hex()}")
    return blob


async def availability(rpc: RpcClient, ref: BlobRef) -> BlobAvailability:
    """Who attested holding the blob on chain, and whether a quorum of validators did."""
    return await rpc.query(BLOB_AVAILABILITY, BlobAvailabilityParams(sha256=ref.sha256))
