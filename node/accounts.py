"""Accounts and roles in state, and the admin-only ``acl.*`` transaction kinds.

The chain is permissioned: only a key registered here may have a transaction
executed, and each transaction kind names the roles allowed to send it.
Registration, granting and revocation are transactions themselves, so the
membership history is on the ledger like everything else.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.accounts import Account, account_key, load_account, store_account  # noqa: F401 (re-exported)
from core.errors import ContractRejected, InvalidInput
from core.state import StateView, TxContext

ROLES = frozenset({"admin", "validator", "hospital", "gateway"})


def parse_payload(model: type[BaseModel], payload: dict[str, Any]) -> Any:
    """Validate a payload and turn pydantic's report into one plain message naming the field."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise InvalidInput(f"payload.{where}: {first['msg']}") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RegisterPayload(_Strict):
    public_key: bytes = Field(min_length=32, max_length=32)
    name: str = Field(min_length=1, max_length=64)
    roles: list[str] = Field(min_length=1, max_length=4)


class RolePayload(_Strict):
    public_key: bytes = Field(min_length=32, max_length=32)
    role: str


class EchoPayload(_Strict):
    msg: bytes  # bounded by the chain's max_tx_bytes like every payload


def _check_roles(roles: list[str]) -> None:
    unknown = sorted(set(roles) - ROLES)
    if unknown:
        raise ContractRejected(f"unknown role(s) {unknown}; roles are {sorted(ROLES)}")


def register(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    p = parse_payload(RegisterPayload, payload)
    _check_roles(p.roles)
    if load_account(state, p.public_key) is not None:
        raise ContractRejected(f"account {p.public_key.hex()} is already registered")
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


def echo(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A no-op kind for benchmarks: it validates and changes nothing but the sender's nonce."""
    p = parse_payload(EchoPayload, payload)
    return {"bytes": len(p.msg)}
