"""IoMT device types as declared data: a genesis with a ventilator gets its features, traffic, rules and model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cli.main as cli
from core.errors import BadDeviceType, DeviceTypeClash, IdsInputMismatch, InvalidGenesis, UnknownDeviceType
from devnet.catalog import default_app_state, default_models
from fl_contracts.spec import ModelSpec
from genesis.schema import load_genesis
from ids.classifier import FlowClassifier
from ids.context import CONTEXT_FEATURE_NAMES, DeviceContext
from ids.devices import DEFAULT_DEVICES, DeviceCatalog, DeviceType, devices_of, read_declarations
from ids.features import (
    FEATURE_NAMES, N_BASE_FEATURES, base_feature_names, check_ids_model, feature_matrix, feature_names, flow_features,
)
from ids.flows import HOSPITAL_PROFILES, generate_flows
from ids.gateway import Gateway
from ids.record import ATTACK_CLASSES, record_from_mapping
from ids.rules import evaluate_rules
from node.kinds import model_specs

VENTILATOR = {"name": "ventilator", "rate_mpps": 25_000, "pkt_bytes": 320, "tcp": True, "port": 4001,
              "sensor_jitter_pct": 8}
WITH_VENTILATOR = DEFAULT_DEVICES.with_added(read_declarations(VENTILATOR, "ventilator.json"), "ventilator.json")
ICU = replace(HOSPITAL_PROFILES[0], name="north-icu", subnet=21,
              device_mix={"ventilator": 5, "ecg_monitor": 2, "pulse_oximeter": 1})


def test_the_feature_layout_follows_the_declared_types() -> None:
    names = feature_names(WITH_VENTILATOR)
    assert len(names) == len(FEATURE_NAMES) + 1 and len(base_feature_names(WITH_VENTILATOR)) == N_BASE_FEATURES + 1
    assert names[N_BASE_FEATURES] == "device_ventilator" and names[N_BASE_FEATURES + 1:] == CONTEXT_FEATURE_NAMES
    flows = generate_flows(ICU, 300, np.random.default_rng(0), WITH_VENTILATOR)
    x = feature_matrix(flows, devices=WITH_VENTILATOR)
    assert x.shape == (300, len(names)) and np.isfinite(x).all()
    is_vent = np.array([r.device_type == "ventilator" for r in flows])
    np.testing.assert_array_equal(x[:, N_BASE_FEATURES], is_vent.astype(float))


def test_declaring_a_type_leaves_the_other_hospitals_traffic_and_features_as_they_were() -> None:
    profile = HOSPITAL_PROFILES[1]
    before = generate_flows(profile, 200, np.random.default_rng(4))
    after = generate_flows(profile, 200, np.random.default_rng(4), WITH_VENTILATOR)
    assert before == after
    x_before, x_after = feature_matrix(before), feature_matrix(after, devices=WITH_VENTILATOR)
    np.testing.assert_array_equal(np.delete(x_after, N_BASE_FEATURES, axis=1), x_before)
    assert not x_after[:, N_BASE_FEATURES].any()


def test_the_generator_makes_ventilator_traffic_from_its_declared_profile() -> None:
    flows = generate_flows(ICU, 1500, np.random.default_rng(1), WITH_VENTILATOR)
    vent = [r for r in flows if r.device_type == "ventilator" and r.label == "normal" and r.dport != 53 and r.dport != 123]
    assert len(vent) > 300 and all(r.device_id.startswith("north-icu/ventilator-") for r in vent)
    assert {r.dport for r in vent} == {4001} and {r.dir for r in vent} == {"<->"}
    assert 18 < float(np.median([r.rate for r in vent])) < 35  # log-normal around the declared 25 pps
    assert 270 < float(np.median([(r.s_min_pkt_sz + r.s_max_pkt_sz) / 2 for r in vent])) < 370  # 320-byte packets
    assert {r.label for r in flows if r.device_type == "ventilator"} == set(ATTACK_CLASSES)


def test_the_rules_read_the_declared_profile() -> None:
    flow = next(r for r in generate_flows(ICU, 400, np.random.default_rng(2), WITH_VENTILATOR)
                if r.device_type == "ventilator" and r.label == "normal" and r.dport == 4001
                and evaluate_rules(r, devices=WITH_VENTILATOR).label == "normal")
    slow = DeviceCatalog((*DEFAULT_DEVICES.types, DeviceType.model_validate({**VENTILATOR, "rate_mpps": 1_000})))
    other_port = DeviceCatalog((*DEFAULT_DEVICES.types, DeviceType.model_validate({**VENTILATOR, "port": 443})))
    lossy = replace(flow, p_loss=6.0)
    assert evaluate_rules(lossy, devices=WITH_VENTILATOR).label == "spoofing"  # relay-like loss at the declared rate
    assert evaluate_rules(lossy, devices=slow).label == "flooding"  # 25 pps with loss is 25x a 1 pps vendor sheet
    probe = replace(flow, tot_pkts=2, dur=0.1)
    assert evaluate_rules(probe, devices=WITH_VENTILATOR).label != "scanning"
    assert evaluate_rules(probe, devices=other_port).label == "scanning"  # a short flow to a port not its own


def test_an_ids_model_trains_on_ventilator_flows_and_the_gateway_detects_with_it() -> None:
    train = generate_flows(ICU, 1500, np.random.default_rng(10), WITH_VENTILATOR)
    weights = softmax_regression(feature_matrix(train, devices=WITH_VENTILATOR),
                                 np.array([ATTACK_CLASSES.index(r.label) for r in train]))
    model = FlowClassifier.from_weights(weights, n_features=len(feature_names(WITH_VENTILATOR)))
    with pytest.raises(ValueError, match="expected"):  # the default catalog's gateway computes one feature fewer
        Gateway(hospital="north-icu", secret=b"s", classifier=model)
    gateway = Gateway(hospital="north-icu", secret=b"s", classifier=model,
                      context=DeviceContext(devices=WITH_VENTILATOR))
    test = generate_flows(ICU, 1000, np.random.default_rng(11), WITH_VENTILATOR)
    verdicts = [(r, gateway.classify(r, flow_features(r, gateway.context))[0]) for r in test]
    vent = [(r.label, label) for r, label in verdicts if r.device_type == "ventilator"]
    attacks = [label != "normal" for truth, label in vent if truth != "normal"]
    false_alarms = [label != "normal" for truth, label in vent if truth == "normal"]
    assert len(attacks) > 150 and np.mean(attacks) > 0.85 and np.mean(false_alarms) < 0.1


def softmax_regression(x: np.ndarray, y: np.ndarray, steps: int = 400, lr: float = 1.0) -> dict[str, np.ndarray]:
    """Full-batch gradient descent on the cross-entropy: a short local training in ``nn.Linear``'s layout.

    ``einsum`` rather than ``@``: these products are small, and BLAS threads contending for a busy
    machine's cores made them 10x slower."""
    w, b = np.zeros((len(ATTACK_CLASSES), x.shape[1])), np.zeros(len(ATTACK_CLASSES))
    onehot = np.eye(len(ATTACK_CLASSES))[y]
    for _ in range(steps):
        z = np.einsum("nf,cf->nc", x, w) + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        grad = p / p.sum(axis=1, keepdims=True) - onehot
        w -= lr * np.einsum("nc,nf->cf", grad, x) / len(x)
        b -= lr * grad.mean(axis=0)
    return {"0.weight": w, "0.bias": b}


declarations = st.builds(
    dict, name=st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True), rate_mpps=st.integers(1, 10_000_000),
    pkt_bytes=st.integers(20, 1500), tcp=st.booleans(), port=st.integers(1, 65535),
    sensor_jitter_pct=st.integers(0, 100))


@settings(max_examples=40, deadline=None)
@given(st.lists(declarations, min_size=1, max_size=6, unique_by=lambda d: d["name"]))
def test_any_valid_catalog_round_trips_and_sets_the_width(docs: list[dict[str, object]]) -> None:
    catalog = DeviceCatalog.parse(docs)
    assert DeviceCatalog.parse(catalog.to_doc()) == catalog and catalog.names == tuple(d["name"] for d in docs)
    assert len(feature_names(catalog)) == len(FEATURE_NAMES) - len(DEFAULT_DEVICES.types) + len(docs)
    assert devices_of({"device_types": catalog.to_doc()}) == catalog


def test_an_undeclared_type_is_refused_everywhere_with_its_code() -> None:
    vent = next(r for r in generate_flows(ICU, 50, np.random.default_rng(3), WITH_VENTILATOR)
                if r.device_type == "ventilator")
    with pytest.raises(UnknownDeviceType, match=r"line 7: field 'DeviceType': device type 'ventilator' is not "
                                                r"declared on this chain; declared: ecg_monitor, ") as exc:
        record_from_mapping(vent.to_row(), "line 7")
    assert exc.value.code == -32175 and exc.value.reason == "unknown_device_type"
    assert record_from_mapping(vent.to_row(), "line 7", WITH_VENTILATOR) == vent
    with pytest.raises(UnknownDeviceType, match="hospital profile 'north-icu': device_mix"):
        generate_flows(ICU, 10, np.random.default_rng(0))
    gateway = Gateway(hospital="north-icu", secret=b"s")
    with pytest.raises(UnknownDeviceType):
        gateway.process(vent)
    assert len(gateway.context) == 0 and gateway.stats.scored == 0  # refused before it changed anything


@pytest.mark.parametrize(("doc", "error", "text"), [
    ({**VENTILATOR, "rate_mpps": 0}, BadDeviceType, "rate_mpps: Input should be greater than or equal to 1"),
    ({**VENTILATOR, "rate_mpps": 2.5}, BadDeviceType, "rate_mpps: Input should be a valid integer"),
    ({**VENTILATOR, "port": 70000}, BadDeviceType, "port"),
    ({**VENTILATOR, "name": "Ventilator!"}, BadDeviceType, "name: String should match pattern"),
    ({**VENTILATOR, "colour": "blue"}, BadDeviceType, "colour: Extra inputs are not permitted"),
    ({k: v for k, v in VENTILATOR.items() if k != "tcp"}, BadDeviceType, "tcp: Field required"),
    ("ventilator", BadDeviceType, "must be a JSON object"),
    ([], BadDeviceType, "non-empty list"),
    ({**VENTILATOR, "name": "wearable"}, DeviceTypeClash, "device type 'wearable' is already declared"),
    ([VENTILATOR, VENTILATOR], DeviceTypeClash, "device type 'ventilator' is already declared"),
])
def test_a_bad_declaration_is_refused_with_its_code(doc: object, error: type[InvalidGenesis], text: str) -> None:
    with pytest.raises(error, match=text) as exc:
        DEFAULT_DEVICES.with_added(read_declarations(doc, "d.json"), "d.json")
    assert exc.value.code == {BadDeviceType: -32176, DeviceTypeClash: -32177}[error]
    assert isinstance(exc.value, InvalidGenesis)


def test_genesis_checks_the_ids_model_against_the_declared_types() -> None:
    state = {**default_app_state(4), "device_types": WITH_VENTILATOR.to_doc()}  # the default 64-input model
    specs = [ModelSpec.parse(m) for m in state["models"]]
    with pytest.raises(IdsInputMismatch, match=rf"reads {len(FEATURE_NAMES)} inputs, but the 7 declared device types "
                                                rf"\(.*ventilator\) give {len(FEATURE_NAMES) + 1} features") as exc:
        check_ids_model(state, specs)
    assert exc.value.code == -32178
    wider = default_models(4, devices=WITH_VENTILATOR)
    assert check_ids_model(state, wider) == WITH_VENTILATOR
    renamed = ModelSpec.parse({**next(s for s in wider if s.id == "iomt_ids").to_doc(),
                               "input_features": list(feature_names(WITH_VENTILATOR))[::-1]})
    with pytest.raises(IdsInputMismatch, match="input_features differ .* at feature 1"):
        check_ids_model(state, [renamed])
    assert devices_of({}) == DEFAULT_DEVICES
    with pytest.raises(BadDeviceType, match=r"app_state.device_types\[6\]: pkt_bytes"):
        devices_of({"device_types": [*DEFAULT_DEVICES.to_doc(), {**VENTILATOR, "pkt_bytes": 9}]})


def init(tmp_path: Path, *args: str) -> int:
    return cli.main(["genesis", "init", "--validators", "1", "--out", str(tmp_path / "net"), "--base-port", "32200",
                     *args])


def test_genesis_init_adds_a_ventilator_and_the_ids_model_follows(tmp_path: Path) -> None:
    path = tmp_path / "ventilator.json"
    path.write_text(json.dumps(VENTILATOR))
    assert init(tmp_path, "--add-device-type", str(path)) == 0
    doc = load_genesis(tmp_path / "net" / "genesis.json")
    assert devices_of(doc.app_state) == WITH_VENTILATOR
    ids = next(s for s in model_specs(doc) if s.id == "iomt_ids")  # as the validator parses it
    assert ids.input_features == feature_names(WITH_VENTILATOR) and check_ids_model(doc.app_state, [ids])
    from node.kinds import genesis_hooks

    assert genesis_hooks(doc)  # the validator accepts it
    six = {**doc.app_state, "device_types": DEFAULT_DEVICES.to_doc()}  # the 65-input model, the six types' 64
    with pytest.raises(IdsInputMismatch):
        genesis_hooks(doc.model_copy(update={"app_state": six}))


def test_genesis_init_refuses_a_bad_type_or_a_model_that_does_not_fit(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**VENTILATOR, "sensor_jitter_pct": 150}))
    assert init(tmp_path, "--add-device-type", str(bad)) == 1
    err = capsys.readouterr().err
    assert "error[-32176 bad_device_type]" in err and "bad.json: sensor_jitter_pct" in err and "Traceback" not in err
    state = tmp_path / "app.json"
    state.write_text(json.dumps(default_app_state(1)))  # the six types' iomt_ids, then a seventh type
    good = tmp_path / "ventilator.json"
    good.write_text(json.dumps(VENTILATOR))
    assert init(tmp_path, "--app-state", str(state), "--add-device-type", str(good)) == 1
    err = capsys.readouterr().err
    assert "error[-32178 ids_input_mismatch]" in err and f"declare its first layer with {len(FEATURE_NAMES) + 1} inputs" in err
    assert not (tmp_path / "net").exists()
