"""The ward: patients' vitals from the hospital's own feed, scored with the chain's deterioration model.

Vitals never leave this machine and never go on chain; patients are named by
the feed's local labels (a bed, a local id). A feed is anything with
``patients()``: :class:`CsvFeed` reads the hospital's export (one CSV per
patient, the columns ``fbci predict`` reads), :class:`GeneratedFeed` streams
generated patients (``ids.vitals``), revealing one observation per
``step_s`` of wall time, so the ward moves as a real one does.

Escalation follows RCP NEWS2 (2017, chart 2): an aggregate of 7 or more is an
emergency response; 5 or more, or 3 in any single parameter, an urgent
review; below that, ward-based monitoring. The model's score is the
probability of NEWS2 >= 5 within 6 hours, from the last 4 hours
(``ids.deterioration``); the alarm threshold is given, or else the one that
alarms on this ward as often as NEWS2 >= 3 does (the equal-workload rule of
``ids.evaluation``), so the model and NEWS2 ask the same nursing time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from core.errors import InvalidInput
from ids.detection_metrics import auroc
from ids.deterioration import DeteriorationModel
from ids.evaluation import NEWS2_ALARM
from ids.vitals import (
    NEWS2_PARAMETERS, OBS_COLUMNS, STEP_H, VITALS, PatientSeries, generate_patient, make_windows, news2_parameters,
    window_features,
)
from client.predict import WINDOW_ROWS, read_series

RESPONSES: tuple[str, ...] = ("ward", "urgent", "emergency")


@dataclass(frozen=True)
class PatientObs:
    patient: str
    """The feed's local label; it stays on this machine."""
    times_h: np.ndarray
    obs: np.ndarray  # rows in ids.vitals.OBS_COLUMNS order, oldest first


class VitalsFeed(Protocol):
    description: str

    def patients(self) -> list[PatientObs]: ...


class CsvFeed:
    """``DIR/<label>.csv``, one file per patient, one row every 30 minutes; re-read when a file changes."""

    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            raise InvalidInput(f"--vitals-csv: {directory} is not a directory of <patient>.csv files")
        self.directory = directory
        self.description = f"CSV files in {directory}"
        self._cache: dict[Path, tuple[float, PatientObs]] = {}

    def patients(self) -> list[PatientObs]:
        out = []
        for path in sorted(self.directory.glob("*.csv")):
            mtime = path.stat().st_mtime
            cached = self._cache.get(path)
            if cached is None or cached[0] != mtime:
                obs = read_series(path)
                cached = (mtime, PatientObs(path.stem, np.arange(len(obs)) * STEP_H, obs))
                self._cache[path] = cached
            out.append(cached[1])
        return out


class GeneratedFeed:
    """``n`` generated patients; ``start_h`` of history at start, then one more observation every ``step_s``."""

    def __init__(self, n: int, seed: int, *, start_h: float = 24.0, step_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if n < 1:
            raise InvalidInput("--ward-size must be at least 1")
        self.series = [generate_patient(f"bed-{i + 1:02d}", np.random.default_rng(seed + i)) for i in range(n)]
        self.description = f"{n} generated patients (ids.vitals, seed {seed}), one observation per {step_s:g} s"
        self._start_rows = int(round(start_h / STEP_H)) + 1
        self._step_s = step_s
        self._clock = clock
        self._t0 = clock()

    def patients(self) -> list[PatientObs]:
        shown = self._start_rows + int((self._clock() - self._t0) // self._step_s)
        return [PatientObs(s.patient_id, s.times_h[:shown], s.obs[:shown]) for s in self.series]


@dataclass(frozen=True)
class Driver:
    vital: str
    contribution: float
    """Its share of the log-odds (``ids.deterioration.Explanation.by_vital``)."""
    value: float | None
    """The charted value now (None for the NEWS2 feature)."""


@dataclass(frozen=True)
class PatientScore:
    patient: str
    at_h: float
    news2: int
    parameter_points: dict[str, int]
    response: str
    """``ward``, ``urgent`` or ``emergency`` (RCP NEWS2 escalation)."""
    probability: float | None
    """None while fewer than 4 hours are charted."""
    alarm: bool
    drivers: list[Driver]


@dataclass(frozen=True)
class PatientTrend:
    patient: str
    times_h: list[float]
    vitals: dict[str, list[float]]
    news2: list[int]
    score_times_h: list[float]
    scores: list[float]
    threshold: float
    latest: PatientScore


def response(news2: int, max_parameter: int) -> str:
    if news2 >= 7:
        return "emergency"
    if news2 >= 5 or max_parameter >= 3:
        return "urgent"
    return "ward"


def score_windows(model: DeteriorationModel, obs: np.ndarray) -> np.ndarray:
    """The model's probability at every observation with 4 hours behind it (index WINDOW_ROWS - 1 onwards)."""
    if len(obs) < WINDOW_ROWS:
        return np.zeros(0)
    x = np.stack([window_features(obs[i - WINDOW_ROWS + 1:i + 1]) for i in range(WINDOW_ROWS - 1, len(obs))])
    return model.predict_proba(x)


def equal_workload_threshold(model: DeteriorationModel, patients: list[PatientObs]) -> float:
    """The score that alarms on these patients' charted windows as often as NEWS2 >= 3 does."""
    scores = np.concatenate([score_windows(model, p.obs) for p in patients] or [np.zeros(0)])
    news2 = np.concatenate([news2_parameters(p.obs[WINDOW_ROWS - 1:]).sum(axis=1) for p in patients]
                           or [np.zeros(0)])
    if scores.size == 0:
        return 0.5
    return float(np.quantile(scores, 1.0 - float((news2 >= NEWS2_ALARM).mean())))


def _value(obs_row: np.ndarray, vital: str) -> float | None:
    if vital in OBS_COLUMNS:
        return float(obs_row[OBS_COLUMNS.index(vital)])
    if vital == "consciousness":
        return float(obs_row[OBS_COLUMNS.index("alert")])
    return None


def score_patient(model: DeteriorationModel, p: PatientObs, threshold: float) -> PatientScore:
    points = news2_parameters(p.obs[-1:])[0]
    total = int(points.sum())
    probability, drivers = None, []
    if len(p.obs) >= WINDOW_ROWS:
        e = model.score_recent(p.obs[-WINDOW_ROWS:])
        probability = e.probability
        drivers = [Driver(v, c, _value(p.obs[-1], v)) for v, c in e.by_vital]
    return PatientScore(
        patient=p.patient, at_h=float(p.times_h[-1]), news2=total,
        parameter_points=dict(zip(NEWS2_PARAMETERS, (int(x) for x in points), strict=True)),
        response=response(total, int(points.max())), probability=probability,
        alarm=probability is not None and probability >= threshold, drivers=drivers,
    )


def ward_list(model: DeteriorationModel, patients: list[PatientObs], threshold: float) -> list[PatientScore]:
    """Sorted by risk: escalation first (emergency, urgent, ward), then the model's score, then NEWS2."""
    scored = [score_patient(model, p, threshold) for p in patients]
    return sorted(scored, key=lambda s: (-RESPONSES.index(s.response), -(s.probability or 0.0), -s.news2,
                                         s.patient))


def trend(model: DeteriorationModel, p: PatientObs, threshold: float) -> PatientTrend:
    scores = score_windows(model, p.obs)
    return PatientTrend(
        patient=p.patient, times_h=p.times_h.tolist(),
        vitals={name: p.obs[:, i].tolist() for i, name in enumerate(VITALS)},
        news2=news2_parameters(p.obs).sum(axis=1).tolist(),
        score_times_h=p.times_h[WINDOW_ROWS - 1:].tolist(), scores=scores.tolist(), threshold=threshold,
        latest=score_patient(model, p, threshold),
    )


@dataclass(frozen=True)
class WardEvaluation:
    """How a model version ranks this ward's own charted windows (labels: NEWS2 >= 5 within 6 h, as charted)."""

    windows: int
    deteriorations: int
    auroc: float | None


def evaluate_on_ward(model: DeteriorationModel, patients: list[PatientObs]) -> WardEvaluation:
    series = []
    for p in patients:
        news2 = news2_parameters(p.obs).sum(axis=1)
        above = np.flatnonzero(news2 >= 5)
        series.append(PatientSeries(p.patient, p.times_h, p.obs, news2,
                                    float(p.times_h[above[0]]) if above.size else None))
    windows = make_windows(series)
    if len(windows.y) == 0:
        return WardEvaluation(0, 0, None)
    positives = int(windows.y.sum())
    value = auroc(windows.y, model.predict_proba(windows.x)) if 0 < positives < len(windows.y) else None
    return WardEvaluation(len(windows.y), positives, value)
