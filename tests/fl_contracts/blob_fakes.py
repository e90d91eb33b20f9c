"""A blob store and validator attestations without a node, for the FL contract's blob path."""

from __future__ import annotations

import numpy as np

from core import codec
from core.blobs import Attestation, BlobRef, attest_key, blob_ref, chunk_proof, verify_chunk
from core.errors import BlobUnknown
from core.state import MemoryState
from core.validators import Validator, ValidatorSet, set_key
from fl_contracts.fixedpoint import encode_delta

VALIDATORS = tuple(bytes([0xA0 + i]) * 32 for i in range(4))
"""n = 4, so a blob needs 3 attestations."""


class FakeBlobs:
    """``fl_contracts.blob_updates.ModelBlobs`` in memory: chunks are checked as the node's store checks them."""

    def __init__(self) -> None:
        self.chunks: dict[bytes, dict[int, bytes]] = {}
        self.refs: dict[bytes, BlobRef] = {}
        self.reads = 0

    def add(self, data: bytes) -> BlobRef:
        """What a hospital's push leaves on this validator."""
        ref = blob_ref(data)
        from core.blobs import chunk_hashes, split

        hashes = chunk_hashes(data)
        for i, chunk in enumerate(split(data)):
            self.put_chunk(ref, i, chunk, chunk_proof(hashes, i))
        return ref

    def has(self, ref: BlobRef) -> bool:
        return self.refs.get(ref.sha256) == ref and len(self.chunks.get(ref.sha256, {})) == ref.chunks

    def read(self, ref: BlobRef) -> bytes:
        if not self.has(ref):
            raise BlobUnknown(f"no blob {ref.sha256.hex()[:16]}")
        self.reads += 1
        held = self.chunks[ref.sha256]
        return b"".join(held[i] for i in range(ref.chunks))

    def put_chunk(self, ref: BlobRef, index: int, chunk: bytes, proof: list[bytes]) -> bool:
        verify_chunk(ref, index, chunk, proof)
        self.refs[ref.sha256] = ref
        self.chunks.setdefault(ref.sha256, {})[index] = chunk
        return self.has(ref)


def with_validators(state: MemoryState) -> MemoryState:
    state.set(set_key(1), ValidatorSet(tuple(Validator(k, f"v{i}", f"127.0.0.1:{9000 + i}")
                                             for i, k in enumerate(VALIDATORS))).encode())
    return state


def attest(state: MemoryState, ref: BlobRef, height: int, count: int = 3) -> None:
    """``count`` of the validators attest holding ``ref`` in block ``height`` (as ``blob.attest`` records it)."""
    for v in VALIDATORS[:count]:
        state.set(attest_key(ref.sha256, v), codec.encode(Attestation(ref=ref, validator=v, height=height).model_dump()))


def delta_bytes(values: np.ndarray | list[int]) -> bytes:
    return encode_delta(np.asarray(values, dtype=np.int64))
