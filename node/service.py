"""The node as the RPC server sees it: :class:`NodeService` implements ``NodeApi``.

It translates client requests into chain operations and commit
notifications into answers: a ``tx_submit_commit`` caller waits on a future
that the commit observer resolves, so "committed" is only ever said after
the block and its certificate are on this validator's disk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from consensus import CommitCertificate
from core.block import Block
from core.errors import FbciError, Timeout
from core.hashing import sha256
from core.tx import Transaction
from genesis.schema import GenesisDoc
from node.chain import Chain, CommittedBlock
from node.rpc.api import AccountInfo, AlertPage, AlertQuery, NodeStatus, TxCommitResult
from node.rpc.subscriptions import EventHub
from node.stores import Receipt


MAX_TRACKED_SUBMISSIONS = 100_000


def _sender_of(raw: bytes, max_size: int) -> bytes | None:
    try:
        return Transaction.decode(raw, max_size=max_size).sender
    except FbciError:
        return None


def certificate_to_json(encoded: bytes) -> dict[str, Any] | None:
    if not encoded:
        return None
    cert = CommitCertificate.decode(encoded)
    return {"height": cert.height, "view": cert.view, "block_hash": cert.block_hash,
            "signatures": [{"validator": v, "signature": s} for v, s in cert.signatures]}


def block_to_json(block: Block, certificate: bytes) -> dict[str, Any]:
    """``commit_certificate``: this validator's proof that the block is final;
    ``last_commit``: the previous block's certificate as the chain records it."""
    h = block.header
    return {
        "hash": block.hash, "height": h.height, "chain_id": h.chain_id, "prev_block_hash": h.prev_block_hash,
        "proposer": h.proposer, "time_ms": h.time_ms, "txs_root": h.txs_root, "state_hash": h.state_hash,
        "prev_commit_hash": h.prev_commit_hash, "num_txs": h.num_txs,
        "txs": [sha256(t) for t in block.txs],
        "last_commit": certificate_to_json(block.last_commit),
        "commit_certificate": certificate_to_json(certificate),
    }


def receipt_to_json(receipt: Receipt) -> dict[str, Any]:
    return {"height": receipt.height, "index": receipt.index, "ok": receipt.ok, "code": receipt.code,
            "reason": receipt.reason, "message": receipt.message, "result": receipt.result}


class NodeService:
    """Implements ``node.rpc.api.NodeApi`` over a running validator's parts."""

    def __init__(self, *, name: str, genesis: GenesisDoc, chain: Chain, gossip: Callable[[bytes], None],
                 notify_work: Callable[[], None], view: Callable[[], int], peers: Callable[[], int],
                 syncing: Callable[[], bool], queries: Any,
                 on_rejected: Callable[[bytes | None, FbciError], None]) -> None:
        self.name = name
        self.genesis_doc = genesis
        self.chain = chain
        self.gossip = gossip
        self.notify_work = notify_work
        self.view = view
        self.peers = peers
        self.syncing = syncing
        self.queries = queries
        self.on_rejected = on_rejected
        self.events = EventHub()
        self._waiters: dict[bytes, list[asyncio.Future[Receipt]]] = {}
        self.submitted_at: dict[bytes, float] = {}
        chain.on_commit.append(self._on_commit)

    def _on_commit(self, committed: CommittedBlock) -> None:
        for tx_hash, receipt in committed.receipts.items():
            for future in self._waiters.pop(tx_hash, []):
                if not future.done():
                    future.set_result(receipt)
        self.events.publish("new_block", {
            "height": committed.block.height, "hash": committed.block.hash.hex(),
            "num_txs": committed.block.header.num_txs, "time_ms": committed.block.header.time_ms,
        })
        for receipt in committed.receipts.values():
            alert = self.queries.committed_alert(self.chain.state, receipt) if receipt.ok else None
            if alert is not None:
                self.events.publish("new_alert", alert)

    async def status(self) -> NodeStatus:
        return NodeStatus(
            chain_id=self.chain.chain_id, validator=self.name, height=self.chain.height,
            latest_block_hash=self.chain.last_block_hash(), view=self.view(), peers=self.peers(),
            mempool_size=len(self.chain.mempool), syncing=self.syncing(),
        )

    async def submit_tx(self, raw: bytes) -> bytes:
        try:
            tx = self.chain.mempool.add(raw)
        except FbciError as exc:
            self.on_rejected(_sender_of(raw, self.chain.params.max_tx_bytes), exc)
            raise
        if len(self.submitted_at) >= MAX_TRACKED_SUBMISSIONS:  # never-committed entries must not pile up
            del self.submitted_at[next(iter(self.submitted_at))]
        self.submitted_at[tx.hash] = time.monotonic()
        self.gossip(raw)
        self.notify_work()
        return tx.hash

    async def submit_tx_commit(self, raw: bytes, timeout_s: float) -> TxCommitResult:
        tx_hash = sha256(raw)
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx_hash, []).append(future)
        try:
            await self.submit_tx(raw)
            receipt = await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except asyncio.TimeoutError:
            raise Timeout(f"transaction {tx_hash.hex()} was not committed within {timeout_s} s; "
                          "it may still commit: query tx_get") from None
        finally:
            waiters = self._waiters.get(tx_hash)
            if waiters and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[tx_hash]
        return TxCommitResult(hash=tx_hash, height=receipt.height, index=receipt.index,
                              result=receipt_to_json(receipt))

    async def get_tx(self, tx_hash: bytes) -> dict[str, Any]:
        receipt = self.chain.receipt(tx_hash)
        block = self.chain.block_at(receipt.height)
        tx = Transaction.decode(block.txs[receipt.index], max_size=self.chain.params.max_tx_bytes)
        return {"hash": tx_hash, "sender": tx.sender, "nonce": tx.nonce, "kind": tx.kind,
                "payload": tx.payload, "receipt": receipt_to_json(receipt)}

    async def get_block(self, height: int | None, block_hash: bytes | None) -> dict[str, Any]:
        block, certificate = self.chain.find_block(height, block_hash)
        return block_to_json(block, certificate)

    async def validators(self) -> list[dict[str, Any]]:
        return [v.model_dump(mode="json") for v in self.genesis_doc.validators]

    async def genesis(self) -> dict[str, Any]:
        return {**self.genesis_doc.model_dump(mode="json"), "hash": self.genesis_doc.hash().hex()}

    async def account(self, public_key: bytes) -> AccountInfo:
        account = self.chain.account(public_key)
        nonce = account.nonce if account else 0
        pending = self.chain.mempool.pending_nonces(public_key)
        while nonce + 1 in pending:
            nonce += 1
        return AccountInfo(public_key=public_key, roles=tuple(sorted(account.roles)) if account else (),
                           next_nonce=nonce + 1)

    async def query_alerts(self, query: AlertQuery) -> AlertPage:
        return self.queries.alerts(self.chain.state, query)

    async def fl_models(self) -> list[dict[str, Any]]:
        return self.queries.fl_models(self.chain.state)

    async def fl_model_get(self, model_id: str, version: int | None) -> dict[str, Any]:
        return self.queries.fl_model_get(self.chain.state, model_id, version)

    async def fl_rounds(self, model_id: str) -> list[dict[str, Any]]:
        return self.queries.fl_rounds(self.chain.state, model_id)
