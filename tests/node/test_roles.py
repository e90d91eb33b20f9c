"""Roles: who may send each transaction kind and call each read, and the keys a hospital issues."""

from __future__ import annotations

import pytest

from consent import contract as consent
from core.crypto import PrivateKey
from core.errors import ContractRejected, Unauthorized
from core.state import MemoryState, TxContext
from core.tx import Transaction
from genesis.types import ROLES
from ids.alerts import ACK_TX_KIND
from node import accounts
from node.accounts import Account, load_account, store_account
from node.app_reads import RPC_QUERIES
from node.execution import SignatureCache, check_admission
from node.kinds import build_registry

CHAIN = "fbci-roles"
HOSPITAL, OTHER = PrivateKey(bytes([2]) * 32), PrivateKey(bytes([3]) * 32)
PROXY, CLINICIAN = PrivateKey(bytes([7]) * 32), PrivateKey(bytes([8]) * 32)
PATIENT = bytes([0xAB]) * 32
REGISTRY = build_registry(CHAIN, ())


def ctx(key: PrivateKey, roles: set[str], height: int = 1) -> TxContext:
    return TxContext(CHAIN, height, 0, key.public_key.raw, frozenset(roles), bytes(32), "x")


@pytest.fixture
def state() -> MemoryState:
    s = MemoryState()
    store_account(s, HOSPITAL.public_key.raw, Account("hospital0", frozenset({"hospital"}), 0))
    store_account(s, OTHER.public_key.raw, Account("hospital1", frozenset({"hospital"}), 0))
    return s


def test_every_kind_and_read_declares_roles_that_exist() -> None:
    senders = {role for kind in REGISTRY.kinds.values() for role in kind.roles}
    assert senders <= set(ROLES)
    assert "auditor" not in senders  # auditors only read
    # a clinician reads, and acknowledges alerts on its ward (issue 14): nothing else
    assert {k for k, kind in REGISTRY.kinds.items() if "clinician" in kind.roles} == {ACK_TX_KIND}
    proxy_kinds = {k.name for k in REGISTRY.kinds.values() if "patient_proxy" in k.roles}
    assert proxy_kinds == {consent.SET_KIND, consent.REVOKE_KIND}
    private = {q.path: q.access.roles for q in RPC_QUERIES if q.access.private}
    assert {"fl_model_get", "fl_rounds", "alerts_query", "consent_history", "consent_check"} <= set(private)
    assert all(roles and roles <= set(ROLES) for roles in private.values())
    assert "patient_proxy" in private["consent_history"] and "patient_proxy" not in private["fl_model_get"]
    assert not next(q for q in RPC_QUERIES if q.path == "block_get").access.private  # light clients read it


def test_a_hospital_issues_a_patient_proxy_that_then_writes_that_patients_consent(state: MemoryState) -> None:
    accounts.issue(state, ctx(HOSPITAL, {"hospital"}),
                   {"public_key": PROXY.public_key.raw, "name": "proxy-ab", "role": "patient_proxy", "patient": PATIENT})
    account = load_account(state, PROXY.public_key.raw)
    assert account is not None and account.roles == {"patient_proxy"}
    assert accounts.issuing_hospital(state, PROXY.public_key.raw) == HOSPITAL.public_key.raw
    assert consent.custodian(state, PATIENT) == HOSPITAL.public_key.raw
    tx = Transaction.create(PROXY, CHAIN, 1, consent.SET_KIND, {"patient": PATIENT, "decision": "permit", "purpose": "*"})
    kind = check_admission(tx, CHAIN, REGISTRY, account, SignatureCache())
    kind.handler(state, ctx(PROXY, {"patient_proxy"}, 2), tx.payload)
    assert consent.verdict(state, PATIENT, "any_model", 2).permitted
    update = Transaction.create(PROXY, CHAIN, 2, "fl.submit_update", {})
    with pytest.raises(Unauthorized, match="needs one of the roles"):
        check_admission(update, CHAIN, REGISTRY, account, SignatureCache())


@pytest.mark.parametrize(("issuer", "payload", "match"), [
    (HOSPITAL, {"role": "admin"}, "issues only"),
    (HOSPITAL, {"role": "patient_proxy"}, "required for a patient_proxy"),
    (HOSPITAL, {"role": "clinician", "patient": PATIENT}, "only for it"),
    (OTHER, {"role": "patient_proxy", "patient": PATIENT}, "another hospital's custody"),
    (HOSPITAL, {"role": "clinician", "public_key": HOSPITAL.public_key.raw}, "already registered"),
])
def test_bad_issues_are_refused_and_change_nothing(state: MemoryState, issuer: PrivateKey, payload: dict,
                                                   match: str) -> None:
    accounts.issue(state, ctx(HOSPITAL, {"hospital"}),
                   {"public_key": PROXY.public_key.raw, "name": "p", "role": "patient_proxy", "patient": PATIENT})
    before = state.snapshot()
    full = {"public_key": CLINICIAN.public_key.raw, "name": "c", **payload}
    with pytest.raises(ContractRejected, match=match):
        accounts.issue(state, ctx(issuer, {"hospital"}), full)
    assert state.snapshot() == before
