"""A local 4- (and 7-) validator testnet under open-loop load (issue 4 item 8).

Real validator processes on loopback. The client pre-signs 200-byte
``test.echo`` transactions over many client keys, then sends them
**open-loop**: every ``TICK_S`` it submits, as JSON-RPC ``tx_submit`` batches
rotated over the validators' RPC ports, however many transactions the offered
rate says are due by now, without waiting for earlier answers. Commit times
come from a websocket ``new_block`` subscription on node0 plus ``block_get``.

The offered rate steps up geometrically; each step's committed tx/s is
counted over its sending window (after a one-second warm-up), so an
overloaded step measures capacity, not the offered rate. The run stops at the
first step that commits less than ``SATURATION`` of what it was offered, or
whose median latency passes two seconds. The peak is the best step; then one
more run at half the peak gives the submit-to-commit latency (p50/p99).

Each step and the latency run use their own client keys, so a transaction
refused in one step (a full mempool) cannot leave a nonce gap that stalls the
next. The bound printed next to the result: each validator verifies each
transaction's Ed25519 signature once (at admission, directly or by gossip,
then cached), so n validators on this machine's cores can commit at most
``cores x verifies/s/core / n`` transactions per second.

Run: .venv/bin/python -m bench.bench_testnet_load [--validators 4 7] [--step-s 6] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (CommitWatcher, LocalNet, create_localnet, ed25519_verify_rate, percentile,
                          profile_summary, profiled_command, signed_echo_txs, table, write_result)
from core.crypto import PrivateKey

NAME = "testnet_load"
TX_BYTES = 200
TICK_S = 0.02
MAX_BATCH = 100
SATURATION = 0.85
WARMUP_S = 1.0
DEFAULT_RATES = (250, 400, 650, 1000, 1500, 2200, 3200, 4500)
BENCH_PARAMS = {"mempool_max_txs": 100_000}
"""Above the default 10,000 so an overloaded step measures the pipeline, not the mempool bound."""


async def open_loop(local: LocalNet, keys: Sequence[PrivateKey], rate: float, duration: float,
                    drain_s: float = 20.0) -> dict[str, Any]:
    """Offer ``rate`` tx/s for ``duration`` seconds; returns throughput, latency and refusals."""
    from client.rpc import RpcClient

    count = max(1, int(rate * duration))
    txs = signed_echo_txs(keys, local.chain_id, count, TX_BYTES)
    hexes = [tx.encode().hex() for tx in txs]
    hashes = [tx.hash for tx in txs]
    submitted_at: list[float] = [0.0] * count
    refused: list[str] = []
    clients = [RpcClient(url) for url in local.rpc_urls]
    watcher = CommitWatcher(local.rpc_urls[0])
    await watcher.start()
    tasks: list[asyncio.Task[None]] = []

    async def post(client: RpcClient, first: int, last: int) -> None:
        try:
            results = await client.batch([("tx_submit", {"tx": hexes[i]}) for i in range(first, last)])
        except Exception as exc:  # the whole batch refused or the connection failed
            refused.extend([type(exc).__name__] * (last - first))
            return
        refused.extend(type(r).__name__ for r in results if isinstance(r, Exception))

    try:
        started = time.perf_counter()
        sent, turn = 0, 0
        while sent < count:
            now = time.perf_counter()
            due = min(count, int(rate * (now - started)) + 1)
            while sent < due:
                last = min(due, sent + MAX_BATCH)
                for i in range(sent, last):
                    submitted_at[i] = now
                tasks.append(asyncio.create_task(post(clients[turn % len(clients)], sent, last)))
                turn += 1
                sent = last
            await asyncio.sleep(max(0.0, TICK_S - (time.perf_counter() - now)))
        sending_s = time.perf_counter() - started
        await asyncio.gather(*tasks)
        answered_s = time.perf_counter() - started
        all_committed = await watcher.wait_for(hashes, drain_s)
    finally:
        await watcher.stop()
        for client in clients:
            await client.close()
    commits = {h: watcher.committed[h] for h in hashes if h in watcher.committed}
    latencies = [commits[h] - submitted_at[i] for i, h in enumerate(hashes) if h in commits]
    window_end = started + duration
    in_window = sum(1 for t in commits.values() if started + WARMUP_S <= t <= window_end)
    last_commit = max(commits.values()) if commits else started
    return {
        "offered_tx_per_s": rate, "sent": count, "sending_s": sending_s,
        "actual_offered_tx_per_s": count / sending_s if sending_s > 0 else float(count),
        "answered_s": answered_s, "refused": len(refused), "refused_kinds": sorted(set(refused)),
        "committed": len(commits), "all_committed": all_committed and not refused,
        "committed_tx_per_s": in_window / (duration - WARMUP_S) if duration > WARMUP_S else None,
        "committed_tx_per_s_overall": len(commits) / (last_commit - started) if commits else 0.0,
        "p50_ms": _ms(percentile(latencies, 50)), "p99_ms": _ms(percentile(latencies, 99)),
        "max_ms": _ms(max(latencies) if latencies else None),
        "blocks": sum(1 for _, n, t in watcher.blocks if n and t >= started),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def _key_groups(keys: Sequence[PrivateKey], groups: int) -> list[list[PrivateKey]]:
    size = len(keys) // groups
    if size < 1:
        raise ValueError(f"{len(keys)} client keys cannot be split into {groups} groups")
    return [list(keys[i * size:(i + 1) * size]) for i in range(groups)]


def measure(n: int, rates: Sequence[float] = DEFAULT_RATES, step_s: float = 6.0, latency_s: float = 10.0,
            clients: int = 512, out_dir: Path | None = None, profile_dir: Path | None = None,
            verify_seconds: float = 1.0, stop_at_saturation: bool = True) -> dict[str, Any]:
    """Step the offered rate on an ``n``-validator testnet, then measure latency at half the peak."""
    with tempfile.TemporaryDirectory(prefix=f"fbci-bench-load{n}-") as tmp:
        root = Path(out_dir or tmp)
        command = profiled_command(profile_dir) if profile_dir else None
        local = create_localnet(n, root / f"net{n}", clients=clients, params=BENCH_PARAMS, command=command)
        try:
            verify_before = ed25519_verify_rate(verify_seconds)
            groups = _key_groups(local.client_keys, len(rates) + 1)
            steps = []
            for rate, keys in zip(rates, groups):
                row = asyncio.run(open_loop(local, keys, rate, step_s))
                steps.append(row)
                print(f"  n={n} offered {rate:>6.0f} tx/s: committed {row['committed_tx_per_s'] or 0:,.0f} tx/s, "
                      f"p50 {row['p50_ms'] or 0:,.0f} ms, refused {row['refused']}", flush=True)
                saturated = (row["committed_tx_per_s"] or 0) < SATURATION * rate or (row["p50_ms"] or 0) > 2000
                if stop_at_saturation and saturated:
                    break
            peak = max(steps, key=lambda r: r["committed_tx_per_s"] or 0)
            peak_rate = peak["committed_tx_per_s"] or 0.0
            half = asyncio.run(open_loop(local, groups[-1], max(1.0, peak_rate / 2), latency_s))
            verify_after = ed25519_verify_rate(verify_seconds)
        finally:
            local.stop()
    verify_rate = (verify_before + verify_after) / 2
    cores = os.cpu_count() or 1
    bound = cores * verify_rate / n
    return {
        "validators": n, "tx_bytes": TX_BYTES, "cores": cores, "client_keys": clients,
        "ed25519_verify_per_s_one_core": verify_rate, "ed25519_verify_per_s_samples": [verify_before, verify_after],
        "bound_tx_per_s": bound, "target_tx_per_s": bound / 2,
        "peak_committed_tx_per_s": peak_rate, "peak_share_of_bound": peak_rate / bound,
        "steps": steps, "half_peak": half,
        "meets_throughput_target": peak_rate >= bound / 2,
        "meets_latency_target": (half["p50_ms"] or 1e9) < 500,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, nargs="+", default=[4, 7])
    parser.add_argument("--rates", type=float, nargs="+", default=list(DEFAULT_RATES))
    parser.add_argument("--step-s", type=float, default=6.0)
    parser.add_argument("--latency-s", type=float, default=10.0)
    parser.add_argument("--profile", action="store_true",
                        help="run validators under cProfile; top functions go into the results")
    args = parser.parse_args(argv)
    results = []
    for n in args.validators:
        with tempfile.TemporaryDirectory(prefix="fbci-prof-") as prof:
            profile_dir = Path(prof) if args.profile else None
            r = measure(n, args.rates, args.step_s, args.latency_s, profile_dir=profile_dir)
            if profile_dir is not None:
                r["profile_node0_top"] = profile_summary(profile_dir / "node0.prof")
        results.append(r)
    for r in results:
        print(f"\n{r['validators']} validators on {r['cores']} cores; Ed25519 verify "
              f"{r['ed25519_verify_per_s_one_core']:,.0f}/s/core -> bound {r['bound_tx_per_s']:,.0f} tx/s, "
              f"target {r['target_tx_per_s']:,.0f} tx/s")
        rows = r["steps"] + [{**r["half_peak"], "offered_tx_per_s": r["half_peak"]["offered_tx_per_s"],
                               "note": "half peak"}]
        print(table(rows, [
            ("offered_tx_per_s", "offered", ",.0f"), ("actual_offered_tx_per_s", "sent/s", ",.0f"),
            ("committed_tx_per_s", "committed tx/s", ",.0f"), ("p50_ms", "p50 ms", ",.0f"),
            ("p99_ms", "p99 ms", ",.0f"), ("refused", "refused", "d"), ("committed", "committed", "d"),
            ("sent", "sent", "d"), ("note", "", ""),
        ]))
        print(f"peak {r['peak_committed_tx_per_s']:,.0f} tx/s = {r['peak_share_of_bound']:.0%} of the bound "
              f"(target 50%: {'met' if r['meets_throughput_target'] else 'NOT met'}); at half peak p50 "
              f"{r['half_peak']['p50_ms'] or 0:,.0f} ms (target < 500 ms: "
              f"{'met' if r['meets_latency_target'] else 'NOT met'})")
        for row in r.get("profile_node0_top", [])[:15]:
            print(f"   {row['share']:6.1%} {row['tottime_s']:7.2f}s {row['calls']:>9} {row['function']}")
    data = {"runs": results}
    print(f"wrote {write_result(NAME, data)}")
    return data


if __name__ == "__main__":
    main()
