"""Each bench's measurement function at tiny sizes, so the benches cannot rot unnoticed.

These check shapes and sanity (everything submitted committed, rates positive,
the sync target reached), not performance: the numbers at these sizes mean
nothing. Results are returned, not written, so bench/results/ is untouched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import bench_consensus, bench_sync, bench_wal, bench_testnet_load, bench_tx_throughput, run_all
from bench.common import ed25519_verify_rate, percentile, table


def test_common_helpers() -> None:
    assert ed25519_verify_rate(0.05) > 100
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0 and percentile([], 50) is None
    text = table([{"a": 1, "b": 2.5}], [("a", "A", "d"), ("b", "B", ".1f"), ("c", "C", "")])
    assert text.splitlines()[1].split() == ["1", "2.5", "-"]


def test_tx_throughput_commits_everything_it_submits(tmp_path: Path) -> None:
    r = bench_tx_throughput.measure(txs=40, batch=10, concurrency=4, batch_concurrency=2, out_dir=tmp_path,
                                    verify_seconds=0.05)
    assert [row["mode"] for row in r["rows"]] == ["single", "batched"]
    for row in r["rows"]:
        assert row["submitted"] == row["committed"] == 40 and row["rejected"] == 0 and row["all_committed"]
        assert row["committed_tx_per_s"] > 0 and row["share_of_verify_bound"] > 0
    assert r["ed25519_verify_per_s_one_core"] > 100


def test_testnet_load_steps_and_measures_latency(tmp_path: Path) -> None:
    r = bench_testnet_load.measure(1, step_s=1.5, latency_s=1.5, clients=8, max_steps=1, start_rate=30,
                                   out_dir=tmp_path, verify_seconds=0.05)
    step = r["steps"][0]
    assert step["sent"] == 45 and step["committed"] == step["sent"] and step["refused"] == 0
    assert step["p50_ms"] is not None and 0 < step["p50_ms"] <= step["p99_ms"]
    assert step["client_keys"] == 1  # 45 transactions fit one key's nonce window; it went back to the pool
    assert r["half_peak"]["committed"] == r["half_peak"]["sent"] > 0
    assert r["bound_tx_per_s"] > 0 and r["peak_committed_tx_per_s"] > 0


@pytest.mark.parametrize("capacity, start", [(1234.0, 100.0), (1234.0, 5000.0), (80.0, 10.0)])
def test_the_peak_search_brackets_a_capacity_it_was_not_told(capacity: float, start: float) -> None:
    """A fake testnet that commits min(offered, capacity): no preset rates, the search finds it to 10%."""
    offered: list[float] = []

    def step(rate: float) -> dict:
        offered.append(rate)
        return {"offered_tx_per_s": rate, "committed_tx_per_s": min(rate, capacity), "refused": 0, "p50_ms": 50.0}

    rows = bench_testnet_load.search_peak(step, start, resolution=0.1, max_steps=20)
    kept = [r["offered_tx_per_s"] for r in rows if r["kept_up"]]
    missed = [r["offered_tx_per_s"] for r in rows if not r["kept_up"]]
    assert kept and missed and max(kept) <= capacity / bench_testnet_load.SATURATION < min(missed)
    assert min(missed) / max(kept) <= 1.1 and len(rows) < 20
    assert max(r["committed_tx_per_s"] for r in rows) >= 0.9 * capacity


def test_the_key_pool_never_reuses_a_key_with_a_nonce_gap() -> None:
    from core.crypto import PrivateKey

    keys = [PrivateKey(bytes([i + 1]) * 32) for i in range(3)]
    pool = bench_testnet_load.KeyPool(list(keys))
    taken = pool.take(3)
    pool.give_back(taken, {keys[0].public_key.raw: 7, keys[2].public_key.raw: 3})
    assert pool.keys == [keys[0], keys[2]] and pool.nonces[keys[0].public_key.raw] == 7
    with pytest.raises(RuntimeError, match="client keys"):
        pool.take(3)


def test_sync_catches_up_a_fresh_validator(tmp_path: Path) -> None:
    r = bench_sync.measure(blocks=20, txs_per_block=1, out_dir=tmp_path, timeout=60, verify_seconds=0.05)
    assert r["caught_up"] and r["reached_height"] >= 20
    assert r["blocks_per_s"] > 0 and r["sync_s"] > 0


def test_wal_bench_compacts_every_height_to_one_height() -> None:
    every = bench_wal.run_policy(every=1, heights=4, block_bytes=4096)
    rarely = bench_wal.run_policy(every=64, heights=4, block_bytes=4096)
    assert every["peak_wal_bytes"] < 2 * 4096 < 4 * 4096 < rarely["peak_wal_bytes"]


def test_consensus_bench_counts_messages() -> None:
    row = bench_consensus.measure(4, 5)
    assert row["blocks"] >= 5 and row["messages_per_block"] > 0


def test_run_all_skips_what_cannot_run_and_says_why() -> None:
    missing = run_all.Bench("nothing", "bench.nothing", needs=("no_such_module_fbci",))
    entry = run_all.run(missing, quick=True)
    assert entry["status"] == "skipped" and "no_such_module_fbci" in entry["reason"]
    assert {b.name for b in run_all.BENCHES} >= {"tx_throughput", "testnet_load", "sync", "aggregation"}


def test_stage_costs_cover_every_stage() -> None:
    r = bench_tx_throughput.measure_stages(txs=50, verify_seconds=0.05)
    stages = {row["stage"]: row["us_per_tx"] for row in r["rows"]}
    assert set(stages) >= {"rpc_batch_submit", "gossip_admit", "build_block", "validate_block", "commit_block"}
    assert all(v > 0 for v in stages.values())


def test_state_commit_measures_the_trie_beside_execution() -> None:
    from bench import bench_state_commit

    r = bench_state_commit.measure([300], blocks=2, txs_per_block=10)
    row = r["rows"][0]
    assert row["state_keys"] == 300 + bench_state_commit.SENDERS and row["writes"] == 3 * 10  # per sender: nonce, quota usage; per tx: receipt
    assert row["trie_ms"] > 0 and row["exec_ms"] > 0 and row["nodes"] > row["writes"]
    assert 0 < row["depth"] <= row["max_depth"] and row["proof_b"] > 0


def test_aggregation_bench_times_the_whole_path_beside_its_bounds() -> None:
    from bench import bench_aggregation

    r = bench_aggregation.measure(sizes=(5,), p=3000, repeat=1, min_seconds=0, rules=("fedavg", "median"))
    assert [row["rule"] for row in r["rows"]] == ["fedavg", "median"] and r["memcpy_gbps"] > 0
    for row in r["rows"]:
        assert row["ours_ms"] > 0 and row["ours_with_validation_ms"] > 0 and row["read_share_of_copy"] > 0
    assert any(h["bound_what"] == "memory-copy bandwidth" and h["target"] == 0.5 for h in r["headlines"])
