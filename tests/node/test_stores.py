"""LevelDB stores: atomic commits, deterministic state hash, reopen after a crash."""

import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.api import Receipt
from core.errors import NotFound, StorageError
from core.state import MemoryState
from node.stores import BlockStore, Database, TxIndex
from node.state_store import StateStore


def test_state_commit_is_atomic_with_height_and_hash(tmp_path) -> None:
    db = Database(tmp_path / "db")
    state = StateStore(db)
    assert state.height == -1
    p = state.begin()
    p.set(b"a", b"1")
    p.set(b"b", b"2")
    h0 = state.commit(0, p)
    assert state.height == 0 and state.state_hash == h0
    p = state.begin()
    p.delete(b"a")
    p.set(b"c", b"3")
    assert p.get(b"a") is None and p.get(b"b") == b"2"
    assert list(p.scan(b"")) == [(b"b", b"2"), (b"c", b"3")]
    h1 = state.commit(1, p)
    assert h1 != h0 and state.get(b"a") is None and state.get(b"c") == b"3"
    with pytest.raises(StorageError, match="height"):
        state.commit(5, state.begin())
    db.close()


def test_state_hash_depends_only_on_writes_not_their_order(tmp_path) -> None:
    hashes = []
    for i, order in enumerate(([b"x", b"y", b"z"], [b"z", b"x", b"y"])):
        db = Database(tmp_path / f"db{i}")
        state = StateStore(db)
        p = state.begin()
        for key in order:
            p.set(key, key * 2)
        hashes.append(state.commit(0, p))
        db.close()
    assert hashes[0] == hashes[1]


def test_nested_buffer_discarded_changes_nothing(tmp_path) -> None:
    db = Database(tmp_path / "db")
    state = StateStore(db)
    block = state.begin()
    block.set(b"k", b"block")
    tx = block.child()
    tx.set(b"k", b"tx")
    tx.set(b"other", b"x")
    assert tx.get(b"k") == b"tx"
    assert block.get(b"k") == b"block" and block.get(b"other") is None
    tx2 = block.child()
    tx2.set(b"other", b"y")
    tx2.merge_into_parent()
    assert block.get(b"other") == b"y"
    db.close()


def test_block_store_and_tx_index(tmp_path) -> None:
    db = Database(tmp_path / "db")
    blocks, index = BlockStore(db), TxIndex(db)
    assert blocks.last_height == 0
    blocks.save(1, b"H" * 32, b"block-1", b"cert-1")
    assert blocks.last_height == 1 and blocks.block(1) == b"block-1" and blocks.certificate(1) == b"cert-1"
    assert blocks.height_of(b"H" * 32) == 1
    with pytest.raises(NotFound):
        blocks.block(2)
    with pytest.raises(NotFound):
        blocks.height_of(b"X" * 32)
    r = Receipt(1, 0, True, 0, "ok", "", {"n": 1})
    index.save({b"T" * 32: r})
    assert index.get(b"T" * 32) == r
    with pytest.raises(NotFound):
        index.get(b"U" * 32)
    db.close()


def test_kill_9_after_commit_loses_nothing(tmp_path) -> None:
    """A child process commits, prints, then is killed without closing the DB."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        from node.stores import Database, BlockStore
        from node.state_store import StateStore
        db = Database(__import__('pathlib').Path({str(tmp_path / 'db')!r}))
        state, blocks = StateStore(db), BlockStore(db)
        for h in range(0, 50):
            p = state.begin(); p.set(b'k%d' % h, b'v')
            blocks.save(h + 1, bytes([h]) * 32, b'b', b'c')
            state.commit(h, p)
        print(state.state_hash.hex(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9
    printed = proc.stdout.strip()
    db = Database(tmp_path / "db")
    state = StateStore(db)
    assert state.height == 49 and state.state_hash.hex() == printed
    assert state.get(b"k49") == b"v" and BlockStore(db).last_height == 50
    db.close()


@settings(max_examples=60, deadline=None)
@given(keys=st.sets(st.binary(min_size=1, max_size=4), max_size=30), prefix=st.binary(max_size=2),
       start=st.none() | st.binary(max_size=4), pending=st.dictionaries(st.binary(min_size=1, max_size=4),
                                                                       st.none() | st.binary(max_size=3), max_size=8))
def test_a_seeking_scan_agrees_everywhere(tmp_path_factory, keys, prefix, start, pending) -> None:
    """LevelDB's range seek, the in-memory view and a write buffer over the store give the same pairs."""
    db = Database(tmp_path_factory.mktemp("scan"))
    try:
        store, memory = StateStore(db), MemoryState()
        base = store.begin()
        for key in keys:
            base.set(key, key[::-1])
            memory.set(key, key[::-1])
        store.commit(0, base)
        expected = [(k, k[::-1]) for k in sorted(keys) if k.startswith(prefix) and (start is None or k >= start)]
        assert list(store.scan(prefix, start)) == list(memory.scan(prefix, start)) == expected
        buffer = store.begin()
        for key, value in pending.items():
            if value is None:
                buffer.delete(key)
                memory.delete(key)
            else:
                buffer.set(key, value)
                memory.set(key, value)
        assert list(buffer.scan(prefix, start)) == list(memory.scan(prefix, start))
    finally:
        db.close()
