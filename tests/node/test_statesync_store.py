"""Snapshot retention in the state trie: the last two snapshot heights stay whole, nothing else leaks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import smt
from core.errors import NotFound, StorageError
from core.proofs import ProvenState, StateProof, TreeState
from core.snapshot import dropped_snapshot, snapshot_heights
from node.stores import Database
from node.state_store import StateStore
from node.trie_versions import KEEP_VERSIONS
from tests.node.helpers import commit_writes

WRITES = st.dictionaries(st.binary(min_size=1, max_size=2), st.one_of(st.none(), st.binary(max_size=2)), max_size=5)


def _reachable(state: StateStore, root: smt.Ref | None, into: set[smt.Ref]) -> None:
    stack = [] if root is None else [root]
    while stack:
        ref = stack.pop()
        if ref in into:
            continue
        into.add(ref)
        node, _ = smt.decode_stored(state.node(ref))
        if isinstance(node, smt.Branch):
            stack += [node.left, node.right]


@given(st.lists(WRITES, min_size=1, max_size=30), st.sampled_from([1, 2, 3, 5, 7]))
@settings(max_examples=40, deadline=None)
def test_kept_snapshots_prove_their_state_and_nothing_unreachable_is_stored(tmp_path_factory, blocks, interval) -> None:
    db = Database(tmp_path_factory.mktemp("db"))
    state = StateStore(db, interval)
    history = commit_writes(state, blocks)
    last = len(blocks) - 1
    kept = set(range(max(0, last - KEEP_VERSIONS + 1), last + 1)) | set(snapshot_heights(last, interval))
    reachable: set[smt.Ref] = set()
    for height, (root_hash, items) in enumerate(history):
        if height not in kept:
            with pytest.raises(NotFound):
                state.tree_root(height)
            assert state.snapshot_keys(height) is None
            continue
        root = state.tree_root(height)
        _reachable(state, root, reachable)
        view = TreeState(state.node, root)
        assert dict(view.scan(b"")) == items
        assert dict(ProvenState(StateProof.decode(view.proof().encode()), root_hash).scan(b"")) == items
        if height in snapshot_heights(last, interval):
            assert state.snapshot_keys(height) == len(items)
    stored = {smt.Ref(int.from_bytes(k[6:14], "big"), k[14:])
              for k in db.db.iterator(prefix=b"smt/n/", include_value=False)}
    assert stored == reachable  # every kept version whole, and not one node more
    db.close()


def test_snapshot_heights_are_the_last_two_multiples() -> None:
    assert snapshot_heights(0, 10) == () and snapshot_heights(9, 10) == ()
    assert snapshot_heights(10, 10) == (10,) and snapshot_heights(29, 10) == (20, 10)
    assert snapshot_heights(35, 0) == ()
    assert dropped_snapshot(30, 10) == 10 and dropped_snapshot(20, 10) is None and dropped_snapshot(31, 10) is None


def test_a_restore_replaces_the_genesis_state_but_never_a_chain(tmp_path) -> None:
    state = StateStore(Database(tmp_path / "db"), 10)
    genesis = state.begin()
    genesis.set(b"genesis/only", b"x")
    state.commit(0, genesis)
    items = {b"acct/%d" % i: b"v" for i in range(50)}
    root = state.restore(20, items)
    assert dict(state.scan(b"")) == items and state.height == 20 and state.state_hash == root
    assert state.snapshot_keys(20) == 50 and not state.has_version(0)
    with pytest.raises(StorageError, match="only be restored"):
        state.restore(30, items)
