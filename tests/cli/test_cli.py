"""The ``fbci`` command line: help for every command, and errors that never show a traceback."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from core.errors import InvalidInput
from genesis.create import init_network
from cli import main as cli
from cli import commands
from node.config import load_home

REPO = Path(__file__).resolve().parents[2]


def _leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [prefix]
    out = [prefix] if prefix else []
    for name, child in subs[0].choices.items():
        out += _leaf_commands(child, (*prefix, name))
    return out


COMMANDS = _leaf_commands(cli.build_parser())


def fbci(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert text in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_every_documented_command_is_reachable() -> None:
    expected = {("keys", "gen"), ("keys", "show"), ("genesis", "init"), ("genesis", "assemble"),
                ("genesis", "validate"), ("genesis", "install"), ("node", "start"), ("testnet",), ("status",),
                ("tx", "submit"), ("fl", "train"), ("ids", "watch"), ("predict",), ("demo",),
                ("block", "get"), ("tx", "get"), ("fl", "models"), ("fl", "rounds"), ("ids", "alerts"), ("version",),
                ("node", "reset")}
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=lambda c: " ".join(c) or "fbci")
def test_help_explains_each_command(command: tuple[str, ...]) -> None:
    result = fbci(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: fbci {' '.join(command)}".rstrip())
    description = result.stdout.split("\n\n")[1]
    assert len(description.split()) >= 4, f"'{' '.join(command)}' has no description"


def test_top_level_help_lists_every_command() -> None:
    out = fbci("--help").stdout
    for top in {c[0] for c in COMMANDS}:
        assert f"    {top} " in out or f"    {top}\n" in out  # argparse wraps names of 9+ characters


@pytest.mark.parametrize(("args", "text"), [
    ((), "the following arguments are required: COMMAND"),
    (("frobnicate",), "invalid choice: 'frobnicate'"),
    (("genesis",), "the following arguments are required: COMMAND"),
    (("genesis", "init", "--validators", "0", "--out", "x"), "--validators: must be at least 1"),
    (("genesis", "init", "--validators", "four", "--out", "x"), "'four' is not an integer"),
    (("keys", "gen", "--home", "h", "--roles", "surgeon"), "invalid choice: 'surgeon'"),
])
def test_usage_errors_exit_2(args: tuple[str, ...], text: str) -> None:
    assert_clean_error(fbci(*args), 2, text)


def test_genesis_errors_name_the_field_and_exit_1(tmp_path: Path) -> None:
    assert_clean_error(fbci("genesis", "validate", str(tmp_path / "nope.json")), 1,
                       "error[-32030 invalid_genesis]: ")
    assert fbci("genesis", "init", "--validators", "2", "--out", str(tmp_path / "net")).returncode == 0
    genesis = tmp_path / "net" / "genesis.json"
    doc = json.loads(genesis.read_text())
    doc["params"]["max_tx_bytes"] = 0
    genesis.write_text(json.dumps(doc))
    assert_clean_error(fbci("genesis", "validate", str(genesis)), 1, "genesis.json: params.max_tx_bytes: must be > 0")
    assert_clean_error(fbci("genesis", "init", "--validators", "2", "--out", str(tmp_path / "net")), 1,
                       "already exists")


def test_genesis_init_writes_the_read_policy_out_with_the_operators_choices(tmp_path: Path) -> None:
    """The operator sees every read's access in genesis: the defaults, and what its --app-state file chose."""
    (tmp_path / "app.json").write_text(json.dumps({"models": [], "read_policy": {"fl_rounds": "open"}}))
    for out, extra in (("default", ()), ("chosen", ("--app-state", str(tmp_path / "app.json")))):
        assert fbci("genesis", "init", "--validators", "1", "--out", str(tmp_path / out), *extra).returncode == 0
    default = json.loads((tmp_path / "default" / "genesis.json").read_text())["app_state"]
    chosen = json.loads((tmp_path / "chosen" / "genesis.json").read_text())["app_state"]
    assert default["read_policy"]["fl_rounds"] == "private" and chosen["read_policy"]["fl_rounds"] == "open"
    assert default["read_policy"]["block_get"] == chosen["read_policy"]["block_get"] == "open"
    assert {m for m, mode in chosen["read_policy"].items() if mode == "private"} >= {
        "fl_model_get", "alerts_query", "consent_history", "audit_events", "tx_get"}
    assert default["affiliations"] == {"hospital0": ["gateway0", "node0"]}


def test_one_machine_network_from_the_command_line(tmp_path: Path) -> None:
    result = fbci("genesis", "init", "--validators", "4", "--out", str(tmp_path), "--chain-id", "cli-test",
                  "--base-port", "31000")
    assert result.returncode == 0, result.stderr
    validated = fbci("genesis", "validate", str(tmp_path / "genesis.json"))
    genesis_hash = validated.stdout.split("genesis hash ")[1].strip()
    assert f"genesis hash {genesis_hash}" in result.stdout
    assert "node3: home" in result.stdout and "rpc http://127.0.0.1:31007" in result.stdout
    assert stat.S_IMODE((tmp_path / "node3/config/node_key.json").stat().st_mode) == 0o600
    shown = json.loads(fbci("keys", "show", "--home", str(tmp_path / "node1")).stdout)
    assert shown["name"] == "node1" and shown["p2p_address"] == "127.0.0.1:31002"


def test_production_path_from_the_command_line(tmp_path: Path) -> None:
    for i in range(2):
        r = fbci("keys", "gen", "--home", str(tmp_path / f"hosp{i}"), "--p2p", f"10.1.0.{i}:26600",
                 "--rpc", f"http://10.1.0.{i}:26601")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["name"] == f"hosp{i}" and json.loads(r.stdout)["rpc_address"] == f"10.1.0.{i}:26601"
    assert_clean_error(fbci("keys", "gen", "--home", str(tmp_path / "h9"), "--p2p", "10.1.0.9:1", "--rpc", "10.1.0.9:2"),
                       2, "'10.1.0.9:2' must be a URL, http://HOST:PORT, as every --rpc is")
    assert fbci("keys", "gen", "--home", str(tmp_path / "boss"), "--roles", "admin").returncode == 0
    assert_clean_error(fbci("keys", "gen", "--home", str(tmp_path / "hosp0"), "--p2p", "10.1.0.9:1"), 1,
                       "never overwrites a key")
    assert_clean_error(fbci("keys", "gen", "--home", str(tmp_path / "v")), 1, "--p2p HOST:PORT is required")
    publics = [str(tmp_path / d / "public.json") for d in ("hosp0", "hosp1", "boss")]
    out = tmp_path / "genesis.json"
    first = fbci("genesis", "assemble", "--chain-id", "consortium", "--out", str(out), "--genesis-time-ms", "9", *publics)
    assert first.returncode == 0, first.stderr
    assert_clean_error(fbci("genesis", "assemble", "--chain-id", "consortium", "--out", str(out), *publics), 1,
                       "--force")
    again = fbci("genesis", "assemble", "--chain-id", "consortium", "--out", str(out), "--genesis-time-ms", "9",
                 "--force", *publics[::-1])
    assert again.stdout.split("genesis hash ")[1] == first.stdout.split("genesis hash ")[1]
    installed = fbci("genesis", "install", "--home", str(tmp_path / "hosp1"), str(out))
    assert installed.returncode == 0 and "1 peer(s)" in installed.stdout
    assert_clean_error(fbci("genesis", "install", "--home", str(tmp_path / "boss"), str(out)), 1,
                       "not in the validator set")


def test_assemble_params_file_is_validated(tmp_path: Path) -> None:
    assert fbci("keys", "gen", "--home", str(tmp_path / "v"), "--p2p", "10.0.0.1:1").returncode == 0
    assert fbci("keys", "gen", "--home", str(tmp_path / "a"), "--roles", "admin").returncode == 0
    params = tmp_path / "params.json"
    params.write_text('{"max_block_txs": -1}')
    result = fbci("genesis", "assemble", "--chain-id", "c", "--out", str(tmp_path / "g.json"), "--params", str(params),
                  str(tmp_path / "v/public.json"), str(tmp_path / "a/public.json"))
    assert_clean_error(result, 1, "params.json: max_block_txs: must be > 0")


# --- in-process: the error mapping and the hand-off to integrator modules ---------------------

def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: Any) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)


def test_missing_integrator_module_is_not_available_exit_2(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "node.runtime", None)
    assert cli.main(["node", "start", "--home", "x"]) == 2
    assert "error[-32601 not_available]: 'fbci node start' is not available in this build" in capsys.readouterr().err
    _fake_module(monkeypatch, "devnet.demo")
    assert cli.main(["demo"]) == 2
    assert "devnet.demo.run_demo is missing" in capsys.readouterr().err


def test_missing_third_party_package_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fbci_cmd_needing_a_package.py").write_text("import no_such_package_for_fbci\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(cli.NotAvailable, match="needs the Python package 'no_such_package_for_fbci'"):
        commands._provided("fbci_cmd_needing_a_package", "main", "x")


@pytest.mark.parametrize(("exc", "code", "text"), [
    (RuntimeError("boom"), 1, "internal error: RuntimeError: boom (set FBCI_DEBUG=1"),
    (KeyboardInterrupt(), 130, "interrupted"),
    (PermissionError(13, "Permission denied", "/x/genesis.json"), 1,
     "error[-32040 storage_error]: /x/genesis.json: Permission denied"),
])
def test_unexpected_failures_are_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          exc: BaseException, code: int, text: str) -> None:
    def fail(path: Path) -> None:
        raise exc
    monkeypatch.setattr(commands, "load_genesis", fail)
    monkeypatch.delenv("FBCI_DEBUG", raising=False)
    assert cli.main(["genesis", "validate", "g.json"]) == code
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err and err.count("\n") == 1


def test_fbci_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def fail(path: Path) -> None:
        raise RuntimeError("boom")
    monkeypatch.setattr(commands, "load_genesis", fail)
    monkeypatch.setenv("FBCI_DEBUG", "1")
    assert cli.main(["genesis", "validate", "g.json"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_integrator_commands_receive_their_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    calls: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def recorder(name: str, result: Any) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            calls[name] = (args, kwargs)
            return result
        return record

    _fake_module(monkeypatch, "devnet.testnet", run_testnet=recorder("testnet", None), describe_testnet=lambda out: None)
    _fake_module(monkeypatch, "client.status", show_status=recorder("status", 0))
    _fake_module(monkeypatch, "client.fl.train", main=recorder("fl", 3))
    _fake_module(monkeypatch, "client.rpc", submit_tx=recorder("tx", {"hash": "ab"}))
    assert cli.main(["testnet", "--validators", "7", "--out", str(tmp_path / "tn")]) == 0
    assert calls["testnet"] == ((), {"n_validators": 7, "out_dir": tmp_path / "tn", "base_port": 26600, "resume": False,
                                "hybrid": False})

    assert cli.main(["genesis", "init", "--validators", "1", "--out", str(tmp_path / "n"), "--base-port", "32000"]) == 0
    home = str(tmp_path / "n" / "node0")
    assert cli.main(["status", "--home", home, "--json"]) == 0
    assert calls["status"] == ((), {"rpc_urls": ["http://127.0.0.1:32001"], "as_json": True})
    assert cli.main(["status", "--rpc", "http://a:1", "--rpc", "http://b:2"]) == 0
    assert calls["status"] == ((), {"rpc_urls": ["http://a:1", "http://b:2"], "as_json": False})
    assert cli.main(["status", "--rpc", "a:1"]) == 1

    capsys.readouterr()
    assert cli.main(["tx", "submit", "--home", home, "--key", "admin", "--kind", "acl.register",
                     "--payload", '{"n": 1}', "--commit"]) == 0
    admin = json.loads((tmp_path / "n" / "node0" / "keys" / "admin.json").read_text())["public_key"]
    (url, key, kind, payload), kwargs = calls["tx"]
    assert (url, key.public_key.hex(), kind, payload, kwargs) == (
        "http://127.0.0.1:32001", admin, "acl.register", {"n": 1}, {"commit": True})
    assert json.loads(capsys.readouterr().out) == {"hash": "ab"}

    assert cli.main(["fl", "train", "--home", home, "--model", "vitals", "--rounds", "2"]) == 3
    (args,), _ = calls["fl"]
    assert (args.model, args.rounds, args.key, args.home) == ("vitals", 2, "hospital", home)


@pytest.mark.parametrize(("payload", "text"), [
    ('{"lr": 0.5}', "--payload: payload.lr: floats are not allowed"),
    ("[1]", "--payload: must be a JSON object"),
    ("{", "--payload: not valid JSON"),
])
def test_tx_submit_checks_the_payload_before_anything_is_sent(payload: str, text: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["tx", "submit", "--key", "k.json", "--kind", "acl.register", "--payload", payload]) == 1
    assert text in capsys.readouterr().err


def test_node_start_never_imports_torch(tmp_path: Path) -> None:
    """The validator process must stay free of torch and the training code, whatever node.runtime imports."""
    probe = (
        "import importlib, sys\n"
        "import cli.main\n"
        "try:\n"
        "    runtime = importlib.import_module('node.runtime')\n"
        "    runtime.run_validator = lambda home, **kw: 0\n"
        "except ImportError:\n"
        "    pass\n"
        f"cli.main.main(['node', 'start', '--home', {str(tmp_path)!r}])\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'client.fl.training'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


# --- node.config: what 'fbci node start' reads, cross-checked before anything runs ------------

@pytest.fixture
def net_home(tmp_path: Path) -> Path:
    return init_network(3, tmp_path, genesis_time_ms=1).homes[1]


def _edit_config(home: Path, changes: dict[str, Any]) -> None:
    path = home / "config" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_load_home_returns_the_checked_pieces(net_home: Path) -> None:
    loaded = load_home(net_home)
    assert loaded.config.name == "node1" and loaded.data_path == net_home / "data"
    assert loaded.node_key.public_key.hex() == loaded.genesis.validators[1].public_key
    assert [p.name for p in loaded.config.peers] == ["node0", "node2"]


@pytest.mark.parametrize(("change", "text"), [
    ({"peers": [{"name": "node0", "public_key": "ab" * 32, "address": "127.0.0.1:1"}]}, "peers[0] ('node0') is not a validator"),
    ({"peers": [{"name": "node0", "public_key": "ab" * 32, "address": "nohost"}]}, "peers[0].address: must be HOST:PORT"),
    ({"name": "other"}, "name is 'other' but genesis names this key 'node1'"),
    ({"home": "/elsewhere"}, "home: is not a known field"),
    ({"data_dir": "../outside"}, "data_dir: must be a path inside the home directory"),
    ({"rpc_listen": "127.0.0.1:26602"}, "rpc_listen: must use a different port"),
    ({"log_level": "loud"}, "log_level: must be one of"),
])
def test_load_home_refuses_mismatched_or_malformed_configs(net_home: Path, change: dict[str, Any], text: str) -> None:
    _edit_config(net_home, change)
    with pytest.raises(InvalidInput) as info:
        load_home(net_home)
    assert text in info.value.message and "config.json" in info.value.message


def test_load_home_refuses_a_key_that_is_not_a_validator(net_home: Path, tmp_path: Path) -> None:
    (net_home / "config" / "node_key.json").write_bytes((tmp_path / "node1" / "keys" / "hospital.json").read_bytes())
    with pytest.raises(InvalidInput, match="not in the validator set"):
        load_home(net_home)
    with pytest.raises(InvalidInput, match="home directory does not exist"):
        load_home(tmp_path / "nowhere")


def _parser_of(command: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    for name in command:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_option_names_are_spelled_one_way(command: tuple[str, ...]) -> None:
    options = {opt: action for action in _parser_of(command)._actions for opt in action.option_strings}
    if "--rpc" in options:
        assert options["--rpc"].metavar == "URL" and "http://" in (options["--rpc"].help or "")
    if "--out" in options:
        out = options["--out"]
        assert (out.metavar, (out.help or "").split(":")[0].split(" ")[:2]) in (
            ("DIR", ["a", "directory"]), ("FILE", ["a", "file"])), out.help
    assert "--version" not in options, "a model version is --model-version; --version is fbci's own"
    assert not any(opt.endswith("-version") and opt != "--model-version" for opt in options)
