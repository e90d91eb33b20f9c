"""The cost of an authenticated read against an open one, and of anchoring the audit trail.

One in-process JSON-RPC server per mode, both in front of the same
LedgerApplication (a one-validator genesis with the default models on a real
LevelDB), asked ``fl_model_get`` by ``--clients`` concurrent clients for
``--seconds`` each, in the same run:

- ``open``: the read policy leaves ``fl_model_get`` open (no guard);
- ``signed``: private; each request is signed by the client (Ed25519, a fresh
  nonce) and the node verifies it, looks the key up, checks the window, the
  nonce and the role, and writes an audit event to LevelDB.

Client and server share this process (and its GIL), so the figures are a
side-by-side ratio, not a server's capacity. Anchoring: the time to build one
``audit.anchor`` payload (Merkle root over the events since the last anchor)
for ``--events-per-anchor`` events, and that divided by the blocks between
anchors. Writes bench/results/auth_reads.json.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import table, write_result
from client.rpc import RpcClient
from core.api import Params
from core.crypto import PrivateKey
from devnet.catalog import default_app_state
from genesis.create import init_network
from node.app_reads import RPC_QUERIES
from node.app import LedgerApplication
from node.audit import DEFAULT_ANCHOR_EVERY, AuditLog
from node.read_auth import read_guard_for
from node.rpc.server import create_app, start_rpc_server
from node.rpc.subscriptions import EventHub
from node.stores import Database


class _AppApi:
    """Only what reads need of ``NodeApi``: the application's query, synchronously as the node does."""

    def __init__(self, app: LedgerApplication) -> None:
        self.app = app
        self.events = EventHub()

    async def query(self, path: str, params: Params) -> object:
        return self.app.query(path, params)

    async def status(self) -> Any:  # the client asks it once, for the chain id it signs under
        from core.api import NodeStatus

        info = self.app.info()
        return NodeStatus(chain_id=self.app.chain_id, validator="bench", height=info.height,
                          latest_block_hash=info.last_block_hash, view=0, peers=0, mempool_size=0, syncing=False)


async def _load(url: str, reader: PrivateKey | None, clients: int, seconds: float) -> dict[str, float]:
    done = 0
    latencies: list[float] = []
    async with RpcClient(url, reader=reader) as client:
        await client.fl_model_get("breast_cancer")  # warm: connection, chain id
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                await client.fl_model_get("breast_cancer")
                latencies.append(time.perf_counter() - t)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": done, "req_per_s": done / elapsed, "p50_ms": latencies[len(latencies) // 2] * 1e3}


async def _measure(root: Path, clients: int, seconds: float) -> list[dict[str, Any]]:
    app_state = {**default_app_state(4), "read_policy": {}}
    net = init_network(1, root / "net", app_state=app_state, genesis_time_ms=0)
    from genesis.home import HomePaths

    hospital = PrivateKey.load(HomePaths(net.homes[0]).client_key("hospital"))
    database = Database(root / "db")
    try:
        app = LedgerApplication.open(net.genesis, database)
        api = _AppApi(app)
        trail = AuditLog(database, "node0")
        guard = read_guard_for(app.chain_id, RPC_QUERIES, app_state, api.query,
                               clock_ms=lambda: time.time_ns() // 1_000_000,
                               on_read=lambda o: trail.record_read(o, app.height))
        rows = []
        for mode, reads, reader in (("open", None, None), ("signed", guard, hospital)):
            rpc_app = create_app(api, RPC_QUERIES, reads=reads)  # type: ignore[arg-type]  # reads need no more of NodeApi
            server = await start_rpc_server(rpc_app, "127.0.0.1", 0)
            try:
                port = server.addresses[0][1]
                rows.append({"mode": mode, **await _load(f"http://127.0.0.1:{port}", reader, clients, seconds)})
            finally:
                await server.cleanup()
        rows[1]["audit_events"] = trail.next_seq
        return rows + [_anchor_cost(trail)]
    finally:
        database.close()


def _anchor_cost(trail: AuditLog) -> dict[str, Any]:
    events = trail.next_seq
    t = time.perf_counter()
    payload = trail.due_anchor(lambda: (0, None))
    ms = (time.perf_counter() - t) * 1e3
    covered = 0 if payload is None else payload["to_seq"] - payload["from_seq"]
    return {"mode": "anchor", "events": covered, "anchor_ms": ms, "per_block_ms": ms / DEFAULT_ANCHOR_EVERY,
            "of_recorded": events}


def measure(clients: int = 16, seconds: float = 5.0, out_dir: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(_measure(Path(tmp), clients, seconds))
    reads = [r for r in rows if r["mode"] != "anchor"]
    result = {"clients": clients, "seconds": seconds, "rows": reads, "anchor": rows[-1],
              "signed_over_open": reads[1]["req_per_s"] / reads[0]["req_per_s"]}
    if out_dir is not None:
        write_result("auth_reads", result, out_dir)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args(argv)
    result = measure(args.clients, args.seconds, out_dir=Path(__file__).parent / "results")
    print(table(result["rows"], [("mode", "reads", ""), ("requests", "requests", "d"), ("req_per_s", "req/s", ".0f"),
                                 ("p50_ms", "p50 ms", ".2f")]))
    a = result["anchor"]
    print(f"signed/open: {result['signed_over_open']:.2f}; anchoring {a['events']} events: {a['anchor_ms']:.1f} ms "
          f"per anchor, {a['per_block_ms']:.2f} ms per block at one anchor every {DEFAULT_ANCHOR_EVERY} blocks")
    return result


if __name__ == "__main__":
    main()
