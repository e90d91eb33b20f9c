"""Persistent poisoning attacks for the in-process simulation: every attacker attacks every round.

An attacker is a hospital whose key the chain accepts, so everything it
sends must pass the contract's checks: the simulation clips and quantizes
its crafted delta like any other update, and it claims the largest sample
count the model allows. The omniscient attacks see the honest updates of
the round before sending (the strongest threat model of the papers below).
Attackers collude: ``alie``, ``ipm`` and ``gaussian`` (a noise draw seeded
by the round) depend only on the round's shared view, so all attackers of a
round send the same vector; ``sign_flip`` and ``label_flip`` start from each
attacker's own training.

- ``sign_flip``: ``-10 *`` its own honest delta (the scaled reversed-gradient
  attack Multi-Krum was designed against, Blanchard et al. 2017).
- ``gaussian``: ``N(0, (10 * s)**2)`` per coordinate, ``s`` the spread of
  the honest mean's coordinates.
- ``label_flip``: trains honestly on labels ``c -> C - 1 - c``; a data
  poisoner, not a model poisoner (Biggio et al. 2012; Fang et al. 2020).
- ``alie``: "A Little Is Enough" (Baruch, Baruch & Goldberg, NeurIPS 2019):
  ``mu - z * sigma`` per coordinate over the honest updates, with the
  paper's ``z = Phi^-1((n - s) / n)``, ``s = floor(n / 2 + 1) - f``, floored at
  1 because the paper's ``z`` is 0 (no attack at all) with 1 attacker of 4.
- ``ipm``: inner-product manipulation (Xie, Koyejo & Gupta, UAI 2020):
  ``-epsilon *`` the honest mean with ``epsilon = 0.5``, the small-epsilon
  variant that makes the aggregate's inner product with the true gradient
  negative while staying close to the honest updates, which fools median
  and Krum.

The "colluding pair among 7" is each of these with 2 attackers of 7
hospitals (:data:`CONFIGS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]
SCALE = 10.0
IPM_EPSILON = 0.5
ALIE_MIN_Z = 1.0


@dataclass(frozen=True)
class RoundView:
    """What an attacker knows when it crafts: its own honest delta and the honest hospitals' deltas."""

    own: Array
    honest: Sequence[Array]
    n_hospitals: int
    n_attackers: int
    rng: np.random.Generator


@dataclass(frozen=True)
class Attack:
    name: str
    craft: Callable[[RoundView], Array]
    flips_labels: bool = False

    def labels(self, y: Labels, n_classes: int) -> Labels:
        return (n_classes - 1 - y).astype(np.int64) if self.flips_labels else y


@dataclass(frozen=True)
class Config:
    """Hospitals and how many of them attack."""

    hospitals: int
    attackers: int
    tolerance: float
    """The issue's target: the default rule within this many accuracy points of its clean run."""

    @property
    def label(self) -> str:
        return f"{self.attackers}/{self.hospitals}"


CONFIGS = (Config(4, 1, 0.02), Config(7, 2, 0.03))


def alie_z(n: int, f: int) -> float:
    s = n // 2 + 1 - f
    return max(ALIE_MIN_Z, NormalDist().inv_cdf((n - s) / n))


def _alie(view: RoundView) -> Array:
    honest = np.stack(view.honest)
    return honest.mean(axis=0) - alie_z(view.n_hospitals, view.n_attackers) * honest.std(axis=0)


def _gaussian(view: RoundView) -> Array:
    spread = float(np.std(np.mean(np.stack(view.honest), axis=0)))
    return view.rng.normal(0.0, SCALE * max(spread, 1e-3), size=view.own.shape)


ATTACKS: dict[str, Attack] = {a.name: a for a in (
    Attack("sign_flip", lambda v: -SCALE * v.own),
    Attack("gaussian", _gaussian),
    Attack("label_flip", lambda v: v.own, flips_labels=True),
    Attack("alie", _alie),
    Attack("ipm", lambda v: -IPM_EPSILON * np.mean(np.stack(v.honest), axis=0)),
)}
