"""State-sync chunks: consecutive proven ranges rebuild exactly the certified state, and a bad one is refused."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ProofIncomplete, ProofInvalid
from core.proofs import PBranch, PHash, StateProof
from core.snapshot import Chunk, make_chunk, verify_chunk
from tests.core.test_smt import MAPS, MemoryTrie


def _sync(trie: MemoryTrie, root_hash: bytes, max_keys: int) -> dict[bytes, bytes]:
    restored: dict[bytes, bytes] = {}
    start: bytes | None = b""
    while start is not None:
        chunk = Chunk.decode(make_chunk(trie.nodes.__getitem__, trie.roots[trie.version], start, max_keys).encode())
        restored.update(verify_chunk(chunk, root_hash, start))
        start = chunk.end
    return restored


@given(MAPS, st.integers(1, 6))
@settings(max_examples=200, deadline=None)
def test_consecutive_chunks_rebuild_the_state(items, max_keys) -> None:
    trie = MemoryTrie()
    root = trie.apply(dict(items))
    assert _sync(trie, root, max_keys) == items


@given(st.dictionaries(st.binary(min_size=1, max_size=3), st.binary(max_size=3), min_size=4, max_size=30))
@settings(max_examples=100, deadline=None)
def test_a_chunk_with_a_hidden_key_or_for_another_root_is_refused(items) -> None:
    trie = MemoryTrie()
    root = trie.apply(dict(items))
    chunk = make_chunk(trie.nodes.__getitem__, trie.roots[0], b"", len(items))
    proof = StateProof.decode(chunk.proof)
    assert isinstance(proof.root, PBranch)
    hidden = StateProof(PBranch(proof.root.crit, proof.root.label, PHash(StateProof(proof.root.left).root_hash()),
                                proof.root.right))
    with pytest.raises(ProofIncomplete):
        verify_chunk(dataclasses.replace(chunk, proof=hidden.encode()), root, b"")
    with pytest.raises(ProofInvalid):
        verify_chunk(chunk, trie.apply({b"other": b"x"}), b"")
    with pytest.raises(ProofInvalid, match="not at the requested"):
        verify_chunk(chunk, root, b"\x00")
    with pytest.raises(ProofInvalid, match="never make progress"):
        verify_chunk(dataclasses.replace(chunk, end=b""), root, b"")
