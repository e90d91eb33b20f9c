"""The authenticated state map: a Merkle crit-bit (binary Patricia) trie over the raw state keys.

Why not a sparse Merkle tree over ``sha256(key)``: hashing the keys scatters
them, so a proof can show one key but never that a *range* is complete, and
the reads a client most needs to trust are ranges: "every alert of this
hospital since height h", "the whole round history". Here the trie is ordered
by the keys themselves, so the same proof format covers a point read, an
absent key and a complete range scan (see :mod:`core.proofs`).

Keys as bits. A key ``k`` is read as the prefix-free, order-preserving bit
string ``E(k)``: for each byte a ``1`` flag then its 8 bits, then a ``0``
terminator (9 * len(k) + 1 bits). Bytewise key order is the order of ``E``.

Shape (a function of the key set alone, so the root is independent of the
order of insertions, of how writes are batched into blocks, and a delete
restores the previous root):

- a map with one key is a leaf;
- otherwise the root is a branch at the *critical bit* ``c``, the first bit
  on which the keys' encodings do not all agree; keys with bit ``c`` = 0 form
  its left subtree, the others its right. Its ``label`` is the ``c`` bits all
  its keys share (:func:`label_of`).

Hashes (SHA-256, domain-separated by a leading tag byte, lengths as 4-byte
big-endian so no two nodes share an encoding): ``leaf = H(0x00 || len(key) ||
key || H(value))``, ``branch = H(0x01 || c || len(label) || label || left ||
right)``, and the empty map's root is :data:`EMPTY_ROOT`. A
branch commits to its label, so a proof can show where an unopened subtree's
keys lie without opening it.

Depth: one branch per critical bit on a key's path, so a path is at most the
key's bit length, and for the keys the contracts write (fixed prefixes, then
hashes or big-endian counters) about ``log2 n`` plus one per prefix fan-out.
``bench/bench_state_commit.py`` reports the measured depths.

Storage is the caller's: nodes are immutable and addressed by :class:`Ref`
(the version, i.e. height, that created them, and their hash), so the caller
keeps older versions readable until it prunes them (:class:`Update` lists
what a version made stale). This module does no I/O (``NodeSource``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, Protocol, TypeVar

from core.errors import StoreCorrupt
from core.hashing import sha256

EMPTY_ROOT = sha256(b"fbci/state/empty")
"""The root of the empty map."""

H = TypeVar("H")
_U32 = struct.Struct(">I")
_U32U32 = struct.Struct(">II")
_U64 = struct.Struct(">Q")


class Ref(NamedTuple):
    """Where a stored node lives: the version that wrote it and its hash."""

    version: int
    hash: bytes


# --- keys as bit strings ---------------------------------------------------------------------------

def bit(key: bytes, index: int) -> int:
    """Bit ``index`` of ``E(key)`` (0 past its end)."""
    q, r = divmod(index, 9)
    if q >= len(key):
        return 0
    return 1 if r == 0 else (key[q] >> (8 - r)) & 1


def common_bits(a: bytes, b: bytes) -> int:
    """How many leading bits ``E(a)`` and ``E(b)`` share (for ``a != b``: the index of their critical bit)."""
    if a == b:
        return 9 * len(a) + 1
    shortest = min(len(a), len(b))
    i = 0
    while i < shortest and a[i] == b[i]:
        i += 1
    if i == shortest:
        return 9 * i  # the shorter one ends: its terminator 0 against the other's flag 1
    return 9 * i + 1 + 8 - (a[i] ^ b[i]).bit_length()


def label_of(key: bytes, crit: int) -> bytes:
    """The first ``crit`` bits of ``E(key)``, canonically: the whole bytes they cover, then the partial
    byte (its bits past the label cleared) when the label reaches into it."""
    q, r = divmod(crit, 9)
    if r == 0:
        return key[:q]
    return key[:q] + bytes([key[q] & (0xFF << (9 - r)) & 0xFF])


def compare_label(crit: int, label: bytes, key: bytes) -> int:
    """Where every key under a branch lies against ``key``: -1 all below it, 1 all above it,
    0 when ``key`` shares the branch's ``crit`` bits (the branch may hold keys on both sides)."""
    c = common_bits(label, key)
    if c >= crit:
        return 0
    return 1 if bit(label, c) > bit(key, c) else -1


# --- nodes -----------------------------------------------------------------------------------------

def value_hash(value: bytes) -> bytes:
    return sha256(value)


def leaf_hash(key: bytes, digest: bytes) -> bytes:
    return sha256(b"\x00" + _U32.pack(len(key)) + key + digest)


def branch_hash(crit: int, label: bytes, left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + _U32U32.pack(crit, len(label)) + label + left + right)


@dataclass(frozen=True)
class Leaf:
    key: bytes
    value_hash: bytes

    @property
    def hash(self) -> bytes:
        return leaf_hash(self.key, self.value_hash)


@dataclass(frozen=True)
class Branch(Generic[H]):
    """``left``/``right``: handles the reader's :class:`NodeSource` resolves (a :class:`Ref` in the
    store, a proof node in a proof)."""

    crit: int
    label: bytes
    left: H
    right: H

    def child(self, side: int) -> H:
        return self.right if side else self.left


class NodeSource(Protocol[H]):
    """What the read algorithms need from a tree's storage: open a node, read a leaf's value."""

    def node(self, handle: H) -> Leaf | Branch[H]: ...

    def value(self, leaf: Leaf) -> bytes: ...


def encode_stored(node: Leaf | Branch[Ref], value: bytes = b"") -> bytes:
    """A stored node, in a fixed binary layout (the node's own store, read back only by
    :func:`decode_stored`): a leaf keeps its value in line, so older versions stay readable."""
    if isinstance(node, Leaf):
        return b"\x00" + _U32.pack(len(node.key)) + node.key + node.value_hash + value
    return (b"\x01" + _U32U32.pack(node.crit, len(node.label)) + node.label + _U64.pack(node.left.version)
            + node.left.hash + _U64.pack(node.right.version) + node.right.hash)


def decode_stored(raw: bytes) -> tuple[Leaf | Branch[Ref], bytes]:
    try:
        if raw[0] == 0:
            (size,) = _U32.unpack_from(raw, 1)
            end = 5 + size
            return Leaf(raw[5:end], raw[end:end + 32]), raw[end + 32:]
        if raw[0] == 1:
            crit, size = _U32U32.unpack_from(raw, 1)
            at = 9 + size
            left = Ref(_U64.unpack_from(raw, at)[0], raw[at + 8:at + 40])
            right = Ref(_U64.unpack_from(raw, at + 40)[0], raw[at + 48:at + 80])
            if len(right.hash) == 32 and len(raw) == at + 80:
                return Branch(crit, raw[9:at], left, right), b""
    except (IndexError, struct.error):
        pass
    raise StoreCorrupt("a stored state-trie node has an unknown shape")


# --- reads (shared by the validator and by proof verification) -------------------------------------

def lookup(source: NodeSource[H], root: H | None, key: bytes) -> bytes | None:
    """The value under ``key``: follow its bits to the one leaf it could be (crit-bit search)."""
    if root is None:
        return None
    node = source.node(root)
    while isinstance(node, Branch):
        node = source.node(node.child(bit(key, node.crit)))
    return source.value(node) if node.key == key else None


def scan(source: NodeSource[H], root: H | None, low: bytes, high: bytes | None) -> Iterator[tuple[bytes, bytes]]:
    """Key-ordered pairs with ``low <= key < high`` (``high`` None: no bound), opening only the nodes
    whose label says they may hold such keys, so a proof of the scan holds exactly those."""
    if root is None:
        return
    stack: list[H] = [root]
    while stack:
        node = source.node(stack.pop())
        if isinstance(node, Leaf):
            if node.key >= low and (high is None or node.key < high):
                yield node.key, source.value(node)
            continue
        if compare_label(node.crit, node.label, low) < 0:
            continue
        if high is not None and compare_label(node.crit, node.label, high) > 0:
            continue
        stack.append(node.right)
        stack.append(node.left)


def prefix_range(prefix: bytes, start: bytes | None) -> tuple[bytes, bytes | None]:
    """``StateView.scan(prefix, start)`` as a half-open key range."""
    low = prefix if start is None or start < prefix else start
    trimmed = prefix.rstrip(b"\xff")
    high = trimmed[:-1] + bytes([trimmed[-1] + 1]) if trimmed else None
    return low, high


# --- batch update ----------------------------------------------------------------------------------

@dataclass(eq=False)
class _Leaf:
    key: bytes
    value_hash: bytes
    value: bytes
    orig: Ref | None = None


@dataclass(eq=False)
class _Branch:
    crit: int
    label: bytes
    children: list[_Child]
    orig: Ref | None = None
    orig_children: tuple[Ref, Ref] | None = None


_Child = Ref | _Leaf | _Branch


class NodeLoader(Protocol):
    def __call__(self, ref: Ref) -> bytes: ...


@dataclass(frozen=True)
class Update:
    """One version's effect on the stored tree: its root, the nodes to store, the nodes it replaced."""

    root: Ref | None
    root_hash: bytes
    puts: list[tuple[Ref, bytes]] = field(default_factory=list)
    stale: list[Ref] = field(default_factory=list)


class _Batch:
    """A version being built: nodes opened along the written keys' paths become mutable copies; the
    rest of the tree stays as references, so the work is (writes x depth), never the state's size."""

    def __init__(self, load: NodeLoader, root: Ref | None) -> None:
        self._load = load
        self.root: _Child | None = root
        self.opened: list[Ref] = []

    def _open(self, child: _Child) -> _Leaf | _Branch:
        if not isinstance(child, Ref):
            return child
        node, value = decode_stored(self._load(child))
        self.opened.append(child)
        if isinstance(node, Leaf):
            return _Leaf(node.key, node.value_hash, value, child)
        return _Branch(node.crit, node.label, [node.left, node.right], child, (node.left, node.right))

    def _path(self, key: bytes) -> tuple[list[_Branch], _Leaf]:
        assert self.root is not None
        node = self._open(self.root)
        self.root = node
        path: list[_Branch] = []
        while isinstance(node, _Branch):
            path.append(node)
            side = bit(key, node.crit)
            child = self._open(node.children[side])
            node.children[side] = child
            node = child
        return path, node

    def _replace(self, path: list[_Branch], depth: int, key: bytes, new: _Child) -> None:
        """Put ``new`` where the node at ``depth`` on ``key``'s path was."""
        if depth == 0:
            self.root = new
        else:
            parent = path[depth - 1]
            parent.children[bit(key, parent.crit)] = new

    def set(self, key: bytes, value: bytes) -> None:
        leaf = _Leaf(key, value_hash(value), value)
        if self.root is None:
            self.root = leaf
            return
        path, found = self._path(key)
        if found.key == key:
            if found.value_hash != leaf.value_hash:
                self._replace(path, len(path), key, leaf)
            return
        crit = common_bits(key, found.key)
        depth = next((i for i, b in enumerate(path) if b.crit > crit), len(path))
        below: _Child = path[depth] if depth < len(path) else found
        children: list[_Child] = [leaf, below] if bit(key, crit) == 0 else [below, leaf]
        self._replace(path, depth, key, _Branch(crit, label_of(key, crit), children))

    def delete(self, key: bytes) -> None:
        if self.root is None:
            return
        path, found = self._path(key)
        if found.key != key:
            return
        if not path:
            self.root = None
            return
        parent = path[-1]
        self._replace(path, len(path) - 1, key, parent.children[1 - bit(key, parent.crit)])

    def finish(self, version: int) -> Update:
        if self.root is None:
            return Update(None, EMPTY_ROOT, [], list(self.opened))
        puts: list[tuple[Ref, bytes]] = []
        kept: set[Ref] = set()
        root = self._store(self.root, version, puts, kept)
        return Update(root, root.hash, puts, [r for r in self.opened if r not in kept])

    def _store(self, child: _Child, version: int, puts: list[tuple[Ref, bytes]], kept: set[Ref]) -> Ref:
        if isinstance(child, Ref):
            return child
        if isinstance(child, _Leaf):
            if child.orig is not None:  # opened on a path, left as it was
                kept.add(child.orig)
                return child.orig
            ref = Ref(version, leaf_hash(child.key, child.value_hash))
            puts.append((ref, encode_stored(Leaf(child.key, child.value_hash), child.value)))
            return ref
        left = self._store(child.children[0], version, puts, kept)
        right = self._store(child.children[1], version, puts, kept)
        if child.orig is not None and child.orig_children == (left, right):
            kept.add(child.orig)
            return child.orig
        ref = Ref(version, branch_hash(child.crit, child.label, left.hash, right.hash))
        puts.append((ref, encode_stored(Branch(child.crit, child.label, left, right))))
        return ref


def update(load: NodeLoader, root: Ref | None, writes: Sequence[tuple[bytes, bytes | None]], version: int) -> Update:
    """Apply one block's writes (value None: delete) to the tree at ``root`` as ``version``."""
    batch = _Batch(load, root)
    for key, value in writes:
        if value is None:
            batch.delete(key)
        else:
            batch.set(key, value)
    return batch.finish(version)


def _build(keys: list[bytes], items: dict[bytes, bytes], lo: int, hi: int, version: int,
           put: Callable[[Ref, bytes], None]) -> bytes:
    if hi - lo == 1:
        key = keys[lo]
        leaf = Leaf(key, value_hash(items[key]))
        put(Ref(version, leaf.hash), encode_stored(leaf, items[key]))
        return leaf.hash
    crit = common_bits(keys[lo], keys[hi - 1])  # sorted: the extremes disagree first
    first, last = lo + 1, hi - 1  # sorted keys sharing the first crit bits: bit crit is 0s, then 1s
    while first < last:
        middle = (first + last) // 2
        first, last = (first, middle) if bit(keys[middle], crit) else (middle + 1, last)
    left = _build(keys, items, lo, first, version, put)
    right = _build(keys, items, first, hi, version, put)
    label = label_of(keys[lo], crit)
    digest = branch_hash(crit, label, left, right)
    put(Ref(version, digest), encode_stored(Branch(crit, label, Ref(version, left), Ref(version, right))))
    return digest


def bulk_load(items: dict[bytes, bytes], version: int, put: Callable[[Ref, bytes], None]) -> Ref | None:
    """Every node of a whole map at ``version``, built bottom-up in one pass and handed to ``put`` as it
    is made (a loader for a large initial state; a block's writes go through :func:`update`)."""
    if not items:
        return None
    keys = sorted(items)
    return Ref(version, _build(keys, items, 0, len(keys), version, put))
