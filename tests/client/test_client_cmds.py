"""The client commands as a user runs them: ``fbci status``, ``tx submit``, ``predict``, ``ids watch``.

Each runs as a subprocess against one real validator (a 1-validator testnet
started once for the module), so what is checked is the printed output and
the exit status, and that bad input gives ``error[...]`` naming what was
wrong (the line and the field for a CSV) and never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.api import TX_GET
from ids.flows import HOSPITAL_PROFILES, generate_flows, write_flows_csv
from devnet.testnet import Testnet, rpc_call
from tests.testnets import running_testnet

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    with running_testnet(tmp_path_factory.mktemp("client-cmds")) as net:
        yield net


def fbci(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=120, input=stdin)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


def home(net: Testnet) -> str:
    return str(net.specs[0].home)


def test_status_table_json_and_unreachable_node(node: Testnet) -> None:
    out = fbci("status", "--home", home(node))
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "HEIGHT", "HASH", "VIEW"]
    name, height, prefix = row.split()[:3]
    block = rpc_call(node.specs[0].rpc_url, "block_get", {"height": int(height)})
    assert name == "node0" and int(height) >= 1 and block["hash"].startswith(prefix) and len(prefix) == 12
    assert "agree: 1 node(s)" in out.stdout

    whole = json.loads(fbci("status", "--net", str(Path(home(node)).parent), "--json").stdout)
    assert [n["name"] for n in whole["nodes"]] == ["node0"]

    report = json.loads(fbci("status", "--rpc", node.specs[0].rpc_url, "--json").stdout)
    assert report["diverged"] is False and report["unreachable"] == 0
    assert report["nodes"][0]["name"] == "node0" and report["nodes"][0]["syncing"] is False

    down = fbci("status", "--home", home(node), "--rpc", "http://127.0.0.1:9")
    assert down.returncode == 1 and "1 node(s) unreachable" in down.stdout
    bad_home = fbci("status", "--home", str(Path(home(node)) / "nope"))
    assert bad_home.returncode == 2 and "argument --home" in bad_home.stderr


def test_tx_submit_commits_and_reports_rejections_cleanly(node: Testnet) -> None:
    out = fbci("tx", "submit", "--home", home(node), "--key", "admin", "--kind", "test.echo",
               "--payload", '{"msg": "0x68656c6c6f"}', "--commit")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["committed"] is True and result["height"] >= 1
    committed = TX_GET.parse(rpc_call(node.specs[0].rpc_url, "tx_get", {"hash": result["hash"]},
                                              reader=node.client_key("admin")))
    assert committed.kind == "test.echo" and committed.receipt.ok is True
    assert committed.nonce == result["nonce"] and committed.transaction().payload["msg"] == b"hello"  # "0x.." sent as bytes

    again = json.loads(fbci("tx", "submit", "--home", home(node), "--key", "admin", "--kind", "test.echo",
                            "--payload", '{"msg": "0x00"}').stdout)
    assert again["committed"] is False and again["nonce"] == result["nonce"] + 1  # the node counted nonces

    denied = fbci("tx", "submit", "--home", home(node), "--key", "gateway", "--kind", "acl.register",
                  "--payload", '{"name": "x"}', "--commit")
    assert denied.returncode == 1 and denied.stderr.startswith("error[-32012 unauthorized]")
    no_key = fbci("tx", "submit", "--home", home(node), "--key", "nobody", "--kind", "test.echo", "--payload", "{}")
    assert no_key.returncode == 1 and "nobody" in no_key.stderr and no_key.stderr.startswith("error[")


def test_predict_scores_a_patient_with_the_chain_model_and_names_bad_csv_lines(node: Testnet, tmp_path: Path) -> None:
    out = fbci("predict", "--home", home(node), "--generate-patient", "3")
    assert out.returncode == 0, out.stderr
    assert "P(NEWS2 >= 5 within 6 h) = " in out.stdout and "model deterioration v" in out.stdout
    assert "what drove it" in out.stdout
    doc = json.loads(fbci("predict", "--home", home(node), "--generate-patient", "3", "--json").stdout)
    assert 0.0 <= doc["probability"] <= 1.0 and set(doc["by_vital"]) >= {"spo2", "resp_rate", "heart_rate"}

    csv = tmp_path / "obs.csv"
    csv.write_text("resp_rate,spo2,temp,sys,heart_rate,on_oxygen,alert\n"
                   "16,97,36.8,124,78,0,1\n"
                   "18,abc,37.1,120,84,0,1\n")
    bad = fbci("predict", "--home", home(node), "--csv", str(csv))
    assert bad.returncode == 1 and "line 3" in bad.stderr and "'spo2'" in bad.stderr, bad.stderr
    csv.write_text("resp_rate,spo2,temp,sys,heart_rate,on_oxygen,alert\n16,97,36.8,124,78,0,1\n22,90,38.9,95,118,1,1\n")
    good = fbci("predict", "--home", home(node), "--csv", str(csv), "--json")
    assert good.returncode == 0 and json.loads(good.stdout)["observations"] == 2
    missing = fbci("predict", "--home", home(node), "--csv", str(tmp_path / "none.csv"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_ids_watch_posts_deduplicated_alerts_once(node: Testnet, tmp_path: Path) -> None:
    out = fbci("ids", "watch", "--home", home(node), "--generate", "600", "--profile", "riverside-general",
               "--attack-rate", "0.5", "--json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["records"] == 600 and 0 < s["alerts"] < s["flagged"] / 2  # dedup per device, class and window
    assert s["committed"] == s["submitted"] == s["alerts"] == sum(s["by_class"].values())
    assert s["reporter"] == "gateway0"  # the signing account, whatever traffic profile it watched
    page = rpc_call(node.specs[0].rpc_url, "alerts_query", {"hospital": s["reporter"], "limit": 500},
                    reader=node.client_key())
    assert sorted(a["alert_id"] for a in page["alerts"]) == sorted(s["alert_ids"])
    replay = json.loads(fbci("ids", "watch", "--home", home(node), "--generate", "600", "--profile",
                             "riverside-general", "--attack-rate", "0.5", "--json").stdout)
    assert replay["committed"] == 0 and replay["already_on_chain"] == s["alerts"]  # the chain's own dedup

    flows = tmp_path / "flows.csv"
    with flows.open("w", newline="") as stream:
        write_flows_csv(generate_flows(HOSPITAL_PROFILES[0], 5, np.random.default_rng(1)), stream)
    lines = flows.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[3].split(",")
    cells[header.index("SpO2")] = "high"
    lines[3] = ",".join(cells)
    flows.write_text("\n".join(lines) + "\n")
    bad = fbci("ids", "watch", "--home", home(node), "--csv", str(flows))
    assert bad.returncode == 1 and "line 4" in bad.stderr and "'spo2'" in bad.stderr, bad.stderr
    unknown = fbci("ids", "watch", "--home", home(node), "--generate", "5", "--profile", "atlantis")
    assert unknown.returncode == 1 and "unknown hospital profile 'atlantis'" in unknown.stderr


def test_gateway_and_predict_commands_never_import_torch() -> None:
    probe = ("import sys, client.ids_watch, client.predict, client.status, client.session\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'opacus')))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr
