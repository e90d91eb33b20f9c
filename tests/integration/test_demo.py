"""``fbci demo`` (what ``make demo`` runs) end to end, with fewer FL rounds: its claims must hold."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.ports import free_base_port


def test_the_demo_runs_and_every_validator_agrees(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--out", str(out), "--base-port", str(free_base_port(10)),
         "--fl-rounds", "3"],
        capture_output=True, text=True, timeout=280,
    )
    text = run.stdout
    assert run.returncode == 0, run.stderr[-2000:] + text[-2000:]
    assert "Traceback" not in run.stderr + text
    assert text.count("20/20 found, same heights: True") == 4
    assert "every validator holds the same global model: True" in text
    assert len(re.findall(r"round +\d+ closed at height", text)) == 3
    counts = re.search(r"alerts committed, as seen on each validator: \[(\d+), (\d+), (\d+), (\d+)\]", text)
    assert counts is not None and len(set(counts.groups())) == 1 and int(counts.group(1)) > 0
    assert "P(NEWS2 >= 5 within 6 h)" in text and "what drove it" in text
    assert "caught up by block sync" in text
    assert "identical on all 4 validators: True" in text
    assert "exit codes [0]" in text
