"""alerts_query under load on real validators: honest commit latency with and without looping readers.

Issue 17 measured it on a 4-validator testnet holding 6,000 alerts: 8
anonymous clients looping ``alerts_query`` raised an honest client's commit
latency from 35 ms to 2-3 s, because every call walked every stored alert.
This bench rebuilds that case. Real validator processes (``--validators``)
get ``--alerts`` IDS alerts from their gateways (four classes, four
severities, 500 devices). Then one hospital submits a small ``test.echo`` with
``tx_submit_commit``, one at a time, ``--samples`` times in each of three
phases, side by side in one run: idle, while ``--readers`` clients loop
``alerts_query``, and idle again (so drift on a shared machine shows). Each
reader pages through the whole alert set with one of four filters in turn
(none, ``min_severity`` alone, a class, a hospital with a severity), 100
alerts a page, following ``next_cursor`` to the end and starting over; the
readers run in a process of their own, so they compete with the validators
for the CPU as real clients on the same machine would. The loaded median is
divided by the idle one (both idle phases pooled) and printed against the
issue's bound of 2x, with the readers' query rate and query time.

Run: .venv/bin/python -m bench.bench_alerts_query [--validators 4] [--alerts 6000] [--readers 8] [--samples 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import LocalNet, create_localnet, percentile, table, write_result
from core.crypto import PrivateKey
from core.hashing import sha256
from core.tx import Transaction
from ids.alerts import SCORE_ONE, AlertPayload
from ids.record import ATTACK_CLASSES

NAME = "alerts_query"
BOUND = 2.0
WAVE = 50
"""Alerts per gateway in flight at once (the mempool admits 64 nonces past the committed one)."""
PAGE = 100
CLASSES = ATTACK_CLASSES[1:]


def reader_filters(hospital: str) -> list[dict[str, Any]]:
    return [{}, {"min_severity": 4}, {"alert_class": CLASSES[0]}, {"hospital": hospital, "min_severity": 3}]


# -- seeding ------------------------------------------------------------------------------------


def _gateways(local: LocalNet) -> list[tuple[PrivateKey, str]]:
    names = {bytes.fromhex(a.public_key): a.name for a in local.extra["genesis"].accounts if "gateway" in a.roles}
    return [(k, names[k.public_key.raw]) for k in local.client_keys if k.public_key.raw in names]


def _hospital(local: LocalNet) -> PrivateKey:
    hospitals = {bytes.fromhex(a.public_key) for a in local.extra["genesis"].accounts if "hospital" in a.roles}
    return next(k for k in local.client_keys if k.public_key.raw in hospitals)


def _alert(i: int, hospital: str, now_ms: int) -> dict[str, Any]:
    return AlertPayload(hospital=hospital, subject_kind="device", subject=sha256(b"device-%d" % (i % 500)),
                        alert_class=CLASSES[i % len(CLASSES)], severity=1 + i % 4, window_start_ms=now_ms + i,
                        window_ms=60_000, count=1, score_ppm=SCORE_ONE // 2, feature_digest=sha256(b"%d" % i),
                        model_version=0).to_payload()


async def seed_alerts(local: LocalNet, count: int) -> float:
    """Commit ``count`` alerts, round-robin over the gateways in waves; returns the seconds it took."""
    from client.rpc import RpcClient

    gateways = _gateways(local)
    now_ms = time.time_ns() // 1_000_000 - 600_000
    started = time.perf_counter()
    async with RpcClient(local.rpc_urls[0], timeout_s=120) as client:
        nonces = {k.public_key.raw: (await client.account_get(k.public_key.raw)).next_nonce for k, _ in gateways}
        made = 0
        while made < count:
            wave: list[Transaction] = []
            for _ in range(WAVE):
                for key, name in gateways:
                    if made == count:
                        break
                    pub = key.public_key.raw
                    wave.append(Transaction.create(key, local.chain_id, nonces[pub], "ids.alert",
                                                   _alert(made, name, now_ms)))
                    nonces[pub] += 1
                    made += 1
            for first in range(0, len(wave), 100):
                calls = [("tx_submit", {"tx": tx.encode().hex()}) for tx in wave[first:first + 100]]
                answers = await client.batch(calls)
                refused = [a for a in answers if isinstance(a, Exception)]
                if refused:
                    raise RuntimeError(f"seeding: {len(refused)} alerts refused, first: {refused[0]!r}")
            await _committed(client, [tx.hash for tx in wave])
    return time.perf_counter() - started


async def _committed(client: Any, hashes: Sequence[bytes], timeout_s: float = 300.0) -> None:
    from core.errors import NotFound

    deadline = time.perf_counter() + timeout_s
    for tx_hash in hashes:
        while True:
            try:
                info = await client.get_tx(tx_hash)
                if not info.receipt.ok:
                    raise RuntimeError(f"seeding: an alert failed on chain: {info.receipt.message}")
                break
            except NotFound:
                if time.perf_counter() > deadline:
                    raise TimeoutError("seeding: alerts not committed in time") from None
                await asyncio.sleep(0.1)  # polling the chain for a commit


async def count_alerts(url: str) -> int:
    from client.rpc import RpcClient

    total, cursor = 0, None
    async with RpcClient(url) as client:
        while True:
            page = await client.alerts_query(limit=500, cursor=cursor)
            total += len(page.alerts)
            if page.next_cursor is None:
                return total
            cursor = page.next_cursor


# -- the honest client ----------------------------------------------------------------------------


async def commit_latencies(local: LocalNet, key: PrivateKey, samples: int) -> list[float]:
    """Seconds from submitting one small transaction to its commit being answered, one at a time."""
    from client.rpc import RpcClient

    out = []
    async with RpcClient(local.rpc_urls[0], timeout_s=120) as client:
        nonce = (await client.account_get(key.public_key.raw)).next_nonce
        for _ in range(samples):
            tx = Transaction.create(key, local.chain_id, nonce, "test.echo", {"msg": b"honest"})
            t0 = time.perf_counter()
            await client.submit_tx_commit(tx, timeout_s=60)
            out.append(time.perf_counter() - t0)
            nonce += 1
    return out


# -- the readers (a process of their own) --------------------------------------------------------


async def _read_loop(url: str, filters: list[dict[str, Any]], first: int, times: list[float], errors: list[str],
                     stop: asyncio.Event) -> None:
    from client.rpc import RpcClient

    async with RpcClient(url, timeout_s=120) as client:
        turn = first
        while not stop.is_set():
            cursor = None
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    page = await client.call("alerts_query", {**filters[turn % len(filters)], "limit": PAGE,
                                                              **({"cursor": cursor} if cursor else {})})
                except Exception as exc:  # counted and shown: a reader refused or cut off
                    errors.append(type(exc).__name__)
                    break
                times.append(time.perf_counter() - t0)
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            turn += 1


async def run_readers(urls: list[str], readers: int, hospital: str) -> dict[str, Any]:
    """Loop until stdin closes, then report the queries made."""
    stop = asyncio.Event()
    times: list[float] = []
    errors: list[str] = []
    tasks = [asyncio.create_task(_read_loop(urls[i % len(urls)], reader_filters(hospital), i, times, errors, stop))
             for i in range(readers)]
    while len(times) < readers and not errors:  # every reader is under way before the parent measures
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    started, done_before = time.perf_counter(), len(times)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    stop.set()
    elapsed = time.perf_counter() - started
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"queries": len(times) - done_before, "seconds": elapsed, "errors": len(errors),
            "query_median_s": statistics.median(times) if times else None, "query_p99_s": percentile(times, 99)}


# -- the run -------------------------------------------------------------------------------------


def _phase(name: str, latencies: list[float]) -> dict[str, Any]:
    return {"phase": name, "samples": len(latencies), "median_ms": 1000 * statistics.median(latencies),
            "p90_ms": 1000 * (percentile(latencies, 90) or 0), "max_ms": 1000 * max(latencies)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--validators", type=int, default=4)
    ap.add_argument("--alerts", type=int, default=6000)
    ap.add_argument("--readers", type=int, default=8)
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--readers-for", nargs="+", metavar="URL", help=argparse.SUPPRESS)  # the readers' process
    ap.add_argument("--hospital", default="gateway0", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.readers_for:
        print(json.dumps(asyncio.run(run_readers(args.readers_for, args.readers, args.hospital))))
        return 0
    with tempfile.TemporaryDirectory(prefix="fbci-bench-alerts-") as tmp:
        local = create_localnet(args.validators, Path(tmp) / "net")
        try:
            seeded_s = asyncio.run(seed_alerts(local, args.alerts))
            stored = asyncio.run(count_alerts(local.rpc_urls[0]))
            honest = _hospital(local)
            before = asyncio.run(commit_latencies(local, honest, args.samples))
            readers = subprocess.Popen(
                [sys.executable, "-m", "bench.bench_alerts_query", "--readers", str(args.readers),
                 "--hospital", _gateways(local)[0][1], "--readers-for", *local.rpc_urls],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                assert readers.stdout is not None
                if readers.stdout.readline().strip() != "ready":
                    raise RuntimeError("the readers' process did not start")
                loaded = asyncio.run(commit_latencies(local, honest, args.samples))
            finally:
                out, _ = readers.communicate("", timeout=300)  # closing stdin stops them
            reads = json.loads(out.strip().splitlines()[-1])
            after = asyncio.run(commit_latencies(local, honest, args.samples))
        finally:
            local.stop()
    rows = [_phase("idle (before)", before), _phase(f"{args.readers} readers looping", loaded),
            _phase("idle (after)", after)]
    idle_ms = 1000 * statistics.median(before + after)
    ratio = rows[1]["median_ms"] / idle_ms
    print(f"honest commit latency, {args.validators} validators, {stored} alerts on chain "
          f"(seeded in {seeded_s:.0f} s), {args.samples} commits per phase")
    print(table(rows, [("phase", "phase", ""), ("samples", "n", "d"), ("median_ms", "median ms", ".1f"),
                       ("p90_ms", "p90 ms", ".1f"), ("max_ms", "max ms", ".1f")]))
    qps = reads["queries"] / reads["seconds"] if reads["seconds"] else 0.0
    median_q = reads["query_median_s"]
    print(f"readers: {reads['queries']} alerts_query pages in {reads['seconds']:.1f} s ({qps:.0f}/s), median "
          f"{1000 * median_q if median_q else float('nan'):.1f} ms, {reads['errors']} errors")
    print(f"loaded / idle median: {ratio:.2f} (bound {BOUND:g}x: {'met' if ratio <= BOUND else 'NOT met'})")
    path = write_result(NAME, {"bound_ratio": BOUND, "ratio": ratio, "within_bound": ratio <= BOUND,
                               "idle_median_ms": idle_ms, "validators": args.validators, "alerts": stored,
                               "seeded_s": seeded_s, "readers": args.readers, "page": PAGE, "rows": rows,
                               "reads": reads, "latencies_s": {"before": before, "loaded": loaded, "after": after}})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
