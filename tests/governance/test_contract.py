"""The quorum rule of ``governance/``, over a dict-backed state and a recording action.

Hypothesis draws members, thresholds and sequences of approvals (members, repeats,
strangers, co-signatures good and forged); the action must run exactly when the
distinct members' approvals first reach the threshold, and never after expiry.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.crypto import PrivateKey
from core.errors import (
    BadApproval, ContractRejected, FbciError, InvalidGenesis, InvalidInput, NotAMember, NotFound, ProposalClosed,
)
from core.accounts import Account, store_account
from core.state import MemoryState, StateView, TxContext
from governance.config import GovernanceConfig, governance_config, required_approvals
from governance.contract import Action, Governance, approval_bytes, get_proposal, init_governance, load_config

CHAIN = "fbci-gov"
KEYS = [PrivateKey(bytes([40 + i]) * 32) for i in range(8)]
STRANGERS = [PrivateKey(bytes([90 + i]) * 32) for i in range(3)]


class Recorder:
    """An action that writes one key and remembers every run (the contract must run it once)."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []

    def check(self, params: dict[str, Any]) -> None:
        if not isinstance(params.get("n"), int):
            raise InvalidInput("payload.params.n: must be an integer")

    def execute(self, state: StateView, ctx: TxContext, params: dict[str, Any]) -> dict[str, Any]:
        if params["n"] < 0:
            raise ContractRejected("n is negative")
        self.runs.append(params)
        state.set(b"done", b"1")
        return {"n": params["n"]}


def ctx(key: PrivateKey, height: int) -> TxContext:
    return TxContext(CHAIN, height, 0, key.public_key.raw, frozenset({"admin"}), bytes(32), "admin")


def setup(members: int, required: int) -> tuple[MemoryState, Governance, Recorder]:
    state, recorder = MemoryState(), Recorder()
    init_governance(state, GovernanceConfig(members=tuple(sorted(k.public_key.raw for k in KEYS[:members])),
                                            required=required))
    for i, key in enumerate([*KEYS, *STRANGERS]):  # strangers are admins too, only not members
        store_account(state, key.public_key.raw, Account(f"admin{i}", frozenset({"admin"}), 0))
    return state, Governance({"record": Action(recorder.check, recorder.execute)}), recorder


def attempt(state: MemoryState, fn: Any, *args: Any) -> dict[str, Any] | FbciError:
    """A transaction as the node runs it: a refusal leaves state as it was."""
    before = state.snapshot()
    try:
        return fn(state, *args)
    except FbciError as exc:
        state.restore(before)
        return exc


def cosign(key: PrivateKey, proposal_id: int, state: MemoryState, chain: str = CHAIN) -> dict[str, bytes]:
    digest = get_proposal(state, proposal_id).digest
    return {"member": key.public_key.raw, "signature": key.sign_signed(approval_bytes(chain, proposal_id, digest))}


@given(n=st.integers(1, 300), num=st.integers(0, 20), extra=st.integers(1, 20))
def test_required_approvals_is_the_least_count_strictly_above_the_fraction(n: int, num: int, extra: int) -> None:
    den = num + extra
    k = required_approvals(n, num, den)
    assert k * den > n * num and (k - 1) * den <= n * num
    assert 1 <= k <= n


def test_default_threshold_is_more_than_two_thirds() -> None:
    assert [required_approvals(n, 2, 3) for n in (1, 3, 4, 6, 7, 10)] == [1, 3, 3, 5, 5, 7]
    admins = {f"admin{i}": k.public_key.raw for i, k in enumerate(KEYS[:4])}
    config = governance_config({"governance": {"members": sorted(admins)}}, admins)
    assert config is not None and config.required == 3 and set(config.members) == set(admins.values())
    by_key = governance_config({"governance": {"members": [KEYS[0].public_key.hex()], "threshold": 1}}, admins)
    assert by_key is not None and by_key.members == (KEYS[0].public_key.raw,) and by_key.required == 1
    assert governance_config({}, admins) is None


@pytest.mark.parametrize(("section", "match"), [
    ({"members": []}, "members"),
    ({"members": ["admin0", "nobody"]}, r"members\[1\].*not the name or public key"),
    ({"members": ["admin0", "admin0"]}, "listed twice"),
    ({"members": ["admin0"], "threshold": 2}, "exceeds the 1 members"),
    ({"members": ["admin0"], "threshold_num": 3, "threshold_den": 3}, "less than threshold_den"),
    ({"members": ["admin0"], "threshold_num": 1}, "go together"),
    ({"members": ["admin0"], "threshold": 1, "threshold_num": 1, "threshold_den": 2}, "not both"),
    ({"members": ["admin0"], "quorum": 1}, "quorum"),
])
def test_a_bad_governance_section_is_refused_naming_the_field(section: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidGenesis, match=match):
        governance_config({"governance": section}, {"admin0": KEYS[0].public_key.raw})


step = st.tuples(st.sampled_from(["member", "stranger", "cosign", "forged"]), st.integers(0, 7))


@settings(max_examples=150, deadline=None)
@given(members=st.integers(1, 8), data=st.data(), steps=st.lists(step, max_size=14))
def test_the_action_runs_once_exactly_when_distinct_members_reach_the_threshold(
        members: int, data: st.DataObject, steps: list[tuple[str, int]]) -> None:
    required = data.draw(st.integers(1, members))
    state, governance, recorder = setup(members, required)
    proposed = governance.propose(state, ctx(KEYS[0], 1), {"action": "record", "params": {"n": 7}, "expires_in": 50})
    approved = {KEYS[0].public_key.raw}
    for what, i in steps:
        key, closed = KEYS[i % members], len(approved) >= required
        if what == "stranger":
            out = attempt(state, governance.approve, ctx(STRANGERS[i % 3], 2), {"id": 1})
            assert isinstance(out, NotAMember)
        elif what == "member":
            out = attempt(state, governance.approve, ctx(key, 2), {"id": 1})
            if isinstance(out, dict):
                approved.add(key.public_key.raw)
        else:  # the proposer relays another member's co-signature; a forged one signs another proposal id
            other = KEYS[(i + 1) % members]
            signed = cosign(other, 1, state) if what == "cosign" else {"member": other.public_key.raw,
                                                                         "signature": b"\x00" * 64}
            member = signed["member"]
            out = attempt(state, governance.approve, ctx(KEYS[0], 2), {"id": 1, "cosignatures": [signed]})
            if what == "forged" and other is not KEYS[0] and not closed:
                assert isinstance(out, BadApproval)
            if isinstance(out, dict):
                approved.add(member)
        done = len(approved) >= required
        assert len(recorder.runs) == (1 if done else 0), (approved, required)
        if closed and what != "stranger":
            assert isinstance(out, ProposalClosed)
    view = get_proposal(state, 1)
    assert view.status == ("executed" if len(approved) >= required else "open")
    assert set(view.approvals) == approved
    assert proposed["required"] == required


@settings(max_examples=60, deadline=None)
@given(expires_in=st.integers(1, 30), approve_at=st.lists(st.integers(1, 40), min_size=1, max_size=4))
def test_no_approval_counts_after_expiry(expires_in: int, approve_at: list[int]) -> None:
    state, governance, recorder = setup(4, 2)
    governance.propose(state, ctx(KEYS[0], 1), {"action": "record", "params": {"n": 1}, "expires_in": expires_in})
    expires = 1 + expires_in
    height = 1
    for at in sorted(approve_at):
        for h in range(height, at):  # end-block hooks of the heights in between
            governance.end_block(state, h)
        height = at
        out = attempt(state, governance.approve, ctx(KEYS[1], at), {"id": 1})
        if at <= expires:
            assert isinstance(out, dict) and recorder.runs, out
            return
        assert isinstance(out, ProposalClosed) and "expired" in out.message and not recorder.runs
    assert get_proposal(state, 1).status in ("open", "expired")


def test_expiry_closes_the_proposal_at_its_height_and_an_executed_one_takes_no_approval() -> None:
    state, governance, recorder = setup(4, 3)
    governance.propose(state, ctx(KEYS[0], 1), {"action": "record", "params": {"n": 1}, "expires_in": 3})
    governance.end_block(state, 3)
    assert get_proposal(state, 1).status == "open"
    governance.end_block(state, 4)
    assert get_proposal(state, 1).status == "expired" and get_proposal(state, 1).closed_height == 4
    with pytest.raises(ProposalClosed, match="expired"):
        governance.approve(state, ctx(KEYS[1], 5), {"id": 1})
    governance.propose(state, ctx(KEYS[0], 5), {"action": "record", "params": {"n": 2}})
    governance.approve(state, ctx(KEYS[1], 6), {"id": 2, "cosignatures": [cosign(KEYS[2], 2, state)]})
    assert recorder.runs == [{"n": 2}] and get_proposal(state, 2).outcome == {"n": 2}
    with pytest.raises(ProposalClosed, match="executed at height 6"):
        governance.approve(state, ctx(KEYS[3], 7), {"id": 2})


def test_a_cosignature_is_bound_to_its_chain_and_proposal() -> None:
    state, governance, _ = setup(4, 4)
    for n in (1, 2):
        governance.propose(state, ctx(KEYS[0], 1), {"action": "record", "params": {"n": n}})
    for bad in (cosign(KEYS[1], 2, state), cosign(KEYS[1], 1, state, chain="other-chain")):
        with pytest.raises(BadApproval, match="does not verify"):
            governance.approve(state, ctx(KEYS[0], 2), {"id": 1, "cosignatures": [bad]})
    with pytest.raises(BadApproval, match="approves twice"):
        governance.approve(state, ctx(KEYS[0], 2), {"id": 1, "cosignatures": [cosign(KEYS[0], 1, state)]})
    with pytest.raises(ContractRejected, match="already holds the approval"):
        governance.approve(state, ctx(KEYS[0], 2), {"id": 1})


@pytest.mark.parametrize(("payload", "error", "match"), [
    ({"action": "nothing", "params": {}}, InvalidInput, "unknown action"),
    ({"action": "record", "params": {"n": "x"}}, InvalidInput, "params.n"),
    ({"action": "record", "params": {"n": 1}, "expires_in": 0}, InvalidInput, "expires_in"),
    ({"action": "record", "params": {"n": 1}, "extra": 1}, InvalidInput, "extra"),
])
def test_a_bad_proposal_is_refused_and_changes_nothing(payload: dict[str, Any], error: type, match: str) -> None:
    state, governance, _ = setup(4, 3)
    before = state.snapshot()
    with pytest.raises(error, match=match):
        governance.propose(state, ctx(KEYS[0], 1), payload)
    assert state.snapshot() == before


def test_a_failing_action_fails_the_approval_that_reached_the_threshold() -> None:
    state, governance, recorder = setup(4, 2)
    governance.propose(state, ctx(KEYS[0], 1), {"action": "record", "params": {"n": -1}})
    out = attempt(state, governance.approve, ctx(KEYS[1], 2), {"id": 1})
    assert isinstance(out, ContractRejected) and "reached its threshold" in out.message
    assert get_proposal(state, 1).status == "open" and get_proposal(state, 1).approvals == (KEYS[0].public_key.raw,)
    assert not recorder.runs


def test_no_governance_no_proposals() -> None:
    state = MemoryState()
    governance = Governance({})
    assert load_config(state) is None
    with pytest.raises(ContractRejected, match="declares no governance"):
        governance.propose(state, ctx(KEYS[0], 1), {"action": "x", "params": {}})
    with pytest.raises(NotFound):
        get_proposal(state, 1)


def test_a_member_whose_admin_role_was_revoked_no_longer_counts() -> None:
    state, governance, recorder = setup(4, 3)
    governance.propose(state, ctx(KEYS[0], 1), {"action": "record", "params": {"n": 1}})
    governance.approve(state, ctx(KEYS[1], 2), {"id": 1})
    store_account(state, KEYS[1].public_key.raw, Account("admin1", frozenset({"hospital"}), 1))
    with pytest.raises(NotAMember, match="no longer holds role admin"):
        governance.approve(state, ctx(KEYS[0], 3), {"id": 1, "cosignatures": [cosign(KEYS[1], 1, state)]})
    governance.approve(state, ctx(KEYS[2], 3), {"id": 1})
    assert not recorder.runs  # admin1's earlier approval no longer counts: 2 of 3
    governance.approve(state, ctx(KEYS[3], 4), {"id": 1})
    assert recorder.runs == [{"n": 1}]
