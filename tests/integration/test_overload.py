"""A real validator flooded past its mempool (issue 16 part 4): refusals with codes, commits go on, senders recover.

One validator process with a 40-transaction mempool (and an RPC rate limit
high enough to leave the shedding to it). A client floods it
open-loop, in batches larger than the mempool, each key's nonces running on
whether or not the last was admitted (so refusals leave nonce gaps), until
the chain has grown by ``BLOCKS`` during the flood. Then: every refusal
carried a stable code (``mempool_full`` with its ``retry_after_ms`` hint, or
``rate_limited``), never a transport failure; and a key that was refused
catches up through the client library: its next transactions, signed from
the node's ``next_nonce``, commit, filling its gap instead of stalling.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from client.rpc import RpcClient
from client.session import ChainSession
from core.crypto import PrivateKey
from core.errors import FbciError
from core.tx import Transaction
from devnet.testnet import Testnet
from genesis.home import HomePaths
from genesis.schema import ChainParams
from tests.integration.load import PROGRESS_S, READY_S, chain_id_of
from tests.ports import free_base_port
from tests.testnets import started

pytestmark = pytest.mark.timeout(300)

MEMPOOL_TXS = 40
KEYS = 16
PER_KEY_PER_BATCH = 3
"""48 transactions a batch: past the mempool's 40 within one batch."""
BLOCKS = 3
STABLE = {("mempool_full", -32005), ("rate_limited", -32029)}
RECOVERY_BLOCKS = 20
"""A refused key's next transactions commit within this many blocks of the flood: a key stalled behind its
nonce gap, or a mempool left full of such keys' transactions, would wait out the 300-block TTL."""


def flood_keys(net: Testnet) -> list[PrivateKey]:
    keys = HomePaths(net.specs[0].home).keys_dir
    return [PrivateKey.load(p) for p in sorted(keys.glob("*.json")) if p.stem.startswith(("hospital", "gateway"))]


async def flood(url: str, chain_id: str, keys: list[PrivateKey]) -> tuple[list[object], int, int]:
    """Batches until the chain grew by ``BLOCKS``; the answers, and the heights the flood began and ended at."""
    nonces = dict.fromkeys(range(len(keys)), 0)
    answers: list[object] = []
    async with RpcClient(url) as client:
        start = (await client.status()).height
        height, deadline = start, time.monotonic() + PROGRESS_S
        while height < start + BLOCKS:
            assert time.monotonic() < deadline, f"the chain stayed at {height} under the flood"
            assert max(nonces.values()) + PER_KEY_PER_BATCH < 64, "ran past the nonce window; the chain is too slow"
            calls = []
            for k, key in enumerate(keys):
                for _ in range(PER_KEY_PER_BATCH):
                    nonces[k] += 1
                    tx = Transaction.create(key, chain_id, nonces[k], "test.echo", {"msg": b"flood"})
                    calls.append(("tx_submit", {"tx": tx.encode().hex()}))
            answers += await client.batch(calls)
            height = (await client.status()).height
    return answers, start, height


async def height_of(url: str) -> int:
    async with RpcClient(url) as client:
        return (await client.status()).height


def test_a_flooded_validator_refuses_with_codes_keeps_committing_and_refused_senders_recover(tmp_path: Path) -> None:
    params = ChainParams(mempool_max_txs=MEMPOOL_TXS, rpc_requests_per_second=10_000, rpc_burst=10_000)
    net = Testnet.create(1, tmp_path / "net", free_base_port(4), params=params, clients=KEYS)
    with started(net, READY_S):
        url = net.specs[0].rpc_url
        keys = flood_keys(net)
        assert len(keys) == KEYS
        answers, start, end = asyncio.run(flood(url, chain_id_of(net), keys))

        refusals = [a for a in answers if isinstance(a, Exception)]
        assert all(isinstance(r, FbciError) for r in refusals), Counter(type(r).__name__ for r in refusals)
        kinds = Counter((r.reason, r.code) for r in refusals if isinstance(r, FbciError))
        assert set(kinds) <= STABLE, kinds
        full = [r for r in refusals if isinstance(r, FbciError) and r.reason == "mempool_full"]
        assert full and all(isinstance(r.data.get("retry_after_ms"), int) for r in full), kinds
        assert len(answers) - len(refusals) >= MEMPOOL_TXS and end >= start + BLOCKS

        end = asyncio.run(height_of(url))
        refused = next(k for k, key in enumerate(keys) if any(
            isinstance(r, FbciError) and r.reason == "mempool_full"
            for r in answers[k * PER_KEY_PER_BATCH:(k + 1) * PER_KEY_PER_BATCH]))
        with ChainSession(url, keys[refused], verify=False) as session:
            for i in range(2):
                info = session.submit_commit("test.echo", {"msg": b"after the flood %d" % i}, timeout_s=PROGRESS_S)
                assert info.receipt.ok and info.receipt.height <= end + RECOVERY_BLOCKS, info.receipt
