"""A temporal deterioration model trained through the contract, judged against NEWS2 on wards and seeds
training never used (issue 15, part 4).

Training: the four ``ids.vitals.TRAINING_WARDS`` from generator seed 0,
federated through :func:`client.fl.simulation.run_federated` (local torch
training, clipping, fixed-point quantization, the contract's integer
FedAvg), over windows of ``ids.vitals.series_features`` rows. Evaluation:
for each held-out seed, patients of the ``HELDOUT_WARDS`` (a respiratory
ward with three times the COPD patients, a post-operative ward with three
times the benign transients), from generator streams no training drew.

NEWS2 is the baseline: its current score as the risk score (ranked for
AUROC), and its RCP 2017 trigger of 3 or more as the alarm. The model alarms
as often as NEWS2 does on the same windows (its threshold is the quantile of
its scores at NEWS2's alarm rate, which reads no labels), so sensitivity and
lead time are compared at the same nursing workload. Calibration: the
model's probability, and for NEWS2 the training windows' event rate at each
score, scored by Brier and binned by ``calibration_curve``. Metrics are
scikit-learn's; lead time is ``ids.detection_metrics.lead_times``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.metrics import brier_score_loss, roc_auc_score

from client.fl.simulation import run_federated
from fl_contracts.spec import ModelSpec
from ids.detection_metrics import lead_times
from ids.deterioration import TEMPORAL_STEPS, DeteriorationModel, temporal_layers
from ids.vitals import HELDOUT_WARDS, STEP_H, TRAINING_WARDS, PatientSeries, WindowSet, make_windows

Array = npt.NDArray[np.float64]
WINDOW_H = TEMPORAL_STEPS * STEP_H
HORIZON_H = 6.0
NEWS2_ALARM = 3
TRAIN_SEED = 0
HELDOUT_SEEDS = (101, 102, 103, 104, 105)


def temporal_spec(n_hospitals: int, kind: str = "gru", hidden: int = 16) -> ModelSpec:
    return ModelSpec.for_sequential(f"deterioration_{kind}", [], layers=temporal_layers(kind, hidden), rule="fedavg",
                                    max_abs=8.0, max_norm=16.0, round_length_blocks=1, min_updates=n_hospitals,
                                    max_updates=n_hospitals)


def training_windows(patients_per_ward: int, seed: int = TRAIN_SEED) -> list[WindowSet]:
    return [make_windows(ward.patients(patients_per_ward, np.random.default_rng([seed, i])), window_h=WINDOW_H,
                         horizon_h=HORIZON_H, temporal=True) for i, ward in enumerate(TRAINING_WARDS)]


@dataclass(frozen=True)
class HeldOut:
    seed: int
    series: list[PatientSeries]
    windows: WindowSet


def heldout(seed: int, patients_per_ward: int) -> HeldOut:
    """Patients of the held-out wards from streams ``[seed, 1000 + ward]``; training draws ``[0, ward]``."""
    series = [p for j, ward in enumerate(HELDOUT_WARDS)
              for p in ward.patients(patients_per_ward, np.random.default_rng([seed, 1000 + j]))]
    return HeldOut(seed, series, make_windows(series, window_h=WINDOW_H, horizon_h=HORIZON_H, temporal=True))


def train_temporal(spec: ModelSpec, hospitals: list[WindowSet], rounds: int, *, lr: float = 0.1,
                   local_epochs: int = 1, batch_size: int = 64, seed: int = 0) -> DeteriorationModel:
    result = run_federated(spec, [(w.x, w.y) for w in hospitals], rounds, local_epochs=local_epochs, lr=lr,
                           seed=seed, batch_size=batch_size)
    return DeteriorationModel.from_weights(result.global_weights, spec.network_layers)


def news2_calibration(hospitals: list[WindowSet]) -> Array:
    """P(event) per NEWS2 score 0..20 on the training windows (an unseen score takes the overall rate)."""
    news2, y = np.concatenate([w.news2_now for w in hospitals]), np.concatenate([w.y for w in hospitals])
    rate = np.full(21, y.mean())
    for score in np.unique(news2):
        rate[score] = y[news2 == score].mean()
    return rate


@dataclass(frozen=True)
class Side:
    """One predictor on one held-out seed."""

    auroc: float
    sensitivity: float  # at NEWS2's alarm rate
    alarm_rate: float
    median_lead_h: float  # over onsets warned within the horizon
    onsets_warned: float
    brier: float


@dataclass(frozen=True)
class SeedResult:
    seed: int
    windows: int
    positive_share: float
    onsets: int
    model: Side
    news2: Side

    @property
    def auroc_gain(self) -> float:
        return self.model.auroc - self.news2.auroc


def _side(scores: Array, alarm: npt.NDArray[np.bool_], probability: Array, data: HeldOut) -> Side:
    w = data.windows
    y = w.y.astype(bool)
    times = [w.t_h[(w.patient == p) & alarm] for p in range(len(data.series))]
    leads = lead_times(times, [s.onset_h for s in data.series], HORIZON_H)
    warned = leads[~np.isnan(leads)]
    return Side(auroc=float(roc_auc_score(y, scores)), sensitivity=float(alarm[y].mean()),
                alarm_rate=float(alarm.mean()), median_lead_h=float(np.median(warned)) if warned.size else 0.0,
                onsets_warned=float(warned.size / max(len(leads), 1)), brier=float(brier_score_loss(y, probability)))


def evaluate(model: DeteriorationModel, calibration: Array, data: HeldOut) -> SeedResult:
    w = data.windows
    news2 = w.news2_now.astype(np.float64)
    news2_alarm = w.news2_now >= NEWS2_ALARM
    p = model.predict_proba(w.x)
    threshold = float(np.quantile(p, 1.0 - news2_alarm.mean()))
    return SeedResult(
        seed=data.seed, windows=len(w.y), positive_share=float(w.y.mean()),
        onsets=sum(s.onset_h is not None for s in data.series),
        model=_side(p, p >= threshold, p, data), news2=_side(news2, news2_alarm, calibration[w.news2_now], data),
    )
