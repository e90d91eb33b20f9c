"""The consent record and its history event, as they live in state and travel over JSON-RPC.

The fields follow HL7 FHIR R5 ``Consent``: ``patient`` is ``Consent.subject``
(a pseudonym, never an identifier a person can read), ``decision`` is
``Consent.decision`` (permit | deny), ``purpose`` is ``provision.purpose``
narrowed to what this chain does with data (training one model, or every
model), ``period`` is ``provision.period`` in block heights (the chain has no
trusted clock) and ``grantor`` is ``Consent.grantor`` (the key that signed the
transaction). The history (:class:`ConsentEvent`) is append-only: a
revocation adds an event, it never erases the grant.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.wire import WIRE_BYTES

PSEUDONYM_SIZE = 32
ALL_MODELS = "*"
TRAIN_PREFIX = "train:"
PURPOSE_PATTERN = r"^(\*|train:[A-Za-z0-9_.-]{1,128})$"
MIN_SECRET_BYTES = 16

Pseudonym = Annotated[bytes, Field(min_length=PSEUDONYM_SIZE, max_length=PSEUDONYM_SIZE)]
Decision = Literal["permit", "deny"]
Action = Literal["set", "revoke"]
_STORED = ConfigDict(extra="forbid", frozen=True, **WIRE_BYTES)


def pseudonym(mrn: str, secret: bytes) -> bytes:
    """The patient's on-chain name: HMAC-SHA256(MRN) under the hospital's secret.

    Only the hospital can compute it, so a reader of the chain cannot test a
    guessed record number; two hospitals' pseudonyms for one person differ,
    so their chains of use cannot be joined without both secrets.
    """
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the pseudonym secret must be at least {MIN_SECRET_BYTES} bytes")
    return hmac.new(secret, mrn.encode("utf-8"), hashlib.sha256).digest()


def training_purpose(model_id: str) -> str:
    return TRAIN_PREFIX + model_id


def purpose_covers(purpose: str, model_id: str) -> bool:
    return purpose == ALL_MODELS or purpose == training_purpose(model_id)


def valid_purpose(purpose: str) -> bool:
    return re.fullmatch(PURPOSE_PATTERN, purpose) is not None


class Period(BaseModel):
    """Inclusive block heights; ``end`` None: until revoked."""

    model_config = _STORED
    start: int
    end: int | None = None

    def covers(self, height: int) -> bool:
        return self.start <= height and (self.end is None or height <= self.end)


class ConsentRecord(BaseModel):
    model_config = _STORED
    patient: bytes
    decision: Decision
    purpose: str
    period: Period
    grantor: bytes
    """Public key of the patient proxy or the custodian hospital that signed."""
    grantor_role: Literal["patient_proxy", "hospital"]


class ConsentEvent(BaseModel):
    """One entry of a patient's history: a record set, or the revocation of the record for ``purpose``."""

    model_config = _STORED
    seq: int
    height: int
    action: Action
    purpose: str
    record: ConsentRecord | None
    """The record set (None for a revocation)."""
    signer: bytes
    tx_hash: bytes


class Use(BaseModel):
    """A round that took an update trained on the patient (the FL contract admitted it)."""

    model_config = _STORED
    model_id: str
    round: int
    base_version: int
    height: int
    hospital: bytes


class Verdict(BaseModel):
    """Whether a patient's data may train a model at a height, and why."""

    model_config = _STORED
    patient: bytes
    permitted: bool
    reason: str
