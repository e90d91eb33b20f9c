"""``fbci ids watch`` scores with what it says it scores with.

Genesis version 0 of ``iomt_ids`` is a hash-derived random start
(``fl_contracts.initial``), nonzero but untrained, so it must mean the rules;
the summary's ``scored_with`` names what really scored. A fake session stands
in for the chain: it serves one model version and accepts every alert.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from cli.main import build_parser
from client import ids_watch
from core.api import AccountInfo
from client.ids_watch import load_classifier, watch
from core.crypto import PrivateKey
from core.hashing import sha256
from devnet.catalog import default_models
from fl_contracts.contract import ModelVersion
from fl_contracts.fixedpoint import encode_weights
from fl_contracts.initial import initial_weights
from ids.flows import HOSPITAL_PROFILES, generate_flows
from fl_contracts.spec import ModelSpec
from ids.gateway import Gateway
from ids.record import FlowRecord

SPEC = next(s for s in default_models(4) if s.id == "iomt_ids")


def version(n: int, weights: np.ndarray) -> ModelVersion:
    raw = encode_weights(weights)
    return ModelVersion(model_id="iomt_ids", version=n, round=n, height=10 * n, weights=raw, hash=sha256(raw))


class FakeSession:
    """The parts of ``ChainSession`` that ``watch`` uses: one committed model version, alerts always accepted."""

    def __init__(self, mv: ModelVersion) -> None:
        self.mv = mv
        self.key = PrivateKey.generate()
        self.asked: list[int | None] = []
        self.submitted: list[dict[str, Any]] = []

    def model_weights(self, model_id: str, v: int | None = None) -> tuple[ModelVersion, dict[str, Any]]:
        assert model_id == "iomt_ids"
        self.asked.append(v)
        return self.mv, self.mv.unflatten(SPEC)

    def spec(self, model_id: str) -> ModelSpec:
        return SPEC

    def run(self, fn: Callable[[FakeSession], Any]) -> Any:
        return fn(self)

    def genesis(self) -> SimpleNamespace:
        """The served genesis, as far as ``watch`` reads it: an ``app_state`` with the default device types."""
        return SimpleNamespace(genesis=SimpleNamespace(app_state={}))

    def account_get(self, public_key: bytes) -> AccountInfo:
        assert public_key == self.key.public_key.raw
        return AccountInfo(public_key, ("gateway",), len(self.submitted) + 1, name="gateway0")

    def submit(self, kind: str, payload: dict[str, Any]) -> bytes:
        self.submitted.append(payload)
        return len(self.submitted).to_bytes(32, "big")

    def wait_committed(self, tx_hash: bytes, timeout_s: float = 60.0) -> SimpleNamespace:
        """The committed transaction as ``ChainSession.wait_committed`` types it: ``.receipt.result``."""
        return SimpleNamespace(receipt=SimpleNamespace(ok=True, result={"alert_id": int.from_bytes(tx_hash, "big")}))

    def __enter__(self) -> FakeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def records() -> list[FlowRecord]:
    profile = ids_watch.with_attack_rate(HOSPITAL_PROFILES[0], 0.5)
    return generate_flows(profile, 400, np.random.default_rng(3))


def by_class(gateway: Gateway, flows: list[FlowRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in flows:
        for alert in gateway.process(record):
            counts[alert.alert_class] = counts.get(alert.alert_class, 0) + 1
    return dict(sorted(counts.items()))


@pytest.fixture
def genesis_v0() -> FakeSession:
    w0 = initial_weights(SPEC)
    assert np.count_nonzero(w0) > len(w0) // 2  # the premise: version 0 is random, not all zeros
    return FakeSession(version(0, w0))


def test_version_0_means_the_rules_even_with_its_random_nonzero_weights(genesis_v0: FakeSession) -> None:
    assert load_classifier(genesis_v0) == (None, 0)
    assert load_classifier(genesis_v0, 0) == (None, 0)


def test_the_summary_names_the_rules_and_the_alerts_are_the_rules_alerts(genesis_v0: FakeSession) -> None:
    flows = records()
    summary = watch(genesis_v0, flows)
    assert summary.scored_with == "rules" and summary.model_version == 0
    assert {p["hospital"] for p in genesis_v0.submitted} == {"gateway0"}  # the signer's own name, never a claim
    rules_only = Gateway(hospital="st-mary-icu", secret=b"s", classifier=None, model_version=0)
    assert summary.by_class == by_class(rules_only, flows) and summary.alerts > 0
    assert {p["model_version"] for p in genesis_v0.submitted} == {0}


def test_a_trained_version_is_named_and_scores(genesis_v0: FakeSession) -> None:
    trained = FakeSession(version(3, genesis_v0.mv.weights_int() // 2 + 1))
    classifier, v = load_classifier(trained)
    assert classifier is not None and v == 3
    summary = watch(trained, records())
    assert summary.scored_with == "iomt_ids v3" and summary.model_version == 3


def run_main(session: FakeSession, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             *extra: str) -> str:
    monkeypatch.setattr(ids_watch, "ChainSession", lambda url, key, **options: session)
    monkeypatch.setattr(ids_watch, "load_client_key", lambda key, home: session.key)
    args = build_parser().parse_args(["ids", "watch", "--rpc", "http://127.0.0.1:1", "--generate", "300",
                                      "--attack-rate", "0.5", *extra])
    assert ids_watch.main(args) == 0
    return capsys.readouterr().out


def test_the_printed_summary_says_rules_at_version_0(genesis_v0: FakeSession, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    text = run_main(genesis_v0, monkeypatch, capsys)
    assert "record(s) with rules (iomt_ids v0 is genesis's untrained start)" in text, text
    flows = generate_flows(ids_watch.with_attack_rate(ids_watch.profile_named("st-mary-icu"), 0.5), 300,
                           np.random.default_rng([0, 7919]))  # what --generate 300 --attack-rate 0.5 reads
    rules_only = by_class(Gateway(hospital="st-mary-icu", secret=b"s", classifier=None, model_version=0), flows)
    assert all(f"  {cls:<16} {n}\n" in text for cls, n in rules_only.items()), (rules_only, text)
    doc = json.loads(run_main(genesis_v0, monkeypatch, capsys, "--json"))
    assert doc["scored_with"] == "rules" and doc["model_version"] == 0


def test_the_printed_summary_names_a_trained_version(genesis_v0: FakeSession, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    trained = FakeSession(version(5, genesis_v0.mv.weights_int()))
    assert "record(s) with iomt_ids v5:" in run_main(trained, monkeypatch, capsys)
    assert json.loads(run_main(trained, monkeypatch, capsys, "--json"))["scored_with"] == "iomt_ids v5"
