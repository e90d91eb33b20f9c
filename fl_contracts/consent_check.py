"""How the FL contract checks an update's patient list: the consent ledger it is handed, and the check.

The node passes a :class:`ConsentCheck` (``consent.contract.ChainConsent``
fills it in); this leaf does not import the consent contract. See
:mod:`fl_contracts.contract`'s docstring for the rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from core.errors import ContractRejected
from core.state import StateView, TxContext
from fl_contracts.records import Head, SubmitUpdate


def reject(why: str, message: str) -> ContractRejected:
    return ContractRejected(message, data={"fl_reason": why})


class ConsentCheck(Protocol):
    """The consent ledger as the FL contract sees it (``consent.contract.ChainConsent``)."""

    def required(self, state: StateView, model_id: str) -> bool: ...

    def refusal(self, state: StateView, hospital: bytes, patients: Sequence[bytes], model_id: str,
                snapshot_height: int) -> str | None:
        """Why the first patient that may not train ``model_id`` at the snapshot may not; None: all may."""
        ...

    def record_use(self, state: StateView, hospital: bytes, patients: Iterable[bytes], model_id: str, rnd: int,
                   base_version: int, height: int) -> None: ...


def check_patients(state: StateView, ctx: TxContext, upd: SubmitUpdate, head: Head,
                   consent: ConsentCheck | None) -> None:
    patients = upd.patients
    if patients is not None and any(a >= b for a, b in zip(patients, patients[1:])):
        raise reject("invalid_payload", "fl.submit_update: patients must be strictly ascending (each listed once)")
    if consent is None:
        return
    if patients is None:
        if consent.required(state, upd.model_id):
            raise reject("no_consent", f"model {upd.model_id!r} requires consent: the update must list the "
                                       "pseudonyms of the patients it trained on")
        return
    why = consent.refusal(state, ctx.sender, patients, upd.model_id, head.opened_height)
    if why is not None:
        raise reject("no_consent", f"round {head.round} (consent snapshot at height {head.opened_height}): {why}")
