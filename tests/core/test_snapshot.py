"""State-sync chunks: consecutive proven ranges rebuild exactly the certified state, and a bad one is refused."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ProofIncomplete, ProofInvalid
from core.proofs import PBranch, PHash, StateProof
from core.snapshot import Chunk, make_chunk, split_points, verify_chunk
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


@given(MAPS, st.integers(1, 8), st.sampled_from([1, 64, 300]), st.integers(1, 70))
@settings(max_examples=200, deadline=None)
def test_ranges_cut_at_split_points_and_short_chunks_rebuild_the_state(items, parts, max_bytes, max_keys) -> None:
    """The joiner's schedule: ranges from the split points, each fetched in chunks bounded by keys and bytes,
    a short chunk continued from its end; every chunk stays inside its range."""
    trie = MemoryTrie()
    root = trie.apply(dict(items))
    load, top = trie.nodes.__getitem__, trie.roots[trie.version]
    boundaries = split_points(load, top, parts)
    assert boundaries[0] == b"" and list(boundaries) == sorted(set(boundaries))
    restored: dict[bytes, bytes] = {}
    for start, limit in zip(boundaries, [*boundaries[1:], None]):
        at: bytes | None = start
        while at != limit:
            assert at is not None
            chunk = Chunk.decode(make_chunk(load, top, at, max_keys, limit, max_bytes).encode())
            pairs = verify_chunk(chunk, root, at, limit)
            assert (pairs or not items) and all(at <= key and (limit is None or key < limit) for key, _ in pairs)
            restored.update(pairs)
            at = chunk.end
    assert restored == items


def test_a_chunk_past_its_range_limit_is_refused() -> None:
    trie = MemoryTrie()
    root = trie.apply({b"a": b"1", b"b": b"2", b"c": b"3"})
    whole = make_chunk(trie.nodes.__getitem__, trie.roots[0], b"", 10)
    with pytest.raises(ProofInvalid, match="past the limit"):
        verify_chunk(whole, root, b"", b"b")
