"""Numpy inference for models whose weights use torch ``nn.Sequential`` names.

Hospitals train with PyTorch (``fl_contracts``), the chain stores the
aggregated weights under the ``state_dict`` names of ``nn.Sequential``
(``"0.weight"`` ... with ``nn.Linear``'s (out, in) layout), and the gateway
and validators score with numpy only, so no validator or gateway imports
torch. Any stack a declaration may list is supported (``core.layers``: Linear,
ReLU, dropout, layer norm, any depth); weights that come without the
declaration's layers are read as a Linear/ReLU stack of any depth.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import InvalidInput
from core.layers import Layer, Network, infer_layers
from ids.features import N_FEATURES
from ids.record import ATTACK_CLASSES

Weights = Mapping[str, np.ndarray]
_NAME = re.compile(r"^(\d+)\.(weight|bias)$")


def layer_shapes(n_in: int, n_out: int, hidden: int | None) -> dict[str, tuple[int, ...]]:
    """The shapes genesis declares for a logistic (``hidden=None``) or one-hidden-layer model."""
    if hidden is None:
        return {"0.weight": (n_out, n_in), "0.bias": (n_out,)}
    return {"0.weight": (hidden, n_in), "0.bias": (hidden,), "2.weight": (n_out, hidden), "2.bias": (n_out,)}


def _implied_layers(weights: Weights) -> tuple[Layer, ...]:
    """The Linear/ReLU stack the names and shapes imply, for a model whose declaration lists no layers."""
    named = [(m, name) for name in weights if (m := _NAME.match(name))]
    if len(named) != len(weights):
        raise InvalidInput(f"weights must be named as nn.Sequential's (0.weight, 0.bias, 2.weight, ...), "
                           f"got {sorted(weights)}")
    order = sorted(named, key=lambda item: (int(item[0][1]), item[0][2] == "bias"))
    try:
        return infer_layers([(name, tuple(np.shape(weights[name]))) for _, name in order])
    except InvalidInput:
        raise InvalidInput(f"weights named {sorted(weights)} are not a Linear/ReLU stack; pass the model's "
                           "declared layers") from None


def validate_weights(weights: Weights, n_in: int, n_out: int, layers: Sequence[Layer] | None = None) -> Network:
    """Check names, shapes and values against ``layers`` (the declaration's; None: a Linear/ReLU stack
    of any depth, read from the names) and the widths ``n_in`` -> ``n_out``."""
    return Network.build(_implied_layers(weights) if layers is None else layers, weights, n_in, n_out)


def logits(net: Network, x: np.ndarray) -> np.ndarray:
    return net.logits(x)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class FlowClassifier:
    """The learned IDS over ``ids.features`` vectors; outputs follow ``classes`` order."""

    net: Network
    classes: tuple[str, ...] = ATTACK_CLASSES

    @classmethod
    def from_weights(cls, weights: Weights, classes: tuple[str, ...] = ATTACK_CLASSES,
                     n_features: int = N_FEATURES, layers: Sequence[Layer] | None = None) -> FlowClassifier:
        """Validated weights; ``n_features`` defaults to ``ids.features.FEATURE_NAMES`` (context included);
        ``layers``: the model's declared stack (``ModelSpec.network_layers``)."""
        return cls(validate_weights(weights, n_features, len(classes), layers), classes)

    @property
    def n_features(self) -> int:
        return self.net.input_width

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(logits(self.net, np.atleast_2d(x)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(logits(self.net, np.atleast_2d(x)), axis=1)
