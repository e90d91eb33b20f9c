"""A testnet directory reopened (same homes, same chain) or replaced, never deleted from under a validator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import InvalidInput, NodeRunning
from devnet.testnet import MARKER, Testnet, describe_testnet, run_testnet
from tests.devnet.test_testnet import REPO, standin_command
from tests.ports import free_base_port


def test_a_testnet_is_resumed_from_its_own_homes(tmp_path: Path) -> None:
    out = tmp_path / "tn"
    assert describe_testnet(out) is None
    first = Testnet.create(2, out, free_base_port(4), command=standin_command)
    with first:
        first.wait_ready(30)
    described = describe_testnet(out)
    assert described is not None and described.startswith("2 validator(s) of chain 'fbci-local', genesis ")
    again = Testnet.load(out, command=standin_command)
    assert again.specs == first.specs
    with again:
        again.wait_ready(30)  # readiness checks each node's genesis hash against its home's
    with pytest.raises(InvalidInput, match="the testnet in .* has 2; resume it as it is, or pass --fresh"):
        run_testnet(3, out, 1024, resume=True, command=standin_command)


def test_only_a_directory_made_by_testnet_is_removed(tmp_path: Path) -> None:
    out = tmp_path / "tn"
    Testnet.create(1, out, 31600)
    (out / MARKER).unlink()
    with pytest.raises(InvalidInput, match="was not made by 'fbci testnet'"):
        Testnet.remove(out)
    assert describe_testnet(out) is not None


def test_a_testnet_is_not_removed_while_a_validator_holds_its_database(tmp_path: Path) -> None:
    out = tmp_path / "tn"
    net = Testnet.create(2, out, 31700)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from node.stores import Database\n"
         "db = Database(Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()",
         str(net.specs[1].home / "data" / "db")],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(NodeRunning, match="a validator is running on .*node1"):
            Testnet.remove(out)
        assert describe_testnet(out) is not None
    finally:
        holder.communicate("", timeout=30)
    Testnet.remove(out)
    assert not out.exists()
