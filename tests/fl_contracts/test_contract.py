"""Round lifecycle and rejection rules of the FL contract, against an in-memory state."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from core.errors import ContractRejected, InvalidInput, NotFound
from fl_contracts import contract
from core.state import MemoryState
from fl_contracts.spec import ModelSpec

from .conftest import ctx, payload


def test_round_closes_when_full_and_records_new_version(spec: ModelSpec, state: MemoryState) -> None:
    for i, v in enumerate([[1] * 8, [3] * 8, [5] * 8]):
        contract.submit_update(state, ctx(i), payload(spec, v))
    events = contract.end_block(state, 1)
    assert [e.status for e in events] == ["aggregated"]
    mv = contract.get_model(state, spec.id)
    assert mv.version == 1 and mv.round == 1
    assert mv.weights_int().tolist() == [3] * 8  # equal weights: mean of 1, 3, 5
    assert mv.hash == contract.version_hash(spec.id, 1, mv.weights)
    assert contract.get_model(state, spec.id, 0).weights_int().tolist() == [0] * 8
    hist = contract.round_history(state, spec.id)
    assert [(r.round, r.status) for r in hist] == [(1, "aggregated"), (2, "open")]
    assert hist[0].accepted == 3 and hist[0].new_hash == mv.hash and hist[1].base_version == 1


def test_round_closes_at_deadline_or_fails_below_minimum(spec: ModelSpec, state: MemoryState) -> None:
    contract.submit_update(state, ctx(0), payload(spec, [2] * 8))
    assert contract.end_block(state, 4) == []  # deadline is 5
    (event,) = contract.end_block(state, 5)
    assert event.status == "failed" and event.new_version is None
    assert contract.get_model(state, spec.id).version == 0
    assert contract.current_round(state, spec.id).deadline_height == 10


@pytest.mark.parametrize(
    ("over", "values", "ctx_kw", "why"),
    [
        ({"round": 2}, [0] * 8, {}, "wrong_round"),
        ({"base_version": 1}, [0] * 8, {}, "stale_version"),
        ({}, [0] * 7, {}, "wrong_shape"),
        ({}, [0] * 7 + [513], {}, "out_of_bounds"),
        ({}, [0] * 8, {"roles": frozenset({"validator"})}, "unauthorized"),
        ({"model_id": "nope"}, [0] * 8, {}, "unknown_model"),
        ({"num_samples": 1.5}, [0] * 8, {}, "invalid_payload"),
        ({"extra": 1}, [0] * 8, {}, "invalid_payload"),
    ],
)
def test_bad_updates_are_rejected_and_change_nothing(
    spec: ModelSpec, state: MemoryState, over: dict, values: list[int], ctx_kw: dict, why: str
) -> None:
    before = state.snapshot()
    with pytest.raises(ContractRejected) as err:
        contract.submit_update(state, ctx(0, **ctx_kw), payload(spec, values, **over))
    assert err.value.data["fl_reason"] == why
    assert state.snapshot() == before


def test_duplicate_late_and_full_are_rejected(spec: ModelSpec, state: MemoryState) -> None:
    contract.submit_update(state, ctx(0), payload(spec, [1] * 8))
    with pytest.raises(ContractRejected, match="already submitted"):
        contract.submit_update(state, ctx(0), payload(spec, [1] * 8))
    contract.submit_update(state, ctx(1), payload(spec, [1] * 8))
    contract.submit_update(state, ctx(2), payload(spec, [1] * 8))
    with pytest.raises(ContractRejected) as full:
        contract.submit_update(state, ctx(3), payload(spec, [1] * 8))
    assert full.value.data["fl_reason"] == "round_full"
    contract.end_block(state, 1)
    with pytest.raises(ContractRejected) as late:
        contract.submit_update(state, ctx(3), payload(spec, [1] * 8, base_version=1))
    assert late.value.data["fl_reason"] == "wrong_round"


@pytest.mark.parametrize("rule", ["fedavg", "multi_krum"])
def test_arrival_order_does_not_change_state(rule: str) -> None:
    spec = ModelSpec.for_sequential("o", [3, 2], frac_bits=8, rule=rule,
                                    rule_params={"f": 0, "m": 2} if rule == "multi_krum" else {},
                                    min_updates=3, max_updates=3, max_abs=2.0, max_norm=3.0)
    rng = np.random.default_rng(1)
    ups = [rng.integers(-512, 513, 8) for _ in range(3)]
    finals = []
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        s = MemoryState()
        contract.init_models(s, [spec], {spec.id: None}, 0)
        for i in order:
            contract.submit_update(s, ctx(i), payload(spec, ups[i], num_samples=10 + i))
        contract.end_block(s, 1)
        finals.append(s.snapshot())
    assert finals[0] == finals[1] == finals[2]


def test_norm_bounding_and_krum_exclusions_are_recorded() -> None:
    spec = ModelSpec.for_sequential("k", [3, 2], frac_bits=8, rule="multi_krum", rule_params={"f": 1, "m": 3},
                                    min_updates=4, max_updates=4, max_abs=2.0, max_norm=1.0)
    s = MemoryState()
    contract.init_models(s, [spec], {spec.id: None}, 0)
    for i, v in enumerate([[10] * 8, [11] * 8, [12] * 8, [-512] * 8]):
        contract.submit_update(s, ctx(i), payload(spec, v))
    contract.end_block(s, 1)
    rec = contract.round_history(s, spec.id)[0]
    assert [p.excluded for p in rec.participants] == [None, None, None, "not_selected_by_multi_krum"]
    assert [p.norm_clipped for p in rec.participants] == [False, False, False, True]
    assert rec.accepted == 3 and rec.excluded == 1
    assert contract.get_model(s, spec.id).weights_int().tolist() == [11] * 8


def test_registry_and_lookups(spec: ModelSpec, state: MemoryState) -> None:
    assert contract.list_models(state) == [spec]
    with pytest.raises(NotFound):
        contract.get_model(state, spec.id, 7)
    with pytest.raises(NotFound):
        contract.get_model(state, "missing")
    with pytest.raises(InvalidInput, match="declared twice"):
        contract.init_models(state, [spec], {}, 0)


def test_spec_validation_names_the_field(spec: ModelSpec) -> None:
    with pytest.raises(InvalidInput, match="max_updates"):
        ModelSpec.parse({**spec.to_doc(), "max_updates": 0})
    with pytest.raises(InvalidInput, match="2\\*\\*53"):
        ModelSpec.parse({**spec.to_doc(), "max_abs": 2**31 - 1})
    with pytest.raises(InvalidInput, match="rule_params"):
        ModelSpec.parse({**spec.to_doc(), "rule": "trimmed_mean"})
    assert ModelSpec.parse(spec.to_doc()) == spec


def test_validator_path_does_not_import_torch() -> None:
    code = ("import sys, fl_contracts, fl_contracts.contract, fl_contracts.aggregation, client.fl.model_metrics, "
            "client.fl.data; bad = [m for m in ('torch', 'opacus') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_round_closed_event_names_who_a_robust_rule_excluded() -> None:
    """The node's self-defence reads ``participants[].excluded`` off this record."""
    spec = ModelSpec.for_sequential("krum", [3, 2], rule="multi_krum", rule_params={"f": 1, "m": 2},
                                    min_updates=4, max_updates=4, round_length_blocks=5)
    state = MemoryState()
    contract.init_models(state, [spec], {}, 0)
    honest = np.full(spec.num_params, 100, dtype=np.int32)
    outlier = np.full(spec.num_params, -spec.max_abs, dtype=np.int32)
    for i, delta in enumerate([honest, honest + 1, honest - 1, outlier]):
        contract.submit_update(state, ctx(i), payload(spec, delta))
    (event,) = contract.end_block(state, 1)
    excluded = {p.sender: p.excluded for p in event.participants}
    assert excluded[ctx(3).sender] is not None and excluded[ctx(0).sender] is None


def test_a_raising_aggregation_rule_fails_the_round_with_its_reason_and_opens_the_next(
        spec: ModelSpec, state: MemoryState, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_aggregate(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(contract, "aggregate", broken_aggregate)
    for i in range(3):
        contract.submit_update(state, ctx(i), payload(spec, [1] * 8))
    (record,) = contract.end_block(state, 1)
    assert record.status == "failed" and record.reason == "aggregation failed: ZeroDivisionError"
    assert record.new_version is None and contract.get_model(state, spec.id).version == 0
    assert not list(state.scan(b"fl/upd/"))  # the round's updates are gone with it
    nxt = contract.current_round(state, spec.id)
    assert (nxt.round, nxt.status, nxt.base_version) == (2, "open", 0)
    assert [(r.round, r.status) for r in contract.round_history(state, spec.id)] == [(1, "failed"), (2, "open")]
