"""The read side of the CLI against a real validator: what each command prints is what the chain holds.

One 1-validator testnet runs for the module. Each command runs as a user runs
it (a subprocess); its ``--json`` must equal the node's own JSON-RPC answer to
the same query, and its table must show that answer's values. Bad input and
an unreachable node give ``error[...]`` with the documented exit status and
never a traceback; ``node reset`` refuses while the node runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devnet.testnet import Testnet, TestnetError, rpc_call
from tests.testnets import running_testnet
from tests.ports import free_base_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    with running_testnet(tmp_path_factory.mktemp("cli-read")) as net:
        yield net


def fbci(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


def home(net: Testnet) -> str:
    return str(net.specs[0].home)


def rpc(net: Testnet, method: str, params: Any = None) -> Any:
    """The node's own answer, signed by the home's hospital key (most reads are private by default)."""
    return rpc_call(net.specs[0].rpc_url, method, params, timeout=10, reader=net.client_key("hospital"))


def field(text: str, name: str) -> str:
    """The value on the ``name  value`` line of a detail view."""
    found = [line[len(name):].strip() for line in text.splitlines() if line.startswith(name + "  ")]
    assert len(found) == 1, (name, text)
    return found[0]


def ok(*args: str) -> str:
    result = fbci(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def echo_tx(node: Testnet) -> dict[str, Any]:
    """A committed test.echo from the hospital account: hash, height and index as ``tx submit`` reports them."""
    out = ok("tx", "submit", "--home", home(node), "--key", "hospital", "--kind", "test.echo",
             "--payload", '{"msg": "0x00ff"}', "--commit")
    return json.loads(out)


def test_block_get_by_height_and_hash_is_the_chains_block(node: Testnet, echo_tx: dict[str, Any]) -> None:
    chain = rpc(node, "block_get", {"height": echo_tx["height"]})
    by_height = json.loads(ok("block", "get", "--home", home(node), str(echo_tx["height"]), "--json"))
    by_hash = json.loads(ok("block", "get", "--rpc", node.specs[0].rpc_url, chain["hash"], "--json"))
    assert by_height == by_hash == chain
    table = ok("block", "get", "--home", home(node), str(echo_tx["height"]))
    assert field(table, "height") == str(echo_tx["height"]) and field(table, "hash") == chain["hash"]
    assert field(table, "proposer") == "node0" and field(table, "state hash") == chain["state_hash"]
    assert field(table, "commit certificate") == f"view {chain['commit_certificate']['view']}, 1/1 signatures (node0)"
    assert field(table, "transactions") == str(chain["num_txs"])
    assert f"{echo_tx['index']:>4}  {echo_tx['hash']}" in table.splitlines()[-chain["num_txs"]:][echo_tx["index"]]


def test_block_get_latest_is_a_committed_block(node: Testnet) -> None:
    latest = json.loads(ok("block", "get", "--home", home(node), "--json"))
    assert latest == rpc(node, "block_get", {"height": latest["height"]}) and latest["height"] >= 1


def test_tx_get_shows_the_transaction_and_its_receipt(node: Testnet, echo_tx: dict[str, Any]) -> None:
    chain = rpc(node, "tx_get", {"hash": echo_tx["hash"]})
    assert json.loads(ok("tx", "get", "--home", home(node), echo_tx["hash"], "--json")) == chain
    table = ok("tx", "get", "--home", home(node), echo_tx["hash"])
    assert field(table, "kind") == "test.echo" and field(table, "payload.msg") == "00ff"
    assert field(table, "sender") == f"hospital0 ({chain['sender']})"
    assert field(table, "block") == f"height {echo_tx['height']}, index {echo_tx['index']}"
    assert field(table, "outcome") == "executed" and field(table, "result.bytes") == "2"


def test_fl_models_and_rounds_are_the_chains(node: Testnet) -> None:
    models = rpc(node, "fl_models")
    assert json.loads(ok("fl", "models", "--home", home(node), "--json")) == models
    table = ok("fl", "models", "--home", home(node)).splitlines()
    assert table[0].split()[:3] == ["MODEL", "TASK", "RULE"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert set(rows) == {m["spec"]["id"] for m in models}
    for m in models:
        rounds = rpc(node, "fl_rounds", {"model_id": m["spec"]["id"]})
        row = rows[m["spec"]["id"]]
        assert row[2] == m["spec"]["rule"] and row[-1] == m["hash"][:12]
        assert row[-3:-1] == [f"v{rounds[-1]['base_version']}", str(rounds[-1]["round"])]
    history = rpc(node, "fl_rounds", {"model_id": "breast_cancer"})
    assert json.loads(ok("fl", "rounds", "--home", home(node), "--model", "breast_cancer", "--json")) == history
    every = json.loads(ok("fl", "rounds", "--home", home(node), "--last", "1", "--json"))
    assert sorted(r["model_id"] for r in every) == sorted(rows) and all(r["status"] == "open" for r in every)


def test_ids_alerts_filters_and_shows_the_chains_alerts(node: Testnet) -> None:
    watched = fbci("ids", "watch", "--home", home(node), "--generate", "300", "--attack-rate", "0.5", "--json")
    assert watched.returncode == 0, watched.stderr
    assert json.loads(watched.stdout)["committed"] > 0
    everything = rpc(node, "alerts_query", {})
    assert json.loads(ok("ids", "alerts", "--home", home(node), "--json")) == everything
    first = everything["alerts"][0]
    params = {"alert_class": first["alert_class"], "subject": first["subject"], "min_severity": first["severity"]}
    chosen = rpc(node, "alerts_query", params)
    args = ("--class", first["alert_class"], "--subject", first["subject"], "--min-severity", str(first["severity"]))
    assert json.loads(ok("ids", "alerts", "--home", home(node), *args, "--json")) == chosen
    table = ok("ids", "alerts", "--home", home(node), *args).splitlines()
    assert table[0].split()[:5] == ["ID", "HEIGHT", "TIME", "HOSPITAL", "CLASS"]
    ids = [int(line.split()[0]) for line in table[1:-1]]
    assert ids == [a["alert_id"] for a in chosen["alerts"]] and table[-1] == f"{len(ids)} alert(s)"
    cells = table[1].split()
    assert cells[4:6] == [first["hospital"], first["alert_class"]] and cells[7] == f"device:{first['subject'][:12]}"
    by_name = json.loads(ok("ids", "alerts", "--home", home(node), "--min-severity", "high", "--json"))
    assert by_name == rpc(node, "alerts_query", {"min_severity": 3})
    assert len(everything["alerts"]) > 1
    cursor = rpc(node, "alerts_query", {"limit": 1})["next_cursor"]
    assert ok("ids", "alerts", "--home", home(node), "--limit", "1").splitlines()[-1] == (
        f"1 alert(s); more after these: add --cursor {cursor}")
    second = json.loads(ok("ids", "alerts", "--home", home(node), "--limit", "1", "--cursor", cursor, "--json"))
    assert second["alerts"] == everything["alerts"][1:2]


@pytest.mark.parametrize(("args", "status", "text"), [
    (("block", "get", "999999999"), 3, "error[-32001 not_found]: no block at height 999999999"),
    (("block", "get", "12ab"), 1, "error[-32602 invalid_input]: HEIGHT|HASH: '12ab' is neither a height"),
    (("tx", "get", "ab" * 32), 3, "error[-32001 not_found]: no committed transaction with hash"),
    (("tx", "get", "0x" + "ab" * 31), 1, "HASH: '0x" + "ab" * 31 + "' is not a hash (64 hex digits, no 0x)"),
    (("fl", "rounds", "--model", "nope"), 3, "error[-32001 not_found]: no model 'nope'"),
    (("ids", "alerts", "--from-height", "9", "--to-height", "3"), 1, "--to-height: is below 'from_height' (9)"),
    (("ids", "alerts", "--min-severity", "dire"), 2, "--min-severity: invalid choice: 'dire'"),
])
def test_bad_input_is_a_clear_error_with_its_exit_status(node: Testnet, args: tuple[str, ...], status: int,
                                                         text: str) -> None:
    result = fbci(*args[:2], "--home", home(node), *args[2:])
    assert result.returncode == status and text in result.stderr, result.stderr


@pytest.mark.parametrize("command", [("block", "get"), ("tx", "get", "ab" * 32), ("fl", "models"),
                                     ("fl", "rounds"), ("ids", "alerts")])
def test_an_unreachable_node_exits_4(command: tuple[str, ...]) -> None:
    url = f"http://127.0.0.1:{free_base_port(1)}"
    result = fbci(*command[:2], "--rpc", url, *command[2:])
    assert result.returncode == 4, result.stderr
    assert result.stderr == f"error[-32060 node_unreachable]: no validator answers at {url}; is it running?\n"


def test_node_reset_refuses_while_the_node_runs(node: Testnet) -> None:
    before = sorted(p.name for p in (Path(home(node)) / "data").iterdir())
    result = fbci("node", "reset", "--home", home(node), "--yes")
    assert result.returncode == 1 and "error[-32110 node_running]: a validator is running on" in result.stderr
    assert sorted(p.name for p in (Path(home(node)) / "data").iterdir()) == before
    assert node.status(0) is not None


def test_version_flag_and_command_agree() -> None:
    line = ok("--version").strip()
    doc = json.loads(ok("version", "--json"))
    assert line == ok("version").strip() == f"fbci {doc['fbci']} (Python {doc['python']}, {doc['platform']})"
    assert doc["python"] == ".".join(map(str, sys.version_info[:3]))


def test_one_spelling_of_a_model_version(node: Testnet) -> None:
    for spelled, version in (("0", 0), ("latest", rpc(node, "fl_model_get", {"model_id": "deterioration"})["version"])):
        doc = json.loads(ok("predict", "--home", home(node), "--generate-patient", "3", "--model-version", spelled,
                            "--json"))
        assert doc["model_version"] == version
    for command in (("predict", "--generate-patient", "3"), ("ids", "watch", "--generate", "5")):
        bad = fbci(*command, "--home", home(node), "--model-version", "v1")
        assert bad.returncode != 0 and "--model-version" in bad.stderr and "'v1'" in bad.stderr
    assert "--version" not in fbci("predict", "--help").stdout.replace("--model-version", "")


def test_rpc_call_signs_a_private_read_and_an_unsigned_one_is_refused(node: Testnet) -> None:
    """The README's two ways in: an open method with plain JSON-RPC (curl), a private one signed by ``fbci rpc call``."""
    url = node.specs[0].rpc_url
    with pytest.raises(TestnetError, match="auth_required"):
        rpc_call(url, "fl_model_get", {"model_id": "breast_cancer"}, timeout=10)
    assert rpc_call(url, "block_get", {"height": 1}, timeout=10)["height"] == 1  # open, unsigned
    signed = json.loads(ok("rpc", "call", "--home", home(node), "--key", "hospital", "fl_model_get",
                           '{"model_id": "breast_cancer"}'))
    assert signed == rpc(node, "fl_model_get", {"model_id": "breast_cancer", "version": signed["version"]})
    proven = json.loads(ok("rpc", "call", "--home", home(node), "fl_rounds", '{"model_id": "breast_cancer", "prove": true}'))
    closed = [r for r in proven["result"] if r["status"] != "open"]  # the open one may close meanwhile
    assert proven["result"] and closed == rpc(node, "fl_rounds", {"model_id": "breast_cancer"})[:len(closed)]
    assert json.loads(ok("rpc", "call", "--rpc", url, "status"))["validator"] == "node0"
    anonymous = fbci("rpc", "call", "--rpc", url, "fl_model_get", '{"model_id": "breast_cancer"}')
    assert anonymous.returncode == 1 and "error[-32141 auth_required]" in anonymous.stderr
    bad = fbci("rpc", "call", "--rpc", url, "status", "{nope")
    assert bad.returncode != 0 and "PARAMS: not JSON" in bad.stderr
