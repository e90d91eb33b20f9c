"""Governance and key rotation through the in-process ledger: mempool, executor, stores and queries as a
validator runs them (``node.kinds.build_registry``, the genesis hooks' governance section)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.api import ACCOUNT, AccountGetParams, NoParams
from core.block import Block
from core.crypto import PrivateKey
from core.errors import ContractRejected, GovernanceRequired, KeyRotated, NotAMember, ProposalClosed
from core.hashing import sha256
from core.keyhistory import KEY_HISTORY, KeyHistoryParams
from core.readauth import CUSTODIAN_PATH, READER_PATH, CustodianParams, ReaderParams
from core.tx import Transaction
from governance.config import GovernanceConfig
from governance.contract import approval_bytes, init_governance
from governance.queries import GOV_CONVICTIONS, GOV_INFO, GOV_PROPOSAL, GOV_PROPOSALS, ProposalParams, ProposalsParams
from node.app import LedgerApplication
from node.kinds import build_registry
from node.ledger import Ledger
from node.stores import Database
from tests.node.helpers import CHAIN, GENESIS_TIME_MS, HOSPITAL, PARAMS, VKEYS, certify

MEMBERS = [PrivateKey(bytes([60 + i]) * 32) for i in range(4)]
NEWCOMER, NEW_KEY, LOST = PrivateKey(bytes([70]) * 32), PrivateKey(bytes([71]) * 32), PrivateKey(bytes([72]) * 32)
ACCOUNTS = [*((m.public_key.raw, f"admin{i}", ["admin"]) for i, m in enumerate(MEMBERS)),
            (HOSPITAL.public_key.raw, "h", ["hospital"]), (VKEYS[0], "node0", ["validator"])]


def open_chain(path: Path, governed: bool) -> Ledger:
    app = LedgerApplication(CHAIN, VKEYS, PARAMS, Database(path), build_registry(CHAIN, VKEYS),
                            genesis_time_ms=GENESIS_TIME_MS)
    config = GovernanceConfig(members=tuple(sorted(m.public_key.raw for m in MEMBERS)), required=3)
    app.init_genesis(ACCOUNTS, [lambda state: init_governance(state, config if governed else None)])
    return Ledger.assemble(app, PARAMS)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Ledger]:
    ledger = open_chain(tmp_path / "gov", governed=True)
    yield ledger
    ledger.app.database.close()


class Senders:
    """Each key's next nonce, read from the chain, as a client session does."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def tx(self, key: PrivateKey, kind: str, payload: dict[str, Any]) -> bytes:
        state = self.ledger.app.query(ACCOUNT.path, AccountGetParams(public_key=key.public_key.raw))
        nonce = state.nonce + 1 if state is not None else 1
        return Transaction.create(key, CHAIN, nonce, kind, payload).encode()


def commit(ledger: Ledger, *raws: bytes) -> list[Any]:
    for raw in raws:
        ledger.mempool.add(raw)
    block = ledger.propose(VKEYS[0], ledger.app.info().last_block_time_ms + 1000)
    ledger.app.process_proposal(Block.decode(block.encode(), max_size=1 << 20), None)
    receipts = ledger.blocks.commit(block, certify(block)).receipts
    return [receipts[sha256(raw)] for raw in block.txs]


def register_newcomer(n: int = 0) -> dict[str, Any]:
    return {"action": "register", "params": {"public_key": NEWCOMER.public_key.raw, "name": f"st-marys{n}",
                                             "roles": ["hospital"]}}


def test_one_admin_alone_is_refused_and_pointed_at_gov_propose(chain: Ledger) -> None:
    raw = Senders(chain).tx(MEMBERS[0], "acl.register", register_newcomer()["params"])
    with pytest.raises(GovernanceRequired, match="fbci gov propose register"):
        chain.mempool.add(raw)
    assert len(chain.mempool) == 0


def test_a_hospital_is_registered_by_three_of_four_members_and_then_transacts(chain: Ledger) -> None:
    s = Senders(chain)
    (r,) = commit(chain, s.tx(MEMBERS[0], "gov.propose", register_newcomer()))
    assert r.ok and r.result == {"id": 1, "approvals": 1, "required": 3}
    (r,) = commit(chain, s.tx(MEMBERS[1], "gov.approve", {"id": 1}))
    assert r.ok and "executed" not in r.result
    view = chain.app.query(GOV_PROPOSAL.path, ProposalParams(id=1))
    assert view.approved == 2 and set(view.missing) == {MEMBERS[2].public_key.raw, MEMBERS[3].public_key.raw}
    echo = Transaction.create(NEWCOMER, CHAIN, 1, "test.echo", {"msg": b"x"}).encode()
    with pytest.raises(Exception, match="not a registered account"):
        chain.mempool.add(echo)
    (r,) = commit(chain, s.tx(MEMBERS[2], "gov.approve", {"id": 1}))
    assert r.ok and r.result["executed"] == "register"
    (r,) = commit(chain, echo)
    assert r.ok
    listed = chain.app.query(GOV_PROPOSALS.path, ProposalsParams(status="executed"))
    assert [v.proposal.id for v in listed] == [1] and listed[0].proposal.outcome == {"registered": "st-marys0"}
    info = chain.app.query(GOV_INFO.path, NoParams())
    assert info.required == 3 and len(info.members) == 4


def test_one_transaction_carries_the_other_members_signatures(chain: Ledger) -> None:
    s = Senders(chain)
    commit(chain, s.tx(MEMBERS[0], "gov.propose", register_newcomer()))
    digest = chain.app.query(GOV_PROPOSAL.path, ProposalParams(id=1)).proposal.digest
    cosigs = [{"member": m.public_key.raw, "signature": m.sign_signed(approval_bytes(CHAIN, 1, digest))}
              for m in MEMBERS[2:4]]
    (r,) = commit(chain, s.tx(MEMBERS[1], "gov.approve", {"id": 1, "cosignatures": cosigs}))
    assert r.ok and r.result["approvals"] == 4 and r.result["executed"] == "register"


def test_a_non_member_admin_and_a_hospital_cannot_vote(chain: Ledger) -> None:
    s = Senders(chain)
    commit(chain, s.tx(MEMBERS[0], "gov.propose", register_newcomer()))
    with pytest.raises(Exception, match="needs one of the roles"):
        chain.mempool.add(s.tx(HOSPITAL, "gov.approve", {"id": 1}))


def test_an_unapproved_proposal_expires_and_is_listed_so(chain: Ledger) -> None:
    s = Senders(chain)
    commit(chain, s.tx(MEMBERS[0], "gov.propose", {**register_newcomer(), "expires_in": 2}))  # height 1
    commit(chain)
    assert chain.app.query(GOV_PROPOSAL.path, ProposalParams(id=1)).proposal.status == "open"
    commit(chain)  # height 3: the last that could approve it; its end closes the proposal
    assert chain.app.query(GOV_PROPOSAL.path, ProposalParams(id=1)).proposal.status == "expired"
    with pytest.raises(ProposalClosed, match="proposal 1 expired at height 3"):
        chain.mempool.add(s.tx(MEMBERS[1], "gov.approve", {"id": 1}))


def test_without_governance_one_admin_still_registers(tmp_path: Path) -> None:
    ledger = open_chain(tmp_path / "plain", governed=False)
    (r,) = commit(ledger, Senders(ledger).tx(MEMBERS[0], "acl.register", register_newcomer()["params"]))
    assert r.ok
    with pytest.raises(ContractRejected, match="declares no governance"):
        ledger.mempool.add(Senders(ledger).tx(MEMBERS[0], "gov.propose", register_newcomer()))
    ledger.app.database.close()


def test_a_rotated_key_is_refused_from_the_next_block_and_the_new_key_carries_on(chain: Ledger) -> None:
    s = Senders(chain)
    (r,) = commit(chain, s.tx(HOSPITAL, "acl.rotate", {"new_public_key": NEW_KEY.public_key.raw}))
    assert r.ok and r.result["rotated"] == "h"
    height = chain.app.info().height
    old = Transaction.create(HOSPITAL, CHAIN, 2, "test.echo", {"msg": b"x"}).encode()
    with pytest.raises(KeyRotated, match=f"rotated to {NEW_KEY.public_key.raw.hex()} at height {height}"):
        chain.mempool.add(old)
    moved = chain.app.query(ACCOUNT.path, AccountGetParams(public_key=NEW_KEY.public_key.raw))
    assert moved.name == "h" and moved.roles == ("hospital",) and moved.nonce == 1
    assert chain.app.query(ACCOUNT.path, AccountGetParams(public_key=HOSPITAL.public_key.raw)) is None
    (r,) = commit(chain, s.tx(NEW_KEY, "test.echo", {"msg": b"y"}))
    assert r.ok
    history = chain.app.query(KEY_HISTORY.path, KeyHistoryParams(public_key=HOSPITAL.public_key.raw))
    assert [(c.old, c.new, c.height) for c in history] == [(HOSPITAL.public_key.raw, NEW_KEY.public_key.raw, height)]
    assert chain.app.query(KEY_HISTORY.path, KeyHistoryParams(public_key=NEW_KEY.public_key.raw)) == history
    reader = chain.app.query(READER_PATH, ReaderParams(public_key=HOSPITAL.public_key.raw))
    assert reader.name == "h" and reader.roles == frozenset()  # the read guard refuses it as revoked


def test_rotation_refuses_a_validator_a_taken_key_and_a_retired_key(chain: Ledger) -> None:
    s = Senders(chain)
    with pytest.raises(ContractRejected, match="already registered"):
        chain.mempool.add(s.tx(HOSPITAL, "acl.rotate", {"new_public_key": MEMBERS[0].public_key.raw}))
    commit(chain, s.tx(HOSPITAL, "acl.rotate", {"new_public_key": NEW_KEY.public_key.raw}))
    with pytest.raises(ContractRejected, match="never reused"):
        chain.mempool.add(s.tx(NEW_KEY, "acl.rotate", {"new_public_key": HOSPITAL.public_key.raw}))
    with pytest.raises(Exception, match="needs one of the roles"):
        chain.mempool.add(Transaction.create(PrivateKey(bytes([10]) * 32), CHAIN, 1, "acl.rotate",
                                             {"new_public_key": LOST.public_key.raw}).encode())


def test_a_member_that_lost_its_key_is_rotated_by_governance_and_votes_with_the_new_one(chain: Ledger) -> None:
    s = Senders(chain)
    rotate = {"action": "rotate", "params": {"public_key": MEMBERS[3].public_key.raw,
                                             "new_public_key": LOST.public_key.raw}}
    commit(chain, s.tx(MEMBERS[0], "gov.propose", rotate))
    commit(chain, s.tx(MEMBERS[1], "gov.approve", {"id": 1}))
    (r,) = commit(chain, s.tx(MEMBERS[2], "gov.approve", {"id": 1}))
    assert r.ok and r.result["executed"] == "rotate"
    info = chain.app.query(GOV_INFO.path, NoParams())
    assert LOST.public_key.raw in info.members and MEMBERS[3].public_key.raw not in info.members
    commit(chain, s.tx(MEMBERS[0], "gov.propose", register_newcomer()))
    with pytest.raises(KeyRotated):
        chain.mempool.add(s.tx(MEMBERS[3], "gov.approve", {"id": 2}))
    (r,) = commit(chain, s.tx(LOST, "gov.approve", {"id": 2}))
    assert r.ok and r.result["approvals"] == 2
    assert chain.app.query(GOV_CONVICTIONS.path, NoParams()) == []


def test_a_proposal_that_names_a_non_member_sender_is_refused(chain: Ledger, tmp_path: Path) -> None:
    s = Senders(chain)
    commit(chain, s.tx(MEMBERS[0], "gov.propose", {"action": "register", "params": {
        "public_key": NEWCOMER.public_key.raw, "name": "extra-admin", "roles": ["admin"]}}))
    for m in MEMBERS[1:3]:
        commit(chain, s.tx(m, "gov.approve", {"id": 1}))
    with pytest.raises(NotAMember):  # an admin the quorum added is not a member: members come from genesis
        chain.mempool.add(s.tx(NEWCOMER, "gov.propose", register_newcomer(1)))


def approved_by_three(chain: Ledger, proposal: dict[str, Any]) -> Any:
    """Propose with member 0 and approve with members 1 and 2; the last receipt."""
    s = Senders(chain)
    (r,) = commit(chain, s.tx(MEMBERS[0], "gov.propose", proposal))
    assert r.ok, r.message
    for m in MEMBERS[1:3]:
        (r,) = commit(chain, s.tx(m, "gov.approve", {"id": r.result["id"]}))
    return r


def test_grant_revoke_and_add_model_run_as_decisions(chain: Ledger) -> None:
    from fl_contracts.queries import FL_MODELS
    from fl_contracts.spec import ModelSpec

    key = HOSPITAL.public_key.raw
    r = approved_by_three(chain, {"action": "grant", "params": {"public_key": key, "role": "gateway"}})
    assert r.ok and r.result["executed"] == "grant"
    assert chain.app.query(ACCOUNT.path, AccountGetParams(public_key=key)).roles == ("gateway", "hospital")
    r = approved_by_three(chain, {"action": "revoke", "params": {"public_key": key, "role": "gateway"}})
    assert r.ok and chain.app.query(ACCOUNT.path, AccountGetParams(public_key=key)).roles == ("hospital",)
    spec = ModelSpec.for_sequential("gov_model", [4, 2], rule="fedavg", min_updates=1, max_updates=2,
                                    round_length_blocks=5, max_abs=4.0, max_norm=8.0)
    r = approved_by_three(chain, {"action": "add_model", "params": spec.to_doc()})
    assert r.ok and r.result["executed"] == "add_model"
    assert [m.spec.id for m in chain.app.query(FL_MODELS.path, NoParams())] == ["gov_model"]
    with pytest.raises(Exception, match="model broken"):
        chain.mempool.add(Senders(chain).tx(MEMBERS[0], "gov.propose", {"action": "add_model",
                                                                          "params": {"id": "broken"}}))


def test_an_issued_clinician_follows_its_hospitals_rotation_and_a_proxy_keeps_its_patient(chain: Ledger) -> None:
    from consent import contract as consent

    s = Senders(chain)
    clinician, proxy, new_proxy = (PrivateKey(bytes([b]) * 32) for b in (80, 81, 82))
    patient = bytes([0xCD]) * 32
    commit(chain, s.tx(HOSPITAL, "acl.issue", {"public_key": clinician.public_key.raw, "name": "dr-a",
                                                "role": "clinician"}))
    commit(chain, s.tx(HOSPITAL, "acl.issue", {"public_key": proxy.public_key.raw, "name": "proxy-cd",
                                                "role": "patient_proxy", "patient": patient}))
    commit(chain, s.tx(HOSPITAL, "acl.rotate", {"new_public_key": NEW_KEY.public_key.raw}))
    reader = chain.app.query(READER_PATH, ReaderParams(public_key=clinician.public_key.raw))
    assert reader.hospital == NEW_KEY.public_key.raw and reader.hospital_name == "h"
    r = approved_by_three(chain, {"action": "rotate", "params": {"public_key": proxy.public_key.raw,
                                                                 "new_public_key": new_proxy.public_key.raw}})
    assert r.ok
    reader = chain.app.query(READER_PATH, ReaderParams(public_key=new_proxy.public_key.raw))
    assert reader.patient == patient and reader.roles == frozenset({"patient_proxy"})
    assert consent.proxy_binding(chain.app.state, new_proxy.public_key.raw) == (patient, NEW_KEY.public_key.raw)
    assert consent.custodian(chain.app.state, patient) == NEW_KEY.public_key.raw  # the hospital kept its patient
    # what the read guard asks before a clinician scores this patient: the same custodian, through the app
    assert chain.app.query(CUSTODIAN_PATH, CustodianParams(patient=patient)) == NEW_KEY.public_key.raw
    assert chain.app.query(CUSTODIAN_PATH, CustodianParams(patient=bytes(32))) is None
    (r,) = commit(chain, s.tx(NEW_KEY, consent.SET_KIND, {"patient": patient, "decision": "permit", "purpose": "*"}))
    assert r.ok, r.message
    (r,) = commit(chain, s.tx(new_proxy, consent.SET_KIND, {"patient": patient, "decision": "deny", "purpose": "*"}))
    assert r.ok, r.message


def test_the_old_keys_transaction_behind_its_rotation_in_one_block_fails_and_revives_nothing(chain: Ledger) -> None:
    s = Senders(chain)
    rotate = s.tx(HOSPITAL, "acl.rotate", {"new_public_key": NEW_KEY.public_key.raw})
    behind = Transaction.create(HOSPITAL, CHAIN, 2, "test.echo", {"msg": b"late"}).encode()
    r1, r2 = commit(chain, rotate, behind)
    assert r1.ok and not r2.ok and r2.reason == "key_rotated"
    assert chain.app.query(ACCOUNT.path, AccountGetParams(public_key=HOSPITAL.public_key.raw)) is None
    assert len(chain.mempool) == 0
    (r,) = commit(chain, s.tx(NEW_KEY, "test.echo", {"msg": b"on"}))
    assert r.ok and r.height == chain.app.info().height


def test_an_approval_bound_to_another_digest_is_refused(chain: Ledger) -> None:
    from core.errors import BadApproval

    s = Senders(chain)
    commit(chain, s.tx(MEMBERS[0], "gov.propose", register_newcomer()))
    with pytest.raises(BadApproval, match="another action than the one approved"):
        chain.mempool.add(s.tx(MEMBERS[1], "gov.approve", {"id": 1, "digest": bytes(32)}))
    digest = chain.app.query(GOV_PROPOSAL.path, ProposalParams(id=1)).proposal.digest
    (r,) = commit(chain, s.tx(MEMBERS[1], "gov.approve", {"id": 1, "digest": digest}))
    assert r.ok and r.result["approvals"] == 2


def test_a_proposal_and_a_key_history_are_proven_and_a_changed_one_refused(chain: Ledger) -> None:
    from client.light import PROVABLE
    from client.light_verify import GenesisValidators, HeaderVerifier, verify_answer
    from core.errors import UnverifiedAnswer
    from core.proofs import ProvenAnswer
    from core.wire import from_wire, to_wire

    s = Senders(chain)
    commit(chain, s.tx(MEMBERS[0], "gov.propose", register_newcomer()))
    commit(chain, s.tx(HOSPITAL, "acl.rotate", {"new_public_key": NEW_KEY.public_key.raw}))
    commit(chain)
    headers = HeaderVerifier(CHAIN, GenesisValidators(VKEYS))
    for query, params in ((GOV_PROPOSAL, ProposalParams(id=1)),
                          (KEY_HISTORY, KeyHistoryParams(public_key=HOSPITAL.public_key.raw))):
        answer = from_wire(ProvenAnswer, to_wire(chain.app.query(query.path, params, prove=True)))
        assert verify_answer(answer, query.path, PROVABLE[query.path], params, headers) == \
            chain.app.query(query.path, params)
    answer = from_wire(ProvenAnswer, to_wire(chain.app.query(GOV_PROPOSAL.path, ProposalParams(id=1), prove=True)))
    lie = dataclasses.replace(answer, result={**answer.result, "missing": []})  # "everyone approved already"
    with pytest.raises(UnverifiedAnswer):
        verify_answer(lie, GOV_PROPOSAL.path, PROVABLE[GOV_PROPOSAL.path], ProposalParams(id=1), headers)


def test_a_hospital_with_an_update_in_an_open_round_rotates_only_after_it_closes(chain: Ledger) -> None:
    import numpy as np

    from fl_contracts.spec import ModelSpec

    spec = ModelSpec.for_sequential("gov_model", [4, 2], rule="fedavg", min_updates=2, max_updates=2,
                                    round_length_blocks=3, max_abs=4.0, max_norm=8.0)
    approved_by_three(chain, {"action": "add_model", "params": spec.to_doc()})
    s = Senders(chain)
    update = {"model_id": spec.id, "round": 1, "base_version": 0, "num_samples": 10,
              "delta": np.zeros(spec.num_params, dtype="<i4").tobytes()}
    (r,) = commit(chain, s.tx(HOSPITAL, "fl.submit_update", update))
    assert r.ok, r.message
    with pytest.raises(ContractRejected, match="gov_model round 1, which is still open"):
        chain.mempool.add(s.tx(HOSPITAL, "acl.rotate", {"new_public_key": NEW_KEY.public_key.raw}))
    for _ in range(3):  # the round's deadline passes and it closes (failed: one update of the two it needs)
        commit(chain)
    (r,) = commit(chain, s.tx(HOSPITAL, "acl.rotate", {"new_public_key": NEW_KEY.public_key.raw}))
    assert r.ok, r.message


def test_a_rotation_carries_the_quota_windows_usage_to_the_new_key(chain: Ledger) -> None:
    s = Senders(chain)
    commit(chain, s.tx(HOSPITAL, "test.echo", {"msg": b"x" * 500}))
    state, height = chain.app.state, chain.app.info().height + 1
    before = chain.app.quota.used(state, HOSPITAL.public_key.raw, height)
    commit(chain, s.tx(HOSPITAL, "acl.rotate", {"new_public_key": NEW_KEY.public_key.raw}))
    assert before > 500 and chain.app.quota.used(state, NEW_KEY.public_key.raw, height + 1) == before
