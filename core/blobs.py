"""Content-addressed blobs: what a large model update is, how each chunk is checked, and when it is available.

A transaction is capped at ``max_tx_bytes``, so an update too large for one
travels beside the chain as a **blob**: its bytes cut into chunks of
:data:`CHUNK_BYTES` (the last one shorter), named by a :class:`BlobRef` that a
transaction carries instead of the bytes. The ref binds the blob three ways:
``sha256`` of the whole, its ``size`` (which fixes the chunk count and every
chunk's length), and ``chunk_root``, the :func:`core.hashing.merkle_root` of
the chunks' SHA-256 hashes. A receiver checks each chunk on arrival against
``chunk_root`` with a :func:`chunk_proof` (sibling hashes whose sides follow
from the index, never from the sender), so one bad chunk is refused without
the rest of the blob, and the assembled whole against ``sha256``.

On chain, a validator that holds a complete, verified blob says so in a
``blob.attest`` transaction (``node.blob_attest``). A blob is *available*
once a quorum of the current validator set attested it: at least f + 1 of
those are honest and serve it, so every honest validator can fetch it before
it executes a block that reads it. FL contracts mark the blobs an open round
still reads in the *need* index and drop the mark at round close; validators
fetch what is needed and available, and keep what the *keep* index names.

State layout (values are canonical msgpack of the record's ``model_dump()``)::

    blob/att/<sha256:32><validator key:32>              Attestation
    blob/need/<sha256:32><round:8 BE><model id utf-8>   Need     (written and deleted by fl_contracts)
    blob/keep/<sha256:32><version:8 BE><model id utf-8> Keep     (a global model version's blob, if any)

This module is pure: no I/O. ``node.blobs`` stores and moves the bytes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictBytes, StrictInt, StrictStr

from core import codec
from core.audit import merkle_path
from core.errors import BadChunk
from core.hashing import HASH_SIZE, merkle_root, sha256
from core.state import StateView
from core.validators import schedule, set_at
from core.wire import WIRE_BYTES

CHUNK_BYTES = 2 * 1024 * 1024
"""Each chunk but the last is exactly this long: large enough that a 100 MB update is 50 requests, small
enough that one hex-encoded chunk (4 MiB of text) stays a modest JSON-RPC body."""

MAX_BLOB_BYTES = 512 * 1024 * 1024
"""The largest blob any ref may name (genesis ``max_blob_bytes`` may set a lower limit for one chain)."""

MAX_CHUNKS = -(-MAX_BLOB_BYTES // CHUNK_BYTES)
MAX_PROOF_HASHES = (MAX_CHUNKS - 1).bit_length()
"""A proof has at most one sibling per tree level."""

_STORED = ConfigDict(extra="forbid", strict=True, frozen=True, **WIRE_BYTES)
_Hash = StrictBytes


class BlobRef(BaseModel):
    """Names a blob: what a transaction carries instead of its bytes."""

    model_config = _STORED
    sha256: _Hash = Field(min_length=HASH_SIZE, max_length=HASH_SIZE, description="SHA-256 of the whole blob")
    size: StrictInt = Field(gt=0, le=MAX_BLOB_BYTES, description="length in bytes")
    chunk_root: _Hash = Field(min_length=HASH_SIZE, max_length=HASH_SIZE,
                              description="Merkle root (core.hashing) of the chunks' SHA-256 hashes")

    @property
    def chunks(self) -> int:
        return chunk_count(self.size)

    def chunk_size(self, index: int) -> int:
        """The exact length chunk ``index`` must have."""
        if not 0 <= index < self.chunks:
            raise BadChunk(f"chunk index {index} is outside 0..{self.chunks - 1}", data={"chunks": self.chunks})
        return min(CHUNK_BYTES, self.size - index * CHUNK_BYTES)


def chunk_count(size: int) -> int:
    """Chunks of a blob of ``size`` bytes (``size`` > 0)."""
    return -(-size // CHUNK_BYTES)


def split(data: bytes) -> list[bytes]:
    return [data[i:i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]


def chunk_hashes(data: bytes) -> list[bytes]:
    return [sha256(chunk) for chunk in split(data)]


def chunk_root(hashes: list[bytes]) -> bytes:
    return merkle_root(hashes)


def blob_ref(data: bytes) -> BlobRef:
    """The ref of ``data``; an empty or oversized blob is refused (nothing to carry, or more than any chain takes)."""
    return BlobRef(sha256=sha256(data), size=len(data), chunk_root=chunk_root(chunk_hashes(data)))


def chunk_proof(hashes: list[bytes], index: int) -> list[bytes]:
    """Sibling hashes from chunk ``index``'s leaf up to the root; a level's odd last node has none."""
    return [sibling for _, sibling in merkle_path(hashes, index)]


def verify_chunk(ref: BlobRef, index: int, chunk: bytes, proof: list[bytes]) -> None:
    """Raise :class:`BadChunk` unless ``chunk`` is chunk ``index`` of the blob ``ref`` names.

    The sides of the siblings follow from ``index`` and the chunk count, so a genuine chunk offered at
    another position does not verify, and its length must be the one ``ref.size`` fixes."""
    if len(chunk) != ref.chunk_size(index):
        raise BadChunk(f"chunk {index} of this blob is {ref.chunk_size(index)} bytes, not {len(chunk)}")
    if len(proof) > MAX_PROOF_HASHES or any(len(h) != HASH_SIZE for h in proof):
        raise BadChunk("a chunk proof is a short list of 32-byte hashes")
    node = sha256(b"\x00" + sha256(chunk))
    position, width, siblings = index, ref.chunks, iter(proof)
    while width > 1:
        if position ^ 1 < width:  # the odd last node of a level moves up unpaired
            sibling = next(siblings, None)
            if sibling is None:
                raise BadChunk(f"chunk {index}: the proof is too short for {ref.chunks} chunks")
            node = sha256(b"\x01" + sibling + node) if position & 1 else sha256(b"\x01" + node + sibling)
        position, width = position // 2, (width + 1) // 2
    if next(siblings, None) is not None or node != ref.chunk_root:
        raise BadChunk(f"chunk {index} does not verify against the blob's chunk_root")


class BlobSource(Protocol):
    """Blob bytes by ref, which the node hands to a contract that reads updates at round close.

    On an honest validator ``read`` never misses for a blob that is available and needed: the node fetched
    it before executing the block (``node.blobs``)."""

    def has(self, ref: BlobRef) -> bool: ...

    def read(self, ref: BlobRef) -> bytes:
        """The verified bytes; raises :class:`core.errors.BlobUnknown` when this node does not hold them."""
        ...


# -- availability: attestations on chain -------------------------------------------------------------

PREFIX = b"blob/"
ATTEST_PREFIX = PREFIX + b"att/"
NEED_PREFIX = PREFIX + b"need/"
KEEP_PREFIX = PREFIX + b"keep/"
ATTEST_KIND = "blob.attest"


class Attestation(BaseModel):
    """One validator's word that it holds the complete blob ``ref`` names, recorded at ``height``."""

    model_config = _STORED
    ref: BlobRef
    validator: _Hash = Field(min_length=HASH_SIZE, max_length=HASH_SIZE)
    height: StrictInt = Field(ge=0)


def attest_key(sha: bytes, validator: bytes) -> bytes:
    return ATTEST_PREFIX + sha + validator


def attestations(state: StateView, sha: bytes) -> list[Attestation]:
    """Every attestation of the blob named ``sha``, in validator-key order."""
    return [Attestation.model_validate(codec.decode(v)) for _, v in state.scan(ATTEST_PREFIX + sha)]


def quorum(n: int) -> int:
    """2f + 1 of n = 3f + 1 validators, as ``consensus.certificates.quorum_size`` counts it (core cannot
    import consensus; a test keeps the two equal)."""
    return (n + (n - 1) // 3) // 2 + 1


def available_ref(state: StateView, sha: bytes, validators: Collection[bytes], before_height: int) -> BlobRef | None:
    """The ref a quorum of ``validators`` attested for ``sha`` at heights below ``before_height``, if any.

    Attestations count per ref: a Byzantine validator attesting another size or root under the same
    SHA-256 adds to no honest quorum, and two quorums share an honest validator, so at most one ref wins."""
    members = set(validators)
    votes: dict[BlobRef, int] = {}
    for att in attestations(state, sha):
        if att.validator in members and att.height < before_height:
            votes[att.ref] = votes.get(att.ref, 0) + 1
    need = quorum(len(members))
    return next((ref for ref, count in votes.items() if count >= need), None)


def available(state: StateView, sha: bytes, validators: Collection[bytes], before_height: int) -> bool:
    return available_ref(state, sha, validators, before_height) is not None


def available_at(state: StateView, sha: bytes, height: int) -> BlobRef | None:
    """:func:`available_ref` for a contract executing block ``height``: the set deciding that height, and
    attestations committed in earlier blocks only (a validator fetched before executing this one)."""
    return available_ref(state, sha, set_at(schedule(state), height).keys, height)


# -- the need and keep indexes (fl_contracts writes them; validators read them) ------------------------

class Need(BaseModel):
    """An open round of ``model_id`` reads the blob ``ref`` names; deleted when the round closes."""

    model_config = _STORED
    ref: BlobRef
    model_id: StrictStr = Field(min_length=1, max_length=64)
    round: StrictInt = Field(ge=0)


class Keep(BaseModel):
    """Version ``version`` of ``model_id`` lives in the blob ``ref`` names: never pruned."""

    model_config = _STORED
    ref: BlobRef
    model_id: StrictStr = Field(min_length=1, max_length=64)
    version: StrictInt = Field(ge=0)


def need_key(sha: bytes, model_id: str, rnd: int) -> bytes:
    return NEED_PREFIX + sha + rnd.to_bytes(8, "big") + model_id.encode()


def keep_key(sha: bytes, model_id: str, version: int) -> bytes:
    return KEEP_PREFIX + sha + version.to_bytes(8, "big") + model_id.encode()


def put_need(state: StateView, need: Need) -> None:
    state.set(need_key(need.ref.sha256, need.model_id, need.round), codec.encode(need.model_dump()))


def put_keep(state: StateView, keep: Keep) -> None:
    state.set(keep_key(keep.ref.sha256, keep.model_id, keep.version), codec.encode(keep.model_dump()))


def refs_in(payload: object) -> list[BlobRef]:
    """The blob refs among a transaction payload's top-level values (how ``fl.submit_update`` carries one):
    a block's own transactions may need a blob the state before it does not list yet."""
    if not isinstance(payload, dict):
        return []
    found = []
    for value in payload.values():
        if isinstance(value, dict) and set(value) == set(BlobRef.model_fields):
            try:
                found.append(BlobRef.model_validate(value))
            except ValueError:
                continue
    return found


def needs(state: StateView) -> Iterator[Need]:
    """Every blob an open round reads, in SHA-256 order."""
    return (Need.model_validate(codec.decode(v)) for _, v in state.scan(NEED_PREFIX))


def keeps(state: StateView) -> Iterator[Keep]:
    return (Keep.model_validate(codec.decode(v)) for _, v in state.scan(KEEP_PREFIX))
