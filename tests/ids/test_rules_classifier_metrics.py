from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from core.errors import InvalidInput
from ids.classifier import FlowClassifier, layer_shapes, validate_weights
from ids.features import N_BASE_FEATURES, N_FEATURES
from ids.detection_metrics import auroc, confusion_matrix, lead_times, macro_f1, per_class
from ids.record import ATTACK_CLASSES, FlowRecord
from ids.rules import evaluate_rules


def _normal(flows: list[FlowRecord], device_type: str = "ecg_monitor") -> FlowRecord:
    return next(r for r in flows if r.label == "normal" and r.device_type == device_type and r.dport == 2575
                and evaluate_rules(r).label == "normal")


def test_rules_name_the_physiological_inconsistency(flows: list[FlowRecord]) -> None:
    r = _normal(flows)
    assert not evaluate_rules(r).anomalous
    cases = {
        "heart rate and pulse disagree": replace(r, pulse_rate=r.heart_rate + 45),
        "diastolic at or above systolic": replace(r, dia=r.sys + 2),
        "hypoxaemia without compensation": replace(r, spo2=80.0, resp_rate=15.0, heart_rate=75.0, pulse_rate=75.0),
        "spo2 outside 50.0-100.0": replace(r, spo2=104.0),
    }
    for reason, record in cases.items():
        verdict = evaluate_rules(record)
        assert verdict.label == "data_alteration" and reason in verdict.reasons


def test_rules_rate_and_probe(flows: list[FlowRecord]) -> None:
    r = _normal(flows)
    assert evaluate_rules(replace(r, rate=5000.0, p_loss=20.0)).label == "flooding"
    assert evaluate_rules(replace(r, tot_pkts=1, dur=0.01, flgs="S", dport=22)).label == "scanning"
    assert evaluate_rules(replace(r, flgs="PR")).label == "replay"
    assert evaluate_rules(replace(r, src_jitter=r.s_int_pkt * 1.5)).label == "spoofing"


def test_rules_baseline_beats_chance_on_every_class(flows: list[FlowRecord]) -> None:
    y = np.array([ATTACK_CLASSES.index(r.label) for r in flows])
    p = np.array([ATTACK_CLASSES.index(evaluate_rules(r).label) for r in flows])
    report = per_class(y, p, ATTACK_CLASSES)
    assert all(m.f1 > 0.5 for m in report.values()), report


@pytest.mark.parametrize("hidden", [None, 16])
def test_numpy_inference_matches_torch_sequential(hidden: int | None) -> None:
    torch.manual_seed(0)
    layers = [torch.nn.Linear(N_FEATURES, len(ATTACK_CLASSES))] if hidden is None else [
        torch.nn.Linear(N_FEATURES, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, len(ATTACK_CLASSES))]
    model = torch.nn.Sequential(*layers).double()
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in weights.items()} == layer_shapes(N_FEATURES, len(ATTACK_CLASSES), hidden)
    x = np.random.default_rng(0).normal(size=(64, N_FEATURES))
    expected = torch.softmax(model(torch.from_numpy(x)), dim=1).detach().numpy()
    clf = FlowClassifier.from_weights(weights)
    np.testing.assert_allclose(clf.predict_proba(x), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(x), expected.argmax(axis=1))


def test_classifier_width_defaults_to_the_context_features_and_accepts_the_per_record_block() -> None:
    wide = {k: np.zeros(s) for k, s in layer_shapes(N_FEATURES, len(ATTACK_CLASSES), 8).items()}
    narrow = {k: np.zeros(s) for k, s in layer_shapes(N_BASE_FEATURES, len(ATTACK_CLASSES), 8).items()}
    assert FlowClassifier.from_weights(wide).n_features == N_FEATURES
    assert FlowClassifier.from_weights(narrow, n_features=N_BASE_FEATURES).n_features == N_BASE_FEATURES
    with pytest.raises(InvalidInput, match="shape"):
        FlowClassifier.from_weights(narrow)


def test_weight_validation_names_the_problem() -> None:
    good = {k: np.zeros(s) for k, s in layer_shapes(4, 2, None).items()}
    with pytest.raises(InvalidInput, match="shape"):
        validate_weights({**good, "0.weight": np.zeros((2, 5))}, 4, 2)
    with pytest.raises(InvalidInput, match="named"):
        validate_weights({"0.weight": good["0.weight"]}, 4, 2)
    with pytest.raises(InvalidInput, match="non-finite"):
        validate_weights({**good, "0.bias": np.array([np.nan, 0])}, 4, 2)


def test_per_class_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 6, 500), rng.integers(0, 6, 500)
    p[:200] = y[:200]
    report = per_class(y, p, ATTACK_CLASSES)
    pr, rc, f1, support = precision_recall_fscore_support(y, p, labels=range(6), zero_division=0)
    np.testing.assert_allclose([m.precision for m in report.values()], pr)
    np.testing.assert_allclose([m.recall for m in report.values()], rc)
    np.testing.assert_allclose(macro_f1(report), f1.mean())
    assert [m.support for m in report.values()] == list(support)
    assert confusion_matrix(y, p, 6).sum() == 500


def test_auroc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    with pytest.raises(ValueError):
        auroc(np.ones(3), np.arange(3))


def test_lead_times_count_only_alarms_inside_the_horizon() -> None:
    leads = lead_times([np.array([1.0, 8.0, 9.0]), np.array([2.0]), np.array([])], [10.0, 20.0, None], horizon=4.0)
    assert leads[0] == 2.0 and np.isnan(leads[1]) and len(leads) == 2
