"""The reads a hospital needs to take each step of a secure round, one :class:`core.api.Query` each.

Registered next to the FL contract's queries (:mod:`fl_contracts.queries`),
so a validator serves them over JSON-RPC and a test reads them in process.
Nothing here is secret: ciphertexts are for their holder only in the sense
that only its X25519 key opens them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from core.api import Params, Query
from core.errors import InvalidInput
from core.state import StateView
from core.wire import Hash32
from fl_contracts import contract
from fl_contracts.secagg_msgs import Dealt, Member, SecureOutcome, SecureRoundView
from fl_contracts.secure_round import load_round, read_doc, state_key


class SecureRoundParams(Params):
    model_id: str = Field(min_length=1, max_length=128)
    holder: Hash32 | None = Field(None, description="a member's account key: include what each dealer sent it")


class SecureOutcomeParams(Params):
    model_id: str = Field(min_length=1, max_length=128)
    round: int = Field(ge=1, le=2**63 - 1)


FL_SECURE_ROUND: Query[SecureRoundParams, SecureRoundView] = Query(
    "fl_secure_round", "The open secure-aggregation round of a model: stage, members, who posted what.",
    SecureRoundParams, SecureRoundView)
FL_SECURE_OUTCOME: Query[SecureOutcomeParams, SecureOutcome] = Query(
    "fl_secure_outcome", "Who took part in each stage of a closed secure round, and who revealed a wrong share.",
    SecureOutcomeParams, SecureOutcome)


def view(state: StateView, model_id: str, holder: bytes | None = None) -> SecureRoundView:
    """The open secure round; with ``holder``, what each dealer sent it."""
    spec = contract.get_spec(state, model_id)
    if not spec.secure:
        raise InvalidInput(f"model {model_id} does not aggregate securely")
    rnd = load_round(state, spec)
    members = []
    for i, sender in enumerate(rnd.members):
        keys = read_doc(state, state_key("keys", spec.id, sender))
        members.append(Member(sender=sender, index=i + 1, enc_pk=keys["enc_pk"], mask_pk=keys["mask_pk"]))
    inbox: list[Dealt] = []
    if holder is not None and holder in rnd.members:
        at = rnd.members.index(holder)
        for dealer in rnd.shared:
            d = read_doc(state, state_key("shares", spec.id, dealer))
            inbox.append(Dealt(dealer=dealer, ciphertext=d["ciphertexts"][at], commit_b=d["commit_b"][at],
                               commit_s=d["commit_s"][at]))
    return SecureRoundView(model_id=spec.id, round=rnd.round, base_version=rnd.base_version, stage=rnd.stage,
                           deadline_height=rnd.deadline_height, threshold=rnd.threshold, members=members,
                           shared=rnd.shared, masked=rnd.masked, revealed=rnd.revealed, inbox=inbox)


def outcome(state: StateView, model_id: str, round_no: int) -> SecureOutcome:
    return SecureOutcome.model_validate(read_doc(state, state_key("outcome", model_id, round_no.to_bytes(8, "big"))))


STATE_QUERIES: tuple[tuple[Query[Any, Any], Callable[[StateView, Any], Any]], ...] = (
    (FL_SECURE_ROUND, lambda state, p: view(state, p.model_id, p.holder)),
    (FL_SECURE_OUTCOME, lambda state, p: outcome(state, p.model_id, p.round)),
)
