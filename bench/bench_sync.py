"""Block sync catch-up: a fresh validator fetches and verifies 10,000 committed blocks (issue 4 item 3).

The chain is made directly and honestly: a :class:`node.ledger.Ledger` on
node0's data directory, built from the same genesis, registry and hooks a
validator uses, commits ``--blocks`` blocks of ``--txs`` signed ``test.echo``
transactions each, every block with a commit certificate signed by three of
the four real validator keys. The data directory is copied to node1 and
node2; those three start as a quorum and carry on committing live blocks.
Then node3 starts with an empty store: it learns the height from its peers'
consensus messages and block-syncs, verifying every certificate (three
Ed25519 signatures per block), the block linkage and every transaction's
signature, and executing every block. The clock runs from node3's start to
its ``status`` answering the generated height, polled every 0.1 s.

The bound beside it is measured in the same run: Ed25519 verifications per
second by the syncing node's verification pool (``node.sync.VERIFY_THREADS``
threads at once, as ``cryptography`` releases the GIL), taken just before and
just after the sync, the higher of the two, divided by the signatures a block
costs (its certificate's quorum plus its transactions; the LastCommit it
carries is the previous certificate, verified once). The ratio
``blocks/s / bound`` is the figure to compare across machines: the machine
this runs on is shared, so absolute rates move with its load.

Run: .venv/bin/python -m bench.bench_sync [--blocks 10000] [--txs 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import create_localnet, ed25519_verify_rate, signed_echo_txs, table, write_result
from consensus import CommitCertificate, Ed25519Signer
from consensus.certificates import KIND_COMMIT, quorum_size, vote_sign_bytes
from core.crypto import PrivateKey, sign_bytes, verify
from genesis.home import HomePaths, NodeConfig
from node.sync import VERIFY_THREADS

NAME = "sync"
N_VALIDATORS = 4
TX_BYTES = 200


def pool_verify_rate(threads: int = VERIFY_THREADS, seconds: float = 1.0) -> float:
    """Verifications per second by ``threads`` threads verifying at once (the sync pool's shape)."""
    key = PrivateKey(bytes(range(32)))
    message = sign_bytes("bench", KIND_COMMIT, b"x" * 160)
    signature, public = key._key.sign(message), key.public_key.raw
    start = threading.Barrier(threads + 1)

    def work(deadline_s: float) -> int:
        start.wait()
        done, deadline = 0, time.perf_counter() + deadline_s
        while time.perf_counter() < deadline:
            for _ in range(100):
                verify(public, message, signature)
            done += 100
        return done

    with ThreadPoolExecutor(threads) as pool:
        counts = [pool.submit(work, seconds) for _ in range(threads)]
        start.wait()
        began = time.perf_counter()
        total = sum(c.result() for c in counts)
        return total / (time.perf_counter() - began)


def generate_chain(home: Path, validator_keys: list[PrivateKey], client_keys: list[PrivateKey], doc: Any,
                   blocks: int, txs_per_block: int) -> dict[str, Any]:
    """Commit ``blocks`` certified blocks into ``home``'s data directory, as a validator would."""
    from node.app import LedgerApplication
    from node.ledger import Ledger
    from node.stores import Database

    config = NodeConfig.model_validate_json(HomePaths(home).config.read_text())
    database = Database(home / config.data_dir / "db")
    started = time.perf_counter()
    try:
        ledger = Ledger.assemble(LedgerApplication.open(doc, database), doc.params)
        signers = [Ed25519Signer(k, doc.chain_id) for k in validator_keys[:quorum_size(len(doc.validators))]]
        txs = signed_echo_txs(client_keys, doc.chain_id, blocks * txs_per_block, TX_BYTES)
        proposer = validator_keys[0].public_key.raw
        for h in range(1, blocks + 1):
            for tx in txs[(h - 1) * txs_per_block:h * txs_per_block]:
                ledger.mempool.add(tx.encode())
            block = ledger.propose(proposer, doc.genesis_time_ms + h)
            body = vote_sign_bytes(doc.chain_id, block.height, 0, block.hash)
            sigs = tuple(sorted((s_key.public_key.raw, s.sign(KIND_COMMIT, body))
                                for s_key, s in zip(validator_keys, signers)))
            ledger.blocks.commit(block, CommitCertificate(block.height, 0, block.hash, sigs).encode())
        info = ledger.app.info()
        height, state_hash = info.height, info.state_hash
    finally:
        database.close()
    return {"height": height, "state_hash": state_hash.hex(), "generate_s": time.perf_counter() - started}


def measure(blocks: int = 10_000, txs_per_block: int = 3, out_dir: Path | None = None,
            timeout: float = 900.0, verify_seconds: float = 1.0) -> dict[str, Any]:
    from devnet.testnet import Testnet

    with tempfile.TemporaryDirectory(prefix="fbci-bench-sync-") as tmp:
        root = Path(out_dir or tmp)
        # Genesis an hour back, so generated block times (1 ms apart) are all in the past.
        local = create_localnet(N_VALIDATORS, root / "net", clients=8, start=False,
                                genesis_time_ms=time.time_ns() // 1_000_000 - 3_600_000)
        doc, specs = local.extra["genesis"], local.extra["specs"]
        vkeys = [PrivateKey.load(HomePaths(s.home).node_key) for s in specs]
        # Certificates sorted by validator key need the signers in any order: take node0..2.
        made = generate_chain(specs[0].home, vkeys, local.client_keys, doc, blocks, txs_per_block)
        data_dir = NodeConfig.model_validate_json(HomePaths(specs[0].home).config.read_text()).data_dir
        for spec in specs[1:3]:
            shutil.rmtree(spec.home / data_dir, ignore_errors=True)
            shutil.copytree(specs[0].home / data_dir, spec.home / data_dir)
        quorum, fresh = Testnet(specs[:3]), Testnet(specs[3:])
        try:
            quorum.start()
            quorum.wait_ready(180, min_height=blocks)  # generous: shared CI machines start processes slowly
            verify_rate = ed25519_verify_rate(verify_seconds)
            pool_before = pool_verify_rate(VERIFY_THREADS, verify_seconds)
            started = time.perf_counter()
            fresh.start()
            fresh.wait_ready(180)
            ready = time.perf_counter()
            height, deadline = 0, started + timeout
            while height < blocks and time.perf_counter() < deadline:
                status = fresh.status(0, timeout=2.0)
                height = int(status["height"]) if status else height
                if height < blocks:
                    time.sleep(0.1)
            caught_up = time.perf_counter()
            source = quorum.status(0)
            pool_after = pool_verify_rate(VERIFY_THREADS, verify_seconds)
        finally:
            fresh.stop_all()
            quorum.stop_all()
    elapsed = caught_up - started
    sync_s = caught_up - ready
    signatures_per_block = quorum_size(N_VALIDATORS) + txs_per_block
    pool_rate = max(pool_before, pool_after)
    blocks_per_s = height / sync_s if sync_s > 0 else None
    bound = pool_rate / signatures_per_block
    return {
        "validators": N_VALIDATORS, "blocks": blocks, "txs_per_block": txs_per_block, "tx_bytes": TX_BYTES,
        "generate_s": made["generate_s"], "reached_height": height, "caught_up": height >= blocks,
        "source_height_at_end": source["height"] if source else None,
        "start_to_ready_s": ready - started, "sync_s": sync_s, "total_s": elapsed,
        "blocks_per_s": blocks_per_s,
        "blocks_per_s_from_start": height / elapsed if elapsed > 0 else None,
        "txs_per_s": height * txs_per_block / sync_s if sync_s > 0 else None,
        "certificate_signatures_per_block": quorum_size(N_VALIDATORS),
        "ed25519_verify_per_s_one_core": verify_rate,
        "signatures_per_block": signatures_per_block,
        "verify_threads": VERIFY_THREADS,
        "pool_verify_per_s_before": pool_before, "pool_verify_per_s_after": pool_after,
        "pool_verify_bound_blocks_per_s": bound,
        "ratio_to_pool_bound": blocks_per_s / bound if blocks_per_s else None,
        "verify_bound_blocks_per_s": verify_rate / signatures_per_block,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--txs", type=int, default=3, help="transactions per block")
    args = parser.parse_args(argv)
    r = measure(args.blocks, args.txs)
    print(f"fresh validator block-syncing {r['blocks']:,} blocks ({r['txs_per_block']} txs each, "
          f"{r['certificate_signatures_per_block']}-signature certificates) from 3 peers; "
          f"generated in {r['generate_s']:.1f} s")
    print(table([r], [
        ("blocks", "blocks", ","), ("reached_height", "reached", ","), ("start_to_ready_s", "start s", ".1f"),
        ("sync_s", "sync s", ".1f"), ("total_s", "total s", ".1f"), ("blocks_per_s", "blocks/s", ",.0f"),
        ("txs_per_s", "txs/s", ",.0f"), ("verify_bound_blocks_per_s", "1-core bound blk/s", ",.0f"),
        ("pool_verify_bound_blocks_per_s", "pool bound blk/s", ",.0f"), ("ratio_to_pool_bound", "ratio", ".2f"),
    ]))
    print(f"pool bound: {r['verify_threads']} threads verify {r['pool_verify_per_s_before']:,.0f}/s before the sync "
          f"and {r['pool_verify_per_s_after']:,.0f}/s after (the higher is used), "
          f"{r['signatures_per_block']} signatures per block; one core: {r['ed25519_verify_per_s_one_core']:,.0f}/s")
    print(f"wrote {write_result(NAME, r)}")
    return r


if __name__ == "__main__":
    main()
