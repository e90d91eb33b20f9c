"""The ``blob.attest`` transaction kind: a validator says on chain that it holds a complete, verified blob.

The node sends one for each blob it completes (``node.blobs.replication``);
a quorum of the current validator set makes the blob available
(:func:`core.blobs.available_ref`), and from then on every honest validator
fetches it before it executes a block that reads it. Each validator attests a
blob once; what it attested, and at which height, is its record under
``blob/att/<sha256><validator key>`` (layout in ``core.blobs``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from core import codec
from core.blobs import Attestation, BlobRef, attest_key
from core.errors import ContractRejected
from core.state import StateView, TxContext
from core.tx import parse_payload


class AttestPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    ref: BlobRef


def attest(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    p = parse_payload(AttestPayload, payload)
    key = attest_key(p.ref.sha256, ctx.sender)
    if state.get(key) is not None:
        raise ContractRejected(f"blob.attest: this validator already attested blob {p.ref.sha256.hex()}")
    record = Attestation(ref=p.ref, validator=ctx.sender, height=ctx.height)
    state.set(key, codec.encode(record.model_dump()))
    return {"height": ctx.height}
