"""Accounts and roles in state, and the ``acl.*`` transaction kinds.

The chain is permissioned: only a key registered here may have a transaction
executed, and each transaction kind names the roles allowed to send it.
Registration, granting and revocation are transactions themselves, so the
membership history is on the ledger like everything else.

Admins register, grant and revoke (``acl.register``/``grant``/``revoke``); on a chain whose
genesis declares governance these run only as quorum decisions (``governance/``).
An account replaces its key with ``acl.rotate``, signed by the old key, or through a
governance ``rotate`` when the old key is lost: the record moves to the new key and the
old one is refused from the next block (``core.keyhistory`` keeps who it was).
A hospital issues the keys that act for it (``acl.issue``): a clinician's,
bound to that hospital, and a patient proxy's, bound to that hospital and one
patient pseudonym (its custody is the consent contract's, ``consent.contract``).
The binding is what later reads check: a clinician sees only its hospital's
alerts and predictions, a proxy only its patient's history.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.accounts import Account, account_key, load_account, store_account  # noqa: F401 (re-exported)
from core.errors import ContractRejected, NotFound
from core.keyhistory import current_key, record_rotation, rotated_to, was_rotated
from core.readauth import ReaderInfo
from core.state import StateView, TxContext
from core.tx import parse_payload
from consent import contract as consent
from fl_contracts import contract as fl
from genesis.types import ROLES as ROLE_NAMES
from governance.contract import replace_member
from node import quotas

ROLES = frozenset(ROLE_NAMES)
ISSUED_ROLES = ("clinician", "patient_proxy")
"""The roles a hospital may issue keys for."""
_HOSPITAL_OF = b"acct_of/"




class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RegisterPayload(_Strict):
    public_key: bytes = Field(min_length=32, max_length=32)
    name: str = Field(min_length=1, max_length=64)
    roles: list[str] = Field(min_length=1, max_length=len(ROLE_NAMES))


class RolePayload(_Strict):
    public_key: bytes = Field(min_length=32, max_length=32)
    role: str


class IssuePayload(_Strict):
    public_key: bytes = Field(min_length=32, max_length=32)
    name: str = Field(min_length=1, max_length=64)
    role: str
    patient: bytes | None = Field(None, min_length=32, max_length=32)
    """The patient pseudonym a ``patient_proxy`` acts for (required for it, refused for a clinician)."""


class RotatePayload(_Strict):
    new_public_key: bytes = Field(min_length=32, max_length=32)


class GovRotatePayload(_Strict):
    """A governance ``rotate``: the account whose key was lost, and its new key."""

    public_key: bytes = Field(min_length=32, max_length=32)
    new_public_key: bytes = Field(min_length=32, max_length=32)


class EchoPayload(_Strict):
    msg: bytes  # bounded by the chain's max_tx_bytes like every payload


def _check_roles(roles: list[str]) -> None:
    unknown = sorted(set(roles) - ROLES)
    if unknown:
        raise ContractRejected(f"unknown role(s) {unknown}; roles are {sorted(ROLES)}")


def _check_unused(state: StateView, public_key: bytes) -> None:
    """A new account's key: never registered, and never a key an account rotated away from or to."""
    if load_account(state, public_key) is not None:
        raise ContractRejected(f"account {public_key.hex()} is already registered")
    if was_rotated(state, public_key):
        raise ContractRejected(f"key {public_key.hex()} was rotated away from; a retired key is never reused")


def register(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    p = parse_payload(RegisterPayload, payload)
    _check_roles(p.roles)
    _check_unused(state, p.public_key)
    store_account(state, p.public_key, Account(p.name, frozenset(p.roles), 0))
    return {"registered": p.name}


def grant(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    p = parse_payload(RolePayload, payload)
    _check_roles([p.role])
    account = load_account(state, p.public_key)
    if account is None:
        raise ContractRejected(f"account {p.public_key.hex()} is not registered")
    store_account(state, p.public_key, Account(account.name, account.roles | {p.role}, account.nonce))
    return {"granted": p.role}


def revoke(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    p = parse_payload(RolePayload, payload)
    account = load_account(state, p.public_key)
    if account is None or p.role not in account.roles:
        raise ContractRejected(f"account {p.public_key.hex()} does not hold role {p.role!r}")
    if p.role == "admin" and p.public_key == ctx.sender:
        raise ContractRejected("an admin cannot revoke its own admin role (the chain would lose its last admin)")
    store_account(state, p.public_key, Account(account.name, account.roles - {p.role}, account.nonce))
    return {"revoked": p.role}


def issue(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A hospital registers a clinician or a patient proxy key that acts for it (and for one patient)."""
    p = parse_payload(IssuePayload, payload)
    if p.role not in ISSUED_ROLES:
        raise ContractRejected(f"a hospital issues only {list(ISSUED_ROLES)} keys, not {p.role!r}")
    if (p.role == "patient_proxy") != (p.patient is not None):
        raise ContractRejected("payload.patient: required for a patient_proxy, and only for it")
    _check_unused(state, p.public_key)
    if p.patient is not None:
        consent.bind_proxy(state, p.public_key, p.patient, ctx.sender)
    store_account(state, p.public_key, Account(p.name, frozenset({p.role}), 0))
    state.set(_HOSPITAL_OF + p.public_key, ctx.sender)
    return {"issued": p.role, "name": p.name}


def issuing_hospital(state: StateView, public_key: bytes) -> bytes | None:
    """The hospital that issued a clinician or patient proxy key (None: not an issued key)."""
    return state.get(_HOSPITAL_OF + public_key)


def rotate(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    """``acl.rotate``, signed by the old key: its next nonce carries over, so the account's sequence
    of transactions stays one sequence across its keys."""
    p = parse_payload(RotatePayload, payload)
    account = load_account(state, ctx.sender)
    assert account is not None  # admission refused an unknown sender
    return move_key(state, ctx.sender, p.new_public_key, ctx.height, account.nonce + 1)


def gov_rotate(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    """The governance ``rotate`` action, for an account whose old key is lost."""
    p = parse_payload(GovRotatePayload, payload)
    account = load_account(state, p.public_key)
    if account is None:
        raise ContractRejected(f"account {p.public_key.hex()} is not registered")
    return move_key(state, p.public_key, p.new_public_key, ctx.height, account.nonce)


def move_key(state: StateView, old: bytes, new: bytes, height: int, nonce: int, *,
             validator: bool = False) -> dict[str, Any]:
    """Move the account at ``old`` to ``new``: name and roles kept, its bindings (issuing hospital, a
    proxy's patient, a governance membership) follow, and the key history records the change.
    ``validator``: the caller also swaps the key in the validator set (``node.validator_set``)."""
    account = load_account(state, old)
    if account is None:
        raise ContractRejected(f"account {old.hex()} is not registered")
    if "validator" in account.roles and not validator:
        raise ContractRejected("a validator's key is its consensus identity; it changes with the validator set: "
                               "validator.rotate_key, signed by the old key, or the governance validator.rotate_key")
    if new == old:
        raise ContractRejected("payload.new_public_key: is the account's current key")
    _check_unused(state, new)
    if "hospital" in account.roles:
        _check_no_pending_update(state, old)
    store_account(state, new, Account(account.name, account.roles, nonce))
    state.delete(account_key(old))
    hospital = issuing_hospital(state, old)
    if hospital is not None:
        state.set(_HOSPITAL_OF + new, hospital)
    binding = consent.proxy_binding(state, old)
    if binding is not None:
        consent.bind_proxy(state, new, binding[0], current_key(state, binding[1]))
    replace_member(state, old, new)
    quotas.carry_over(state, old, new)
    record_rotation(state, old, new, height)
    return {"rotated": account.name, "new_public_key": new}


def _check_no_pending_update(state: StateView, hospital: bytes) -> None:
    """A round takes one update per key: a hospital rotating with an update in an open round could
    submit a second one under its new key, so it rotates once that round has closed."""
    for spec in fl.list_models(state):
        try:
            pending = fl.pending_update(state, spec.id, hospital)
        except NotFound:
            continue
        raise ContractRejected(f"this hospital has an update in {spec.id} round {pending.round}, which is still "
                               f"open; rotate its key once that round closes")


def reader_info(state: StateView, public_key: bytes) -> ReaderInfo | None:
    """Who a key is for the read guard: roles, the hospital it acts for, a proxy's patient. A key
    rotated away is known but holds no role, so the guard refuses it as revoked, not as a stranger."""
    account = load_account(state, public_key)
    if account is None:
        change = rotated_to(state, public_key)
        if change is None:
            return None
        moved = load_account(state, current_key(state, change.new))
        return ReaderInfo(public_key=public_key, name=moved.name if moved else "?", roles=frozenset(),
                          hospital=None, hospital_name=None, patient=None)
    hospital = public_key if "hospital" in account.roles else issuing_hospital(state, public_key)
    if hospital is not None:
        hospital = current_key(state, hospital)  # the issuing hospital may have rotated its own key since
    owner = load_account(state, hospital) if hospital is not None else None
    binding = consent.proxy_binding(state, public_key)
    return ReaderInfo(public_key=public_key, name=account.name, roles=account.roles, hospital=hospital,
                      hospital_name=owner.name if owner is not None else None,
                      patient=binding[0] if binding is not None else None)


def echo(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A no-op kind for benchmarks: it validates and changes nothing but the sender's nonce."""
    p = parse_payload(EchoPayload, payload)
    return {"bytes": len(p.msg)}
