"""The blob JSON-RPC methods' params and results, read by the validator and by ``client.blobs`` alike.

``blob_put`` sends one chunk with its proof, ``blob_status`` says which chunks a
node holds (what makes an upload resumable after either side restarts), and
``blob_get`` answers a chunk of a complete blob with its proof, so the reader
checks every chunk against the ref it asked for and trusts no validator.
Bytes are hex on the wire (``core.wire``); a chunk of :data:`core.blobs.CHUNK_BYTES`
is twice that in JSON text.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from core.api import Params, Query
from core.errors import InvalidInput
from core.hashing import HASH_SIZE
from core.blobs import MAX_BLOB_BYTES, MAX_CHUNKS, MAX_PROOF_HASHES, Attestation, BlobRef, attestations, available_ref
from core.state import StateView
from core.validators import schedule
from core.wire import Hash32, HexBytes

BLOB_PUT, BLOB_STATUS, BLOB_GET = "blob_put", "blob_status", "blob_get"


class BlobRefParams(Params):
    """A :class:`core.blobs.BlobRef`, field by field, as hex."""

    sha256: Hash32 = Field(description="SHA-256 of the whole blob")
    size: int = Field(gt=0, le=MAX_BLOB_BYTES, description="the blob's length in bytes")
    chunk_root: Hash32 = Field(description="Merkle root of the chunks' SHA-256 hashes (core.blobs)")

    @property
    def ref(self) -> BlobRef:
        return BlobRef(sha256=self.sha256, size=self.size, chunk_root=self.chunk_root)

    @classmethod
    def of(cls, ref: BlobRef) -> dict[str, object]:
        """The by-name params naming ``ref`` (what a client sends)."""
        return {"sha256": ref.sha256.hex(), "size": ref.size, "chunk_root": ref.chunk_root.hex()}


class ChunkParams(BlobRefParams):
    index: int = Field(ge=0, lt=MAX_CHUNKS, description="which chunk, from 0")


class BlobPutParams(ChunkParams):
    chunk: HexBytes = Field(description="the chunk's bytes: CHUNK_BYTES long, the last one the rest")
    proof: list[Hash32] = Field(max_length=MAX_PROOF_HASHES,
                                description="sibling hashes from the chunk's leaf up to chunk_root")


@dataclass(frozen=True)
class BlobPutResult:
    complete: bool
    """Whether this node now holds the whole blob, verified."""
    held: int
    """Chunks of it this node holds."""


@dataclass(frozen=True)
class BlobStatus:
    held: list[int]
    """Indexes of the chunks this node holds, ascending (every index once the blob is complete)."""
    complete: bool


@dataclass(frozen=True)
class BlobChunk:
    chunk: HexBytes
    proof: list[Hash32]

    def to_json(self) -> bytes:
        """The answer's JSON text, written directly: pydantic's generic serialiser takes ~20 ms per 2 MiB of
        hex, ten times ``bytes.hex``."""
        proof = ",".join(f'"{h.hex()}"' for h in self.proof)
        return b'{"chunk":"' + self.chunk.hex().encode() + b'","proof":[' + proof.encode() + b"]}"

    @classmethod
    def from_json(cls, value: object) -> BlobChunk:
        """A ``blob_get`` result read back (the client then checks it with :func:`core.blobs.verify_chunk`)."""
        if not (isinstance(value, dict) and set(value) == {"chunk", "proof"} and isinstance(value["chunk"], str)
                and isinstance(value["proof"], list) and len(value["proof"]) <= MAX_PROOF_HASHES
                and all(isinstance(h, str) and len(h) == 2 * HASH_SIZE for h in value["proof"])):
            raise InvalidInput("a blob_get answer is {chunk: hex, proof: [64 hex digits, ...]}")
        try:
            return cls(bytes.fromhex(value["chunk"]), [bytes.fromhex(h) for h in value["proof"]])
        except ValueError:
            raise InvalidInput("a blob_get answer holds something that is not hex") from None


class BlobAvailabilityParams(Params):
    sha256: Hash32 = Field(description="the blob's SHA-256")


@dataclass(frozen=True)
class BlobAvailability:
    attestations: list[Attestation]
    """Every validator's committed word that it holds the blob, in validator-key order."""
    available: BlobRef | None
    """The ref a quorum of the latest validator set attested, if one did."""


def blob_availability(state: StateView, p: BlobAvailabilityParams) -> BlobAvailability:
    latest = schedule(state)[-1].validators.keys
    return BlobAvailability(attestations(state, p.sha256), available_ref(state, p.sha256, latest, 2**63))


BLOB_AVAILABILITY: Query[BlobAvailabilityParams, BlobAvailability] = Query(
    "blob_availability", "Which validators attested holding a blob, and whether a quorum of the current set did "
    "(then every honest validator fetches it before a block reads it).", BlobAvailabilityParams, BlobAvailability)
STATE_QUERIES = ((BLOB_AVAILABILITY, blob_availability),)
