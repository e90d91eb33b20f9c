"""Numpy inference for the Sequential layouts, accuracy, and the loss-threshold membership attack.

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

from fl_contracts.spec import ModelSpec

Array = npt.NDArray[np.float64]


def forward(spec: ModelSpec, weights: Mapping[str, Array], x: Array) -> Array:
    """Logits of nn.Sequential(Linear, ReLU, ..., Linear) with the layout's names."""
    linear = [name[: -len(".weight")] for name, _ in spec.layout if name.endswith(".weight")]
    h = np.asarray(x, dtype=np.float64)
    for i, prefix in enumerate(linear):
        h = h @ weights[f"{prefix}.weight"].T + weights[f"{prefix}.bias"]
        if i < len(linear) - 1:
            h = np.maximum(h, 0.0)
    return h


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
