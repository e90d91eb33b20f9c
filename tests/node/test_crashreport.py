"""The crash marker and its alerts, in process (``tests/integration/test_supervision.py`` runs a real crash)."""

from __future__ import annotations

from pathlib import Path

from core.errors import DiskFull
from ids.alerts import AlertPayload
from node.crashreport import MARKER, MAX_CRASHES, RETRY_BLOCKS, Crash, CrashReporter, read_crashes, record_crash

SIGNER = bytes([7]) * 32


def _reporter(data: Path, committed: set[bytes]) -> tuple[CrashReporter, list[AlertPayload]]:
    offered: list[AlertPayload] = []
    return CrashReporter(data, "node0", SIGNER, offered.append, lambda a: a.dedupe_key() in committed), offered


def test_a_failure_is_recorded_without_its_message_and_a_crash_loop_keeps_its_latest(tmp_path: Path) -> None:
    record_crash(tmp_path, Crash.of("consensus", RuntimeError("secret /path and bytes"), 1000))
    record_crash(tmp_path, Crash.of("consensus", DiskFull("no space"), 2000))
    assert read_crashes(tmp_path) == [Crash("consensus", "RuntimeError", -32070, 1000),
                                      Crash("consensus", "DiskFull", -32041, 2000)]
    assert "secret" not in (tmp_path / MARKER).read_text()
    for t in range(MAX_CRASHES + 3):
        record_crash(tmp_path, Crash("proposer", "RuntimeError", -32070, 3000 + t))
    kept = read_crashes(tmp_path)
    assert len(kept) == MAX_CRASHES and kept[-1].time_ms == 3000 + MAX_CRASHES + 2


def test_an_unwritable_or_unreadable_marker_is_logged_not_raised(tmp_path: Path) -> None:
    record_crash(tmp_path / "missing-dir", Crash("consensus", "StorageError", -32040, 1))  # no exception
    (tmp_path / MARKER).write_text("{not json")
    assert read_crashes(tmp_path) == []


def test_the_marker_is_cleared_only_once_every_alert_committed_and_offered_again_meanwhile(tmp_path: Path) -> None:
    first, second = Crash("consensus", "StorageError", -32040, 1), Crash("block-sync", "RuntimeError", -32070, 2)
    record_crash(tmp_path, first)
    record_crash(tmp_path, second)
    committed: set[bytes] = set()
    reporter, offered = _reporter(tmp_path, committed)
    reporter.start()
    alerts = [first.alert("node0", SIGNER), second.alert("node0", SIGNER)]
    assert offered == alerts and all(a.severity == 4 and a.subject == SIGNER for a in alerts)
    committed.add(alerts[0].dedupe_key())
    for _ in range(RETRY_BLOCKS):
        reporter.on_commit()
    assert (tmp_path / MARKER).exists() and offered[2:] == [alerts[1]]  # the one still missing, offered again
    committed.add(alerts[1].dedupe_key())
    reporter.on_commit()
    assert not (tmp_path / MARKER).exists() and reporter.pending == 0


def test_a_start_after_the_alerts_committed_clears_the_marker_and_offers_nothing(tmp_path: Path) -> None:
    crash = Crash("consensus", "StorageError", -32040, 1)
    record_crash(tmp_path, crash)
    reporter, offered = _reporter(tmp_path, {crash.alert("node0", SIGNER).dedupe_key()})
    reporter.start()
    assert offered == [] and not (tmp_path / MARKER).exists()
