"""``fbci demo`` (what ``make demo`` runs) end to end, with fewer FL rounds: its claims must hold.

It runs with ``--keep``, so the testnet it leaves must still answer afterwards,
and the ``kill`` line it prints must stop every process it left.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from devnet.testnet import rpc_call
from tests.ports import free_base_port


def _alive(pid: int) -> bool:
    """Running (a zombie whose new parent has not reaped it yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_the_demo_runs_and_every_validator_agrees(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--out", str(out), "--base-port", str(free_base_port(10)),
         "--fl-rounds", "3", "--keep"],
        capture_output=True, text=True, timeout=280,
    )
    text = run.stdout
    kill = re.search(r"stop everything with: kill ([\d ]+?) +\(", text)
    pids = [int(p) for p in kill.group(1).split()] if kill else []
    try:
        assert run.returncode == 0, run.stderr[-2000:] + text[-2000:]
        assert "Traceback" not in run.stderr + text
        assert len(re.findall(r"^  node\d +20/20 +yes ", text, re.M)) == 4
        assert "every validator holds the same global model: True" in text
        assert len(re.findall(r"^ +\d+ +\d+ +v\d+ +[0-9a-f]{12} +\d+\.\d%$", text, re.M)) == 3  # accuracy per round
        assert "How rounds are numbered" in text
        assert "breast_cancer requires consent" in text  # each hospital records its patients' decisions first
        consented = re.findall(r"^  hospital\d +(\d+) +(\d+) +(\d+) *$", text, re.M)
        assert len(consented) == 4 and all(int(n) == int(p) + int(d) and int(d) >= 1 for n, p, d in consented)
        pr = re.search(r"flagged (\d+): precision (\d+\.\d)% .*, recall (\d+\.\d)%", text)
        assert pr is not None and int(pr.group(1)) > 0 and float(pr.group(2)) > 50 and float(pr.group(3)) > 50
        section = text.split("alerts committed, as each validator answers")[1]
        counts = re.findall(r"^  node\d +(\d+) ", section, re.M)[:4]
        assert len(counts) == 4 and len(set(counts)) == 1 and int(counts[0]) > 0
        assert "P(NEWS2 >= 5 within 6 h)" in text and "what drove it" in text
        assert re.search(r"alarm threshold 0\.\d{3}", text)
        assert re.search(r"would alarm: caught|MISSED", text) and re.search(r"quiet, rightly|false alarm", text)
        view = re.search(r"nobody heard from (node\d): the others' timers expired, they moved to view (\d+), "
                         r"and (node\d), primary of view \2", text)
        assert view is not None and view.group(1) != view.group(3), text[-3000:]
        assert "caught up by block sync" in text
        assert "identical on all 4 validators: True" in text
        assert "{" not in text.split("== 2.")[1].split("== 7.")[0]  # tables, not Python reprs
        assert kill is not None and len(pids) >= 4
        url = re.search(r"^node0 +(http://127\.0\.0\.1:\d+)", text.split("== 8.")[1], re.M)
        assert url is not None and rpc_call(url.group(1), "status", timeout=5)["validator"] == "node0"
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)  # waiting for other processes to exit
    assert not any(_alive(p) for p in pids)
