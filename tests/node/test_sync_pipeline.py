"""Block sync at its verify bound (issue 16, part 5): each certificate verified once, on the pool, with
several requests in flight, and still nothing applied that a syncing node must refuse."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from consensus import CommitCertificate, Ed25519Verifier
from core import codec
from core.crypto import PrivateKey
from node import sync as sync_module
from node.ledger import Ledger
from node.sync import BlockSyncer, serve_request
from tests.node.helpers import CHAIN, VALIDATORS, VKEYS, certify
from tests.node.test_chain import grow, new_chain


class CountingVerifier:
    """The chain's verifier, counting calls and the threads they ran on."""

    def __init__(self) -> None:
        self.inner = Ed25519Verifier(CHAIN)
        self.threads: list[str] = []
        self._lock = threading.Lock()

    def verify(self, public_key: bytes, kind: str, message: bytes, signature: bytes) -> bool:
        with self._lock:
            self.threads.append(threading.current_thread().name)
        return self.inner.verify(public_key, kind, message, signature)


@pytest.fixture
def chains(tmp_path) -> Any:
    """A source chain and an empty one, closed after the test (an open LevelDB left to the garbage collector
    frees its descriptors at a random later moment, under another test's feet)."""
    made = [new_chain(tmp_path, "src"), new_chain(tmp_path, "dst")]
    yield made
    for chain in made:
        chain.app.database.close()  # type: ignore[attr-defined]


def _syncer(fresh: Ledger, send: Any, peers: list[bytes], verifier: Any, synced: list[int],
            misbehaving: list[str] | None = None) -> BlockSyncer:
    return BlockSyncer(fresh, chain_id=CHAIN, verifier=verifier, send=send,
                       peers=lambda: peers, on_synced=lambda h, c: synced.append(h),
                       on_misbehaviour=lambda p, what: (misbehaving if misbehaving is not None else []).append(what),
                       signatures=fresh.app.signatures)  # type: ignore[attr-defined]


async def _sync(syncer: BlockSyncer, target: int) -> None:
    syncer.request_sync(target, None)
    await asyncio.wait_for(syncer.join(), 20)
    await syncer.stop()
    syncer.writer.close()


def test_each_certificate_is_verified_once_and_on_the_pool(chains) -> None:
    source, fresh = chains
    grow(source, 6)
    verifier = CountingVerifier()
    fresh.app.verifier = verifier  # type: ignore[attr-defined]  # the LastCommit check counts too
    synced: list[int] = []

    async def run() -> None:
        syncer: BlockSyncer

        def send(peer: bytes, data: bytes) -> bool:
            reply = serve_request(source.app, codec.decode(data))
            asyncio.get_running_loop().call_soon(syncer.on_response, peer, codec.decode(reply))
            return True

        syncer = _syncer(fresh, send, [VKEYS[1]], verifier, synced)
        await _sync(syncer, 6)

    asyncio.run(run())
    assert fresh.app.info() == source.app.info() and synced == [1, 2, 3, 4, 5, 6]
    assert len(verifier.threads) == 6 * 3  # three signatures per certificate; no LastCommit checked again
    assert all(name.startswith("sync-verify") for name in verifier.threads)


def test_several_requests_are_in_flight_and_blocks_apply_in_height_order(chains, monkeypatch) -> None:
    monkeypatch.setattr(sync_module, "MAX_BLOCKS_PER_RESPONSE", 2)
    source, fresh = chains
    grow(source, 8)
    synced: list[int] = []
    requests: list[tuple[bytes, Any]] = []

    async def run() -> None:
        syncer = _syncer(fresh, lambda peer, data: requests.append((peer, codec.decode(data))) or True,
                         [VKEYS[1], VKEYS[2]], Ed25519Verifier(CHAIN), synced)
        syncer.request_sync(8, None)
        deadline = asyncio.get_running_loop().time() + 5
        while len(requests) < sync_module.IN_FLIGHT:
            assert asyncio.get_running_loop().time() < deadline, f"only {len(requests)} requests out"
            await asyncio.sleep(0.005)
        assert [r[1] for r in requests] == [["get_blocks", s, 2] for s in (1, 3, 5, 7)]
        assert {peer for peer, _ in requests} == {VKEYS[1], VKEYS[2]}  # spread over the peers
        for peer, request in reversed(requests):  # the last range answers first: applied only in order
            syncer.on_response(peer, codec.decode(serve_request(source.app, request)))
        await asyncio.wait_for(syncer.join(), 20)
        await syncer.stop()
        syncer.writer.close()

    asyncio.run(run())
    assert synced == list(range(1, 9)) and fresh.app.info() == source.app.info()


@pytest.mark.parametrize("tamper", ["too_few_signatures", "outsider_signature"])
def test_the_pool_refuses_what_a_syncing_node_must_refuse(chains, tamper) -> None:
    source, fresh = chains
    blocks = grow(source, 3)
    items = codec.decode(serve_request(source.app, ["get_blocks", 1, 64]))[1]
    signers = VALIDATORS[:2] + ([PrivateKey(bytes([99]) * 32)] if tamper == "outsider_signature" else [])
    items[1][1] = certify(blocks[1], signers)
    synced: list[int] = []
    misbehaving: list[str] = []

    async def run() -> None:
        def send(peer: bytes, data: bytes) -> bool:
            start = codec.decode(data)[1]
            reply = ["blocks", [i for i in items if CommitCertificate.decode(i[1]).height >= start]]
            asyncio.get_running_loop().call_soon(syncer.on_response, peer, reply)
            return True

        syncer = _syncer(fresh, send, [VKEYS[1]], Ed25519Verifier(CHAIN), synced, misbehaving)
        syncer.request_sync(3, None)
        deadline = asyncio.get_running_loop().time() + 5
        while not misbehaving:
            assert asyncio.get_running_loop().time() < deadline, "the bad batch was never reported"
            await asyncio.sleep(0.005)
        await syncer.stop()
        syncer.writer.close()

    asyncio.run(run())
    assert misbehaving[0] == "bad_sync_batch" and fresh.app.info().height == 0 and synced == []
