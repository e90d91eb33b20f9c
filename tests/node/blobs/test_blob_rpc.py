"""blob_put / blob_status / blob_get over the real RPC server, and the client's push and pull."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from client.blobs import blob_status, pull_blob, push_blob
from client.rpc import RpcClient
from core.blob_api import BlobRefParams
from core.blobs import CHUNK_BYTES, BlobRef, blob_ref, chunk_hashes, chunk_proof, split
from core.errors import BadChunk, BlobUnknown
from node.app_reads import RPC_QUERIES
from node.blobs.endpoint import BlobEndpoint, UploadQuota
from node.blobs.replication import BlobCounters
from node.blobs.store import BlobStore
from node.rpc.server import RpcLimits, create_app

DATA = random.Random(3).randbytes(2 * CHUNK_BYTES + 123)
REF = blob_ref(DATA)
LIMITS = RpcLimits(max_body_bytes=2 * CHUNK_BYTES + (64 << 10))


async def post_rpc(http: Any, method: str, params: Any) -> Any:
    """One JSON-RPC call through an aiohttp test client; the decoded body (no traceback in it)."""
    resp = await http.post("/rpc", json={"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
    text = await resp.text()
    assert resp.status == 200 and "Traceback" not in text
    return json.loads(text)


def _endpoint(root: Path, max_blob_bytes: int = 1 << 30, quota: UploadQuota = UploadQuota()) -> tuple[
        BlobEndpoint, list[BlobRef]]:
    done: list[BlobRef] = []
    return BlobEndpoint(BlobStore(root, max_blob_bytes), ThreadPoolExecutor(1), done.append, BlobCounters(),
                        quota), done


def _put(ref: BlobRef, index: int, chunk: bytes, proof: list[bytes]) -> dict[str, Any]:
    return {**BlobRefParams.of(ref), "index": index, "chunk": chunk.hex(), "proof": [h.hex() for h in proof]}


async def test_a_pushed_blob_resumes_from_status_completes_once_and_pulls_back_verified(serve, fake_node, tmp_path):
    endpoint, done = _endpoint(tmp_path)
    async with serve(create_app(fake_node, RPC_QUERIES, limits=LIMITS, blobs=endpoint)) as http:
        async with RpcClient(str(http.make_url("/rpc"))) as rpc:
            hashes = chunk_hashes(DATA)
            await rpc.call("blob_put", _put(REF, 1, split(DATA)[1], chunk_proof(hashes, 1)))  # an earlier try
            status = await blob_status(rpc, REF)
            assert status.held == [1] and not status.complete
            assert await push_blob(rpc, DATA) == REF
            assert endpoint.counters.chunks_in["client"] == 3  # chunk 1 was not sent again
            assert (await blob_status(rpc, REF)).held == [0, 1, 2] and done == [REF]
            assert await push_blob(rpc, DATA) == REF and done == [REF]  # idempotent: nothing sent, no new event
            assert await pull_blob(rpc, REF) == DATA


async def test_bad_puts_get_stable_codes_and_store_nothing(serve, fake_node, tmp_path):
    endpoint, done = _endpoint(tmp_path, max_blob_bytes=2 * CHUNK_BYTES,
                               quota=UploadQuota(per_client_bytes=CHUNK_BYTES + 150))
    small = blob_ref(b"s" * 100)
    hashes, chunks = chunk_hashes(DATA), split(DATA)
    flipped = bytes([chunks[0][0] ^ 1]) + chunks[0][1:]
    cases = [
        (_put(REF, 0, chunks[0], chunk_proof(hashes, 0)), -32152),                    # past max_blob_bytes
        (_put(small, 0, b"t" * 100, []), -32151),                                     # not the chunk of the ref
        (_put(small, 1, b"s" * 100, []), -32151),                                     # index past the blob
        ({**_put(small, 0, b"s" * 100, []), "chunk": "zz"}, -32602),                  # not hex
        ({**_put(small, 0, b"s" * 100, []), "sha256": "00" * 31}, -32602),            # short hash
        ({**_put(small, 0, b"s" * 100, []), "size": 0}, -32602),                      # empty blob
        ({**_put(small, 0, b"s" * 100, []), "extra": 1}, -32602),                     # unknown param
    ]
    big = blob_ref(DATA[:CHUNK_BYTES + 100])
    big_hashes = chunk_hashes(DATA[:CHUNK_BYTES + 100])
    async with serve(create_app(fake_node, RPC_QUERIES, limits=LIMITS, blobs=endpoint)) as http:
        for params, code in cases:
            body = await post_rpc(http, "blob_put", params)
            assert body["error"]["code"] == code, (params.get("index"), body)
        assert not list((tmp_path / "partial").iterdir()) and not list((tmp_path / "complete").iterdir())
        first = await post_rpc(http, "blob_put", _put(big, 0, DATA[:CHUNK_BYTES], chunk_proof(big_hashes, 0)))
        assert first["result"] == {"complete": False, "held": 1}
        over = await post_rpc(http, "blob_put", _put(small, 0, b"s" * 100, []))  # a second upload: over quota
        assert over["error"]["code"] == -32005 and over["error"]["data"]["scope"] == "client"
        unknown = await post_rpc(http, "blob_get", {**BlobRefParams.of(small), "index": 0})
        assert unknown["error"]["code"] == BlobUnknown.code
        partial = await post_rpc(http, "blob_get", {**BlobRefParams.of(big), "index": 0})
        assert partial["error"]["code"] == -32153
        async with RpcClient(str(http.make_url("/rpc"))) as rpc:
            with pytest.raises(BadChunk):  # the client reads the code back as the same class
                await rpc.call("blob_put", _put(big, 1, flipped[:100], chunk_proof(big_hashes, 1)))
    assert done == [] and endpoint.store.held_chunks(big) == [0]
