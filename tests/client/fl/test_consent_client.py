"""The hospital's consent check before training: pseudonym secret, row filtering, and a revoked
patient left out of the next round's update (the contract refuses an update that still lists them)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from client.fl import consent as client_consent
from client.fl.consent import consented_rows, load_or_create_secret, pseudonyms, record_numbers
from client.fl.hospital import ChainModel, HospitalClient
from client.fl.training import TrainConfig
from consent import contract as consent
from consent.record import Verdict
from core.errors import ContractRejected, InvalidInput
from core.state import MemoryState, TxContext
from fl_contracts import contract as fl
from fl_contracts.spec import ModelSpec

HOSPITALS = [bytes([1]) * 32, bytes([2]) * 32]


def test_the_secret_is_created_once_with_mode_0600_and_a_readable_one_is_refused(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path / "keys")
    assert len(first) == 32 and load_or_create_secret(tmp_path / "keys") == first
    path = tmp_path / "keys" / client_consent.SECRET_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    os.chmod(path, 0o644)
    with pytest.raises(InvalidInput, match="must be 0600"):
        load_or_create_secret(tmp_path / "keys")


def test_rows_are_kept_only_for_permitted_patients_asked_in_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_consent, "MAX_CHECK", 2)
    rows = [b"c" * 32, b"a" * 32, b"b" * 32, b"a" * 32, b"d" * 32]  # patient a has two records
    asked: list[list[bytes]] = []

    def check(model_id: str, height: int, page: list[bytes]) -> list[Verdict]:
        asked.append(page)
        return [Verdict(patient=p, permitted=p in (b"a" * 32, b"d" * 32),
                        reason="permit in effect" if p in (b"a" * 32, b"d" * 32) else f"revoked for train:{model_id}")
                for p in page]

    got = consented_rows(rows, "m", 7, check)
    assert asked == [[b"a" * 32, b"b" * 32], [b"c" * 32, b"d" * 32]]
    assert got.mask.tolist() == [False, True, False, True, True]
    assert got.patients == [b"a" * 32, b"d" * 32] and got.left_out == 2 and got.reasons == {"revoked": 2}


def _ctx(i: int, height: int) -> TxContext:
    return TxContext("t", height, 0, HOSPITALS[i], frozenset({"hospital"}), bytes(32), f"h{i}")


def test_after_a_revocation_the_client_leaves_the_patient_out_and_the_chain_takes_the_update() -> None:
    spec = ModelSpec.for_sequential("bc", [4, 2], frac_bits=12, min_updates=2, max_updates=2,
                                    round_length_blocks=3, max_samples=1000)
    state = MemoryState()
    fl.init_models(state, [spec], {spec.id: None}, 0)
    consent.init_policy(state, [spec.id])
    rng = np.random.default_rng(0)
    data = [(rng.normal(size=(12, 4)), rng.integers(0, 2, 12)) for _ in HOSPITALS]
    rows = [pseudonyms(record_numbers("bc", i, 12), bytes([i]) * 32) for i in range(2)]
    for i, ps in enumerate(rows):
        for p in ps:
            consent.set_consent(state, _ctx(i, 1), {"patient": p, "decision": "permit", "purpose": "*"})
    fl.end_block(state, 3)  # round 1 (opened at genesis, before any permit) fails at its deadline
    clients = [HospitalClient(spec.id, x, y, TrainConfig(local_epochs=1, lr=0.1)) for x, y in data]
    gate = consent.ChainConsent()

    def check(model_id: str, height: int, page: list[bytes]) -> list[Verdict]:
        return [consent.verdict(state, p, model_id, height) for p in page]

    def submit_all(height: int) -> list[dict]:
        """Every hospital's update in the block at ``height`` (the caller ends the block)."""
        head = fl.current_round(state, spec.id)
        model = ChainModel(spec, fl.get_model(state, spec.id), head.round, head.opened_height)
        payloads = []
        for i, client in enumerate(clients):
            payload = client.make_update(model, consented=consented_rows(rows[i], spec.id, model.snapshot_height, check))
            fl.submit_update(state, _ctx(i, height), payload, consent=gate)
            payloads.append(payload)
        return payloads

    first = submit_all(4)
    assert [len(p["patients"]) for p in first] == [12, 12]
    revoked = rows[0][5]  # withdraws in the same block: this round keeps the update, the next leaves them out
    consent.revoke_consent(state, _ctx(0, 4), {"patient": revoked, "purpose": "*"})
    fl.end_block(state, 4)
    head = fl.current_round(state, spec.id)
    stale = {**first[0], "round": head.round, "base_version": head.base_version}
    with pytest.raises(ContractRejected, match=f"patient {revoked.hex()[:16]}… revoked"):
        fl.submit_update(state, _ctx(0, 5), stale, consent=gate)  # still listing the revoked patient
    kept = consented_rows(rows[0], spec.id, head.opened_height, check)
    assert kept.left_out == 1 and revoked not in kept.patients and kept.reasons == {"revoked": 1}
    second = submit_all(5)
    fl.end_block(state, 5)
    assert len(second[0]["patients"]) == 11 and second[0]["num_samples"] == 11
    rounds = fl.round_history(state, spec.id)
    assert [p.weight for p in rounds[-2].participants] == [11, 12]
    assert [(t.round, t.revoked_patients) for t in consent.tainted_rounds(state, spec.id)] == [(2, 1)]
