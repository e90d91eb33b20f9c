"""A validator process refuses to start on storage that lost what it had promised, naming what is gone:
a gap in its stored chain, a damaged LevelDB log (4 KiB overwritten, as in the incident that silently
dropped committed blocks), or a consensus WAL deleted or emptied on a home that signed votes; the last
starts with ``--accept-wal-loss``, once."""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Callable
from pathlib import Path

import plyvel
import pytest

from devnet.testnet import NodeSpec, Testnet, node_command
from genesis.home import load_config
from tests.integration.load import (
    READY_S, ClientLoad, assert_same_chain, chain_id_of, client_keys, heights, wait_heights, wait_until,
)

pytestmark = pytest.mark.timeout(240)

MakeTestnet = Callable[..., Testnet]


def _data(net: Testnet, i: int = 0) -> Path:
    home = net.specs[i].home
    return home / load_config(home).data_dir


def _refused(net: Testnet, error: str, i: int = 0) -> str:
    """Start validator ``i`` again, wait for it to exit, and return what it logged meanwhile."""
    log_path = net.specs[i].log_path
    before = log_path.stat().st_size
    net.restart(i)
    wait_until(lambda: not net.alive(i), READY_S, "the validator refuses to start")
    assert net.stop(i) == 1
    with log_path.open("rb") as log:
        log.seek(before)
        text = log.read().decode()
    refused = [line for line in text.splitlines() if "refused to start" in line]
    assert len(refused) == 1 and "level=critical" in refused[0] and error in refused[0], text
    assert f"{error}:" in text and "Traceback" not in text  # the CLI's line too, and nothing raw
    return text


def accepting_wal_loss(name: str) -> Callable[[NodeSpec], list[str]]:
    """How the testnet starts its validators, with ``--accept-wal-loss`` for validator ``name`` alone."""
    def command(spec: NodeSpec) -> list[str]:
        return [*node_command(spec), "--accept-wal-loss"] if spec.name == name else node_command(spec)
    return command


def _stopped_at(net: Testnet, height: int) -> int:
    net.wait_ready(READY_S, min_height=height)
    reached = heights(net)[0]
    assert net.stop(0) == 0
    return reached


def test_a_validator_whose_store_lost_a_block_refuses_to_start_naming_it(testnet: MakeTestnet) -> None:
    net = testnet(1)
    _stopped_at(net, 6)
    db = plyvel.DB(str(_data(net) / "db"))
    db.delete(b"blk/b" + struct.pack(">Q", 3))
    db.close()
    assert "block 3 is missing" in _refused(net, "error[-32043 store_corrupt]")


def test_a_validator_whose_leveldb_log_is_damaged_refuses_to_start(testnet: MakeTestnet) -> None:
    net = testnet(1)
    net.wait_ready(READY_S, min_height=1)
    db = _data(net) / "db"

    def leveldb_log() -> Path:
        return max((p for p in db.iterdir() if p.suffix == ".log"), key=lambda p: p.stat().st_size)

    with ClientLoad([net.specs[0].rpc_url], client_keys(net), chain_id_of(net)):
        wait_until(lambda: leveldb_log().stat().st_size >= 64 << 10, READY_S, "64 KiB of LevelDB log")
    assert net.stop(0) == 0
    data = bytearray(leveldb_log().read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = random.Random(17).randbytes(4096)
    leveldb_log().write_bytes(bytes(data))
    assert f"the database at {db} is damaged" in _refused(net, "error[-32043 store_corrupt]")


@pytest.mark.parametrize("loss", ["deleted", "emptied"])
def test_a_lost_wal_is_refused_without_the_flag_and_accepted_with_it_once(testnet: MakeTestnet, loss: str) -> None:
    net = testnet(1)
    reached = _stopped_at(net, 2)
    wal = _data(net) / "consensus.wal"
    if loss == "deleted":
        wal.unlink()
    else:
        os.truncate(wal, 0)
    text = _refused(net, "error[-32044 wal_lost]")
    assert f"consensus WAL {wal} is {'missing' if loss == 'deleted' else 'empty'}" in text
    assert "start once with --accept-wal-loss" in text
    net.command = accepting_wal_loss("node0")
    net.restart(0)
    net.wait_ready(READY_S, min_height=reached + 2)  # it runs, and the chain goes on
    assert "starting anyway (--accept-wal-loss)" in net.specs[0].log_path.read_text()
    net.command = node_command
    net.restart(0)
    net.wait_ready(READY_S, min_height=reached + 3)  # the loss was accepted once: no flag needed again


def test_a_validator_that_lost_its_wal_rejoins_its_network_with_the_flag(testnet: MakeTestnet) -> None:
    """In a network of four the others go on without it; with the flag it follows their certificates."""
    net = testnet(4)
    net.wait_ready(READY_S, min_height=2)
    assert net.stop(3) == 0
    (_data(net, 3) / "consensus.wal").unlink()
    _refused(net, "error[-32044 wal_lost]", 3)
    net.command = accepting_wal_loss("node3")
    net.restart(3)
    wait_heights(net, max(heights(net, [0, 1, 2]).values()) + 2, READY_S)
    assert_same_chain(net)
