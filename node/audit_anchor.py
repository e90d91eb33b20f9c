"""The ``audit.anchor`` transaction kind: a validator commits the Merkle root of its audit events.

Each validator numbers its audit events from 0 without gaps. An anchor names
the range ``[from_seq, to_seq)`` it covers and the root over those events'
leaves (``core.audit``); the contract accepts only the range that starts
where the sender's previous anchor ended, so the anchored ranges of one
validator tile its history with no gap and no overlap. A validator that
stops anchoring shows as a last anchor that falls behind the chain.

State layout::

    audit/last/<validator key>                  [to_seq, height] of its latest anchor
    audit/anc/<validator key>/<from_seq:8 BE>   Anchor
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBytes, StrictInt

from core import codec
from core.audit import MAX_ANCHOR_EVENTS, Anchor
from core.errors import ContractRejected
from core.state import StateView, TxContext
from core.tx import parse_payload

PREFIX = b"audit/"


class AnchorPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    from_seq: StrictInt = Field(ge=0, le=2**63 - 1)
    to_seq: StrictInt = Field(ge=1, le=2**63 - 1)
    root: StrictBytes = Field(min_length=32, max_length=32)


def last_anchored(state: StateView, validator: bytes) -> tuple[int, int | None]:
    """``(to_seq, height)`` of the validator's latest anchor; ``(0, None)`` before its first."""
    raw = state.get(PREFIX + b"last/" + validator)
    if raw is None:
        return 0, None
    to_seq, height = codec.decode(raw)
    return to_seq, height


def anchor(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    p = parse_payload(AnchorPayload, payload)
    expected, _ = last_anchored(state, ctx.sender)
    if p.from_seq != expected:
        raise ContractRejected(f"audit.anchor: from_seq {p.from_seq}; this validator's next range starts at "
                               f"{expected}", data={"expected_from_seq": expected})
    if not 0 < p.to_seq - p.from_seq <= MAX_ANCHOR_EVENTS:
        raise ContractRejected(f"audit.anchor: a range covers 1..{MAX_ANCHOR_EVENTS} events, not "
                               f"{p.to_seq - p.from_seq}")
    record = Anchor(validator=ctx.sender, from_seq=p.from_seq, to_seq=p.to_seq, root=p.root, height=ctx.height,
                    tx_hash=ctx.tx_hash)
    state.set(PREFIX + b"anc/" + ctx.sender + b"/" + p.from_seq.to_bytes(8, "big"), codec.encode(record.model_dump()))
    state.set(PREFIX + b"last/" + ctx.sender, codec.encode([p.to_seq, ctx.height]))
    return {"from_seq": p.from_seq, "to_seq": p.to_seq}


def anchors(state: StateView, validator: bytes) -> list[Anchor]:
    return [Anchor.model_validate(codec.decode(v)) for _, v in state.scan(PREFIX + b"anc/" + validator + b"/")]


def covering(state: StateView, validator: bytes, seq: int) -> Anchor | None:
    """The anchor whose range holds ``seq`` (None: not anchored yet)."""
    prefix = PREFIX + b"anc/" + validator + b"/"
    found = None
    for _, value in state.scan(prefix):  # ranges tile [0, last): the last one starting at or below seq
        candidate = Anchor.model_validate(codec.decode(value))
        if candidate.from_seq > seq:
            break
        found = candidate
    return found if found is not None and seq < found.to_seq else None
