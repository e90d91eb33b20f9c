"""Blobs on a real 4-validator testnet: a client pushes to one validator, all four end up holding the blob
and a quorum attests it on chain; a validator killed with SIGKILL mid-transfer resumes where it stopped."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from client.blobs import availability, blob_status, pull_blob, push_blob
from client.rpc import RpcClient
from core.blob_api import BlobRefParams
from core.blobs import CHUNK_BYTES, blob_ref, chunk_hashes, chunk_proof, split
from devnet.testnet import Testnet
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

        async def resumed() -> list[int] | None:
            async with RpcClient(url) as rpc:
                return (await blob_status(rpc, REF)).held
        assert await eventually(resumed, "validator 0 to answer after its restart") == [0, 2]
        async with RpcClient(url) as rpc:
            assert await push_blob(rpc, DATA) == REF  # sends chunks 1 and 3 only

        # A peer is pulling from validator 0 now: kill it mid-pull; on restart it resumes from its partial file.
        net.kill(3, signal.SIGKILL)
        net.restart(3)
        for i in range(4):
            await eventually(lambda i=i: _complete_on(net, i), f"validator {i} to hold the blob")

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
