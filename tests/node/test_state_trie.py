"""The state trie on LevelDB: committed with the state in one batch, older versions kept then pruned."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import NotFound
from core.proofs import ProvenState, StateProof, TreeState
from node.stores import Database
from node.state_store import StateStore
from node.trie_versions import KEEP_VERSIONS
from tests.node.helpers import commit_writes

WRITES = st.dictionaries(st.binary(min_size=1, max_size=3), st.one_of(st.none(), st.binary(max_size=3)), max_size=6)


@given(st.lists(WRITES, min_size=1, max_size=12))
@settings(max_examples=30, deadline=None)
def test_every_kept_version_proves_the_state_of_its_height(tmp_path_factory, blocks) -> None:
    db = Database(tmp_path_factory.mktemp("db"))
    state = StateStore(db)
    history = commit_writes(state, blocks)
    last = len(blocks) - 1
    for height, (root_hash, items) in enumerate(history):
        if height <= last - KEEP_VERSIONS:
            with pytest.raises(NotFound, match="no longer"):
                state.tree_root(height)
            continue
        view = TreeState(state.node, state.tree_root(height))
        assert dict(view.scan(b"")) == items
        proven = ProvenState(StateProof.decode(view.proof().encode()), root_hash)
        assert dict(proven.scan(b"")) == items
    assert state.state_hash == history[-1][0]
    db.close()


def test_pruning_deletes_the_nodes_no_kept_version_reaches(tmp_path) -> None:
    db = Database(tmp_path / "db")
    state = StateStore(db)
    for height in range(3 * KEEP_VERSIONS):
        pending = state.begin()
        pending.set(b"counter", height.to_bytes(8, "big"))
        pending.set(b"fixed", b"x")
        state.commit(height, pending)
    nodes = sum(1 for _ in db.db.iterator(prefix=b"smt/n/", include_value=False))
    # one branch and one counter leaf per kept version, and the one "fixed" leaf they share
    assert nodes == 2 * KEEP_VERSIONS + 1
    db.close()


def test_a_restored_state_has_the_root_of_the_same_state_built_block_by_block(tmp_path) -> None:
    items = {b"acct/%d" % i: b"v%d" % i for i in range(300)}
    built = StateStore(Database(tmp_path / "built"))
    for height, chunk in enumerate([list(items.items())[i:i + 50] for i in range(0, 300, 50)]):
        pending = built.begin()
        for key, value in chunk:
            pending.set(key, value)
        built.commit(height, pending)
    restored = StateStore(Database(tmp_path / "restored"))
    assert restored.restore(5, items) == built.state_hash
    pending = restored.begin()
    pending.delete(b"acct/7")
    restored.commit(6, pending)
    assert restored.get(b"acct/7") is None and TreeState(restored.node, restored.tree_root(6)).get(b"acct/8") == b"v8"


def test_a_state_whose_trie_root_is_lost_is_refused_at_start(tmp_path) -> None:
    import struct

    from core.errors import StoreCorrupt
    from tests.node.helpers import open_ledger
    from tests.node.test_storage_integrity import _damage, grow

    ledger = open_ledger(tmp_path / "db")
    grow(ledger, 3)
    ledger.app.database.close()
    _damage(tmp_path / "db", b"smt/root/" + struct.pack(">Q", 3))
    with pytest.raises(StoreCorrupt, match="the state trie has no root for the state's height 3"):
        open_ledger(tmp_path / "db").app.check_stored_chain()


def test_a_commit_cut_short_is_replayed_to_the_same_root_as_an_uncut_chain(tmp_path) -> None:
    from core.proofs import receipt_key
    from tests.node.helpers import open_ledger
    from tests.node.test_storage_integrity import grow

    whole, cut = open_ledger(tmp_path / "whole"), open_ledger(tmp_path / "cut")
    grow(whole, 4)
    grow(cut, 3)
    block = whole.app.block_at(4)
    cut.app.blocks.save(4, block.hash, block.encode(), whole.app.blocks.certificate(4))  # stored, not applied
    cut.app.database.close()
    reopened = open_ledger(tmp_path / "cut")
    assert reopened.app.replay_unapplied() == 1
    assert reopened.app.state.state_hash == whole.app.state.state_hash
    receipts = list(whole.app.state.scan(receipt_key(b"")))  # receipts are part of the replayed state
    assert len(receipts) == 4 and list(reopened.app.state.scan(receipt_key(b""))) == receipts


def test_a_state_synced_from_chunks_has_the_certified_root(tmp_path) -> None:
    from core.snapshot import make_chunk, verify_chunk

    source = StateStore(Database(tmp_path / "source"))
    pending = source.begin()
    for i in range(500):
        pending.set(b"k/%04d" % i, b"v%d" % i)
    root = source.commit(0, pending)
    items: dict[bytes, bytes] = {}
    start: bytes | None = b""
    while start is not None:
        chunk = make_chunk(source.node, source.tree_root(0), start, 64)
        items.update(verify_chunk(chunk, root, start))
        start = chunk.end
    joined = StateStore(Database(tmp_path / "joined"))
    assert joined.restore(0, items) == root and dict(joined.scan(b"")) == dict(source.scan(b""))
