"""Aggregation rules: invariants (hypothesis), bit-exactness, and a float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from threadpoolctl import threadpool_limits

from fl_contracts import aggregation
from fl_contracts.fixedpoint import dequantize, quantize, round_div

A = 2**15
BIG = dict(max_abs=A, max_norm=2**26, max_samples=1000)
PARAMS = {"fedavg": {}, "median": {}, "trimmed_mean": {"trim": 1}, "multi_krum": {"f": 1, "m": 3},
          "centered_clip": {"iters": 3, "tau_pct": 100}, "foolsgold": {}}


def make(values: np.ndarray, weights: list[int] | np.ndarray | None = None) -> aggregation.Updates:
    n = values.shape[0]
    w = np.ones(n, dtype=np.int64) if weights is None else np.asarray(weights, dtype=np.int64)
    return aggregation.Updates(np.array(values, dtype=np.int32), w, tuple(bytes([i]) * 32 for i in range(n)))


def run(rule: str, values: np.ndarray, weights: list[int] | np.ndarray | None = None, **bounds: int) -> np.ndarray:
    return aggregation.aggregate(rule, PARAMS[rule], make(values, weights), **{**BIG, **bounds}).delta


matrices = st.integers(5, 9).flatmap(
    lambda n: st.integers(1, 40).flatmap(
        lambda p: arrays(np.int32, (n, p), elements=st.integers(-A, A))))


@settings(max_examples=40, deadline=None)
@given(matrices, st.randoms(use_true_random=False))
@pytest.mark.parametrize("rule", ["fedavg", "median", "trimmed_mean"])
def test_result_does_not_depend_on_order(rule: str, values: np.ndarray, rnd) -> None:
    weights = [rnd.randint(1, 50) for _ in range(values.shape[0])]
    perm = list(range(values.shape[0]))
    rnd.shuffle(perm)
    # Multi-Krum breaks score ties by sender key; the contract test permutes whole submissions for it.
    assert np.array_equal(run(rule, values, weights), run(rule, values[perm], [weights[i] for i in perm]))


@settings(max_examples=40, deadline=None)
@given(arrays(np.int32, st.integers(1, 50), elements=st.integers(-A, A)), st.integers(1, 12), st.integers(1, 999))
def test_fedavg_of_identical_updates_is_that_update(v: np.ndarray, n: int, w: int) -> None:
    assert np.array_equal(run("fedavg", np.tile(v, (n, 1)), [w + i for i in range(n)]), v)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 30), st.data())
@pytest.mark.parametrize("rule", ["median", "trimmed_mean"])
def test_robust_rules_stay_in_honest_range(rule: str, f: int, p: int, data) -> None:
    honest = data.draw(arrays(np.int32, (2 * f + 1 + data.draw(st.integers(0, 3)), p), elements=st.integers(-A, A)))
    evil = data.draw(arrays(np.int32, (f, p), elements=st.integers(-A, A)))
    params = {"trim": f} if rule == "trimmed_mean" else {}
    values = np.vstack([honest, evil])
    out = aggregation.aggregate(rule, params, make(values), **BIG).delta
    assert np.all(out >= honest.min(axis=0)) and np.all(out <= honest.max(axis=0))


def test_multi_krum_drops_the_outliers() -> None:
    rng = np.random.default_rng(0)
    honest = rng.integers(-100, 100, (6, 500))
    evil = np.full((2, 500), 30_000)
    out = aggregation.aggregate("multi_krum", {"f": 2, "m": 4}, make(np.vstack([honest, evil])), **BIG)
    assert {6, 7} <= set(out.excluded)
    assert np.abs(out.delta).max() < 100


def test_norm_bounding_runs_before_the_rule() -> None:
    values = np.array([[3000, 4000], [300, 400]], dtype=np.int32)
    out = aggregation.aggregate("fedavg", {}, make(values), max_abs=A, max_norm=500, max_samples=10)
    assert out.clipped == [0]
    assert out.delta.tolist() == [300, 400]


def test_weights_are_capped() -> None:
    values = np.array([[0], [100]], dtype=np.int32)
    assert aggregation.aggregate("fedavg", {}, make(values, [1, 10**6]), max_abs=A, max_norm=A, max_samples=3).delta == [75]


def test_round_div_rounds_half_up() -> None:
    assert round_div(np.array([5, -5, 7, -7, 6]), 2).tolist() == [3, -2, 4, -3, 3]


def test_shared_validation_refuses_bad_input() -> None:
    with pytest.raises(Exception, match="max_abs"):
        run("fedavg", np.array([[A + 1]]))
    bad = aggregation.Updates(np.zeros((2, 3), np.int32), np.ones(2, np.int64), (b"b" * 32, b"a" * 32))
    with pytest.raises(Exception, match="sorted"):
        aggregation.aggregate("fedavg", {}, bad, **BIG)


@pytest.mark.parametrize("rule", list(aggregation.RULES))
def test_bit_identical_across_thread_counts_and_blocks(rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large enough that BLAS splits work across threads; results must match to the bit."""
    rng = np.random.default_rng(7)
    n, p = 12, 3 * aggregation.block_cols(12) + 17
    values = rng.integers(-A, A + 1, (n, p)).astype(np.int32)
    weights = rng.integers(1, 1000, n)
    with threadpool_limits(1):
        one = run(rule, values, weights)
    many = run(rule, values, weights)
    monkeypatch.setattr(aggregation, "BLOCK_ELEMS", 12_000)
    small_blocks = run(rule, values, weights)
    assert np.array_equal(one, many) and np.array_equal(one, small_blocks)


def test_gram_is_exact_at_the_bound() -> None:
    """Entries near 2**53 would lose bits in float64 if any partial sum were inexact."""
    p = 2**13
    a = 2**20  # p * a**2 = 2**53
    values = np.full((3, p), a, dtype=np.int32)
    values[1] = -a
    g = aggregation.gram(values)
    assert int(g[0, 0]) == p * a * a and int(g[0, 1]) == -p * a * a


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 8), st.integers(1, 64), st.integers(0, 2**32 - 1))
def test_fedavg_matches_float64_reference_within_quantization(n: int, p: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frac = 12
    real = rng.normal(0, 1, (n, p))
    w = rng.integers(1, 500, n)
    q = np.vstack([quantize(r, frac, 8 << frac) for r in real])
    got = dequantize(run("fedavg", q, w), frac)
    ref = (w[:, None] * real).sum(axis=0) / w.sum()
    # quantizing each input costs at most half a quantum, rounding the mean another half
    assert np.max(np.abs(got - ref)) <= 1.0 / (1 << frac) + 1e-12
