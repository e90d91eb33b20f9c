"""The consent reads a validator serves: a patient's history, the check a hospital's client asks
before it trains, and which rounds used patients who later withdrew (provenance).

Each is a :class:`core.api.Query` plus the pure function that answers it over
a :class:`core.state.StateView` (the pattern of ``fl_contracts.queries``).
Each declares who may read it (:class:`core.api.Access`): consent is private
by default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.api import Access, NoParams, Params, Query
from core.state import StateView
from core.wire import WIRE_BYTES, Hash32
from consent import contract
from consent.contract import TaintedRound
from consent.record import ConsentEvent, Use, Verdict

MAX_CHECK = 4096
"""Pseudonyms one ``consent_check`` may ask about (a hospital asks in pages)."""
MAX_HEIGHT = 2**63 - 1


class HistoryParams(Params):
    patient: Hash32 = Field(description="the patient's pseudonym, hex")


class ConsentHistory(BaseModel):
    """A patient's consent events, oldest first, and every round that took an update trained on it."""

    model_config = ConfigDict(extra="forbid", frozen=True, **WIRE_BYTES)
    patient: bytes
    custodian: bytes | None
    events: list[ConsentEvent]
    uses: list[Use]


class CheckParams(Params):
    model_id: str = Field(min_length=1, max_length=128)
    height: int = Field(ge=0, le=MAX_HEIGHT, description="the round's consent snapshot (its opened height)")
    patients: list[Hash32] = Field(min_length=1, max_length=MAX_CHECK)


class ProvenanceParams(Params):
    model_id: str = Field(min_length=1, max_length=128)


CONSENT_POLICY: Query[NoParams, list[str]] = Query(
    "consent_policy", "The models whose updates must list consented patients ('*': all).", NoParams, list[str])
CONSENT_HISTORY: Query[HistoryParams, ConsentHistory] = Query(
    "consent_history", "A patient's consent history and every round that used the patient.", HistoryParams,
    ConsentHistory, Access(frozenset({"patient_proxy", "hospital", "auditor"}), private=True))
CONSENT_CHECK: Query[CheckParams, list[Verdict]] = Query(
    "consent_check", "Whether each pseudonym may train a model at a height, and why.", CheckParams,
    list[Verdict], Access(frozenset({"hospital", "auditor"}), private=True))
CONSENT_PROVENANCE: Query[ProvenanceParams, list[TaintedRound]] = Query(
    "consent_provenance", "Rounds of a model that used patients who later withdrew consent.", ProvenanceParams,
    list[TaintedRound], Access(frozenset({"admin", "validator", "hospital", "auditor", "clinician"}), private=True))


def _policy(state: StateView, p: NoParams) -> list[str]:
    return contract.policy(state)


def _history(state: StateView, p: HistoryParams) -> ConsentHistory:
    return ConsentHistory(patient=p.patient, custodian=contract.custodian(state, p.patient),
                          events=contract.history(state, p.patient), uses=contract.uses(state, p.patient))


def _check(state: StateView, p: CheckParams) -> list[Verdict]:
    return [contract.verdict(state, patient, p.model_id, p.height) for patient in p.patients]


def _provenance(state: StateView, p: ProvenanceParams) -> list[TaintedRound]:
    return contract.tainted_rounds(state, p.model_id)


STATE_QUERIES: tuple[tuple[Query[Any, Any], Callable[[StateView, Any], Any]], ...] = (
    (CONSENT_POLICY, _policy), (CONSENT_HISTORY, _history), (CONSENT_CHECK, _check), (CONSENT_PROVENANCE, _provenance),
)
