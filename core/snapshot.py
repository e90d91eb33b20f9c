"""State-sync snapshots: which heights are kept, chunks checkable against a certified root alone, and the
peer messages that carry them.

Because the state trie is ordered by key (``core.smt``), a contiguous range
``[start, end)`` with the proof of a scan over it shows every key the state
holds there, and nothing else. So a joining validator needs no separately
committed chunk hashes: it takes the ``state_hash`` of a certified header
and checks each chunk against that root as it arrives. A snapshot is
advertised with *boundaries*, keys that cut the key space into ranges the
joiner fetches in parallel; a boundary needs no trust either, since any
ascending list starting at ``b""`` partitions the keys, and a lying peer can
only make the ranges uneven. A peer can send a chunk that does not verify
(refused, and the peer is to blame) or a short one, which ends before its
range's limit (slow, not wrong: the rest of the range is asked again); it
cannot make the joining validator restore a state the validators did not
sign. :func:`make_chunk` is the serving side, :func:`verify_chunk` the
joining side, ``node/statesync.py`` the protocol around them and
``node/snapshots.py`` (through ``StateStore.put_restored``) writes the result.

Wire format on the SYNC channel (canonical msgpack, beside block sync's):
``["list_snapshots"]``; ``["snapshots", [[height, root, keys, [boundary, ...]],
...], [[start, validator set bytes], ...]]`` (the serving validator's schedule of
validator sets, genesis's first at height 1: what a joiner follows from
genesis to the set that certifies the snapshot, ``node/snapshot_trust.py``);
``["get_chunk", height, start, limit or null]``;
``["chunk", height, start, limit or null, chunk bytes or null]`` (null: that
snapshot is no longer kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core import codec, smt
from core.block import Block
from core.errors import BadStateSyncMessage, DecodeError, ProofInvalid
from core.hashing import HASH_SIZE
from core.proofs import ProvenState, StateProof, TreeState
from core.validators import ScheduledSet, ValidatorSet

KEEP_SNAPSHOTS = 2
MAX_BOUNDARIES = 256
"""At most this many ranges per snapshot, so a listing stays a small frame."""
MAX_LISTED = 4
MAX_SETS = 1024
"""At most this many validator sets in a listing's schedule (one change per two blocks at the fastest)."""
MAX_KEY_BYTES = 4096
NODE_BYTES = 128
"""A chunk's proof bytes per pair beyond its key and value: a leaf's and a branch's hashes and framing."""


# --- which heights are snapshots -----------------------------------------------------------------

def snapshot_heights(height: int, interval: int) -> tuple[int, ...]:
    """The snapshot heights kept at ``height``: the last :data:`KEEP_SNAPSHOTS` positive multiples of
    ``interval`` not above it, newest first (none when ``interval`` is 0)."""
    if interval <= 0 or height < interval:
        return ()
    newest = height - height % interval
    return tuple(h for h in range(newest, newest - KEEP_SNAPSHOTS * interval, -interval) if h > 0)


def dropped_snapshot(height: int, interval: int) -> int | None:
    """The snapshot that committing ``height`` stops keeping (it takes a new one), if any."""
    if interval <= 0 or height % interval or height - KEEP_SNAPSHOTS * interval <= 0:
        return None
    return height - KEEP_SNAPSHOTS * interval


def holding_snapshot(snapshots: tuple[int, ...], written: int, replaced: int) -> int | None:
    """The newest kept snapshot that still reaches a trie node written at version ``written`` and
    replaced at ``replaced`` (it belongs to versions ``written .. replaced - 1``), or None."""
    return next((s for s in snapshots if written <= s < replaced), None)


# --- chunks --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Chunk:
    start: bytes
    end: bytes | None
    """The first key after this chunk (None: the chunk runs to the end of the state)."""
    proof: bytes
    """``StateProof`` of the scan over ``[start, end)``, values included."""

    def encode(self) -> bytes:
        return codec.encode([self.start, self.end, self.proof])

    @classmethod
    def decode(cls, data: bytes) -> Chunk:
        try:
            value = codec.decode(data, max_size=len(data))
        except DecodeError as exc:
            raise ProofInvalid(f"a state chunk is not canonical: {exc.message}") from None
        if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], bytes)
                and isinstance(value[1], (bytes, type(None))) and isinstance(value[2], bytes)):
            raise ProofInvalid("a state chunk is [start, end or null, proof]")
        return cls(*value)


def make_chunk(load: smt.NodeLoader, root: smt.Ref | None, start: bytes, max_keys: int,
               limit: bytes | None = None, max_bytes: int | None = None) -> Chunk:
    """The pairs of ``[start, limit)`` from ``start`` on, at most ``max_keys`` of them and (past the
    first) a proof of at most about ``max_bytes`` (a pair costs its value, its key twice, as a leaf and
    in a branch's label, and :data:`NODE_BYTES` of hashes and framing).

    Two scans of one recording view: the first finds where the chunk ends, the second opens what a
    scan over exactly ``[start, end)`` needs (a scan cut short at the end key leaves some of those
    unopened) from the nodes the first already decoded. The proof holds both, so also the end key's
    path: a few nodes more than a verifier reads."""
    view = TreeState(load, root)
    end, count, size = limit, 0, 0
    for key, value in view.range(start, limit):
        cost = 2 * len(key) + len(value) + NODE_BYTES
        if count == max_keys or (max_bytes is not None and count and size + cost > max_bytes):
            end = key
            break
        count, size = count + 1, size + cost
    for _ in view.range(start, end):
        pass
    return Chunk(start, end, view.proof().encode())


def verify_chunk(chunk: Chunk, state_root: bytes, start: bytes, limit: bytes | None = None
                 ) -> list[tuple[bytes, bytes]]:
    """The pairs of a chunk of the range ``[start, limit)``, proven complete from ``start`` to the
    chunk's end against ``state_root``."""
    if chunk.start != start:
        raise ProofInvalid(f"the chunk starts at {chunk.start!r}, not at the requested {start!r}")
    if chunk.end is not None and chunk.end <= chunk.start:
        raise ProofInvalid("the chunk ends where it starts: it would never make progress")
    if limit is not None and (chunk.end is None or chunk.end > limit):
        raise ProofInvalid("the chunk runs past the limit of the range it was asked for")
    return list(ProvenState(StateProof.decode(chunk.proof), state_root).range(chunk.start, chunk.end))


def split_points(load: smt.NodeLoader, root: smt.Ref | None, parts: int) -> tuple[bytes, ...]:
    """Up to about ``parts`` ascending boundaries, ``b""`` first, cutting the trie at its top branches
    (each boundary after the first is the smallest key of a subtree), so the ranges hold similar key
    counts at a cost of ``parts`` x depth node reads."""
    frontier: list[smt.Ref] = [] if root is None else [root]
    while 0 < len(frontier) < parts:
        opened: list[smt.Ref] = []
        for ref in frontier:
            node, _ = smt.decode_stored(load(ref))
            opened += [node.left, node.right] if isinstance(node, smt.Branch) else [ref]
        if len(opened) == len(frontier):
            break
        frontier = opened
    boundaries = [b""]
    for ref in frontier[1:MAX_BOUNDARIES]:
        node, _ = smt.decode_stored(load(ref))
        while isinstance(node, smt.Branch):
            node, _ = smt.decode_stored(load(node.left))
        boundaries.append(node.key)
    return tuple(boundaries)


# --- messages ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SnapshotInfo:
    height: int
    """The state after this height; the header at ``height + 1`` certifies its root."""
    root: bytes
    keys: int
    """How many keys it holds, as the serving peer counts them (progress only: nothing relies on it)."""
    boundaries: tuple[bytes, ...]

    def fields(self) -> list[Any]:
        return [self.height, self.root, self.keys, list(self.boundaries)]


@dataclass(frozen=True)
class ListSnapshots:
    def encode(self) -> bytes:
        return codec.encode(["list_snapshots"])


@dataclass(frozen=True)
class SnapshotList:
    snapshots: tuple[SnapshotInfo, ...]
    schedule: tuple[ScheduledSet, ...]
    """Every validator set the serving validator's chain decided, genesis's first: a claim, checked
    set by set against certified headers before the joiner uses any of it."""

    def encode(self) -> bytes:
        return codec.encode(["snapshots", [s.fields() for s in self.snapshots],
                             [[item.start, item.validators.encode()] for item in self.schedule]])


@dataclass(frozen=True)
class ChunkRequest:
    height: int
    start: bytes
    limit: bytes | None

    def encode(self) -> bytes:
        return codec.encode(["get_chunk", self.height, self.start, self.limit])


@dataclass(frozen=True)
class ChunkReply:
    height: int
    start: bytes
    limit: bytes | None
    chunk: bytes | None
    """An encoded :class:`Chunk`; None: the peer no longer keeps that snapshot."""

    def encode(self) -> bytes:
        return codec.encode(["chunk", self.height, self.start, self.limit, self.chunk])


@dataclass(frozen=True)
class RestoredSnapshot:
    """A verified snapshot, ready to write: the state after ``height``, block ``height`` and its certificate."""

    height: int
    items: dict[bytes, bytes]
    root: bytes
    block: Block
    raw_block: bytes
    certificate: bytes


StateSyncMessage = ListSnapshots | SnapshotList | ChunkRequest | ChunkReply
TAGS = frozenset({"list_snapshots", "snapshots", "get_chunk", "chunk"})


def _height(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 63


def _key(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) <= MAX_KEY_BYTES


def _limit(value: Any) -> bool:
    return value is None or _key(value)


def _snapshot(value: Any) -> SnapshotInfo:
    if not (isinstance(value, list) and len(value) == 4 and _height(value[0]) and value[0] >= 1
            and isinstance(value[1], bytes) and len(value[1]) == HASH_SIZE and _height(value[2])
            and isinstance(value[3], list) and 1 <= len(value[3]) <= MAX_BOUNDARIES
            and all(_key(b) for b in value[3])):
        raise BadStateSyncMessage("a snapshot is [height >= 1, 32-byte root, keys, [boundary, ...]]")
    boundaries = tuple(value[3])
    if boundaries[0] != b"" or any(a >= b for a, b in zip(boundaries, boundaries[1:])):
        raise BadStateSyncMessage("a snapshot's boundaries must ascend strictly from the empty key")
    return SnapshotInfo(value[0], value[1], value[2], boundaries)


def _schedule(value: Any) -> tuple[ScheduledSet, ...]:
    if not (isinstance(value, list) and 1 <= len(value) <= MAX_SETS
            and all(isinstance(e, list) and len(e) == 2 and _height(e[0]) and isinstance(e[1], bytes) for e in value)):
        raise BadStateSyncMessage(f"a schedule is 1 to {MAX_SETS} [start height, validator set bytes]")
    starts = [e[0] for e in value]
    if starts[0] != 1 or any(a >= b for a, b in zip(starts, starts[1:])):
        raise BadStateSyncMessage("a schedule's start heights must ascend strictly from 1 (genesis's set)")
    try:
        sets = [ValidatorSet.decode(e[1]) for e in value]
    except DecodeError as exc:
        raise BadStateSyncMessage(f"a schedule holds a malformed validator set: {exc.message}") from None
    return tuple(ScheduledSet(start, s) for start, s in zip(starts, sets))


def decode_message(value: Any) -> StateSyncMessage | None:
    """A decoded SYNC-channel value as a state-sync message; None when it is none of them (block sync's).
    A state-sync tag with anything wrong around it raises :class:`BadStateSyncMessage`."""
    if not (isinstance(value, list) and value and isinstance(value[0], str) and value[0] in TAGS):
        return None
    tag, rest = value[0], value[1:]
    if tag == "list_snapshots" and not rest:
        return ListSnapshots()
    if tag == "snapshots" and len(rest) == 2 and isinstance(rest[0], list) and len(rest[0]) <= MAX_LISTED:
        return SnapshotList(tuple(_snapshot(s) for s in rest[0]), _schedule(rest[1]))
    if tag == "get_chunk" and len(rest) == 3 and _height(rest[0]) and _key(rest[1]) and _limit(rest[2]):
        return ChunkRequest(*rest)
    if tag == "chunk" and len(rest) == 4 and _height(rest[0]) and _key(rest[1]) and _limit(rest[2]) \
            and isinstance(rest[3], (bytes, type(None))):
        return ChunkReply(*rest)
    raise BadStateSyncMessage(f"a {tag!r} state-sync message of the wrong shape")
