"""Aggregation rules: one small function per rule, behind one interface.

A rule is ``(updates, params) -> RuleResult`` registered in :data:`RULES`.
:func:`aggregate` runs the shared steps once before any rule: order the
updates canonically (by sender key, so the result cannot depend on the order
transactions arrived in), check shapes and bounds, and norm-bound every update
(Sun et al., "Can You Really Backdoor Federated Learning?", 2019).

Rules:

- ``fedavg``: sample-weighted mean, weights capped at ``max_samples``
  (McMahan et al., "Communication-Efficient Learning of Deep Networks from
  Decentralized Data", AISTATS 2017).
- ``median``: coordinate-wise median; ``trimmed_mean``: coordinate-wise mean
  after dropping the ``trim`` largest and smallest values (Yin et al.,
  "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates",
  ICML 2018).
- ``multi_krum``: keep the ``m`` updates with the lowest Krum score (sum of
  squared distances to the ``n - f - 2`` nearest others) and FedAvg them
  (Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant
  Gradient Descent", NeurIPS 2017; El Mhamdi et al., ICML 2018). All pairwise
  distances come from one Gram matrix; scores are summed exactly beyond
  int64 (bound (4) of :mod:`fl_contracts.fixedpoint`).
- ``centered_clip``: centered clipping (Karimireddy, He & Jaggi, ICML 2021),
  started from the coordinate-wise median, one vote per update like
  ``median`` and ``trimmed_mean``; see :mod:`fl_contracts.robust`.
- ``foolsgold``: FoolsGold's similarity down-weighting (Fung et al., RAID
  2020) in a per-round form, and why not FLTrust: :mod:`fl_contracts.robust`.

Pre-step: any rule's ``rule_params`` may carry ``adaptive_clip_pct``; every
update is then clipped to that percentage of the round's median norm after
the fixed ``max_norm`` bound and before the rule.

Everything is integer-exact: see :mod:`fl_contracts.fixedpoint` for why the
float64 BLAS kernels used below return exact integers. Work proceeds in
column blocks so temporaries stay in cache and peak memory stays a small
fraction of the updates' size. The bound check and the squared norms share
one pass (:func:`scan`); for FedAvg without the adaptive pre-step that pass
also computes the weighted mean, used as is when no update needed clipping,
so the honest common case reads the updates from memory once. Every path is
exact, so the fused one returns the same integers as the separate steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from threadpoolctl import ThreadpoolController

from core.errors import InvalidInput
from fl_contracts import robust
from fl_contracts.fixedpoint import IntArray, round_div, wide_row_sums
from fl_contracts.spec import ADAPTIVE_CLIP

BLOCK_ELEMS = 1 << 19
"""Elements per (N x block) working buffer, about 4 MiB of float64: cache-resident; larger blocks fall off a cliff."""


@dataclass(frozen=True)
class Updates:
    """N updates in canonical (sender-sorted) order: int32 values (N, P), int64 weights (N,)."""

    values: npt.NDArray[np.int32]
    weights: IntArray
    senders: tuple[bytes, ...]

    @property
    def n(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True)
class RuleResult:
    """The aggregate delta, and the updates the rule left out with the reason why."""

    delta: IntArray
    excluded: dict[int, str] = field(default_factory=dict)


Rule = Callable[[Updates, Mapping[str, int]], RuleResult]


def block_cols(n: int) -> int:
    return max(256, 1 << ((BLOCK_ELEMS // max(n, 1)).bit_length() - 1))


def _blocks(n: int, p: int) -> range:
    return range(0, p, block_cols(n))


@dataclass(frozen=True)
class Scan:
    """What one pass over the updates learnt: exact squared row norms, and the FedAvg result when weights were given."""

    sq: IntArray
    mean: IntArray | None


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def scan(values: npt.NDArray[np.int32], *, max_abs: int | None = None, weights: IntArray | None = None,
         squares: bool = True) -> Scan:
    """One pass over cache-sized column blocks, each read from memory once and converted to float64 once.

    Per block, in cache: the bound check on the int32 values (``max_abs``;
    it raises before anything else is trusted, so an inexact sum of an
    out-of-bounds update is never used), the squared row norms (bound (1)),
    and ``round_div(sum_i w_i x_i, sum_i w_i)`` (bound (2)). Doing all three
    in one pass is what puts shared validation plus FedAvg ahead of
    Flower: as separate passes each re-read the N x P updates from memory.
    BLAS runs on one thread here: OpenBLAS splits each row's dot product
    across threads that spin-wait for each other, which on cores shared with
    the rest of a validator cost 5x the single-threaded time.
    """
    n, p = values.shape
    b = block_cols(n)
    buf = np.empty((n, min(b, p)), dtype=np.float64)
    acc = np.empty(buf.shape[1], dtype=np.float64)
    sq = np.zeros(n, dtype=np.float64)
    w = None if weights is None else weights.astype(np.float64)
    total = 0 if weights is None else int(weights.sum())
    mean = None if weights is None else np.empty(p, dtype=np.int64)
    with _blas().limit(limits=1, user_api="blas"):
        for s in _blocks(n, p):
            e = min(s + b, p)
            src, blk = values[:, s:e], buf[:, : e - s]
            if max_abs is not None and (-int(src.min()) > max_abs or int(src.max()) > max_abs):
                raise InvalidInput(f"an update has a coordinate beyond max_abs={max_abs}")
            np.copyto(blk, src)
            if w is not None and mean is not None:
                np.dot(w, blk, out=acc[: e - s])
                np.copyto(mean[s:e], acc[: e - s], casting="unsafe")  # exact integers below 2**53
                round_div(mean[s:e], total, out=mean[s:e])
            if squares:
                sq += np.matmul(blk[:, None, :], blk[:, :, None])[:, 0, 0]
    return Scan(sq.astype(np.int64), mean)


def sum_squares(values: npt.NDArray[np.int32]) -> IntArray:
    """Exact per-row sums of squares (bound (1) in fixedpoint)."""
    return scan(values).sq


def norm_bound(values: npt.NDArray[np.int32], max_norm: int) -> list[int]:
    """Scale, in place, every row whose L2 norm exceeds ``max_norm`` down to it; return those rows.

    The scale is ``max_norm / ceil(sqrt(sum of squares))`` with an exact
    integer square root, applied with :func:`round_div`, so it never grows a
    coordinate and is identical on every machine.
    """
    return robust.clip_rows(values, sum_squares(values), max_norm)


def _weighted_mean(values: npt.NDArray[np.int32], weights: IntArray) -> IntArray:
    """round_div(sum_i w_i x_i, sum_i w_i), exact by bound (2)."""
    mean = scan(values, weights=weights, squares=False).mean
    assert mean is not None
    return mean


def fedavg(u: Updates, params: Mapping[str, int]) -> RuleResult:
    return RuleResult(_weighted_mean(u.values, u.weights))


def _sorted_rows(u: Updates, reduce: Callable[[npt.NDArray[np.int32]], IntArray]) -> IntArray:
    """Apply ``reduce`` to column blocks sorted along the update axis, handed over as (columns, N) rows.

    Each block is copied transposed so every column's N values are
    contiguous and sort in place with numpy's vectorised sort, four times
    faster than sorting along the strided update axis.
    """
    n, p = u.values.shape
    out = np.empty(p, dtype=np.int64)
    b = block_cols(n)
    buf = np.empty((min(b, p), n), dtype=np.int32)
    for s in _blocks(n, p):
        e = min(s + b, p)
        cols = buf[: e - s]
        np.copyto(cols, u.values[:, s:e].T)
        cols.sort(axis=1)
        out[s:e] = reduce(cols)
    return out


def median(u: Updates, params: Mapping[str, int]) -> RuleResult:
    """Middle value; for even N the two middle values averaged with round_div."""
    n = u.n
    if n % 2:
        return RuleResult(_sorted_rows(u, lambda c: c[:, n // 2].astype(np.int64)))
    return RuleResult(_sorted_rows(u, lambda c: round_div(c[:, n // 2 - 1].astype(np.int64) + c[:, n // 2], 2)))


def trimmed_mean(u: Updates, params: Mapping[str, int]) -> RuleResult:
    k = params["trim"]
    if 2 * k >= u.n:
        raise InvalidInput(f"trimmed_mean with trim={k} needs more than {2 * k} updates, got {u.n}")
    kept = u.n - 2 * k
    return RuleResult(_sorted_rows(u, lambda c: round_div(c[:, k : u.n - k].sum(axis=1, dtype=np.int64), kept)))


def gram(values: npt.NDArray[np.int32]) -> IntArray:
    """Exact X X^T (bound (1)), accumulated over column blocks."""
    n, p = values.shape
    g = np.zeros((n, n), dtype=np.float64)
    b = block_cols(n)
    buf = np.empty((n, b), dtype=np.float64)
    for s in _blocks(n, p):
        e = min(s + b, p)
        blk = buf[:, : e - s]
        np.copyto(blk, values[:, s:e])
        g += blk @ blk.T
    return g.astype(np.int64)


def krum_scores(values: npt.NDArray[np.int32], f: int) -> list[int]:
    """Krum score per update: sum of squared distances to its n - f - 2 nearest neighbours, as exact ints.

    A distance is at most ``4 * 2**53`` (bound (1)) and fits int64, but a sum of
    up to ``max_updates - 1`` of them does not (bound (4)): it is summed in two
    int64 limbs and returned as Python integers, so a far-away update's score
    can never wrap negative and win the selection.
    """
    n = values.shape[0]
    g = gram(values)
    sq = np.diag(g)
    dist = sq[:, None] + sq[None, :] - 2 * g
    np.fill_diagonal(dist, np.iinfo(np.int64).max)
    nearest = np.sort(dist, axis=1)[:, : n - f - 2]
    return wide_row_sums(nearest)


def multi_krum(u: Updates, params: Mapping[str, int]) -> RuleResult:
    f, m = params["f"], params["m"]
    if u.n < f + 3:
        raise InvalidInput(f"multi_krum with f={f} needs at least {f + 3} updates, got {u.n}")
    scores = krum_scores(u.values, f)
    order = sorted(range(u.n), key=lambda i: (scores[i], i))  # ties go to the lower sender key
    keep = np.array(sorted(order[: min(m, u.n)]), dtype=np.intp)
    excluded = {i: "not_selected_by_multi_krum" for i in order[min(m, u.n) :]}
    return RuleResult(_weighted_mean(u.values[keep], u.weights[keep]), excluded)


def centered_clip(u: Updates, params: Mapping[str, int]) -> RuleResult:
    """Centered clipping from the coordinate-wise median (see :mod:`fl_contracts.robust`)."""
    start = median(u, params).delta
    center, _ = robust.centered_clip(u.values, start, params["iters"], params["tau_pct"], block_cols(u.n))
    return RuleResult(center)


def foolsgold(u: Updates, params: Mapping[str, int]) -> RuleResult:
    """Per-round FoolsGold: weight each update by its dissimilarity to the most similar other one."""
    alpha = robust.foolsgold_weights(gram(u.values))
    excluded = {i: "too_similar_to_another_update" for i, a in enumerate(alpha) if a == 0}
    return RuleResult(robust.weighted_mean_int(u.values, alpha, block_cols(u.n)), excluded)


RULES: dict[str, Rule] = {
    "fedavg": fedavg,
    "median": median,
    "trimmed_mean": trimmed_mean,
    "multi_krum": multi_krum,
    "centered_clip": centered_clip,
    "foolsgold": foolsgold,
}


@dataclass(frozen=True)
class Aggregate:
    delta: IntArray
    clipped: list[int]
    excluded: dict[int, str]


def aggregate(
    rule: str, params: Mapping[str, int], updates: Updates, *, max_abs: int, max_norm: int, max_samples: int
) -> Aggregate:
    """Shared validation and norm bounding once, then the named rule.

    ``updates.values`` is modified in place by norm bounding; callers pass a
    buffer they own (the contract stacks fresh copies from state).
    """
    values, weights = updates.values, updates.weights
    if values.ndim != 2 or values.dtype != np.int32 or weights.shape != (values.shape[0],):
        raise InvalidInput("updates must be an (N, P) int32 matrix with N weights")
    if values.shape[0] == 0:
        raise InvalidInput("no updates to aggregate")
    if list(updates.senders) != sorted(set(updates.senders)):
        raise InvalidInput("updates must be sorted by sender with no duplicates")
    capped = Updates(values, np.minimum(weights, max_samples).astype(np.int64), updates.senders)
    fused = rule == "fedavg" and ADAPTIVE_CLIP not in params and int(weights.min()) >= 1
    seen = scan(values, max_abs=max_abs, weights=capped.weights if fused else None)
    if int(weights.min()) < 1:
        raise InvalidInput("update weights must be positive")
    clipped = robust.clip_rows(values, seen.sq, max_norm)
    if fused and not clipped and seen.mean is not None:
        return Aggregate(seen.mean, [], {})  # FedAvg's sums came with the validating pass
    if ADAPTIVE_CLIP in params:
        sq = seen.sq.copy()
        if clipped:
            sq[clipped] = sum_squares(values[clipped])
        clipped = sorted({*clipped, *robust.adaptive_clip(values, sq, params[ADAPTIVE_CLIP])})
    result = RULES[rule](capped, params)
    return Aggregate(result.delta, clipped, result.excluded)
