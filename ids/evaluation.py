"""The held-out evaluations the issue asks for, shared by the integration tests and bench/.

Detection: train on some hospitals, test on hospitals the model never saw
(a different device mix, case mix and LAN), per attack class, with the
training-free rules beside it. Features are computed per hospital in arrival
order with a fresh ``ids.context.DeviceContext``, as each hospital's gateway
would; ``FlowSplit.without_context`` gives the pre-context feature set (the
first ``N_BASE_FEATURES`` columns) for comparison. Prediction: test on patients never trained
on, with NEWS2 itself as the baseline (its current score as the risk
score; an alarm at an aggregate of 3 or more, the RCP 2017 "low-medium"
trigger for an urgent ward review, since waiting for 5 is the event itself).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from ids.classifier import FlowClassifier
from ids.features import N_BASE_FEATURES, feature_matrix, labels
from ids.flows import HOSPITAL_PROFILES, HospitalProfile, generate_flows
from ids.detection_metrics import ClassMetrics, auroc, lead_times, macro_f1, per_class
from ids.deterioration import DeteriorationModel
from ids.record import ATTACK_CLASSES, FlowRecord
from ids.rules import evaluate_rules
from ids.vitals import PatientSeries, WindowSet, generate_patients, make_windows

TRAIN_HOSPITALS: tuple[HospitalProfile, ...] = HOSPITAL_PROFILES[:4]
HELDOUT_HOSPITALS: tuple[HospitalProfile, ...] = HOSPITAL_PROFILES[4:]
NEWS2_ALARM = 3
HORIZON_H = 6.0


@dataclass(frozen=True)
class LocalTraining:
    """A hospital's local training per federated round: the settings the published figures use.

    ``bench/bench_ids.py`` measures with them and ``fbci fl train`` defaults to
    them, so what a hospital runs is what was measured.
    """

    local_epochs: int
    lr: float
    batch_size: int


IDS_TRAINING = LocalTraining(local_epochs=4, lr=0.1, batch_size=64)
DETERIORATION_TRAINING = LocalTraining(local_epochs=1, lr=0.05, batch_size=64)


@dataclass(frozen=True)
class FlowSplit:
    train: list[tuple[np.ndarray, np.ndarray]]  # per training hospital (X, y)
    test_records: list[FlowRecord]
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.x_test.shape[1])

    def without_context(self) -> FlowSplit:
        """The same records with only the per-record features (``BASE_FEATURE_NAMES``)."""
        return replace(self, train=[(x[:, :N_BASE_FEATURES], y) for x, y in self.train],
                       x_test=self.x_test[:, :N_BASE_FEATURES])


def flow_split(n_per_hospital: int, seed: int) -> FlowSplit:
    """Training hospitals' (X, y) and the held-out hospitals' records, all from one seed.

    Each hospital's records get their own fresh context, in time order.
    """
    rngs = [np.random.default_rng([seed, i]) for i in range(len(HOSPITAL_PROFILES))]
    train = []
    for h, rng in zip(TRAIN_HOSPITALS, rngs, strict=False):
        records = generate_flows(h, n_per_hospital, rng)
        train.append((feature_matrix(records), labels(records, ATTACK_CLASSES)))
    test: list[FlowRecord] = []
    x_test = []
    for h, rng in zip(HELDOUT_HOSPITALS, rngs[len(TRAIN_HOSPITALS):], strict=True):
        records = generate_flows(h, n_per_hospital, rng)
        test += records
        x_test.append(feature_matrix(records))
    return FlowSplit(train, test, np.concatenate(x_test), labels(test, ATTACK_CLASSES))


@dataclass(frozen=True)
class DetectionReport:
    per_class: dict[str, ClassMetrics]
    macro_f1: float

    def to_json(self) -> dict[str, object]:
        return {"macro_f1": self.macro_f1, "per_class": {k: asdict(v) for k, v in self.per_class.items()}}


def detection_report(y_true: np.ndarray, y_pred: np.ndarray) -> DetectionReport:
    report = per_class(y_true, y_pred, ATTACK_CLASSES)
    return DetectionReport(report, macro_f1(report))


def evaluate_classifier(classifier: FlowClassifier, split: FlowSplit) -> DetectionReport:
    if classifier.n_features != split.n_features:
        raise ValueError(f"classifier takes {classifier.n_features} features, the split has {split.n_features}")
    return detection_report(split.y_test, classifier.predict(split.x_test))


def evaluate_rules_baseline(split: FlowSplit) -> DetectionReport:
    predicted = np.array([ATTACK_CLASSES.index(evaluate_rules(r).label) for r in split.test_records])
    return detection_report(split.y_test, predicted)


@dataclass(frozen=True)
class VitalSplit:
    train_windows: list[WindowSet]
    test_series: list[PatientSeries]
    test: WindowSet

    @property
    def train(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(w.x, w.y) for w in self.train_windows]


def vital_split(n_hospitals: int, patients_per_hospital: int, n_test_patients: int, seed: int) -> VitalSplit:
    """Hospitals with different deterioration rates (case mix); test patients drawn separately."""
    train = []
    for i in range(n_hospitals):
        series = generate_patients(f"h{i}", patients_per_hospital, np.random.default_rng([seed, i]),
                                   deterioration_rate=0.2 + 0.3 * i / max(n_hospitals - 1, 1))
        train.append(make_windows(series, horizon_h=HORIZON_H))
    test_series = generate_patients("test", n_test_patients, np.random.default_rng([seed, 1000]))
    return VitalSplit(train, test_series, make_windows(test_series, horizon_h=HORIZON_H))


@dataclass(frozen=True)
class PredictionReport:
    accuracy: float
    sensitivity: float
    specificity: float
    auroc: float
    median_lead_time_h: float  # over deteriorations alarmed within the horizon before onset
    onsets_warned: float  # share of NEWS2 >= 5 onsets with such an alarm


def _prediction_report(scores: np.ndarray, alarm: np.ndarray, split: VitalSplit) -> PredictionReport:
    y = split.test.y.astype(bool)
    alarm_times = [split.test.t_h[(split.test.patient == p) & alarm] for p in range(len(split.test_series))]
    leads = lead_times(alarm_times, [s.onset_h for s in split.test_series], HORIZON_H)
    warned = leads[~np.isnan(leads)]
    return PredictionReport(
        accuracy=float((alarm == y).mean()), sensitivity=float(alarm[y].mean()), specificity=float((~alarm[~y]).mean()),
        auroc=auroc(y, scores), median_lead_time_h=float(np.median(warned)) if warned.size else 0.0,
        onsets_warned=float(warned.size / max(len(leads), 1)),
    )


def equal_workload_threshold(model: DeteriorationModel, split: VitalSplit) -> float:
    """The model's alarm threshold that, on the training hospitals, alarms as often as NEWS2 >= 3.

    Deteriorations are rare (about 6 % of windows), so a 0.5 cut would almost
    never alarm; matching NEWS2's alarm rate compares the two at the same
    nursing workload, and uses no test data.
    """
    news2 = np.concatenate([w.news2_now for w in split.train_windows])
    scores = model.predict_proba(np.concatenate([w.x for w in split.train_windows]))
    return float(np.quantile(scores, 1.0 - float((news2 >= NEWS2_ALARM).mean())))


def evaluate_predictor(model: DeteriorationModel, split: VitalSplit) -> PredictionReport:
    scores = model.predict_proba(split.test.x)
    return _prediction_report(scores, scores >= equal_workload_threshold(model, split), split)


def evaluate_news2_baseline(split: VitalSplit) -> PredictionReport:
    return _prediction_report(split.test.news2_now.astype(float), split.test.news2_now >= NEWS2_ALARM, split)

