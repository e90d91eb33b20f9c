"""State proofs: a validator shows the part of its state trie a read touched; anyone checks it.

A proof is the trie pruned to the nodes a read opened (:mod:`core.smt`): an
opened branch with its label, an opened leaf with its key and value hash (and
its value when the read returned it), and every subtree the read did not open
as its bare hash. Hashing it back up gives the root; if that root is the
``state_hash`` of a certified header, the pruned trie *is* part of the state
that 2f + 1 validators signed.

Checking is re-execution, not trust in the served value: the client runs the
very query function the validator ran (``fl_contracts.queries``,
``ids.queries``, :func:`receipt_of`) over a :class:`ProvenState` built from the
proof. The read walks the same nodes in the same order as on the validator, so
a complete proof answers it and the answer is certified, whether it is a value,
an absent key or a whole range; a proof that leaves out a node the read needs
(a hidden alert, say) raises :class:`core.errors.ProofIncomplete`.

Which state: the header at height H commits the state *after H - 1*
(``core.block``). A :class:`ProvenAnswer` therefore carries the state height
``h``, the header of block ``h + 1`` and that block's commit certificate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from core import codec, smt
from core.accounts import account_state
from core.api import ACCOUNT, Query, Receipt, TxGetParams
from core.block import BlockHeader
from core.errors import DecodeError, FbciError, InvalidInput, ProofIncomplete, ProofInvalid
from core.state import StateView
from core.wire import HexBytes

MAX_PROOF_DEPTH = 512
"""Deeper than any path a trie over the chain's keys can have (see ``core.smt``); bounds the checker."""


@dataclass(frozen=True)
class PHash:
    hash: bytes


@dataclass(frozen=True)
class PLeaf:
    key: bytes
    value_hash: bytes
    value: bytes | None
    """Present when the read returned it; a leaf opened only to see its key carries its hash alone."""


@dataclass(frozen=True)
class PBranch:
    crit: int
    label: bytes
    left: PNode
    right: PNode


PNode = PHash | PLeaf | PBranch


@dataclass(frozen=True)
class StateProof:
    root: PNode | None
    """None: the empty map."""

    def encode(self) -> bytes:
        """Pre-order, flat (a branch's two subtrees follow it), so nesting stays within the codec's bound."""
        out: list[list[Any]] = []
        stack: list[PNode] = [] if self.root is None else [self.root]
        while stack:
            node = stack.pop()
            if isinstance(node, PHash):
                out.append([0, node.hash])
            elif isinstance(node, PLeaf):
                out.append([1, node.key, node.value_hash, node.value])
            else:
                out.append([2, node.crit, node.label])
                stack += [node.right, node.left]
        return codec.encode(out)

    @classmethod
    def decode(cls, data: bytes) -> StateProof:
        try:
            items = codec.decode(data, max_size=len(data))
        except DecodeError as exc:
            raise ProofInvalid(f"the state proof is not canonical: {exc.message}") from None
        if not isinstance(items, list):
            raise ProofInvalid("a state proof is a list of nodes")
        if not items:
            return cls(None)
        position = 0

        def read(depth: int) -> PNode:
            nonlocal position
            if depth > MAX_PROOF_DEPTH or position >= len(items):
                raise ProofInvalid("the state proof is truncated or nests too deep")
            item = items[position]
            position += 1
            if _shaped(item, 0, (bytes,)) and len(item[1]) == 32:
                return PHash(item[1])
            if _shaped(item, 1, (bytes, bytes, (bytes, type(None)))) and len(item[2]) == 32:
                return PLeaf(item[1], item[2], item[3])
            if _shaped(item, 2, (int, bytes)) and not isinstance(item[1], bool) and item[1] >= 0:
                left = read(depth + 1)
                return PBranch(item[1], item[2], left, read(depth + 1))
            raise ProofInvalid(f"state proof node {position - 1} has no known shape")

        root = read(0)
        if position != len(items):
            raise ProofInvalid("the state proof has nodes after its tree")
        return cls(root)

    def root_hash(self) -> bytes:
        return smt.EMPTY_ROOT if self.root is None else _hash(self.root, 0)


def _shaped(item: Any, tag: int, types: tuple[Any, ...]) -> bool:
    return (isinstance(item, list) and len(item) == len(types) + 1 and item[0] == tag
            and all(isinstance(v, t) for v, t in zip(item[1:], types)))


def _hash(node: PNode, depth: int) -> bytes:
    if depth > MAX_PROOF_DEPTH:
        raise ProofInvalid("the state proof nests too deep")
    if isinstance(node, PHash):
        return node.hash
    if isinstance(node, PLeaf):
        if node.value is not None and smt.value_hash(node.value) != node.value_hash:
            raise ProofInvalid(f"the proof's value for key {node.key!r} does not match its hash")
        return smt.leaf_hash(node.key, node.value_hash)
    return smt.branch_hash(node.crit, node.label, _hash(node.left, depth + 1), _hash(node.right, depth + 1))


class _ProofSource:
    """:class:`core.smt.NodeSource` over a proof: a pruned subtree is a node the read may not open."""

    def __init__(self) -> None:
        self._values: dict[bytes, bytes | None] = {}

    def node(self, handle: PNode) -> smt.Leaf | smt.Branch[PNode]:
        if isinstance(handle, PHash):
            raise ProofIncomplete("the proof leaves out part of the state this read needs")
        if isinstance(handle, PLeaf):
            self._values[handle.key] = handle.value
            return smt.Leaf(handle.key, handle.value_hash)
        return smt.Branch(handle.crit, handle.label, handle.left, handle.right)

    def value(self, leaf: smt.Leaf) -> bytes:
        value = self._values.get(leaf.key)
        if value is None:
            raise ProofIncomplete(f"the proof shows key {leaf.key!r} but not its value, which this read needs")
        return value


class _TrieStateView:
    """A read-only :class:`core.state.StateView` over one trie root, reading nodes from ``_source``."""

    _root: Any
    _source: smt.NodeSource[Any]
    _what = "a trie state"

    def get(self, key: bytes) -> bytes | None:
        return smt.lookup(self._source, self._root, key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return smt.scan(self._source, self._root, *smt.prefix_range(prefix, start))

    def range(self, low: bytes, high: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """Every pair with ``low <= key < high``: complete, or :class:`ProofIncomplete` over a proof."""
        return smt.scan(self._source, self._root, low, high)

    def set(self, key: bytes, value: bytes) -> None:
        raise InvalidInput(f"{self._what} is read-only")

    def delete(self, key: bytes) -> None:
        raise InvalidInput(f"{self._what} is read-only")


class ProvenState(_TrieStateView):
    """The certified state, as far as a proof shows it."""

    _what = "a proven state"

    def __init__(self, proof: StateProof, state_root: bytes) -> None:
        if proof.root_hash() != state_root:
            raise ProofInvalid("the state proof does not hash to the certified state root")
        self._root = proof.root
        self._source = _ProofSource()


class _RecordingSource:
    """:class:`core.smt.NodeSource` over the stored trie that remembers what a read opened."""

    def __init__(self, load: smt.NodeLoader) -> None:
        self._load = load
        self.opened: dict[smt.Ref, smt.Leaf | smt.Branch[smt.Ref]] = {}
        self.values: dict[bytes, bytes] = {}
        self.read: set[bytes] = set()

    def node(self, handle: smt.Ref) -> smt.Leaf | smt.Branch[smt.Ref]:
        node = self.opened.get(handle)
        if node is None:
            node, value = smt.decode_stored(self._load(handle))
            self.opened[handle] = node
            if isinstance(node, smt.Leaf):
                self.values[node.key] = value
        return node

    def value(self, leaf: smt.Leaf) -> bytes:
        self.read.add(leaf.key)
        return self.values[leaf.key]  # stored leaves keep their value in line


class TreeState(_TrieStateView):
    """A read-only :class:`core.state.StateView` of one stored trie version that records the nodes its
    reads open, so the same reads can be answered with :meth:`proof`."""

    _what = "a stored state version"

    def __init__(self, load: smt.NodeLoader, root: smt.Ref | None) -> None:
        self._root = root
        self._source: _RecordingSource = _RecordingSource(load)

    def proof(self) -> StateProof:
        return StateProof(None if self._root is None else self._prune(self._root))

    def _prune(self, ref: smt.Ref) -> PNode:
        node = self._source.opened.get(ref)
        if node is None:
            return PHash(ref.hash)
        if isinstance(node, smt.Leaf):
            value = self._source.values[node.key] if node.key in self._source.read else None
            return PLeaf(node.key, node.value_hash, value)
        return PBranch(node.crit, node.label, self._prune(node.left), self._prune(node.right))


# --- receipts in state -----------------------------------------------------------------------------

RECEIPT_PREFIX = b"rcpt/"
"""Each committed transaction's outcome is also written to state, under its hash, so a proof shows it."""


@dataclass(frozen=True)
class StateReceipt:
    """The part of a :class:`core.api.Receipt` that state commits to: everything but the message text
    (a human explanation, which stays in the validator's transaction index)."""

    height: int
    index: int
    ok: bool
    code: int
    reason: str
    result: dict[str, Any]

    @classmethod
    def of(cls, receipt: Receipt) -> StateReceipt:
        return cls(receipt.height, receipt.index, receipt.ok, receipt.code, receipt.reason, receipt.result)

    def encode(self) -> bytes:
        return codec.encode([self.height, self.index, self.ok, self.code, self.reason, self.result])


def receipt_key(tx_hash: bytes) -> bytes:
    return RECEIPT_PREFIX + tx_hash


def receipt_of(state: StateView, tx_hash: bytes) -> StateReceipt | None:
    raw = state.get(receipt_key(tx_hash))
    return None if raw is None else StateReceipt(*codec.decode(raw))


def _receipt(state: StateView, p: TxGetParams) -> StateReceipt | None:
    return receipt_of(state, p.hash)


TX_RECEIPT: Query[TxGetParams, StateReceipt | None] = Query(
    "tx_receipt", "A committed transaction's outcome as state commits to it (None: not committed).", TxGetParams,
    StateReceipt | None)

CORE_STATE_QUERIES: tuple[tuple[Query[Any, Any], Any], ...] = ((ACCOUNT, account_state), (TX_RECEIPT, _receipt))
"""The reads of core-owned state (accounts, receipts), each with the function that answers it over a
:class:`core.state.StateView`: the validator runs it over its stored trie, a client over a proof."""


# --- what a validator answers ----------------------------------------------------------------------

@dataclass(frozen=True)
class ProvenAnswer:
    """A query's result with what makes it checkable: the proof of the reads that produced it, against
    the state after ``state_height``, which the header of block ``state_height + 1`` commits to, and
    that block's commit certificate."""

    result: Any
    """The query's result as the validator computed it (wire form); the client recomputes it."""
    state_height: int
    header: HexBytes
    """``BlockHeader.encode()`` of block ``state_height + 1``."""
    certificate: HexBytes
    proof: HexBytes
    not_found: str | None = None
    """Set (and ``result`` None) when the proven read found nothing: the query's ``NotFound`` message,
    which the client must reproduce from the proof, so absence is as checkable as a value."""

    def block_header(self) -> BlockHeader:
        try:
            header = BlockHeader.from_fields(codec.decode(self.header, max_size=len(self.header)))
        except FbciError as exc:
            raise ProofInvalid(f"the answer's header does not decode: {exc.message}") from None
        if header.height != self.state_height + 1:
            raise ProofInvalid(f"the answer proves the state after height {self.state_height} against the header "
                               f"of height {header.height}; it must be the header of height {self.state_height + 1}")
        return header
