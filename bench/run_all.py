"""Run every benchmark that can run here, and write bench/results/summary.json.

Each bench runs in its own process (a crash or a hang in one cannot take the
others down) and writes its own ``bench/results/<name>.json``; the summary
holds, per bench, whether it ran, failed or was skipped (and why), how long
it took, and its result file's content. The aggregation bench compares with
Flower, which lives in ``.venv-bench`` (Flower pins packaging<26, which would
downgrade the runtime venv; ``make bench`` creates it); without it the bench
still runs in this interpreter with its Flower columns empty, and the summary
says so.

Run: .venv/bin/python -m bench.run_all [--quick] [--only NAME ...] [--skip NAME ...]
``--quick`` passes small sizes to the node benches (minutes instead of tens of minutes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, machine

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV_PYTHON = ROOT / ".venv-bench" / "bin" / "python"


@dataclass(frozen=True)
class Bench:
    name: str
    """Also the stem of its result file."""
    module: str
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    """Modules that must import in the interpreter that runs it."""
    timeout_s: float = 3600
    python: Path | None = None
    notes: list[str] = field(default_factory=list)


BENCHES = (
    Bench("consensus", "bench.bench_consensus", quick_args=("--heights", "50")),
    Bench("aggregation", "bench.bench_aggregation", needs=("numpy",)),
    Bench("fl_realdata", "bench.bench_fl_realdata", needs=("torch", "sklearn")),
    Bench("attacks", "bench.bench_attacks", quick_args=("--datasets", "breast_cancer"), needs=("torch", "sklearn")),
    Bench("dp", "bench.bench_dp", quick_args=("--quick",), needs=("torch", "sklearn", "opacus")),
    Bench("ids", "bench.bench_ids", needs=("torch", "sklearn")),
    Bench("deterioration", "bench.bench_deterioration", quick_args=("--quick",), needs=("torch", "sklearn")),
    Bench("tx_throughput", "bench.bench_tx_throughput", quick_args=("--txs", "1000")),
    Bench("testnet_load", "bench.bench_testnet_load",
          quick_args=("--validators", "4", "--step-s", "4", "--latency-s", "5", "--resolution", "0.25")),
    Bench("overload", "bench.bench_overload", quick_args=("--step-s", "4", "--overload-s", "8", "--resolution", "0.5")),
    Bench("sync", "bench.bench_sync", quick_args=("--blocks", "1000")),
    Bench("state_sync", "bench.bench_state_sync", quick_args=("--quick",)),
    Bench("pq", "bench.bench_pq", quick_args=("--seconds", "0.1", "--rounds", "2")),
    Bench("dashboard", "bench.bench_dashboard", quick_args=("--alerts", "50", "--repeats", "3")),
    Bench("secagg", "bench.bench_secagg", quick_args=("--hospitals", "5", "10", "--repeat", "1")),
    Bench("blobs", "bench.bench_blobs", quick_args=("--models", "wide_mlp_10m")),
    Bench("alerts_query", "bench.bench_alerts_query", quick_args=("--alerts", "1000", "--samples", "15")),
    Bench("wan", "bench.bench_wan", quick_args=("--step-s", "3", "--latency-s", "4", "--max-steps", "5")),
)


def _imports(python: Path | str, modules: tuple[str, ...]) -> str | None:
    """None when every module imports under ``python``; otherwise the first failure."""
    for module in modules:
        probe = subprocess.run([str(python), "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True)
        if probe.returncode != 0:
            return f"{module} does not import under {python}"
    return None


def _plan(bench: Bench) -> tuple[Path | str | None, list[str], str | None]:
    """(interpreter, notes, reason to skip)."""
    notes: list[str] = []
    python: Path | str = sys.executable
    if bench.name == "aggregation":
        if BENCH_VENV_PYTHON.exists() and _imports(BENCH_VENV_PYTHON, ("flwr",)) is None:
            python = BENCH_VENV_PYTHON
        else:
            notes.append("Flower columns empty: .venv-bench with flwr is missing (make bench creates it)")
    problem = _imports(python, bench.needs)
    return (None, notes, problem) if problem else (python, notes, None)


def run(bench: Bench, quick: bool) -> dict[str, Any]:
    python, notes, skip = _plan(bench)
    entry: dict[str, Any] = {"module": bench.module, "notes": notes}
    if python is None:
        print(f"== {bench.name}: skipped ({skip})", flush=True)
        return {**entry, "status": "skipped", "reason": skip}
    args = [str(python), "-m", bench.module, *bench.args, *(bench.quick_args if quick else ())]
    print(f"== {bench.name}: {' '.join(args[1:])}", flush=True)
    result_file = RESULTS_DIR / f"{bench.name}.json"
    before = result_file.stat().st_mtime if result_file.exists() else None
    started = time.monotonic()
    try:
        proc = subprocess.run(args, cwd=ROOT, timeout=bench.timeout_s)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        status = f"failed (timed out after {bench.timeout_s:.0f} s)"
    entry.update(status=status, seconds=time.monotonic() - started, interpreter=str(python))
    fresh = result_file.exists() and result_file.stat().st_mtime != before
    if fresh:
        entry["result"] = json.loads(result_file.read_text())
    elif status == "ok":
        entry["status"] = "failed (no result file written)"
    return entry


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for the node benches")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME")
    parser.add_argument("--skip", nargs="+", default=[], metavar="NAME")
    args = parser.parse_args(argv)
    known = {b.name for b in BENCHES}
    unknown = sorted((set(args.only or []) | set(args.skip)) - known)
    if unknown:
        parser.error(f"unknown bench(es) {unknown}; known: {sorted(known)}")
    summary: dict[str, Any] = {"machine": machine(), "quick": args.quick, "benches": {}}
    for bench in BENCHES:
        if (args.only and bench.name not in args.only) or bench.name in args.skip:
            summary["benches"][bench.name] = {"module": bench.module, "status": "skipped",
                                              "reason": "not selected on the command line"}
            continue
        summary["benches"][bench.name] = run(bench, args.quick)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / "summary.json"
    out.write_text(json.dumps(summary, indent=2, default=str))
    print("\n== summary")
    for name, entry in summary["benches"].items():
        detail = entry.get("reason") or "; ".join(entry.get("notes", [])) or ""
        seconds = f"{entry['seconds']:.0f} s" if "seconds" in entry else ""
        print(f"{name:>14}  {entry['status']:<28} {seconds:>7}  {detail}")
    print(f"wrote {out}; `make results` (python -m bench.report --write-readme) puts the headlines in README.md")
    return summary


if __name__ == "__main__":
    main()
