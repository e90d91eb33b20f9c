"""Blobs on a real 4-validator testnet: a client pushes to one validator, all four end up holding the blob
and a quorum attests it on chain; validators killed with SIGKILL mid-transfer (the one taking the client's
upload, and one that had pulled half the blob from its peers) resume where they stopped."""

from __future__ import annotations

import asyncio
import random
import signal
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from client.blobs import availability, blob_status, pull_blob, push_blob
from client.rpc import RpcClient
from core.blob_api import BlobRefParams
from core.blobs import CHUNK_BYTES, MAX_BLOB_BYTES, blob_ref, chunk_hashes, chunk_proof, split
from devnet.testnet import Testnet
from node.blobs.store import BlobStore
from tests.testnets import running_testnet

T = TypeVar("T")
DATA = random.Random(12).randbytes(3 * CHUNK_BYTES + 1000)
REF = blob_ref(DATA)
TIMEOUT_S = 120.0


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = TIMEOUT_S) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = await probe()
        except Exception:  # a validator restarting does not answer yet
            found = None
        if found:
            return found
        await asyncio.sleep(0.25)  # polling remote processes for a condition, bounded by the deadline
    raise AssertionError(f"timed out waiting for {what}")


def _counter(net: Testnet, i: int, name: str, source: str) -> float:
    with urllib.request.urlopen(net.specs[i].rpc_url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("source") == source:
                return sample.value
    raise AssertionError(f"{name}{{source={source}}} is not exported")


async def _complete_on(net: Testnet, i: int) -> bool:
    async with RpcClient(net.specs[i].rpc_url) as rpc:
        return (await blob_status(rpc, REF)).complete


async def test_a_blob_pushed_to_one_validator_reaches_all_four_and_survives_sigkill_mid_transfer(tmp_path: Path):
    with running_testnet(tmp_path, 4) as net:
        url = net.specs[0].rpc_url
        hashes, chunks = chunk_hashes(DATA), split(DATA)
        async with RpcClient(url) as rpc:  # the first half of an upload, then validator 0 dies
            for i in (0, 2):
                await rpc.call("blob_put", {**BlobRefParams.of(REF), "index": i, "chunk": chunks[i].hex(),
                                            "proof": [h.hex() for h in chunk_proof(hashes, i)]})
        net.kill(0, signal.SIGKILL)
        net.restart(0)
        # Validator 3 dies too, having pulled chunks 1 and 3 before (written into its store as its pull would).
        net.kill(3, signal.SIGKILL)
        pulled = BlobStore(net.specs[3].home / "data" / "blobs", MAX_BLOB_BYTES)
        for i in (1, 3):
            pulled.put_chunk(REF, i, chunks[i], chunk_proof(hashes, i))
        net.restart(3)

        async def resumed() -> list[int] | None:
            async with RpcClient(url) as rpc:
                return (await blob_status(rpc, REF)).held
        assert await eventually(resumed, "validator 0 to answer after its restart") == [0, 2]
        async with RpcClient(url) as rpc:
            assert await push_blob(rpc, DATA) == REF  # sends chunks 1 and 3 only
            assert (await blob_status(rpc, REF)).complete
        for i in range(4):
            await eventually(lambda i=i: _complete_on(net, i), f"validator {i} to hold the blob")
        assert _counter(net, 0, "fbci_blob_chunks_in_total", "client") == 2  # after its restart: the missing two
        assert _counter(net, 3, "fbci_blob_chunks_in_total", "peer") == 2  # its pull resumed, too

        async def quorum() -> object:
            async with RpcClient(net.specs[2].rpc_url) as rpc:
                answer = await availability(rpc, REF)
                return answer if answer.available == REF else None
        answer = await eventually(quorum, "a quorum of attestations on chain")
        assert len({a.validator for a in answer.attestations}) >= 3
        async with RpcClient(net.specs[3].rpc_url) as rpc:  # a validator that never saw the client
            assert await pull_blob(rpc, REF) == DATA
        for i in range(4):
            assert net.alive(i), f"validator {i} died"
