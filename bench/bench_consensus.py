"""Cost per committed block of the PBFT replica, in the simulator: messages, signatures, CPU.

For n = 4, 7, 10 on a reliable network with no faults: messages sent, signatures made and
signatures checked per committed block (how they grow with n; PBFT's prepare and commit
phases are all-to-all, so messages grow as n^2), and the replica's own CPU time per block
with the (cheap, SHA-256) fake signatures, i.e. excluding Ed25519. Prints a table and writes
bench/results/consensus.json. Run: .venv/bin/python -m bench.bench_consensus [--heights N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from consensus import Replica
from tests.consensus.sim import Simulation

RESULTS = Path(__file__).parent / "results" / "consensus.json"


def measure(n: int, heights: int) -> dict[str, float]:
    sim = Simulation(n, seed=7, base_timeout=20)  # above the worst happy-path round trip: no view changes
    spent = [0.0]
    step = Replica.step

    def timed(self: Replica, event: object) -> list:  # wraps only the replica, not the simulator
        t = time.process_time()
        try:
            return step(self, event)  # type: ignore[arg-type]
        finally:
            spent[0] += time.process_time() - t

    Replica.step = timed  # type: ignore[method-assign]
    try:
        sim.run_until(10**9, stop=lambda: sim.min_honest_height() >= heights)
    finally:
        Replica.step = step  # type: ignore[method-assign]
    blocks = sim.min_honest_height()
    signs = sum(nd.signer.count for nd in sim.nodes)
    verifies = sim.verifier.count
    return {
        "n": n, "blocks": blocks,
        "messages_per_block": sim.messages_sent / blocks,
        "signatures_per_block": signs / blocks,
        "verifications_per_block": verifies / blocks,
        "replica_cpu_ms_per_block_all_replicas": 1000 * spent[0] / blocks,
        "replica_cpu_ms_per_block_per_replica": 1000 * spent[0] / blocks / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heights", type=int, default=300)
    args = parser.parse_args()
    rows = [measure(n, args.heights) for n in (4, 7, 10)]
    print(f"{'n':>3} {'msgs/blk':>9} {'signs/blk':>10} {'verifs/blk':>11} {'cpu ms/blk/replica':>19}")
    for r in rows:
        print(f"{r['n']:>3} {r['messages_per_block']:>9.1f} {r['signatures_per_block']:>10.1f} "
              f"{r['verifications_per_block']:>11.1f} {r['replica_cpu_ms_per_block_per_replica']:>19.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"note": "fake SHA-256 signatures; CPU excludes Ed25519", "rows": rows},
                                  indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
