"""State sync on real processes: a validator whose home was wiped joins from a snapshot, not from genesis.

A 4-validator testnet with snapshots every 20 blocks commits transactions
(accounts' nonces, receipts) over its catalog's FL models. One validator is
killed with SIGKILL and its database deleted; it restarts with state sync on
while another validator serves every chunk with one byte flipped. It must ban
that peer (a warning in its log, ``fbci_state_sync_banned_peers`` = 1),
restore the snapshot from the honest ones, block-sync the rest, answer reads
that a light client verifies from genesis alone, and then vote: with a
different validator stopped, the chain only commits if it does.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from collections.abc import Callable
from typing import Any

import pytest

from client.light import LightClient, home_genesis
from client.rpc import RpcClient
from core.api import ACCOUNT, AccountGetParams
from devnet.testnet import NodeSpec, Testnet, TestnetError, node_command, rpc_call
from fl_contracts.queries import FL_MODEL_GET, FL_MODELS, FL_ROUNDS, ModelGetParams, RoundsParams
from genesis.home import HomePaths, load_config, write_config
from genesis.schema import ChainParams
from tests.integration.load import PROGRESS_S, READY_S, heights, metric, under_load, wait_heights, wait_until

pytestmark = pytest.mark.timeout(300)

INTERVAL = 20
PARAMS = ChainParams(snapshot_interval=INTERVAL, block_interval_ms=200)
JOINER, LIAR, STOPPED = 3, 2, 0


def _command(spec: NodeSpec) -> list[str]:
    if spec.name != f"node{LIAR}":
        return node_command(spec)
    return [sys.executable, "-m", "tests.integration.corrupt_chunks", *node_command(spec)[3:]]


def _logged(net: Testnet, i: int, since: int, text: bytes) -> bool:
    with net.specs[i].log_path.open("rb") as log:
        log.seek(since)
        return text in log.read()


async def _verified_reads(net: Testnet, i: int, public_key: bytes) -> tuple[Any, ...]:
    """Models, the first model's latest version and round history, and an account, each verified by a light
    client that trusts nothing but genesis."""
    doc = home_genesis(net.specs[0].home)
    assert doc is not None
    rpc = RpcClient(net.specs[i].rpc_url, reader=net.client_key())  # models are private reads: signed
    try:
        light = LightClient.from_genesis(doc, [rpc])
        models = await light.query(FL_MODELS, FL_MODELS.params())
        model_id = models[0].spec.id
        return (models, await light.query(FL_MODEL_GET, ModelGetParams(model_id=model_id)),
                await light.query(FL_ROUNDS, RoundsParams(model_id=model_id)),
                await light.query(ACCOUNT, AccountGetParams(public_key=public_key)))
    finally:
        await rpc.close()


def test_a_wiped_validator_state_syncs_past_a_lying_peer_then_block_syncs_and_votes(
        testnet: Callable[..., Testnet]) -> None:
    net = testnet(4, params=PARAMS, command=_command)
    with under_load(net) as load:
        load.wait_for_acks(30, PROGRESS_S)
        wait_heights(net, 2 * INTERVAL + 2, PROGRESS_S)
        net.kill(JOINER, signal.SIGKILL)
        home = net.specs[JOINER].home
        paths = HomePaths(home)
        config = load_config(home)
        shutil.rmtree(home / config.data_dir / "db")  # the WAL stays: it guards what this key signed
        write_config(config.model_copy(update={"state_sync": True}), paths)
        down_at = max(heights(net, [0, 1, 2]).values())
        log_before = net.specs[JOINER].log_path.stat().st_size
        net.restart(JOINER)
        net.wait_ready(READY_S, nodes=[JOINER], min_height=down_at)
    assert _logged(net, JOINER, log_before, b"restored the state of height ")
    assert _logged(net, JOINER, log_before, b"state sync: banned peer")
    assert metric(net, JOINER, "fbci_state_sync_banned_peers_total") == 1
    top = heights(net, [JOINER])[JOINER]
    joined_block = rpc_call(net.specs[JOINER].rpc_url, "block_get", {"height": top}, timeout=5)
    assert joined_block["hash"] == rpc_call(net.specs[1].rpc_url, "block_get", {"height": top}, timeout=5)["hash"]
    with pytest.raises(TestnetError, match="not_found"):  # it never replayed the chain from genesis
        rpc_call(net.specs[JOINER].rpc_url, "block_get", {"height": 1}, timeout=5)
    wait_until(lambda: _logged(net, JOINER, log_before, b"block sync reached height"), PROGRESS_S,
               "the joiner logs that block sync reached its target")

    hospital = load.keys[0].public_key.raw
    joined_reads = asyncio.run(_verified_reads(net, JOINER, hospital))
    honest_reads = asyncio.run(_verified_reads(net, 1, hospital))
    assert joined_reads[0] and joined_reads[:3] == honest_reads[:3]  # models, latest version, rounds
    assert joined_reads[3] is not None and joined_reads[3].nonce > 0

    net.stop(STOPPED)  # 3 of 4 left: a quorum needs the joiner's votes
    at = max(heights(net, [1, 2, JOINER]).values())
    wait_heights(net, at + 5, PROGRESS_S, [1, 2, JOINER])
