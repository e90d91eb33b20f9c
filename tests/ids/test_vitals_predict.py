from __future__ import annotations

import numpy as np
import pytest

from ids.classifier import layer_shapes
from ids.deterioration import N_WINDOW_FEATURES, DeteriorationModel
from ids.vitals import (
    OBS_COLUMNS, WINDOW_FEATURE_NAMES, generate_patient, generate_patients, make_windows, news2_score,
)


@pytest.mark.parametrize(
    ("vitals", "expected"),
    [
        # RCP 2017 chart 1, one parameter at a time from a zero-score baseline.
        ({}, 0),
        ({"resp_rate": 8}, 3), ({"resp_rate": 9}, 1), ({"resp_rate": 11}, 1), ({"resp_rate": 21}, 2),
        ({"resp_rate": 24}, 2), ({"resp_rate": 25}, 3),
        ({"spo2": 91}, 3), ({"spo2": 92}, 2), ({"spo2": 93}, 2), ({"spo2": 94}, 1), ({"spo2": 95}, 1),
        ({"on_oxygen": True}, 2),
        ({"sys": 90}, 3), ({"sys": 91}, 2), ({"sys": 100}, 2), ({"sys": 101}, 1), ({"sys": 110}, 1),
        ({"sys": 219}, 0), ({"sys": 220}, 3),
        ({"heart_rate": 40}, 3), ({"heart_rate": 41}, 1), ({"heart_rate": 50}, 1), ({"heart_rate": 91}, 1),
        ({"heart_rate": 110}, 1), ({"heart_rate": 111}, 2), ({"heart_rate": 130}, 2), ({"heart_rate": 131}, 3),
        ({"alert": False}, 3),
        ({"temp": 35.0}, 3), ({"temp": 35.1}, 1), ({"temp": 36.0}, 1), ({"temp": 38.1}, 1), ({"temp": 39.0}, 1),
        ({"temp": 39.1}, 2),
        ({"resp_rate": 22, "spo2": 93, "heart_rate": 112}, 6),
    ],
)
def test_news2_published_thresholds(vitals: dict[str, float], expected: int) -> None:
    obs = {"resp_rate": 16, "spo2": 97, "on_oxygen": False, "temp": 37.0, "sys": 125, "heart_rate": 75,
           "alert": True} | vitals
    assert news2_score(**obs) == expected


def test_series_are_seeded_and_windows_stop_at_onset() -> None:
    a = generate_patient("p", np.random.default_rng(3))
    b = generate_patient("p", np.random.default_rng(3))
    np.testing.assert_array_equal(a.obs, b.obs)
    series = generate_patients("h", 40, np.random.default_rng(4), deterioration_rate=1.0)
    assert sum(s.onset_h is not None for s in series) >= 30
    w = make_windows(series, window_h=4.0, horizon_h=6.0)
    assert w.x.shape[1] == len(WINDOW_FEATURE_NAMES) and (w.news2_now < 5).all()
    for p, t, y in zip(w.patient[:2000], w.t_h[:2000], w.y[:2000], strict=True):
        s = series[p]
        assert s.onset_h is None or t < s.onset_h
        future = s.news2[(s.times_h > t) & (s.times_h <= t + 6.0)]
        assert y == int(future.max() >= 5)
    assert 0.05 < w.y.mean() < 0.6


def test_logistic_explanation_is_exact_and_names_the_driving_vital() -> None:
    weights = {k: np.zeros(s) for k, s in layer_shapes(N_WINDOW_FEATURES, 2, None).items()}
    spo2_last = WINDOW_FEATURE_NAMES.index("spo2_last")
    weights["0.weight"][1, spo2_last] = -2.0  # lower SpO2 -> higher risk
    weights["0.weight"][1, WINDOW_FEATURE_NAMES.index("heart_rate_last")] = 0.5
    weights["0.bias"][1] = -1.0
    model = DeteriorationModel.from_weights(weights)
    obs = np.tile([16, 97, 37.0, 125, 75, 0, 1], (8, 1)).astype(float)
    obs[-3:, OBS_COLUMNS.index("spo2")] = [93, 91, 88]
    e = model.score_recent(obs)
    assert e.by_vital[0][0] == "spo2" and e.by_vital[0][1] > 0
    assert sum(c for _, c in e.by_feature) + (-1.0) == pytest.approx(e.log_odds)
    assert e.probability == pytest.approx(1 / (1 + np.exp(-e.log_odds)))


def test_mlp_attribution_is_gradient_times_input() -> None:
    rng = np.random.default_rng(5)
    weights = {k: rng.normal(size=s) for k, s in layer_shapes(N_WINDOW_FEATURES, 2, 8).items()}
    model = DeteriorationModel.from_weights(weights)
    x = rng.normal(size=N_WINDOW_FEATURES)
    e = model.explain(x)

    def log_odds(v: np.ndarray) -> float:
        p = model.predict_proba(v)[0]
        return float(np.log(p / (1 - p)))

    eps = 1e-6
    grad = np.array([(log_odds(x + eps * np.eye(len(x))[j]) - log_odds(x - eps * np.eye(len(x))[j])) / (2 * eps)
                     for j in range(len(x))])
    np.testing.assert_allclose([dict(e.by_feature)[n] for n in WINDOW_FEATURE_NAMES], grad * x, atol=1e-5)
