"""Per-patient vital-sign series with deterioration episodes, labelled by NEWS2.

NEWS2 (Royal College of Physicians, "National Early Warning Score (NEWS) 2",
2017, chart 1) scores respiration rate, SpO2 (scale 1), supplemental oxygen,
systolic pressure, pulse, consciousness and temperature; an aggregate of 5 or
more is the key threshold for an urgent clinical response. The task: from
the last ``window_h`` hours, predict a NEWS2 of 5 or more in the next
``horizon_h`` hours, before the score itself gets there. Scale 2 (target
SpO2 88-92 % in hypercapnic respiratory failure) needs a clinician's
prescription and is not modelled: COPD patients here are scored on scale 1,
as on a ward that has not prescribed it, which is one source of NEWS2
false alarms.

The generator: observations every 30 min; each vital an AR(1) (phi 0.8)
around the patient's baseline; 10 % COPD (SpO2 baseline 90 %); benign
transients (pain or anxiety tachycardia, post-operative fever) about once per
48 h that resolve in 1-3 h; and in ``deterioration_rate`` of patients one
episode (sepsis, respiratory failure or cardiac) whose severity ramps over
4-12 h (20 % abrupt, 1-2 h), with oxygen started once SpO2 falls below 92 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VITALS: tuple[str, ...] = ("resp_rate", "spo2", "temp", "sys", "heart_rate")
STEP_H = 0.5
# Columns of a series' ``obs`` array: the five vitals, then on_oxygen (0/1) and alert (0/1: 0 = new confusion/VPU).
OBS_COLUMNS: tuple[str, ...] = VITALS + ("on_oxygen", "alert")
_CENTRE = np.array([16.0, 96.0, 37.0, 120.0, 75.0])  # NEWS2 zero-score bands
_STEP = np.array([4.0, 3.0, 1.0, 20.0, 20.0])


def _bands(x: np.ndarray, edges: Sequence[float], points: Sequence[int]) -> np.ndarray:
    """Points for ``x`` where ``edges`` are the upper bounds of all but the last band (inclusive)."""
    return np.asarray(points)[np.searchsorted(np.asarray(edges), x, side="left")]


NEWS2_PARAMETERS: tuple[str, ...] = ("resp_rate", "spo2", "on_oxygen", "sys", "heart_rate", "consciousness", "temp")


def news2_parameters(obs: np.ndarray) -> np.ndarray:
    """Each NEWS2 parameter's points (columns ``NEWS2_PARAMETERS``): RCP escalates on 3 in any one of them."""
    obs = np.atleast_2d(obs)
    rr, spo2, sys_bp, hr = (np.round(obs[:, i]) for i in (0, 1, 3, 4))
    temp = np.round(obs[:, 2], 1)
    return np.stack([
        _bands(rr, [8, 11, 20, 24], [3, 1, 0, 2, 3]),
        _bands(spo2, [91, 93, 95], [3, 2, 1, 0]),
        2 * (obs[:, 5] > 0.5),
        _bands(sys_bp, [90, 100, 110, 219], [3, 2, 1, 0, 3]),
        _bands(hr, [40, 50, 90, 110, 130], [3, 1, 0, 1, 2, 3]),
        3 * (obs[:, 6] < 0.5),
        _bands(temp, [35.0, 36.0, 38.0, 39.0], [3, 1, 0, 1, 2]),
    ], axis=1).astype(np.int64)


def news2_scores(obs: np.ndarray) -> np.ndarray:
    """NEWS2 (scale 1) for rows of ``obs`` (columns ``OBS_COLUMNS``), on charted (rounded) values."""
    return news2_parameters(obs).sum(axis=1)


def news2_score(resp_rate: float, spo2: float, on_oxygen: bool, temp: float, sys: float, heart_rate: float,
                alert: bool = True) -> int:
    return int(news2_scores(np.array([[resp_rate, spo2, temp, sys, heart_rate, float(on_oxygen), float(alert)]]))[0])


@dataclass(frozen=True)
class PatientSeries:
    patient_id: str
    times_h: np.ndarray
    obs: np.ndarray  # (T, len(OBS_COLUMNS))
    news2: np.ndarray
    onset_h: float | None  # first time NEWS2 >= 5, if any


# Episode effects per unit severity on (rr, spo2, temp, sys, hr).
_EPISODES = np.array([
    [10.0, -4.0, 2.2, -30.0, 35.0],  # sepsis
    [12.0, -10.0, 0.3, 0.0, 20.0],  # respiratory failure
    [5.0, -2.0, 0.0, -35.0, 40.0],  # cardiac
])
_NOISE = np.array([1.2, 0.8, 0.15, 6.0, 4.0])


@dataclass(frozen=True)
class WardProfile:
    """A hospital ward's case mix: how many patients deteriorate, have COPD, and have benign transients
    (per 48 h). The defaults are :func:`generate_patient`'s."""

    name: str
    deterioration_rate: float = 0.3
    copd_rate: float = 0.1
    transients_per_48h: float = 1.0

    def patients(self, n: int, rng: np.random.Generator) -> list[PatientSeries]:
        return [generate_patient(f"{self.name}-{i:04d}", rng, deterioration_rate=self.deterioration_rate,
                                 copd_rate=self.copd_rate, transients_per_48h=self.transients_per_48h)
                for i in range(n)]


# Training wards (the case mixes ``ids.evaluation.vital_split`` uses) and wards no training ever sees.
TRAINING_WARDS: tuple[WardProfile, ...] = tuple(
    WardProfile(f"ward{i}", deterioration_rate=0.2 + 0.1 * i) for i in range(4))
HELDOUT_WARDS: tuple[WardProfile, ...] = (
    WardProfile("respiratory", deterioration_rate=0.3, copd_rate=0.3),
    WardProfile("post-operative", deterioration_rate=0.25, transients_per_48h=3.0),
)


def generate_patient(patient_id: str, rng: np.random.Generator, *, hours: float = 72.0,
                     deterioration_rate: float = 0.3, copd_rate: float = 0.1,
                     transients_per_48h: float = 1.0) -> PatientSeries:
    t = np.arange(0.0, hours + 1e-9, STEP_H)
    base = np.array([rng.normal(15, 2), min(99.0, rng.normal(97, 1.2)), rng.normal(36.9, 0.3),
                     rng.normal(125, 15), rng.normal(78, 10)])
    if rng.random() < copd_rate:
        base[0], base[1] = base[0] + 3, rng.normal(90, 1.5)
    shift = np.zeros((len(t), 5))
    for _ in range(rng.poisson(transients_per_48h * hours / 48)):  # benign transients
        start, length = rng.uniform(0, hours), rng.uniform(1, 3)
        on = (t >= start) & (t < start + length)
        shift[on] += [4, 0, 0, 10, 20] if rng.random() < 0.5 else [2, 0, 1.2, 0, 10]
    if rng.random() < deterioration_rate:
        start, ramp = rng.uniform(12, hours - 12), (rng.uniform(1, 2) if rng.random() < 0.2 else rng.uniform(4, 12))
        severity = np.clip((t - start) / ramp, 0, 1) ** 1.5
        shift += severity[:, None] * _EPISODES[rng.integers(3)] * rng.uniform(0.8, 1.2)
        confused_from = start + ramp * rng.uniform(0.9, 1.5)
    else:
        confused_from = np.inf
    level = base + shift
    obs = np.zeros((len(t), len(OBS_COLUMNS)))
    dev = np.zeros(5)
    for i in range(len(t)):
        dev = 0.8 * dev + rng.normal(0, 1, 5) * _NOISE
        obs[i, :5] = level[i] + dev
    obs[:, 1] = np.minimum(obs[:, 1], 100.0)
    oxygen = np.maximum.accumulate(obs[:, 1] < 92) & (shift[:, 1] < -3)  # started for a new drop, then kept
    obs[:, 1] = np.minimum(obs[:, 1] + 4.0 * oxygen, 100.0)
    obs[:, 5] = oxygen
    obs[:, 6] = t < confused_from
    scores = news2_scores(obs)
    above = np.flatnonzero(scores >= 5)
    return PatientSeries(patient_id, t, obs, scores, float(t[above[0]]) if above.size else None)


def generate_patients(prefix: str, n: int, rng: np.random.Generator, **kwargs: float) -> list[PatientSeries]:
    return [generate_patient(f"{prefix}-{i:04d}", rng, **kwargs) for i in range(n)]


WINDOW_FEATURE_NAMES: tuple[str, ...] = (
    tuple(f"{v}_last" for v in VITALS) + tuple(f"{v}_slope" for v in VITALS)
    + ("on_oxygen", "new_confusion", "news2_now")
)
# Which vital each feature explains (for ``ids.deterioration``'s per-vital attribution).
FEATURE_VITAL: tuple[str, ...] = VITALS + VITALS + ("on_oxygen", "consciousness", "news2")


def window_features(obs: np.ndarray) -> np.ndarray:
    """Features of the observations in one window (oldest first), fixed scaling from NEWS2 bands."""
    last = (obs[-1, :5] - _CENTRE) / _STEP
    hours = np.arange(len(obs)) * STEP_H
    if len(obs) > 1:
        centred = hours - hours.mean()
        slope = (centred @ (obs[:, :5] - obs[:, :5].mean(axis=0))) / (centred @ centred) / _STEP
    else:
        slope = np.zeros(5)
    news = news2_scores(obs[-1:])[0]
    return np.concatenate([last, 4.0 * slope, [obs[-1, 5], 1.0 - obs[-1, 6], news / 5.0]])


STEP_FEATURE_NAMES: tuple[str, ...] = (
    VITALS + tuple(f"{v}_rate" for v in VITALS) + tuple(f"{v}_from_baseline" for v in VITALS)
    + tuple(f"{p}_points" for p in NEWS2_PARAMETERS) + ("news2", "hours_since_normal")
)
# Which vital each per-observation feature explains.
STEP_FEATURE_VITAL: tuple[str, ...] = VITALS * 3 + NEWS2_PARAMETERS + ("news2", "news2")
BASELINE_LAG = 8  # observations (4 h): a patient's baseline is the mean of their readings up to this long ago
SINCE_NORMAL_CAP_H = 24.0


def series_features(obs: np.ndarray) -> np.ndarray:
    """One row of ``STEP_FEATURE_NAMES`` per observation, from the patient's history up to it (causal).

    What NEWS2 cannot see: each vital's rate of change (per hour, in NEWS2
    band units), its distance from the patient's own baseline (the mean of
    their readings until ``BASELINE_LAG`` observations before; their first
    reading before that), and the hours since their last reading with a
    NEWS2 of 0 (capped at ``SINCE_NORMAL_CAP_H``; since admission if none).
    Deterioration is a drift from a patient's own normal; a COPD patient's
    low SpO2 or an athlete's slow pulse is not.
    """
    obs = np.atleast_2d(obs)
    v = (obs[:, :5] - _CENTRE) / _STEP
    rate = np.vstack([np.zeros((1, 5)), np.diff(v, axis=0) / STEP_H])
    lagged = np.arange(len(v)) - BASELINE_LAG
    running = np.cumsum(v, axis=0) / np.arange(1, len(v) + 1)[:, None]
    baseline = np.where(lagged[:, None] >= 0, running[np.maximum(lagged, 0)], v[0])
    points = news2_parameters(obs)
    total = points.sum(axis=1)
    index = np.arange(len(v))
    last_normal = np.maximum.accumulate(np.where(total == 0, index, -1))
    since = np.where(last_normal >= 0, index - last_normal, index + 1) * STEP_H
    return np.column_stack([v, rate, v - baseline, points / 3.0, total / 5.0,
                            np.minimum(since, SINCE_NORMAL_CAP_H) / 8.0])


@dataclass(frozen=True)
class WindowSet:
    x: np.ndarray
    y: np.ndarray  # 1 when NEWS2 >= 5 within the horizon
    patient: np.ndarray  # index into the series list
    t_h: np.ndarray
    news2_now: np.ndarray


def make_windows(series: Sequence[PatientSeries], *, window_h: float = 4.0, horizon_h: float = 6.0,
                 temporal: bool = False) -> WindowSet:
    """Windows ending at each observation before onset with a full horizon ahead.

    Windows at or after onset are dropped: that patient is already escalated and
    NEWS2 itself is the alarm. ``temporal``: each window is its rows of
    :func:`series_features` (``window_h`` of them, flattened) instead of
    :func:`window_features`' summary.
    """
    w, hz = int(round(window_h / STEP_H)), int(round(horizon_h / STEP_H))
    xs, ys, ps, ts, ns = [], [], [], [], []
    for p, s in enumerate(series):
        end = len(s.times_h) - hz
        if s.onset_h is not None:
            end = min(end, int(np.flatnonzero(s.times_h == s.onset_h)[0]))
        rows = series_features(s.obs) if temporal else None
        for i in range(w - 1, end):
            xs.append(rows[i - w + 1:i + 1].ravel() if rows is not None else window_features(s.obs[i - w + 1:i + 1]))
            ys.append(int(s.news2[i + 1:i + 1 + hz].max() >= 5))
            ps.append(p), ts.append(s.times_h[i]), ns.append(s.news2[i])
    return WindowSet(np.array(xs), np.array(ys, dtype=np.int64), np.array(ps), np.array(ts), np.array(ns))
