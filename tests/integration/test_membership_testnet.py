"""A hospital joins and another leaves, on real processes under client load, driven by the ``fbci`` CLI.

Genesis: four validators, each hospital with its own admin key (members of governance, 3 of 4 decide).
The new hospital runs ``fbci keys gen --roles validator`` and ``fbci genesis install``; the members
``gov propose validator-add`` and ``gov approve``; the new validator starts from the genesis file and its
configured peers, block-syncs from height 1 (verifying every certificate against its height's set, across
the change) and begins voting: its signature appears in commit certificates. Then node3 is voted out
(``validator-remove``) and shut down once the removal is in effect. Throughout: one chain, identical hashes,
every acknowledged transaction on every running node; and with f = 1 of the new set (node2) stopped too, the
chain keeps committing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import cli.main as cli
from core.api import BLOCK_GET
from devnet.testnet import Testnet, rpc_call
from genesis.home import HomePaths
from tests.integration.load import (
    PROGRESS_S, assert_acked_everywhere, assert_same_chain, heights, under_load, wait_growing, wait_heights,
    wait_until,
)
from tests.ports import free_base_port

JOIN_S = 180  # a real process starting and block-syncing on a loaded machine


def effective_height(out: str) -> int:
    found = re.search(r"decides from height (\d+)", out)
    assert found is not None, out
    return int(found.group(1))


def decide(homes: list[str], propose: list[str], capsys: pytest.CaptureFixture[str]) -> int:
    """Member 0 proposes, members 1 and 2 approve: the height from which the new set decides."""
    assert cli.main(["gov", "propose", *propose, "--home", homes[0], "--expires-in", "500"]) == 0
    proposal = int(re.search(r"proposal (\d+)", capsys.readouterr().out).group(1))  # type: ignore[union-attr]
    assert cli.main(["gov", "approve", str(proposal), "--home", homes[1]]) == 0
    capsys.readouterr()
    assert cli.main(["gov", "approve", str(proposal), "--home", homes[2]]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 approvals, executed" in out, out
    return effective_height(out)


def signed_by(url: str, key: str, heights_: range) -> bool:
    """Whether ``key`` signed the commit certificate or LastCommit of a block in ``heights_``."""
    for h in heights_:
        block = rpc_call(url, BLOCK_GET.path, {"height": h}, timeout=5)
        for cert in (block.get("commit_certificate"), block.get("last_commit")):
            if cert and any(s["validator"] == key for s in cert["signatures"]):
                return True
    return False


def test_a_hospital_joins_and_another_leaves_under_load(testnet, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    net = testnet(4, governance=True)
    homes = [str(spec.home) for spec in net.specs]
    joined: Testnet | None = None
    try:
        with under_load(net) as load:
            base = free_base_port(2)
            newcomer = tmp_path / "join" / "node4"
            assert cli.main(["keys", "gen", "--home", str(newcomer), "--name", "st-marys", "--roles", "validator",
                             "--p2p", f"127.0.0.1:{base}", "--rpc", f"http://127.0.0.1:{base + 1}"]) == 0
            genesis = HomePaths(net.specs[0].home).genesis
            assert cli.main(["genesis", "install", "--home", str(newcomer), str(genesis)]) == 0
            new_key = json.loads((newcomer / "public.json").read_text())["public_key"]
            capsys.readouterr()

            added = decide(homes, ["validator-add", "--public-key", str(newcomer / "public.json")], capsys)
            joined = Testnet.load(tmp_path / "join")
            joined.start()
            everyone = Testnet([*net.specs, *joined.specs])  # for reads across both
            wait_heights(everyone, added + 3, JOIN_S, nodes=[4])
            wait_until(lambda: signed_by(net.specs[0].rpc_url, new_key, range(added, max(heights(net).values()))),
                       PROGRESS_S, "the new validator's signature in a commit certificate")
            names = [v["name"] for v in rpc_call(net.specs[0].rpc_url, "validators", timeout=5)]
            assert names == ["node0", "node1", "node2", "node3", "st-marys"]

            node3 = json.loads((net.specs[3].home / "public.json").read_text())["public_key"]
            removed = decide(homes, ["validator-remove", "--public-key", node3], capsys)
            wait_heights(everyone, removed + 1, PROGRESS_S, nodes=[0, 1, 2, 4])
            net.stop(3)
            wait_growing(everyone, 3, PROGRESS_S, nodes=[0, 1, 2, 4])
            assert_same_chain(everyone, [0, 1, 2, 4])

            net.stop(2)  # f = 1 of the new set {node0, node1, node2, st-marys}
            load.wait_for_more(20, PROGRESS_S)
            wait_growing(everyone, 3, PROGRESS_S, nodes=[0, 1, 4])
            acked = load.snapshot()
        assert_acked_everywhere(everyone, acked, nodes=[0, 1, 4])
        assert_same_chain(everyone, [0, 1, 4])
        assert signed_by(joined.specs[0].rpc_url, new_key, range(removed, max(heights(everyone, [4]).values())))
    finally:
        if joined is not None:
            joined.stop_all()
