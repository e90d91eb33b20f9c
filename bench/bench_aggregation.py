"""On-chain aggregation against Flower's own aggregation functions, on the same values, side by side.

N updates of P = 1,000,000 parameters (fixed point, 12 fractional bits,
|q| <= 2**16 so every bound in fl_contracts.fixedpoint holds). Flower gets the
same values dequantized to float32, as a Flower client would send them, and
runs its bare function (no validation). fbci runs the whole on-chain path:
shared validation (shapes, bounds, norm bounding, sample caps), then the rule;
the rule alone is shown beside it. The update matrix is refilled before each
fbci run, outside the clock (the contract decodes fresh rows from state; Flower
is not timed decoding its parameters either).

Bounds, measured in the same run: Flower's time on the same inputs, and the
memory-copy bandwidth (numpy copyto of 256 MiB float64, best of the samples
taken before and after), against which FedAvg's read rate (N*P*4 bytes over
the rule's time) is set. Every row takes the best of ``--repeat`` rounds that
alternate fbci and Flower, so a burst of load from another process hits both.
Peak memory is measured with tracemalloc (numpy reports its buffers to it)
around the whole on-chain path. Writes bench/results/aggregation.json.
Run with the bench venv (``make bench``); without flwr the Flower columns are empty.
"""

from __future__ import annotations

import argparse
import functools
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import Headline, table, write_result
from fl_contracts import aggregation

NAME = "aggregation"
P = 1_000_000
FRAC = 12
A = 1 << 16
BOUNDS = {"max_abs": A, "max_norm": 2**26, "max_samples": 10_000}
PARAMS: dict[str, dict[str, int]] = {"fedavg": {}, "median": {}, "trimmed_mean": {"trim": 1},
                                     "multi_krum": {"f": 2, "m": 5}, "centered_clip": {"iters": 3, "tau_pct": 100},
                                     "foolsgold": {}}
TARGETS = {("fedavg", 10): 3.0, ("fedavg", 50): 3.0, ("median", 50): 2.0, ("trimmed_mean", 50): 2.0,
           ("multi_krum", 50): 5.0}
"""Whole on-chain path (validation + rule) over Flower's bare function (issue 16 part 6; Multi-Krum from issue 5)."""
MAX_REPEAT = 40
READ_SHARE_TARGET = 0.5
"""FedAvg alone reads at least this share of the same-run copy bandwidth."""
Results = list[tuple[list[np.ndarray], int]]


@functools.cache
def _scratch() -> np.ndarray:
    return np.zeros(64 << 20, dtype=np.uint8)


def evict_caches() -> None:
    """Write 64 MiB (twice this machine's L3) so no run starts with the previous run's inputs in cache."""
    scratch = _scratch()
    scratch += 1


def timed_ms(fn: Callable[[], Any], setup: Callable[[], Any] | None = None) -> float:
    if setup is not None:
        setup()
    evict_caches()
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def memcpy_gbps(repeat: int = 5) -> float:
    src = np.ones(256 << 17)  # 256 MiB of float64
    dst = np.empty_like(src)
    return src.nbytes / min(timed_ms(lambda: np.copyto(dst, src)) for _ in range(repeat)) / 1e6


def flower_funcs(n: int) -> dict[str, Callable[[Results], Any]]:
    try:
        from flwr.server.strategy import aggregate as fa
    except ImportError:
        return {}
    p = PARAMS["multi_krum"]
    return {
        "fedavg": fa.aggregate,
        "median": fa.aggregate_median,
        "trimmed_mean": lambda r: fa.aggregate_trimmed_avg(r, PARAMS["trimmed_mean"]["trim"] / n),
        "multi_krum": lambda r: fa.aggregate_krum(r, p["f"], p["m"]),
    }


def peak_ratio(rule: str, values: np.ndarray, weights: np.ndarray, senders: tuple[bytes, ...]) -> float:
    work = values.copy()
    tracemalloc.start()
    tracemalloc.reset_peak()
    aggregation.aggregate(rule, PARAMS[rule], aggregation.Updates(work, weights, senders), **BOUNDS)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (values.nbytes + peak) / values.nbytes


def measure_rule(rule: str, values: np.ndarray, weights: np.ndarray, flower: Callable[[Results], Any] | None,
                 flower_in: Results, repeat: int, min_seconds: float) -> dict[str, Any]:
    n = values.shape[0]
    senders = tuple(i.to_bytes(32, "big") for i in range(n))
    work = np.empty_like(values)
    u = aggregation.Updates(values, weights, senders)
    rule_fn = aggregation.RULES[rule]
    ours: list[float] = []
    full: list[float] = []
    fl: list[float] = []
    started = time.perf_counter()
    while len(full) < repeat or (time.perf_counter() - started < min_seconds and len(full) < MAX_REPEAT):
        ours.append(timed_ms(lambda: rule_fn(u, PARAMS[rule])))
        full.append(timed_ms(lambda: aggregation.aggregate(rule, PARAMS[rule],
                                                           aggregation.Updates(work, weights, senders), **BOUNDS),
                             setup=lambda: np.copyto(work, values)))
        if flower is not None:
            fl.append(timed_ms(lambda: flower(flower_in)))
    best_full = min(full)
    fl_ms = min(fl) if fl else None
    target = TARGETS.get((rule, n))
    speedup = None if fl_ms is None else fl_ms / best_full
    return {"rule": rule, "n": n, "p": values.shape[1], "rounds": len(full), "ours_ms": min(ours),
            "ours_with_validation_ms": best_full,
            "flower_ms": fl_ms, "speedup_whole_path": speedup, "speedup_rule_alone": None if fl_ms is None
            else fl_ms / min(ours), "target_speedup": target,
            "meets_target": None if target is None or speedup is None else speedup >= target,
            "read_gbps": values.nbytes / min(ours) / 1e6,
            "peak_memory_x_updates": peak_ratio(rule, values, weights, senders)}


def measure(sizes: tuple[int, ...] = (10, 50), p: int = P, repeat: int = 3, min_seconds: float = 2.0,
            rules: tuple[str, ...] = tuple(aggregation.RULES)) -> dict[str, Any]:
    bw_before = memcpy_gbps()
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    for n in sizes:
        values = rng.integers(-A, A + 1, (n, p)).astype(np.int32)
        weights = rng.integers(1, 1000, n).astype(np.int64)
        flower_in = [([v.astype(np.float32) / np.float32(1 << FRAC)], int(w)) for v, w in zip(values, weights)]
        flower = flower_funcs(n)
        for rule in rules:
            row = measure_rule(rule, values, weights, flower.get(rule), flower_in, repeat, min_seconds)
            rows.append(row)
            print(f"  {rule:13s} N={n:3d}  whole path {row['ours_with_validation_ms']:8.1f} ms  flower "
                  f"{'-' if row['flower_ms'] is None else format(row['flower_ms'], '8.1f')} ms", flush=True)
    bw = max(bw_before, memcpy_gbps())
    for row in rows:
        row["read_share_of_copy"] = row["read_gbps"] / bw
    fedavg = [r for r in rows if r["rule"] == "fedavg"]
    return {"memcpy_gbps": bw, "memcpy_gbps_samples": [bw_before, bw], "repeat": repeat,
            "min_seconds_per_rule": min_seconds, "rows": rows,
            "fedavg_read_share_min": min((r["read_share_of_copy"] for r in fedavg), default=None),
            "headlines": headlines(rows, bw)}


def headlines(rows: list[dict[str, Any]], bw: float) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if r["target_speedup"] is not None and r["flower_ms"] is not None:
            out.append(Headline(f"{r['rule']} N={r['n']}, validation + rule vs Flower's bare function",
                                r["ours_with_validation_ms"], "ms", r["flower_ms"], "Flower, same inputs",
                                r["speedup_whole_path"], r["target_speedup"], "x").doc())
        if r["rule"] == "fedavg":
            out.append(Headline(f"fedavg N={r['n']} alone, read rate", r["read_gbps"], "GB/s", bw,
                                "memory-copy bandwidth", r["read_share_of_copy"], READ_SHARE_TARGET, "share").doc())
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--repeat", type=int, default=3, help="rounds per rule at least")
    parser.add_argument("--min-seconds", type=float, default=2.0,
                        help=f"and more rounds (up to {MAX_REPEAT}) until a rule has run this long")
    args = parser.parse_args(argv)
    result = measure(tuple(args.sizes), repeat=args.repeat, min_seconds=args.min_seconds)
    print(f"\nP = {P:,}; memory-copy bandwidth {result['memcpy_gbps']:.1f} GB/s (same run, the higher of "
          f"before/after: {', '.join(f'{x:.1f}' for x in result['memcpy_gbps_samples'])})")
    print(table(result["rows"], [
        ("rule", "rule", ""), ("n", "N", "d"), ("ours_ms", "rule ms", ".1f"),
        ("ours_with_validation_ms", "validation+rule ms", ".1f"), ("flower_ms", "Flower ms", ".1f"),
        ("speedup_whole_path", "x Flower", ".2f"), ("target_speedup", "target", ".0f"),
        ("read_gbps", "rule reads GB/s", ".1f"), ("read_share_of_copy", "of copy bw", ".0%"),
        ("peak_memory_x_updates", "peak mem x", ".2f"),
    ]))
    print(f"wrote {write_result(NAME, result)}")
    return result


if __name__ == "__main__":
    main()
