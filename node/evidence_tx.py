"""Equivocation evidence on chain: the ``consensus.evidence`` transaction kind.

When a validator's replica holds two conflicting signed consensus messages
from one validator, the validator submits them as ``consensus.evidence``.
Every validator re-verifies the pair against the validator set of the
evidence's own height before storing it, so a validator is never blamed on one peer's word, and
anyone can fetch the proof and check it again. The evidence is stored under
its SHA-256, which is also the ``feature_digest`` of the ``equivocation``
alert raised for it, so the alert points at its proof.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBytes

from consensus import Ed25519Verifier, Evidence, Verifier
from core.api import NoParams
from core.errors import ContractRejected
from core.hashing import sha256
from core.state import StateView, TxContext
from governance.queries import Conviction
from core.tx import parse_payload
from node.execution import Handler
from node.validator_set import keys_at

TX_KIND = "consensus.evidence"
PREFIX = b"evidence/"


class EvidencePayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    evidence: StrictBytes


def evidence_handler(chain_id: str, validators: tuple[bytes, ...], verifier: Verifier | None = None) -> Handler:
    """``verifier`` knows the validators' key types (default: all Ed25519); ``validators``: genesis's set,
    for a state that holds no validator sets (tests' bare ledgers)."""
    verifier = verifier or Ed25519Verifier(chain_id)

    def submit_evidence(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
        raw = parse_payload(EvidencePayload, payload).evidence
        evidence = Evidence.decode(raw)
        evidence.verify(chain_id, keys_at(state, evidence.height, validators), verifier)  # InvalidEvidence names what is wrong
        canonical = evidence.encode()  # either order of the two messages is the same evidence
        key = PREFIX + sha256(canonical)
        if state.get(key) is not None:
            raise ContractRejected("this equivocation evidence is already on chain")
        state.set(key, canonical)
        return {"validator": evidence.validator, "height": evidence.height, "digest": sha256(canonical)}

    return submit_evidence


def stored_evidence(state: StateView, digest: bytes) -> Evidence | None:
    raw = state.get(PREFIX + digest)
    return None if raw is None else Evidence.decode(raw)


def convicted_validator(state: StateView, digest: bytes) -> bytes | None:
    """The validator the evidence stored under ``digest`` convicts: what an equivocation alert must name."""
    evidence = stored_evidence(state, digest)
    return None if evidence is None else evidence.validator


def convictions(state: StateView, p: NoParams) -> list[Conviction]:
    """The ``gov_convictions`` query: every validator the stored evidence convicts, by evidence height,
    so the members can see whom to vote out (the vote-out itself needs validator-set changes)."""
    found = []
    for key, raw in state.scan(PREFIX):
        evidence = Evidence.decode(raw)
        found.append(Conviction(validator=evidence.validator, height=evidence.height, view=evidence.first.view,
                                digest=key[len(PREFIX):]))
    return sorted(found, key=lambda c: (c.height, c.view, c.validator))
