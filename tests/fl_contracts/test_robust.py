"""Invariants of the defences against persistent attackers: centered clipping and the adaptive clipping pre-step."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fl_contracts import aggregation, robust

A = 2**15
BOUNDS = dict(max_abs=A, max_norm=2**26, max_samples=1000)
CC = {"iters": 3, "tau_pct": 100}


def make(values: np.ndarray, weights: list[int] | np.ndarray | None = None) -> aggregation.Updates:
    n = values.shape[0]
    w = np.ones(n, dtype=np.int64) if weights is None else np.asarray(weights, dtype=np.int64)
    return aggregation.Updates(np.array(values, dtype=np.int32), w, tuple(bytes([i]) * 32 for i in range(n)))


def run(rule: str, params: dict[str, int], values: np.ndarray, weights=None) -> aggregation.Aggregate:  # noqa: ANN001
    return aggregation.aggregate(rule, params, make(values, weights), **BOUNDS)


matrices = st.integers(3, 9).flatmap(lambda n: st.integers(1, 30).flatmap(
    lambda p: arrays(np.int32, (n, p), elements=st.integers(-A, A))))
rules_with_pre_step = st.sampled_from([
    ("centered_clip", CC), ("centered_clip", {"iters": 1, "tau_pct": 50}),
    ("fedavg", {"adaptive_clip_pct": 150}), ("median", {"adaptive_clip_pct": 100}),
    ("centered_clip", {**CC, "adaptive_clip_pct": 200}), ("foolsgold", {}), ("foolsgold", {"adaptive_clip_pct": 150}),
])


@settings(max_examples=60, deadline=None)
@given(matrices, rules_with_pre_step, st.randoms(use_true_random=False))
def test_result_does_not_depend_on_the_order_of_updates(values: np.ndarray, rule, rnd) -> None:  # noqa: ANN001
    name, params = rule
    weights = [rnd.randint(1, 50) for _ in range(values.shape[0])]
    perm = list(range(values.shape[0]))
    rnd.shuffle(perm)
    one = run(name, params, values, weights)
    other = run(name, params, values[perm], [weights[i] for i in perm])
    assert np.array_equal(one.delta, other.delta)
    assert sorted(perm[i] for i in other.clipped) == one.clipped


@settings(max_examples=60, deadline=None)
@given(matrices, rules_with_pre_step)
def test_output_stays_inside_the_coordinate_box(values: np.ndarray, rule) -> None:  # noqa: ANN001
    """The centre is a weighted mean of points between it and each update: it never leaves [-A, A]."""
    out = run(*rule, values).delta
    assert np.all(np.abs(out) <= A)


@settings(max_examples=60, deadline=None)
@given(matrices, st.lists(st.integers(1, 999), min_size=9, max_size=9), st.integers(1, 5))
def test_centered_clip_is_the_mean_when_no_update_is_clipped(values: np.ndarray, w: list[int], iters: int) -> None:
    """One vote per update: the claimed sample counts do not move it; with equal counts it is FedAvg."""
    weights = w[: values.shape[0]]
    start = aggregation.median(make(values), {}).delta
    sq = ((values.astype(np.int64) - start) ** 2).sum(axis=1)
    tau = math.isqrt(int(np.sort(sq)[(len(sq) - 1) // 2])) * 10_000 // 100
    assume(int(sq.max()) <= tau * tau)
    got = run("centered_clip", {"iters": iters, "tau_pct": 10_000}, values, weights).delta
    assert np.array_equal(got, run("fedavg", {}, values).delta)


@settings(max_examples=40, deadline=None)
@given(arrays(np.int32, st.integers(1, 40), elements=st.integers(-A, A)), st.integers(3, 10))
def test_centered_clip_of_identical_updates_is_that_update(v: np.ndarray, n: int) -> None:
    assert np.array_equal(run("centered_clip", CC, np.tile(v, (n, 1))).delta, v)


@settings(max_examples=60, deadline=None)
@given(matrices, st.sampled_from([100, 150, 300, 1000]))
def test_adaptive_pre_step_bounds_every_norm_by_the_median(values: np.ndarray, pct: int) -> None:
    sq = aggregation.sum_squares(values)
    limit = math.isqrt(robust.lower_median(sq)) * pct // 100
    clipped = values.copy()
    rows = robust.adaptive_clip(clipped, sq, pct)
    after = aggregation.sum_squares(clipped)
    # round_div moves each coordinate by at most 1/2: the norm by at most sqrt(P)/2
    assert np.all(np.sqrt(after.astype(np.float64)) <= limit + math.sqrt(values.shape[1]) / 2 + 1e-9)
    assert rows == [i for i in range(len(sq)) if int(sq[i]) > limit * limit]
    untouched = [i for i in range(len(sq)) if i not in rows]
    assert np.array_equal(clipped[untouched], values[untouched])


@settings(max_examples=40, deadline=None)
@given(matrices, st.sampled_from(["fedavg", "median", "trimmed_mean", "multi_krum", "centered_clip"]))
def test_an_inactive_pre_step_changes_nothing(values: np.ndarray, rule: str) -> None:
    params = {"fedavg": {}, "median": {}, "trimmed_mean": {"trim": 1}, "multi_krum": {"f": 0, "m": 2},
              "centered_clip": CC}[rule]
    sq = aggregation.sum_squares(values)
    assume(int(sq.max()) <= (math.isqrt(robust.lower_median(sq)) * 10) ** 2)
    plain = run(rule, params, values)
    pre = run(rule, {**params, "adaptive_clip_pct": 1000}, values)
    assert np.array_equal(plain.delta, pre.delta) and pre.clipped == plain.clipped


def test_centered_clip_bounds_a_persistent_far_attacker() -> None:
    """One update of 5 at the far corner moves FedAvg by a fifth of the way; centered clipping barely."""
    rng = np.random.default_rng(3)
    honest = rng.integers(-200, 200, (4, 300))
    values = np.vstack([honest, np.full((1, 300), -A)])
    honest_mean = run("fedavg", {}, honest).delta
    cc = run("centered_clip", CC, values).delta
    avg = run("fedavg", {}, values).delta
    assert np.linalg.norm(avg - honest_mean) > 50 * np.linalg.norm(cc - honest_mean) > 0


@pytest.mark.parametrize("rule, params", [("centered_clip", CC), ("median", {"adaptive_clip_pct": 150})])
def test_same_input_same_bits(rule: str, params: dict[str, int]) -> None:
    rng = np.random.default_rng(11)
    values = rng.integers(-A, A + 1, (9, 3 * aggregation.block_cols(9) + 5)).astype(np.int32)
    first, second = run(rule, params, values), run(rule, params, values.copy())
    assert np.array_equal(first.delta, second.delta) and first.clipped == second.clipped


def test_foolsgold_drops_a_colluding_pair_and_keeps_the_honest() -> None:
    rng = np.random.default_rng(5)
    honest = rng.integers(-300, 300, (5, 200))
    evil = np.tile(rng.integers(-300, 300, 200), (2, 1))
    evil[1, 0] += 1  # near-identical, not identical
    out = run("foolsgold", {}, np.vstack([honest, evil]))
    assert set(out.excluded) == {5, 6}
    assert set(out.excluded.values()) == {"too_similar_to_another_update"}


@settings(max_examples=30, deadline=None)
@given(arrays(np.int32, st.integers(1, 30), elements=st.integers(-A, A)), st.integers(2, 8))
def test_foolsgold_of_identical_updates_is_that_update(v: np.ndarray, n: int) -> None:
    assert np.array_equal(run("foolsgold", {}, np.tile(v, (n, 1))).delta, v)


def test_foolsgold_with_no_positive_similarity_does_not_divide_by_zero() -> None:
    """Found by hypothesis: three updates whose best similarities are 0 or negative made the pardoning
    step divide by a zero similarity, an exception every validator would hit at the round's close."""
    from fl_contracts import aggregation as ag
    from fl_contracts.robust import foolsgold_weights

    a = 54_794_158
    rows = np.array([[0, -a, a - 1], [-a, 0, -a], [0, a, 0]], dtype=np.int32)
    weights = foolsgold_weights(ag.gram(rows))
    assert len(weights) == 3 and max(weights) > 0
