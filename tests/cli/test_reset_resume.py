"""``fbci node reset`` on a stopped home, and ``fbci testnet``'s question when its directory holds a network.

The reset must remove the chain data and nothing else, and only once it is
confirmed; the testnet command must resume, replace or stop as answered, and
never ask where nobody can answer (scripts get an error naming the flags).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import pytest

from genesis.create import init_network
from node.stores import Database
from cli import main as cli


def _kept_files(home: Path) -> dict[str, str]:
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file() and "data" not in p.relative_to(home).parts}


@pytest.fixture
def stopped_home(tmp_path: Path) -> Path:
    home = init_network(1, tmp_path / "net", genesis_time_ms=1).homes[0]
    db = Database(home / "data" / "db")
    db.db.put(b"k", b"v")
    db.close()
    (home / "data" / "consensus.wal").write_bytes(b"\0" * 16)
    return home


def _answer(monkeypatch: pytest.MonkeyPatch, reply: str) -> list[str]:
    asked: list[str] = []
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or reply)
    return asked


def test_reset_removes_chain_data_and_keeps_keys_config_and_genesis(stopped_home: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    kept = _kept_files(stopped_home)
    assert {"config/node_key.json", "config/config.json", "config/genesis.json", "public.json"} <= set(kept)
    assert cli.main(["node", "reset", "--home", str(stopped_home), "--yes"]) == 0
    assert list((stopped_home / "data").iterdir()) == [] and _kept_files(stopped_home) == kept
    assert "removed consensus.wal, db from" in capsys.readouterr().out
    assert cli.main(["node", "reset", "--home", str(stopped_home), "--yes"]) == 0
    assert "holds no chain data; nothing to reset" in capsys.readouterr().out


def test_reset_asks_and_a_no_changes_nothing(stopped_home: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in (stopped_home / "data").iterdir())
    asked = _answer(monkeypatch, "n")
    assert cli.main(["node", "reset", "--home", str(stopped_home)]) == 1
    assert "reset not confirmed; nothing was removed" in capsys.readouterr().err
    assert asked and "remove consensus.wal, db from" in asked[0] and "keys, config and genesis stay" in asked[0]
    assert sorted(p.name for p in (stopped_home / "data").iterdir()) == before
    _answer(monkeypatch, "y")
    assert cli.main(["node", "reset", "--home", str(stopped_home)]) == 0
    assert list((stopped_home / "data").iterdir()) == []


def test_reset_without_a_terminal_needs_yes(stopped_home: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert cli.main(["node", "reset", "--home", str(stopped_home)]) == 1
    assert "pass --yes to reset without asking" in capsys.readouterr().err
    assert (stopped_home / "data" / "db").is_dir()


@pytest.fixture
def made_testnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[dict[str, Any]]]:
    """A testnet directory on disk and a recording stand-in for run_testnet (nothing is started)."""
    from devnet import testnet

    out = tmp_path / "tn"
    testnet.Testnet.create(2, out, 31500)
    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(testnet, "run_testnet", lambda **kwargs: runs.append(kwargs) or 0)
    return out, runs


@pytest.mark.parametrize(("reply", "resume"), [("r", True), ("", True), ("f", False)])
def test_testnet_on_an_existing_directory_asks_whether_to_resume(made_testnet: tuple[Path, list[dict[str, Any]]],
                                                                 monkeypatch: pytest.MonkeyPatch, reply: str,
                                                                 resume: bool) -> None:
    out, runs = made_testnet
    asked = _answer(monkeypatch, reply)
    assert cli.main(["testnet", "--out", str(out)]) == 0
    assert "already holds a testnet (2 validator(s) of chain 'fbci-local'" in asked[0]
    assert runs == [{"n_validators": None, "out_dir": out, "base_port": 26600, "resume": resume,
                     "hybrid": False}]


def test_testnet_quit_or_no_terminal_starts_nothing(made_testnet: tuple[Path, list[dict[str, Any]]],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out, runs = made_testnet
    _answer(monkeypatch, "q")
    assert cli.main(["testnet", "--out", str(out)]) == 1
    assert "nothing started; the testnet is unchanged" in capsys.readouterr().err
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert cli.main(["testnet", "--out", str(out)]) == 1
    assert "pass --resume to start it again or --fresh to replace it" in capsys.readouterr().err
    assert runs == []
    assert cli.main(["testnet", "--out", str(out), "--fresh"]) == 0
    assert cli.main(["testnet", "--out", str(out), "--resume"]) == 0
    assert [r["resume"] for r in runs] == [False, True]


def test_testnet_resume_needs_a_testnet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["testnet", "--out", str(tmp_path / "empty"), "--resume"]) == 1
    assert "holds no testnet to resume" in capsys.readouterr().err
