"""The on-disk blob store: out-of-order chunks, restart and resume, damage on disk, refusals that change nothing."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from core.blobs import CHUNK_BYTES, blob_ref, chunk_hashes, chunk_proof, split
from core.errors import BadChunk, BlobIncomplete, BlobMismatch, BlobTooLarge, BlobUnknown
from node.blobs.store import BlobStore

DATA = random.Random(7).randbytes(3 * CHUNK_BYTES + 1000)  # four chunks, the last one short
REF = blob_ref(DATA)
HASHES = chunk_hashes(DATA)
CHUNKS = split(DATA)


def _put(store: BlobStore, index: int) -> bool:
    return store.put_chunk(REF, index, CHUNKS[index], chunk_proof(HASHES, index))


def test_out_of_order_chunks_survive_a_restart_and_the_upload_resumes_to_a_verified_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, 1 << 30)
    assert not _put(store, 3) and not _put(store, 1)
    assert not _put(store, 1)  # idempotent
    with pytest.raises(BlobIncomplete):
        store.get_chunk(REF, 1)
    reopened = BlobStore(tmp_path, 1 << 30)  # the process restarted
    assert reopened.held_chunks(REF) == [1, 3]
    assert not _put(reopened, 0)
    assert _put(reopened, 2)
    assert reopened.has(REF) and reopened.read(REF) == DATA
    assert reopened.held_chunks(REF) == [0, 1, 2, 3]
    assert not list((tmp_path / "partial").iterdir())
    answer = BlobStore(tmp_path, 1 << 30).get_chunk(REF, 2)  # proofs come from the stored hashes
    assert answer.chunk == CHUNKS[2] and answer.proof == chunk_proof(HASHES, 2)
    assert _put(reopened, 0)  # a chunk of a complete blob: complete, nothing written


def test_a_chunk_damaged_on_disk_is_dropped_at_restart_and_fetched_again(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, 1 << 30)
    _put(store, 0)
    _put(store, 2)
    part = next((tmp_path / "partial").glob("*.part"))
    with open(part, "r+b") as f:  # bit rot in chunk 2
        f.seek(2 * CHUNK_BYTES + 5)
        f.write(b"\xff")
    with open(next((tmp_path / "partial").glob("*.log")), "ab") as f:
        f.write(b"\x00\x00")  # and a torn last record
    reopened = BlobStore(tmp_path, 1 << 30)
    assert reopened.held_chunks(REF) == [0] and reopened.corrupt_chunks == 1
    for i in (1, 2, 3):
        _put(reopened, i)
    assert reopened.read(REF) == DATA


def test_bad_chunks_and_oversized_blobs_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, 3 * CHUNK_BYTES)
    with pytest.raises(BlobTooLarge):
        _put(store, 0)
    store = BlobStore(tmp_path, 1 << 30)
    flipped = bytearray(CHUNKS[1])
    flipped[0] ^= 1
    with pytest.raises(BadChunk):
        store.put_chunk(REF, 1, bytes(flipped), chunk_proof(HASHES, 1))
    with pytest.raises(BadChunk):
        store.put_chunk(REF, 1, CHUNKS[0], chunk_proof(HASHES, 0))
    assert not list((tmp_path / "partial").iterdir()) and store.held_chunks(REF) == []
    with pytest.raises(BlobUnknown):
        store.read(REF)


def test_a_ref_whose_sha256_lies_is_discarded_when_its_last_chunk_arrives(tmp_path: Path) -> None:
    liar = REF.model_copy(update={"sha256": b"\x01" * 32})
    store = BlobStore(tmp_path, 1 << 30)
    for i in range(3):
        store.put_chunk(liar, i, CHUNKS[i], chunk_proof(HASHES, i))
    with pytest.raises(BlobMismatch):
        store.put_chunk(liar, 3, CHUNKS[3], chunk_proof(HASHES, 3))
    assert not store.has(liar) and store.held_chunks(liar) == []
    assert not list((tmp_path / "partial").iterdir()) and not list((tmp_path / "complete").iterdir())

