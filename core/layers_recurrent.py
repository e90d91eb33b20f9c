"""A declared GRU over a vital-sign window, in numpy: forward and input gradient, exactly as torch's.

A temporal convolution sees ``kernel`` steps at a time; deterioration is a
drift from the patient's own baseline over hours, which a recurrent state
carries over the whole window. The layer is torch's single-layer
``nn.GRU(batch_first=True)`` (Cho et al. 2014, in torch's convention: the
reset gate multiplies ``W_hn h + b_hn``), reading ``steps`` rows of
``features`` values laid out like :class:`core.layers.TemporalConv`'s input
(``[t0 f0, t0 f1, ..., t1 f0, ...]``) and giving the last hidden state, so
it can open a declared stack that a Linear head closes. Its tensors are
``nn.GRU``'s, gates stacked in torch's order (reset, update, new):
``weight_ih_l0`` (3H, F), ``weight_hh_l0`` (3H, H), ``bias_ih_l0`` and
``bias_hh_l0`` (3H). The input gradient is backpropagation through time,
which ``ids.deterioration`` needs for gradient x input explanations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, StrictInt

Array = npt.NDArray[np.float64]
GRU_TENSORS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


class GRU(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    kind: Literal["gru"]
    steps: StrictInt = Field(ge=1)
    features: StrictInt = Field(ge=1)
    hidden: StrictInt = Field(ge=1)

    @property
    def inputs(self) -> int:
        return self.steps * self.features

    @property
    def outputs(self) -> int:
        return self.hidden

    def layout(self, index: int) -> list[tuple[str, tuple[int, ...]]]:
        h3 = 3 * self.hidden
        shapes = ((h3, self.features), (h3, self.hidden), (h3,), (h3,))
        return [(f"{index}.{name}", shape) for name, shape in zip(GRU_TENSORS, shapes, strict=True)]


@dataclass(frozen=True)
class GRUTrace:
    """What the backward pass needs from each step: the state before it and the gate values."""

    h_prev: Array  # (T, B, H)
    r: Array
    z: Array
    n: Array
    hn: Array  # W_hn h + b_hn, before the reset gate


def _sigmoid(x: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # exact identity, no overflow for large |x|


def gru_forward(layer: GRU, x: Array, params: Mapping[str, Array], index: int) -> tuple[Array, GRUTrace]:
    w_ih, w_hh, b_ih, b_hh = (params[f"{index}.{name}"] for name in GRU_TENSORS)
    size = layer.hidden
    seq = x.reshape(len(x), layer.steps, layer.features)
    gi_all = seq @ w_ih.T + b_ih  # (B, T, 3H): the input's share of every gate, all steps at once
    h = np.zeros((len(x), size))
    trace: list[tuple[Array, ...]] = []
    for t in range(layer.steps):
        gi, gh = gi_all[:, t], h @ w_hh.T + b_hh
        r = _sigmoid(gi[:, :size] + gh[:, :size])
        z = _sigmoid(gi[:, size:2 * size] + gh[:, size:2 * size])
        hn = gh[:, 2 * size:]
        n = np.tanh(gi[:, 2 * size:] + r * hn)
        trace.append((h, r, z, n, hn))
        h = (1.0 - z) * n + z * h
    stacked = [np.stack(parts) for parts in zip(*trace, strict=True)]
    return h, GRUTrace(*stacked)


def gru_input_grad(layer: GRU, grad: Array, trace: GRUTrace, params: Mapping[str, Array], index: int) -> Array:
    """d(loss)/d(input) given d(loss)/d(last hidden state) ``grad`` (B, H)."""
    w_ih, w_hh = params[f"{index}.weight_ih_l0"], params[f"{index}.weight_hh_l0"]
    size = layer.hidden
    dh = grad
    dx = np.zeros((len(grad), layer.steps, layer.features))
    for t in reversed(range(layer.steps)):
        h_prev, r, z, n, hn = trace.h_prev[t], trace.r[t], trace.z[t], trace.n[t], trace.hn[t]
        dn = dh * (1.0 - z) * (1.0 - n * n)  # through tanh
        dz = dh * (h_prev - n) * z * (1.0 - z)
        dr = dn * hn * r * (1.0 - r)
        d_gi = np.concatenate([dr, dz, dn], axis=1)
        d_gh = np.concatenate([dr, dz, dn * r], axis=1)
        dx[:, t] = d_gi @ w_ih
        dh = dh * z + d_gh @ w_hh
    return dx.reshape(len(grad), -1)
