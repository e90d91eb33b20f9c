"""Fixtures for node tests: an in-process fake ``NodeApi`` and coroutine tests without a plugin.

``async def`` tests run through the hook in ``tests/conftest.py``; ``serve(app)`` runs an aiohttp application on a
loopback port for the length of an ``async with``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.crypto import PrivateKey
from core.errors import AlreadyKnown, BadNonce, BadSignature, NotFound, WrongChain
from core.tx import Transaction
from node.rpc.api import AccountInfo, AlertPage, AlertQuery, NodeStatus, TxCommitResult
from node.rpc.subscriptions import EventHub

CHAIN_ID = "fbci-test"


@asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
def serve() -> Any:
    return _serve


class FakeNode:
    """Enough of a node to answer every RPC method: nonce checks, signatures, blocks, alerts, events."""

    def __init__(self) -> None:
        self.events = EventHub()
        self.mempool: dict[bytes, Transaction] = {}
        self.nonces: dict[bytes, int] = {}
        self.blocks: list[dict[str, Any]] = []
        self.txs: dict[bytes, dict[str, Any]] = {}
        self.genesis_error: Exception | None = None
        self.alerts = [{"id": i, "alert_class": "spoofing" if i % 2 else "flooding", "height": i, "severity": i % 4}
                       for i in range(1, 26)]

    async def status(self) -> NodeStatus:
        latest = self.blocks[-1]["hash"] if self.blocks else bytes(32)
        return NodeStatus(CHAIN_ID, "hospital-a", len(self.blocks), latest, 0, 3, len(self.mempool), False)

    async def submit_tx(self, raw: bytes) -> bytes:
        tx = Transaction.decode(raw, max_size=1 << 20)
        if tx.chain_id != CHAIN_ID:
            raise WrongChain(f"transaction is for chain {tx.chain_id!r}")
        if not tx.verify_signature():
            raise BadSignature("signature does not verify")
        if tx.hash in self.mempool or tx.hash in self.txs:
            raise AlreadyKnown("transaction already known")
        expected = self.nonces.get(tx.sender, 0) + 1
        if tx.nonce != expected:
            raise BadNonce(f"expected nonce {expected}, got {tx.nonce}", data={"expected": expected})
        self.nonces[tx.sender] = tx.nonce
        self.mempool[tx.hash] = tx
        return tx.hash

    async def submit_tx_commit(self, raw: bytes, timeout_s: float) -> TxCommitResult:
        tx_hash = await self.submit_tx(raw)
        self.commit()
        entry = self.txs[tx_hash]
        return TxCommitResult(tx_hash, entry["height"], entry["index"], {"ok": True})

    def commit(self) -> dict[str, Any]:
        height = len(self.blocks) + 1
        txs = list(self.mempool.values())
        self.mempool.clear()
        block = {"height": height, "hash": height.to_bytes(32, "big"), "txs": [tx.encode() for tx in txs],
                 "certificate": {"signatures": [b"\x01" * 64]}}
        self.blocks.append(block)
        for index, tx in enumerate(txs):
            self.txs[tx.hash] = {"hash": tx.hash, "height": height, "index": index, "kind": tx.kind,
                                 "sender": tx.sender, "nonce": tx.nonce}
        self.events.publish("new_block", {"height": height, "hash": block["hash"]})
        return block

    async def get_tx(self, tx_hash: bytes) -> dict[str, Any]:
        if tx_hash not in self.txs:
            raise NotFound(f"no committed transaction {tx_hash.hex()}")
        return self.txs[tx_hash]

    async def get_block(self, height: int | None, block_hash: bytes | None) -> dict[str, Any]:
        for block in reversed(self.blocks):
            if (height is None or block["height"] == height) and (block_hash is None or block["hash"] == block_hash):
                return block
        raise NotFound("no such block")

    async def validators(self) -> list[dict[str, Any]]:
        return [{"name": "hospital-a", "public_key": b"\x07" * 32, "power": 1}]

    async def genesis(self) -> dict[str, Any]:
        if self.genesis_error is not None:
            raise self.genesis_error
        return {"chain_id": CHAIN_ID, "validators": await self.validators()}

    async def account(self, public_key: bytes) -> AccountInfo:
        return AccountInfo(public_key, ("hospital",), self.nonces.get(public_key, 0) + 1)

    async def query_alerts(self, query: AlertQuery) -> AlertPage:
        start = int(query.cursor or 0)
        matching = [a for a in self.alerts[start:]
                    if (query.alert_class is None or a["alert_class"] == query.alert_class)
                    and (query.from_height is None or a["height"] >= query.from_height)
                    and (query.to_height is None or a["height"] <= query.to_height)]
        page = matching[:query.limit]
        more = len(matching) > query.limit
        return AlertPage(page, str(self.alerts.index(page[-1]) + 1) if more else None)

    async def fl_models(self) -> list[dict[str, Any]]:
        return [{"model_id": "sepsis", "latest_version": 2}]

    async def fl_model_get(self, model_id: str, version: int | None) -> dict[str, Any]:
        if model_id != "sepsis" or (version is not None and version > 2):
            raise NotFound(f"no model {model_id} version {version}")
        return {"model_id": model_id, "version": 2 if version is None else version, "weights": b"\x00\x01"}

    async def fl_rounds(self, model_id: str) -> list[dict[str, Any]]:
        if model_id != "sepsis":
            raise NotFound(f"no model {model_id}")
        return [{"round": 1, "updates": 3}, {"round": 2, "updates": 4}]


@pytest.fixture
def fake_node() -> FakeNode:
    return FakeNode()


@pytest.fixture
def client_key() -> PrivateKey:
    return PrivateKey(b"\x11" * 32)


def _make_tx(key: PrivateKey, nonce: int, *, chain_id: str = CHAIN_ID) -> Transaction:
    return Transaction.create(key, chain_id, nonce, "fl.submit_update", {"round": 1, "delta": b"\x00" * 8})


@pytest.fixture
def make_tx() -> Any:
    """``make_tx(key, nonce, chain_id=...)``: a signed transaction."""
    return _make_tx
