"""Every rule at the edge of the bounds genesis accepts equals an exact Python-integer reference (issue 15, part 1).

The reference below re-states each rule's definition over Python integers,
which cannot overflow, without numpy or any code from ``fl_contracts``. A
spec is drawn at the edge of what :class:`ModelSpec` accepts (``P * A**2``
at 2**53, ``max_norm**2`` at 2**53, ``N * W * A`` at 2**53) with up to
``max_updates`` updates, so a wrap-around or an inexact float64 sum anywhere
in the chain's arithmetic shows up as a mismatch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.state import MemoryState, TxContext
from fl_contracts import aggregation, contract
from fl_contracts.spec import EXACT, MAX_UPDATES, RULE_PARAMS, ModelSpec, intermediate_bounds

Rows = list[list[int]]


def rdiv(n: int, d: int) -> int:
    return (2 * n + d) // (2 * d)


def ceil_sqrt(n: int) -> int:
    r = math.isqrt(n)
    return r if r * r == n else r + 1


def sq(row: list[int]) -> int:
    return sum(x * x for x in row)


def clip(rows: Rows, limit: int) -> tuple[Rows, set[int]]:
    out, hit = [], set()
    for i, row in enumerate(rows):
        s = sq(row)
        if s > limit * limit:
            hit.add(i)
            row = [rdiv(x * limit, ceil_sqrt(s)) for x in row]
        out.append(row)
    return out, hit


def lower_median(xs: list[int]) -> int:
    return sorted(xs)[(len(xs) - 1) // 2]


def fedavg(rows: Rows, w: list[int]) -> list[int]:
    return [rdiv(sum(wi * r[k] for wi, r in zip(w, rows)), sum(w)) for k in range(len(rows[0]))]


def median(rows: Rows) -> list[int]:
    n, out = len(rows), []
    for col in zip(*rows):
        c = sorted(col)
        out.append(c[n // 2] if n % 2 else rdiv(c[n // 2 - 1] + c[n // 2], 2))
    return out


def trimmed(rows: Rows, k: int) -> list[int]:
    return [rdiv(sum(sorted(col)[k: len(col) - k]), len(col) - 2 * k) for col in zip(*rows)]


def krum(rows: Rows, w: list[int], f: int, m: int) -> tuple[list[int], set[int]]:
    n = len(rows)
    scores = []
    for i in range(n):
        d = sorted(sq([a - b for a, b in zip(rows[i], rows[j])]) for j in range(n) if j != i)
        scores.append(sum(d[: n - f - 2]))
    order = sorted(range(n), key=lambda i: (scores[i], i))
    keep = sorted(order[:m])
    return fedavg([rows[i] for i in keep], [w[i] for i in keep]), set(order[m:])


def centered(rows: Rows, iters: int, tau_pct: int) -> list[int]:
    v = median(rows)
    for _ in range(iters):
        d = [[x - c for x, c in zip(r, v)] for r in rows]
        tau = math.isqrt(lower_median([sq(r) for r in d])) * tau_pct // 100
        d, _ = clip(d, tau)
        v = [c + rdiv(sum(r[k] for r in d), len(d)) for k, c in enumerate(v)]
    return v


def foolsgold(rows: Rows) -> tuple[list[int], set[int]]:
    n, one = len(rows), 1 << 16
    g = [[sum(a * b for a, b in zip(rows[i], rows[j])) for j in range(n)] for i in range(n)]
    cs = [[0 if i == j or g[i][i] * g[j][j] == 0 else g[i][j] * one // ceil_sqrt(g[i][i] * g[j][j])
           for j in range(n)] for i in range(n)]
    top = [max(cs[i][j] for j in range(n) if j != i) for i in range(n)]
    alpha = []
    for i in range(n):
        worst = max(cs[i][j] * top[i] // top[j] if top[j] > top[i] > 0 else cs[i][j] for j in range(n) if j != i)
        alpha.append(min(one, max(0, one - worst)))
    zero = round(one / (1 + math.exp(0.5)))  # where FoolsGold's logit stretch crosses 0
    peak = max(alpha)
    alpha = [one] * n if peak == 0 else [min(one, max(0, (a * one // peak - zero) * one // (one - 2 * zero)))
                                         for a in alpha]
    return fedavg(rows, alpha), {i for i, a in enumerate(alpha) if a == 0}


def reference(spec: ModelSpec, rows: Rows, weights: list[int]) -> tuple[list[int], set[int], set[int]]:
    """(delta, clipped rows, excluded rows) exactly as the chain defines them."""
    w = [min(x, spec.max_samples) for x in weights]
    rows, clipped = clip(rows, spec.max_norm)
    p = spec.rule_params
    if "adaptive_clip_pct" in p:
        rows, more = clip(rows, math.isqrt(lower_median([sq(r) for r in rows])) * p["adaptive_clip_pct"] // 100)
        clipped |= more
    if spec.rule == "fedavg":
        return fedavg(rows, w), clipped, set()
    if spec.rule == "median":
        return median(rows), clipped, set()
    if spec.rule == "trimmed_mean":
        return trimmed(rows, p["trim"]), clipped, set()
    if spec.rule == "multi_krum":
        delta, excluded = krum(rows, w, p["f"], p["m"])
        return delta, clipped, excluded
    if spec.rule == "foolsgold":
        delta, excluded = foolsgold(rows)
        return delta, clipped, excluded
    assert spec.rule == "centered_clip"
    return centered(rows, p["iters"], p["tau_pct"]), clipped, set()


def test_the_reference_covers_every_rule() -> None:
    assert set(RULE_PARAMS) == set(aggregation.RULES)


def test_every_intermediate_fits_at_the_edge_and_the_table_would_catch_a_wider_round() -> None:
    a = math.isqrt(EXACT)
    edge = intermediate_bounds(1, a, MAX_UPDATES, EXACT // (MAX_UPDATES * a))
    assert all(value <= limit for value, limit in edge.values())
    # were MAX_UPDATES ever raised this far, the table (run for every spec at genesis) would refuse it
    broken = {k for k, (value, limit) in intermediate_bounds(1, a, 2**33, 1).items() if value > limit}
    assert {"krum_score_limbs", "weighted_sum", "foolsgold_weighted_sum_in_round_div"} <= broken


@st.composite
def edge_case(draw: st.DrawFn, rule: str) -> tuple[ModelSpec, np.ndarray, np.ndarray]:
    p = draw(st.integers(1, 3))
    a = math.isqrt(EXACT // p) - draw(st.integers(0, 2))  # P * A**2 at 2**53
    max_updates = draw(st.one_of(st.integers(3, 12), st.integers(250, MAX_UPDATES)))
    n = draw(st.integers(max(3, max_updates - 4), max_updates))
    min_updates = draw(st.integers(3, n))
    max_samples = max(1, EXACT // (max_updates * a))  # N * W * A at 2**53
    max_norm = draw(st.one_of(st.just(math.isqrt(EXACT)), st.integers(1, math.isqrt(EXACT))))
    params: dict[str, int] = {}
    if rule == "trimmed_mean":
        params["trim"] = draw(st.integers(0, (min_updates - 1) // 2))
    if rule == "multi_krum":
        params["f"] = draw(st.integers(0, min_updates - 3))
        params["m"] = draw(st.integers(1, min_updates - params["f"]))
    if rule == "centered_clip":
        params["iters"] = draw(st.integers(1, 4))
        params["tau_pct"] = draw(st.sampled_from([10, 100, 150, 10_000]))
    if draw(st.booleans()):
        params["adaptive_clip_pct"] = draw(st.sampled_from([100, 150, 1000]))
    spec = ModelSpec(id="edge", task="binary_classification", layout=(("w", (p,)),),
                     fixed_point={"frac_bits": 16}, rule=rule, rule_params=params, round_length_blocks=1,
                     min_updates=min_updates, max_updates=max_updates, max_abs=a, max_norm=max_norm,
                     max_samples=max_samples)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = draw(st.sampled_from(["cluster_and_far", "extremes", "cluster_and_far", "uniform"]))
    if shape == "extremes":
        values = rng.choice([-a, -a + 1, 0, a - 1, a], size=(n, p))
    elif shape == "cluster_and_far":  # an honest cluster at +A, a few updates at -A: the largest Krum scores
        values = a - rng.integers(0, 1000, size=(n, p))
        far = rng.choice(n, size=draw(st.integers(1, max(1, n // 3))), replace=False)
        values[far] = -a
    else:
        values = rng.integers(-a, a + 1, size=(n, p))
    weights = rng.integers(1, 2 * max_samples + 1, size=n)
    return spec, values.astype(np.int32), weights.astype(np.int64)


@pytest.mark.parametrize("rule", sorted(RULE_PARAMS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_rule_equals_the_integer_reference_at_the_edge_of_the_bounds(rule: str, data: st.DataObject) -> None:
    spec, values, weights = data.draw(edge_case(rule))
    event(f"{'250 or more' if values.shape[0] >= 250 else 'under 250'} updates")
    expected, clipped, excluded = reference(spec, values.tolist(), weights.tolist())
    senders = tuple(i.to_bytes(32, "big") for i in range(values.shape[0]))
    got = aggregation.aggregate(spec.rule, spec.rule_params, aggregation.Updates(values.copy(), weights, senders),
                                max_abs=spec.max_abs, max_norm=spec.max_norm, max_samples=spec.max_samples)
    assert got.delta.tolist() == expected
    assert set(got.clipped) == clipped and set(got.excluded) == excluded


def _ctx(sender: bytes) -> TxContext:
    return TxContext("test", 1, 0, sender, frozenset({contract.HOSPITAL_ROLE}), bytes(32), sender.hex()[:8])


def test_a_far_attacker_among_300_updates_is_not_selected_by_multi_krum() -> None:
    """The issue's reproduction through the contract: a spec genesis accepts, 299 honest updates, one attacker.

    With ``P * A**2 = 2**53`` the attacker's distance to each honest update
    is about ``4 * max_norm**2 = 2**55``; its score, 297 of them, is beyond
    int64. In int64 it wrapped negative, Krum kept only the attacker and its
    update became the model.
    """
    p, a = 128, 2**23
    spec = ModelSpec(id="krum300", task="binary_classification", layout=(("w", (p,)),),
                     fixed_point={"frac_bits": 16}, rule="multi_krum", rule_params={"f": 1, "m": 1},
                     round_length_blocks=10, min_updates=300, max_updates=300, max_abs=a,
                     max_norm=math.isqrt(EXACT), max_samples=1000)
    state = MemoryState()
    contract.init_models(state, [spec], {spec.id: None}, 0)
    rng = np.random.default_rng(15)
    attacker = 7
    for i in range(300):
        delta = np.full(p, -a) if i == attacker else a - rng.integers(0, 1000, p)
        contract.submit_update(state, _ctx(i.to_bytes(32, "big")), {
            "model_id": spec.id, "round": 1, "base_version": 0, "num_samples": 1000,
            "delta": np.asarray(delta, dtype="<i4").tobytes()})
    [record] = contract.end_block(state, 1)
    assert record.participants[attacker].excluded == "not_selected_by_multi_krum"
    assert record.accepted == 1
    weights = contract.get_model(state, spec.id).weights_int()
    assert weights.min() > 0, "the new model must be an honest update, not the attacker's"


@pytest.mark.parametrize("bad, field", [
    ({"rule": "krum"}, "rule"),
    ({"rule": "centered_clip", "rule_params": {"iters": 0, "tau_pct": 100}}, "rule_params.iters"),
    ({"rule": "centered_clip", "rule_params": {"iters": 2}}, "rule_params.tau_pct"),
    ({"rule": "median", "rule_params": {"adaptive_clip_pct": 99}}, "rule_params.adaptive_clip_pct"),
    ({"rule": "fedavg", "rule_params": {"trim": 1}}, "rule_params.trim"),
])
def test_genesis_refuses_bad_rules_with_a_stable_code(bad: dict, field: str) -> None:
    from core.errors import BadAggregationRule

    doc = {**ModelSpec.for_sequential("m", [3, 2], min_updates=4, max_updates=4).to_doc(), **bad}
    with pytest.raises(BadAggregationRule) as info:
        ModelSpec.parse(doc)
    assert info.value.code == -32100 and info.value.data["field"] == field
    assert info.value.message.startswith("model m: ")


def test_genesis_accepts_the_new_rules_and_the_pre_step() -> None:
    for rule, params in [("centered_clip", {"iters": 3, "tau_pct": 100}),
                         ("multi_krum", {"f": 1, "m": 2, "adaptive_clip_pct": 200})]:
        doc = ModelSpec.for_sequential("m", [3, 2], rule=rule, rule_params=params, min_updates=4).to_doc()
        assert ModelSpec.parse(doc).rule_params == params
