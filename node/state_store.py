"""Application state on the validator's LevelDB: the flat keys, their Merkle trie and the buffers over them.

A block's writes go to a :class:`PendingState` buffer on the store (each
transaction's on the block's, merged only when it succeeds) and reach disk in
the block's one batch (``node.stores.commit_block``). Reads off the event loop
take a :class:`PinnedState`, so a commit landing meanwhile does not change
what they see. The trie layout and version keeping are described in
:mod:`node.stores` and :mod:`node.trie_versions`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from core import smt
from core.errors import StorageError
from node.stores import Database, _leveldb, _prefix_end
from node.trie_versions import TrieVersions, u64


class PendingState:
    """A write buffer over committed state that implements ``core.state.StateView``.

    Buffers stack: a block's buffer sits on the store, and each transaction
    gets its own buffer on the block's, merged only if the transaction
    succeeds, so a rejected transaction changes nothing.
    """

    def __init__(self, parent: StateStore | PendingState) -> None:
        self._parent = parent
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self._parent.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        self.writes[key] = bytes(value)

    def delete(self, key: bytes) -> None:
        self.writes[key] = None

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        merged = dict(self._parent.scan(prefix, start))
        for key, value in self.writes.items():
            if key.startswith(prefix) and (start is None or key >= start):
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
        yield from sorted(merged.items())

    def child(self) -> PendingState:
        return PendingState(self)

    def merge_into_parent(self) -> None:
        if not isinstance(self._parent, PendingState):
            raise StorageError("only a nested buffer can be merged into its parent")
        self._parent.writes.update(self.writes)


def _scan(source: Any, prefix: bytes, start: bytes | None) -> Iterator[tuple[bytes, bytes]]:
    if start is None or start <= prefix:
        yield from source.iterator(prefix=prefix)
        return
    end = _prefix_end(prefix)  # plyvel takes a prefix or a range, not both: the range of the prefix from start
    yield from source.iterator(start=start, stop=end) if end is not None else source.iterator(start=start)


class PinnedState:
    """A read-only :class:`core.state.StateView` of the state at one moment (a LevelDB snapshot)."""

    def __init__(self, snapshot: Any) -> None:
        self._snapshot = snapshot

    def get(self, key: bytes) -> bytes | None:
        return self._snapshot.get(key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return _scan(self._snapshot, prefix, start)

    def set(self, key: bytes, value: bytes) -> None:
        raise StorageError("a pinned read of the state is read-only")

    def delete(self, key: bytes) -> None:
        raise StorageError("a pinned read of the state is read-only")


class StateStore(TrieVersions):
    """Application state (accounts, contracts), its Merkle trie, the applied height and the state hash."""

    _STATE = b"st/"

    def __init__(self, database: Database, snapshot_interval: int = 0) -> None:
        super().__init__(database.db, snapshot_interval)
        self._db = database.db.prefixed_db(self._STATE)

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return _scan(self._db, prefix, start)

    def pinned(self) -> PinnedState:
        """The state as it stands now, which a commit landing meanwhile does not change: reads off the
        event loop (``node.service.ReadWorker``) take several keys, and must see them from one height."""
        return PinnedState(self._db.snapshot())

    def begin(self) -> PendingState:
        return PendingState(self)

    @property
    def state_hash(self) -> bytes:
        return self._root.get(self._HASH) or smt.EMPTY_ROOT

    def _key_count(self) -> int:
        """Keys in the state now; a store written before the count was kept counts them once."""
        raw = self._root.get(self._KEYS)
        if raw is not None:
            return struct.unpack(">Q", raw)[0]
        return sum(1 for _ in self._db.iterator(include_value=False))

    def commit(self, height: int, pending: PendingState) -> bytes:
        """Apply one block's writes, the height and the new hash in one fsynced batch."""
        with _leveldb(f"storing the state of height {height}"), \
                self._root.write_batch(sync=True, transaction=True) as batch:
            return self.put(batch, height, pending)

    def put(self, batch: Any, height: int, pending: PendingState) -> bytes:
        """Add one block's state writes, its trie nodes, the height and the new root to a root-database
        ``batch``: the trie work is the block's writes times the depth, never the state's size."""
        if height != self.height + 1:
            raise StorageError(f"state is at height {self.height}; cannot apply height {height}")
        items = sorted(pending.writes.items())
        update = smt.update(self.node, None if height == 0 else self.tree_root(height - 1), items, height)
        keys = self._key_count() + sum((value is not None) - (self._db.get(key) is not None) for key, value in items)
        self._count_keys(batch, height, keys)
        for key, value in items:
            if value is None:
                batch.delete(self._STATE + key)
            else:
                batch.put(self._STATE + key, value)
        for ref in update.stale:
            batch.put(self._STALE + u64(height) + u64(ref.version) + ref.hash, b"")
        self._put_version(batch, height, update.root, update.puts)
        return update.root_hash

    def restore(self, height: int, items: dict[bytes, bytes]) -> bytes:
        """Write a whole state as ``height`` into an empty store in one batch, its trie built bottom-up
        in one pass (a large initial state; the state-commit bench loads its maps this way)."""
        with _leveldb(f"restoring the state of height {height}"), \
                self._root.write_batch(sync=True, transaction=True) as batch:
            return self.put_restored(batch, height, items)

    def put_restored(self, batch: Any, height: int, items: dict[bytes, bytes]) -> bytes:
        """Add a whole state as ``height`` to a root-database ``batch``, replacing a store that holds at most
        the genesis state (a joining validator writes genesis state before state sync restores over it)."""
        if self.height > 0:
            raise StorageError(f"state is at height {self.height}; a whole state can only be restored into "
                               "an empty store or over the genesis state")
        for prefix in (self._STATE, b"smt/"):
            for key in self._root.iterator(prefix=prefix, include_value=False):
                batch.delete(key)
        for key, value in items.items():
            batch.put(self._STATE + key, value)
        root = smt.bulk_load(items, height, lambda ref, raw: batch.put(self._NODE + u64(ref.version) + ref.hash, raw))
        self._count_keys(batch, height, len(items))
        self._put_version(batch, height, root, [])
        return smt.EMPTY_ROOT if root is None else root.hash
