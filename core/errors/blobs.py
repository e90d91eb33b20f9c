"""Errors of content-addressed blobs: an unknown blob, a chunk that does not verify, a blob past the size limit."""

from __future__ import annotations

from core.errors.base import InvalidInput, LimitExceeded, NotFound, PeerMisbehaved


class BlobUnknown(NotFound):
    """This node holds no such blob (or not that chunk of it): push it first, or ask another validator."""

    code = -32150
    reason = "blob_unknown"


class BadChunk(InvalidInput):
    """A chunk whose length or Merkle proof does not match the blob reference's ``chunk_root``: not stored."""

    code = -32151
    reason = "bad_chunk"


class BlobTooLarge(LimitExceeded):
    """A blob larger than this chain's ``max_blob_bytes``, or an upload past the sender's blob quota."""

    code = -32152
    reason = "blob_too_large"


class BlobIncomplete(NotFound):
    """The node holds only some chunks of the blob; ``blob_status`` says which."""

    code = -32153
    reason = "blob_incomplete"


class BlobMismatch(InvalidInput):
    """Every chunk verified against ``chunk_root`` but the whole blob's SHA-256 is not the reference's:
    the reference itself is inconsistent; the upload is discarded."""

    code = -32154
    reason = "blob_mismatch"


class BadBlobMessage(PeerMisbehaved):
    """A peer's blob message of the wrong shape, or a chunk from a peer that does not verify: counted against
    the peer, the chunk is asked of another one."""

    code = -32155
    reason = "bad_blob_message"
