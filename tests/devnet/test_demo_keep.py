"""``fbci demo --keep``'s dashboard: started only when this build has ``client.dashboard``, and its address
printed only once it answers HTTP."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from devnet import demo
from tests.ports import free_base_port

SERVER = ("import sys, http.server; host, port = sys.argv[1].rsplit(':', 1); "
          "http.server.HTTPServer((host, int(port)), http.server.SimpleHTTPRequestHandler).serve_forever()")


def _has_dashboard(monkeypatch: pytest.MonkeyPatch, present: bool) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (object() if present else None) if name == "client.dashboard" else real(name, *a))


def test_no_dashboard_module_means_no_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _has_dashboard(monkeypatch, False)
    monkeypatch.setattr(demo, "dashboard_command", lambda home, listen: pytest.fail("must not start"))
    assert demo.start_dashboard(tmp_path, tmp_path) is None


def test_the_dashboard_is_the_fbci_command() -> None:
    assert demo.dashboard_command(Path("h"), "127.0.0.1:1")[1:] == [
        "-m", "cli.main", "dashboard", "--home", "h", "--listen", "127.0.0.1:1"]


def test_the_dashboard_address_is_printed_once_it_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _has_dashboard(monkeypatch, True)
    listen = f"127.0.0.1:{free_base_port(1)}"
    commands: list[Any] = []
    monkeypatch.setattr(demo, "DASHBOARD_LISTEN", listen)
    monkeypatch.setattr(demo, "dashboard_command",
                        lambda home, at: commands.append((home, at)) or [sys.executable, "-c", SERVER, at])
    started = demo.start_dashboard(tmp_path / "node0", tmp_path)
    assert started is not None
    proc, address = started
    try:
        assert address == f"http://{listen}" and commands == [(tmp_path / "node0", listen)]
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_a_dashboard_that_exits_is_reported_not_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    _has_dashboard(monkeypatch, True)
    monkeypatch.setattr(demo, "dashboard_command", lambda home, at: [sys.executable, "-c", "raise SystemExit(3)"])
    assert demo.start_dashboard(tmp_path, tmp_path) is None
    assert "the dashboard exited (code 3); see" in capsys.readouterr().out
