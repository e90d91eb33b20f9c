"""The hospital's blob transport without a node: a fake validator that answers the blob RPCs from memory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from client.fl.blob_transport import BlobChainTransport
from core.blob_api import BLOB_GET, BLOB_PUT, BLOB_STATUS
from core.blobs import BlobRef, blob_ref, chunk_hashes, chunk_proof, split
from core.errors import BlobMismatch, NodeUnreachable
from fl_contracts import blob_updates
from fl_contracts.contract import ModelVersion, RoundRecord
from fl_contracts.fixedpoint import encode_weights
from fl_contracts.spec import ModelSpec

SPEC = ModelSpec.for_sequential("wide", [600, 1000, 2], frac_bits=11, blobs=True, max_abs=4.0)


class FakeValidator:
    """``blob_status``, ``blob_put`` and ``blob_get`` over a dict, as a validator's endpoint answers them."""

    def __init__(self) -> None:
        self.blobs: dict[bytes, bytes] = {}
        self.chunks: dict[bytes, dict[int, bytes]] = {}
        self.puts = 0

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        sha, size = bytes.fromhex(params["sha256"]), params["size"]
        held = self.chunks.setdefault(sha, {})
        ref = BlobRef(sha256=sha, size=size, chunk_root=bytes.fromhex(params["chunk_root"]))
        if method == BLOB_STATUS:
            return {"held": sorted(held), "complete": len(held) == ref.chunks}
        if method == BLOB_PUT:
            self.puts += 1
            held[params["index"]] = bytes.fromhex(params["chunk"])
            return {"complete": len(held) == ref.chunks, "held": len(held)}
        assert method == BLOB_GET
        data = self.blobs[sha]
        index = params["index"]
        return {"chunk": split(data)[index].hex(), "proof": [h.hex() for h in chunk_proof(chunk_hashes(data), index)]}


class FakeSession:
    """What ``ChainTransport`` reads of a ``ChainSession``, with a validator that fails its first ``fail`` calls."""

    rpc_url = "http://fake"

    def __init__(self, version: ModelVersion, validator: FakeValidator, fail: int = 0) -> None:
        self.version, self.validator, self.fail = version, validator, fail
        self.submitted: list[dict[str, Any]] = []
        self.seen_height = 0

    def spec(self, model_id: str) -> ModelSpec:
        return SPEC

    def rounds(self, model_id: str) -> list[RoundRecord]:
        return [RoundRecord(model_id=SPEC.id, round=1, base_version=0, opened_height=0, deadline_height=10,
                            closed_height=None, status="open")]

    def model_version(self, model_id: str, version: int | None = None) -> ModelVersion:
        return self.version

    def run(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        import asyncio

        if self.fail:
            self.fail -= 1
            raise NodeUnreachable("no validator answers at http://fake; is it running?")
        return asyncio.run(fn(self.validator))

    def submit_commit(self, kind: str, payload: dict[str, Any]) -> Any:
        self.submitted.append(payload)
        receipt = type("R", (), {"height": 3, "result": {"position": 1}})()
        return type("T", (), {"hash": b"\1" * 32, "receipt": receipt})()


def blob_version(weights: np.ndarray, validator: FakeValidator, tamper: bool = False) -> ModelVersion:
    data = encode_weights(weights)
    ref = blob_ref(data)
    validator.blobs[ref.sha256] = data
    digest = blob_updates.version_hash(SPEC.id, 0 if not tamper else 1, ref)
    return ModelVersion(model_id=SPEC.id, version=0, round=0, height=0, weights=b"", hash=digest, weights_blob=ref)


def test_get_model_pulls_the_version_blob_and_checks_its_hash() -> None:
    validator = FakeValidator()
    weights = np.arange(SPEC.num_params, dtype=np.int64) - 1000
    session = FakeSession(blob_version(weights, validator), validator)
    model = BlobChainTransport(session).get_model(SPEC.id)  # type: ignore[arg-type]
    assert np.array_equal(model.version.weights_int(), weights) and model.open_round == 1
    forged = FakeSession(blob_version(weights, validator, tamper=True), validator)
    with pytest.raises(BlobMismatch, match="does not commit"):
        BlobChainTransport(forged).get_model(SPEC.id)  # type: ignore[arg-type]


def test_submit_pushes_the_delta_and_sends_only_its_ref_resuming_after_the_validator_comes_back() -> None:
    validator = FakeValidator()
    session = FakeSession(blob_version(np.zeros(SPEC.num_params, dtype=np.int64), validator), validator, fail=2)
    delta = np.ones(SPEC.num_params, dtype="<i4").tobytes()
    transport = BlobChainTransport(session, push_timeout_s=60)  # type: ignore[arg-type]
    receipt = transport.submit({"model_id": SPEC.id, "round": 1, "base_version": 0, "num_samples": 5, "delta": delta})
    (sent,) = session.submitted
    assert "delta" not in sent and BlobRef.model_validate(sent["delta_blob"]) == blob_ref(delta)
    assert transport.push_attempts == 3 and receipt["position"] == 1
    assert b"".join(validator.chunks[blob_ref(delta).sha256][i] for i in range(2)) == delta
