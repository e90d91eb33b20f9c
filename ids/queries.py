"""The alert reads a validator serves and a gateway, dashboard or auditor reads back.

One :class:`core.api.Query` with its params and typed page, and the pure
function that answers it over a :class:`core.state.StateView` (see
``fl_contracts.queries`` for the pattern).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from core.api import Access, Params, Query
from core.state import StateView
from core.wire import WIRE_BYTES, Hash32
from ids import alerts
from ids.alerts import StoredAlert


MAX_HEIGHT = 2**64 - 1
"""Heights are 8-byte big-endian in the alert indexes: a larger one is invalid input, not a seek."""


class AlertsQueryParams(Params):
    """Filters; an omitted one means "any". Heights are inclusive."""

    hospital: str | None = Field(None, max_length=64, description="reporting hospital (validator or gateway name)")
    subject: Hash32 | None = Field(None, description="device pseudonym, client key or hashed address, hex")
    alert_class: str | None = Field(None, max_length=64, description="e.g. 'spoofing', 'request_flood'")
    min_severity: int | None = Field(None, ge=1, le=4, description="1 low .. 4 critical")
    from_height: int | None = Field(None, ge=0, le=MAX_HEIGHT, description="inclusive")
    to_height: int | None = Field(None, ge=0, le=MAX_HEIGHT, description="inclusive")
    cursor: str | None = Field(None, max_length=256, description="next_cursor from the previous page")
    limit: int = Field(100, ge=1, le=alerts.MAX_QUERY_LIMIT)

    @field_validator("to_height")
    @classmethod
    def _not_below_from_height(cls, to_height: int | None, info: ValidationInfo) -> int | None:
        from_height = info.data.get("from_height")
        if to_height is not None and from_height is not None and to_height < from_height:
            raise ValueError(f"is below 'from_height' ({from_height})")
        return to_height


class AlertPage(BaseModel):
    """One page of alerts, oldest first; pass ``next_cursor`` back to get the next (``None``: no more)."""

    model_config = ConfigDict(extra="forbid", frozen=True, **WIRE_BYTES)
    alerts: list[StoredAlert]
    next_cursor: str | None = None


ALERTS_QUERY: Query[AlertsQueryParams, AlertPage] = Query(
    "alerts_query", "IDS alerts matching the filters, oldest first, one page at a time.", AlertsQueryParams,
    AlertPage, Access(frozenset({"admin", "validator", "hospital", "gateway", "clinician", "auditor"}), private=True))
"""A clinician reads only its own hospital's alerts (the node narrows ``hospital`` to it)."""


def _alerts(state: StateView, q: AlertsQueryParams) -> AlertPage:
    found, next_cursor = alerts.query_alerts(
        state, hospital=q.hospital, device=q.subject, alert_class=q.alert_class, min_severity=q.min_severity,
        from_height=q.from_height, to_height=q.to_height, cursor=q.cursor, limit=q.limit,
    )
    return AlertPage(alerts=found, next_cursor=next_cursor)


STATE_QUERIES: tuple[tuple[Query[Any, Any], Callable[[StateView, Any], Any]], ...] = ((ALERTS_QUERY, _alerts),)
