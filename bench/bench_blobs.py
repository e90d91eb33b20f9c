"""Blob rounds of a 10M- and a 50M-parameter model end to end, against copying the same bytes, in one run.

For each model (``devnet.catalog.wide_mlp``: 40 MB and 202 MB per update) a
fresh 4-validator localnet (real processes on loopback) runs, side by side:

1. **the transport's throughput**, measured twice in this run:
   - *replication*: one blob of an update's size pushed to validator 0,
     timed until all four validators hold it complete (``blob_status``) —
     the peer transport moving exactly these bytes, chunk checks included;
     bytes between validators = 3 x size;
   - *raw socket*: the same bytes copied over a loopback TCP socket in this
     process, the floor any transport can reach on this machine;
2. **the FL round**: 4 hospitals (threads) each push a synthetic update of
   that size to their own validator and submit its ref; timed from the
   first push to the round's close on validator 0 (replication, 2f+1
   attestations, the availability rule, aggregation, the version blob
   every validator writes). Bytes between validators = 4 updates x 3 copies.
   Also timed: from the last hospital's committed ref to the close, the part
   of the round the validators alone spend (replication of the last blobs,
   attestation, aggregation), which says whether the pushes or the
   validators bound the round.

Headline: the round's model bytes between validators per second against the
replication throughput; the issue's target is at least half. Also printed:
a hospital's push and its pull of the new global version (twice an
update's size: int64 weights).

Run: .venv/bin/python -m bench.bench_blobs [--models wide_mlp_10m wide_mlp_50m]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Headline, table, write_result
from client.blobs import blob_status, push_blob
from client.fl.blob_transport import BlobChainTransport
from client.rpc import RpcClient
from client.session import ChainSession, load_client_key
from core.blobs import BlobRef, blob_ref
from devnet.catalog import WIDE_MLPS, wide_app_state, wide_mlp
from devnet.testnet import Testnet
from fl_contracts.fixedpoint import encode_delta
from tests.ports import free_base_port
from tests.testnets import run_in_threads, started

HOSPITALS = 4
TARGET = 0.5
TIMEOUT_S = 900.0
MB = 1e6


def socket_copy_s(data: bytes) -> float:
    """Seconds to send ``data`` through a loopback TCP connection and receive all of it."""
    server = socket.create_server(("127.0.0.1", 0))
    got = [0]

    def receive() -> None:
        conn, _ = server.accept()
        with conn:
            while got[0] < len(data):
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                got[0] += len(chunk)

    reader = threading.Thread(target=receive)
    reader.start()
    t0 = time.perf_counter()
    with socket.create_connection(server.getsockname()) as conn:
        conn.sendall(data)
    reader.join()
    server.close()
    assert got[0] == len(data)
    return time.perf_counter() - t0


async def _all_hold(urls: list[str], ref: BlobRef, deadline: float) -> None:
    """Return once every validator holds ``ref`` complete (each probe is a round trip, not a sleep)."""
    pending = list(urls)
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"blob not replicated to {pending}")
        url = pending[0]
        try:
            async with RpcClient(url, timeout_s=30.0) as rpc:
                if (await blob_status(rpc, ref)).complete:
                    pending.pop(0)
        except OSError:
            continue


def replication_s(net: Testnet, data: bytes) -> float:
    """Push ``data`` to validator 0; seconds from the push's end until all four hold it."""
    async def go() -> float:
        async with RpcClient(net.specs[0].rpc_url, timeout_s=120.0) as rpc:
            ref = await push_blob(rpc, data)
        t0 = time.perf_counter()
        await _all_hold([s.rpc_url for s in net.specs[1:]], ref, time.monotonic() + TIMEOUT_S)
        return time.perf_counter() - t0

    return asyncio.run(go())


def fl_round(net: Testnet, model_id: str, num_params: int) -> dict[str, Any]:
    """Every hospital pushes its update and submits the ref; the round's times as validator 0 sees them."""
    pushes: dict[int, float] = {}
    pushed: list[float] = []
    starts: list[float] = []
    closed: dict[int, Any] = {}
    deltas = [encode_delta(np.random.default_rng(i).integers(-2, 3, num_params, dtype=np.int32))
              for i in range(HOSPITALS)]

    def hospital(i: int) -> None:
        key = load_client_key("hospital", net.specs[i].home)
        with ChainSession(net.specs[i].rpc_url, key) as session:
            transport = BlobChainTransport(session, round_timeout_s=TIMEOUT_S, push_timeout_s=TIMEOUT_S)
            open_round = session.rounds(model_id)[-1]
            starts.append(time.perf_counter())
            transport.submit({"model_id": model_id, "round": open_round.round,
                              "base_version": open_round.base_version, "num_samples": 100, "delta": deltas[i]})
            pushes[i] = transport.last_push_s
            pushed.append(time.perf_counter())  # the push and the ref's transaction, committed
            closed[i] = (transport.wait_round(model_id, open_round.round), time.perf_counter())

    run_in_threads(hospital, HOSPITALS, TIMEOUT_S)
    record, end = closed[0]
    assert record.status == "aggregated" and record.accepted == HOSPITALS, record
    with ChainSession(net.specs[0].rpc_url, net.client_key()) as reader:
        transport = BlobChainTransport(reader)
        transport.get_model(model_id)
    return {"round_s": end - min(starts), "push_s": sum(pushes.values()) / HOSPITALS, "pull_s": transport.last_pull_s,
            "after_push_s": end - max(pushed)}


def measure(model_id: str, out: Path) -> dict[str, Any]:
    spec = wide_mlp(model_id, HOSPITALS)
    size = 4 * spec.num_params
    payload = np.random.default_rng(99).integers(-2, 3, spec.num_params, dtype=np.int32).tobytes()
    assert blob_ref(payload).size == size
    app_state = wide_app_state(HOSPITALS, (model_id,), round_length_blocks=10_000)
    with started(Testnet.create(4, out, free_base_port(8), app_state=app_state), ready_s=600) as net:
        repl = replication_s(net, payload)
        fl = fl_round(net, model_id, spec.num_params)
    sock = socket_copy_s(payload * 3)
    repl_mbps = 3 * size / MB / repl
    round_mbps = HOSPITALS * 3 * size / MB / fl["round_s"]
    fl["after_push_mbps"] = HOSPITALS * 3 * size / MB / fl["after_push_s"]
    return {"model": model_id, "params": spec.num_params, "update_mb": size / MB, "socket_mbps": 3 * size / MB / sock,
            "replication_s": repl, "replication_mbps": repl_mbps, **fl, "round_mbps": round_mbps,
            "ratio": round_mbps / repl_mbps}


COLUMNS = [("model", "model", ""), ("params", "params", ",d"), ("update_mb", "update MB", ".0f"),
           ("socket_mbps", "socket MB/s", ".0f"), ("replication_s", "replicate s", ".1f"),
           ("replication_mbps", "replicate MB/s", ".0f"), ("push_s", "push s/hosp", ".1f"),
           ("round_s", "round s", ".1f"), ("round_mbps", "round MB/s", ".0f"), ("ratio", "round/replicate", ".2f"),
           ("after_push_s", "close after last push s", ".1f"),
           ("pull_s", "pull version s", ".1f")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(WIDE_MLPS), choices=list(WIDE_MLPS))
    args = parser.parse_args()
    rows = []
    for model_id in args.models:
        with tempfile.TemporaryDirectory(prefix="bench-blobs-") as tmp:
            rows.append(measure(model_id, Path(tmp)))
        print(table(rows[-1:], COLUMNS), flush=True)
    headlines = [Headline(f"blob FL round, {r['model']}: model bytes between validators", r["round_mbps"], "MB/s",
                          r["replication_mbps"], "replicating one blob of the same size", r["ratio"], TARGET).doc()
                 for r in rows]
    write_result("blobs", {"rows": rows, "target_ratio": TARGET, "headlines": headlines,
                           "target_met": all(r["ratio"] >= TARGET for r in rows)},
                 Path(__file__).parent / "results")
    print(f"4 validators, {HOSPITALS} hospitals; bytes between validators per second, round vs replication alone")
    print(table(rows, COLUMNS))
    for r in rows:
        verdict = "met" if r["ratio"] >= TARGET else f"NOT met (short by {TARGET - r['ratio']:.2f})"
        print(f"target: {r['model']} round >= {TARGET:.0%} of replication throughput: {r['ratio']:.2f} ({verdict})")


if __name__ == "__main__":
    main()
