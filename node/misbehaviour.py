"""Validator self-defence: what this validator sees go wrong becomes an on-chain alert.

The detectors are the pure ones in ``ids.selfdefence`` (token buckets and a
per-offender, per-class, per-window misbehaviour counter). :class:`SelfDefence`
feeds them what the node observes — RPC floods, bad signatures, replayed
transactions, malformed peer messages, consensus equivocation evidence, FL
updates refused by their bounds or excluded by a robust rule — and hands each
threshold crossing to :class:`OwnTxSubmitter`, which signs it as an
``ids.alert`` with the validator's own key, so the whole consortium sees which
client or validator misbehaved. Equivocation evidence also goes on chain
whole, as a ``consensus.evidence`` transaction (``node/evidence_tx.py``). Submission runs on its own task
behind a bounded queue: defending never blocks serving, and a flood of misbehaviour
yields at most one alert per offender, class and window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from consensus import Evidence
from core.crypto import PrivateKey
from core.errors import BadNonce, ContractRejected, FbciError
from core.tx import Transaction, sender_of
from genesis.schema import ChainParams as GenesisParams
from ids.alerts import AlertPayload
from ids.selfdefence import MisbehaviourMonitor, Offender, TokenBucketLimiter, address_subject
from node.application import FinalizedBlock
from node.rpc.node_api import MISBEHAVIOUR_BAD_SIGNATURE, MISBEHAVIOUR_RPC_FLOOD, MISBEHAVIOUR_TX_FLOOD, NodeApi

log = logging.getLogger(__name__)

FL_BOUNDS_REASONS = frozenset({"out_of_bounds", "wrong_shape"})
"""``fl_reason``s that mean a hospital sent an update outside the model's declared bounds."""


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def rpc_limiter(params: GenesisParams) -> TokenBucketLimiter:
    return TokenBucketLimiter(rate=float(params.rpc_requests_per_second), burst=params.rpc_burst)


class SelfDefence:
    """Turns observations into alerts; synchronous, so every hook is cheap to call from any path."""

    def __init__(self, name: str, on_alert: Callable[[AlertPayload], None], *,
                 clock_ms: Callable[[], int] = wall_clock_ms,
                 on_evidence_found: Callable[[bytes], None] = lambda proof: None) -> None:
        self.monitor = MisbehaviourMonitor(hospital=name.lower())
        self.on_alert = on_alert
        self.on_evidence_found = on_evidence_found
        self.clock_ms = clock_ms
        self.alerts_raised = 0

    def on_rpc_misbehaviour(self, kind: str, offender: str) -> None:
        if kind == MISBEHAVIOUR_RPC_FLOOD:
            self._record("request_flood", Offender("address", address_subject(offender)))
        elif kind == MISBEHAVIOUR_TX_FLOOD:
            self._record("request_flood", Offender("client_key", bytes.fromhex(offender)))
        elif kind == MISBEHAVIOUR_BAD_SIGNATURE:
            self._record("bad_signature", Offender("address", address_subject(offender)))

    def on_tx_rejected(self, sender: bytes | None, exc: FbciError) -> None:
        """A client's transaction was refused at admission.

        Only refusals that prove ``sender`` signed what was refused count against its key: a bad
        signature proves nothing about the key it names (the RPC edge reports it against the sending
        address), and the very same bytes sent again — still pending (``AlreadyKnown``) or already
        committed (``BadNonce`` carrying ``committed_height``) — are a client retrying after a
        timeout, or anyone replaying public bytes, not the key holder misbehaving. What is left is a
        *different* transaction, validly signed, reusing a nonce.
        """
        if sender is None or len(sender) != 32:
            return
        if isinstance(exc, BadNonce) and "committed_height" not in exc.data:
            self._record("replayed_tx", Offender("client_key", sender))
        elif isinstance(exc, ContractRejected) and exc.data.get("fl_reason") in FL_BOUNDS_REASONS:
            self._record("rejected_fl_update", Offender("client_key", sender), exc.message.encode())

    def on_peer_misbehaviour(self, peer: bytes | str, what: str) -> None:
        if isinstance(peer, bytes) and len(peer) == 32:
            self._record("malformed_peer_message", Offender("validator", peer), what.encode())
        elif isinstance(peer, str):
            self._record("malformed_peer_message", Offender("address", address_subject(peer)), what.encode())

    def on_evidence(self, evidence: Evidence) -> None:
        """Two conflicting signed consensus messages from one validator: proof, alerted at once
        (the alert's feature digest is the SHA-256 of the evidence) and put on chain whole."""
        log.warning("equivocation evidence against validator %s at height %d",
                    evidence.validator.hex()[:16], evidence.height)
        proof = evidence.encode()
        self.on_evidence_found(proof)
        self._record("equivocation", Offender("validator", evidence.validator), proof)

    def inspect_commit(self, finalized: FinalizedBlock) -> None:
        """FL updates that reached a block and were refused by bounds, or excluded by a robust rule."""
        for tx_hash, receipt in finalized.receipts.items():
            if not receipt.ok and receipt.result.get("fl_reason") in FL_BOUNDS_REASONS:
                sender = sender_of(finalized.block.txs[receipt.index])
                if sender is not None:
                    self._record("rejected_fl_update", Offender("client_key", sender), tx_hash)
        for record in finalized.rounds_closed:
            for participant in record.participants:
                if participant.excluded:
                    self._record("rejected_fl_update", Offender("client_key", participant.sender),
                                 participant.excluded.encode())

    def _record(self, kind: str, offender: Offender, evidence: bytes = b"") -> None:
        alert = self.monitor.record(kind, offender, self.clock_ms(), evidence)
        if alert is None:
            return
        self.alerts_raised += 1
        log.warning("self-defence: %s by %s %s", kind, offender.kind, offender.subject.hex()[:16])
        self.on_alert(alert)


class OwnTxSubmitter:
    """Signs this validator's own transactions (alerts, evidence) and submits them through the node,
    off the hot path, behind a bounded queue."""

    def __init__(self, key: PrivateKey, chain_id: str, queue_limit: int = 256) -> None:
        self.key = key
        self.chain_id = chain_id
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=queue_limit)
        self._task: asyncio.Task[None] | None = None

    def offer(self, kind: str, payload: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait((kind, payload))
        except asyncio.QueueFull:
            log.error("own-transaction queue full; dropping a %s", kind)

    def start(self, service: NodeApi,
              spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]] | None = None) -> None:
        """``spawn``: the runtime's supervisor, so that a failure of this task stops the validator."""
        run = self._run(service)
        self._task = spawn(run, "own-transactions") if spawn else asyncio.create_task(run, name="own-transactions")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, service: NodeApi) -> None:
        while True:
            kind, payload = await self._queue.get()
            try:
                account = await service.account(self.key.public_key.raw)
                tx = Transaction.create(self.key, self.chain_id, account.next_nonce, kind, payload)
                await service.submit_tx(tx.encode())
            except FbciError as exc:
                log.warning("could not submit this validator's %s: %s", kind, exc.message)
