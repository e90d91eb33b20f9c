"""bench_auth_reads at a tiny size: both modes answer, the signed one audits every read, anchoring covers them."""

from __future__ import annotations

from pathlib import Path

from bench import bench_auth_reads


def test_auth_reads_bench_measures_both_modes_and_the_anchor(tmp_path: Path) -> None:
    r = bench_auth_reads.measure(clients=2, seconds=0.3, out_dir=tmp_path)
    open_row, signed_row = r["rows"]
    assert (open_row["mode"], signed_row["mode"]) == ("open", "signed")
    assert open_row["requests"] > 0 and signed_row["requests"] > 0 and r["signed_over_open"] > 0
    assert signed_row["audit_events"] == signed_row["requests"] + 1  # + the warm-up read
    assert r["anchor"]["events"] == signed_row["audit_events"] and r["anchor"]["anchor_ms"] > 0
    assert (tmp_path / "auth_reads.json").is_file()
