from __future__ import annotations

import io
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from core.errors import InvalidInput
from ids.context import CONTEXT_FEATURE_NAMES, DeviceContext
from ids.features import (
    BASE_FEATURE_NAMES, FEATURE_NAMES, N_BASE_FEATURES, base_feature_matrix, feature_matrix, flow_features, labels,
)
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


def _best_single_cut(x: np.ndarray, y: np.ndarray, c: int, columns: range) -> float:
    """Best balanced accuracy of one threshold on one column, class ``c`` against normal."""
    mask = (y == 0) | (y == c)
    best = 0.0
    for j in columns:
        v, positive = x[mask, j], y[mask] == c
        for cut in np.unique(np.quantile(v, np.linspace(0, 1, 41))):
            above = v > cut
            bal = (above[positive].mean() + (~above[~positive]).mean()) / 2
            best = max(best, bal, 1 - bal)
    return best


def test_no_single_feature_threshold_separates_any_attack_from_normal(flows: list[FlowRecord]) -> None:
    """The documented overlap: on a record alone, the best one-feature cut leaves errors for every class."""
    x, y = base_feature_matrix(flows), labels(flows, ATTACK_CLASSES)
    for c in range(1, len(ATTACK_CLASSES)):
        assert _best_single_cut(x, y, c, range(N_BASE_FEATURES)) < 0.995, ATTACK_CLASSES[c]


def test_device_history_resolves_overlap_a_single_record_cannot(flows: list[FlowRecord]) -> None:
    """Data alteration against the patient's own baseline beats any per-record cut; replays repeat readings."""
    x, y = feature_matrix(flows), labels(flows, ATTACK_CLASSES)
    alteration = ATTACK_CLASSES.index("data_alteration")
    per_record = _best_single_cut(x, y, alteration, range(N_BASE_FEATURES))
    jump = _best_single_cut(x, y, alteration, [FEATURE_NAMES.index("jump_max")])
    assert jump > 0.95 and jump > per_record + 0.2, (jump, per_record)
    repeat = x[:, FEATURE_NAMES.index("vitals_repeat")]
    replay = y == ATTACK_CLASSES.index("replay")
    assert repeat[replay].mean() > 0.8 and repeat[y == 0].mean() < 0.01


def test_features_are_fixed_length_finite_and_scaled(flows: list[FlowRecord]) -> None:
    x = feature_matrix(flows)
    assert FEATURE_NAMES == BASE_FEATURE_NAMES + CONTEXT_FEATURE_NAMES and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert x.shape == (len(flows), len(FEATURE_NAMES)) and np.isfinite(x).all()
    assert np.abs(x).max() <= 10
    np.testing.assert_array_equal(x[:, :N_BASE_FEATURES], base_feature_matrix(flows))
    np.testing.assert_array_equal(flow_features(flows[0]), x[0])  # a device's first record: no history


def test_batch_features_equal_streaming_features(flows: list[FlowRecord]) -> None:
    """Training (feature_matrix) and the gateway (one record at a time) compute the same numbers."""
    sample = flows[:3000]
    ctx = DeviceContext()
    streamed = np.stack([flow_features(r, ctx) for r in sample])
    np.testing.assert_array_equal(streamed, feature_matrix(sample))
    resumed = DeviceContext()
    head = feature_matrix(sample[:1000], resumed)
    np.testing.assert_array_equal(np.vstack([head, feature_matrix(sample[1000:], resumed)]), streamed)


def _col(x: np.ndarray, name: str) -> float:
    return float(x[FEATURE_NAMES.index(name)])


def test_context_compares_a_reading_with_the_same_patient(flows: list[FlowRecord]) -> None:
    device = next(r.device_id for r in flows if r.label == "normal")
    own = [r for r in flows if r.device_id == device and r.label == "normal"][:12]
    ctx = DeviceContext()
    for r in own[:-1]:
        flow_features(r, ctx)
    last = own[-1]
    usual_gap = float(np.median([r.heart_rate - r.pulse_rate for r in own[:-1]]))
    # This patient's usual gap (an AF deficit would be stable) is not a jump; 30 bpm more is.
    probe = DeviceContext()
    for r in own[:-1]:
        flow_features(r, probe)
    steady = flow_features(replace(last, pulse_rate=last.heart_rate - usual_gap), probe)
    assert abs(_col(steady, "jump_hr_pulse_gap")) < 1.0
    altered = flow_features(replace(last, pulse_rate=last.heart_rate - usual_gap - 30), ctx)
    assert _col(altered, "jump_hr_pulse_gap") >= 2.5 and _col(altered, "jump_max") >= 2.5
    resent = flow_features(replace(own[3], ts_ms=last.ts_ms + 1), ctx)  # an earlier reading sent again
    assert _col(resent, "vitals_repeat") == 1.0 and _col(altered, "vitals_repeat") == 0.0
    other_mac = flow_features(replace(last, ts_ms=last.ts_ms + 2, src_mac="02:77:77:01:00:01"), ctx)
    assert _col(other_mac, "mac_mismatch") == 1.0 and _col(altered, "mac_mismatch") == 0.0
    assert _col(altered, "history_fill") == 1.0 and _col(flow_features(own[0]), "history_fill") == 0.0


def test_context_memory_is_bounded(flows: list[FlowRecord]) -> None:
    ctx = DeviceContext(history=4, max_devices=10)
    for i, r in enumerate(flows[:2000]):
        flow_features(replace(r, device_id=f"d{i % 50}"), ctx)
    assert len(ctx) == 10
    for state in ctx._devices.values():
        assert len(state.readings) <= 4 and all(len(m) <= 4 for m in state.vitals)
        assert state.macs is not None and len(state.macs._counts) <= 4
    with pytest.raises(ValueError):
        DeviceContext(history=0)


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
