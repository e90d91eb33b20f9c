from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core import codec
from core.errors import ContractRejected, InvalidInput
from core.hashing import sha256
from core.state import TxContext
from core.state import MemoryState
from ids.alerts import AlertPayload, get_alert, query_alerts, submit_alert
from ids.classifier import FlowClassifier, layer_shapes
from ids.features import N_BASE_FEATURES, N_FEATURES, feature_matrix
from ids.gateway import AlertDeduplicator, Gateway, device_pseudonym, feature_digest
from ids.record import ATTACK_CLASSES
from ids.rules import PLAUSIBLE
from ids.record import FlowRecord

GATEWAY = sha256(b"gateway-key")


def ctx(height: int, sender: bytes = GATEWAY, roles: frozenset[str] = frozenset({"gateway"}), n: int = 0,
        name: str = "st-mary-icu") -> TxContext:
    """A transaction by the account ``name`` (the reporter an alert must name)."""
    return TxContext("test", height, 1_700_000_000_000 + height * 1000, sender, roles, sha256(b"%d/%d" % (height, n)),
                     name)


def alert(**changes: object) -> dict[str, object]:
    base = AlertPayload(
        hospital="st-mary-icu", subject_kind="device", subject=sha256(b"dev-1"), alert_class="flooding", severity=3,
        window_start_ms=1_700_000_000_000, window_ms=60_000, count=1, score_ppm=990_000,
        feature_digest=sha256(b"x"), model_version=2,
    ).to_payload()
    return base | changes


def test_payload_is_canonical_and_float_free() -> None:
    payload = alert()
    assert codec.decode(codec.encode(payload)) == payload


def test_submit_stores_indexes_and_rejects_duplicate_without_writing() -> None:
    state = MemoryState()
    receipt = submit_alert(state, ctx(5), alert())
    assert receipt["alert_id"] == 1 and receipt["height"] == 5
    stored = get_alert(state, 1)
    assert stored is not None and stored.sender == GATEWAY and stored.height == 5
    assert stored.model_dump(mode="json")["subject"] == sha256(b"dev-1").hex()
    before = dict(state._data)
    with pytest.raises(ContractRejected, match="already on chain"):
        submit_alert(state, ctx(6), alert(severity=4))
    assert state._data == before


@pytest.mark.parametrize(
    ("changes", "roles", "message"),
    [
        ({"severity": 9}, {"gateway"}, "severity"),
        ({"score_ppm": 0.5}, {"gateway"}, "score_ppm"),
        ({"subject": b"short"}, {"gateway"}, "subject"),
        ({"alert_class": "mischief"}, {"gateway"}, "alert_class must be one of"),
        ({"alert_class": "equivocation"}, {"gateway"}, "attack classes are about devices"),
        ({"extra": 1}, {"gateway"}, "extra"),
        ({}, {"hospital"}, "needs the gateway role"),
        ({"subject_kind": "validator", "alert_class": "equivocation"}, {"gateway"}, "needs the validator role"),
        ({"window_start_ms": 1_800_000_000_000}, {"gateway"}, "future"),
        ({"hospital": "valley-rehab"}, {"gateway"}, "hospital is the reporter, the signing account 'st-mary-icu'"),
        ({"subject_kind": "validator", "alert_class": "equivocation"}, {"validator"}, "needs the consensus.evidence"),
        ({"subject_kind": "validator", "alert_class": "validator_task_failed"}, {"validator"},
         "about the signing validator's own key"),  # subject dev-1 is not the signer's key
        ({"subject_kind": "client_key", "alert_class": "validator_task_failed", "subject": GATEWAY}, {"validator"},
         "about the signing validator's own key"),
    ],
)
def test_invalid_alerts_are_rejected_and_write_nothing(changes: dict, roles: set[str], message: str) -> None:
    state = MemoryState()
    with pytest.raises(ContractRejected, match=message):
        submit_alert(state, ctx(1, roles=frozenset(roles)), alert(**changes))
    assert state._data == {}


def _populate() -> MemoryState:
    state = MemoryState()
    n = 0
    for height in range(1, 11):
        for dev in range(3):
            n += 1
            reporter = "st-mary-icu" if dev < 2 else "valley-rehab"
            submit_alert(state, ctx(height, n=n, name=reporter), alert(
                hospital=reporter, subject=sha256(b"dev-%d" % dev),
                alert_class="flooding" if height % 2 else "scanning", severity=1 + height % 4,
                window_start_ms=1_700_000_000_000 + height * 1000))
    return state


def test_query_filters() -> None:
    state = _populate()
    assert len(query_alerts(state, limit=500)[0]) == 30
    rehab, _ = query_alerts(state, hospital="valley-rehab")
    assert len(rehab) == 10 and {a.hospital for a in rehab} == {"valley-rehab"}
    dev0, _ = query_alerts(state, device=sha256(b"dev-0"), alert_class="scanning")
    assert [a.height for a in dev0] == [2, 4, 6, 8, 10]
    severe, _ = query_alerts(state, min_severity=4)
    assert {a.height for a in severe} == {3, 7}
    ranged, _ = query_alerts(state, hospital="st-mary-icu", from_height=3, to_height=4)
    assert [a.height for a in ranged] == [3, 3, 4, 4]


def test_pagination_visits_each_alert_once_in_order() -> None:
    state = _populate()
    seen, cursor = [], None
    while True:
        page, cursor = query_alerts(state, alert_class="flooding", cursor=cursor, limit=4)
        seen += [a.alert_id for a in page]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 15
    with pytest.raises(InvalidInput):
        query_alerts(state, limit=0)


def test_pseudonym_is_keyed_and_hides_the_device_id() -> None:
    a, b = device_pseudonym(b"secret-a", "icu/ecg-001"), device_pseudonym(b"secret-b", "icu/ecg-001")
    assert a != b and len(a) == 32 and a == device_pseudonym(b"secret-a", "icu/ecg-001")


def test_a_flood_episode_makes_one_alert_per_window(flows: list[FlowRecord]) -> None:
    flood = [r for r in flows if r.label == "flooding" and r.hospital == "st-mary-icu"]
    device = flood[0].device_id
    episode = [replace(r, device_id=device, ts_ms=1_700_000_000_000 + i * 100) for i, r in enumerate(flood[:400])]
    gw = Gateway(hospital="st-mary-icu", secret=b"s", window_ms=30_000)
    alerts = [a for r in episode for a in gw.process(r)]
    windows = {r.ts_ms // 30_000 for r in episode}
    assert 1 <= len(alerts) <= 2 * len(windows)  # flooding, perhaps one other guess, per window
    assert len(episode) > 100 and gw.stats.flagged > 0.8 * len(episode) and gw.stats.emitted == len(alerts)
    for a in alerts:
        assert a.subject == device_pseudonym(b"s", device) and a.window_ms == 30_000
        assert device.encode() not in codec.encode(a.to_payload())
        assert a.window_start_ms % 30_000 == 0
    assert "flooding" in {a.alert_class for a in alerts}
    state = MemoryState()
    for i, a in enumerate(alerts):
        submit_alert(state, ctx(1, n=i), a.to_payload())


def test_impossible_vitals_alert_even_when_the_model_says_normal(flows: list[FlowRecord]) -> None:
    r = next(r for r in flows if r.label == "normal")
    gw = Gateway(hospital="st-mary-icu", secret=b"s")
    [a] = gw.process(replace(r, spo2=130.0))
    assert a.alert_class == "data_alteration" and a.severity == 4 and a.score_ppm == 1_000_000


def _spy_classifier(n_features: int, seen: list[np.ndarray]) -> FlowClassifier:
    """A classifier that records the vectors the gateway scores and says "flooding" (index 3) for all."""
    weights = {k: np.zeros(s) for k, s in layer_shapes(n_features, len(ATTACK_CLASSES), None).items()}
    weights["0.bias"][3] = 5.0

    class Spy(FlowClassifier):
        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            seen.append(np.array(x))
            return super().predict_proba(x)

    return Spy.from_weights(weights, n_features=n_features)


@pytest.mark.parametrize("n_features", [N_FEATURES, N_BASE_FEATURES])
def test_gateway_scores_the_features_training_computes(flows: list[FlowRecord], n_features: int) -> None:
    """The streaming gateway's context equals the batch feature_matrix over the same records in order."""
    plausible = [r for r in flows if r.hospital == "valley-rehab"
                 and all(low <= getattr(r, name) <= high for name, (low, high) in PLAUSIBLE.items())]
    stream = plausible[:600]  # implausible vitals are data alteration without asking the model
    seen: list[np.ndarray] = []
    gw = Gateway(hospital="valley-rehab", secret=b"s", classifier=_spy_classifier(n_features, seen), window_ms=10)
    alerts = [a for r in stream for a in gw.process(r)]
    expected = feature_matrix(stream)
    np.testing.assert_array_equal(np.vstack(seen), expected[:, :n_features])
    assert len(gw.context) == len({r.device_id for r in stream})
    assert {a.feature_digest for a in alerts} <= {feature_digest(x) for x in expected}


def test_gateway_refuses_a_model_of_another_width() -> None:
    weights = {k: np.zeros(s) for k, s in layer_shapes(7, len(ATTACK_CLASSES), None).items()}
    with pytest.raises(ValueError, match="expected"):
        Gateway(hospital="h", secret=b"s", classifier=FlowClassifier.from_weights(weights, n_features=7))


def test_deduplicator_forgets_old_windows() -> None:
    d = AlertDeduplicator(1000)
    assert d.admit(b"a", "x", 10) == 0 and d.admit(b"a", "x", 999) is None
    assert d.admit(b"a", "x", 1000) == 1000
    for t in range(2000, 50_000, 1000):
        d.admit(b"%d" % t, "x", t)
    assert len(d._seen) <= 2


def test_a_validator_reports_its_own_failure_and_only_its_own() -> None:
    state = MemoryState()
    own = alert(subject_kind="validator", alert_class="validator_task_failed", subject=GATEWAY, severity=4)
    receipt = submit_alert(state, ctx(1, roles=frozenset({"validator"})), own)
    stored = get_alert(state, receipt["alert_id"])
    assert stored is not None and stored.subject == stored.sender == GATEWAY
