"""bench/bench_secagg.py at tiny sizes, so it cannot rot: both rounds aggregate and the figures are sane."""

from __future__ import annotations

from pathlib import Path

from bench import bench_secagg


def test_secagg_bench_runs_both_rounds_and_writes_its_result(tmp_path: Path) -> None:
    r = bench_secagg.measure([3, 10], 256, tmp_path, repeat=1)
    assert (tmp_path / "secagg.json").exists()
    modes = [(row["n"], row["mode"]) for row in r["rows"]]
    assert modes == [(3, "plain"), (3, "secure"), (10, "plain"), (10, "secure"), (10, "secure, 1 dropped")]
    for row in r["rows"]:
        assert row["chain_ms"] > 0 and row["up_bytes"] > 0
        if row["mode"] != "plain":  # a masked coordinate is 8 bytes against 4, plus keys and shares
            assert row["expansion"] > 1.5 and row["down_bytes"] > 0
    assert r["chain_ratio_at_10"] is not None and r["target_met"] == (r["chain_ratio_at_10"] <= 2.0)
