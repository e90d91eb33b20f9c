"""Numpy inference for declared models (``core.layers``), accuracy, and the loss-threshold membership attack.

The attack is Yeom et al., "Privacy Risk in Machine Learning: Analyzing the
Connection to Overfitting" (CSF 2018): guess "member" when an example's loss
is below a threshold. Its advantage is max over thresholds of TPR - FPR, the
quantity their Theorem bounds by the model's generalisation gap and DP bounds
by e^epsilon - 1 + delta.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from core.layers import Network
from fl_contracts.spec import ModelSpec

Array = npt.NDArray[np.float64]


def forward(spec: ModelSpec, weights: Mapping[str, Array], x: Array) -> Array:
    """Logits of the declared stack (``spec.network_layers``: any depth, dropout, layer norm)."""
    return Network.build(spec.network_layers, weights).logits(x)


def accuracy(spec: ModelSpec, weights: Mapping[str, Array], x: Array, y: npt.NDArray[np.int64]) -> float:
    return float(np.mean(forward(spec, weights, x).argmax(axis=1) == y))


def losses(spec: ModelSpec, weights: Mapping[str, Array], x: Array, y: npt.NDArray[np.int64]) -> Array:
    """Per-example cross-entropy."""
    z = forward(spec, weights, x)
    z = z - z.max(axis=1, keepdims=True)
    return np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]


def mia_advantage(member_losses: Array, nonmember_losses: Array) -> float:
    """max_t TPR(t) - FPR(t) for the rule "member iff loss <= t"."""
    thresholds = np.unique(np.concatenate([member_losses, nonmember_losses]))
    tpr = np.searchsorted(np.sort(member_losses), thresholds, side="right") / len(member_losses)
    fpr = np.searchsorted(np.sort(nonmember_losses), thresholds, side="right") / len(nonmember_losses)
    return float(max(0.0, np.max(tpr - fpr)))
