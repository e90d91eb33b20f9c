"""The consent contract: ``consent.set`` / ``consent.revoke``, the custody of pseudonyms, and the
check the FL contract asks before it takes a hospital's update.

Rule 1: deterministic, like every contract: state in, state out, keys read in
bytewise order. Rule 2: every check comes before the first write, so a refused
transaction changes nothing. The reason slug is in
``error.data["consent_reason"]``: ``invalid_payload``, ``not_custodian``,
``not_your_patient``, ``unauthorized``, ``no_record``, ``history_full``.

Who may write a patient's consent: the patient proxy the custodian hospital
issued for that pseudonym, or the custodian hospital itself. The first
hospital to name a pseudonym (by issuing a proxy for it or by setting its
consent) becomes its custodian; no other hospital can ever write it or train
on it.

What is in effect at a height ``S``: replay the patient's events of height
``<= S`` in order; each ``set`` replaces the record for its purpose and each
``revoke`` removes it. A patient may train model ``m`` at ``S`` when a permit
for ``train:m`` or ``*`` covers ``S`` and no deny in effect does (deny wins,
as in FHIR's nested provisions). The FL contract asks at the round's consent
snapshot, the height the round opened, so a revocation takes effect from the
next round and a round's answer never changes while it is open.

State layout (keys under ``consent/``; values canonical msgpack)::

    consent/policy                                  models whose updates need consent ("*": all)
    consent/cust/<patient>                          the custodian hospital's public key
    consent/proxy/<proxy key>                       [patient, hospital] of a patient proxy
    consent/n/<patient>                             number of history events
    consent/ev/<patient>/<seq:8 BE>                 ConsentEvent
    consent/use/<patient>/<model>/<round:8 BE>      Use: a round took an update trained on the patient
    consent/taint/<model>/<round:8 BE>/<patient>    height at which a patient who was used withdrew
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from core import codec
from core.errors import ContractRejected
from core.keyhistory import current_key
from core.state import StateView, TxContext
from consent.record import (
    ALL_MODELS, PURPOSE_PATTERN, ConsentEvent, ConsentRecord, Decision, Period, Pseudonym, Use,
    Verdict, purpose_covers,
)

SET_KIND = "consent.set"
REVOKE_KIND = "consent.revoke"
HOSPITAL_ROLE = "hospital"
PROXY_ROLE = "patient_proxy"
MAX_EVENTS_PER_PATIENT = 256
"""Bounds the replay a verdict costs (one scan of the patient's history)."""

_P = b"consent/"


def _be(n: int) -> bytes:
    return n.to_bytes(8, "big")


def _reject(why: str, message: str) -> ContractRejected:
    return ContractRejected(message, data={"consent_reason": why})


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SetPayload(_Payload):
    patient: Pseudonym
    decision: Decision
    purpose: StrictStr = Field(pattern=PURPOSE_PATTERN)
    period_start: StrictInt | None = Field(None, ge=0, le=2**63 - 1, description="default: this block's height")
    period_end: StrictInt | None = Field(None, ge=0, le=2**63 - 1, description="default: until revoked")


class RevokePayload(_Payload):
    patient: Pseudonym
    purpose: StrictStr = Field(pattern=PURPOSE_PATTERN)


def _parse(model: type[_Payload], kind: str, payload: dict[str, Any]) -> Any:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "payload"
        raise _reject("invalid_payload", f"{kind}: payload.{field}: {first['msg']}") from None


# --- policy and custody -----------------------------------------------------------------------

def init_policy(state: StateView, models: Sequence[str]) -> None:
    """Genesis: the models whose updates must name consented patients (``"*"``: every model)."""
    state.set(_P + b"policy", codec.encode(sorted(set(models))))


def policy(state: StateView) -> list[str]:
    raw = state.get(_P + b"policy")
    return [] if raw is None else list(codec.decode(raw))


def required(state: StateView, model_id: str) -> bool:
    models = policy(state)
    return ALL_MODELS in models or model_id in models


def custodian(state: StateView, patient: bytes) -> bytes | None:
    """The custodian hospital's key now: a hospital that rotated its key (``acl.rotate``) keeps its patients."""
    held_by = state.get(_P + b"cust/" + patient)
    return None if held_by is None else current_key(state, held_by)


def proxy_binding(state: StateView, proxy: bytes) -> tuple[bytes, bytes] | None:
    """``(patient, hospital)`` of a patient proxy key, or None for any other key."""
    raw = state.get(_P + b"proxy/" + proxy)
    if raw is None:
        return None
    patient, hospital = codec.decode(raw)
    return patient, hospital


def bind_proxy(state: StateView, proxy: bytes, patient: bytes, hospital: bytes) -> None:
    """Record that ``hospital`` issued ``proxy`` for ``patient``; the first hospital to name a
    pseudonym becomes its custodian, and no other may issue a proxy for it."""
    held_by = custodian(state, patient)
    if held_by is not None and held_by != hospital:
        raise _reject("not_custodian", f"patient {patient.hex()[:16]}… is in another hospital's custody")
    if state.get(_P + b"proxy/" + proxy) is not None:
        raise _reject("invalid_payload", f"key {proxy.hex()} is already a patient proxy")
    if held_by is None:
        state.set(_P + b"cust/" + patient, hospital)
    state.set(_P + b"proxy/" + proxy, codec.encode([patient, hospital]))


def _authorize(state: StateView, ctx: TxContext, patient: bytes) -> str:
    """The grantor role the sender writes ``patient``'s consent under; raises when it may not."""
    binding = proxy_binding(state, ctx.sender)
    if PROXY_ROLE in ctx.sender_roles and binding is not None:
        if binding[0] != patient:
            raise _reject("not_your_patient", "a patient proxy may only write its own patient's consent")
        return PROXY_ROLE
    if HOSPITAL_ROLE in ctx.sender_roles:
        held_by = custodian(state, patient)
        if held_by is not None and held_by != ctx.sender:
            raise _reject("not_custodian", f"patient {patient.hex()[:16]}… is in another hospital's custody")
        return HOSPITAL_ROLE
    raise _reject("unauthorized", "only the patient's proxy or its custodian hospital may write its consent")


# --- history ------------------------------------------------------------------------------------

def history(state: StateView, patient: bytes) -> list[ConsentEvent]:
    return [ConsentEvent.model_validate(codec.decode(v)) for _, v in state.scan(_P + b"ev/" + patient + b"/")]


def _append(state: StateView, ctx: TxContext, patient: bytes, action: str, purpose: str,
            record: ConsentRecord | None) -> ConsentEvent:
    count_key = _P + b"n/" + patient
    raw = state.get(count_key)
    seq = 0 if raw is None else codec.decode(raw)
    if seq >= MAX_EVENTS_PER_PATIENT:
        raise _reject("history_full", f"patient has {seq} consent events; the limit is {MAX_EVENTS_PER_PATIENT}")
    event = ConsentEvent(seq=seq, height=ctx.height, action=action, purpose=purpose, record=record,
                         signer=ctx.sender, tx_hash=ctx.tx_hash)  # type: ignore[arg-type]
    if custodian(state, patient) is None:
        state.set(_P + b"cust/" + patient, ctx.sender)
    state.set(_P + b"ev/" + patient + b"/" + _be(seq), codec.encode(event.model_dump()))
    state.set(count_key, codec.encode(seq + 1))
    return event


def in_effect(state: StateView, patient: bytes, height: int) -> dict[str, ConsentRecord]:
    """The record for each purpose after replaying the events of height ``<= height``."""
    current: dict[str, ConsentRecord] = {}
    for event in history(state, patient):
        if event.height > height:
            break
        if event.record is not None:
            current[event.purpose] = event.record
        else:
            current.pop(event.purpose, None)
    return current


def verdict(state: StateView, patient: bytes, model_id: str, height: int) -> Verdict:
    records = [r for p, r in in_effect(state, patient, height).items() if purpose_covers(p, model_id)]
    live = [r for r in records if r.period.covers(height)]
    if any(r.decision == "deny" for r in live):
        return Verdict(patient=patient, permitted=False, reason=f"denies train:{model_id} at height {height}")
    if any(r.decision == "permit" for r in live):
        return Verdict(patient=patient, permitted=True, reason="permit in effect")
    revoked = any(e.action == "revoke" and purpose_covers(e.purpose, model_id) and e.height <= height
                  for e in history(state, patient))
    why = "revoked" if revoked else ("permit outside its period" if records else "no permit")
    return Verdict(patient=patient, permitted=False, reason=f"{why} for train:{model_id} at height {height}")


# --- transactions -------------------------------------------------------------------------------

def set_consent(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    p: SetPayload = _parse(SetPayload, SET_KIND, payload)
    start = ctx.height if p.period_start is None else p.period_start
    if p.period_end is not None and p.period_end < start:
        raise _reject("invalid_payload", f"{SET_KIND}: period_end {p.period_end} is before period_start {start}")
    role = _authorize(state, ctx, p.patient)
    record = ConsentRecord(patient=p.patient, decision=p.decision, purpose=p.purpose,
                           period=Period(start=start, end=p.period_end), grantor=ctx.sender,
                           grantor_role=role)  # type: ignore[arg-type]
    event = _append(state, ctx, p.patient, "set", p.purpose, record)
    if p.decision == "deny":
        _taint(state, p.patient, p.purpose, ctx.height)
    return {"seq": event.seq, "purpose": p.purpose, "decision": p.decision}


def revoke_consent(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    p: RevokePayload = _parse(RevokePayload, REVOKE_KIND, payload)
    role = _authorize(state, ctx, p.patient)
    if p.purpose not in in_effect(state, p.patient, ctx.height):
        raise _reject("no_record", f"no consent record for {p.purpose!r} to revoke")
    event = _append(state, ctx, p.patient, "revoke", p.purpose, None)
    marked = _taint(state, p.patient, p.purpose, ctx.height)
    return {"seq": event.seq, "purpose": p.purpose, "revoked_by": role, "rounds_marked": marked}


# --- the FL contract's consent check, and what rounds used ---------------------------------------

def uses(state: StateView, patient: bytes) -> list[Use]:
    return [Use.model_validate(codec.decode(v)) for _, v in state.scan(_P + b"use/" + patient + b"/")]


def _mark(state: StateView, patient: bytes, model_id: str, rnd: int, height: int) -> bool:
    key = _P + b"taint/" + model_id.encode() + b"/" + _be(rnd) + b"/" + patient
    if state.get(key) is not None:
        return False
    state.set(key, codec.encode(height))
    return True


def _taint(state: StateView, patient: bytes, purpose: str, height: int) -> int:
    """Mark every round that used ``patient`` for a model ``purpose`` covers; returns how many are new."""
    return sum(_mark(state, patient, use.model_id, use.round, height)
               for use in uses(state, patient) if purpose_covers(purpose, use.model_id))


def _withdrawn_at(state: StateView, patient: bytes, model_id: str, height: int) -> int | None:
    """The height of the revocation or deny that stops ``patient`` training ``model_id`` now, if any."""
    if verdict(state, patient, model_id, height).permitted:
        return None
    withdrawals = [e.height for e in history(state, patient) if purpose_covers(e.purpose, model_id)
                   and (e.action == "revoke" or (e.record is not None and e.record.decision == "deny"))]
    return withdrawals[-1] if withdrawals else None


class TaintedRound(BaseModel):
    """A round whose aggregate took data from patients who later withdrew consent for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model_id: str
    round: int
    base_version: int
    revoked_patients: int
    first_withdrawn_height: int


def tainted_rounds(state: StateView, model_id: str) -> list[TaintedRound]:
    prefix = _P + b"taint/" + model_id.encode() + b"/"
    rounds: dict[int, list[tuple[bytes, int]]] = {}
    for key, value in state.scan(prefix):
        rnd = int.from_bytes(key[len(prefix):len(prefix) + 8], "big")
        rounds.setdefault(rnd, []).append((key[len(prefix) + 9:], codec.decode(value)))
    out = []
    for rnd, marks in rounds.items():
        base = next(u.base_version for u in uses(state, marks[0][0]) if u.model_id == model_id and u.round == rnd)
        out.append(TaintedRound(model_id=model_id, round=rnd, base_version=base, revoked_patients=len(marks),
                                first_withdrawn_height=min(h for _, h in marks)))
    return out


class ChainConsent:
    """What ``fl_contracts.contract.ConsentCheck`` asks, answered from this contract's state."""

    def required(self, state: StateView, model_id: str) -> bool:
        return required(state, model_id)

    def refusal(self, state: StateView, hospital: bytes, patients: Sequence[bytes], model_id: str,
                snapshot_height: int) -> str | None:
        for patient in patients:
            v = verdict(state, patient, model_id, snapshot_height)
            if not v.permitted:
                return f"patient {patient.hex()[:16]}… {v.reason} (the round's consent snapshot)"
            if custodian(state, patient) != hospital:
                return f"patient {patient.hex()[:16]}… is not in this hospital's custody"
        return None

    def record_use(self, state: StateView, hospital: bytes, patients: Iterable[bytes], model_id: str, rnd: int,
                   base_version: int, height: int) -> None:
        use = codec.encode(Use(model_id=model_id, round=rnd, base_version=base_version, height=height,
                               hospital=hospital).model_dump())
        for patient in patients:
            state.set(_P + b"use/" + patient + b"/" + model_id.encode() + b"/" + _be(rnd), use)
            withdrawn = _withdrawn_at(state, patient, model_id, height)
            if withdrawn is not None:  # withdrew while the round was open: its snapshot still counted them
                _mark(state, patient, model_id, rnd, withdrawn)
