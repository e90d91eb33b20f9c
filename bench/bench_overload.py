"""Past the peak: committed throughput at 1.5x and 3x the peak offered load (issue 16 part 4).

One 4-validator testnet, the node's default mempool bound (the load bench
raises it so that its search measures the pipeline; here the bound is what
is under test). In the same run the bench first finds the peak the way
``bench_testnet_load`` does (doubling, then bisecting on committed/offered),
then offers each multiple of that peak open-loop for ``--overload-s``
seconds (long enough to see past the mempool filling up) and reports what
committed in the sending window over the peak, submit-to-commit latency of
what was admitted, and every refusal by its stable reason. Overloaded
clients resubmit a ``mempool_full`` refusal after its ``retry_after_ms``, as
the client library does (``open_loop(resubmit=True)``); refusals count every
attempt.

Graceful means: committed/peak stays >= ``TARGET`` and each refused
transaction is refused with a code (``mempool_full`` with ``retry_after_ms``,
``rate_limited``), never a transport failure or a timeout.

Run: .venv/bin/python -m bench.bench_overload [--validators 4] [--step-s 6] [--multiples 1.5 3] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.bench_testnet_load import KeyPool, open_loop, search_peak
from bench.common import (Headline, create_localnet, ed25519_verify_rate, profile_summary, profiled_command, table,
                          write_result)

NAME = "overload"
TARGET = 0.9
"""Committed throughput past the peak over the peak (issue 16 part 4)."""
TRANSPORT_FAILURES = ("ClientConnectionError", "ServerDisconnectedError", "TimeoutError", "ClientOSError",
                      "NodeUnreachable")


def measure(n: int, step_s: float, multiples: Sequence[float], clients: int, resolution: float, max_steps: int,
            profile_dir: Path | None = None, peak: float | None = None, overload_s: float = 12.0) -> dict[str, Any]:
    """Search for the peak (unless ``peak`` is given: a profile of the overload alone), then offer each multiple."""
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix=f"fbci-bench-overload{n}-") as tmp:
        command = profiled_command(profile_dir) if profile_dir else None
        local = create_localnet(n, Path(tmp) / f"net{n}", clients=clients, command=command)
        try:
            bound = cores * ed25519_verify_rate(1.0) / n
            pool = KeyPool(list(local.client_keys))

            def step(rate: float, seconds: float = step_s, resubmit: bool = False) -> dict[str, Any]:
                row = asyncio.run(open_loop(local, pool, rate, seconds, resubmit=resubmit))
                print(f"  offered {rate:>7,.0f} tx/s: committed {row['committed_tx_per_s'] or 0:>7,.0f} tx/s, "
                      f"p50 {row['p50_ms'] or 0:>6,.0f} ms, refused {row['refused_by_reason']}", flush=True)
                return row

            search = [] if peak else search_peak(step, max(10.0, bound / 8), resolution, max_steps, cap=2 * bound)
            peak = peak or max((r["committed_tx_per_s"] or 0.0) for r in search)
            past = []
            for multiple in multiples:
                row = step(multiple * peak, overload_s, resubmit=True)
                committed = row["committed_tx_per_s"] or 0.0
                failures = sum(c for r, c in row["refused_by_reason"].items() if r in TRANSPORT_FAILURES)
                past.append({**row, "multiple": multiple, "committed_over_peak": committed / peak if peak else 0.0,
                             "transport_failures": failures,
                             "graceful": committed >= TARGET * peak and failures == 0})
        finally:
            local.stop()
    return {"validators": n, "cores": cores, "step_s": step_s, "overload_s": overload_s, "client_keys": clients,
            "bound_tx_per_s": bound,
            "peak_committed_tx_per_s": peak, "search": search, "overload": past, "target": TARGET,
            "loadavg": os.getloadavg()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--step-s", type=float, default=6.0)
    parser.add_argument("--multiples", type=float, nargs="+", default=[1.5, 3.0])
    parser.add_argument("--overload-s", type=float, default=12.0,
                        help="each overloaded step: long enough to pass the mempool filling up")
    parser.add_argument("--clients", type=int, default=2048, help="client keys in genesis (the pool steps draw on)")
    parser.add_argument("--resolution", type=float, default=0.25)
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="validators under cProfile; node0's top functions")
    parser.add_argument("--peak", type=float, help="skip the search and take this as the peak (for a profile)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fbci-prof-") as prof:
        profile_dir = Path(prof) if args.profile else None
        r = measure(args.validators, args.step_s, args.multiples, args.clients, args.resolution, args.max_steps,
                    profile_dir, args.peak, args.overload_s)
        if profile_dir is not None:
            r["profile_node0_top"] = profile_summary(profile_dir / "node0.prof")
    print(f"\n{r['validators']} validators on {r['cores']} cores, load average {r['loadavg']}: peak "
          f"{r['peak_committed_tx_per_s']:,.0f} tx/s (Ed25519 bound {r['bound_tx_per_s']:,.0f} tx/s, same run)")
    print(table(r["overload"], [
        ("multiple", "x peak", ".1f"), ("actual_offered_tx_per_s", "sent/s", ",.0f"),
        ("committed_tx_per_s", "committed tx/s", ",.0f"), ("committed_over_peak", "committed/peak", ".2f"),
        ("p50_ms", "p50 ms", ",.0f"), ("p99_ms", "p99 ms", ",.0f"), ("refused", "refused", "d"),
        ("transport_failures", "transport failures", "d"), ("graceful", "graceful", ""),
    ]))
    for row in r["overload"]:
        print(f"  {row['multiple']:.1f}x refusals by reason: {row['refused_by_reason']}")
    for row in r.get("profile_node0_top", [])[:20]:
        print(f"   {row['share']:6.1%} {row['tottime_s']:7.2f}s {row['calls']:>9} {row['function']}")
    headlines = [Headline(f"{r['validators']} validators, committed at {row['multiple']:g}x the peak offered",
                          row["committed_tx_per_s"] or 0.0, "tx/s", r["peak_committed_tx_per_s"], "same-run peak",
                          row["committed_over_peak"], TARGET).doc() for row in r["overload"]]
    data = {"runs": [r], "headlines": headlines}
    print(f"wrote {write_result(NAME, data)}")
    return data


if __name__ == "__main__":
    main()
