"""The FL contract's blob path: refs instead of deltas, the availability rule at close, versions as blobs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.blobs import CHUNK_BYTES, blob_ref, keeps, needs
from core.errors import BlobUnknown, ContractRejected
from core.state import MemoryState
from fl_contracts import blob_updates, contract
from fl_contracts.fixedpoint import decode_weights
from fl_contracts.spec import ModelSpec

from .blob_fakes import FakeBlobs, attest, delta_bytes, with_validators
from .conftest import ctx

RULES = ("fedavg", "median", "centered_clip")


def pair(rule: str = "fedavg", dims: tuple[int, ...] = (3, 2), max_updates: int = 4, **kw: object
         ) -> tuple[ModelSpec, ModelSpec]:
    """The same model twice, inline and as blobs."""
    params = {"iters": 2, "tau_pct": 100} if rule == "centered_clip" else {}
    common: dict = dict(frac_bits=8, rule=rule, rule_params=params, min_updates=1, max_updates=max_updates,
                        round_length_blocks=5, max_abs=2.0, max_norm=3.0, max_samples=100, **kw)
    return (ModelSpec.for_sequential("inline", list(dims), **common),
            ModelSpec.for_sequential("big", list(dims), blobs=True, **common))


def chain(*specs: ModelSpec) -> tuple[MemoryState, FakeBlobs]:
    state, blobs = with_validators(MemoryState()), FakeBlobs()
    contract.init_models(state, specs, {s.id: None for s in specs}, 0, blobs=blobs)
    return state, blobs


def blob_payload(spec: ModelSpec, blobs: FakeBlobs, values: np.ndarray | list[int], **over: object
                 ) -> dict[str, object]:
    ref = blobs.add(delta_bytes(values))
    base: dict[str, object] = {"model_id": spec.id, "round": 1, "base_version": 0, "num_samples": 10,
                               "delta_blob": ref.model_dump()}
    return {**base, **over}


def weights(state: MemoryState, blobs: FakeBlobs, model_id: str) -> list[int]:
    mv = contract.get_model(state, model_id)
    return (decode_weights(blobs.read(mv.weights_blob)) if mv.weights_blob is not None else mv.weights_int()).tolist()


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(RULES), st.integers(1, 4).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.integers(-512, 512), min_size=8, max_size=8), min_size=n, max_size=n),
    st.lists(st.integers(1, 200), min_size=n, max_size=n))))
def test_blob_aggregate_equals_inline_aggregate_bit_for_bit(rule: str, updates: tuple[list, list]) -> None:
    inline, big = pair(rule)
    state, blobs = chain(inline, big)
    values, samples = updates
    for i, (v, w) in enumerate(zip(values, samples)):
        contract.submit_update(state, ctx(i), {"model_id": inline.id, "round": 1, "base_version": 0,
                                               "num_samples": w, "delta": delta_bytes(v)})
        payload = blob_payload(big, blobs, v, num_samples=w)
        contract.submit_update(state, ctx(i), payload)
        attest(state, blob_updates.pending_ref(payload), height=2)
    records = {r.model_id: r for r in contract.end_block(state, 5, blobs=blobs)}
    assert weights(state, blobs, big.id) == weights(state, blobs, inline.id)
    strip = {"model_id", "new_hash"}
    assert records[big.id].model_dump(exclude=strip) == records[inline.id].model_dump(exclude=strip)
    assert [(n.round, n.ref) for n in needs(state)] == [(2, contract.get_model(state, big.id).weights_blob)]


def test_an_update_without_the_availability_quorum_is_excluded_with_its_reason() -> None:
    _, big = pair(max_updates=3)
    state, blobs = chain(big)
    refs = []
    for i, v in enumerate([[10] * 8, [20] * 8, [90] * 8]):
        payload = blob_payload(big, blobs, v)
        contract.submit_update(state, ctx(i), payload)
        refs.append(blob_updates.pending_ref(payload))
    base = contract.get_model(state, big.id, 0).weights_blob  # the base version is needed too (state sync)
    assert {n.ref for n in needs(state)} == {*refs, base}
    attest(state, refs[0], height=2)
    attest(state, refs[1], height=4)  # in the block being closed itself: too late to count
    attest(state, refs[2], height=2, count=2)  # 2 of 4 validators: below 2f + 1 = 3
    assert contract.end_block(state, 4, blobs=blobs) == []  # full, but not all available: it waits for its deadline
    (record,) = contract.end_block(state, 5, blobs=blobs)
    assert record.status == "aggregated" and record.accepted == 2 and record.excluded == 1
    reasons = [p.excluded for p in record.participants]
    assert reasons[0] is None and reasons[1] is None and reasons[2].startswith("blob_unavailable:")
    assert weights(state, blobs, big.id) == [15] * 8  # the mean of the two available updates only
    assert [n.ref for n in needs(state)] == [contract.get_model(state, big.id).weights_blob]


def test_a_full_round_closes_early_once_every_blob_is_available() -> None:
    _, big = pair(max_updates=2)
    state, blobs = chain(big)
    refs = []
    for i, v in enumerate([[4] * 8, [8] * 8]):
        payload = blob_payload(big, blobs, v)
        contract.submit_update(state, ctx(i), payload)
        refs.append(blob_updates.pending_ref(payload))
    for ref in refs:
        attest(state, ref, height=1)
    assert contract.end_block(state, 1, blobs=blobs) == []  # attested in the closing block: not before it
    (record,) = contract.end_block(state, 2, blobs=blobs)
    assert record.status == "aggregated" and record.closed_height == 2 and record.deadline_height == 5
    assert weights(state, blobs, big.id) == [6] * 8


def test_too_few_available_fails_the_round_naming_the_exclusions() -> None:
    _, big = pair()
    big = big.model_copy(update={"min_updates": 2})
    state, blobs = chain(big)
    for i in range(2):
        contract.submit_update(state, ctx(i), blob_payload(big, blobs, [i] * 8))
    (record,) = contract.end_block(state, 5, blobs=blobs)
    assert record.status == "failed" and "2 more excluded: blob_unavailable" in (record.reason or "")
    assert [p.excluded is not None for p in record.participants] == [True, True]
    assert contract.get_model(state, big.id).version == 0


def test_a_blob_past_max_abs_is_excluded_at_close() -> None:
    _, big = pair()
    state, blobs = chain(big)
    good, bad = blob_payload(big, blobs, [100] * 8), blob_payload(big, blobs, [0] * 7 + [513])
    contract.submit_update(state, ctx(0), good)
    contract.submit_update(state, ctx(1), bad)
    for p in (good, bad):
        attest(state, blob_updates.pending_ref(p), height=1)
    (record,) = contract.end_block(state, 5, blobs=blobs)
    assert [p.excluded for p in record.participants][1].startswith("out_of_bounds:")
    assert weights(state, blobs, big.id) == [100] * 8


@pytest.mark.parametrize(("model", "over", "why"), [
    ("big", {"delta_blob": blob_ref(b"\0" * 31).model_dump()}, "wrong_shape"),  # 8 params need 32 bytes
    ("big", {"delta_blob": None, "delta": delta_bytes([0] * 8)}, "invalid_payload"),  # a blob model takes refs
    ("inline", {}, "invalid_payload"),  # and an inline model takes deltas
    ("big", {"delta": delta_bytes([0] * 8)}, "invalid_payload"),  # never both
    ("big", {"delta_blob": {"sha256": b"\0" * 32, "size": 32}}, "invalid_payload"),
])
def test_a_bad_blob_update_is_rejected_and_changes_nothing(model: str, over: dict, why: str) -> None:
    inline, big = pair()
    state, blobs = chain(inline, big)
    payload = {**blob_payload(big, blobs, [0] * 8), "model_id": model, **over}
    before = state.snapshot()
    with pytest.raises(ContractRejected) as err:
        contract.submit_update(state, ctx(0), {k: v for k, v in payload.items() if v is not None})
    assert err.value.data["fl_reason"] == why
    assert state.snapshot() == before


def test_versions_of_a_blob_model_are_blobs_each_validator_writes_and_keeps() -> None:
    _, big = pair(dims=(1000, 600))  # 600,600 parameters: an update spans two chunks, a version five
    state, blobs = chain(big)
    v0 = contract.get_model(state, big.id, 0)
    assert v0.weights == b"" and v0.weights_blob is not None and blobs.has(v0.weights_blob)
    assert v0.weights_blob.size == 8 * big.num_params
    assert v0.weights_blob.chunks == -(-8 * big.num_params // CHUNK_BYTES)
    values = np.zeros(big.num_params, dtype=np.int64)
    values[::6000] = 7  # inside max_norm, so no clipping
    payload = blob_payload(big, blobs, values)
    assert blob_updates.pending_ref(payload).chunks == 2
    contract.submit_update(state, ctx(0), payload)
    attest(state, blob_updates.pending_ref(payload), height=1)
    (record,) = contract.end_block(state, 5, blobs=blobs)
    v1 = contract.get_model(state, big.id)
    assert v1.hash == record.new_hash == blob_updates.version_hash(big.id, 1, v1.weights_blob)
    before = decode_weights(blobs.read(v0.weights_blob))
    assert (decode_weights(blobs.read(v1.weights_blob)) - before == values).all()
    assert {(k.model_id, k.version, k.ref) for k in keeps(state)} == {(big.id, 0, v0.weights_blob),
                                                                       (big.id, 1, v1.weights_blob)}


def test_a_store_that_misses_a_needed_blob_raises_rather_than_diverging_quietly() -> None:
    _, big = pair()
    state, blobs = chain(big)
    payload = blob_payload(big, blobs, [1] * 8)
    contract.submit_update(state, ctx(0), payload)
    attest(state, blob_updates.pending_ref(payload), height=1)
    blobs.chunks.clear()
    with pytest.raises(BlobUnknown):
        contract.end_block(state, 5, blobs=blobs)


def test_a_spec_is_secure_or_blobs_and_an_inline_spec_keeps_its_document() -> None:
    inline, big = pair()
    assert "blobs" not in inline.to_doc() and big.to_doc()["blobs"] is True
    with pytest.raises(Exception, match="secure or blobs"):
        ModelSpec.model_validate({**big.model_dump(), "secure": True})
