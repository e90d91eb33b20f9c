"""The application's side of state sync: list the kept snapshots, cut chunks of them, restore one.

The trie keeps the versions at the last two multiples of the genesis
``snapshot_interval`` (``node/trie_versions.py``). A snapshot at height S is
the state after block S, whose root only the header of block S + 1 carries
(``core.block``: a header commits the state after the previous block), so one
is offered once block S + 1 is stored: a joining validator can then take that
header and its certificate as the root to check every chunk against.

A restored store starts at S: block S is stored with the certificate block
S + 1 carries for it (its ``last_commit``, which the S + 1 certificate covers
through ``prev_commit_hash``), and the start-up gap scan begins above S, so
the store is whole from there and block sync carries on at S + 1.
"""

from __future__ import annotations

from core import smt
from core.errors import NotFound, StoreCorrupt
from core.snapshot import (
    ChunkReply, ChunkRequest, RestoredSnapshot, SnapshotInfo, SnapshotList, make_chunk, snapshot_heights, split_points,
)
from core.validators import ScheduledSet
from node.stores import BlockStore, Database, _leveldb
from node.state_store import StateStore

CHUNK_KEYS = 500
"""Small enough that one chunk (cut in pure Python on the serving validator's chunk worker,
``node/snapshot_serving.py``) holds the interpreter for tens of milliseconds at a time, not hundreds."""
CHUNK_BYTES = 1 << 20
"""A chunk's proof size past its first pair, and at most half a block (a SYNC frame holds two)."""
PARTS = 64
"""Ranges a snapshot is cut into, so a joiner can ask several peers at once."""


class SnapshotServer:
    def __init__(self, state: StateStore, blocks: BlockStore, max_block_bytes: int) -> None:
        self.state = state
        self.blocks = blocks
        self.chunk_bytes = min(CHUNK_BYTES, max_block_bytes // 2)
        self._boundaries: dict[tuple[int, bytes], tuple[bytes, ...]] = {}

    def list(self, schedule: tuple[ScheduledSet, ...]) -> SnapshotList:
        """The kept snapshots whose root a stored header certifies, newest first, with the chain's
        validator-set ``schedule`` a joiner follows to the set certifying them."""
        last = self.blocks.last_height
        offered: list[SnapshotInfo] = []
        for height in snapshot_heights(self.state.height, self.state.snapshot_interval):
            keys = self.state.snapshot_keys(height)
            if height + 1 > last or keys is None:
                continue
            root = self.state.tree_root(height)
            root_hash = smt.EMPTY_ROOT if root is None else root.hash
            cut = self._boundaries.get((height, root_hash))
            if cut is None:
                cut = self._boundaries[(height, root_hash)] = split_points(self.state.node, root, PARTS)
            offered.append(SnapshotInfo(height, root_hash, keys, cut))
        self._boundaries = {k: v for k, v in self._boundaries.items() if k[0] in {s.height for s in offered}}
        return SnapshotList(tuple(offered), schedule)

    def chunk(self, request: ChunkRequest) -> ChunkReply:
        """One chunk of a kept snapshot; without one (dropped meanwhile, never taken) a reply that says so."""
        if request.height not in snapshot_heights(self.state.height, self.state.snapshot_interval):
            return ChunkReply(request.height, request.start, request.limit, None)
        try:
            root = self.state.tree_root(request.height)
            chunk = make_chunk(self.state.node, root, request.start, CHUNK_KEYS, request.limit, self.chunk_bytes)
        except (NotFound, StoreCorrupt):
            return ChunkReply(request.height, request.start, request.limit, None)
        return ChunkReply(request.height, request.start, request.limit, chunk.encode())


def restore(database: Database, state: StateStore, blocks: BlockStore, snapshot: RestoredSnapshot) -> None:
    """State, block and certificate of a verified snapshot in one fsynced batch, so a crash leaves either
    the genesis-only store (state sync runs again) or a whole store at the snapshot's height."""
    with _leveldb(f"restoring the state of height {snapshot.height}"), \
            database.db.write_batch(sync=True, transaction=True) as batch:
        root = state.put_restored(batch, snapshot.height, snapshot.items)
        if root != snapshot.root:
            raise StoreCorrupt(f"the restored state of height {snapshot.height} hashes to {root.hex()}, not to the "
                               f"certified {snapshot.root.hex()}")
        blocks.put(batch, snapshot.height, snapshot.block.hash, snapshot.raw_block, snapshot.certificate)
        blocks.put_base(batch, snapshot.height)
