"""Every transaction kind the chain executes, and the read-only queries over them.

This is the one place where the pure contracts from ``fl_contracts/`` and
``ids/`` meet the executor; adding a kind is one ``register`` line here plus
its contract. Roles say who may send what: admins manage membership,
hospitals train, gateways and validators post alerts and evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.errors import InvalidInput
from core.state import StateView
from fl_contracts import contract as fl
from fl_contracts.initial import initial_weights
from fl_contracts.spec import ModelSpec
from genesis.schema import GenesisDoc
from ids import alerts
from node import accounts, evidence_tx
from node.execution import TxKindRegistry
from node.rpc.api import AlertPage, AlertQuery
from node.stores import Receipt

ANY_MEMBER = ("admin", "validator", "hospital", "gateway")


def build_registry(chain_id: str, validators: tuple[bytes, ...]) -> TxKindRegistry:
    registry = TxKindRegistry()
    registry.register("acl.register", ["admin"], accounts.register)
    registry.register("acl.grant", ["admin"], accounts.grant)
    registry.register("acl.revoke", ["admin"], accounts.revoke)
    registry.register("test.echo", ANY_MEMBER, accounts.echo)
    registry.register("fl.submit_update", ["hospital"], fl.submit_update)
    registry.end_block_hooks.append(fl.end_block)
    registry.register(alerts.TX_KIND, [alerts.GATEWAY_ROLE, alerts.VALIDATOR_ROLE], alerts.submit_alert)
    registry.register(evidence_tx.TX_KIND, ["validator"], evidence_tx.evidence_handler(chain_id, validators))
    return registry


def model_specs(doc: GenesisDoc) -> list[ModelSpec]:
    """The FL models genesis declares in ``app_state.models`` (validated by fl_contracts)."""
    return [ModelSpec.parse(m) for m in doc.app_state.get("models", [])]


def genesis_hooks(doc: GenesisDoc) -> list[Callable[[StateView], None]]:
    specs = model_specs(doc)
    return [lambda state: fl.init_models(state, specs, {spec.id: initial_weights(spec) for spec in specs}, 0)]


class AppQueries:
    """Read-only views the RPC layer serves, over committed state only."""

    def fl_models(self, state: StateView) -> list[dict[str, Any]]:
        return [spec.to_doc() | {"hash": spec.hash.hex()} for spec in fl.list_models(state)]

    def fl_model_get(self, state: StateView, model_id: str, version: int | None) -> dict[str, Any]:
        model = fl.get_model(state, model_id, version)
        return model.model_dump()

    def fl_rounds(self, state: StateView, model_id: str) -> list[dict[str, Any]]:
        return [r.model_dump() for r in fl.round_history(state, model_id)]

    def committed_alert(self, state: StateView, receipt: Receipt) -> dict[str, Any] | None:
        """The stored alert an ``ids.alert`` receipt points at (None for any other receipt)."""
        alert_id = receipt.result.get("alert_id")
        stored = alerts.get_alert(state, alert_id) if isinstance(alert_id, int) else None
        return None if stored is None else stored.to_json()

    def alerts(self, state: StateView, query: AlertQuery) -> AlertPage:
        found, next_cursor = alerts.query_alerts(
            state, hospital=query.hospital, device=query.subject, alert_class=query.alert_class,
            min_severity=query.min_severity,
            from_height=query.from_height, to_height=query.to_height,
            cursor=_cursor(query.cursor), limit=min(query.limit, alerts.MAX_QUERY_LIMIT),
        )
        return AlertPage([a.to_json() for a in found], None if next_cursor is None else str(next_cursor))


def _cursor(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit():
        raise InvalidInput("cursor must be the next_cursor string a previous page returned")
    return int(text)
