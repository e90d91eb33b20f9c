"""The consent contract and the FL contract's consent check, against an in-memory state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent import contract as consent
from consent.record import pseudonym
from core.errors import ContractRejected, InvalidGenesis, NotFound
from core.state import MemoryState, TxContext
from fl_contracts import contract as fl
from fl_contracts.spec import ModelSpec

GATE = consent.ChainConsent()
SECRET = b"st-mary-pseudonym-secret-32bytes"


def key(i: int) -> bytes:
    return bytes([i]) * 32


HOSPITALS = [key(1), key(2), key(3)]
PROXY = key(9)


def ctx(sender: bytes, height: int, roles: set[str]) -> TxContext:
    return TxContext("test", height, 0, sender, frozenset(roles), bytes(32), "x")


def hospital(i: int, height: int = 1) -> TxContext:
    return ctx(HOSPITALS[i], height, {"hospital"})


def patients_of(i: int, n: int) -> list[bytes]:
    return sorted(pseudonym(f"MRN-{i}-{k}", SECRET + bytes([i])) for k in range(n))


def make_spec() -> ModelSpec:
    return ModelSpec.for_sequential("lr", [3, 2], frac_bits=8, min_updates=2, max_updates=3, round_length_blocks=5,
                                    max_abs=2.0, max_norm=3.0, max_samples=1000)


@pytest.fixture
def spec() -> ModelSpec:
    return make_spec()


@pytest.fixture
def state(spec: ModelSpec) -> MemoryState:
    s = MemoryState()
    fl.init_models(s, [spec], {spec.id: None}, 0)
    consent.init_policy(s, [spec.id])
    return s


def permit_all(state: MemoryState, i: int, patients: list[bytes], height: int, purpose: str = "train:lr") -> None:
    for p in patients:
        consent.set_consent(state, hospital(i, height), {"patient": p, "decision": "permit", "purpose": purpose})


def update(spec: ModelSpec, rnd: int, base: int, values: list[int], patients: list[bytes] | None,
           num_samples: int = 10) -> dict[str, object]:
    payload: dict[str, object] = {"model_id": spec.id, "round": rnd, "base_version": base, "num_samples": num_samples,
                                  "delta": np.asarray(values, dtype="<i4").tobytes()}
    if patients is not None:
        payload["patients"] = patients
    return payload


def submit(state: MemoryState, i: int, payload: dict[str, object], height: int) -> dict[str, object]:
    return fl.submit_update(state, hospital(i, height), payload, consent=GATE)


def open_round_at(state: MemoryState, spec: ModelSpec, height: int) -> None:
    """Close round 1 (it fails: no updates) at ``height`` so that round 2's consent snapshot is ``height``."""
    fl.end_block(state, height)
    assert fl.current_round(state, spec.id).opened_height == height


def test_revoked_patient_makes_the_next_rounds_update_fail_with_the_reason(spec: ModelSpec, state: MemoryState) -> None:
    ps = patients_of(0, 3)
    permit_all(state, 0, ps, height=2)
    permit_all(state, 1, patients_of(1, 2), height=2)
    open_round_at(state, spec, 5)  # round 2: snapshot 5 sees the permits
    consent.revoke_consent(state, hospital(0, 6), {"patient": ps[1], "purpose": "train:lr"})
    # The revocation came after round 2's snapshot: round 2 still takes the update.
    submit(state, 0, update(spec, 2, 0, [1] * 8, ps), 6)
    submit(state, 1, update(spec, 2, 0, [3] * 8, patients_of(1, 2)), 6)
    (record,) = fl.end_block(state, 10)
    assert record.status == "aggregated" and fl.current_round(state, spec.id).opened_height == 10
    before = state.snapshot()
    with pytest.raises(ContractRejected) as err:
        submit(state, 0, update(spec, 3, 1, [1] * 8, ps), 11)
    assert err.value.data["fl_reason"] == "no_consent"
    assert ps[1].hex()[:16] in err.value.message and "revoked for train:lr" in err.value.message
    assert state.snapshot() == before
    submit(state, 0, update(spec, 3, 1, [1] * 8, [ps[0], ps[2]]), 11)  # without that patient: admitted


def test_the_sample_count_attack_no_longer_moves_fedavg(spec: ModelSpec) -> None:
    """An attacker claiming 100,000 samples weighs as much as its 2 consented patients, no more."""
    finals = []
    for claimed in (2, 100_000):
        s = MemoryState()
        fl.init_models(s, [spec], {spec.id: None}, 0)
        consent.init_policy(s, ["*"])
        for i, n in enumerate([6, 4, 2]):
            permit_all(s, i, patients_of(i, n), height=1, purpose="*")
        open_round_at(s, spec, 5)
        submit(s, 0, update(spec, 2, 0, [60] * 8, patients_of(0, 6), num_samples=6), 6)
        submit(s, 1, update(spec, 2, 0, [30] * 8, patients_of(1, 4), num_samples=4), 6)
        submit(s, 2, update(spec, 2, 0, [-90] * 8, patients_of(2, 2), num_samples=claimed), 6)
        (record,) = fl.end_block(s, 6)
        assert [p.weight for p in record.participants] == [6, 4, 2]
        assert record.participants[2].num_samples == claimed and record.participants[2].patients == 2
        finals.append(fl.get_model(s, spec.id).weights_int().tolist())
    assert finals[0] == finals[1] == [(6 * 60 + 4 * 30 - 2 * 90) // 12] * 8


@pytest.mark.parametrize(("patients", "why"), [
    (None, "requires consent"),
    ("unsorted", "strictly ascending"),
    ("duplicate", "strictly ascending"),
    ("other_hospital", "not in this hospital's custody"),
    ("unknown", "no permit for train:lr"),
])
def test_updates_without_valid_consented_patients_are_refused(spec: ModelSpec, state: MemoryState,
                                                              patients: str | None, why: str) -> None:
    mine, theirs = patients_of(0, 3), patients_of(1, 1)
    permit_all(state, 0, mine, height=1)
    permit_all(state, 1, theirs, height=1)
    open_round_at(state, spec, 5)
    listed = {None: None, "unsorted": mine[::-1], "duplicate": [mine[0], mine[0]],
              "other_hospital": sorted(mine + theirs), "unknown": sorted(mine + patients_of(7, 1))}[patients]
    before = state.snapshot()
    with pytest.raises(ContractRejected, match=why):
        submit(state, 0, update(spec, 2, 0, [1] * 8, listed), 6)
    assert state.snapshot() == before


def test_a_deny_outweighs_a_permit_and_periods_bound_a_permit(spec: ModelSpec, state: MemoryState) -> None:
    (p,) = patients_of(0, 1)
    consent.set_consent(state, hospital(0, 1), {"patient": p, "decision": "permit", "purpose": "*",
                                                "period_start": 1, "period_end": 20})
    assert consent.verdict(state, p, "lr", 10).permitted
    assert not consent.verdict(state, p, "lr", 21).permitted
    assert not consent.verdict(state, p, "lr", 0).permitted  # before the grant's block
    consent.set_consent(state, hospital(0, 12), {"patient": p, "decision": "deny", "purpose": "train:lr"})
    assert consent.verdict(state, p, "lr", 11).permitted and not consent.verdict(state, p, "lr", 12).permitted
    assert consent.verdict(state, p, "other", 12).permitted  # the deny names one model only


def test_who_may_write_a_patients_consent(state: MemoryState) -> None:
    p, q = patients_of(0, 2)
    consent.bind_proxy(state, PROXY, p, HOSPITALS[0])
    proxy = ctx(PROXY, 3, {"patient_proxy"})
    assert consent.set_consent(state, proxy, {"patient": p, "decision": "permit", "purpose": "*"})["seq"] == 0
    refusals = [
        (proxy, q, "not_your_patient"),                                     # a proxy for another patient
        (hospital(1, 3), p, "not_custodian"),                               # another hospital
        (ctx(key(5), 3, {"clinician"}), p, "unauthorized"),                 # a clinician
        (ctx(key(6), 3, {"patient_proxy"}), p, "unauthorized"),             # a proxy key no hospital issued
    ]
    for who, patient, why in refusals:
        before = state.snapshot()
        with pytest.raises(ContractRejected) as err:
            consent.set_consent(state, who, {"patient": patient, "decision": "permit", "purpose": "*"})
        assert err.value.data["consent_reason"] == why and state.snapshot() == before
    with pytest.raises(ContractRejected) as err:
        consent.bind_proxy(state, key(7), p, HOSPITALS[1])
    assert err.value.data["consent_reason"] == "not_custodian"
    with pytest.raises(ContractRejected, match="no consent record"):
        consent.revoke_consent(state, proxy, {"patient": p, "purpose": "train:lr"})
    with pytest.raises(ContractRejected, match="purpose"):
        consent.set_consent(state, proxy, {"patient": p, "decision": "permit", "purpose": "read:everything"})


def test_revocation_marks_the_rounds_that_used_the_patient_and_the_history_keeps_everything(
        spec: ModelSpec, state: MemoryState) -> None:
    ps = patients_of(0, 2)
    permit_all(state, 0, ps, height=1)
    permit_all(state, 1, patients_of(1, 2), height=1)
    open_round_at(state, spec, 5)
    submit(state, 0, update(spec, 2, 0, [1] * 8, ps), 6)
    submit(state, 1, update(spec, 2, 0, [1] * 8, patients_of(1, 2)), 6)
    fl.end_block(state, 7)
    assert consent.tainted_rounds(state, spec.id) == []
    consent.revoke_consent(state, hospital(0, 8), {"patient": ps[0], "purpose": "train:lr"})
    (tainted,) = consent.tainted_rounds(state, spec.id)
    assert (tainted.round, tainted.base_version, tainted.revoked_patients, tainted.first_withdrawn_height) == (2, 0, 1, 8)
    events = consent.history(state, ps[0])
    assert [(e.action, e.height) for e in events] == [("set", 1), ("revoke", 8)] and events[0].record is not None
    assert [(u.model_id, u.round, u.hospital) for u in consent.uses(state, ps[0])] == [("lr", 2, HOSPITALS[0])]


EVENTS = st.lists(st.tuples(st.integers(1, 30), st.sampled_from(["permit", "deny", "revoke"]),
                            st.sampled_from(["*", "train:lr", "train:other"])), max_size=12)


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.integers(0, 35))
def test_verdict_matches_a_plain_replay_and_never_changes_after_its_height(events: list, snapshot: int) -> None:
    """The snapshot rule: what is decided at height S depends only on events of height <= S."""
    (p,) = patients_of(0, 1)
    state = MemoryState()
    current: dict[str, str] = {}
    reference: dict[str, str] = {}  # what is in effect at the snapshot
    answered_at_snapshot = None
    for height, action, purpose in sorted(events, key=lambda e: e[0]):
        if answered_at_snapshot is None and height > snapshot:
            answered_at_snapshot = consent.verdict(state, p, "lr", snapshot).permitted
        try:
            if action == "revoke":
                consent.revoke_consent(state, hospital(0, height), {"patient": p, "purpose": purpose})
            else:
                consent.set_consent(state, hospital(0, height), {"patient": p, "decision": action, "purpose": purpose})
        except ContractRejected:
            assert action == "revoke" and purpose not in current
            continue
        if action == "revoke":
            current.pop(purpose)
        else:
            current[purpose] = action
        if height <= snapshot:
            reference = dict(current)
    relevant = {reference.get("*"), reference.get("train:lr")}
    expected = "deny" not in relevant and "permit" in relevant
    assert consent.verdict(state, p, "lr", snapshot).permitted == expected
    if answered_at_snapshot is not None:
        assert answered_at_snapshot == expected


def test_a_round_open_at_the_revocation_still_counts_the_patient_and_is_marked(spec: ModelSpec,
                                                                              state: MemoryState) -> None:
    ps = patients_of(0, 2)
    permit_all(state, 0, ps, height=1)
    permit_all(state, 1, patients_of(1, 1), height=1)
    open_round_at(state, spec, 5)
    consent.revoke_consent(state, hospital(0, 6), {"patient": ps[0], "purpose": "train:lr"})
    submit(state, 0, update(spec, 2, 0, [1] * 8, ps), 7)  # snapshot 5 is before the revocation at 6
    (tainted,) = consent.tainted_rounds(state, spec.id)
    assert (tainted.round, tainted.revoked_patients, tainted.first_withdrawn_height) == (2, 1, 6)
    held = fl.pending_update(state, spec.id, HOSPITALS[0])
    assert (held.round, held.weight, held.patients, held.num_samples) == (2, 2, 2, 10)
    with pytest.raises(NotFound):
        fl.pending_update(state, spec.id, HOSPITALS[1])


def _aggregate_with_claims(spec: ModelSpec, claims: list[int], sizes: list[int]) -> list[int]:
    s = MemoryState()
    fl.init_models(s, [spec], {spec.id: None}, 0)
    consent.init_policy(s, ["*"])
    for i, n in enumerate(sizes):
        permit_all(s, i, patients_of(i, n), height=1, purpose="*")
    open_round_at(s, spec, 5)
    for i, (claim, n) in enumerate(zip(claims, sizes)):
        submit(s, i, update(spec, 2, 0, [(-1) ** i * 20 * (i + 1)] * 8, patients_of(i, n), num_samples=claim), 6)
    (record,) = fl.end_block(s, 6)
    assert [p.weight for p in record.participants] == sizes
    return fl.get_model(s, spec.id).weights_int().tolist()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 2**53), min_size=3, max_size=3), st.lists(st.integers(1, 5), min_size=3, max_size=3))
def test_no_claimed_sample_count_moves_the_aggregate(claims: list[int], sizes: list[int]) -> None:
    """Whatever each hospital claims, FedAvg weighs it by its consented patients only."""
    spec = make_spec()
    assert _aggregate_with_claims(spec, claims, sizes) == _aggregate_with_claims(spec, sizes, sizes)


def test_genesis_refuses_a_secure_model_that_requires_consent(tmp_path: Path) -> None:
    """A secure round's masked inputs carry no patient list, so the chain could not check consent for it."""
    from devnet.catalog import default_app_state
    from genesis.create import init_network
    from genesis.schema import load_genesis
    from genesis.home import HomePaths
    from node.kinds import genesis_hooks

    plain = load_genesis(HomePaths(init_network(1, tmp_path / "plain").homes[0]).genesis)
    genesis_hooks(plain)  # the catalog's secure model requires no consent: accepted
    required = {**default_app_state(1), "consent": {"required_for": ["breast_cancer_secure"]}}
    net = init_network(1, tmp_path / "net", app_state=required)
    with pytest.raises(InvalidGenesis, match="breast_cancer_secure.*secure and require consent"):
        genesis_hooks(load_genesis(HomePaths(net.homes[0]).genesis))
