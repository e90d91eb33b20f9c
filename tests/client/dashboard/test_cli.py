"""``fbci dashboard``'s options: clear errors for bad input, and the testnet's other validators found."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InvalidInput
from cli.dashboard import sibling_rpc_urls, split_listen
from cli.main import main
from genesis.create import init_network


def test_listen_address() -> None:
    assert split_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert split_listen("[::1]:9") == ("::1", 9)
    for bad in ("8080", "host:", ":80", "h:99999", "h:x"):
        with pytest.raises(InvalidInput, match="HOST:PORT"):
            split_listen(bad)


def test_the_other_homes_of_a_testnet_are_its_validators(tmp_path: Path) -> None:
    net = init_network(3, tmp_path / "net", base_port=27000)
    other = init_network(2, tmp_path / "other", base_port=27100)
    (tmp_path / "net" / "stray").mkdir()
    assert sibling_rpc_urls(net.homes[0]) == ["http://127.0.0.1:27003", "http://127.0.0.1:27005"]
    assert sibling_rpc_urls(other.homes[1]) == ["http://127.0.0.1:27101"]


@pytest.mark.parametrize(("args", "message"), [
    (["--alarm-threshold", "1.5"], "--alarm-threshold"),
    (["--listen", "nowhere"], "HOST:PORT"),
    (["--rpc", "ftp://x"], "--rpc"),
    (["--key", "nobody"], "--key"),
    (["--vitals-csv", "/nonexistent"], "--vitals-csv"),
    (["--ward-size", "0"], "--ward-size"),
])
def test_bad_options_are_clear_errors(args: list[str], message: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    home = init_network(1, tmp_path / "net", base_port=27200).homes[0]
    assert main(["dashboard", "--home", str(home), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error[") and message in err


def test_no_validator_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.ports import free_base_port

    dead, listen = free_base_port(2), free_base_port(1)
    assert main(["dashboard", "--rpc", f"http://127.0.0.1:{dead}", "--listen", f"127.0.0.1:{listen}"]) == 4  # cli.main.EXIT_UNREACHABLE
    assert "error[-32060 node_unreachable]" in capsys.readouterr().err


def test_a_home_with_a_genesis_file_reads_through_the_light_client(tmp_path: Path) -> None:
    import argparse

    from cli.dashboard import build_dashboard, register
    from client.dashboard.source import RpcSource, VerifiedSource
    from genesis.schema import load_genesis

    net = init_network(3, tmp_path / "net", base_port=27300)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    d = build_dashboard(parser.parse_args(["dashboard", "--home", str(net.homes[0])]))
    assert isinstance(d.source, VerifiedSource) and d.validators[0] is d.source
    assert [c.rpc_url for c in d.source.light.endpoints] == [s.client.rpc_url for s in
                                                             (d.source.rest, *d.validators[1:])]
    genesis = load_genesis(net.homes[0] / "config" / "genesis.json")
    assert d.trusted is not None and d.trusted.chain_id == genesis.chain_id
    assert d.trusted.validators.validators_at(1) == tuple(bytes.fromhex(v.public_key) for v in genesis.validators)
    bare = build_dashboard(parser.parse_args(["dashboard", "--rpc", "http://127.0.0.1:27301"]))
    assert isinstance(bare.source, RpcSource) and bare.trusted is None  # no genesis: proofs labelled unchecked
