"""A patient's consent from outside the chain: what ``fbci consent ...`` and the tests call.

Every function takes a :class:`~client.session.ChainSession` holding the key
that acts: the custodian hospital's or the patient proxy's for writes, and
for ``history`` the proxy's (or an auditor's, or the custodian's): the read
is private, so the session signs it with that key.
"""

from __future__ import annotations

from typing import Any

from consent import contract
from consent.queries import CONSENT_HISTORY, CONSENT_PROVENANCE, ConsentHistory, HistoryParams, ProvenanceParams
from consent.contract import TaintedRound
from core.api import TxInfo
from core.crypto import PrivateKey
from core.tx import MAX_NONCE_GAP
from client.session import ChainSession


def issue_proxy(hospital: ChainSession, proxy: PrivateKey, name: str, patient: bytes) -> TxInfo:
    """The hospital registers ``proxy`` as the patient proxy of ``patient`` (``acl.issue``)."""
    return hospital.submit_commit("acl.issue", {"public_key": proxy.public_key.raw, "name": name,
                                                "role": "patient_proxy", "patient": patient})


def grant(session: ChainSession, patient: bytes, purpose: str, *, decision: str = "permit",
          start: int | None = None, end: int | None = None) -> TxInfo:
    payload: dict[str, Any] = {"patient": patient, "decision": decision, "purpose": purpose}
    if start is not None:
        payload["period_start"] = start
    if end is not None:
        payload["period_end"] = end
    return session.submit_commit(contract.SET_KIND, payload)


def grant_many(session: ChainSession, patients: list[bytes], purpose: str) -> int:
    """Permit ``purpose`` for each of a custodian's ``patients``; returns the height the last one committed at.

    They go in windows of half the validators' nonce window (:data:`core.tx.MAX_NONCE_GAP`): a window is
    submitted back to back (consecutive nonces), then its receipts checked, so a custodian with more patients
    than the window never runs further ahead of what has committed than a validator admits."""
    window, height = MAX_NONCE_GAP // 2, 0
    for start in range(0, len(patients), window):
        hashes = [session.submit(contract.SET_KIND, {"patient": p, "decision": "permit", "purpose": purpose})
                  for p in patients[start:start + window]]
        height = max(height, *(session.wait_committed(h).receipt.height for h in hashes))
    return height


def revoke(session: ChainSession, patient: bytes, purpose: str) -> TxInfo:
    return session.submit_commit(contract.REVOKE_KIND, {"patient": patient, "purpose": purpose})


def history(session: ChainSession, patient: bytes) -> ConsentHistory:
    return session.run(lambda c: c.query(CONSENT_HISTORY, HistoryParams(patient=patient)))


def provenance(session: ChainSession, model_id: str) -> list[TaintedRound]:
    return session.run(lambda c: c.query(CONSENT_PROVENANCE, ProvenanceParams(model_id=model_id)))
