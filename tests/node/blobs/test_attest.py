"""The blob.attest contract: one attestation per validator and blob, recorded at its height, and who may send it."""

from __future__ import annotations

import pytest

from core import blobs
from core.blobs import blob_ref
from core.errors import ContractRejected, InvalidInput
from core.state import MemoryState, TxContext
from node.blob_attest import attest
from node.kinds import build_registry

VALIDATOR = b"\x07" * 32
REF = blob_ref(b"an update")


def _ctx(height: int) -> TxContext:
    return TxContext("t", height, 0, VALIDATOR, frozenset({"validator"}), bytes(32), "node0")


def test_an_attestation_is_recorded_once_at_its_height() -> None:
    state = MemoryState()
    assert attest(state, _ctx(4), {"ref": REF.model_dump()}) == {"height": 4}
    assert [(a.validator, a.height, a.ref) for a in blobs.attestations(state, REF.sha256)] == [(VALIDATOR, 4, REF)]
    with pytest.raises(ContractRejected):
        attest(state, _ctx(5), {"ref": REF.model_dump()})
    assert blobs.attestations(state, REF.sha256)[0].height == 4


@pytest.mark.parametrize("payload", [{}, {"ref": {**REF.model_dump(), "size": 0}}, {"ref": REF.model_dump(), "x": 1},
                                     {"ref": {**REF.model_dump(), "sha256": REF.sha256.hex()}}])
def test_a_malformed_attestation_is_refused_and_changes_nothing(payload: dict) -> None:
    state = MemoryState()
    with pytest.raises(InvalidInput):
        attest(state, _ctx(4), payload)
    assert not list(state.scan(blobs.PREFIX))


def test_only_validators_may_attest() -> None:
    registry = build_registry("t", (VALIDATOR,))
    kind = registry.get(blobs.ATTEST_KIND)
    assert kind.roles == frozenset({"validator"}) and kind.handler is attest
