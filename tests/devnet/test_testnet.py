"""The testnet process layer: real child processes, signals, readiness, Ctrl-C, and proxied links."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from genesis.home import HomePaths, NodeConfig
from devnet.faultproxy import LinkState
from tests.ports import free_base_port
from devnet.testnet import NodeSpec, Testnet, TestnetError

REPO = Path(__file__).resolve().parents[2]

# A stand-in validator of its home's network: answers JSON-RPC `status` as its validator, with its
# home genesis's chain id and a height that grows per call, and `genesis` with that genesis's hash.
STANDIN = r"""
import json, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from genesis.schema import load_genesis
url, mode, name, home = sys.argv[1:5]
doc = load_genesis(Path(home) / "config" / "genesis.json")
host, port = url.split("//", 1)[1].rsplit(":", 1)
calls = 0
class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global calls
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["method"] == "genesis":
            result = {"chain_id": doc.chain_id, "hash": doc.hash().hex()}
        else:
            calls += 1
            result = {"height": calls, "chain_id": doc.chain_id, "validator": name}
        out = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": result}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *args):
        pass
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else (lambda *a: sys.exit(0)))
server = HTTPServer((host, int(port)), Handler)
print("standin up", flush=True)
server.serve_forever()
"""


def standin_command(spec: NodeSpec) -> list[str]:
    return [sys.executable, "-c", STANDIN, spec.rpc_url, "polite", spec.name, str(spec.home)]


def stubborn_command(spec: NodeSpec) -> list[str]:
    return [sys.executable, "-c", STANDIN, spec.rpc_url, "stubborn", spec.name, str(spec.home)]


def deaf_command(spec: NodeSpec) -> list[str]:
    """A validator process that stays up but never listens (as if still starting)."""
    return [sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
            "signal.pause()"]


@pytest.fixture
def standins(tmp_path: Path):
    net = Testnet.create(3, tmp_path / "net", free_base_port(6), command=standin_command, grace=5.0)
    net.start()
    try:
        yield net
    finally:
        net.stop_all()


def test_starts_waits_for_status_prints_a_table_and_stops_cleanly(standins: Testnet) -> None:
    standins.wait_ready(30, min_height=2)
    table = standins.table()
    for i, spec in enumerate(standins.specs):
        assert spec.name == f"node{i}"
        assert all(str(x) in table for x in (spec.name, spec.rpc_url, spec.p2p_address, standins.pid(i),
                                              spec.log_path))
        assert standins.status(i)["height"] >= 3
    assert standins.stop_all() == {0: 0, 1: 0, 2: 0}
    assert not any(standins.alive(i) for i in range(3))
    assert "standin up" in standins.specs[0].log_path.read_text()


def test_pause_resume_kill_and_restart(standins: Testnet) -> None:
    standins.wait_ready(30)
    standins.kill(1, signal.SIGSTOP)
    assert standins.status(1, timeout=0.3) is None
    assert standins.status(0) is not None
    standins.kill(1, signal.SIGCONT)
    assert standins.status(1, timeout=5) is not None
    old_pid = standins.pid(1)
    standins.kill(1, signal.SIGKILL)
    assert not standins.alive(1)
    with pytest.raises(TestnetError, match="node1 exited"):
        standins.wait_ready(30)
    standins.restart(1)
    assert standins.pid(1) != old_pid
    standins.wait_ready(30)
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)


def test_stop_escalates_to_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    net = Testnet.create(2, tmp_path / "net", free_base_port(4), command=stubborn_command, grace=0.5)
    with net:
        net.wait_ready(30)
        assert net.stop_all() == {0: -signal.SIGKILL, 1: -signal.SIGKILL}


def test_proxied_testnet_routes_every_peer_link_through_a_fault_proxy(tmp_path: Path) -> None:
    net = Testnet.create(3, tmp_path / "net", free_base_port(6), proxies=True, command=standin_command)
    try:
        mesh = net.proxies
        assert mesh is not None and len(mesh.links) == 6
        p2p = {s.name: s.p2p_address for s in net.specs}
        for spec in net.specs:
            config = NodeConfig.model_validate_json(HomePaths(spec.home).config.read_text())
            for peer in config.peers:
                proxy = mesh.links[(spec.name, peer.name)]
                assert peer.address == proxy.address and proxy.target == p2p[peer.name]
        mesh.isolate("node1")
        states = {link: proxy.state for link, proxy in mesh.links.items()}
        assert all((state is LinkState.CUT) == ("node1" in link) for link, state in states.items())
        mesh.heal("node1")
        assert all(p.state is LinkState.UP for p in mesh.links.values())
    finally:
        net.stop_all()
    assert net.proxies is None


def _run_testnet_script(out: Path, base_port: int) -> str:
    return ("import sys; from pathlib import Path; from devnet.testnet import run_testnet; "
            "from tests.devnet.test_testnet import standin_command; "
            f"sys.exit(run_testnet(2, Path({str(out)!r}), {base_port}, command=standin_command))")


def _child_pids_once_ready(proc: subprocess.Popen[str]) -> list[int]:
    """Read ``fbci testnet``'s table until it says the network is up; the PID column of each node row."""
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # pytest-timeout bounds this if the testnet never gets ready
        lines.append(line)
        if "Ctrl-C" in line:
            break
    return [int(row.split()[3]) for row in lines if row.startswith("node")]


def test_run_testnet_stops_every_child_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _run_testnet_script(tmp_path / "net", free_base_port(4))],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        pids = _child_pids_once_ready(proc)
        assert len(pids) == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "stopped: node0=0, node1=0" in proc.stdout.read()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.mark.parametrize("chain_id", [None, "other-chain"])
def test_wait_ready_does_not_take_another_networks_node_for_its_own(tmp_path: Path, chain_id: str | None) -> None:
    base = free_base_port(4)
    first = Testnet.create(2, tmp_path / "first", base, command=standin_command)
    second = Testnet.create(2, tmp_path / "second", base, command=deaf_command, chain_id=chain_id)
    with first:
        first.wait_ready(30)
        with second:  # its processes are up, but what answers on its ports is the first network
            with pytest.raises(TestnetError, match="not ready after") as info:
                second.wait_ready(1.0)
        assert first.status(0)["validator"] == "node0"
    message = info.value.message
    assert "node0 (" in message and "node1 (" in message, message
    if chain_id is None:  # same chain id and names: only the genesis hash tells the networks apart
        assert first.home_identity(0)[0] == second.home_identity(0)[0] == "fbci-local"
        assert "another network holds the port" in message and second.home_identity(0)[1][:16] in message
    else:
        assert "answers as 'node0' of chain 'fbci-local', not node0 of chain 'other-chain'" in message


def test_a_second_run_testnet_on_taken_ports_fails_instead_of_claiming_the_first(tmp_path: Path) -> None:
    base = free_base_port(4)
    first = Testnet.create(2, tmp_path / "first", base, command=standin_command)
    with first:
        first.wait_ready(30)
        run = subprocess.run([sys.executable, "-c", _run_testnet_script(tmp_path / "second", base)], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
        assert first.status(0) is not None and first.status(1) is not None  # the first network is untouched
    assert run.returncode == 1, run.stdout + run.stderr
    assert "all validators answer status" not in run.stdout
    # both validators' ports are taken: whichever exits first is the one named
    assert re.search(r"testnet failed to start: node[01] exited", run.stderr), run.stderr


def test_run_testnet_exits_nonzero_once_every_validator_is_gone(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _run_testnet_script(tmp_path / "net", free_base_port(4))],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids = _child_pids_once_ready(proc)
        assert len(pids) == 2
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == 1
        out = proc.stdout.read()
        assert "node0 exited" in out and "node1 exited" in out
        assert "every validator has exited" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _heights(net: Testnet, nodes: range | list[int]) -> dict[int, int]:
    return {i: (net.status(i) or {}).get("height", -1) for i in nodes}


@pytest.mark.timeout(240)
def test_four_real_validators_commit_blocks(tmp_path: Path) -> None:
    net = Testnet.create(4, tmp_path / "net", free_base_port(8))
    with net:
        net.wait_ready(120, min_height=3)
        assert all(h >= 3 for h in _heights(net, range(4)).values())
    assert not any(net.alive(i) for i in range(4))
