from __future__ import annotations

import io
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from core.errors import InvalidInput
from ids.features import FEATURE_NAMES, N_FEATURES, feature_matrix, flow_features, labels
from ids.flows import (
    ATTACK_CLASSES, HOSPITAL_PROFILES, generate_flows, read_flows_csv, read_flows_jsonl, write_flows_csv,
    write_flows_jsonl,
)
from ids.record import FlowRecord


def test_same_seed_same_flows_and_different_seed_different_flows() -> None:
    h = HOSPITAL_PROFILES[0]
    assert generate_flows(h, 200, np.random.default_rng(7)) == generate_flows(h, 200, np.random.default_rng(7))
    assert generate_flows(h, 200, np.random.default_rng(7)) != generate_flows(h, 200, np.random.default_rng(8))


def test_every_class_appears_in_time_order_with_wustl_biometrics(flows: list[FlowRecord]) -> None:
    assert set(Counter(r.label for r in flows)) == set(ATTACK_CLASSES)
    for hospital in {r.hospital for r in flows}:
        ts = [r.ts_ms for r in flows if r.hospital == hospital]
        assert ts == sorted(ts)
    normal = [r for r in flows if r.label == "normal"]
    assert 90 < np.median([r.spo2 for r in normal]) <= 100
    assert all(r.sys > r.dia for r in normal)


def test_hospitals_are_not_identically_distributed(flows: list[FlowRecord]) -> None:
    mixes = {}
    for h in HOSPITAL_PROFILES:
        counts = Counter(r.device_type for r in flows if r.hospital == h.name)
        mixes[h.name] = counts
    icu, outpatient = mixes["st-mary-icu"], mixes["hillcrest-outpatient"]
    assert icu["wearable"] == 0 and outpatient["wearable"] > 300
    assert outpatient["ecg_monitor"] == 0 and icu["ecg_monitor"] > 300


def test_no_single_feature_threshold_separates_any_attack_from_normal(flows: list[FlowRecord]) -> None:
    """The documented overlap: the best one-feature cut leaves errors for every class."""
    x, y = feature_matrix(flows), labels(flows, ATTACK_CLASSES)
    for c in range(1, len(ATTACK_CLASSES)):
        mask = (y == 0) | (y == c)
        best = 0.0
        for j in range(N_FEATURES):
            v, positive = x[mask, j], y[mask] == c
            for cut in np.unique(np.quantile(v, np.linspace(0, 1, 41))):
                above = v > cut
                bal = (above[positive].mean() + (~above[~positive]).mean()) / 2
                best = max(best, bal, 1 - bal)
        assert best < 0.995, ATTACK_CLASSES[c]


def test_features_are_fixed_length_finite_and_scaled(flows: list[FlowRecord]) -> None:
    x = feature_matrix(flows)
    assert x.shape == (len(flows), len(FEATURE_NAMES)) and np.isfinite(x).all()
    assert np.abs(x).max() <= 10
    np.testing.assert_array_equal(flow_features(flows[3]), x[3])


def test_csv_and_jsonl_round_trip(flows: list[FlowRecord]) -> None:
    sample = flows[:50]
    for write, read in ((write_flows_csv, read_flows_csv), (write_flows_jsonl, read_flows_jsonl)):
        buf = io.StringIO()
        write(sample, buf)
        buf.seek(0)
        assert list(read(buf)) == sample


def test_reader_accepts_wustl_label_spelling_and_extra_columns(flows: list[FlowRecord]) -> None:
    row = flows[0].to_row() | {"Attack Category": "Data Alteration", "SIntPktAct": 0, "Label": 1}
    buf = io.StringIO()
    import json
    buf.write(json.dumps(row) + "\n")
    buf.seek(0)
    assert next(read_flows_jsonl(buf)) == replace(flows[0], label="data_alteration")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda row: row.update(SpO2="high"), "line 3: field 'spo2' must be a number"),
        (lambda row: row.pop("Temp"), "line 3: missing column(s) Temp"),
        (lambda row: row.update(Sport="1.5"), "line 3: field 'sport' must be an integer"),
        (lambda row: row.update(Bogus="1"), "line 3: unknown column 'Bogus'"),
        (lambda row: row.update(DeviceType="toaster"), "line 3: field 'DeviceType'"),
    ],
)
def test_reader_errors_name_the_line_and_field(flows: list[FlowRecord], edit, message: str) -> None:
    import json
    rows = [flows[0].to_row(), flows[1].to_row()]
    edit(rows[1])
    text = json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n"
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        list(read_flows_jsonl(io.StringIO(text)))


def test_csv_short_row_and_missing_file(tmp_path, flows: list[FlowRecord]) -> None:
    path = tmp_path / "f.csv"
    with path.open("w") as fh:
        write_flows_csv(flows[:1], fh)
        fh.write("1,2,3\n")
    with pytest.raises(InvalidInput, match="line 3: 3 values"):
        list(read_flows_csv(path))
    with pytest.raises(InvalidInput, match="does not exist"):
        list(read_flows_csv(tmp_path / "none.csv"))
