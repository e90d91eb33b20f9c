"""The WAL keeps every acknowledged record or refuses to start; only an unacknowledged tail may go."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from consensus import WalRecord
from core.errors import StorageError
from node import wal as wal_module
from node.wal import WriteAheadLog


def records(n: int) -> list[WalRecord]:
    return [WalRecord("signed", 1 + i // 3, i % 3, bytes([i]) * (10 + i)) for i in range(n)]


def write(path: Path, recs: list[WalRecord]) -> None:
    w = WriteAheadLog(path)
    for r in recs:
        w.append(r)
    w.close()


def test_roundtrip_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    write(path, records(7))
    assert WriteAheadLog(path).read_all() == records(7)


def test_torn_tail_is_truncated_with_a_warning_and_appends_continue(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "wal"
    write(path, records(5))
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 3)  # the crash hit mid-way through the last append
    with caplog.at_level(logging.WARNING):
        w = WriteAheadLog(path)
    assert w.read_all() == records(4)
    assert "torn" in caplog.text
    extra = WalRecord("prepared", 9, 0, b"x")
    w.append(extra)
    w.close()
    assert WriteAheadLog(path).read_all() == records(4) + [extra]


def test_zero_filled_tail_is_a_torn_write(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    write(path, records(3))
    with open(path, "ab") as f:
        f.write(bytes(40))
    assert WriteAheadLog(path).read_all() == records(3)


def test_bit_flip_in_last_record_counts_as_torn(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    write(path, records(3))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x10
    path.write_bytes(bytes(data))
    assert WriteAheadLog(path).read_all() == records(2)


@pytest.mark.parametrize("where", ["payload", "length"])
def test_bit_flip_before_the_last_record_refuses_to_start(tmp_path: Path, where: str) -> None:
    path = tmp_path / "wal"
    write(path, records(6))
    data = bytearray(path.read_bytes())
    data[2 if where == "length" else 20] ^= 0x01  # inside the first record
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError):
        WriteAheadLog(path)
    assert path.read_bytes() == bytes(data)  # nothing was cut away


def test_truncate_before_keeps_later_heights_only(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    write(path, records(9))  # heights 1, 2, 3
    w = WriteAheadLog(path)
    size = path.stat().st_size
    w.truncate_before(3)
    assert w.read_all() == [r for r in records(9) if r.height >= 3]
    assert path.stat().st_size < size
    w.append(records(1)[0])
    w.close()
    assert WriteAheadLog(path).read_all() == [r for r in records(9) if r.height >= 3] + records(1)


def test_append_returns_only_after_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's contract: once append returns the record is durable, so the message may be sent."""
    calls: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(wal_module.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    w = WriteAheadLog(tmp_path / "wal")
    w.append(records(1)[0])
    calls.append("returned")
    assert calls == ["fsync", "returned"]


def test_append_all_is_one_durable_write_of_every_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = WriteAheadLog(tmp_path / "wal")
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(wal_module.os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd))[1])
    records = [WalRecord("signed", 3, 0, bytes([i]) * 10) for i in range(3)]
    log.append_all(records)
    assert len(calls) == 1
    assert WriteAheadLog(tmp_path / "wal").read_all() == records
