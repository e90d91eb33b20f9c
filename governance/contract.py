"""The ``gov.*`` contract: a proposal names one action, member admin keys approve it, it runs at the threshold.

Rules, in the order the handlers check them:

- Only a member's admin key proposes or approves (the member list is written at
  genesis and follows the members' key rotations).
- A proposal is one action (a name the node registered, and its payload, checked
  when proposed so a malformed one never waits for votes) and an expiry height.
  Proposing is the proposer's approval.
- An approval is the sender's, plus any co-signatures of other members carried in
  the same transaction: each signs :func:`approval_bytes` (chain id, the
  ``gov.approve`` domain, the proposal id and the digest of its action), so a
  signature cannot be moved to another proposal, action or chain.
- Only distinct current members count, and only while their key still holds role admin (a
  decision that revoked a member's admin role silences it; the threshold does not drop); a
  non-member's or a repeated co-signature
  refuses the whole transaction, and a transaction adding no new member is refused.
- When the distinct approvals reach the threshold, the action runs in the same
  transaction; if it fails, the transaction fails and nothing is recorded, so the
  proposal stays open (until it expires) rather than half-executed.
- The end-block hook of height E marks the proposals that expire at E as expired.
  An executed or expired proposal takes no more approvals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core import codec
from core.accounts import load_account
from core.crypto import sign_bytes, verify
from core.errors import BadApproval, ContractRejected, FbciError, InvalidInput, NotAMember, NotFound, ProposalClosed
from core.hashing import sha256
from core.state import StateView, TxContext
from core.tx import parse_payload
from governance.config import GovernanceConfig
from governance.records import EXECUTED, EXPIRED, OPEN, Proposal

PROPOSE_KIND = "gov.propose"
APPROVE_KIND = "gov.approve"
MAX_EXPIRY_BLOCKS = 100_000
DEFAULT_EXPIRY_BLOCKS = 1_000
MAX_COSIGNATURES = 256

_CONFIG = b"gov/config"
_NEXT = b"gov/next"
_PROPOSAL = b"gov/p/"
_EXPIRES = b"gov/exp/"

Handler = Callable[[StateView, TxContext, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Action:
    """What a decision can do, filled in by the node: ``check`` refuses a malformed payload when it is
    proposed (raising :class:`core.errors.InvalidInput`), ``execute`` does it once the quorum is reached.
    ``admit``, if given, also refuses at proposal what the state then would refuse (a new value that breaks
    a rule against the chain's current ones), so such a proposal never waits for votes; ``execute`` judges
    it again against the state it runs on."""

    check: Callable[[dict[str, Any]], None]
    execute: Handler
    admit: Callable[[StateView, TxContext, dict[str, Any]], None] | None = None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ProposePayload(_Strict):
    action: str = Field(min_length=1, max_length=64)
    params: dict[str, Any]
    expires_in: int = Field(DEFAULT_EXPIRY_BLOCKS, ge=1, le=MAX_EXPIRY_BLOCKS)


class Cosignature(_Strict):
    """Another member's approval: its admin key and its signature over :func:`approval_bytes`."""

    member: bytes = Field(min_length=32, max_length=32)
    signature: bytes = Field(min_length=64, max_length=64)


class ApprovePayload(_Strict):
    id: int = Field(ge=1, le=2**63 - 1)
    digest: bytes | None = Field(None, min_length=32, max_length=32)
    """The proposal's :func:`action_digest` as the approver read it: given, the approval counts only for
    that action (the CLI always sends it, so a member approves what it was shown, not merely an id)."""
    cosignatures: list[Cosignature] = Field(default_factory=list, max_length=MAX_COSIGNATURES)




def _be(n: int) -> bytes:
    return n.to_bytes(8, "big")


def action_digest(action: str, params: Mapping[str, Any]) -> bytes:
    """The digest a member's co-signature binds to: the action's name and its canonical params."""
    return sha256(codec.encode([action, dict(params)]))


def approval_bytes(chain_id: str, proposal_id: int, digest: bytes) -> bytes:
    """What a member signs to approve a proposal outside its own transaction (``fbci gov approve --sign-only``)."""
    return sign_bytes(chain_id, APPROVE_KIND, codec.encode([proposal_id, digest]))


# -- state ------------------------------------------------------------------------------------

def init_governance(state: StateView, config: GovernanceConfig | None) -> None:
    """Genesis: write the members and threshold (nothing when genesis declares no governance)."""
    if config is not None:
        state.set(_CONFIG, codec.encode([list(config.members), config.required]))


def load_config(state: StateView) -> GovernanceConfig | None:
    raw = state.get(_CONFIG)
    if raw is None:
        return None
    members, required = codec.decode(raw)
    return GovernanceConfig(members=tuple(members), required=required)


def replace_member(state: StateView, old: bytes, new: bytes) -> None:
    """A member's admin key was rotated: the new key counts for it from now on, and its approvals of
    open proposals stay its approvals (the member did not change, only its key)."""
    config = load_config(state)
    if config is None or old not in config.members:
        return
    members = sorted(new if m == old else m for m in config.members)
    state.set(_CONFIG, codec.encode([members, config.required]))
    for _, raw in state.scan(_PROPOSAL):
        proposal = Proposal.decode(raw)
        if proposal.status == OPEN and old in proposal.approvals:
            _store(state, proposal.model_copy(update={"approvals": tuple(sorted(
                new if a == old else a for a in proposal.approvals))}))


def get_proposal(state: StateView, proposal_id: int) -> Proposal:
    raw = state.get(_PROPOSAL + _be(proposal_id))
    if raw is None:
        raise NotFound(f"no governance proposal {proposal_id}")
    return Proposal.decode(raw)


def proposals(state: StateView, start: int = 1) -> Iterator[Proposal]:
    """Proposals in id order from ``start``, read lazily (a caller stops after a page)."""
    for _, raw in state.scan(_PROPOSAL, _PROPOSAL + _be(start)):
        yield Proposal.decode(raw)


def _store(state: StateView, proposal: Proposal) -> None:
    state.set(_PROPOSAL + _be(proposal.id), proposal.encode())


# -- the contract -----------------------------------------------------------------------------

class Governance:
    """The ``gov.*`` handlers over the actions the node registered (see :class:`Action`)."""

    def __init__(self, actions: Mapping[str, Action]) -> None:
        self.actions = dict(actions)

    def _config(self, state: StateView) -> GovernanceConfig:
        config = load_config(state)
        if config is None:
            raise ContractRejected("this chain's genesis declares no governance (app_state.governance); "
                                   "its admin account acts alone")
        return config

    def propose(self, state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
        p: ProposePayload = parse_payload(ProposePayload, payload)
        config = self._config(state)
        _require_member(state, config, ctx.sender)
        action = self.actions.get(p.action)
        if action is None:
            raise InvalidInput(f"payload.action: unknown action {p.action!r}; known: {sorted(self.actions)}")
        action.check(p.params)
        if action.admit is not None:
            action.admit(state, ctx, p.params)
        raw_next = state.get(_NEXT)
        proposal_id = 1 if raw_next is None else codec.decode(raw_next)
        state.set(_NEXT, codec.encode(proposal_id + 1))
        proposal = Proposal(id=proposal_id, action=p.action, params=p.params,
                            digest=action_digest(p.action, p.params), proposer=ctx.sender,
                            proposed_height=ctx.height, expires_height=ctx.height + p.expires_in, approvals=())
        state.set(_EXPIRES + _be(proposal.expires_height) + _be(proposal_id), b"")
        return self._add_approvals(state, ctx, config, proposal, [ctx.sender])

    def approve(self, state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
        p: ApprovePayload = parse_payload(ApprovePayload, payload)
        config = self._config(state)
        _require_member(state, config, ctx.sender)
        proposal = get_proposal(state, p.id)
        if proposal.status != OPEN:
            closed = "was executed" if proposal.status == EXECUTED else "expired"
            raise ProposalClosed(f"proposal {p.id} {closed} at height {proposal.closed_height}; "
                                 f"it takes no more approvals")
        if ctx.height > proposal.expires_height:  # the end-block hook closes it at its height; never past it
            raise ProposalClosed(f"proposal {p.id} expired at height {proposal.expires_height}")
        if p.digest is not None and p.digest != proposal.digest:
            raise BadApproval(f"payload.digest: proposal {p.id} is another action than the one approved "
                              f"({proposal.action}, digest {proposal.digest.hex()[:16]}…)")
        signed = approval_bytes(ctx.chain_id, p.id, proposal.digest)
        approvers = [ctx.sender]
        for i, cosignature in enumerate(p.cosignatures):
            member, signature = cosignature.member, cosignature.signature
            if member in approvers:
                raise BadApproval(f"payload.cosignatures[{i}]: member {member.hex()[:16]}… approves twice")
            _require_member(state, config, member, where=f"payload.cosignatures[{i}]")
            if not verify(member, signed, signature):
                raise BadApproval(f"payload.cosignatures[{i}]: the signature of {member.hex()[:16]}… does not "
                                  f"verify for proposal {p.id} on chain {ctx.chain_id!r}")
            approvers.append(member)
        return self._add_approvals(state, ctx, config, proposal, approvers)

    def _add_approvals(self, state: StateView, ctx: TxContext, config: GovernanceConfig, proposal: Proposal,
                       approvers: Sequence[bytes]) -> dict[str, Any]:
        new = [a for a in approvers if a not in proposal.approvals]
        if not new:
            raise ContractRejected(f"proposal {proposal.id} already holds the approval of every key in this "
                                   f"transaction")
        proposal = proposal.model_copy(update={"approvals": tuple(sorted({*proposal.approvals, *new}))})
        counted = counted_approvals(state, config, proposal)
        result: dict[str, Any] = {"id": proposal.id, "approvals": counted, "required": config.required}
        if counted >= config.required:
            try:
                outcome = self.actions[proposal.action].execute(state, ctx, dict(proposal.params))
            except FbciError as exc:
                raise type(exc)(f"proposal {proposal.id} reached its threshold but its action "
                                f"{proposal.action} fails: {exc.message}", data=dict(exc.data)) from None
            proposal = proposal.model_copy(update={"status": EXECUTED, "closed_height": ctx.height,
                                                   "outcome": outcome})
            result["executed"] = proposal.action
            result["outcome"] = outcome
        _store(state, proposal)
        return result

    def end_block(self, state: StateView, height: int) -> list[Any]:
        """Expire the proposals whose expiry height is this block's (an end-block hook; closes no FL round)."""
        prefix = _EXPIRES + _be(height)
        for key, _ in list(state.scan(prefix)):
            state.delete(key)
            proposal = get_proposal(state, int.from_bytes(key[len(prefix):], "big"))
            if proposal.status == OPEN:
                _store(state, proposal.model_copy(update={"status": EXPIRED, "closed_height": height}))
        return []


def _is_admin(state: StateView, key: bytes) -> bool:
    account = load_account(state, key)
    return account is not None and "admin" in account.roles


def counted_approvals(state: StateView, config: GovernanceConfig, proposal: Proposal) -> int:
    """Distinct approvals from keys that are members now and still hold role admin: what the threshold
    is compared with."""
    members = set(config.members)
    return sum(1 for a in set(proposal.approvals) if a in members and _is_admin(state, a))


def _require_member(state: StateView, config: GovernanceConfig, key: bytes, *, where: str = "sender") -> None:
    if key not in config.members:
        raise NotAMember(f"{where}: key {key.hex()[:16]}… is not a governance member's admin key")
    if not _is_admin(state, key):
        raise NotAMember(f"{where}: member key {key.hex()[:16]}… no longer holds role admin")
