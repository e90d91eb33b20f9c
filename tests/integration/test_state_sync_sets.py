"""State sync across a validator-set change, on real processes: a hospital's validator admitted by the
members starts only once the chain is past the change and a snapshot after it, and joins by state sync.

Its snapshot's header is certified by the five-validator set, which genesis does not name, so the joiner
must follow the change from genesis through the certified header before it (``node/snapshot_trust.py``);
held to genesis's four alone, every peer's header would be refused. The four genesis validators keep the
chain going meanwhile (4 of 5 is a quorum). The newcomer must restore the snapshot, block-sync the rest
and then sign commit certificates with the others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

import cli.main as cli
from devnet.testnet import Testnet, rpc_call
from genesis.home import HomePaths, load_config, write_config
from genesis.schema import ChainParams
from tests.integration.load import PROGRESS_S, READY_S, assert_same_chain, heights, wait_heights, wait_until
from tests.integration.test_membership_testnet import JOIN_S, decide, signed_by
from tests.ports import free_base_port

pytestmark = pytest.mark.timeout(400)

INTERVAL = 20
PARAMS = ChainParams(snapshot_interval=INTERVAL, block_interval_ms=200)


def test_a_validator_admitted_by_a_set_change_joins_by_state_sync(
        testnet: Callable[..., Testnet], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = testnet(4, governance=True, params=PARAMS)
    net.wait_ready(READY_S)
    homes = [str(spec.home) for spec in net.specs]
    base = free_base_port(2)
    newcomer = tmp_path / "join" / "node4"
    assert cli.main(["keys", "gen", "--home", str(newcomer), "--name", "st-marys", "--roles", "validator",
                     "--p2p", f"127.0.0.1:{base}", "--rpc", f"http://127.0.0.1:{base + 1}"]) == 0
    assert cli.main(["genesis", "install", "--home", str(newcomer), str(HomePaths(net.specs[0].home).genesis)]) == 0
    config = load_config(newcomer)
    write_config(config.model_copy(update={"state_sync": True}), HomePaths(newcomer))
    new_key = json.loads((newcomer / "public.json").read_text())["public_key"]
    capsys.readouterr()

    added = decide(homes, ["validator-add", "--public-key", str(newcomer / "public.json")], capsys)
    wait_heights(net, added + INTERVAL + 3, PROGRESS_S)  # a snapshot S with S + 1 past the change
    joined = Testnet.load(tmp_path / "join")
    try:
        joined.start()
        everyone = Testnet([*net.specs, *joined.specs])
        joined.wait_ready(JOIN_S, min_height=added + INTERVAL)
        log = joined.specs[0].log_path.read_text()
        restored = re.search(r"restored the state of height (\d+)", log)
        assert restored is not None and int(restored.group(1)) + 1 > added, log[-3000:]
        assert "state sync: banned peer" not in log
        at = max(heights(net).values())
        wait_heights(everyone, at + 5, PROGRESS_S)
        wait_until(lambda: signed_by(net.specs[0].rpc_url, new_key, range(at, max(heights(net).values()) + 1)),
                   PROGRESS_S, "the state-synced validator's signature in a commit certificate")
        assert_same_chain(everyone, [0, 1, 2, 3])
        top = heights(everyone, [4])[4]
        for h in (int(restored.group(1)), top):  # it holds blocks from its snapshot on, the others' ones
            mine = rpc_call(joined.specs[0].rpc_url, "block_get", {"height": h}, timeout=5)
            assert mine["hash"] == rpc_call(net.specs[1].rpc_url, "block_get", {"height": h}, timeout=5)["hash"]
    finally:
        joined.stop_all()
