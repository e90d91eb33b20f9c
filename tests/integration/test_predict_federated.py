"""The deterioration model trained through the on-chain FL rounds, on held-out patients, beside NEWS2."""

from __future__ import annotations

from bench.bench_ids import train_deterioration
from ids.evaluation import evaluate_news2_baseline, evaluate_predictor, vital_split
from ids.vitals import VITALS


def test_federated_predictor_ranks_and_warns_on_unseen_patients() -> None:
    split = vital_split(4, 40, 100, seed=2)
    model = train_deterioration(split, rounds=20, seed=2)
    report, news2 = evaluate_predictor(model, split), evaluate_news2_baseline(split)
    print(report, news2)
    assert report.auroc >= 0.65 and report.auroc >= news2.auroc - 0.02
    assert report.onsets_warned >= 0.5 and report.median_lead_time_h >= 1.0
    worst = split.test.x[model.predict_proba(split.test.x).argmax()]
    explanation = model.explain(worst)
    assert explanation.probability > 0.5 and explanation.by_vital[0][0] in VITALS + ("news2",)
