"""Numpy inference for models whose weights use torch ``nn.Sequential`` names.

Hospitals train with PyTorch (``fl_contracts``), the chain stores the
aggregated weights under the ``state_dict`` names of ``nn.Sequential``
(``"0.weight"`` ... with ``nn.Linear``'s (out, in) layout), and the gateway
and validators score with numpy only, so no validator or gateway imports
torch. Two shapes are supported, the ones genesis may declare: logistic
regression (one Linear) and an MLP (Linear, ReLU, Linear).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import InvalidInput
from ids.features import N_FEATURES
from ids.record import ATTACK_CLASSES

Weights = Mapping[str, np.ndarray]
LOGISTIC_NAMES = ("0.weight", "0.bias")
MLP_NAMES = ("0.weight", "0.bias", "2.weight", "2.bias")


def layer_shapes(n_in: int, n_out: int, hidden: int | None) -> dict[str, tuple[int, ...]]:
    """The shapes genesis declares for a logistic (``hidden=None``) or one-hidden-layer model."""
    if hidden is None:
        return {"0.weight": (n_out, n_in), "0.bias": (n_out,)}
    return {"0.weight": (hidden, n_in), "0.bias": (hidden,), "2.weight": (n_out, hidden), "2.bias": (n_out,)}


def validate_weights(weights: Weights, n_in: int, n_out: int) -> tuple[np.ndarray, ...]:
    """Check names and shapes; returns the float64 arrays in layer order."""
    names = tuple(sorted(weights))
    if names not in (tuple(sorted(LOGISTIC_NAMES)), tuple(sorted(MLP_NAMES))):
        raise InvalidInput(f"weights must be named {LOGISTIC_NAMES} or {MLP_NAMES}, got {names}")
    hidden = None if len(names) == 2 else int(np.shape(weights["0.weight"])[0])
    arrays = []
    for name, shape in layer_shapes(n_in, n_out, hidden).items():
        array = np.asarray(weights[name], dtype=np.float64)
        if array.shape != shape:
            raise InvalidInput(f"weight {name!r} has shape {array.shape}; expected {shape}")
        if not np.all(np.isfinite(array)):
            raise InvalidInput(f"weight {name!r} has non-finite values")
        arrays.append(array)
    return tuple(arrays)


def logits(layers: Sequence[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Forward pass: x @ W.T + b, with ReLU between the two layers of an MLP."""
    out = x @ layers[0].T + layers[1]
    if len(layers) == 4:
        out = np.maximum(out, 0.0) @ layers[2].T + layers[3]
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class FlowClassifier:
    """The learned IDS over ``ids.features`` vectors; outputs follow ``classes`` order."""

    layers: tuple[np.ndarray, ...]
    classes: tuple[str, ...] = ATTACK_CLASSES

    @classmethod
    def from_weights(cls, weights: Weights, classes: tuple[str, ...] = ATTACK_CLASSES,
                     n_features: int = N_FEATURES) -> FlowClassifier:
        """Validated weights; ``n_features`` defaults to ``ids.features.FEATURE_NAMES`` (context included)."""
        return cls(validate_weights(weights, n_features, len(classes)), classes)

    @property
    def n_features(self) -> int:
        return int(self.layers[0].shape[1])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(logits(self.layers, np.atleast_2d(x)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(logits(self.layers, np.atleast_2d(x)), axis=1)
