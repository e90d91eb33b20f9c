"""Defences against persistent attackers in exact integer arithmetic: adaptive clipping, centered clipping, FoolsGold.

These are array kernels; :mod:`fl_contracts.aggregation` wraps them as rules
and runs them after its shared validation, so every input here has
coordinates ``|x| <= A`` and squared norms ``<= P * A**2 <= 2**53`` (bound
(1) of :mod:`fl_contracts.fixedpoint`). Apart from the exact Gram matrix
FoolsGold starts from, they use no float64 BLAS: integer sums in numpy are
exact and independent of summation order whenever they stay inside int64,
and the bounds below say they do.

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
  ``v <- v + (1/n) * sum_i clip_tau(x_i - v)`` for ``iters`` iterations.
  The paper starts from the previous round's momentum; a contract round
  sees only its own updates, so we start from the coordinate-wise median,
  which an attacker minority cannot move far.
  The radius ``tau`` is ``tau_pct / 100`` times the median distance to the
  current centre, so it needs no knowledge of the model's scale. With no
  update clipped the result equals the unweighted mean exactly (see
  :func:`centered_clip`).
- :func:`foolsgold_weights`: FoolsGold (Fung, Yoon & Beschastnikh, "The
  Limitations of Federated Learning in Sybil Settings", RAID 2020) without
  its history. FLTrust (Cao et al., NDSS 2021) needs a clean root data set
  held by the server to score updates against; a chain has no trusted party
  to hold one and no place to keep patients' records, so it does not fit.
  FoolsGold needs only the updates: colluders pushing one goal send
  unusually similar updates, and it gives each update a weight of one minus
  its largest cosine similarity to another (with FoolsGold's pardoning of
  honest updates that merely resemble a colluder). The paper scores each
  client's summed history; a contract rule sees one round, so this is the
  per-round form: it catches colluders that send near-identical vectors in
  the same round, not a lone attacker. The paper's logit stretch of the weights, a float
  transcendental, becomes the line through its points of weight 0 and 1.

Bounds (``N <= 1024`` updates):
distances to a centre inside ``[-A, A]`` have coordinates ``<= 2A <= 2**32``,
squared norms ``<= 4 * P * A**2 <= 2**55``; a clipped coordinate is formed as
``d * tau`` with ``tau < ||d|| <= 2**27.5``, so ``|d * tau| < 2**60``;
sums ``<= N * 2A <= 2**42``. FoolsGold weights are ``<= 2**16`` and its
weighted sums ``<= N * 2**16 * A <= 2**57``, in int64; cosines are formed
from exact Gram entries with Python integers.
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


def centered_clip(values: npt.NDArray[np.int32], start: IntArray, iters: int, tau_pct: int,
                  cols: int) -> tuple[IntArray, list[int]]:
    """Centered clipping from ``start``, one vote per update; returns the centre and the rows clipped last.

    Each update counts once, as in the paper's ``(1/n) sum_i``: sample counts
    are self-reported and the chain cannot check them, so a weighted centre
    would let an attacker claiming ``max_samples`` pull it by its claimed
    share of the weight times the radius in every iteration.

    Exactly the unweighted mean when nothing is clipped: one step gives
    ``v + round_div(sum (x - v), n) = round_div(sum x, n)`` because
    ``round_div(a - n v, n) = round_div(a, n) - v`` for integer ``v``, and the
    mean is a fixed point of further steps. Each step moves the centre to
    a mean of points between it and each update, so it stays inside
    ``[-A, A]`` and the bounds above hold at every iteration. Work goes in
    blocks of ``cols`` columns so int64 temporaries stay small.
    """
    n, p = values.shape
    v = np.asarray(start, dtype=np.int64)
    clipped: list[int] = []
    for _ in range(iters):
        sq = np.zeros(n, dtype=np.int64)
        for s in range(0, p, cols):
            sq += row_sq_norms(values[:, s : s + cols].astype(np.int64) - v[s : s + cols])
        tau = math.isqrt(lower_median(sq)) * tau_pct // PCT
        clipped = [i for i in range(n) if int(sq[i]) > tau * tau]
        norms = np.array([ceil_sqrt(int(sq[i])) for i in clipped], dtype=np.int64)[:, None]
        nxt = np.empty(p, dtype=np.int64)
        for s in range(0, p, cols):
            d = values[:, s : s + cols].astype(np.int64) - v[s : s + cols]
            if clipped:
                d[clipped] = round_div(d[clipped] * tau, norms)
            nxt[s : s + cols] = v[s : s + cols] + round_div(d.sum(axis=0), n)
        v = nxt
    return v, clipped


COS_ONE = 1 << 16
"""FoolsGold's cosines and weights are fixed point in units of 2**-16."""

LOGIT_ZERO = round(COS_ONE / (1 + math.exp(0.5)))
"""FoolsGold maps a normalised weight a to clip(ln(a / (1 - a)) + 0.5, 0, 1): 0 up to a = 1 / (1 + e**0.5)
(about 0.378) and 1 from a = 1 - that. We keep those two points and join them linearly (a constant, so exact)."""


def foolsgold_weights(g: IntArray) -> list[int]:
    """Per-update weights in ``[0, COS_ONE]`` from an exact Gram matrix (Fung et al. 2020, Algorithm 1, one round).

    ``cs[i][j] = floor(COS_ONE * g_ij / ceil(sqrt(g_ii g_jj)))``, Python
    integers throughout, so the result is exact and the same everywhere.
    """
    n = g.shape[0]
    gi = [[int(x) for x in row] for row in g]
    cs = [[0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            den = ceil_sqrt(gi[i][i] * gi[j][j])
            cs[i][j] = cs[j][i] = 0 if den == 0 else gi[i][j] * COS_ONE // den
    top = [max((cs[i][j] for j in range(n) if j != i), default=0) for i in range(n)]
    alpha = []
    for i in range(n):
        # pardoning: an update that resembles one more similar to others than itself is not penalised for it;
        # only a positive top[i] scales (then top[j] > top[i] > 0), as the ratio of similarities assumes
        pardoned = [cs[i][j] * top[i] // top[j] if top[j] > top[i] > 0 else cs[i][j] for j in range(n) if j != i]
        alpha.append(min(COS_ONE, max(0, COS_ONE - max(pardoned, default=0))))
    peak = max(alpha)
    if peak == 0:
        return [COS_ONE] * n
    return [min(COS_ONE, max(0, (a * COS_ONE // peak - LOGIT_ZERO) * COS_ONE // (COS_ONE - 2 * LOGIT_ZERO)))
            for a in alpha]


def weighted_mean_int(values: npt.NDArray[np.int32], weights: list[int], cols: int) -> IntArray:
    """round_div(sum_i w_i x_i, sum_i w_i) in int64 column blocks, exact while ``sum w * A < 2**62``."""
    w = np.asarray(weights, dtype=np.int64)
    total = int(w.sum())
    out = np.empty(values.shape[1], dtype=np.int64)
    for s in range(0, values.shape[1], cols):
        out[s : s + cols] = round_div(w @ values[:, s : s + cols].astype(np.int64), total)
    return out
