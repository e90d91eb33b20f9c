"""A governance proposal as state stores it and the ``gov_proposal`` query returns it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from core import codec
from core.wire import WIRE_BYTES

Status = Literal["open", "executed", "expired"]
OPEN: Status = "open"
EXECUTED: Status = "executed"
EXPIRED: Status = "expired"


class Proposal(BaseModel):
    """``params`` is the action's payload as the node's handler for ``action`` reads it (bytes as bytes);
    ``digest`` is what members' co-signatures bind to; ``approvals`` are member keys, sorted."""

    model_config = ConfigDict(extra="forbid", frozen=True, **WIRE_BYTES)
    id: int
    action: str
    params: dict[str, Any]
    digest: bytes
    proposer: bytes
    proposed_height: int
    expires_height: int
    approvals: tuple[bytes, ...]
    status: Status = OPEN
    closed_height: int | None = None
    """The height it was executed or expired at."""
    outcome: dict[str, Any] | None = None
    """What the action returned when it ran."""

    def encode(self) -> bytes:
        return codec.encode(self.model_dump(mode="python"))

    @classmethod
    def decode(cls, raw: bytes) -> Proposal:
        doc = codec.decode(raw)
        doc["approvals"] = tuple(doc["approvals"])
        return cls.model_validate(doc)
