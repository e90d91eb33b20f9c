"""A :class:`client.dashboard.source.ChainSource` over an in-memory chain: the real contracts, no processes.

It is also the proof that the dashboard's data access is an interface: the
server runs on it unchanged. Transactions execute with the real ``ids.alert``,
``ids.ack_alert``, ``consent.*`` and ``audit.anchor`` contracts and queries read
the real contract state; a block's header hashes to its hash and its
certificate holds real commit signatures of the first three of four validators.
The audit trail is node0's real :class:`node.audit.AuditLog` in a LevelDB, and
``client/audit.py`` reads it through :class:`MemoryRpc`, the few RPC calls a
:class:`client.session.ChainSession` makes for it. Private reads are refused as
the node's read guard refuses them: unsigned, or by a key without the role.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from consensus import Ed25519Signer
from consensus.certificates import KIND_COMMIT, vote_sign_bytes
from consent import contract as consent
from consent.contract import TaintedRound
from consent.queries import CONSENT_PROVENANCE
from core.audit import AUDIT_EVENTS, AUDIT_PROOF, AuditEventsParams, AuditProofParams
from core.block import BlockHeader
from core.validators import Validator, ValidatorSet
from core.errors import ReadAuthRequired, ReadForbidden
from core.hashing import merkle_root
from client.session import ChainSession
from node.audit import AuditLog
from core.audit import ANCHOR_KIND
from node.audit_anchor import anchor, covering, last_anchored
from node.read_auth import PERSONAL_KINDS, ReadOutcome
from node.stores import Database
from core.api import AccountInfo, BlockInfo, CertificateInfo, NodeStatus, Receipt, Signature, TxCommitResult, TxInfo
from core.crypto import PrivateKey
from core.errors import ContractRejected, NotFound
from core.state import MemoryState, TxContext
from core.tx import Transaction
from devnet.catalog import default_models
from fl_contracts import contract
from fl_contracts.contract import ModelVersion, RoundRecord
from fl_contracts.initial import initial_weights
from fl_contracts.queries import RegisteredModel
from genesis.schema import ValidatorInfo
from ids import alerts
from ids.queries import AlertPage

CHAIN_ID = "memory-chain"
METRICS = ('# TYPE fbci_view_changes gauge\nfbci_view_changes{validator="node0"} 2.0\n'
           '# TYPE fbci_evidence_total counter\nfbci_evidence_total{validator="node0"} 0.0\n')


class MemorySource:
    url = "memory://node0"

    def __init__(self, audit_dir: Path | None = None) -> None:
        """``audit_dir``: where node0's audit trail lives (None: no trail; audit reads find no events)."""
        self.state = MemoryState()
        self.reader: PrivateKey | None = None
        """The key the dashboard signs private reads with (:meth:`consent_provenance`, the audit trail)."""
        specs = default_models(4)
        contract.init_models(self.state, specs, {s.id: initial_weights(s) for s in specs}, 0)
        self.validator_keys = [PrivateKey.generate() for _ in range(4)]
        self.validator_set = ValidatorSet(tuple(Validator(k.public_key.raw, f"node{i}", "")
                                                for i, k in enumerate(self.validator_keys)))
        self.accounts: dict[bytes, tuple[str, frozenset[str]]] = {
            k.public_key.raw: (f"node{i}", frozenset({"validator"})) for i, k in enumerate(self.validator_keys)}
        self.nonces: dict[bytes, int] = {}
        self.blocks: list[BlockInfo] = []
        self.txs: dict[bytes, TxInfo] = {}
        self.subscribers: dict[str, list[asyncio.Queue[dict[str, Any]]]] = {"new_block": [], "new_alert": []}
        self.closed = False
        self.handlers: dict[str, Callable[[MemoryState, TxContext, dict[str, Any]], dict[str, Any]]] = {
            alerts.TX_KIND: alerts.submit_alert, alerts.ACK_TX_KIND: alerts.ack_alert,
            consent.SET_KIND: consent.set_consent, consent.REVOKE_KIND: consent.revoke_consent, ANCHOR_KIND: anchor}
        """The contracts this chain runs; a test adds a stand-in for a node-side kind."""
        self.genesis_ms = int(time.time() * 1000)  # alerts' windows are stamped with the wall clock
        self._db = Database(audit_dir) if audit_dir is not None else None
        self.audit = AuditLog(self._db, "node0") if self._db is not None else None

    def guard(self, path: str, roles: frozenset[str], key: PrivateKey | None, entity: dict[str, Any]) -> None:
        """The node's check of a private read (unsigned, or a key without one of ``roles``: refused), recorded
        in the audit trail as the node records every private read and refusal."""
        name, held = self.accounts.get(key.public_key.raw, (None, frozenset())) if key else (None, frozenset())
        refusal = (ReadAuthRequired(f"{path} is a private read: sign the request") if key is None else
                   None if held & roles else ReadForbidden(f"{path} is read by the roles {sorted(roles)}"))
        if self.audit is not None:
            self.audit.record_read(ReadOutcome(path, "127.0.0.1", int(time.time() * 1000), 0 if refusal is None
                                               else refusal.code, "" if refusal is None else refusal.reason,
                                               entity, key.public_key.raw if key else None, name,
                                               tuple(sorted(held))), len(self.blocks))
        if refusal is not None:
            raise refusal

    def anchor_trail(self) -> Receipt:
        """node0 commits the root of its events since its last anchor (what its Anchorer does every few blocks)."""
        assert self.audit is not None
        key = self.validator_keys[0]
        payload = self.audit.due_anchor(lambda: last_anchored(self.state, key.public_key.raw))
        assert payload is not None, "no new audit events to anchor"
        nonce = self.nonces.get(key.public_key.raw, 0) + 1
        return self.commit([Transaction.create(key, CHAIN_ID, nonce, ANCHOR_KIND, payload)])[0]
    def add_account(self, name: str, roles: set[str]) -> PrivateKey:
        key = PrivateKey.generate()
        self.accounts[key.public_key.raw] = (name, frozenset(roles))
        return key

    def commit(self, txs: list[Transaction]) -> list[Receipt]:
        """One block: execute each transaction with its contract, index it, tell the subscribers."""
        height = len(self.blocks) + 1
        time_ms = self.genesis_ms + height * 1000
        receipts, new_alerts = [], []
        for index, tx in enumerate(txs):
            name, roles = self.accounts[tx.sender]
            ctx = TxContext(CHAIN_ID, height, time_ms, tx.sender, roles, tx.hash, name)
            handler = self.handlers[tx.kind]
            try:
                result = handler(self.state, ctx, tx.payload)
                receipt = Receipt(height, index, True, 0, "", "", result)
            except ContractRejected as exc:
                receipt = Receipt(height, index, False, exc.code, exc.reason, exc.message, exc.data)
            self.nonces[tx.sender] = tx.nonce
            self.txs[tx.hash] = TxInfo(tx.hash, tx.sender, tx.nonce, tx.kind, tx.encode(), receipt)
            receipts.append(receipt)
            if tx.kind == alerts.TX_KIND and receipt.ok:
                stored = alerts.get_alert(self.state, receipt.result["alert_id"])
                assert stored is not None
                new_alerts.append(stored)
        header = BlockHeader(CHAIN_ID, height, self.blocks[-1].hash if self.blocks else b"\0" * 32,
                             self.validator_keys[height % 4].public_key.raw, time_ms,
                             merkle_root([tx.encode() for tx in txs]), b"\0" * 32, b"\0" * 32, len(txs),
                             self.validator_set.hash(), self.validator_set.hash())
        block_hash = header.hash
        vote = vote_sign_bytes(CHAIN_ID, height, 0, block_hash)
        signed = tuple(Signature(k.public_key.raw, Ed25519Signer(k, CHAIN_ID).sign(KIND_COMMIT, vote))
                       for k in self.validator_keys[:3])
        cert = CertificateInfo(height, 0, block_hash, signed)
        self.blocks.append(BlockInfo(
            block_hash, height, CHAIN_ID, header.prev_block_hash, header.proposer, time_ms, header.txs_root,
            header.state_hash, header.prev_commit_hash, len(txs), tuple(tx.hash for tx in txs), None, cert,
            validators_hash=header.validators_hash, next_validators_hash=header.next_validators_hash))
        self._publish("new_block", {"height": height, "hash": block_hash.hex(), "num_txs": len(txs),
                                    "time_ms": time_ms})
        for stored in new_alerts:
            self._publish("new_alert", stored.model_dump(mode="json"))
        return receipts

    def _publish(self, topic: str, event: dict[str, Any]) -> None:
        for queue in self.subscribers[topic]:
            queue.put_nowait(event)

    # --- ChainSource --------------------------------------------------------------------------

    async def status(self) -> NodeStatus:
        tip = self.blocks[-1].hash if self.blocks else b"\0" * 32
        return NodeStatus(CHAIN_ID, "node0", len(self.blocks), tip, 0, 3, 0, False, 1, True)

    async def block(self, height: int | None = None) -> BlockInfo:
        if height is None:
            return self.blocks[-1]
        if not 1 <= height <= len(self.blocks):
            raise NotFound(f"no block {height}")
        return self.blocks[height - 1]

    async def tx(self, tx_hash: bytes) -> TxInfo:
        if tx_hash not in self.txs:
            raise NotFound("no such transaction")
        info = self.txs[tx_hash]
        if info.kind in PERSONAL_KINDS and self.reader is not None and self.reader.public_key.raw != info.sender:
            _, roles = self.accounts.get(self.reader.public_key.raw, (None, frozenset()))
            if not roles & {"auditor", "validator"}:  # the node's read guard on tx_get (node.read_auth)
                raise ReadForbidden(f"a {info.kind} transaction is read by its sender and auditors only")
        return info

    async def validators(self) -> list[ValidatorInfo]:
        return [ValidatorInfo(name=f"node{i}", public_key=k.public_key.raw.hex(), p2p_address=f"127.0.0.1:{1000 + i}")
                for i, k in enumerate(self.validator_keys)]

    async def account(self, public_key: bytes) -> AccountInfo:
        name, roles = self.accounts.get(public_key, (None, frozenset()))
        return AccountInfo(public_key, tuple(sorted(roles)), self.nonces.get(public_key, 0) + 1, name)

    async def alerts(self, **filters: Any) -> AlertPage:
        found, cursor = alerts.query_alerts(
            self.state, device=filters.get("subject"), alert_class=filters.get("alert_class"),
            min_severity=filters.get("min_severity"), from_height=filters.get("from_height"),
            cursor=filters.get("cursor"), limit=filters.get("limit", 100))
        return AlertPage(alerts=found, next_cursor=cursor)

    async def models(self) -> list[RegisteredModel]:
        return [RegisteredModel(spec=s, hash=s.hash) for s in contract.list_models(self.state)]

    async def rounds(self, model_id: str) -> list[RoundRecord]:
        return contract.round_history(self.state, model_id)

    async def model_version(self, model_id: str, version: int | None = None) -> ModelVersion:
        return contract.get_model(self.state, model_id, version)

    async def consent_provenance(self, model_id: str) -> list[TaintedRound]:
        access = CONSENT_PROVENANCE.access
        assert access is not None
        self.guard(CONSENT_PROVENANCE.path, access.roles, self.reader, {"model_id": model_id})
        return consent.tainted_rounds(self.state, model_id)

    def audit_session(self) -> ChainSession:
        session = ChainSession(self.url, self.reader, verify=False)
        session.client = MemoryRpc(self, self.reader)  # type: ignore[assignment]
        return session

    async def metrics_text(self) -> str:
        return METRICS

    async def submit_commit(self, tx: Transaction, timeout_s: float) -> TxCommitResult:
        receipt = self.commit([tx])[0]
        return TxCommitResult(tx.hash, receipt.height, receipt.index, receipt)

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.subscribers[topic].append(queue)

        async def events() -> AsyncIterator[dict[str, Any]]:
            while True:
                yield await queue.get()

        try:
            yield events()
        finally:
            self.subscribers[topic].remove(queue)

    async def close(self) -> None:
        self.closed = True  # the audit trail's LevelDB stays open: a test may start another dashboard on it


class MemoryRpc:
    """The RPC calls ``client/audit.py`` makes through a session, answered by a :class:`MemorySource`."""

    def __init__(self, source: MemorySource, reader: PrivateKey | None) -> None:
        self.source, self.reader = source, reader

    async def status(self) -> NodeStatus:
        return await self.source.status()

    async def get_block(self, height: int | None = None) -> BlockInfo:
        return await self.source.block(height)

    async def get_tx(self, tx_hash: bytes) -> TxInfo:
        return await self.source.tx(tx_hash)

    async def query(self, query: Any, params: Any) -> Any:
        audit, node0 = self.source.audit, self.source.validator_keys[0].public_key.raw
        assert query in (AUDIT_EVENTS, AUDIT_PROOF) and query.access is not None
        self.source.guard(query.path, query.access.roles, self.reader, params.model_dump(mode="json"))
        if audit is None:
            raise NotFound("this chain keeps no audit trail")
        if isinstance(params, AuditEventsParams):
            return audit.page(params, lambda: last_anchored(self.source.state, node0))
        assert isinstance(params, AuditProofParams)
        return audit.proof(params.seq, lambda seq: covering(self.source.state, node0, seq))

    async def close(self) -> None:
        pass
