"""``ids.ack_alert``: one signed acknowledgement per existing alert, and nothing written on a refusal."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from core.errors import ContractRejected
from core.hashing import sha256
from core.state import MemoryState, TxContext
from ids.alerts import ACK_ROLES, ACK_TX_KIND, ack_alert, submit_alert
from node.kinds import build_registry
from tests.ids.test_alerts_gateway import alert, ctx

NURSE = sha256(b"ward-7-station")


def _ack_ctx(height: int) -> TxContext:
    return TxContext("test", height, 1_700_000_000_000, NURSE, frozenset({"hospital"}), sha256(b"ack%d" % height),
                     "hospital0")


def _with_alert() -> MemoryState:
    state = MemoryState()
    submit_alert(state, ctx(5), alert())
    return state


def test_ack_records_who_and_refuses_a_second_without_writing() -> None:
    state = _with_alert()
    result = ack_alert(state, _ack_ctx(7), {"alert_id": 1})
    assert result == {"alert_id": 1, "acknowledged_by": "hospital0", "height": 7}
    before = dict(state._data)
    with pytest.raises(ContractRejected, match="already acknowledged"):
        ack_alert(state, _ack_ctx(8), {"alert_id": 1})
    assert state._data == before


@pytest.mark.parametrize(("payload", "message"), [
    ({"alert_id": 2}, "no alert 2"),
    ({"alert_id": 0}, "alert_id"),
    ({"alert_id": "1"}, "alert_id"),
    ({"alert_id": 1, "note": "patient in bed 4"}, "note"),  # no free text: nothing clinical reaches the chain
    ({}, "alert_id"),
])
def test_bad_acks_are_refused_and_write_nothing(payload: dict[str, object], message: str) -> None:
    state = _with_alert()
    before = dict(state._data)
    with pytest.raises(ContractRejected, match=message):
        ack_alert(state, _ack_ctx(7), payload)
    assert state._data == before


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_any_integer_is_either_a_known_alert_or_refused(alert_id: int) -> None:
    state = _with_alert()
    before = dict(state._data)
    try:
        ack_alert(state, _ack_ctx(7), {"alert_id": alert_id})
    except ContractRejected:
        assert state._data == before
    else:
        assert alert_id == 1


def test_the_node_registers_the_kind_for_the_ack_roles() -> None:
    kind = build_registry("test", ()).get(ACK_TX_KIND)
    assert kind.roles == frozenset(ACK_ROLES) and "validator" not in kind.roles
