"""What a governance decision can do on this chain: the actions the node hands ``governance/``.

Each is the handler the single ``admin`` account used to run (``node.accounts``,
``fl_contracts``), with its payload check, so a quorum decision does exactly what
one admin's transaction did and nothing is written twice.

``validator.add``, ``validator.remove`` (voting out one that ``gov_convictions``
names), ``validator.rotate_key`` (a validator whose key is lost; one that holds it
sends the kind of that name itself) and ``params.set`` have no single-admin kind
before them: they are decisions of the consortium only (``node.validator_set``,
``node.chain_params``; in effect two blocks later).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from core.errors import ContractRejected, GovernanceRequired
from core.state import StateView, TxContext
from core.tx import parse_payload
from fl_contracts import contract as fl
from fl_contracts.initial import initial_weights
from fl_contracts.spec import ModelSpec
from governance.contract import Action, Handler, load_config
from node import accounts, chain_params, validator_set

SINGLE_ADMIN_KINDS = {"acl.register": "register", "acl.grant": "grant", "acl.revoke": "revoke"}
"""The kinds one admin sent alone, and the governance action that replaces each."""


def _checker(model: type[BaseModel]) -> Callable[[dict[str, Any]], None]:
    """The payload check of the kind the action replaces, refusing what that kind would refuse."""
    def check(params: dict[str, Any]) -> None:
        parse_payload(model, params)
    return check


def _check_spec(params: dict[str, Any]) -> None:
    ModelSpec.parse(params)


def _add_model(state: StateView, ctx: TxContext, params: dict[str, Any]) -> dict[str, Any]:
    spec = ModelSpec.parse(params)
    if any(known.id == spec.id for known in fl.list_models(state)):
        raise ContractRejected(f"model {spec.id} is already registered")
    fl.init_models(state, [spec], {spec.id: initial_weights(spec)}, ctx.height)
    return {"model": spec.id, "round": 1}


ACTIONS: dict[str, Action] = {
    "register": Action(_checker(accounts.RegisterPayload), accounts.register),
    "grant": Action(_checker(accounts.RolePayload), accounts.grant),
    "revoke": Action(_checker(accounts.RolePayload), accounts.revoke),
    "add_model": Action(_check_spec, _add_model),
    "rotate": Action(_checker(accounts.GovRotatePayload), accounts.gov_rotate),
    "validator.add": Action(validator_set.check_add, validator_set.add_validator),
    "validator.remove": Action(validator_set.check_remove, validator_set.remove_validators),
    "validator.rotate_key": Action(validator_set.check_rotate_key, validator_set.gov_rotate_key),
    "params.set": Action(chain_params.check_set, chain_params.set_params, chain_params.admit_set),
}


def single_admin(kind: str, handler: Handler) -> Handler:
    """``handler`` as one admin's kind: refused on a chain whose genesis declares governance."""
    action = SINGLE_ADMIN_KINDS[kind]

    def alone(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
        if load_config(state) is not None:
            raise GovernanceRequired(f"{kind} needs a quorum of the members on this chain: propose it with "
                                     f"`fbci gov propose {action} ...` and have the members `fbci gov approve` it")
        return handler(state, ctx, payload)

    return alone
