"""A home's database has one owner: a second open, in this process or another, names the holder's lock plainly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import StorageError
from node.stores import Database

REPO = Path(__file__).resolve().parents[2]


def test_a_second_open_in_the_same_process_says_another_validator_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "data"
    first = Database(path)
    try:
        with pytest.raises(StorageError) as info:
            Database(path)
        message = info.value.message
        assert message.startswith(f"another validator process already holds this home's database at {path} ")
        assert str(path / "LOCK") in message and "b'" not in message and "IO error" not in message
    finally:
        first.close()
    Database(path).close()  # released: the next owner opens it


def test_a_second_process_gets_the_same_plain_error(tmp_path: Path) -> None:
    path = tmp_path / "data"
    holder = Database(path)
    probe = ("import sys; from pathlib import Path; from core.errors import FbciError; from node.stores import Database\n"
             "try:\n    Database(Path(sys.argv[1]))\nexcept FbciError as e:\n"
             "    print(f'error[{e.code} {e.reason}]: {e.message}'); sys.exit(1)\n")
    try:
        run = subprocess.run([sys.executable, "-c", probe, str(path)], cwd=REPO, capture_output=True, text=True,
                             timeout=60)
    finally:
        holder.close()
    assert run.returncode == 1, run.stderr
    assert run.stdout.startswith("error[-32040 storage_error]: another validator process already holds this "
                                 f"home's database at {path} "), run.stdout
