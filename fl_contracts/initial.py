"""Version 0 of a model: a random-looking start that every validator computes identically.

A model that starts at all zeros never trains its hidden layers (every
hidden unit gets the same, zero, gradient), so genesis needs random initial
weights; but execution may not read randomness. The weights are therefore
drawn from SHA-256 in counter mode, seeded by the model's own spec hash, with
torch's default ``nn.Linear`` distribution U(-1/sqrt(fan_in), 1/sqrt(fan_in))
for weights and biases, in the model's fixed-point format. Integer-only: the
bound is ``isqrt(scale**2 // fan_in)`` and each coordinate is a 64-bit draw
reduced modulo ``2 * bound + 1`` (a modulo bias below 2**-40, irrelevant for
an initialisation). A declared layer norm starts as torch's does: gain 1,
bias 0.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import numpy.typing as npt

from core.layers import LayerNorm
from fl_contracts.spec import ModelSpec

DOMAIN = b"fbci/fl/initial-weights/1"


def _draws(seed: bytes, name: str, count: int) -> npt.NDArray[np.uint64]:
    blocks = (count + 3) // 4
    stream = b"".join(hashlib.sha256(seed + name.encode() + i.to_bytes(8, "big")).digest() for i in range(blocks))
    return np.frombuffer(stream, dtype=">u8")[:count].astype(np.uint64)


def _fan_in(spec: ModelSpec, name: str, shape: tuple[int, ...]) -> int:
    """A weight's second dimension; a bias takes its layer's weight's (``0.bias`` -> ``0.weight``)."""
    if len(shape) >= 2:
        return math.prod(shape[1:])
    layer = name.rsplit(".", 1)[0]
    weights = dict(spec.layout).get(f"{layer}.weight")
    return math.prod(weights[1:]) if weights is not None and len(weights) >= 2 else max(1, shape[0])


def initial_weights(spec: ModelSpec) -> npt.NDArray[np.int64]:
    """The flat fixed-point weights of version 0, in layout order."""
    seed = hashlib.sha256(DOMAIN + spec.hash).digest()
    scale = spec.fixed_point.scale
    norms = {f"{i}" for i, layer in enumerate(spec.layers) if isinstance(layer, LayerNorm)}
    parts = []
    for name, shape in spec.layout:
        count = math.prod(shape)
        layer, kind = name.rsplit(".", 1)
        if layer in norms:
            parts.append(np.full(count, scale if kind == "weight" else 0, dtype=np.int64))
            continue
        bound = math.isqrt(scale * scale // _fan_in(spec, name, shape))
        draws = _draws(seed, name, count) % np.uint64(2 * bound + 1)
        parts.append(draws.astype(np.int64) - bound)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
