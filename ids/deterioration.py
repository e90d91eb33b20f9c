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

A temporal model (a declared stack opened by a GRU or a temporal
convolution) reads the last ``steps`` rows of ``ids.vitals.series_features``
instead, flattened; its contributions are summed over the window's rows per
feature, then per vital, so a clinician reads the same kind of explanation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import InvalidInput
from core.layers import GRU, AnyLayer, Layer, Linear, Network, ReLU, TemporalConv
from ids.classifier import Weights, logits, softmax, validate_weights
from ids.vitals import (
    FEATURE_VITAL, STEP_FEATURE_NAMES, STEP_FEATURE_VITAL, WINDOW_FEATURE_NAMES, series_features, window_features,
)

N_WINDOW_FEATURES = len(WINDOW_FEATURE_NAMES)
N_STEP_FEATURES = len(STEP_FEATURE_NAMES)
TEMPORAL_STEPS = 8  # 4 h of half-hourly observations


def temporal_layers(kind: str = "gru", hidden: int = 16) -> list[AnyLayer]:
    """The temporal model's declaration: a GRU (or a temporal convolution, kernel 3) over the last
    ``TEMPORAL_STEPS`` rows of ``series_features``, then a one-hidden-layer head."""
    head: list[AnyLayer] = [ReLU(kind="relu"), Linear(kind="linear", inputs=16, outputs=2)]
    if kind == "gru":
        return [GRU(kind="gru", steps=TEMPORAL_STEPS, features=N_STEP_FEATURES, hidden=hidden),
                Linear(kind="linear", inputs=hidden, outputs=16), *head]
    conv = TemporalConv(kind="temporal_conv", steps=TEMPORAL_STEPS, channels=N_STEP_FEATURES, filters=8, kernel=3)
    return [conv, ReLU(kind="relu"), Linear(kind="linear", inputs=conv.outputs, outputs=16), *head]


@dataclass(frozen=True)
class Explanation:
    probability: float
    log_odds: float
    by_vital: tuple[tuple[str, float], ...]  # largest |contribution| first
    by_feature: tuple[tuple[str, float], ...]


def temporal_steps(layers: Sequence[Layer] | None) -> int | None:
    """The window length in observations of a stack opened by a GRU or temporal convolution over
    ``series_features`` rows; None for a stack over the summary window features."""
    first = layers[0] if layers else None
    if isinstance(first, GRU):
        width, steps = first.features, first.steps
    elif isinstance(first, TemporalConv):
        width, steps = first.channels, first.steps
    else:
        return None
    if width != N_STEP_FEATURES:
        raise InvalidInput(f"a temporal deterioration model reads {N_STEP_FEATURES} features per observation "
                           f"({', '.join(STEP_FEATURE_NAMES)}); its first layer reads {width}")
    return steps


@dataclass(frozen=True)
class DeteriorationModel:
    net: Network
    steps: int | None = None  # a temporal model's window in observations; None: summary features

    @classmethod
    def from_weights(cls, weights: Weights, layers: Sequence[Layer] | None = None) -> DeteriorationModel:
        """``layers``: the model's declared stack (``ModelSpec.network_layers``); None: read from the names."""
        steps = temporal_steps(layers)
        n_in = N_WINDOW_FEATURES if steps is None else steps * N_STEP_FEATURES
        return cls(validate_weights(weights, n_in, 2, layers), steps)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return WINDOW_FEATURE_NAMES if self.steps is None else STEP_FEATURE_NAMES

    @property
    def feature_vitals(self) -> tuple[str, ...]:
        return FEATURE_VITAL if self.steps is None else STEP_FEATURE_VITAL

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probability of NEWS2 >= 5 within the horizon, one per row."""
        return softmax(logits(self.net, np.atleast_2d(x)))[:, 1]

    def explain(self, x: np.ndarray) -> Explanation:
        z = logits(self.net, x[None, :])[0]
        contributions = self.net.input_gradient(x, 1, 0) * x
        if self.steps is not None:  # summed over the window's rows
            contributions = contributions.reshape(self.steps, N_STEP_FEATURES).sum(axis=0)
        per_vital: dict[str, float] = {}
        for vital, c in zip(self.feature_vitals, contributions.tolist(), strict=True):
            per_vital[vital] = per_vital.get(vital, 0.0) + c

        def ranked(pairs: dict[str, float]) -> tuple[tuple[str, float], ...]:
            return tuple(sorted(pairs.items(), key=lambda kv: -abs(kv[1])))

        return Explanation(
            probability=float(softmax(z)[1]), log_odds=float(z[1] - z[0]), by_vital=ranked(per_vital),
            by_feature=ranked(dict(zip(self.feature_names, contributions.tolist(), strict=True))),
        )

    def features(self, obs: np.ndarray) -> np.ndarray:
        """The model's input for the last observation of ``obs`` (a patient's history, oldest first). A temporal
        model given fewer rows than its window sees the first row repeated before them, as a patient whose
        admission readings held."""
        obs = np.asarray(obs, dtype=np.float64)
        if self.steps is None:
            return window_features(obs)
        rows = series_features(obs)[-self.steps:]
        return np.vstack([np.repeat(rows[:1], self.steps - len(rows), axis=0), rows]).ravel()

    def score_recent(self, obs: np.ndarray) -> Explanation:
        """Score a patient's most recent observations (rows in ``ids.vitals.OBS_COLUMNS`` order, oldest first)."""
        return self.explain(self.features(obs))
