"""The consensus WAL's footprint: compaction every 64 heights (the old cadence) against every height (now).

Each height a validator's WAL takes a signed proposal carrying the block's
bytes and two small signed votes, through the node's own
:class:`node.wal.WriteAheadLog` (real fsyncs, real compaction), as in a large
FL round where each block carries ``--block-mb`` of model updates. Each policy
runs in a fresh process, so its resident set is its own; the table gives the
largest WAL file and the process RSS it reached over ``--heights`` heights,
and the RSS growth from the first height to the last. Both rows run in the
same invocation, side by side: the ratio between them is the figure, the
absolute RSS includes the interpreter and the imports of both rows alike.
What this does not measure: a whole validator's RSS (it holds the same WAL
records, plus everything else), which needs the testnet FL bench.

Run: .venv/bin/python -m bench.bench_wal [--heights 128] [--block-mb 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import table, write_result

NAME = "wal"
POLICIES = {"every 64 heights (before)": 64, "every height (now)": 1}


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_policy(every: int, heights: int, block_bytes: int) -> dict[str, Any]:
    """In this process: ``heights`` heights of WAL records, compacted after every ``every``-th commit."""
    from consensus import WalRecord
    from node.wal import WriteAheadLog

    with tempfile.TemporaryDirectory(prefix="fbci-bench-wal-") as tmp:
        path = Path(tmp) / "consensus.wal"
        wal = WriteAheadLog(path)
        block = bytes(range(256)) * (block_bytes // 256)
        first_rss = peak_rss = peak_file = 0
        for height in range(1, heights + 1):
            # fresh bytes per height, as a new block's would be (the proposal record owns its payload)
            proposal = WalRecord("signed", height, 0, bytes(block[:-1]) + bytes([height % 256]))
            wal.append_all([proposal])
            wal.append_all([WalRecord("signed", height, 0, b"prepare vote" * 8),
                            WalRecord("signed", height, 0, b"commit vote" * 8)])
            del proposal
            peak_file = max(peak_file, path.stat().st_size)
            if height % every == 0:
                wal.truncate_before(height + 1)  # block `height` is durable in the block store
            rss = _rss_bytes()
            first_rss = first_rss or rss
            peak_rss = max(peak_rss, rss)
        final_file = path.stat().st_size
        wal.close()
    return {"compact_every": every, "heights": heights, "block_bytes": block_bytes, "peak_wal_bytes": peak_file,
            "final_wal_bytes": final_file, "peak_rss_bytes": peak_rss, "rss_growth_bytes": _rss_bytes() - first_rss}


def measure(heights: int = 128, block_mb: float = 1.0) -> dict[str, Any]:
    rows = []
    for label, every in POLICIES.items():
        out = subprocess.run([sys.executable, "-m", "bench.bench_wal", "--child", str(every), "--heights", str(heights),
                              "--block-mb", str(block_mb)], check=True, capture_output=True, text=True)
        rows.append({"policy": label, **json.loads(out.stdout)})
    before, now = rows
    return {"rows": rows, "peak_wal_ratio": before["peak_wal_bytes"] / now["peak_wal_bytes"],
            "peak_rss_ratio": before["peak_rss_bytes"] / now["peak_rss_bytes"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heights", type=int, default=128)
    parser.add_argument("--block-mb", type=float, default=1.0)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_policy(args.child, args.heights, int(args.block_mb * 1024 * 1024))))
        return {}
    r = measure(args.heights, args.block_mb)
    for row in r["rows"]:
        for key in ("peak_wal_bytes", "final_wal_bytes", "peak_rss_bytes", "rss_growth_bytes"):
            row[key.replace("_bytes", "_mb")] = row[key] / 1e6
    print(f"consensus WAL over {args.heights} heights, a {args.block_mb:g} MB block proposed at each")
    print(table(r["rows"], [("policy", "compaction", ""), ("peak_wal_mb", "peak WAL MB", ".1f"),
                            ("final_wal_mb", "final WAL MB", ".2f"), ("peak_rss_mb", "peak RSS MB", ".1f"),
                            ("rss_growth_mb", "RSS growth MB", ".1f")]))
    print(f"before/now: peak WAL {r['peak_wal_ratio']:.1f}x, peak RSS {r['peak_rss_ratio']:.2f}x")
    print(f"wrote {write_result(NAME, r)}")
    return r


if __name__ == "__main__":
    main()
