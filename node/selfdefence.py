"""Validator self-defence: what this validator sees go wrong becomes an on-chain alert.

The detectors are the pure ones in ``ids.selfdefence`` (token buckets and a
per-offender, per-window misbehaviour counter); this module feeds them what
the node observes — RPC floods, bad signatures, replayed transactions,
malformed peer messages, consensus equivocation evidence, FL updates refused
by bounds or excluded by a robust rule — and submits the alert each threshold
crossing produces as an ``ids.alert`` transaction signed with the validator's
own key, so the whole consortium sees which client or validator misbehaved.
Submission is a background task with a bounded queue: defending never blocks
serving, and a flood of misbehaviour yields at most one alert per offender,
class and window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from core.errors import AlreadyKnown, BadNonce, BadSignature, FbciError
from core.crypto import PrivateKey
from core.tx import Transaction
from genesis.schema import ChainParams as GenesisParams
from ids.alerts import TX_KIND as ALERT_KIND
from ids.alerts import AlertPayload
from ids.selfdefence import MisbehaviourMonitor, Offender, TokenBucketLimiter, address_subject
from node.chain import Chain, CommittedBlock
from node.rpc.api import MISBEHAVIOUR_BAD_SIGNATURE, MISBEHAVIOUR_RPC_FLOOD, MISBEHAVIOUR_TX_FLOOD

log = logging.getLogger(__name__)

FL_BOUNDS_REASONS = ("out_of_bounds", "wrong_shape", "bad_delta")


def _now_ms() -> int:
    return int(time.time() * 1000)


class SelfDefence:
    def __init__(self, chain: Chain, key: PrivateKey, chain_id: str, name: str) -> None:
        self.chain = chain
        self.key = key
        self.chain_id = chain_id
        self.monitor = MisbehaviourMonitor(hospital=name.lower())
        self.service: Any = None
        self._queue: asyncio.Queue[AlertPayload] = asyncio.Queue(maxsize=256)
        self._task: asyncio.Task[None] | None = None
        self.alerts_raised = 0
        chain.on_commit.append(self._inspect_commit)

    def limiter(self, params: GenesisParams) -> TokenBucketLimiter:
        return TokenBucketLimiter(rate=float(params.rpc_requests_per_second), burst=params.rpc_burst)

    def attach(self, service: Any) -> None:
        self.service = service
        self._task = asyncio.create_task(self._submit_alerts(), name="self-defence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- observations -----------------------------------------------------------------------

    def on_rpc_misbehaviour(self, kind: str, offender: str) -> None:
        if kind == MISBEHAVIOUR_RPC_FLOOD:
            self._record("request_flood", Offender("address", address_subject(offender)))
        elif kind == MISBEHAVIOUR_TX_FLOOD:
            self._record("request_flood", Offender("client_key", bytes.fromhex(offender)))
        elif kind == MISBEHAVIOUR_BAD_SIGNATURE:
            self._record("bad_signature", Offender("address", address_subject(offender)))

    def on_tx_rejected(self, raw_sender: bytes | None, exc: FbciError) -> None:
        """A client's transaction was refused at admission."""
        if raw_sender is None or len(raw_sender) != 32:
            return
        if isinstance(exc, BadSignature):
            self._record("bad_signature", Offender("client_key", raw_sender))
        elif isinstance(exc, (BadNonce, AlreadyKnown)):
            self._record("replayed_tx", Offender("client_key", raw_sender))

    def on_peer_misbehaviour(self, peer: bytes | str, what: str) -> None:
        if isinstance(peer, bytes) and len(peer) == 32:
            self._record("malformed_peer_message", Offender("validator", peer), what.encode())
        elif isinstance(peer, str):
            self._record("malformed_peer_message", Offender("address", address_subject(peer)), what.encode())

    def on_gossip(self, sender: bytes, raw: bytes) -> None:
        """A transaction relayed by a peer validator: admit it like a client's."""
        try:
            self.chain.mempool.add(raw)
        except BadSignature:
            self._record("malformed_peer_message", Offender("validator", sender), b"gossiped bad signature")
        except FbciError:
            pass  # already known, stale nonce, mempool full: normal in gossip

    def on_evidence(self, evidence: Any) -> None:
        """Two conflicting signed consensus messages from one validator: proof, alerted at once."""
        log.warning("equivocation evidence against validator %s at height %d",
                    evidence.validator.hex()[:16], evidence.height)
        self._record("equivocation", Offender("validator", evidence.validator), evidence.encode())

    def _inspect_commit(self, committed: CommittedBlock) -> None:
        for tx_hash, receipt in committed.receipts.items():
            if not receipt.ok and any(r in receipt.message for r in FL_BOUNDS_REASONS):
                raw = committed.block.txs[receipt.index]
                sender = Transaction.decode(raw, max_size=self.chain.params.max_tx_bytes).sender
                self._record("rejected_fl_update", Offender("client_key", sender), tx_hash)
        for event in committed.events:
            for participant in event.get("participants", []) or []:
                if participant.get("excluded"):
                    self._record("rejected_fl_update", Offender("client_key", participant["sender"]),
                                 participant["excluded"].encode())

    def _record(self, kind: str, offender: Offender, evidence: bytes = b"") -> None:
        alert = self.monitor.record(kind, offender, _now_ms(), evidence)
        if alert is None:
            return
        self.alerts_raised += 1
        log.warning("self-defence: %s by %s %s", kind, offender.kind, offender.subject.hex()[:16])
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            log.error("self-defence alert queue full; dropping a %s alert", kind)

    async def _submit_alerts(self) -> None:
        while True:
            alert = await self._queue.get()
            try:
                account = await self.service.account(self.key.public_key.raw)
                tx = Transaction.create(self.key, self.chain_id, account.next_nonce, ALERT_KIND, alert.to_payload())
                await self.service.submit_tx(tx.encode())
            except FbciError as exc:
                log.warning("could not submit a self-defence alert: %s", exc.message)
