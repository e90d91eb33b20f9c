"""What the dashboard's browser and Prometheus tests share: system binaries, alerts, a dashboard process."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from core.crypto import PrivateKey
from core.hashing import sha256
from ids.alerts import AlertPayload
from client.session import ChainSession

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_binary(path: str, package: str) -> str:
    """The binary's path, or a test failure (never a skip) saying what to install."""
    found = path if os.path.isabs(path) and os.access(path, os.X_OK) else shutil.which(path)
    if found is None:
        pytest.fail(f"{path} is missing: install Debian's {package} package (sudo apt-get install -y {package}, "
                    f"or run 'make deps' as root)", pytrace=False)
    return found


def alert_payload(hospital: str, alert_class: str = "spoofing", severity: int = 3) -> dict[str, object]:
    """A device alert about a fresh random pseudonym, in the window starting now."""
    return AlertPayload(
        hospital=hospital, subject_kind="device", subject=secrets.token_bytes(32), alert_class=alert_class,
        severity=severity, window_start_ms=int(time.time() * 1000), window_ms=60_000, count=2, score_ppm=970_000,
        feature_digest=sha256(b"browser test"), model_version=0,
    ).to_payload()


def post_alert(rpc_url: str, key: PrivateKey, hospital: str, **kwargs: object) -> int:
    """Submit and wait for one alert; its on-chain id. A session per call: the node closes idle keep-alives."""
    with ChainSession(rpc_url, key) as session:
        info = session.submit_commit("ids.alert", alert_payload(hospital, **kwargs))  # type: ignore[arg-type]
    return int(info.receipt.result["alert_id"])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)  # polling another process's socket: nothing to wait on in-process
    pytest.fail(f"{url} did not answer within {timeout_s} s:\n{log.read_text(errors='replace')[-3000:]}")


def start_dashboard(home: Path, port: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``fbci dashboard`` as its own process (a client of the validator, as in production)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "dashboard", "--home", str(home),
                                 "--listen", f"127.0.0.1:{port}", *extra], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc


class ChainThread:
    """Chain calls from a thread of their own: Playwright's sync API holds an event loop in the test's thread,
    and a :class:`ChainSession` runs its own loop, so they cannot share one thread."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1)

    def __call__(self, fn: Callable[[], T]) -> T:
        return self._pool.submit(fn).result()

    def close(self) -> None:
        self._pool.shutdown()
