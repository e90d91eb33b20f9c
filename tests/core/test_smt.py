"""The state trie: its root is a function of the map alone, equal to a reference written from the
definition, and its proofs show exactly what the state holds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import smt
from core.errors import InvalidInput, ProofIncomplete, ProofInvalid
from core.hashing import sha256
from core.proofs import PBranch, PHash, PLeaf, ProvenState, StateProof, TreeState

# Few byte values, short keys: shared prefixes, keys that are prefixes of others, the empty key.
KEYS = st.lists(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]), max_size=4).map(bytes)
VALUES = st.binary(max_size=3)
MAPS = st.dictionaries(KEYS, VALUES, max_size=24)


# --- a reference written from the definition, bits as text -------------------------------------------

def _bits(key: bytes) -> str:
    return "".join("1" + format(b, "08b") for b in key) + "0"


def _label(bits: str) -> bytes:
    """Canonical label bytes of a bit prefix: whole 9-bit groups, then the partial byte zero-padded."""
    out = bytearray()
    for i in range(0, len(bits), 9):
        group = bits[i:i + 9]
        assert group[0] == "1"
        out.append(int(group[1:].ljust(8, "0"), 2))
    return bytes(out)


def reference_root(items: dict[bytes, bytes]) -> bytes:
    if not items:
        return smt.EMPTY_ROOT
    if len(items) == 1:
        (key, value), = items.items()
        return smt.leaf_hash(key, sha256(value))
    enc = {k: _bits(k) for k in items}
    crit = 0
    while len({e[crit] for e in enc.values()}) == 1:
        crit += 1
    left = {k: v for k, v in items.items() if enc[k][crit] == "0"}
    right = {k: v for k, v in items.items() if enc[k][crit] == "1"}
    label = _label(next(iter(enc.values()))[:crit])
    return smt.branch_hash(crit, label, reference_root(left), reference_root(right))


class MemoryTrie:
    """Stored nodes in a dict, versions applied with :func:`core.smt.update` and pruned like the node does."""

    def __init__(self, keep: int = 1_000_000) -> None:
        self.nodes: dict[smt.Ref, bytes] = {}
        self.roots: dict[int, smt.Ref | None] = {}
        self.keep = keep
        self.version = -1
        self.stale: list[tuple[int, smt.Ref]] = []

    def apply(self, writes: dict[bytes, bytes | None]) -> bytes:
        self.version += 1
        root = self.roots.get(self.version - 1)
        upd = smt.update(self.nodes.__getitem__, root, sorted(writes.items()), self.version)
        self.nodes.update(upd.puts)
        self.stale += [(self.version, ref) for ref in upd.stale]
        self.roots[self.version] = upd.root
        oldest = self.version - self.keep + 1
        for since, ref in [s for s in self.stale if s[0] <= oldest]:
            del self.nodes[ref]
        self.stale = [s for s in self.stale if s[0] > oldest]
        self.roots.pop(oldest - 1, None)
        return upd.root_hash

    def view(self, version: int | None = None) -> TreeState:
        return TreeState(self.nodes.__getitem__, self.roots[self.version if version is None else version])


def test_the_empty_map_and_one_key() -> None:
    trie = MemoryTrie()
    assert trie.apply({}) == smt.EMPTY_ROOT
    assert trie.apply({b"k": b"v"}) == smt.leaf_hash(b"k", sha256(b"v"))
    assert trie.apply({b"k": None}) == smt.EMPTY_ROOT


@given(MAPS)
@settings(max_examples=300, deadline=None)
def test_bulk_load_equals_the_reference_and_reads_back(items: dict[bytes, bytes]) -> None:
    nodes: dict[smt.Ref, bytes] = {}
    root = smt.bulk_load(items, 0, nodes.__setitem__)
    assert (smt.EMPTY_ROOT if root is None else root.hash) == reference_root(items)
    assert dict(TreeState(nodes.__getitem__, root).scan(b"")) == items


@given(st.lists(st.lists(st.tuples(KEYS, st.one_of(st.none(), VALUES)), max_size=8), max_size=8))
@settings(max_examples=300, deadline=None)
def test_incremental_batches_equal_the_reference_whatever_the_batching(batches) -> None:
    trie, one_at_a_time, model = MemoryTrie(keep=2), MemoryTrie(keep=2), {}
    for batch in batches:
        writes = dict(batch)
        root = trie.apply(writes)
        for key, value in batch:
            one_at_a_time.apply({key: value})
            model.pop(key, None) if value is None else model.__setitem__(key, value)
        assert root == reference_root(model)
        assert model == dict(trie.view().scan(b""))  # pruning kept every node the newest version reaches
    assert one_at_a_time.apply({}) == trie.apply({})


@given(MAPS, st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_root_is_independent_of_insertion_order(items, rnd) -> None:
    order = list(items.items())
    rnd.shuffle(order)
    trie = MemoryTrie()
    for key, value in order:
        trie.apply({key: value})
    assert trie.apply({}) == reference_root(items)


@given(MAPS, MAPS)
@settings(max_examples=200, deadline=None)
def test_deleting_what_was_added_restores_the_root(base, extra) -> None:
    trie = MemoryTrie(keep=2)
    before = trie.apply(dict(base))
    trie.apply({k: v for k, v in extra.items() if k not in base})
    assert trie.apply({k: None for k in extra if k not in base}) == before


@given(MAPS)
@settings(max_examples=100, deadline=None)
def test_an_older_kept_version_stays_readable(items) -> None:
    trie = MemoryTrie(keep=2)
    trie.apply(dict(items))
    trie.apply({k: v + b"!" for k, v in items.items()} | {b"\x01new": b"x"})
    assert dict(trie.view(0).scan(b"")) == items


# --- proofs ----------------------------------------------------------------------------------------

def _prove(items: dict[bytes, bytes], read) -> tuple[object, StateProof, bytes]:
    trie = MemoryTrie()
    root = trie.apply(dict(items))
    view = trie.view()
    answer = read(view)
    return answer, StateProof.decode(view.proof().encode()), root


@given(MAPS, KEYS)
@settings(max_examples=300, deadline=None)
def test_point_proofs_of_present_and_absent_keys_verify(items, key) -> None:
    answer, proof, root = _prove(items, lambda s: s.get(key))
    assert answer == items.get(key)
    assert ProvenState(proof, root).get(key) == items.get(key)


@given(MAPS, KEYS, st.one_of(st.none(), KEYS))
@settings(max_examples=300, deadline=None)
def test_range_proofs_verify_and_are_complete(items, prefix, start) -> None:
    answer, proof, root = _prove(items, lambda s: list(s.scan(prefix, start)))
    expected = sorted((k, v) for k, v in items.items() if k.startswith(prefix) and (start is None or k >= start))
    assert answer == expected
    assert list(ProvenState(proof, root).scan(prefix, start)) == expected


def _tamper_targets(node, path=()):
    yield path, node
    if isinstance(node, PBranch):
        yield from _tamper_targets(node.left, path + ("left",))
        yield from _tamper_targets(node.right, path + ("right",))


def _replace(node, path, new):
    if not path:
        return new
    side, rest = path[0], path[1:]
    return PBranch(node.crit, node.label, *(
        (_replace(node.left, rest, new), node.right) if side == "left" else (node.left, _replace(node.right, rest, new))))


def _tampered(node):
    """Every single-field change a lying validator could make to one proof node."""
    if isinstance(node, PHash):
        yield PHash(bytes([node.hash[0] ^ 1]) + node.hash[1:])
    elif isinstance(node, PLeaf):
        yield PLeaf(node.key + b"\x00", node.value_hash, node.value)
        yield PLeaf(node.key, sha256(b"forged"), node.value)
        if node.value is not None:
            yield PLeaf(node.key, node.value_hash, node.value + b"!")
            yield PLeaf(node.key, sha256(node.value + b"!"), node.value + b"!")
    else:
        yield PBranch(node.crit + 1, node.label, node.left, node.right)
        yield PBranch(node.crit, node.label + b"\x00", node.left, node.right)
        yield PBranch(node.crit, node.label, node.right, node.left)


@given(st.dictionaries(KEYS, VALUES, min_size=1, max_size=16), KEYS)
@settings(max_examples=200, deadline=None)
def test_any_tampered_proof_node_fails(items, prefix) -> None:
    _, proof, root = _prove(items, lambda s: list(s.scan(prefix)))
    assert proof.root is not None
    for path, node in _tamper_targets(proof.root):
        for forged in _tampered(node):
            with pytest.raises(ProofInvalid):
                ProvenState(StateProof(_replace(proof.root, path, forged)), root)


@given(st.dictionaries(KEYS, VALUES, min_size=2, max_size=16))
@settings(max_examples=200, deadline=None)
def test_a_proof_holds_only_what_its_read_touched(items) -> None:
    key = sorted(items)[0]
    _, proof, root = _prove(items, lambda s: s.get(key))
    state = ProvenState(proof, root)
    assert state.get(key) == items[key]
    with pytest.raises(ProofIncomplete):  # the whole range needs nodes the point read never opened
        list(state.scan(b""))


def test_a_proof_for_another_root_or_a_hidden_leaf_is_refused() -> None:
    items = {b"ids/a/1": b"one", b"ids/a/2": b"two", b"ids/a/3": b"three"}
    _, proof, root = _prove(items, lambda s: list(s.scan(b"ids/a/")))
    with pytest.raises(ProofInvalid):
        ProvenState(proof, sha256(b"another root"))
    assert isinstance(proof.root, PBranch)
    hidden = StateProof(PBranch(proof.root.crit, proof.root.label, proof.root.left,
                                PHash(StateProof(proof.root.right).root_hash())))
    with pytest.raises(ProofIncomplete):  # same root, but one alert's leaf withheld
        list(ProvenState(hidden, root).scan(b"ids/a/"))
    with pytest.raises(InvalidInput):
        ProvenState(proof, root).set(b"k", b"v")


@pytest.mark.parametrize("raw", [b"\x91\x93\x07\x00\x00", b"\x01", b"\x92\x92\x00" + b"\xc4\x20" + bytes(32)])
def test_malformed_proof_bytes_are_refused(raw: bytes) -> None:
    with pytest.raises(ProofInvalid):
        StateProof.decode(raw)
