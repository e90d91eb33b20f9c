"""The temporal deterioration model: its per-observation features, its explanations, and that a few
federated rounds of it learn something on wards and seeds training never saw."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from client.fl.deterioration_eval import (
    HORIZON_H, evaluate, heldout, news2_calibration, temporal_spec, train_temporal, training_windows,
)
from core.errors import InvalidInput
from core.layers import GRU, Linear, sequential_layout
from ids.deterioration import N_STEP_FEATURES, DeteriorationModel
from ids.vitals import (
    STEP_FEATURE_NAMES, TRAINING_WARDS, WardProfile, generate_patient, make_windows, news2_scores, series_features,
)


def test_series_features_are_causal_and_count_hours_since_a_normal_reading() -> None:
    s = generate_patient("p", np.random.default_rng(7), deterioration_rate=1.0)
    rows = series_features(s.obs)
    assert rows.shape == (len(s.obs), len(STEP_FEATURE_NAMES))
    for k in (1, 5, 30, 90):  # a row reads nothing after its own observation
        np.testing.assert_array_equal(series_features(s.obs[:k]), rows[:k])
    since = rows[:, STEP_FEATURE_NAMES.index("hours_since_normal")] * 8.0
    normal = news2_scores(s.obs) == 0
    assert np.all(since[normal] == 0.0)
    after = np.flatnonzero(normal[:-1] & ~normal[1:]) + 1  # the first abnormal reading after a normal one
    assert after.size and np.all(since[after] == 0.5)
    assert rows[:, STEP_FEATURE_NAMES.index("news2")].tolist() == (news2_scores(s.obs) / 5.0).tolist()


def test_a_default_ward_draws_the_generators_patients() -> None:
    ward = WardProfile("w")
    a = ward.patients(3, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    b = [generate_patient(f"w-{i:04d}", rng) for i in range(3)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.obs, y.obs)


def test_temporal_windows_are_the_series_rows_of_the_window() -> None:
    s = generate_patient("p", np.random.default_rng(2))
    w = make_windows([s], window_h=4.0, horizon_h=HORIZON_H, temporal=True)
    rows = series_features(s.obs)
    end = int(np.flatnonzero(s.times_h == w.t_h[10])[0])
    np.testing.assert_array_equal(w.x[10], rows[end - 7:end + 1].ravel())


def gru_model(seed: int = 0, steps: int = 8) -> DeteriorationModel:
    layers = [GRU(kind="gru", steps=steps, features=N_STEP_FEATURES, hidden=6),
              Linear(kind="linear", inputs=6, outputs=2)]
    rng = np.random.default_rng(seed)
    weights = {name: rng.normal(size=shape) * 0.5 for name, shape in sequential_layout(layers)}
    return DeteriorationModel.from_weights(weights, layers)


def test_a_temporal_models_explanation_sums_over_the_window_and_names_vitals() -> None:
    model = gru_model()
    s = generate_patient("p", np.random.default_rng(3), deterioration_rate=1.0)
    e = model.score_recent(s.obs[:40])
    x = model.features(s.obs[:40])
    full = model.net.input_gradient(x, 1, 0) * x
    assert [n for n, _ in e.by_feature] and {n for n, _ in e.by_feature} == set(STEP_FEATURE_NAMES)
    assert sum(c for _, c in e.by_feature) == pytest.approx(full.sum())
    assert {v for v, _ in e.by_vital} >= {"resp_rate", "spo2", "consciousness", "news2"}
    short = model.score_recent(s.obs[:3])  # fewer readings than the window: the first is held before them
    assert 0.0 < short.probability < 1.0
    np.testing.assert_array_equal(model.features(s.obs[:3])[:N_STEP_FEATURES], series_features(s.obs[:1])[0])


def test_a_temporal_model_over_other_features_is_refused() -> None:
    layers = [GRU(kind="gru", steps=8, features=5, hidden=4), Linear(kind="linear", inputs=4, outputs=2)]
    weights = {name: np.zeros(shape) for name, shape in sequential_layout(layers)}
    with pytest.raises(InvalidInput, match=f"reads {N_STEP_FEATURES} features per observation"):
        DeteriorationModel.from_weights(weights, layers)


def test_a_few_federated_rounds_beat_trivial_baselines_on_unseen_wards_and_seeds() -> None:
    torch.set_num_threads(1)
    hospitals = training_windows(12)
    assert len(hospitals) == len(TRAINING_WARDS)
    model = train_temporal(temporal_spec(len(hospitals), "gru", hidden=8), hospitals, 3, lr=0.5, batch_size=32)
    prevalence = float(np.concatenate([w.y for w in hospitals]).mean())
    for seed in (101, 102):
        data = heldout(seed, 20)
        result = evaluate(model, news2_calibration(hospitals), data)
        constant_brier = float(np.mean((data.windows.y - prevalence) ** 2))
        assert result.model.auroc > 0.62, result  # a constant or a mis-wired GRU scores about 0.5
        assert result.model.brier < constant_brier, (result.model.brier, constant_brier)
        assert result.model.alarm_rate == pytest.approx(result.news2.alarm_rate, abs=0.01)
