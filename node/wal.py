"""The consensus write-ahead log: the disk half of "never sign two different things for one slot".

Caller's contract (the ordering rule from consensus.events): ``append``
returns only after the record is on stable storage (write, fsync), and the
node sends no message that depends on a record before ``append`` for that
record has returned. Hence a record that is cut short can only be the last
one, written by an ``append`` that never returned, whose message was never
sent: dropping it loses no vote anyone has seen.

Frame: ``len:u32 | crc32(len):u32 | crc32(payload):u32 | payload``, big-endian.
The header has its own checksum so that a flipped length can never make the
reader mistake good records for a torn tail. On reading:

- a header or payload that runs past the end of the file, a last record
  whose payload checksum fails, or a tail of zero bytes (what some file
  systems leave after a crash) is a torn write: truncated, with a warning;
- anything wrong *before* the last record raises ``StorageError``: those
  records were acknowledged, so silently dropping one could drop a vote.

A log cut at a record boundary, or deleted, reads as a valid shorter log, so
the WAL has a witness outside itself: a :class:`SigningMark` (kept in the
node's LevelDB) of the highest slot, (height, view), it has signed at. The
mark moves up after the records that reach a new slot are durable and before
``append`` returns, so it never runs ahead of a record that could be torn.
On open, a mark above every record the log holds, or a mark with no log file
at all, means records the validator may have sent votes from are gone, and
the log refuses to open (``WalLost``) unless the operator accepts the loss.
Losing only part of the top slot's records is not caught, and needs not be:
they follow the slot's first record, and what the replica signs again from
that record's state is the same message (Ed25519 signatures are
deterministic). So that the check survives compaction, compaction always
keeps a record of the highest slot held.

Bounded: the node compacts after every commit, once that height's block is
durable in the block store (:meth:`WriteAheadLog.truncate_before`, run by the
node's writer thread when it has nothing else to do, see
``node/diskwriter.py``). What is left is the records of the height being
decided, the one height recovery reads (``consensus.recovery`` skips lower
ones), plus, when nothing of that height is signed yet, the single smallest
record of the last slot signed, which the mark check needs. The records of
the height being decided carry block bytes (a signed proposal, a prepared
certificate), and must: the block store holds only *committed* blocks and the
proposal cache is memory, so after a crash the undecided block could be found
nowhere else. Committed blocks are in the block store, and compaction drops
their records; the one record kept for the mark is a vote where the replica
signed one at that slot (it signs its commit vote at the slot it decides in,
unless it learned the decision from others' certificate first).

Every failed write leaves as a named error (``DiskFull``, ``TooManyOpenFiles``,
else ``StorageError`` naming the file), never as a bare ``OSError``.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from consensus import WalRecord
from core.errors import DecodeError, StorageError, WalLost, storage_error

log = logging.getLogger(__name__)
_HEADER = struct.Struct(">III")
MAX_RECORD = 64 * 1024 * 1024

Slot = tuple[int, int]
"""(height, view): where in the protocol a record was signed; compared in that order."""
NO_SLOT: Slot = (0, 0)


class SigningMark(Protocol):
    """Where the highest slot this validator signed at is kept, outside the WAL."""

    def load(self) -> Slot | None: ...

    def save(self, slot: Slot) -> None:
        """Durable when it returns."""
        ...


def _frame(payload: bytes) -> bytes:
    length = struct.pack(">I", len(payload))
    return _HEADER.pack(len(payload), zlib.crc32(length), zlib.crc32(payload)) + payload


def _top(records: Sequence[WalRecord]) -> Slot:
    return max(((r.height, r.view) for r in records), default=NO_SLOT)


@contextmanager
def _disk(doing: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise storage_error(exc.errno, doing, exc.strerror or str(exc)) from None


def _write_all(file: BinaryIO, data: bytes) -> None:
    """Unbuffered writes, so a failed one leaves no bytes behind in Python to be flushed at exit."""
    view = memoryview(data)
    while view:
        view = view[file.write(view) or 0:]


class WriteAheadLog:
    """Opening scans the file and cuts a torn tail, so appends always follow a valid prefix.

    With a ``mark``, opening also checks the log against it (see the module docstring);
    ``accept_loss`` opens a log that fails the check anyway, and sets :attr:`lost_through`.
    """

    def __init__(self, path: Path, mark: SigningMark | None = None, *, accept_loss: bool = False) -> None:
        self.path = path
        self._mark = mark
        self.lost_through = 0
        """After an accepted loss: the height up to which this validator may have signed votes it no
        longer remembers (0: nothing was lost)."""
        with _disk(f"reading the consensus WAL {path}"):
            existed = path.exists()
            self._records = self._scan() if existed else []
        self._marked = NO_SLOT
        if mark is not None:  # before anything is created: a refused start leaves the home as it was
            self._marked = mark.load() or NO_SLOT
            self._check_mark(mark, existed, accept_loss)
        with _disk(f"opening the consensus WAL {path}"):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: BinaryIO = open(path, "ab", buffering=0)  # noqa: SIM115 - held for the node's lifetime

    def append(self, record: WalRecord) -> None:
        self.append_all([record])

    def append_all(self, records: Sequence[WalRecord]) -> None:
        """Several records under one fsync: durable together, and covered by the mark, before this returns."""
        with _disk(f"appending to the consensus WAL {self.path}"):
            _write_all(self._file, b"".join(_frame(r.encode()) for r in records))
            os.fsync(self._file.fileno())
        self._records.extend(records)
        self._raise_mark(_top(records))

    def read_all(self) -> list[WalRecord]:
        return list(self._records)

    def truncate_before(self, height: int) -> None:
        """Drop records below ``height`` (the node calls this once that height's block is stored),
        but keep a record of the highest slot held, which the mark is checked against: the smallest
        one, when all of them are below ``height``.

        Writes the kept records to a temporary file, fsyncs it and renames it over the log, then
        fsyncs the directory, so a crash leaves either the old log or the new one, never a mix. The
        new file's handle is opened first, so a missing descriptor fails before anything changed.
        """
        if not self._records:
            return
        top = _top(self._records)
        if top[0] >= height:
            keep = [r for r in self._records if r.height >= height]
        else:
            keep = [min((r for r in self._records if (r.height, r.view) == top), key=lambda r: len(r.payload))]
        if len(keep) == len(self._records):
            return
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with _disk(f"compacting the consensus WAL into {tmp}"):
            new: BinaryIO = open(tmp, "wb", buffering=0)  # noqa: SIM115 - becomes the log's handle
            try:
                _write_all(new, b"".join(_frame(r.encode()) for r in keep))
                os.fsync(new.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                new.close()
                raise
            old, self._file, self._records = self._file, new, keep  # the old handle's file is gone now
            old.close()
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def close(self) -> None:
        self._file.close()

    def _raise_mark(self, slot: Slot) -> None:
        if self._mark is not None and slot > self._marked:
            self._mark.save(slot)
            self._marked = slot

    def _check_mark(self, mark: SigningMark, existed: bool, accept_loss: bool) -> None:
        top = _top(self._records)
        if self._marked <= top and (existed or self._marked == NO_SLOT):
            return
        height, view = self._marked
        held = ("is missing" if not existed else "is empty" if not self._records
                else f"ends at height {top[0]} view {top[1]}")
        what = (f"the consensus WAL {self.path} {held}, but this validator has signed at height {height} "
                f"view {view} (its database says so): records of votes it may have sent are gone, and from "
                "this log it could sign a vote that conflicts with one of them")
        if not accept_loss:
            raise WalLost(f"{what}. Restore the WAL from a backup, or start once with --accept-wal-loss: the "
                          f"validator then sends nothing it signs at heights up to {height} and follows the "
                          "other validators' certificates past them")
        log.warning("%s; starting anyway (--accept-wal-loss): nothing this validator signs at heights up to "
                    "%d will be sent", what, height)
        self.lost_through = height
        mark.save(top)  # the loss is acknowledged once; the mark starts again from what the log holds
        self._marked = top

    def _scan(self) -> list[WalRecord]:
        data = self.path.read_bytes()
        records: list[WalRecord] = []
        offset = 0
        while offset < len(data):
            torn = self._torn_at(data, offset)
            if torn is not None:
                log.warning("WAL %s: %s at byte %d; truncating the torn tail", self.path, torn, offset)
                with open(self.path, "r+b") as f:
                    f.truncate(offset)
                    f.flush()
                    os.fsync(f.fileno())
                break
            length = _HEADER.unpack_from(data, offset)[0]
            payload = data[offset + _HEADER.size: offset + _HEADER.size + length]
            try:
                records.append(WalRecord.decode(payload))
            except DecodeError as exc:
                raise StorageError(f"WAL {self.path}: record at byte {offset} does not decode: {exc}") from None
            offset += _HEADER.size + length
        return records

    def _torn_at(self, data: bytes, offset: int) -> str | None:
        """Why the record at ``offset`` is a torn last write, None if it is intact; raise if corrupt."""
        rest = data[offset:]
        if not rest.strip(b"\0"):
            return "zero-filled tail"
        if len(rest) < _HEADER.size:
            return "partial header"
        length, length_crc, payload_crc = _HEADER.unpack_from(data, offset)
        if zlib.crc32(struct.pack(">I", length)) != length_crc or length > MAX_RECORD:
            raise StorageError(f"WAL {self.path}: corrupt record header at byte {offset}")
        end = offset + _HEADER.size + length
        if end > len(data):
            return "record runs past the end of the file"
        if zlib.crc32(data[offset + _HEADER.size: end]) != payload_crc:
            if end == len(data):
                return "checksum mismatch in the last record"
            raise StorageError(f"WAL {self.path}: checksum mismatch in the record at byte {offset}")
        return None
