"""The governance reads: proposals with who approved and who is missing, and the equivocation convictions
the members may vote on. Each is a :class:`core.api.Query` defined once for the validator and the CLI.

The convictions are answered by the node (``node.evidence_tx``), which can decode consensus evidence;
this leaf only declares the read, so ``fbci gov list`` needs nothing from ``node/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.api import NoParams, Params, Query
from core.state import StateView
from core.wire import WIRE_BYTES
from governance import contract
from governance.records import Proposal, Status

MAX_LISTED = 256


class ProposalsParams(Params):
    status: Status | None = Field(None, description="only proposals in this state (open, executed, expired)")
    start: int = Field(1, ge=1, le=2**63 - 1, description="the first proposal id to list")


class ProposalParams(Params):
    id: int = Field(ge=1, le=2**63 - 1)


class ProposalView(BaseModel):
    """A proposal beside the rule it is judged by: ``approved`` counts distinct current members."""

    model_config = ConfigDict(extra="forbid", frozen=True, **WIRE_BYTES)
    proposal: Proposal
    required: int
    approved: int
    missing: tuple[bytes, ...]
    """Member admin keys that have not approved it yet."""


class Conviction(BaseModel):
    """A validator that on-chain evidence proves signed two conflicting consensus messages."""

    model_config = ConfigDict(extra="forbid", frozen=True, **WIRE_BYTES)
    validator: bytes
    height: int
    view: int
    digest: bytes
    """SHA-256 of the stored evidence: fetch it and check the two signatures again."""


class GovernanceInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, **WIRE_BYTES)
    members: tuple[bytes, ...]
    required: int


GOV_PROPOSALS: Query[ProposalsParams, list[ProposalView]] = Query(
    "gov_proposals", f"Governance proposals from an id on (at most {MAX_LISTED}), with approvals and who is missing.",
    ProposalsParams, list[ProposalView])
GOV_PROPOSAL: Query[ProposalParams, ProposalView] = Query(
    "gov_proposal", "One governance proposal, its approvals and who is missing.", ProposalParams, ProposalView)
GOV_INFO: Query[NoParams, GovernanceInfo | None] = Query(
    "gov_info", "The governance members' admin keys and the approvals a proposal needs (null: no governance).",
    NoParams, GovernanceInfo | None)
GOV_CONVICTIONS: Query[NoParams, list[Conviction]] = Query(
    "gov_convictions", "Validators convicted of equivocation by evidence on chain, oldest evidence height first.",
    NoParams, list[Conviction])


def _view(state: StateView, proposal: Proposal) -> ProposalView:
    config = contract.load_config(state)
    members = config.members if config is not None else ()
    return ProposalView(proposal=proposal, required=config.required if config is not None else 0,
                        approved=contract.counted_approvals(state, config, proposal) if config is not None else 0,
                        missing=tuple(m for m in members if m not in proposal.approvals))


def _proposals(state: StateView, p: ProposalsParams) -> list[ProposalView]:
    found: list[ProposalView] = []
    for proposal in contract.proposals(state, p.start):
        if p.status in (None, proposal.status):
            found.append(_view(state, proposal))
            if len(found) == MAX_LISTED:
                break
    return found


def _proposal(state: StateView, p: ProposalParams) -> ProposalView:
    return _view(state, contract.get_proposal(state, p.id))


def _info(state: StateView, p: NoParams) -> GovernanceInfo | None:
    config = contract.load_config(state)
    return None if config is None else GovernanceInfo(members=config.members, required=config.required)


STATE_QUERIES: tuple[tuple[Query[Any, Any], Callable[[StateView, Any], Any]], ...] = (
    (GOV_PROPOSALS, _proposals), (GOV_PROPOSAL, _proposal), (GOV_INFO, _info),
)
"""The reads this leaf answers itself (``GOV_CONVICTIONS`` is answered by the node)."""
