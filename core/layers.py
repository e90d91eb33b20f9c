"""A model's architecture as its declaration states it, and numpy inference over it.

The chain stores a model as named tensors (``fl_contracts.spec.ModelSpec``'s
layout); the names alone cannot say whether the layer between two Linears is
a ReLU or a dropout, or whether a 1-D tensor is a bias or a layer norm's gain.
So a declaration may list its layers, in torch ``nn.Sequential`` order
(linear, ReLU, dropout, layer norm, and a temporal convolution or a GRU
(``core.layers_recurrent``) over vital-sign series), and
every party builds the same network from that list: hospitals in torch
(``client.fl.training``), gateways, predictors and the metrics in numpy here,
with no torch (a gateway and a validator never load it). The tensor names are
``nn.Sequential``'s ``state_dict`` names (``"<index>.weight"``), so
:func:`sequential_layout` is the layout a declaration must carry.

Integers only in the declaration (genesis refuses floats): dropout's rate is
in millionths, and layer norm uses torch's default epsilon (1e-5) with a gain
and a bias, which are model parameters aggregated like any others.
Declarations from before layers existed name only Linear tensors, which
:func:`infer_layers` reads as Linear, ReLU, ..., Linear.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from core.errors import InvalidInput
from core.layers_recurrent import GRU, gru_forward, gru_input_grad

Array = npt.NDArray[np.float64]
LAYER_NORM_EPS = 1e-5
MAX_LAYERS = 64
_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class Linear(BaseModel):
    model_config = _STRICT
    kind: Literal["linear"]
    inputs: StrictInt = Field(ge=1)
    outputs: StrictInt = Field(ge=1)


class ReLU(BaseModel):
    model_config = _STRICT
    kind: Literal["relu"]


class Dropout(BaseModel):
    """Training-time only: the identity at inference."""

    model_config = _STRICT
    kind: Literal["dropout"]
    rate_ppm: StrictInt = Field(ge=0, lt=1_000_000)


class LayerNorm(BaseModel):
    model_config = _STRICT
    kind: Literal["layer_norm"]
    width: StrictInt = Field(ge=1)


class TemporalConv(BaseModel):
    """A 1-D convolution over time, for vital-sign series: the input (or the layer before's output) is
    ``steps`` rows of ``channels`` values, row-major (``[t0 c0, t0 c1, ..., t1 c0, ...]``); the output is
    ``steps - kernel + 1`` rows of ``filters`` values, laid out the same way. Its tensors are
    ``nn.Conv1d``'s: weight ``(filters, channels, kernel)``, bias ``(filters,)``."""

    model_config = _STRICT
    kind: Literal["temporal_conv"]
    steps: StrictInt = Field(ge=1)
    channels: StrictInt = Field(ge=1)
    filters: StrictInt = Field(ge=1)
    kernel: StrictInt = Field(ge=1)

    @property
    def inputs(self) -> int:
        return self.steps * self.channels

    @property
    def outputs(self) -> int:
        return (self.steps - self.kernel + 1) * self.filters


Layer = Annotated[Union[Linear, ReLU, Dropout, LayerNorm, TemporalConv, GRU], Field(discriminator="kind")]
AnyLayer = Linear | ReLU | Dropout | LayerNorm | TemporalConv | GRU
_READS = (Linear, TemporalConv, GRU)  # the layers with an input width of their own


def sequential_layout(layers: Sequence[AnyLayer]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The ``nn.Sequential`` state_dict names and shapes of ``layers``."""
    out: list[tuple[str, tuple[int, ...]]] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, Linear):
            out += [(f"{i}.weight", (layer.outputs, layer.inputs)), (f"{i}.bias", (layer.outputs,))]
        elif isinstance(layer, LayerNorm):
            out += [(f"{i}.weight", (layer.width,)), (f"{i}.bias", (layer.width,))]
        elif isinstance(layer, TemporalConv):
            out += [(f"{i}.weight", (layer.filters, layer.channels, layer.kernel)), (f"{i}.bias", (layer.filters,))]
        elif isinstance(layer, GRU):
            out += layer.layout(i)
    return tuple(out)


def check_chain(layers: Sequence[AnyLayer]) -> tuple[int, int]:
    """(input width, output width) of a well-formed stack; ValueError says what does not fit.

    Well formed: at most :data:`MAX_LAYERS` layers, a linear, temporal
    convolution or GRU first (the input schema reads it) and a linear last (the
    classes are its outputs), each width agreeing with the one before it.
    """
    if not 1 <= len(layers) <= MAX_LAYERS:
        raise ValueError(f"layers must list 1 to {MAX_LAYERS} layers")
    first, last = layers[0], layers[-1]
    if not isinstance(first, _READS) or not isinstance(last, Linear):
        raise ValueError("layers must start with a linear or temporal_conv layer or a gru, and end with a linear layer")
    width = first.inputs
    for i, layer in enumerate(layers):
        if isinstance(layer, _READS):
            if layer.inputs != width:
                raise ValueError(f"layers[{i}]: {layer.kind} reads {layer.inputs} inputs, "
                                 f"the layer before gives {width}")
            if isinstance(layer, TemporalConv) and layer.kernel > layer.steps:
                raise ValueError(f"layers[{i}]: temporal_conv's kernel {layer.kernel} is longer than "
                                 f"its {layer.steps} steps")
            width = layer.outputs
        elif isinstance(layer, LayerNorm) and layer.width != width:
            raise ValueError(f"layers[{i}]: layer_norm has width {layer.width}, the layer before gives {width}")
    return first.inputs, last.outputs


_LINEAR_NAME = re.compile(r"^(\d+)\.(weight|bias)$")


def infer_layers(layout: Sequence[tuple[str, tuple[int, ...]]]) -> tuple[AnyLayer, ...]:
    """The layers of a layout from before declarations listed them: Linear at indices 0, 2, 4, ... with
    a ReLU between each two; InvalidInput for any other layout."""
    shapes = dict(layout)
    count = len(layout) // 2
    layers: list[AnyLayer] = []
    for j in range(count):
        weight, bias = shapes.get(f"{2 * j}.weight"), shapes.get(f"{2 * j}.bias")
        if weight is None or bias is None or len(weight) != 2 or bias != (weight[0],):
            break
        if layers:
            layers.append(ReLU(kind="relu"))
        layers.append(Linear(kind="linear", inputs=weight[1], outputs=weight[0]))
    if not layers or sequential_layout(layers) != tuple(layout):
        names = [name for name, _ in layout]
        raise InvalidInput(f"a layout of tensors {names} is not a Linear/ReLU stack; declare its layers")
    return tuple(layers)


@dataclass(frozen=True)
class Network:
    """Validated float64 parameters of a declared stack; :meth:`logits` is the forward pass."""

    layers: tuple[AnyLayer, ...]
    params: Mapping[str, Array]

    @classmethod
    def build(cls, layers: Sequence[AnyLayer], weights: Mapping[str, npt.ArrayLike],
              n_in: int | None = None, n_out: int | None = None) -> Network:
        """Check ``weights`` against the stack (names, shapes, finiteness) and, if given, its widths."""
        layout = sequential_layout(layers)
        if sorted(weights) != sorted(name for name, _ in layout):
            raise InvalidInput(f"weights must be named {[name for name, _ in layout]}, got {sorted(weights)}")
        params = {}
        for name, shape in layout:
            array = np.asarray(weights[name], dtype=np.float64)
            if array.shape != shape:
                raise InvalidInput(f"weight {name!r} has shape {array.shape}; expected {shape}")
            if not np.all(np.isfinite(array)):
                raise InvalidInput(f"weight {name!r} has non-finite values")
            params[name] = array
        net = cls(tuple(layers), params)
        for want, got, what in ((n_in, net.input_width, "inputs"), (n_out, net.output_width, "outputs")):
            if want is not None and got != want:
                raise InvalidInput(f"the model has {got} {what}; expected {want} (weight shape mismatch)")
        return net

    @property
    def input_width(self) -> int:
        first = self.layers[0]
        assert isinstance(first, _READS)
        return first.inputs

    @property
    def output_width(self) -> int:
        last = self.layers[-1]
        assert isinstance(last, Linear)
        return last.outputs

    def _run(self, x: Array) -> tuple[Array, list[tuple[int, Any, Any]]]:
        """Logits, and per layer what the backward pass needs (a layer norm's normalised input and 1/std,
        a ReLU's mask, a GRU's trace)."""
        h = np.asarray(x, dtype=np.float64)
        saved = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Linear):
                h = h @ self.params[f"{i}.weight"].T + self.params[f"{i}.bias"]
            elif isinstance(layer, ReLU):
                saved.append((i, h > 0, h))
                h = np.maximum(h, 0.0)
            elif isinstance(layer, TemporalConv):
                saved.append((i, h, h))
                h = _conv(h, layer, self.params[f"{i}.weight"], self.params[f"{i}.bias"])
            elif isinstance(layer, GRU):
                h, trace = gru_forward(layer, h, self.params, i)
                saved.append((i, trace, trace))
            elif isinstance(layer, LayerNorm):
                centred = h - h.mean(axis=-1, keepdims=True)
                inv_std = 1.0 / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + LAYER_NORM_EPS)
                normed = centred * inv_std
                saved.append((i, normed, inv_std))
                h = normed * self.params[f"{i}.weight"] + self.params[f"{i}.bias"]
        return h, saved

    def logits(self, x: Array) -> Array:
        return self._run(x)[0]

    def input_gradient(self, x: Array, up: int, down: int) -> Array:
        """d(logit[up] - logit[down]) / dx at one input vector ``x`` (backpropagation)."""
        _, saved = self._run(np.asarray(x, dtype=np.float64)[None, :])
        by_index = {i: (a, b) for i, a, b in saved}
        grad = np.zeros(self.output_width)
        grad[up], grad[down] = 1.0, -1.0
        grad = grad[None, :]
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            if isinstance(layer, Linear):
                grad = grad @ self.params[f"{i}.weight"]
            elif isinstance(layer, ReLU):
                grad = grad * by_index[i][0]
            elif isinstance(layer, TemporalConv):
                grad = _conv_input_grad(grad, layer, self.params[f"{i}.weight"])
            elif isinstance(layer, GRU):
                grad = gru_input_grad(layer, grad, by_index[i][0], self.params, i)
            elif isinstance(layer, LayerNorm):
                normed, inv_std = by_index[i]
                g = grad * self.params[f"{i}.weight"]
                grad = inv_std * (g - g.mean(axis=-1, keepdims=True)
                                  - normed * (g * normed).mean(axis=-1, keepdims=True))
        return grad[0]



def _conv(h: Array, layer: TemporalConv, weight: Array, bias: Array) -> Array:
    """``out[b, s, f] = bias[f] + sum_{c, j} in[b, s + j, c] * weight[f, c, j]``, rows flattened."""
    x = h.reshape(len(h), layer.steps, layer.channels)
    windows = np.lib.stride_tricks.sliding_window_view(x, layer.kernel, axis=1)  # (b, s, c, j)
    out = np.einsum("bscj,fcj->bsf", windows, weight) + bias
    return out.reshape(len(h), -1)


def _conv_input_grad(grad: Array, layer: TemporalConv, weight: Array) -> Array:
    out = grad.reshape(len(grad), layer.steps - layer.kernel + 1, layer.filters)
    back = np.zeros((len(grad), layer.steps, layer.channels))
    for j in range(layer.kernel):
        back[:, j : j + out.shape[1], :] += out @ weight[:, :, j]
    return back.reshape(len(grad), -1)
