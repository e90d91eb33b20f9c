"""The ward: RCP NEWS2 escalation, per-parameter points, the feeds, and scoring every window with the model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from core.errors import InvalidInput
from devnet.catalog import default_models
from fl_contracts.initial import initial_weights
from ids.deterioration import DeteriorationModel
from ids.vitals import NEWS2_PARAMETERS, OBS_COLUMNS, generate_patient, news2_parameters
from client.dashboard.ward import (
    CsvFeed, GeneratedFeed, PatientObs, evaluate_on_ward, response, score_patient, score_windows, ward_list,
)
from client.predict import WINDOW_ROWS


def _model(seed: int = 0) -> DeteriorationModel:
    spec = next(s for s in default_models(4) if s.id == "deterioration")
    rng = np.random.default_rng(seed)
    weights = spec.unflatten(initial_weights(spec).astype(np.float64) / spec.fixed_point.scale
                             + rng.normal(0, 0.5, spec.num_params))
    return DeteriorationModel.from_weights(weights)


@pytest.mark.parametrize(("total", "highest", "expected"), [
    (0, 0, "ward"), (4, 2, "ward"), (3, 3, "urgent"), (5, 1, "urgent"), (6, 3, "urgent"), (7, 0, "emergency"),
    (12, 3, "emergency"),
])
def test_rcp_escalation(total: int, highest: int, expected: str) -> None:
    assert response(total, highest) == expected


def _row(**vitals: float) -> np.ndarray:
    normal = {"resp_rate": 16, "spo2": 97, "temp": 37.0, "sys": 120, "heart_rate": 75, "on_oxygen": 0, "alert": 1}
    return np.array([[{**normal, **vitals}[c] for c in OBS_COLUMNS]], dtype=float)


@pytest.mark.parametrize(("vitals", "parameter", "points"), [
    ({}, None, 0),
    ({"resp_rate": 25}, "resp_rate", 3), ({"resp_rate": 8}, "resp_rate", 3), ({"resp_rate": 21}, "resp_rate", 2),
    ({"spo2": 91}, "spo2", 3), ({"spo2": 94}, "spo2", 1), ({"on_oxygen": 1}, "on_oxygen", 2),
    ({"sys": 219}, None, 0), ({"sys": 220}, "sys", 3), ({"sys": 100}, "sys", 2),
    ({"heart_rate": 40}, "heart_rate", 3), ({"heart_rate": 131}, "heart_rate", 3), ({"heart_rate": 91}, "heart_rate", 1),
    ({"alert": 0}, "consciousness", 3), ({"temp": 35.0}, "temp", 3), ({"temp": 39.1}, "temp", 2),
])
def test_news2_points_per_parameter(vitals: dict[str, float], parameter: str | None, points: int) -> None:
    row = dict(zip(NEWS2_PARAMETERS, news2_parameters(_row(**vitals))[0].tolist(), strict=True))
    assert row == {p: (points if p == parameter else 0) for p in NEWS2_PARAMETERS}


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_the_chart_scores_each_window_as_predict_does(seed: int) -> None:
    obs = generate_patient("p", np.random.default_rng(seed), hours=24).obs[:20]
    model = _model(seed % 3)
    scores = score_windows(model, obs)
    assert len(scores) == len(obs) - WINDOW_ROWS + 1
    for i, score in enumerate(scores):
        window = obs[i:i + WINDOW_ROWS]
        assert score == pytest.approx(model.score_recent(window).probability, abs=1e-12)


def test_a_patient_without_four_hours_is_listed_by_news2_only() -> None:
    obs = _row(resp_rate=25, alert=0).repeat(3, axis=0)
    scored = score_patient(_model(), PatientObs("new", np.arange(3) * 0.5, obs), 0.5)
    assert scored.probability is None and not scored.alarm and scored.drivers == []
    assert scored.news2 == 6 and scored.response == "urgent"


def test_ward_list_puts_escalations_first() -> None:
    quiet = PatientObs("quiet", np.arange(8) * 0.5, _row().repeat(8, axis=0))
    sick = PatientObs("sick", np.arange(8) * 0.5, _row(resp_rate=25, spo2=91, heart_rate=131).repeat(8, axis=0))
    assert [s.patient for s in ward_list(_model(), [quiet, sick], 0.99)] == ["sick", "quiet"]


def test_generated_feed_reveals_one_observation_per_step() -> None:
    now = [100.0]
    feed = GeneratedFeed(2, 5, start_h=2.0, step_s=10.0, clock=lambda: now[0])
    assert [len(p.obs) for p in feed.patients()] == [5, 5]
    now[0] += 25.0
    first = feed.patients()[0]
    assert len(first.obs) == 7 and first.times_h[-1] == 3.0
    np.testing.assert_array_equal(first.obs, generate_patient("bed-01", np.random.default_rng(5)).obs[:7])
    with pytest.raises(InvalidInput):
        GeneratedFeed(0, 0)


def _write(path: Path, rows: list[list[float]]) -> None:
    path.write_text(",".join(OBS_COLUMNS) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


def test_csv_feed_reads_each_patient_and_rereads_a_changed_file(tmp_path: Path) -> None:
    row = [16, 97, 37.0, 120, 75, 0, 1]
    _write(tmp_path / "bed-7.csv", [row] * 3)
    feed = CsvFeed(tmp_path)
    [p] = feed.patients()
    assert p.patient == "bed-7" and p.obs.shape == (3, len(OBS_COLUMNS))
    _write(tmp_path / "bed-7.csv", [row] * 5)
    os.utime(tmp_path / "bed-7.csv", (1, 1))
    assert len(feed.patients()[0].obs) == 5
    _write(tmp_path / "bad.csv", [[16, 97, 37.0, 120, 500, 0, 1]])
    with pytest.raises(InvalidInput, match="heart_rate"):
        feed.patients()
    with pytest.raises(InvalidInput, match="not a directory"):
        CsvFeed(tmp_path / "bed-7.csv")


def test_ward_evaluation_needs_both_outcomes() -> None:
    stable = PatientObs("s", np.arange(40) * 0.5, _row().repeat(40, axis=0))
    e = evaluate_on_ward(_model(), [stable])
    assert e.windows > 0 and e.deteriorations == 0 and e.auroc is None
    series = [generate_patient(f"p{i}", np.random.default_rng(i)) for i in range(30)]
    e = evaluate_on_ward(_model(), [PatientObs(s.patient_id, s.times_h, s.obs) for s in series])
    assert e.deteriorations > 0 and 0.0 <= e.auroc <= 1.0
