"""Defences against persistent attackers, in exact int64 arithmetic: norm clipping and centered clipping.

These are array kernels; :mod:`fl_contracts.aggregation` wraps them as rules
and runs them after its shared validation, so every input here has
coordinates ``|x| <= A`` and squared norms ``<= P * A**2 <= 2**53`` (bound
(1) of :mod:`fl_contracts.fixedpoint`). Unlike the classic rules they use
no float64 BLAS at all: integer sums in numpy are exact and independent of
summation order whenever they stay inside int64, and the bounds below say
they do.

- :func:`adaptive_clip`: clip every update to ``pct / 100`` times the round's
  median norm. A fixed ``max_norm`` must be set loose enough for the largest
  honest update of any round, so an attacker scaling its update up to that
  bound still dominates a round whose honest updates are small; the median
  norm is set by the honest majority and tracks the round (the adaptive
  clipping of Andrew et al., "Differentially Private Learning with Adaptive
  Clipping", NeurIPS 2021, here with the median, a robust statistic, as the
  quantile, as in Sun et al. 2019's norm bounding).
- :func:`centered_clip`: Karimireddy, He & Jaggi, "Learning from History for
  Byzantine Robust Optimization" (ICML 2021), eq. (CC):
  ``v <- v + sum_i w_i * clip_tau(x_i - v) / sum_i w_i`` for ``iters``
  iterations. The paper starts from the previous round's momentum; a
  contract round sees only its own updates, so we start from the
  coordinate-wise median, which an attacker minority cannot move far.
  The radius ``tau`` is ``tau_pct / 100`` times the median distance to the
  current centre, so it needs no knowledge of the model's scale. With no
  update clipped the result equals FedAvg exactly (see :func:`centered_clip`).

Bounds (``N`` updates, weights ``<= W``, ``N * W * A <= 2**53`` by spec):
distances to a centre inside ``[-A, A]`` have coordinates ``<= 2A <= 2**32``,
squared norms ``<= 4 * P * A**2 <= 2**55``; a clipped coordinate is formed as
``d * tau`` with ``tau < ||d|| <= 2**27.5``, so ``|d * tau| < 2**60``;
weighted sums ``<= N * W * 2A <= 2**54``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from fl_contracts.fixedpoint import IntArray, round_div

PCT = 100
"""Multipliers are integers in percent, so a spec carries no float."""


def ceil_sqrt(n: int) -> int:
    return 0 if n == 0 else math.isqrt(n - 1) + 1


def lower_median(xs: IntArray) -> int:
    """The ``(N - 1) // 2``-th smallest: an element of the input, so no rounding; for even N the lower of the two."""
    return int(np.sort(xs)[(len(xs) - 1) // 2])


def clip_rows(values: npt.NDArray[np.integer], sq: IntArray, limit: int) -> list[int]:
    """Scale, in place, every row whose squared norm ``sq[i]`` exceeds ``limit**2`` to norm ``limit``; return those rows.

    The scale is ``limit / ceil(sqrt(sq))`` applied with :func:`round_div`,
    so no coordinate grows in magnitude or changes sign.
    """
    clipped = [i for i in range(values.shape[0]) if int(sq[i]) > limit * limit]
    for i in clipped:
        values[i] = round_div(values[i].astype(np.int64) * limit, ceil_sqrt(int(sq[i])))
    return clipped


def row_sq_norms(d: IntArray) -> IntArray:
    """Exact squared row norms of an int64 matrix whose entries satisfy ``P * max|d|**2 < 2**63``."""
    return np.einsum("ij,ij->i", d, d)


def adaptive_clip(values: npt.NDArray[np.int32], sq: IntArray, pct: int) -> list[int]:
    """Clip rows, in place, to ``pct / 100`` of the round's (lower) median norm; return the rows clipped."""
    limit = math.isqrt(lower_median(sq)) * pct // PCT
    return clip_rows(values, sq, limit)


def centered_clip(
    values: npt.NDArray[np.int32], weights: IntArray, start: IntArray, iters: int, tau_pct: int
) -> tuple[IntArray, list[int]]:
    """Centered clipping from ``start``; returns the centre and the rows clipped in the last iteration.

    Exactly FedAvg when nothing is clipped: one step gives
    ``v + round_div(sum w (x - v), W) = round_div(sum w x, W)`` because
    ``round_div(a - W v, W) = round_div(a, W) - v`` for integer ``v``, and
    FedAvg is a fixed point of further steps. Each step moves the centre to
    a weighted mean of points between it and each update, so it stays inside
    ``[-A, A]`` and the bounds above hold at every iteration.
    """
    v = np.asarray(start, dtype=np.int64)
    total = int(weights.sum())
    clipped: list[int] = []
    for _ in range(iters):
        d = values.astype(np.int64) - v
        sq = row_sq_norms(d)
        tau = math.isqrt(lower_median(sq)) * tau_pct // PCT
        clipped = clip_rows(d, sq, tau)
        v = v + round_div(weights.astype(np.int64) @ d, total)
    return v, clipped
