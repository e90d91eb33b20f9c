"""Declared architectures beyond Linear/ReLU: any depth, dropout, layer norm, from declaration to scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from client.fl.data import breast_cancer_split
from client.fl.model_metrics import accuracy, forward
from client.fl.simulation import run_federated
from client.fl.training import build_torch_model, initial_weights
from core.errors import InvalidInput
from core.layers import Dropout, LayerNorm, Linear, Network, ReLU, TemporalConv
from fl_contracts import initial
from fl_contracts.spec import ModelSpec
from ids.classifier import FlowClassifier, layer_shapes
from ids.deterioration import N_WINDOW_FEATURES, DeteriorationModel


def deep(n_in: int = 30, n_out: int = 2, hidden: tuple[int, ...] = (16, 8)) -> list:
    layers: list = []
    width = n_in
    for h in hidden:
        layers += [Linear(kind="linear", inputs=width, outputs=h), LayerNorm(kind="layer_norm", width=h),
                   ReLU(kind="relu"), Dropout(kind="dropout", rate_ppm=100_000)]
        width = h
    return [*layers, Linear(kind="linear", inputs=width, outputs=n_out)]


def deep_spec(**kw: object) -> ModelSpec:
    return ModelSpec.for_sequential("deep_mlp", [], layers=deep(**kw), rule="fedavg", min_updates=1, max_updates=4,
                                    max_abs=8.0, max_norm=16.0)


def test_the_declaration_round_trips_and_older_declarations_keep_their_hashes() -> None:
    spec = deep_spec()
    assert [n for n, _ in spec.layout] == ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias",
                                           "5.weight", "5.bias", "8.weight", "8.bias"]
    again = ModelSpec.parse(spec.to_doc())
    assert again == spec and again.hash == spec.hash
    plain = ModelSpec.for_sequential("lr", [30, 2])
    assert "layers" not in plain.to_doc() and [type(x) for x in plain.network_layers] == [Linear]
    three = ModelSpec.for_sequential("mlp3", [30, 16, 8, 2])
    assert [type(x) for x in three.network_layers] == [Linear, ReLU, Linear, ReLU, Linear]


@pytest.mark.parametrize(("change", "match"), [
    (lambda d: {**d, "layout": d["layout"][:-2]}, "layout must be the layers"),
    (lambda d: {**d, "layers": d["layers"][1:]}, "must start with a linear or temporal_conv layer"),
    (lambda d: {**d, "layers": [{**d["layers"][0], "outputs": 15}, *d["layers"][1:]]},
     "layer_norm has width 16, the layer before gives 15"),
    (lambda d: {**d, "layers": [{"kind": "temporal_conv", "steps": 2, "channels": 15, "filters": 1, "kernel": 3},
                                *d["layers"][1:]]}, "kernel 3 is longer than its 2 steps"),
    (lambda d: {**d, "layers": [*d["layers"][:3], {"kind": "dropout", "rate_ppm": 1_000_000}, *d["layers"][4:]]},
     "rate_ppm"),
    (lambda d: {**d, "layers": [*d["layers"], {"kind": "conv"}]}, "kind"),
])
def test_a_declaration_that_does_not_fit_is_refused(change, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        ModelSpec.parse(change(deep_spec().to_doc()))


def test_numpy_inference_matches_torch_for_any_declared_depth() -> None:
    spec = deep_spec(hidden=(12, 10, 6))
    torch.manual_seed(3)
    model = build_torch_model(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # layer norm gains and biases away from 1 and 0
    model.eval()  # dropout is the identity at inference
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    x = np.random.default_rng(0).normal(size=(32, 30))
    expected = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(forward(spec, weights, x), expected, rtol=1e-9, atol=1e-11)


def test_version_0_starts_layer_norm_at_gain_1_and_bias_0() -> None:
    spec = deep_spec()
    w0 = spec.unflatten(initial.initial_weights(spec) / spec.fixed_point.scale)
    assert np.all(w0["1.weight"] == 1.0) and np.all(w0["1.bias"] == 0.0)
    assert np.any(w0["0.weight"] != 0) and np.all(np.abs(w0["0.weight"]) <= 1 / np.sqrt(30) + 2**-16)


def test_a_deep_model_trains_through_the_contract_and_its_layer_norms_aggregate() -> None:
    torch.set_num_threads(1)
    split = breast_cancer_split(4, alpha=0.5, seed=0)
    spec = deep_spec()
    start = spec.unflatten(initial_weights(spec, 0))
    result = run_federated(spec, split.hospitals, 6, local_epochs=2, lr=0.1, seed=0,
                           eval_data=(split.x_test, split.y_test))
    final = result.global_weights
    assert not np.allclose(final["1.weight"], start["1.weight"])  # the gains are parameters the chain averaged
    assert not np.allclose(final["5.bias"], start["5.bias"])
    assert accuracy(spec, final, split.x_test, split.y_test) > 0.9


def test_ids_and_deterioration_scoring_take_the_declared_stack() -> None:
    rng = np.random.default_rng(1)
    spec = deep_spec(n_in=N_WINDOW_FEATURES, hidden=(8, 8, 8))
    weights = {name: rng.normal(size=shape) for name, shape in spec.layout}
    model = DeteriorationModel.from_weights(weights, spec.network_layers)
    x = rng.normal(size=N_WINDOW_FEATURES)
    e = model.explain(x)
    grad = Network.build(spec.network_layers, weights).input_gradient(x, 1, 0)

    def log_odds(v: np.ndarray) -> float:
        z = forward(spec, weights, v[None, :])[0]
        return float(z[1] - z[0])

    step = 1e-6
    numeric = np.array([(log_odds(x + step * np.eye(len(x))[i]) - log_odds(x - step * np.eye(len(x))[i])) / (2 * step)
                        for i in range(len(x))])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)
    assert e.log_odds == pytest.approx(log_odds(x))
    with pytest.raises(InvalidInput, match="named"):  # without its declaration a layer-norm model is not guessed
        DeteriorationModel.from_weights(weights)
    clf = FlowClassifier.from_weights(weights, ("a", "b"), n_features=N_WINDOW_FEATURES, layers=spec.network_layers)
    assert clf.predict(x).tolist() == [int(np.argmax(forward(spec, weights, x[None, :])[0]))]


def test_undeclared_linear_stacks_of_any_depth_are_read_from_their_names() -> None:
    rng = np.random.default_rng(2)
    shapes = {**layer_shapes(6, 4, 5), "4.weight": (3, 4), "4.bias": (3,)}  # 6 -> 5 -> 4 -> 3
    shapes["2.weight"], shapes["2.bias"] = (4, 5), (4,)
    weights = {k: rng.normal(size=s) for k, s in shapes.items()}
    clf = FlowClassifier.from_weights(weights, ("a", "b", "c"), n_features=6)
    assert [type(x) for x in clf.net.layers] == [Linear, ReLU, Linear, ReLU, Linear]
    x = rng.normal(size=(5, 6))
    h = np.maximum(np.maximum(x @ weights["0.weight"].T + weights["0.bias"], 0) @ weights["2.weight"].T
                   + weights["2.bias"], 0) @ weights["4.weight"].T + weights["4.bias"]
    np.testing.assert_allclose(clf.net.logits(x), h)


def temporal(steps: int = 12, channels: int = 3) -> list:
    conv = TemporalConv(kind="temporal_conv", steps=steps, channels=channels, filters=4, kernel=3)
    return [conv, ReLU(kind="relu"), LayerNorm(kind="layer_norm", width=conv.outputs),
            Linear(kind="linear", inputs=conv.outputs, outputs=2)]


def test_a_temporal_convolution_runs_the_same_in_numpy_and_torch_and_backpropagates() -> None:
    spec = ModelSpec.for_sequential("vitals_tcn", [], layers=temporal(), rule="fedavg", max_abs=8.0, max_norm=16.0)
    assert dict(spec.layout)["0.weight"] == (4, 3, 3) and ModelSpec.parse(spec.to_doc()) == spec
    torch.manual_seed(4)
    model = build_torch_model(spec).eval()
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    x = np.random.default_rng(3).normal(size=(16, 36))  # 12 steps of 3 vitals, row-major
    np.testing.assert_allclose(forward(spec, weights, x), model(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-9, atol=1e-11)
    net = Network.build(spec.network_layers, weights)
    step, v = 1e-6, x[0]
    numeric = [(np.subtract(*net.logits(np.stack([v + step * e, v - step * e]))[:, 1])
                - np.subtract(*net.logits(np.stack([v + step * e, v - step * e]))[:, 0])) / (2 * step)
               for e in np.eye(36)]
    np.testing.assert_allclose(net.input_gradient(v, 1, 0), numeric, rtol=1e-5, atol=1e-7)
    w0 = initial.initial_weights(spec)[: 4 * 3 * 3] / spec.fixed_point.scale
    assert np.all(np.abs(w0) <= 1 / 3 + 2**-16)  # torch's Conv1d bound 1/sqrt(channels * kernel)


def test_a_temporal_model_learns_a_trend_through_the_contract() -> None:
    """Deterioration as a rising series: label 1 when channel 0 climbs over the window, whatever its level."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(7)

    def hospital(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, n)
        slope = np.where(y == 1, 0.3, -0.3)[:, None] + rng.normal(0, 0.1, (n, 1))
        level = rng.normal(0, 2, (n, 1))
        series = np.zeros((n, 12, 3))
        series[:, :, 0] = level + slope * np.arange(12) + rng.normal(0, 0.3, (n, 12))
        series[:, :, 1:] = rng.normal(size=(n, 12, 2))
        return series.reshape(n, -1), y.astype(np.int64)

    spec = ModelSpec.for_sequential("vitals_tcn", [], layers=temporal(), rule="fedavg", min_updates=1, max_updates=3,
                                    max_abs=8.0, max_norm=16.0)
    shares, (x_test, y_test) = [hospital(60) for _ in range(3)], hospital(200)
    result = run_federated(spec, shares, 8, local_epochs=3, lr=0.1, seed=0)
    start = spec.unflatten(initial_weights(spec, 0))
    assert not np.allclose(result.global_weights["0.weight"], start["0.weight"])
    assert accuracy(spec, result.global_weights, x_test, y_test) > 0.9
