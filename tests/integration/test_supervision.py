"""Crash-only on real processes: a validator whose consensus loop fails exits non-zero, naming the cause,
instead of answering ``status`` at a frozen height; a live one says when it last committed.

The faults are the ones reproduced on a testnet, made without a tmpfs or a loop device: a directory
where the WAL's compaction file must go, and that file pointing at /dev/full (every write fails with
ENOSPC, as on a full disk). Compaction runs at every 64th height, so client load drives the chain there.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.crypto import PrivateKey
from devnet.testnet import Testnet, rpc_call
from genesis.home import HomePaths, load_config
from tests.integration.load import PROGRESS_S, READY_S, ClientLoad, chain_id_of, client_keys, metric, wait_until

pytestmark = pytest.mark.timeout(240)

MakeTestnet = Callable[..., Testnet]
EXIT_S = 120  # 64 blocks under load, then a clean stop


def _obstruct(tmp: Path, make: Callable[[Path], None]) -> None:
    """Put ``make``'s obstacle where WAL compaction writes its temporary file. The validator compacts at
    every height, so its own file may sit there for a moment: try again until the obstacle is ours."""

    def placed() -> bool:
        try:
            make(tmp)
        except FileExistsError:
            return False
        return True

    wait_until(placed, PROGRESS_S, f"{tmp.name} is free for the obstacle")


def _data(net: Testnet, i: int) -> Path:
    home = net.specs[i].home
    return home / load_config(home).data_dir


@pytest.mark.parametrize("obstacle, error, cause", [
    ("directory", "error[-32040 storage_error]", "Is a directory"),
    ("full disk", "error[-32041 disk_full]", "No space left on device; free space on that disk"),
])
def test_a_failed_wal_compaction_stops_the_validator_naming_the_cause(testnet: MakeTestnet, obstacle: str,
                                                                    error: str, cause: str) -> None:
    net = testnet(1)
    net.wait_ready(READY_S, min_height=1)
    tmp = _data(net, 0) / "consensus.wal.tmp"
    _obstruct(tmp, Path.mkdir if obstacle == "directory" else lambda path: os.symlink("/dev/full", path))
    with ClientLoad([net.specs[0].rpc_url], client_keys(net), chain_id_of(net)):
        wait_until(lambda: not net.alive(0), EXIT_S, "the validator stops once compaction fails")
    assert net.stop(0) == 1  # non-zero: systemd's Restart=on-failure starts it again
    log = net.specs[0].log_path.read_text()
    failed = [line for line in log.splitlines() if "validator task consensus failed" in line]
    assert len(failed) == 1 and "level=critical" in failed[0] and "consensus.wal.tmp" in failed[0]
    assert cause in failed[0] and f"{error}: compacting the consensus WAL" in log
    assert "Traceback" not in log  # a named error, said plainly


def test_status_and_metrics_say_that_consensus_runs_and_when_it_last_committed(testnet: MakeTestnet) -> None:
    started_ms = time.time_ns() // 1_000_000
    net = testnet(1)
    net.wait_ready(READY_S, min_height=2)
    status = net.status(0)
    assert status is not None and status["consensus_running"] is True
    assert started_ms <= status["last_commit_time_ms"] <= time.time_ns() // 1_000_000
    assert metric(net, 0, "fbci_consensus_running") == 1.0
    last = metric(net, 0, "fbci_last_commit_timestamp_seconds")
    assert last is not None and last * 1000 >= started_ms


def test_a_failed_task_is_reported_on_chain_by_the_validator_once_it_is_back(testnet: MakeTestnet) -> None:
    """The crash marker written on the way down becomes, after a restart, one signed critical alert about the
    validator's own key, readable with alerts_query; the marker is cleared once it committed, so the next
    start reports nothing again."""
    net = testnet(1)
    net.wait_ready(READY_S, min_height=1)
    data = _data(net, 0)
    _obstruct(data / "consensus.wal.tmp", Path.mkdir)
    with ClientLoad([net.specs[0].rpc_url], client_keys(net), chain_id_of(net)):
        wait_until(lambda: not net.alive(0), EXIT_S, "the validator stops once compaction fails")
    assert net.stop(0) == 1
    marker = json.loads((data / "crash.json").read_text())
    (crash,) = marker["crashes"]
    assert (crash["task"], crash["error"], crash["code"]) == ("consensus", "StorageError", -32040)
    assert set(crash) == {"task", "error", "code", "time_ms"}  # no message, no path

    (data / "consensus.wal.tmp").rmdir()  # the operator clears the obstacle; systemd would restart it
    net.restart(0)
    net.wait_ready(READY_S)
    me = PrivateKey.load(HomePaths(net.specs[0].home).node_key).public_key.raw.hex()

    def reported() -> list[dict]:
        try:
            page = rpc_call(net.specs[0].rpc_url, "alerts_query", {"alert_class": "validator_task_failed"}, timeout=5,
                            reader=net.client_key())
        except OSError:
            return []
        return page["alerts"]

    wait_until(lambda: bool(reported()), PROGRESS_S, "the restarted validator's failure alert commits")
    (alert,) = reported()
    assert alert["severity"] == 4 and alert["subject_kind"] == "validator"
    assert alert["subject"] == me and alert["sender"] == me  # bound to its own signer
    assert alert["hospital"] == net.specs[0].name.lower() and alert["window_start_ms"] == crash["time_ms"]
    wait_until(lambda: not (data / "crash.json").exists(), PROGRESS_S, "the marker is cleared once it committed")
    net.restart(0)
    net.wait_ready(READY_S, min_height=alert["height"] + 2)
    assert len(reported()) == 1  # nothing on record, nothing posted again
