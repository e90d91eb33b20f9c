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

from core.api import (
    BLOCK_GET, TX_GET, AccountInfo, BlockGetParams, BlockInfo, NodeStatus, Params, Receipt, TxCommitResult,
    TxGetParams, TxInfo,
)
from core.crypto import PrivateKey
from core.errors import AlreadyKnown, BadNonce, BadSignature, NotFound, WrongChain
from core.hashing import sha256
from core.tx import Transaction
from fl_contracts.contract import ModelVersion, RoundRecord
from fl_contracts.queries import FL_MODEL_GET, FL_MODELS, FL_ROUNDS, ModelGetParams, RegisteredModel, RoundsParams
from fl_contracts.spec import ModelSpec
from genesis.create import assemble
from genesis.schema import GenesisWithHash, ValidatorInfo
from ids.alerts import StoredAlert
from ids.queries import ALERTS_QUERY, AlertPage, AlertsQueryParams
from node.rpc.subscriptions import EventHub
from tests.genesis.samples import sample_parts

CHAIN_ID = "fbci-test"
SEPSIS = ModelSpec.for_sequential("sepsis", [3, 2], min_updates=2, max_updates=4, round_length_blocks=5)


@asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
def serve() -> Any:
    return _serve


def _alert(i: int) -> StoredAlert:
    return StoredAlert(hospital="st-mary", subject_kind="device", subject=sha256(b"dev%d" % i),
                       alert_class="spoofing" if i % 2 else "flooding", severity=i % 4 + 1, window_start_ms=0,
                       window_ms=60_000, count=1, score_ppm=900_000, feature_digest=bytes(32), model_version=0,
                       alert_id=i, height=i, block_time_ms=1000 * i, sender=b"\x05" * 32, tx_hash=sha256(b"%d" % i))


class FakeNode:
    """Enough of a node to answer every RPC method: nonce checks, signatures, blocks, alerts, events."""

    def __init__(self) -> None:
        self.events = EventHub()
        self.mempool: dict[bytes, Transaction] = {}
        self.nonces: dict[bytes, int] = {}
        self.blocks: list[BlockInfo] = []
        self.txs: dict[bytes, TxInfo] = {}
        self.genesis_error: Exception | None = None
        self.alerts = [_alert(i) for i in range(1, 26)]

    async def status(self) -> NodeStatus:
        latest = self.blocks[-1].hash if self.blocks else bytes(32)
        return NodeStatus(CHAIN_ID, "hospital-a", len(self.blocks), latest, 0, 3, len(self.mempool), False)

    def check_room(self, sender: bytes | None, size: int) -> None:
        """Always room: these tests are not about the mempool's bounds."""

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
        return TxCommitResult(tx_hash, entry.receipt.height, entry.receipt.index, entry.receipt)

    def commit(self) -> BlockInfo:
        height = len(self.blocks) + 1
        txs = list(self.mempool.values())
        self.mempool.clear()
        zero = bytes(32)
        block = BlockInfo(height.to_bytes(32, "big"), height, CHAIN_ID, zero, b"\x07" * 32, 1000 * height, zero, zero,
                          zero, len(txs), tuple(tx.hash for tx in txs), None, None)
        self.blocks.append(block)
        for index, tx in enumerate(txs):
            receipt = Receipt(height, index, True, 0, "ok", "", {})
            self.txs[tx.hash] = TxInfo(tx.hash, tx.sender, tx.nonce, tx.kind, tx.encode(), receipt)
        self.events.publish("new_block", {"height": height, "hash": block.hash})
        return block

    async def validators(self) -> list[ValidatorInfo]:
        return [ValidatorInfo(name="hospital-a", public_key="07" * 32, p2p_address="127.0.0.1:26600")]

    async def genesis(self) -> GenesisWithHash:
        if self.genesis_error is not None:
            raise self.genesis_error
        doc = assemble(CHAIN_ID, sample_parts(2), genesis_time_ms=1000)
        return GenesisWithHash(genesis=doc, hash=doc.hash().hex())

    async def account(self, public_key: bytes) -> AccountInfo:
        return AccountInfo(public_key, ("hospital",), self.nonces.get(public_key, 0) + 1)

    async def query(self, path: str, params: Params) -> object:
        if path == TX_GET.path and isinstance(params, TxGetParams):
            if params.hash not in self.txs:
                raise NotFound(f"no committed transaction {params.hash.hex()}")
            return self.txs[params.hash]
        if path == BLOCK_GET.path and isinstance(params, BlockGetParams):
            for block in reversed(self.blocks):
                if params.height in (None, block.height) and params.hash in (None, block.hash):
                    return block
            raise NotFound("no such block")
        if path == ALERTS_QUERY.path and isinstance(params, AlertsQueryParams):
            return self._alerts(params)
        if path == FL_MODELS.path:
            return [RegisteredModel(spec=SEPSIS, hash=SEPSIS.hash)]
        if path == FL_MODEL_GET.path and isinstance(params, ModelGetParams):
            if params.model_id != "sepsis" or (params.version is not None and params.version > 2):
                raise NotFound(f"no model {params.model_id} version {params.version}")
            version = 2 if params.version is None else params.version
            return ModelVersion(model_id="sepsis", version=version, round=version, height=10 * version,
                                weights=b"\x00\x01", hash=bytes(32))
        if path == FL_ROUNDS.path and isinstance(params, RoundsParams):
            if params.model_id != "sepsis":
                raise NotFound(f"no model {params.model_id}")
            return [RoundRecord(model_id="sepsis", round=r, base_version=r - 1, opened_height=5 * r,
                                deadline_height=5 * r + 5, closed_height=None if r == 2 else 5 * r + 5,
                                status="open" if r == 2 else "aggregated") for r in (1, 2)]
        raise NotFound(f"no query {path!r}")

    def _alerts(self, q: AlertsQueryParams) -> AlertPage:
        start = int(q.cursor or 0)
        matching = [a for a in self.alerts[start:]
                    if (q.alert_class is None or a.alert_class == q.alert_class)
                    and (q.from_height is None or a.height >= q.from_height)
                    and (q.to_height is None or a.height <= q.to_height)]
        page = matching[:q.limit]
        more = len(matching) > q.limit
        return AlertPage(alerts=page, next_cursor=str(self.alerts.index(page[-1]) + 1) if more else None)


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
