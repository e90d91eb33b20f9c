"""Creating chains: the one-machine layout, the production path, and that both agree."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from core.crypto import PrivateKey
from core.errors import InvalidGenesis, InvalidInput
from genesis.create import assemble, init_network, install_genesis, load_parts
from genesis.home import HomePaths, NodeConfig
from genesis.keys import generate_identity, load_public_part, public_part_of, show_identity
from genesis.schema import ChainParams, load_genesis
from tests.genesis.samples import GENESIS_TIME_MS, fixed_key, sample_parts


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _config(home: Path) -> NodeConfig:
    return NodeConfig.model_validate(json.loads(HomePaths(home).config.read_text()))


def test_init_writes_one_home_per_validator_with_private_keys_0600(tmp_path: Path) -> None:
    net = init_network(3, tmp_path, chain_id="fbci-t", base_port=30000, hospitals=4, genesis_time_ms=5)
    assert net.homes == [tmp_path / f"node{i}" for i in range(3)]
    assert load_genesis(tmp_path / "genesis.json") == net.genesis
    expected_keys = {"node0": {"admin", "hospital", "gateway", "hospital3"},
                     "node1": {"hospital", "gateway"}, "node2": {"hospital", "gateway"}}
    for i, home in enumerate(net.homes):
        paths = HomePaths(home)
        assert load_genesis(paths.genesis).hash() == net.genesis.hash()
        assert _mode(paths.node_key) == 0o600
        assert {p.stem for p in paths.keys_dir.iterdir()} == expected_keys[home.name]
        assert all(_mode(p) == 0o600 for p in paths.keys_dir.iterdir())
        validator = net.genesis.validators[i]
        assert PrivateKey.load(paths.node_key).public_key.hex() == validator.public_key
        assert show_identity(home).p2p_address == validator.p2p_address == f"127.0.0.1:{30000 + 2 * i}"
        config = _config(home)
        assert (config.name, config.p2p_listen, config.rpc_listen) == (
            f"node{i}", f"127.0.0.1:{30000 + 2 * i}", f"127.0.0.1:{30001 + 2 * i}")
        assert config.rpc_url() == f"http://127.0.0.1:{30001 + 2 * i}"
        assert sorted(p.name for p in config.peers) == sorted({"node0", "node1", "node2"} - {f"node{i}"})


def test_init_gives_each_client_key_the_role_its_file_says(tmp_path: Path) -> None:
    net = init_network(2, tmp_path, genesis_time_ms=5)
    roles = {a.public_key: a.roles for a in net.genesis.accounts}
    for home in net.homes:
        for key_file in HomePaths(home).keys_dir.iterdir():
            assert roles[PrivateKey.load(key_file).public_key.hex()] == [key_file.stem]
    assert [a.name for a in net.genesis.accounts if "admin" in a.roles] == ["admin"]


def test_init_orders_validators_numerically(tmp_path: Path) -> None:
    net = init_network(11, tmp_path, hospitals=0, gateways=0, genesis_time_ms=5)
    assert [v.name for v in net.genesis.validators] == [f"node{i}" for i in range(11)]


def test_init_never_overwrites_a_network(tmp_path: Path) -> None:
    init_network(1, tmp_path, genesis_time_ms=5)
    key_before = (tmp_path / "node0/config/node_key.json").read_bytes()
    with pytest.raises(InvalidInput, match="already exists"):
        init_network(1, tmp_path, genesis_time_ms=5)
    assert (tmp_path / "node0/config/node_key.json").read_bytes() == key_before


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_validators": 0}, "validators: need at least 1"),
    ({"n_validators": 2, "hospitals": -1}, "hospitals and gateways"),
    ({"n_validators": 2, "base_port": 80}, "base_port"),
    ({"n_validators": 4, "base_port": 65530}, "base_port"),
    ({"n_validators": 2, "chain_id": "Bad Chain"}, "chain_id: must be"),
])
def test_init_refuses_bad_arguments_before_writing(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises((InvalidInput, InvalidGenesis), match=message):
        init_network(out_dir=tmp_path / "net", **kwargs)
    assert not (tmp_path / "net" / "genesis.json").exists()


def test_assemble_from_public_parts_equals_init_with_the_same_keys(tmp_path: Path) -> None:
    net = init_network(4, tmp_path, chain_id="fbci-eq", genesis_time_ms=77, params=ChainParams(max_block_txs=9))
    parts = [load_public_part(HomePaths(h).public) for h in net.homes]
    for account in net.genesis.accounts:
        if "validator" not in account.roles:
            home = net.homes[0 if account.name == "admin" else int(account.name[-1])]
            key = PrivateKey.load(HomePaths(home).client_key(account.roles[0]))
            parts.append(public_part_of(key, name=account.name, roles=account.roles))
    # init also writes which gateway and validator report for which hospital (app_state.affiliations)
    assert net.genesis.app_state == {"affiliations": {f"hospital{j}": [f"gateway{j}", f"node{j}"] for j in range(4)}}
    rebuilt = assemble("fbci-eq", parts[::-1], genesis_time_ms=77, params=ChainParams(max_block_txs=9),
                       app_state=net.genesis.app_state)
    assert rebuilt == net.genesis and rebuilt.hash() == net.genesis.hash()
    assert assemble("fbci-eq", parts, genesis_time_ms=78, params=ChainParams(max_block_txs=9),
                    app_state=net.genesis.app_state).hash() != rebuilt.hash()


def test_assemble_names_the_conflicting_field() -> None:
    parts = sample_parts(2)
    parts.append(public_part_of(fixed_key(60), name="node1", roles=["hospital"]))
    with pytest.raises(InvalidGenesis, match=r"accounts\[\d+\]\.name: 'node1' is already used"):
        assemble("fbci-test", parts, genesis_time_ms=GENESIS_TIME_MS)
    no_admin = [p for p in sample_parts(2) if p.name != "admin"]
    with pytest.raises(InvalidGenesis, match="needs role 'admin'"):
        assemble("fbci-test", no_admin, genesis_time_ms=GENESIS_TIME_MS)


def test_keys_gen_writes_a_0600_key_and_refuses_to_overwrite_it(tmp_path: Path) -> None:
    part = generate_identity(tmp_path, name="st-marys", roles=["validator"], p2p_address="10.0.0.1:26600")
    paths = HomePaths(tmp_path)
    assert _mode(paths.node_key) == 0o600
    assert load_public_part(paths.public) == part == show_identity(tmp_path)
    key_before = paths.node_key.read_bytes()
    with pytest.raises(InvalidInput, match="never overwrites a key"):
        generate_identity(tmp_path, name="st-marys", roles=["validator"], p2p_address="10.0.0.1:26600")
    assert paths.node_key.read_bytes() == key_before


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"roles": ["validator"]}, "p2p_address: is required for role 'validator'"),
    ({"roles": ["hospital"], "p2p_address": "h:1"}, "p2p_address: only a validator"),
    ({"roles": ["surgeon"]}, "roles[0]: must be one of"),
    ({"roles": ["hospital"], "name": "St Marys"}, "name: must be 1-32"),
])
def test_keys_gen_refuses_a_bad_public_part_without_writing_a_key(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        generate_identity(tmp_path, **{"name": "h1", **kwargs})
    assert not HomePaths(tmp_path).node_key.exists()


def test_show_identity_notices_a_public_json_from_another_key(tmp_path: Path) -> None:
    generate_identity(tmp_path / "a", name="a", roles=["admin"])
    generate_identity(tmp_path / "b", name="b", roles=["admin"])
    (tmp_path / "a/public.json").write_bytes((tmp_path / "b/public.json").read_bytes())
    with pytest.raises(InvalidInput, match="does not match"):
        show_identity(tmp_path / "a")


def test_production_path_keys_never_move(tmp_path: Path) -> None:
    homes = [tmp_path / f"h{i}" for i in range(4)]
    for i, home in enumerate(homes):
        generate_identity(home, name=f"hosp{i}", roles=["validator"], p2p_address=f"10.0.0.{i + 1}:26600",
                          rpc_address=f"10.0.0.{i + 1}:26601")
    generate_identity(tmp_path / "adm", name="boss", roles=["admin"])
    public_files = [HomePaths(h).public for h in [*homes, tmp_path / "adm"]]
    doc = assemble("consortium", load_parts(public_files), genesis_time_ms=1)
    assert assemble("consortium", load_parts(public_files[::-1]), genesis_time_ms=1).hash() == doc.hash()

    config = install_genesis(homes[2], doc, p2p_listen="0.0.0.0:26600")
    assert (config.name, config.p2p_listen, config.rpc_listen) == ("hosp2", "0.0.0.0:26600", "10.0.0.3:26601")
    assert [p.name for p in config.peers] == ["hosp0", "hosp1", "hosp3"]
    assert _config(homes[2]) == config and load_genesis(HomePaths(homes[2]).genesis) == doc
    with pytest.raises(InvalidInput, match="already set up"):
        install_genesis(homes[2], doc)
    with pytest.raises(InvalidInput, match="not in the validator set"):
        install_genesis(tmp_path / "adm", doc)
    with pytest.raises(InvalidInput, match="more than once"):
        load_parts([public_files[0], public_files[0]])
