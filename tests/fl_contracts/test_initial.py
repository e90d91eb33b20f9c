"""Genesis weights: deterministic, inside torch's Linear bound, different per model, and trainable."""

import math

import numpy as np

from fl_contracts.initial import initial_weights
from fl_contracts.spec import ModelSpec


def test_same_spec_same_weights_and_within_the_fan_in_bound() -> None:
    spec = ModelSpec.for_sequential("mlp", [41, 32, 6])
    w = initial_weights(spec)
    assert np.array_equal(w, initial_weights(spec)) and w.shape == (spec.num_params,)
    tensors = spec.unflatten(w / spec.fixed_point.scale)
    for name, fan_in in (("0.weight", 41), ("0.bias", 41), ("2.weight", 32), ("2.bias", 32)):
        t = tensors[name]
        bound = 1 / math.sqrt(fan_in)
        assert np.abs(t).max() <= bound and np.abs(t).max() > 0.8 * bound  # spread over the range, not zeros
        assert abs(t.mean()) < 0.35 * bound


def test_different_models_start_differently() -> None:
    a = initial_weights(ModelSpec.for_sequential("a", [30, 2]))
    b = initial_weights(ModelSpec.for_sequential("b", [30, 2]))
    assert not np.array_equal(a, b)


def test_hidden_units_are_not_symmetric() -> None:
    """The point of it: no two hidden units start equal, so their gradients differ."""
    spec = ModelSpec.for_sequential("mlp", [10, 8, 3])
    first = spec.unflatten(initial_weights(spec))["0.weight"]
    assert len({tuple(row) for row in first.tolist()}) == 8
