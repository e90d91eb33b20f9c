"""Equivocation evidence on chain: verified against the validator set, stored once, linked from its alert."""

from __future__ import annotations

import dataclasses

import pytest

from consensus import Ed25519Signer, Evidence, Prepare
from core.crypto import PrivateKey
from core.errors import ContractRejected, InvalidInput
from core.hashing import sha256
from core.state import TxContext
from ids.alerts import SEVERITY_CRITICAL, TX_KIND, AlertPayload
from node.evidence_tx import TX_KIND as EVIDENCE_KIND
from node.evidence_tx import evidence_handler, stored_evidence
from node.kinds import build_registry
from node.misbehaviour import SelfDefence
from node.stores import Database
from node.state_store import StateStore

CHAIN = "fbci-test"
VALIDATORS = [PrivateKey(bytes([20 + i]) * 32) for i in range(4)]
VKEYS = tuple(k.public_key.raw for k in VALIDATORS)
CTX = TxContext(CHAIN, 9, 0, VKEYS[1], frozenset({"validator"}), bytes(32), "node1")


def prepare(key: PrivateKey, block_hash: bytes, chain: str = CHAIN) -> Prepare:
    unsigned = Prepare(5, 0, block_hash, key.public_key.raw, b"")
    return dataclasses.replace(unsigned, signature=Ed25519Signer(key, chain).sign(unsigned.kind,
                                                                                  unsigned.sign_bytes(chain)))


@pytest.fixture
def state(tmp_path):
    db = Database(tmp_path / "db")
    yield StateStore(db).begin()
    db.close()


def test_conflicting_votes_are_verified_stored_once_and_retrievable(state) -> None:
    handle = evidence_handler(CHAIN, VKEYS)
    a, b = prepare(VALIDATORS[0], b"\x01" * 32), prepare(VALIDATORS[0], b"\x02" * 32)
    result = handle(state, CTX, {"evidence": Evidence(a, b).encode()})
    assert result["validator"] == VKEYS[0] and result["height"] == 5
    assert stored_evidence(state, result["digest"]) == Evidence.decode(Evidence(a, b).encode())
    with pytest.raises(ContractRejected, match="already on chain"):
        handle(state, CTX, {"evidence": Evidence(b, a).encode()})  # the same pair, the other way round


@pytest.mark.parametrize("case", ["agreeing", "outsider", "other_chain", "two_senders"])
def test_what_is_not_proof_of_equivocation_is_refused(state, case) -> None:
    outsider = PrivateKey(bytes([99]) * 32)
    a = prepare(VALIDATORS[0], b"\x01" * 32)
    b = {
        "agreeing": prepare(VALIDATORS[0], b"\x01" * 32),
        "outsider": prepare(outsider, b"\x02" * 32),
        "other_chain": prepare(VALIDATORS[0], b"\x02" * 32, chain="other-chain"),
        "two_senders": prepare(VALIDATORS[1], b"\x02" * 32),
    }[case]
    if case == "outsider":
        a = prepare(outsider, b"\x01" * 32)
    with pytest.raises(InvalidInput):
        evidence_handler(CHAIN, VKEYS)(state, CTX, {"evidence": Evidence(a, b).encode()})
    assert list(state.scan(b"evidence/")) == []


def test_self_defence_puts_the_proof_on_chain_and_its_alert_points_at_it() -> None:
    proofs: list[bytes] = []
    alerts = []
    defence = SelfDefence("node1", alerts.append, clock_ms=lambda: 0, on_evidence_found=proofs.append)
    evidence = Evidence(prepare(VALIDATORS[0], b"\x01" * 32), prepare(VALIDATORS[0], b"\x02" * 32))
    defence.on_evidence(evidence)
    assert proofs == [evidence.encode()]
    assert alerts[0].alert_class == "equivocation" and alerts[0].feature_digest == sha256(evidence.encode())


def test_an_equivocation_alert_stands_only_on_evidence_convicting_its_subject(state) -> None:
    """A validator cannot put a severity-4 equivocation alert against another without the proof on chain."""
    registry = build_registry(CHAIN, VKEYS)
    post_alert, post_evidence = registry.get(TX_KIND).handler, registry.get(EVIDENCE_KIND).handler
    evidence = Evidence(prepare(VALIDATORS[0], b"\x01" * 32), prepare(VALIDATORS[0], b"\x02" * 32))
    digest = sha256(evidence.encode())

    def accusation(subject: bytes) -> dict[str, object]:
        return AlertPayload(hospital="node1", subject_kind="validator", subject=subject, alert_class="equivocation",
                            severity=SEVERITY_CRITICAL, window_start_ms=0, window_ms=60_000, count=1,
                            score_ppm=1_000_000, feature_digest=digest, model_version=0).to_payload()

    with pytest.raises(ContractRejected, match="needs the consensus.evidence"):
        post_alert(state, CTX, accusation(VKEYS[0]))  # no evidence on chain yet
    post_evidence(state, CTX, {"evidence": evidence.encode()})
    with pytest.raises(ContractRejected, match="needs the consensus.evidence"):
        post_alert(state, CTX, accusation(VKEYS[2]))  # the evidence convicts validator 0, not 2
    assert post_alert(state, CTX, accusation(VKEYS[0]))["alert_id"] == 1


def test_gov_convictions_names_each_convicted_validator_with_its_evidence(state) -> None:
    from core.api import NoParams
    from node.evidence_tx import convictions

    handle = evidence_handler(CHAIN, VKEYS)
    assert convictions(state, NoParams()) == []
    digests = {}
    for i in (2, 0):
        a, b = prepare(VALIDATORS[i], b"\x01" * 32), prepare(VALIDATORS[i], b"\x02" * 32)
        digests[VKEYS[i]] = handle(state, CTX, {"evidence": Evidence(a, b).encode()})["digest"]
    found = convictions(state, NoParams())
    assert {c.validator: c.digest for c in found} == digests
    assert all((c.height, c.view) == (5, 0) for c in found) and VKEYS[1] not in {c.validator for c in found}
