"""On-chain aggregation against Flower's own aggregation functions, on the same values.

N updates of P = 1,000,000 parameters (fixed point, 12 fractional bits,
|q| <= 2**16 so every bound in fl_contracts.fixedpoint holds). Flower gets the
same values dequantized to float32, as a Flower client would send them.
Memory-copy bandwidth (numpy copyto of 256 MiB) is the roofline: FedAvg must
read its N*P*4 bytes at more than half of it. Peak memory is measured with
tracemalloc (numpy reports its buffers to it) around the full on-chain
pipeline: validation, norm bounding, rule. Writes bench/results/aggregation.json.
Run with the bench venv (``make bench``); without flwr the Flower columns are empty.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fl_contracts import aggregation

OUT = Path(__file__).parent / "results" / "aggregation.json"
P = 1_000_000
FRAC = 12
A = 1 << 16
PARAMS = {"fedavg": {}, "median": {}, "trimmed_mean": {"trim": 1}, "multi_krum": {"f": 2, "m": 5},
          "centered_clip": {"iters": 3, "tau_pct": 100}, "foolsgold": {}}


def best_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def memcpy_gbps() -> float:
    src = np.ones(256 << 17)  # 256 MiB of float64
    dst = np.empty_like(src)
    return src.nbytes / best_ms(lambda: np.copyto(dst, src), 5) / 1e6


def flower_funcs(n: int) -> dict[str, Callable[[list[tuple[list[np.ndarray], int]]], Any]]:
    try:
        from flwr.server.strategy import aggregate as fa
    except ImportError:
        return {}
    p = PARAMS["multi_krum"]
    return {
        "fedavg": fa.aggregate,
        "median": fa.aggregate_median,
        "trimmed_mean": lambda r: fa.aggregate_trimmed_avg(r, 1 / n),
        "multi_krum": lambda r: fa.aggregate_krum(r, p["f"], p["m"]),
    }


def peak_ratio(rule: str, values: np.ndarray, weights: np.ndarray, senders: tuple[bytes, ...]) -> float:
    work = values.copy()
    tracemalloc.start()
    tracemalloc.reset_peak()
    aggregation.aggregate(rule, PARAMS[rule], aggregation.Updates(work, weights, senders), max_abs=A, max_norm=2**26,
                    max_samples=10_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (values.nbytes + peak) / values.nbytes


def main() -> None:
    bw = memcpy_gbps()
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    for n in (10, 50):
        values = rng.integers(-A, A + 1, (n, P)).astype(np.int32)
        weights = rng.integers(1, 1000, n).astype(np.int64)
        senders = tuple(i.to_bytes(32, "big") for i in range(n))
        u = aggregation.Updates(values, weights, senders)
        flower_in = [([v.astype(np.float32) / np.float32(1 << FRAC)], int(w)) for v, w in zip(values, weights)]
        flower = flower_funcs(n)
        for rule, fn in aggregation.RULES.items():
            ours = best_ms(lambda: fn(u, PARAMS[rule]), 5 if rule == "fedavg" else 3)
            full = best_ms(lambda: aggregation.aggregate(rule, PARAMS[rule], aggregation.Updates(values.copy(), weights, senders),
                                                   max_abs=A, max_norm=2**26, max_samples=10_000), 2)
            fl = best_ms(lambda: flower[rule](flower_in), 1 if rule in ("median", "multi_krum") else 3) if rule in flower else None
            row = {"rule": rule, "n": n, "p": P, "ours_ms": ours, "ours_with_validation_ms": full, "flower_ms": fl,
                   "speedup": None if fl is None else fl / ours,
                   "read_gbps": values.nbytes / ours / 1e6, "peak_memory_x_updates": peak_ratio(rule, values, weights, senders)}
            rows.append(row)
            print(f"{rule:13s} N={n:3d}  ours {ours:8.1f} ms  (+validation {full:8.1f})  flower "
                  f"{'-' if fl is None else f'{fl:8.1f}'} ms  speedup {'-' if fl is None else f'{fl / ours:5.1f}x'}  "
                  f"read {row['read_gbps']:5.1f} GB/s  peak {row['peak_memory_x_updates']:.2f}x", flush=True)
    print(f"memory-copy bandwidth {bw:.1f} GB/s (half: {bw / 2:.1f})")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"memcpy_gbps": bw, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
