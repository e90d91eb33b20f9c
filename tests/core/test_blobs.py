"""Blob refs, chunk proofs and the availability rule (core.blobs)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from consensus.certificates import quorum_size
from core import blobs
from core.blobs import CHUNK_BYTES, Attestation, BlobRef, blob_ref, chunk_hashes, chunk_proof, split, verify_chunk
from core.errors import BadChunk
from core.state import MemoryState

# Sizes around every boundary that changes the chunk count or the tree's shape, plus random ones up to 3 chunks.
SIZES = st.one_of(st.sampled_from([1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 2 * CHUNK_BYTES,
                                   3 * CHUNK_BYTES + 1]),
                  st.integers(1, 3 * CHUNK_BYTES))


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@settings(max_examples=15, deadline=None)
@given(size=SIZES, seed=st.integers(0, 2**32))
def test_every_chunk_verifies_with_its_proof_and_only_at_its_index(size: int, seed: int) -> None:
    data = _data(size, seed)
    ref = blob_ref(data)
    hashes = chunk_hashes(data)
    chunks = split(data)
    assert ref.chunks == len(chunks) == -(-size // CHUNK_BYTES) and b"".join(chunks) == data
    for i, chunk in enumerate(chunks):
        verify_chunk(ref, i, chunk, chunk_proof(hashes, i))
    if len(chunks) > 1:  # a genuine chunk (with its own proof) offered at another index is refused
        with pytest.raises(BadChunk):
            verify_chunk(ref, 1, chunks[0], chunk_proof(hashes, 0))


@settings(max_examples=15, deadline=None)
@given(size=SIZES, seed=st.integers(0, 2**32), pick=st.floats(0, 1, exclude_max=True),
       at=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_any_flipped_bit_in_any_chunk_is_refused(size: int, seed: int, pick: float, at: float, bit: int) -> None:
    data = _data(size, seed)
    ref, hashes, chunks = blob_ref(data), chunk_hashes(data), split(data)
    index = int(pick * len(chunks))
    chunk = bytearray(chunks[index])
    chunk[int(at * len(chunk))] ^= 1 << bit
    with pytest.raises(BadChunk):
        verify_chunk(ref, index, bytes(chunk), chunk_proof(hashes, index))


def test_a_proof_of_the_wrong_length_or_a_chunk_of_the_wrong_size_is_refused() -> None:
    data = _data(3 * CHUNK_BYTES + 7, 1)
    ref, hashes, chunks = blob_ref(data), chunk_hashes(data), split(data)
    proof = chunk_proof(hashes, 2)
    for bad in (proof[:-1], [*proof, proof[0]], [b"\x00" * 31, *proof[1:]]):
        with pytest.raises(BadChunk):
            verify_chunk(ref, 2, chunks[2], bad)
    with pytest.raises(BadChunk):
        verify_chunk(ref, 3, chunks[3] + b"x", chunk_proof(hashes, 3))
    with pytest.raises(BadChunk):
        verify_chunk(ref, 4, chunks[3], chunk_proof(hashes, 3))


def test_refs_refuse_empty_oversized_and_loose_values_and_round_trip_as_hex() -> None:
    with pytest.raises(ValidationError):
        blob_ref(b"")
    good = blob_ref(b"abc")
    for bad in ({"size": blobs.MAX_BLOB_BYTES + 1}, {"sha256": b"\x00" * 31}, {"size": "3"}):
        with pytest.raises(ValidationError):
            BlobRef.model_validate({**good.model_dump(), **bad})
    text = good.model_dump_json()
    assert good.sha256.hex() in text and BlobRef.model_validate_json(text) == good


@pytest.mark.parametrize("n", range(1, 14))
def test_quorum_is_the_consensus_quorum(n: int) -> None:
    assert blobs.quorum(n) == quorum_size(n)


def test_available_needs_a_quorum_of_current_validators_below_the_height_for_one_ref() -> None:
    state = MemoryState()
    ref = blob_ref(b"update")
    other = ref.model_copy(update={"size": 7})  # a liar's ref under the same sha256
    vals = [bytes([i]) * 32 for i in range(4)]
    outsider = b"\x09" * 32

    def attest(who: bytes, height: int, r: BlobRef = ref) -> None:
        state.set(blobs.attest_key(r.sha256, who), blobs.codec.encode(
            Attestation(ref=r, validator=who, height=height).model_dump()))

    attest(vals[0], 5)
    attest(vals[1], 6)
    attest(outsider, 5)
    attest(vals[3], 5, other)
    assert not blobs.available(state, ref.sha256, vals, 10)  # 2 for ref, 1 for other, an outsider: no quorum
    attest(vals[2], 9)
    assert blobs.available_ref(state, ref.sha256, vals, 10) == ref
    assert not blobs.available(state, ref.sha256, vals, 9)  # the third attestation is not before height 9
    assert not blobs.available(state, b"\x00" * 32, vals, 10)


def test_need_and_keep_index_round_trip() -> None:
    state = MemoryState()
    ref = blob_ref(b"w")
    blobs.put_need(state, blobs.Need(ref=ref, model_id="m", round=3))
    blobs.put_need(state, blobs.Need(ref=ref, model_id="m", round=4))
    blobs.put_keep(state, blobs.Keep(ref=ref, model_id="m", version=1))
    assert [(n.model_id, n.round) for n in blobs.needs(state)] == [("m", 3), ("m", 4)]
    state.delete(blobs.need_key(ref.sha256, "m", 3))
    assert [n.round for n in blobs.needs(state)] == [4]
    assert [k.version for k in blobs.keeps(state)] == [1]


def test_available_at_uses_the_set_deciding_the_height_and_the_query_reports_it() -> None:
    from core.blob_api import BlobAvailabilityParams, blob_availability
    from core.validators import Validator, ValidatorSet, set_key

    state = MemoryState()
    first = [bytes([i]) * 32 for i in range(4)]
    later = [bytes([i]) * 32 for i in range(4, 8)]
    for start, keys in ((1, first), (10, later)):
        state.set(set_key(start), ValidatorSet(tuple(Validator(k, f"v{k[0]}", "127.0.0.1:1") for k in keys)).encode())
    ref = blob_ref(b"model")
    for who in first[:3]:
        state.set(blobs.attest_key(ref.sha256, who), blobs.codec.encode(
            Attestation(ref=ref, validator=who, height=3).model_dump()))
    assert blobs.available_at(state, ref.sha256, 9) == ref
    assert blobs.available_at(state, ref.sha256, 10) is None  # the new set attested nothing yet
    answer = blob_availability(state, BlobAvailabilityParams(sha256=ref.sha256))
    assert answer.available is None and [a.validator for a in answer.attestations] == first[:3]
