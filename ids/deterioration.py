"""Deterioration model inference and its explanation, with numpy only.

The model is the federated one genesis declares: torch ``nn.Sequential``
weights (``ids.classifier`` layout) over ``ids.vitals.WINDOW_FEATURE_NAMES``
with two outputs (stable, deteriorating). A clinician will not act on a bare
probability, so every score comes with what drove it: for each feature, the
gradient of the log-odds times the feature's value. For logistic regression
that is exactly weight x standardized value, and the contributions plus the
bias sum to the log-odds; for a deeper declared stack (hidden layers, layer
norm) it is the usual gradient x input attribution, by backpropagation
(``core.layers.Network.input_gradient``). Features are centred on the NEWS2
zero-score band, so a contribution says how far that vital's distance from
normal moved the score.
Contributions are summed per vital (its last value and its trend).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.layers import Layer, Network
from ids.classifier import Weights, logits, softmax, validate_weights
from ids.vitals import FEATURE_VITAL, WINDOW_FEATURE_NAMES, window_features

N_WINDOW_FEATURES = len(WINDOW_FEATURE_NAMES)


@dataclass(frozen=True)
class Explanation:
    probability: float
    log_odds: float
    by_vital: tuple[tuple[str, float], ...]  # largest |contribution| first
    by_feature: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class DeteriorationModel:
    net: Network

    @classmethod
    def from_weights(cls, weights: Weights, layers: Sequence[Layer] | None = None) -> DeteriorationModel:
        """``layers``: the model's declared stack (``ModelSpec.network_layers``); None: read from the names."""
        return cls(validate_weights(weights, N_WINDOW_FEATURES, 2, layers))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probability of NEWS2 >= 5 within the horizon, one per row."""
        return softmax(logits(self.net, np.atleast_2d(x)))[:, 1]

    def explain(self, x: np.ndarray) -> Explanation:
        z = logits(self.net, x[None, :])[0]
        contributions = self.net.input_gradient(x, 1, 0) * x
        per_vital: dict[str, float] = {}
        for vital, c in zip(FEATURE_VITAL, contributions.tolist(), strict=True):
            per_vital[vital] = per_vital.get(vital, 0.0) + c

        def ranked(pairs: dict[str, float]) -> tuple[tuple[str, float], ...]:
            return tuple(sorted(pairs.items(), key=lambda kv: -abs(kv[1])))

        return Explanation(
            probability=float(softmax(z)[1]), log_odds=float(z[1] - z[0]), by_vital=ranked(per_vital),
            by_feature=ranked(dict(zip(WINDOW_FEATURE_NAMES, contributions.tolist(), strict=True))),
        )

    def score_recent(self, obs: np.ndarray) -> Explanation:
        """Score a patient's most recent observations (rows in ``ids.vitals.OBS_COLUMNS`` order, oldest first)."""
        return self.explain(window_features(np.asarray(obs, dtype=np.float64)))
