"""The one-pass validation and the block-sorting rules against the straightforward Python-integer reference.

:func:`fl_contracts.aggregation.scan` folds the bound check, the squared
norms and FedAvg's weighted sum into one pass over column blocks, and uses
that FedAvg result only when no update was clipped; median and trimmed mean
sort transposed blocks. Each shortcut must give the integers the rules'
definitions give (``reference`` in ``test_exact_bounds``, over Python
integers), at every block boundary (blocks forced down to 256 columns, so P
spans several and ends in a partial one) and at the edge of the bounds:
coordinates at exactly ``+-max_abs``, rows exactly at ``max_norm`` and one
quantum of squared norm past it.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InvalidInput
from fl_contracts import aggregation
from tests.fl_contracts.test_exact_bounds import reference

RULES = {"fedavg": {}, "median": {}, "trimmed_mean": {"trim": 1}, "centered_clip": {"iters": 2, "tau_pct": 100}}


@st.composite
def rounds(draw: st.DrawFn) -> tuple[SimpleNamespace, np.ndarray, np.ndarray]:
    n = draw(st.integers(3, 9))
    p = draw(st.sampled_from([1, 255, 256, 257, 700, 1024]))
    a = draw(st.sampled_from([1, 7, 2**15, 2**16, math.isqrt(2**53 // p)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.integers(-a, a + 1, (n, p))
    extremes = rng.random((n, p)) < draw(st.sampled_from([0.0, 0.3, 1.0]))
    values[extremes] = rng.choice([-a, a], size=int(extremes.sum()))
    sq = [int(np.dot(r.astype(object), r.astype(object))) for r in values]
    # max_norm exactly at one row's norm (it stays), or one below the ceiling of another's (it is clipped)
    pick = sq[draw(st.integers(0, n - 1))]
    max_norm = draw(st.sampled_from([math.isqrt(pick), max(1, math.isqrt(max(pick - 1, 0))),
                                     math.isqrt(2**53)]))
    rule = draw(st.sampled_from(sorted(RULES)))
    params = dict(RULES[rule])
    if draw(st.booleans()):
        params["adaptive_clip_pct"] = draw(st.sampled_from([100, 150]))
    max_samples = draw(st.sampled_from([1, 50, max(1, 2**53 // (n * a))]))
    spec = SimpleNamespace(rule=rule, rule_params=params, max_abs=a, max_norm=max_norm, max_samples=max_samples)
    weights = rng.integers(1, 2 * max_samples + 1, n)
    return spec, values.astype(np.int32), weights.astype(np.int64)


def senders(n: int) -> tuple[bytes, ...]:
    return tuple(i.to_bytes(32, "big") for i in range(n))


def aggregate(spec: SimpleNamespace, values: np.ndarray, weights: np.ndarray) -> aggregation.Aggregate:
    return aggregation.aggregate(spec.rule, spec.rule_params, aggregation.Updates(values, weights, senders(len(values))),
                                 max_abs=spec.max_abs, max_norm=spec.max_norm, max_samples=spec.max_samples)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds())
def test_blocked_one_pass_rules_equal_the_integer_reference(case: tuple[SimpleNamespace, np.ndarray, np.ndarray]) -> None:
    spec, values, weights = case
    expected, clipped, _ = reference(spec, values.tolist(), weights.tolist())  # type: ignore[arg-type]
    with mock.patch.object(aggregation, "BLOCK_ELEMS", 256):
        got = aggregate(spec, values.copy(), weights)
    assert got.delta.tolist() == expected
    assert set(got.clipped) == clipped


@settings(max_examples=40, deadline=None)
@given(rounds(), st.data())
def test_a_coordinate_past_max_abs_in_any_block_is_refused_and_changes_nothing(
        case: tuple[SimpleNamespace, np.ndarray, np.ndarray], data: st.DataObject) -> None:
    spec, values, weights = case
    n, p = values.shape
    i, k = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, p - 1))
    values[i, k] = data.draw(st.sampled_from([spec.max_abs + 1, -spec.max_abs - 1, np.iinfo(np.int32).min]))
    before = values.copy()
    with mock.patch.object(aggregation, "BLOCK_ELEMS", 256), pytest.raises(InvalidInput, match="max_abs"):
        aggregate(spec, values, weights)
    assert np.array_equal(values, before)


def test_the_fused_fedavg_result_is_used_only_when_nothing_was_clipped() -> None:
    """One row far past max_norm: the pass's weighted mean is stale, so the rule must run on the clipped rows."""
    values = np.array([[3000, 4000], [3, 4], [6, 8]], dtype=np.int32)
    spec = SimpleNamespace(rule="fedavg", rule_params={}, max_abs=2**15, max_norm=10, max_samples=10)
    got = aggregate(spec, values.copy(), np.array([1, 1, 1], dtype=np.int64))
    assert got.clipped == [0] and got.delta.tolist() == [5, 7]  # rows (6, 8), (3, 4), (6, 8)


def test_scan_refuses_nonpositive_weights_after_the_bounds() -> None:
    spec = SimpleNamespace(rule="fedavg", rule_params={}, max_abs=5, max_norm=100, max_samples=10)
    with pytest.raises(InvalidInput, match="positive"):
        aggregate(spec, np.ones((2, 3), dtype=np.int32), np.array([1, 0], dtype=np.int64))
    with pytest.raises(InvalidInput, match="max_abs"):
        aggregate(spec, np.full((2, 3), 6, dtype=np.int32), np.array([1, 0], dtype=np.int64))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**55), 2**55), min_size=1, max_size=40), st.integers(1, 2**20), st.booleans())
def test_round_div_into_out_is_the_same_rounding(num: list[int], den: int, array_den: bool) -> None:
    from fl_contracts.fixedpoint import round_div

    n = np.array(num, dtype=np.int64)
    d = np.full(len(num), den, dtype=np.int64) if array_den else den
    expected = [(2 * x + den) // (2 * den) for x in num]
    out = n.copy()
    assert round_div(n, d).tolist() == expected == round_div(out, d, out=out).tolist() == out.tolist()
