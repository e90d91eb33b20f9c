"""The IDS classifier trained through the on-chain FL rounds, tested on hospitals it never saw.

The FBCI-SHS target is macro F1 >= 0.97. With the per-device context
features (``ids.context``) this split (4 000 records per hospital, seed 1)
measures 0.974 (spoofing F1 0.885: the generator's careful relays and
noisy-LAN normals); the per-record features alone, under the same training,
reach 0.927 here, so the context is what lifts data alteration and replay
(bench/results/ids.json has both, and the 6 000-record figures; the
per-record comparison is left to the bench to keep this test to one
training). The test pins the measured figures with a small margin, not the
paper's number.
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
    assert learned.macro_f1 >= 0.965 and learned.macro_f1 > rules.macro_f1 + 0.08
    assert learned.per_class["data_alteration"].f1 >= 0.97 and learned.per_class["replay"].f1 >= 0.98
    assert learned.per_class["spoofing"].f1 >= 0.85
    assert learned.per_class["flooding"].f1 >= 0.97 and learned.per_class["scanning"].f1 >= 0.97
    gw = Gateway(hospital="hillcrest-outpatient", secret=b"k", classifier=classifier, model_version=12)
    alerts = [a for r in split.test_records[:2000] for a in gw.process(r)]
    attacks = sum(r.label != "normal" for r in split.test_records[:2000])
    assert 0 < len(alerts) < attacks / 3 and {a.model_version for a in alerts} == {12}
