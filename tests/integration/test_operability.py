"""What an operator sees of a running validator: Prometheus metrics and the status summary."""

from __future__ import annotations

import asyncio
import urllib.request

from core.crypto import PrivateKey
from core.tx import Transaction
from genesis.home import HomePaths
from genesis.schema import load_genesis
from client.rpc import RpcClient


def _metrics(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _find(values: dict[str, float], prefix: str) -> float:
    matches = [v for k, v in values.items() if k.startswith(prefix)]
    assert matches, f"no metric {prefix}"
    return sum(matches)


def test_metrics_follow_the_chain(testnet) -> None:
    net = testnet(2)
    net.wait_ready(60, min_height=1)
    home = HomePaths(net.specs[0].home)
    key = PrivateKey.load(home.client_key("hospital"))
    chain_id = load_genesis(home.genesis).chain_id

    async def submit() -> int:
        async with RpcClient(net.specs[0].rpc_url) as node:
            tx = Transaction.create(key, chain_id, (await node.account_get(key.public_key.raw)).next_nonce,
                                    "test.echo", {"msg": b"metrics"})
            return (await node.submit_tx_commit(tx, 30)).height

    height = asyncio.run(submit())
    values = _metrics(net.specs[0].rpc_url)
    assert _find(values, 'fbci_height{validator="node0"}') >= height
    assert _find(values, "fbci_committed_txs_total") >= 1
    assert _find(values, "fbci_commit_latency_seconds_count") >= 1  # submitted through this validator
    assert _find(values, 'fbci_peers_connected{validator="node0"}') == 1
    assert _find(values, 'fbci_p2p_sent_total{node="node0"') > 0
    assert _find(values, 'fbci_rpc_requests_total{code="0",method="tx_submit_commit"}') >= 1
    assert "fbci_mempool_txs" in "".join(values) and "fbci_view" in "".join(values)


def test_a_taken_listen_address_is_a_clear_error_not_a_traceback(tmp_path) -> None:
    import socket
    import subprocess
    import sys

    from genesis.create import init_network
    from tests.ports import free_base_port

    base = free_base_port(2)
    net = init_network(1, tmp_path / "net", base_port=base)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", base + 1))  # node0's JSON-RPC port
        holder.listen()
        run = subprocess.run([sys.executable, "-m", "cli.main", "node", "start", "--home", str(net.homes[0])],
                             capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "error[-32050 address_in_use]" in run.stderr and f"127.0.0.1:{base + 1}" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
