"""The declared GRU: numpy forward and input gradient against torch's nn.GRU, and its declaration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from client.fl.training import build_torch_model
from core.errors import InvalidInput
from core.layers import GRU, Linear, Network, ReLU
from fl_contracts.spec import ModelSpec

STEPS, FEATURES, HIDDEN = 6, 5, 7


def gru_spec(hidden: int = HIDDEN) -> ModelSpec:
    layers = [GRU(kind="gru", steps=STEPS, features=FEATURES, hidden=hidden), Linear(kind="linear", inputs=hidden,
              outputs=8), ReLU(kind="relu"), Linear(kind="linear", inputs=8, outputs=2)]
    return ModelSpec.for_sequential("gru_model", [], layers=layers, rule="fedavg", min_updates=1, max_updates=4,
                                    max_abs=8.0, max_norm=16.0)


def random_torch(spec: ModelSpec, seed: int) -> tuple[torch.nn.Sequential, dict[str, np.ndarray]]:
    torch.manual_seed(seed)
    model = build_torch_model(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))  # gates pushed into saturation and back, not torch's small init
    return model, {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_the_layout_is_nn_grus_and_the_declaration_round_trips() -> None:
    spec = gru_spec()
    h3 = 3 * HIDDEN
    assert spec.layout[:4] == (("0.weight_ih_l0", (h3, FEATURES)), ("0.weight_hh_l0", (h3, HIDDEN)),
                               ("0.bias_ih_l0", (h3,)), ("0.bias_hh_l0", (h3,)))
    again = ModelSpec.parse(spec.to_doc())
    assert again == spec and again.hash == spec.hash
    assert [(n, tuple(p.shape)) for n, p in build_torch_model(spec).state_dict().items()] == list(spec.layout)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_forward_and_input_gradient_match_torch(seed: int) -> None:
    spec = gru_spec()
    model, weights = random_torch(spec, seed)
    net = Network.build(spec.network_layers, weights)
    x = np.random.default_rng(seed).normal(size=(16, STEPS * FEATURES)) * 2.0
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out = model(xt)
    np.testing.assert_allclose(net.logits(x), out.detach().numpy(), rtol=0, atol=1e-6)
    (out[:, 1] - out[:, 0]).sum().backward()
    assert xt.grad is not None
    expected = xt.grad.numpy()
    for row in range(4):
        np.testing.assert_allclose(net.input_gradient(x[row], 1, 0), expected[row], rtol=0, atol=1e-6)
    assert np.abs(expected).max() > 1e-3  # the gradient is not trivially zero


def test_a_gru_whose_widths_do_not_fit_is_refused() -> None:
    doc = gru_spec().to_doc()
    wrong_head = {**doc, "layers": [doc["layers"][0], {**doc["layers"][1], "inputs": HIDDEN + 1}, *doc["layers"][2:]]}
    with pytest.raises(InvalidInput, match="reads 8 inputs, the layer before gives 7"):
        ModelSpec.parse(wrong_head)
    with pytest.raises(InvalidInput, match="hidden"):
        ModelSpec.parse({**doc, "layers": [{**doc["layers"][0], "hidden": 0}, *doc["layers"][1:]]})
    with pytest.raises(InvalidInput, match="layout must be the layers"):
        ModelSpec.parse({**doc, "layout": [[n, s] for n, s in doc["layout"] if n != "0.bias_hh_l0"]})
