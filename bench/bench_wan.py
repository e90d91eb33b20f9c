"""Throughput and commit latency of 4 validators across a WAN: 0, 20 and 80 ms one-way (issue 10 part 6).

Each validator runs on a host of its own (``devnet.netns``: a network
namespace on a bridge) and every link between two validators passes a fault
proxy that holds each chunk the one-way delay in each direction; clients
reach the validators' RPC over the bridge, undelayed. Where namespaces cannot
be made (not root, no ``ip``) the same proxies run on loopback, and the
output says so.

For each delay the bench finds its own operating point, with the open-loop
load of ``bench_testnet_load`` (pre-signed ``test.echo`` transactions sent in
batches whatever earlier answers say): the offered rate doubles until a step
commits less than ``SATURATION`` of it (or its median latency passes
``LATENCY_CAP_MS``), then bisects between the last good and the first bad
rate. The peak is the best committed rate of a good step; one more run at
half of it gives commit latency under load (p50/p99, submit to node0's
``new_block``). Each run starts once every mempool is empty.

Side by side in one run: each peak against the 0 ms peaks (the 0 ms search
runs first and again last, averaged, so the drift of a shared machine
shows); and commit latency at one light load (``LIGHT_RATE``), measured for
all delays in interleaved rounds, against the 0 ms latency and the floor. A
PBFT round is three message delays (pre-prepare, prepare, commit), so a
block cannot commit sooner than 3 x the one-way delay after it is proposed;
a transaction also waits for gossip to reach the primary (one more delay
unless it was sent to the primary) and for the block in flight to finish.

Run (root for namespaces): .venv/bin/python -m bench.bench_wan [--delays 0 20 80] [--step-s 8] [--loss 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bench_testnet_load import BENCH_PARAMS, SATURATION, open_loop
from bench.common import BENCH_RPC_RATE, LocalNet, table, write_result
from core.crypto import PrivateKey
from devnet.faultproxy import ProxyMesh
from devnet.testnet import Testnet
from genesis.schema import ChainParams

NAME = "wan"
N = 4
DELAYS_MS = (0, 20, 80)
ROUND_DELAYS = 3
"""Message delays in a PBFT round: pre-prepare, prepare, commit."""
LATENCY_CAP_MS = 2000.0
START_RATE = 100.0
LIGHT_RATE = 50.0
"""A load every delay carries without queueing: its latency is the protocol's, not a backlog's."""
TX_PER_S_PER_KEY = 20
"""A run offering r tx/s signs with r / 20 keys (16 to 128): a sender's pending nonces stay below the
mempool's 64 until a transaction waits 3 s, so an overloaded run shows as slow commits, not as the
load generator's own BadNonce refusals (one refused nonce stalls every later one of its key)."""
MAX_KEYS = 128
CLIENTS = 1600
SETTLE_S = 60.0


@dataclass
class WanNet:
    local: LocalNet
    mesh: ProxyMesh
    where: str
    """"network namespaces" or "loopback (why namespaces were not used)"."""
    keys_used: int = 0

    def next_keys(self, rate: float) -> list[PrivateKey]:
        """Fresh client keys for one run, so a refused transaction's nonce gap cannot stall the next."""
        count = min(MAX_KEYS, max(16, math.ceil(rate / TX_PER_S_PER_KEY)))
        keys = self.local.client_keys[self.keys_used:self.keys_used + count]
        if len(keys) < count:
            raise RuntimeError(f"out of client keys after {self.keys_used}: raise CLIENTS")
        self.keys_used += count
        return keys


def _client_keys(net: Testnet) -> list[PrivateKey]:
    from genesis.home import HomePaths

    return [PrivateKey.load(p) for spec in net.specs for p in sorted(HomePaths(spec.home).keys_dir.glob("*.json"))
            if p.stem.startswith(("hospital", "gateway"))]


@contextlib.contextmanager
def wan_testnet(out_dir: Path, loopback: bool = False) -> Iterator[WanNet]:
    """4 started validators with a proxy on every link: on namespaces when possible, else on loopback."""
    from genesis.home import HomePaths
    from genesis.schema import load_genesis
    from devnet.netns import HostNetwork, create_testnet, unavailable

    params = ChainParams(**{**BENCH_PARAMS, "rpc_requests_per_second": BENCH_RPC_RATE, "rpc_burst": BENCH_RPC_RATE})
    why = "--loopback given" if loopback else unavailable()
    with contextlib.ExitStack() as stack:
        if why is None:
            hosts = stack.enter_context(HostNetwork())
            net = create_testnet(hosts, N, out_dir, params=params, clients=CLIENTS)
            where = f"network namespaces (bridge {hosts.bridge}, {hosts.subnet})"
        else:
            from tests.ports import free_base_port

            net = Testnet.create(N, out_dir, free_base_port(2 * N + 2), proxies=True, params=params, clients=CLIENTS)
            where = f"loopback with proxies ({why if loopback else f'namespaces unavailable: {why}'})"
        stack.callback(net.stop_all)
        assert net.proxies is not None
        net.start()
        net.wait_ready(120, min_height=1)
        chain_id = load_genesis(HomePaths(net.specs[0].home).genesis).chain_id
        local = LocalNet(net, chain_id, _client_keys(net), [s.rpc_url for s in net.specs], out_dir)
        yield WanNet(local, net.proxies, where)


def settle(wan: WanNet, timeout: float = SETTLE_S) -> float | None:
    """Wait until every validator's mempool is empty, so a run never starts on the last one's backlog;
    seconds waited, None when it did not empty in time."""
    started = time.monotonic()
    net = wan.local.net
    while time.monotonic() - started < timeout:
        sizes = [(net.status(i) or {}).get("mempool_size") for i in range(len(net.specs))]
        if all(size == 0 for size in sizes):
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def _run(wan: WanNet, rate: float, duration: float) -> dict[str, Any]:
    settled = settle(wan)
    row = asyncio.run(open_loop(wan.local, wan.next_keys(rate), rate, duration))
    row["settle_s"] = settled
    return row


def _good(row: dict[str, Any]) -> bool:
    return ((row["committed_tx_per_s"] or 0) >= SATURATION * row["offered_tx_per_s"]
            and (row["p50_ms"] or 0) <= LATENCY_CAP_MS)


def find_peak(wan: WanNet, step_s: float, max_steps: int, start: float = START_RATE) -> list[dict[str, Any]]:
    """Doubling, then bisection, on committed/offered; every step's row, in the order run."""
    rows: list[dict[str, Any]] = []
    good: float | None = None
    bad: float | None = None
    rate = start
    for _ in range(max_steps):
        row = _run(wan, rate, step_s)
        row["good"] = _good(row)
        rows.append(row)
        print(f"    offered {rate:>7,.0f} tx/s: committed {row['committed_tx_per_s'] or 0:>7,.0f} tx/s, "
              f"p50 {row['p50_ms'] or 0:>6,.0f} ms, refused {row['refused']} -> {'ok' if row['good'] else 'saturated'}",
              flush=True)
        if row["good"]:
            good = rate
        else:
            bad = rate
        if bad is None:
            rate *= 2
        elif good is None:
            rate /= 2
        elif bad / good <= 1.2:
            break
        else:
            rate = (good + bad) / 2
    return rows


def set_link(wan: WanNet, delay_ms: float, loss: float) -> None:
    wan.mesh.delay(None, delay_ms)
    wan.mesh.loss(None, loss if delay_ms else 0.0)


def measure_delay(wan: WanNet, delay_ms: float, step_s: float, latency_s: float, max_steps: int,
                  start: float, loss: float = 0.0) -> dict[str, Any]:
    """The peak at this delay, and the latency at half of it."""
    set_link(wan, delay_ms, loss)
    print(f"  {delay_ms:g} ms one-way on every validator link"
          + (f", {loss:.1%} of segments lost" if loss and delay_ms else ""), flush=True)
    steps = find_peak(wan, step_s, max_steps, start)
    good = [r for r in steps if r["good"]]
    peak = max((r["committed_tx_per_s"] or 0.0 for r in good), default=0.0)
    half_rate = max(1.0, peak / 2 if peak else start / 2)
    half = _run(wan, half_rate, latency_s)
    return {"delay_ms": delay_ms, "loss": loss if delay_ms else 0.0, "steps": steps,
            "peak_committed_tx_per_s": peak, "half_peak": half, "p50_ms": half["p50_ms"], "p99_ms": half["p99_ms"],
            "floor_ms": ROUND_DELAYS * delay_ms}


def light_latency(wan: WanNet, delays: Sequence[float], rate: float, duration: float, rounds: int,
                  loss: float = 0.0) -> dict[float, dict[str, Any]]:
    """Commit latency at one light load for every delay, in interleaved rounds (0, 20, 80, 0, 20, 80...):
    a drift of the shared machine then hits every delay alike instead of whichever ran last."""
    runs: dict[float, list[dict[str, Any]]] = {d: [] for d in delays}
    for _ in range(rounds):
        for d in delays:
            set_link(wan, d, loss)
            row = _run(wan, rate, duration)
            runs[d].append(row)
            print(f"    light load {rate:g} tx/s at {d:g} ms: p50 {row['p50_ms'] or 0:,.0f} ms, "
                  f"p99 {row['p99_ms'] or 0:,.0f} ms", flush=True)
    out = {}
    for d, rows in runs.items():
        p50s = [r["p50_ms"] for r in rows if r["p50_ms"] is not None]
        p99s = [r["p99_ms"] for r in rows if r["p99_ms"] is not None]
        out[d] = {"light_p50_ms": sum(p50s) / len(p50s) if p50s else None, "light_p99_ms": max(p99s, default=None),
                  "light_runs": rows}
    return out


def compare(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Against the 0 ms rows of the same run and against the 3-message-delay floor.

    Throughput: each peak over the mean of the 0 ms peaks (the first and the last search, so the machine's
    drift over the run shows and is shared out). Latency: the light-load p50 over the 0 ms one, measured
    interleaved; what a delay adds to it is set against the floor."""
    zero = [r for r in rows if r["delay_ms"] == 0]
    if not zero:
        return {}
    base_peak = sum(r["peak_committed_tx_per_s"] for r in zero) / len(zero)
    base_p50 = zero[0].get("light_p50_ms")
    for r in rows:
        r["throughput_vs_0ms"] = r["peak_committed_tx_per_s"] / base_peak if base_peak else None
        if r.get("light_p50_ms") is not None and base_p50 is not None:
            r["added_p50_ms"] = r["light_p50_ms"] - base_p50
            r["added_over_floor"] = r["added_p50_ms"] / r["floor_ms"] if r["floor_ms"] else None
    return {"peak_committed_tx_per_s": base_peak, "light_p50_ms": base_p50}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", type=float, nargs="+", default=list(DELAYS_MS))
    parser.add_argument("--step-s", type=float, default=8.0,
                        help="long against the ~0.5 s blocks of an 80 ms WAN: the committed rate is counted per "
                             "block, and a short window's edges would count a sustainable rate as saturated")
    parser.add_argument("--latency-s", type=float, default=8.0)
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--start-rate", type=float, default=START_RATE)
    parser.add_argument("--light-rate", type=float, default=LIGHT_RATE)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--loopback", action="store_true", help="proxies on loopback even where namespaces work")
    parser.add_argument("--loss", type=float, default=0.0,
                        help="also lose this share of TCP segments on the delayed links (0 ms stays clean)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fbci-bench-wan-") as tmp, wan_testnet(Path(tmp) / "net",
                                                                                    args.loopback) as wan:
        print(f"{N} validators on {wan.where}", flush=True)
        load_before = os.getloadavg()
        delays = list(args.delays) + ([0.0] if 0 in args.delays and len(args.delays) > 1 else [])
        rows = [measure_delay(wan, d, args.step_s, args.latency_s, args.max_steps, args.start_rate, args.loss)
                for d in delays]
        print(f"  latency at a light load, {args.rounds} interleaved rounds", flush=True)
        light = light_latency(wan, list(dict.fromkeys(args.delays)), args.light_rate, args.latency_s,
                              args.rounds, args.loss)
        load_after = os.getloadavg()
    for r in rows:
        r.update({k: v for k, v in light[r["delay_ms"]].items() if k != "light_runs"})
    baseline = compare(rows)
    print(f"\n{N} validators on {wan.where}; peak: the search's best committed rate, latency at half of it; "
          f"light: p50 at {args.light_rate:g} tx/s (mean of {args.rounds} interleaved runs), p99 (max); "
          f"floor = {ROUND_DELAYS} x one-way delay; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after on {os.cpu_count()} cores")
    print(table(rows, [
        ("delay_ms", "one-way ms", "g"), ("loss", "loss", ".1%"), ("peak_committed_tx_per_s", "peak tx/s", ",.0f"),
        ("throughput_vs_0ms", "vs 0 ms", ".2f"), ("p50_ms", "half-peak p50", ",.0f"),
        ("p99_ms", "half-peak p99", ",.0f"), ("light_p50_ms", "light p50", ",.0f"),
        ("light_p99_ms", "light p99", ",.0f"), ("added_p50_ms", "added", ",.0f"), ("floor_ms", "floor", ",.0f"),
        ("added_over_floor", "added/floor", ".2f"),
    ]))
    data = {"validators": N, "network": wan.where, "round_message_delays": ROUND_DELAYS, "baseline_0ms": baseline,
            "saturation": SATURATION, "latency_cap_ms": LATENCY_CAP_MS, "light_rate_tx_per_s": args.light_rate,
            "load_average_before": load_before, "load_average_after": load_after, "rows": rows, "light_runs": {str(d): v["light_runs"] for d, v in light.items()}}
    print(f"wrote {write_result(NAME, data)}")
    return data


if __name__ == "__main__":
    main()
