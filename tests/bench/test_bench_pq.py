"""bench_pq at a tiny timing budget: every row present, sizes exact, the hybrid rows the dearer ones."""

from __future__ import annotations

from bench import bench_pq
from core.crypto import HYBRID_SIGNATURE_SIZE


def test_the_pq_bench_measures_every_row_side_by_side() -> None:
    result = bench_pq.measure(seconds=0.02, rounds=2)
    rows = {(r["what"], r["key_type"]): r for r in result["rows"]}
    assert len(rows) == 10 and result["ed25519_verify_per_s"] > 0
    assert rows["transaction", "ed25519"]["signature_bytes"] == 64
    assert rows["transaction", "ed25519+ml-dsa-65"]["signature_bytes"] == HYBRID_SIGNATURE_SIZE
    for n, sigs in ((4, 3), (7, 5)):
        what = f"block certificate n={n} ({sigs} sigs)"
        assert rows[what, "ed25519+ml-dsa-65"]["signature_bytes"] > sigs * HYBRID_SIGNATURE_SIZE
    for row in result["rows"]:
        assert row["verify_per_s"] > 0 and row["x_ed25519"] > 0
    # Sizes do not depend on timing: the hybrid handshake carries two ML-DSA signatures more.
    hybrid = rows["peer handshake (both ends)", "ed25519+ml-dsa-65"]["signature_bytes"]
    assert hybrid - rows["peer handshake (both ends)", "ed25519"]["signature_bytes"] > 2 * 3309
