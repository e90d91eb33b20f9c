"""The state trie's stored versions: which heights stay readable, and pruning the rest.

Nodes are immutable and addressed by (version = height, hash) under
``smt/n/``; each version's root is under ``smt/root/`` and the nodes it
replaced under ``smt/stale/``. The last :data:`KEEP_VERSIONS` versions stay
readable (proofs are served from the version before the newest). With a
genesis ``snapshot_interval`` N the versions at the last two multiples of N
stay too, for state sync (``node/statesync.py``): a node one of them still
reaches moves from ``smt/stale/`` to ``smt/held/<snapshot>`` and is deleted
with that snapshot, when the next-but-one is taken. Every write here goes into
the caller's batch (``node/stores.py``), with the block that made it.
"""

from __future__ import annotations

import struct
from typing import Any

from core import codec, smt
from core.errors import NotFound, StoreCorrupt
from core.snapshot import dropped_snapshot, holding_snapshot, snapshot_heights


def u64(n: int) -> bytes:
    return struct.pack(">Q", n)


KEEP_VERSIONS = 4
"""How many state versions (heights) stay provable: proofs are served from the one before the newest,
and a client may ask for a slightly older certified header."""


class TrieVersions:
    """The trie half of ``node.stores.StateStore``, on the root database."""

    _HEIGHT = b"meta/height"
    _HASH = b"meta/state_hash"
    _NODE = b"smt/n/"
    _ROOT = b"smt/root/"
    _STALE = b"smt/stale/"
    _HELD = b"smt/held/"
    _KEYS = b"meta/state_keys"
    _SNAPSHOT_KEYS = b"smt/keys/"

    def __init__(self, root: Any, snapshot_interval: int) -> None:
        self._root = root
        self.snapshot_interval = snapshot_interval
        self._hot: tuple[dict[bytes, bytes], dict[bytes, bytes]] = ({}, {})
        """The nodes the last two commits wrote: the next block's paths start through most of them
        (the top levels, the accounts written every block). A node's content never changes under its
        key, so a cached node is right even if its commit failed: no stored root reaches it then."""

    @property
    def height(self) -> int:
        """The last applied height; -1 before genesis state is written."""
        raw = self._root.get(self._HEIGHT)
        return -1 if raw is None else struct.unpack(">q", raw)[0]

    def node(self, ref: smt.Ref) -> bytes:
        """A stored trie node (:class:`core.smt.NodeLoader`)."""
        key = self._NODE + u64(ref.version) + ref.hash
        raw = self._hot[0].get(key) or self._hot[1].get(key) or self._root.get(key)
        if raw is None:
            raise StoreCorrupt(f"the state trie lacks node {ref.hash.hex()} of version {ref.version}")
        return raw

    def tree_root(self, height: int) -> smt.Ref | None:
        """The trie's root after ``height`` (None: the empty map); NotFound once pruned."""
        raw = self._root.get(self._ROOT + u64(height))
        if raw is None:
            raise NotFound(f"the state after height {height} is no longer (or not yet) kept; this validator "
                           f"keeps the last {KEEP_VERSIONS} heights up to {self.height}")
        value = codec.decode(raw)
        return None if value is None else smt.Ref(*value)

    def has_version(self, height: int) -> bool:
        return self._root.get(self._ROOT + u64(height)) is not None

    def snapshot_keys(self, height: int) -> int | None:
        """How many keys the state held after snapshot ``height`` (None: no snapshot kept there)."""
        raw = self._root.get(self._SNAPSHOT_KEYS + u64(height))
        return None if raw is None or not self.has_version(height) else struct.unpack(">Q", raw)[0]

    def _count_keys(self, batch: Any, height: int, keys: int) -> None:
        batch.put(self._KEYS, u64(keys))
        if height in snapshot_heights(height, self.snapshot_interval):
            batch.put(self._SNAPSHOT_KEYS + u64(height), u64(keys))

    def _put_version(self, batch: Any, height: int, root: smt.Ref | None, puts: list[tuple[smt.Ref, bytes]]) -> None:
        written = {self._NODE + u64(ref.version) + ref.hash: raw for ref, raw in puts}
        for key, raw in written.items():
            batch.put(key, raw)
        self._hot = (written, self._hot[0])
        batch.put(self._ROOT + u64(height), codec.encode(None if root is None else list(root)))
        self._prune(batch, height)
        batch.put(self._HEIGHT, struct.pack(">q", height))
        batch.put(self._HASH, smt.EMPTY_ROOT if root is None else root.hash)

    def _prune(self, batch: Any, height: int) -> None:
        """Forget the versions that fall out of the kept window or the kept snapshots, and the nodes only
        they still reached.

        A node replaced at version s belongs to versions v..s-1 (v: the version that wrote it), so once
        the oldest kept version of the window is ``height - KEEP_VERSIONS + 1``, a node replaced at
        s <= that is unreachable unless a kept snapshot S has v <= S < s: it is then held by the newest
        such S, and deleted when S is dropped (snapshots are dropped oldest first)."""
        oldest = height - KEEP_VERSIONS + 1
        snapshots = snapshot_heights(height, self.snapshot_interval)
        dropped = dropped_snapshot(height, self.snapshot_interval)
        if dropped is not None:
            if dropped < oldest - 1:
                batch.delete(self._ROOT + u64(dropped))
            batch.delete(self._SNAPSHOT_KEYS + u64(dropped))
            for key in self._root.iterator(prefix=self._HELD + u64(dropped), include_value=False):
                batch.delete(self._NODE + key[len(self._HELD) + 8:])
                batch.delete(key)
        if oldest <= 0:
            return
        if oldest - 1 not in snapshots:
            batch.delete(self._ROOT + u64(oldest - 1))
        for key in self._root.iterator(start=self._STALE, stop=self._STALE + u64(oldest + 1), include_value=False):
            node = key[len(self._STALE) + 8:]
            holder = holding_snapshot(snapshots, struct.unpack(">Q", node[:8])[0],
                                      struct.unpack(">Q", key[len(self._STALE):len(self._STALE) + 8])[0])
            if holder is None:
                batch.delete(self._NODE + node)
            else:
                batch.put(self._HELD + u64(holder) + node, b"")
            batch.delete(key)
