"""The on-disk, content-addressed blob store under a validator's data directory.

Blobs never go into LevelDB, the WAL or a block: they are files named by their
SHA-256, beside the stores. An upload is a sparse ``partial/<sha>.part`` file
plus an append-only ``<sha>.log`` of the chunks it holds (index and chunk
hash, 36 bytes a record): a chunk is verified against its ref's ``chunk_root``
before it is written, the part file is fsync'd before its record is appended,
and the log is fsync'd before the chunk is acknowledged. So a crash loses at
most chunks nobody was told are stored, and a restarted store (a new object on
the same directory) resumes from the log, re-hashing each logged chunk in the
part file: a chunk the disk damaged is dropped and fetched again, never served.

When the last chunk arrives the whole file is checked against the ref's
``sha256``, its chunk hashes go to ``complete/<sha>.hashes`` (to answer
``blob_get`` with proofs) and it is renamed to ``complete/<sha>``: a complete
blob is always a verified one.

Every method is blocking file I/O and holds the store's lock; the node calls
them off the event loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.blobs import CHUNK_BYTES, BlobRef, chunk_proof, chunk_root, verify_chunk
from core.errors import BlobIncomplete, BlobMismatch, BlobTooLarge, BlobUnknown
from core.hashing import HASH_SIZE, sha256

log = logging.getLogger(__name__)

_RECORD = 4 + HASH_SIZE
_READ_BYTES = 8 << 20


@dataclass(frozen=True)
class ChunkAnswer:
    """A held chunk and the sibling hashes that prove it against the ref's ``chunk_root``."""

    chunk: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class Held:
    """A blob on disk, for pruning: its ref, whether it is complete, and when it was last written."""

    ref: BlobRef
    complete: bool
    modified_s: float
    size_on_disk: int


class _Upload:
    """One partial blob: which chunks it holds (with their hashes), as its log says."""

    def __init__(self, ref: BlobRef, chunks: dict[int, bytes]) -> None:
        self.ref = ref
        self.chunks = chunks


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class BlobStore:
    """Complete and partial blobs under ``root``; implements :class:`core.blobs.BlobSource`."""

    def __init__(self, root: Path, max_blob_bytes: int) -> None:
        self.root = root
        self.max_blob_bytes = max_blob_bytes
        self.complete_dir = root / "complete"
        self.partial_dir = root / "partial"
        self.complete_dir.mkdir(parents=True, exist_ok=True)
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._uploads: dict[bytes, _Upload] = {}
        self._hashes: dict[bytes, list[bytes]] = {}
        self.corrupt_chunks = 0
        """Logged chunks whose bytes on disk no longer hash to their record (dropped at open)."""
        self._resume()

    # -- paths ----------------------------------------------------------------------------------

    def _complete(self, sha: bytes) -> Path:
        return self.complete_dir / sha.hex()

    def _part(self, sha: bytes, suffix: str) -> Path:
        return self.partial_dir / f"{sha.hex()}.{suffix}"

    # -- reading --------------------------------------------------------------------------------

    def has(self, ref: BlobRef) -> bool:
        return self._complete(ref.sha256).is_file() and self._ref_of_complete(ref.sha256) == ref

    def read(self, ref: BlobRef) -> bytes:
        if not self.has(ref):
            raise BlobUnknown(f"blob {ref.sha256.hex()} is not held complete by this node")
        return self._complete(ref.sha256).read_bytes()

    def held_chunks(self, ref: BlobRef) -> list[int]:
        """Indexes of the chunks of ``ref`` this node holds: all of them once it is complete."""
        with self._lock:
            if self.has(ref):
                return list(range(ref.chunks))
            upload = self._uploads.get(ref.sha256)
            return sorted(upload.chunks) if upload is not None and upload.ref == ref else []

    def get_chunk(self, ref: BlobRef, index: int) -> ChunkAnswer:
        """Chunk ``index`` of a complete blob with its proof (a partial one is not served: a peer or client
        asks a validator that attested it)."""
        ref.chunk_size(index)  # BadChunk for an index outside the blob
        with self._lock:
            if not self.has(ref):
                if self.held_chunks(ref):
                    raise BlobIncomplete(f"blob {ref.sha256.hex()} is still incomplete here",
                                         data={"held": len(self.held_chunks(ref)), "chunks": ref.chunks})
                raise BlobUnknown(f"blob {ref.sha256.hex()} is not held by this node")
            hashes = self._chunk_hashes(ref)
            with open(self._complete(ref.sha256), "rb") as f:
                f.seek(index * CHUNK_BYTES)
                chunk = f.read(ref.chunk_size(index))
        return ChunkAnswer(chunk, chunk_proof(hashes, index))

    def _chunk_hashes(self, ref: BlobRef) -> list[bytes]:
        cached = self._hashes.get(ref.sha256)
        if cached is None:
            raw = (self.complete_dir / f"{ref.sha256.hex()}.hashes").read_bytes()
            cached = [raw[i:i + HASH_SIZE] for i in range(0, len(raw), HASH_SIZE)]
            self._hashes[ref.sha256] = cached
        return cached

    def _ref_of_complete(self, sha: bytes) -> BlobRef | None:
        meta = self.complete_dir / f"{sha.hex()}.ref"
        try:
            return BlobRef.model_validate_json(meta.read_bytes())
        except (OSError, ValueError):
            return None

    def complete_refs(self) -> list[BlobRef]:
        return [ref for p in sorted(self.complete_dir.glob("*.ref"))
                if (ref := self._ref_of_complete(bytes.fromhex(p.stem))) is not None]

    def holdings(self) -> Iterator[Held]:
        """Every blob on disk, complete or partial, for the pruner."""
        for ref in self.complete_refs():
            path = self._complete(ref.sha256)
            if path.is_file():
                yield Held(ref, True, path.stat().st_mtime, ref.size)
        with self._lock:
            uploads = list(self._uploads.values())
        for upload in uploads:
            log_path = self._part(upload.ref.sha256, "log")
            modified = log_path.stat().st_mtime if log_path.exists() else time.time()
            yield Held(upload.ref, False, modified, sum(upload.ref.chunk_size(i) for i in upload.chunks))

    def partial_bytes(self) -> int:
        with self._lock:
            return sum(u.ref.size for u in self._uploads.values())

    def stored_bytes(self) -> int:
        return sum(h.size_on_disk for h in self.holdings())

    # -- writing --------------------------------------------------------------------------------

    def put_chunk(self, ref: BlobRef, index: int, chunk: bytes, proof: list[bytes]) -> bool:
        """Store a chunk after checking it; True once the blob is complete (at once for a chunk already held:
        idempotent). Raises :class:`BadChunk` (nothing written), :class:`BlobTooLarge`, :class:`BlobMismatch`
        (the chunks were good but the whole is not ``ref.sha256``: the upload is discarded)."""
        if ref.size > self.max_blob_bytes:
            raise BlobTooLarge(f"blob of {ref.size} bytes exceeds this chain's limit of {self.max_blob_bytes}",
                               data={"max_blob_bytes": self.max_blob_bytes})
        verify_chunk(ref, index, chunk, proof)
        with self._lock:
            if self.has(ref):
                return True
            upload = self._uploads.get(ref.sha256)
            if upload is not None and upload.ref != ref:
                raise BlobMismatch(f"blob {ref.sha256.hex()} is being uploaded under another size or chunk_root")
            if upload is None:
                upload = self._begin(ref)
            if index not in upload.chunks:
                self._write_chunk(upload, index, chunk)
            if len(upload.chunks) < ref.chunks:
                return False
            self._finish(upload)
            return True

    def _begin(self, ref: BlobRef) -> _Upload:
        _write_file(self._part(ref.sha256, "ref"), ref.model_dump_json().encode())
        with open(self._part(ref.sha256, "part"), "wb") as f:
            f.truncate(ref.size)  # sparse: the disk holds only the chunks written
        _fsync_dir(self.partial_dir)
        upload = self._uploads[ref.sha256] = _Upload(ref, {})
        return upload

    def _write_chunk(self, upload: _Upload, index: int, chunk: bytes) -> None:
        sha = upload.ref.sha256
        offset = index * CHUNK_BYTES
        fd = os.open(self._part(sha, "part"), os.O_WRONLY)
        try:
            os.pwrite(fd, chunk, offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        digest = sha256(chunk)
        with open(self._part(sha, "log"), "ab") as f:
            f.write(index.to_bytes(4, "big") + digest)
            f.flush()
            os.fsync(f.fileno())
        upload.chunks[index] = digest

    def _finish(self, upload: _Upload) -> None:
        ref = upload.ref
        hashes = [upload.chunks[i] for i in range(ref.chunks)]
        part = self._part(ref.sha256, "part")
        whole = _file_sha256(part)
        if chunk_root(hashes) != ref.chunk_root or whole != ref.sha256:
            self._discard(ref.sha256)
            raise BlobMismatch(f"every chunk verified but the blob's SHA-256 is {whole.hex()}, not the ref's "
                               f"{ref.sha256.hex()}: the upload is discarded")
        # The blob's own file comes last: a crash before it leaves the upload to resume, and has() needs all three.
        _write_file(self.complete_dir / f"{ref.sha256.hex()}.hashes", b"".join(hashes))
        _write_file(self.complete_dir / f"{ref.sha256.hex()}.ref", ref.model_dump_json().encode())
        os.replace(part, self._complete(ref.sha256))
        _fsync_dir(self.complete_dir)
        self._discard(ref.sha256)
        self._hashes[ref.sha256] = hashes

    def _discard(self, sha: bytes) -> None:
        self._uploads.pop(sha, None)
        for suffix in ("part", "log", "ref"):
            self._part(sha, suffix).unlink(missing_ok=True)

    def delete(self, ref: BlobRef) -> None:
        """Drop a blob, complete or partial (the pruner's decision)."""
        with self._lock:
            self._discard(ref.sha256)
            self._hashes.pop(ref.sha256, None)
            for name in (ref.sha256.hex(), f"{ref.sha256.hex()}.ref", f"{ref.sha256.hex()}.hashes"):
                (self.complete_dir / name).unlink(missing_ok=True)

    # -- restart --------------------------------------------------------------------------------

    def _resume(self) -> None:
        """Reload every upload from its log; a chunk whose bytes no longer hash to its record is dropped."""
        for meta in sorted(self.partial_dir.glob("*.ref")):
            try:
                ref = BlobRef.model_validate_json(meta.read_bytes())
            except (OSError, ValueError):
                log.warning("blob store: unreadable upload record %s, discarding it", meta.name)
                self._discard(bytes.fromhex(meta.stem))
                continue
            part = self._part(ref.sha256, "part")
            if not part.is_file():
                self._discard(ref.sha256)
                continue
            self._uploads[ref.sha256] = _Upload(ref, self._logged_chunks(ref, part))

    def _logged_chunks(self, ref: BlobRef, part: Path) -> dict[int, bytes]:
        log_path = self._part(ref.sha256, "log")
        raw = log_path.read_bytes() if log_path.exists() else b""
        chunks: dict[int, bytes] = {}
        with open(part, "rb") as f:
            for at in range(0, len(raw) - len(raw) % _RECORD, _RECORD):  # a torn last record is ignored
                index, digest = int.from_bytes(raw[at:at + 4], "big"), raw[at + 4:at + _RECORD]
                if index >= ref.chunks:
                    continue
                f.seek(index * CHUNK_BYTES)
                if sha256(f.read(ref.chunk_size(index))) == digest:
                    chunks[index] = digest
                else:
                    self.corrupt_chunks += 1
                    log.warning("blob store: chunk %d of %s is damaged on disk; it will be fetched again",
                                index, ref.sha256.hex()[:16])
        return chunks


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_READ_BYTES):
            digest.update(block)
    return digest.digest()
