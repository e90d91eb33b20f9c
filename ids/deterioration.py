"""Deterioration model inference and its explanation, with numpy only.

The model is the federated one genesis declares: torch ``nn.Sequential``
weights (``ids.classifier`` layout) over ``ids.vitals.WINDOW_FEATURE_NAMES``
with two outputs (stable, deteriorating). A clinician will not act on a bare
probability, so every score comes with what drove it: for each feature, the
gradient of the log-odds times the feature's value. For logistic regression
that is exactly weight x standardized value, and the contributions plus the
bias sum to the log-odds; for an MLP it is the usual gradient x input
attribution. Features are centred on the NEWS2 zero-score band, so a
contribution says how far that vital's distance from normal moved the score.
Contributions are summed per vital (its last value and its trend).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    layers: tuple[np.ndarray, ...]

    @classmethod
    def from_weights(cls, weights: Weights) -> DeteriorationModel:
        return cls(validate_weights(weights, N_WINDOW_FEATURES, 2))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probability of NEWS2 >= 5 within the horizon, one per row."""
        return softmax(logits(self.layers, np.atleast_2d(x)))[:, 1]

    def _log_odds_gradient(self, x: np.ndarray) -> np.ndarray:
        if len(self.layers) == 2:
            return self.layers[0][1] - self.layers[0][0]
        w1, b1, w2, _ = self.layers
        active = (x @ w1.T + b1) > 0
        return ((w2[1] - w2[0]) * active) @ w1

    def explain(self, x: np.ndarray) -> Explanation:
        z = logits(self.layers, x[None, :])[0]
        contributions = self._log_odds_gradient(x) * x
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
