"""A local 4- (and 7-) validator testnet under open-loop load: the bench finds its own peak (issue 16 part 7).

Real validator processes on loopback. The client pre-signs 200-byte
``test.echo`` transactions, then sends them **open-loop**: every ``TICK_S``
it submits, as JSON-RPC ``tx_submit`` batches rotated over the validators'
RPC ports, however many transactions the offered rate says are due by now,
without waiting for earlier answers. Commit times come from a websocket
``new_block`` subscription on node0 plus ``block_get``.

No preset rates. A step offers a rate for ``--step-s`` seconds and counts
what committed in its sending window (after a one-second warm-up), so an
overloaded step measures capacity, not the offered rate. A step *keeps up*
when it commits at least ``SATURATION`` of what it offered, refuses nothing
and its median latency stays under two seconds. The search starts at an
eighth of the bound and doubles the rate while steps keep up, then bisects
(geometrically) between the highest rate that kept up and the lowest that
did not, until the two are within ``--resolution`` of each other. The peak
is the best committed rate of any step; one more run at half of it gives the
submit-to-commit latency (p50/p99).

Client keys: a sender may have at most 64 pending nonces, so each step draws
enough keys that none of them sends more than ``TXS_PER_KEY`` transactions
in it, even if nothing commits until the step ends. A key whose transactions
all committed goes back to the pool with its next nonce; a key with a refused
or lost transaction (a nonce gap that would stall it) is never used again.

The bound printed beside the result, measured in the same run before and
after the load: each validator verifies each transaction's Ed25519
signature once (at admission, directly or by gossip, then cached), so n
validators on this machine's cores can commit at most
``cores x verifies/s/core / n`` transactions per second.

Run: .venv/bin/python -m bench.bench_testnet_load [--validators 4 7] [--step-s 6] [--resolution 0.1] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (CommitWatcher, Headline, LocalNet, create_localnet, ed25519_verify_rate, percentile,
                          profile_summary, profiled_command, signed_echo_txs, table, write_result)
from core.crypto import PrivateKey

NAME = "testnet_load"
TX_BYTES = 200
TICK_S = 0.02
MAX_BATCH = 100
SATURATION = 0.9
MAX_P50_MS = 2000
WARMUP_S = 1.0
TXS_PER_KEY = 48
"""Below the mempool's 64 pending nonces per sender, with room for a block's worth committing late."""
BENCH_PARAMS = {"mempool_max_txs": 100_000}
"""Above the default 10,000 so an overloaded step measures the pipeline, not the mempool bound."""
TARGET_SHARE = {4: 0.75, 7: 0.65}
"""Committed tx/s over the Ed25519 bound (issue 16 part 1)."""
LATENCY_TARGET_MS = (100.0, 300.0)
"""p50 and p99 at half the peak."""


@dataclass
class KeyPool:
    """Client keys with the next nonce of each; a key with a nonce gap is dropped, never reused."""

    keys: list[PrivateKey]
    nonces: dict[bytes, int] = field(default_factory=dict)

    def take(self, count: int) -> list[PrivateKey]:
        if count > len(self.keys):
            raise RuntimeError(f"the step needs {count} client keys and {len(self.keys)} are left; "
                               "start the testnet with more clients")
        taken, self.keys = self.keys[:count], self.keys[count:]
        return taken

    def give_back(self, keys: Sequence[PrivateKey], next_nonce: dict[bytes, int]) -> None:
        for key in keys:
            pub = key.public_key.raw
            if pub in next_nonce:
                self.nonces[pub] = next_nonce[pub]
                self.keys.append(key)


async def open_loop(local: LocalNet, pool: KeyPool, rate: float, duration: float,
                    drain_s: float = 30.0, resubmit: bool = False) -> dict[str, Any]:
    """Offer ``rate`` tx/s for ``duration`` seconds; returns throughput, latency and refusals.

    Waits (up to ``drain_s``) for everything accepted to commit, so the next
    step starts on an empty mempool, then returns its keys to ``pool``. With
    ``resubmit`` a transaction refused ``mempool_full`` is sent again after the
    ``retry_after_ms`` it carried, as ``ChainSession.submit`` would (its latency
    still counts from the first submission): without it one refusal dooms every
    later nonce of its key, and the step measures the load generator giving up.
    """
    from client.rpc import RpcClient, retry_after_s

    count = max(1, int(rate * duration))
    keys = pool.take(max(1, math.ceil(count / TXS_PER_KEY)))
    txs = signed_echo_txs(keys, local.chain_id, count, TX_BYTES, pool.nonces)
    hexes = [tx.encode().hex() for tx in txs]
    hashes = [tx.hash for tx in txs]
    submitted_at: list[float] = [0.0] * count
    refused: list[str] = []
    """The reason (``mempool_full``, ``rate_limited``...) of each refusal, or the exception's name."""
    accepted: list[bytes] = []
    clients = [RpcClient(url) for url in local.rpc_urls]
    watcher = CommitWatcher(local.rpc_urls[0])
    await watcher.start()
    tasks: list[asyncio.Task[None]] = []
    retries: set[asyncio.Task[None]] = set()
    attempts: dict[int, int] = {}

    async def post(client: RpcClient, first: int, last: int, only: int | None = None) -> None:
        picked = range(first, last) if only is None else [only]
        try:
            results = await client.batch([("tx_submit", {"tx": hexes[i]}) for i in picked])
        except Exception as exc:  # the whole batch refused or the connection failed
            refused.extend([_reason(exc)] * len(picked))
            return
        for i, r in zip(picked, results):
            if not isinstance(r, Exception):
                accepted.append(hashes[i])
                continue
            refused.append(_reason(r))
            if resubmit and _reason(r) == "mempool_full":
                attempts[i] = attempts.get(i, 0) + 1
                task = asyncio.create_task(again(client, i, retry_after_s(r) * 2 ** min(attempts[i] - 1, 5)))
                retries.add(task)
                task.add_done_callback(retries.discard)

    async def again(client: RpcClient, i: int, wait_s: float) -> None:
        await asyncio.sleep(wait_s)  # the node's hint, doubled per attempt: client back-off, not synchronisation
        await post(client, i, i + 1, only=i)

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
        resubmit_until = time.perf_counter() + drain_s
        while retries and time.perf_counter() < resubmit_until:
            await asyncio.wait(set(retries), timeout=resubmit_until - time.perf_counter())
        for task in set(retries):
            task.cancel()
        answered_s = time.perf_counter() - started
        all_committed = await watcher.wait_for(accepted, drain_s)  # a refused hash never commits
    finally:
        await watcher.stop()
        for client in clients:
            await client.close()
    commits = {h: watcher.committed[h] for h in hashes if h in watcher.committed}
    next_nonce: dict[bytes, int] = {}
    lost: set[bytes] = set()
    for tx in txs:
        if tx.hash in commits:
            next_nonce[tx.sender] = max(next_nonce.get(tx.sender, 0), tx.nonce + 1)
        else:
            lost.add(tx.sender)
    pool.give_back(keys, {k: v for k, v in next_nonce.items() if k not in lost})
    latencies = [commits[h] - submitted_at[i] for i, h in enumerate(hashes) if h in commits]
    window_end = started + duration
    in_window = sum(1 for t in commits.values() if started + WARMUP_S <= t <= window_end)
    last_commit = max(commits.values()) if commits else started
    return {
        "offered_tx_per_s": rate, "sent": count, "sending_s": sending_s,
        "actual_offered_tx_per_s": count / sending_s if sending_s > 0 else float(count),
        "answered_s": answered_s, "refused": len(refused), "refused_kinds": sorted(set(refused)),
        "refused_by_reason": {r: refused.count(r) for r in sorted(set(refused))},
        "committed": len(commits), "all_committed": all_committed and not refused,
        "committed_tx_per_s": in_window / (duration - WARMUP_S) if duration > WARMUP_S else None,
        "committed_tx_per_s_overall": len(commits) / (last_commit - started) if commits else 0.0,
        "p50_ms": _ms(percentile(latencies, 50)), "p99_ms": _ms(percentile(latencies, 99)),
        "max_ms": _ms(max(latencies) if latencies else None),
        "blocks": sum(1 for _, n, t in watcher.blocks if n and t >= started), "client_keys": len(keys),
    }


def _reason(exc: BaseException) -> str:
    """A refusal's stable reason where the node gave one, else the exception's class (a transport failure)."""
    from core.errors import FbciError

    return exc.reason if isinstance(exc, FbciError) else type(exc).__name__


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def keeps_up(row: dict[str, Any]) -> bool:
    committed = row["committed_tx_per_s"] or 0.0
    return (committed >= SATURATION * row["offered_tx_per_s"] and not row["refused"]
            and (row["p50_ms"] or 0.0) < MAX_P50_MS)


def search_peak(step: Callable[[float], dict[str, Any]], start: float, resolution: float = 0.1,
                max_steps: int = 12, cap: float = math.inf) -> list[dict[str, Any]]:
    """Double the offered rate from ``start`` while steps keep up, then bisect between the last that kept up and
    the first that did not until they are within ``resolution`` of each other (or ``max_steps`` ran)."""
    rows: list[dict[str, Any]] = []
    good, bad = 0.0, math.inf
    rate = start
    while len(rows) < max_steps:
        row = step(rate)
        row["kept_up"] = keeps_up(row)
        rows.append(row)
        if row["kept_up"]:
            good = max(good, rate)
        else:
            bad = min(bad, rate)
        if bad == math.inf:
            if rate >= cap:
                break
            rate = min(2 * rate, cap)
        elif good == 0.0:
            rate = rate / 2  # even the first step was too much: halve until one keeps up
        elif bad / good <= 1 + resolution:
            break
        else:
            rate = math.sqrt(good * bad)
    return rows


def measure(n: int, step_s: float = 6.0, latency_s: float = 10.0, clients: int = 1024, resolution: float = 0.1,
            max_steps: int = 12, start_rate: float | None = None, out_dir: Path | None = None,
            profile_dir: Path | None = None, verify_seconds: float = 1.0) -> dict[str, Any]:
    """Search for the peak committed rate on an ``n``-validator testnet, then measure latency at half of it."""
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix=f"fbci-bench-load{n}-") as tmp:
        root = Path(out_dir or tmp)
        command = profiled_command(profile_dir) if profile_dir else None
        local = create_localnet(n, root / f"net{n}", clients=clients, params=BENCH_PARAMS, command=command)
        try:
            verify_before = ed25519_verify_rate(verify_seconds)
            bound_before = cores * verify_before / n
            pool = KeyPool(list(local.client_keys))

            def step(rate: float) -> dict[str, Any]:
                row = asyncio.run(open_loop(local, pool, rate, step_s))
                print(f"  n={n} offered {rate:>7,.0f} tx/s: committed {row['committed_tx_per_s'] or 0:>7,.0f} tx/s, "
                      f"p50 {row['p50_ms'] or 0:>6,.0f} ms, refused {row['refused']}, "
                      f"{row['client_keys']} keys", flush=True)
                return row

            steps = search_peak(step, start_rate or max(10.0, bound_before / 8), resolution, max_steps,
                                cap=2 * bound_before)
            peak_rate = max((r["committed_tx_per_s"] or 0.0) for r in steps)
            half = asyncio.run(open_loop(local, pool, max(1.0, peak_rate / 2), latency_s))
            verify_after = ed25519_verify_rate(verify_seconds)
        finally:
            local.stop()
    verify_rate = max(verify_before, verify_after)
    bound = cores * verify_rate / n
    share = peak_rate / bound
    target = TARGET_SHARE.get(n)
    p50, p99 = half["p50_ms"], half["p99_ms"]
    return {
        "validators": n, "tx_bytes": TX_BYTES, "cores": cores, "client_keys": clients, "step_s": step_s,
        "resolution": resolution, "ed25519_verify_per_s_one_core": verify_rate,
        "ed25519_verify_per_s_samples": [verify_before, verify_after],
        "bound_tx_per_s": bound, "target_share": target,
        "peak_committed_tx_per_s": peak_rate, "peak_share_of_bound": share,
        "highest_rate_kept_up": max((r["offered_tx_per_s"] for r in steps if r["kept_up"]), default=None),
        "steps": steps, "half_peak": half,
        "meets_throughput_target": None if target is None else share >= target,
        "meets_latency_target": p50 is not None and p99 is not None and p50 < LATENCY_TARGET_MS[0]
        and p99 < LATENCY_TARGET_MS[1],
    }


def headlines(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in runs:
        out.append(Headline(f"{r['validators']} validators, peak committed (searched)", r["peak_committed_tx_per_s"],
                            "tx/s", r["bound_tx_per_s"], f"Ed25519: {r['cores']} cores x verify/s / n",
                            r["peak_share_of_bound"], r["target_share"]).doc())
        p50 = r["half_peak"]["p50_ms"]
        if p50:
            out.append(Headline(f"{r['validators']} validators, p50 latency at half the peak", p50, "ms",
                                LATENCY_TARGET_MS[0], "target p50", LATENCY_TARGET_MS[0] / p50, 1.0, "x").doc())
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, nargs="+", default=[4, 7])
    parser.add_argument("--step-s", type=float, default=6.0)
    parser.add_argument("--latency-s", type=float, default=10.0)
    parser.add_argument("--resolution", type=float, default=0.1, help="stop bisecting when hi/lo <= 1 + this")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--clients", type=int, default=1024, help="client keys in genesis (the pool steps draw on)")
    parser.add_argument("--profile", action="store_true",
                        help="run validators under cProfile; top functions go into the results")
    args = parser.parse_args(argv)
    results = []
    for n in args.validators:
        with tempfile.TemporaryDirectory(prefix="fbci-prof-") as prof:
            profile_dir = Path(prof) if args.profile else None
            r = measure(n, args.step_s, args.latency_s, args.clients, args.resolution, args.max_steps,
                        profile_dir=profile_dir)
            if profile_dir is not None:
                r["profile_node0_top"] = profile_summary(profile_dir / "node0.prof")
        results.append(r)
    for r in results:
        print(f"\n{r['validators']} validators on {r['cores']} cores; Ed25519 verify "
              f"{r['ed25519_verify_per_s_one_core']:,.0f}/s/core (same run) -> bound {r['bound_tx_per_s']:,.0f} tx/s")
        rows = r["steps"] + [{**r["half_peak"], "note": "half peak"}]
        print(table(rows, [
            ("offered_tx_per_s", "offered", ",.0f"), ("actual_offered_tx_per_s", "sent/s", ",.0f"),
            ("committed_tx_per_s", "committed tx/s", ",.0f"), ("p50_ms", "p50 ms", ",.0f"),
            ("p99_ms", "p99 ms", ",.0f"), ("refused", "refused", "d"), ("committed", "committed", "d"),
            ("sent", "sent", "d"), ("client_keys", "keys", "d"), ("kept_up", "kept up", ""), ("note", "", ""),
        ]))
        target = r["target_share"]
        print(f"peak {r['peak_committed_tx_per_s']:,.0f} tx/s = {r['peak_share_of_bound']:.0%} of the bound "
              f"(ratio {r['peak_share_of_bound']:.2f}; target {'-' if target is None else f'{target:.0%}'}: "
              f"{'-' if target is None else 'met' if r['meets_throughput_target'] else 'NOT met'}); at half peak "
              f"p50 {r['half_peak']['p50_ms'] or 0:,.0f} ms, p99 {r['half_peak']['p99_ms'] or 0:,.0f} ms "
              f"(target < {LATENCY_TARGET_MS[0]:.0f} / {LATENCY_TARGET_MS[1]:.0f} ms: "
              f"{'met' if r['meets_latency_target'] else 'NOT met'})")
        for row in r.get("profile_node0_top", [])[:15]:
            print(f"   {row['share']:6.1%} {row['tottime_s']:7.2f}s {row['calls']:>9} {row['function']}")
    data = {"runs": results, "headlines": headlines(results)}
    print(f"wrote {write_result(NAME, data)}")
    return data


if __name__ == "__main__":
    main()
