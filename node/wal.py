"""The consensus write-ahead log: the disk half of "never sign two different things for one slot".

Caller's contract (the ordering rule from consensus.events): ``append``
returns only after the record is on stable storage (write, flush, fsync), and
the node sends no message that depends on a record before ``append`` for that
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
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

from consensus import WalRecord
from core.errors import DecodeError, StorageError

log = logging.getLogger(__name__)
_HEADER = struct.Struct(">III")
MAX_RECORD = 64 * 1024 * 1024


def _frame(payload: bytes) -> bytes:
    length = struct.pack(">I", len(payload))
    return _HEADER.pack(len(payload), zlib.crc32(length), zlib.crc32(payload)) + payload


class WriteAheadLog:
    """Opening scans the file and cuts a torn tail, so appends always follow a valid prefix."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        self._records = self._scan()
        self._file = open(path, "ab")  # noqa: SIM115 - held open for the node's lifetime

    def append(self, record: WalRecord) -> None:
        self.append_all([record])

    def append_all(self, records: Sequence[WalRecord]) -> None:
        """Several records under one fsync: durable together before this returns."""
        self._file.write(b"".join(_frame(r.encode()) for r in records))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._records.extend(records)

    def read_all(self) -> list[WalRecord]:
        return list(self._records)

    def truncate_before(self, height: int) -> None:
        """Drop records below ``height`` (the node calls this once that height's block is stored).

        Rewrites into a temporary file, fsyncs it and renames it over the log, then fsyncs the
        directory, so a crash leaves either the old log or the new one, never a mix.
        """
        keep = [r for r in self._records if r.height >= height]
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(_frame(r.encode()) for r in keep))
            f.flush()
            os.fsync(f.fileno())
        self._file.close()
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._records = keep
        self._file = open(self.path, "ab")  # noqa: SIM115

    def close(self) -> None:
        self._file.close()

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
