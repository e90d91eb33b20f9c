"""Single-validator committed transactions per second through JSON-RPC (issue 2 item 10).

One real validator process (``fbci node start``) on loopback; the client signs
``test.echo`` transactions beforehand (signing is the client's cost, not the
node's), then submits them with ``tx_submit``: first one HTTP request per
transaction from ``--concurrency`` connections, then JSON-RPC batches of
``--batch`` requests, on the same validator in the same run. The clock runs
from the first submission to the moment the client learns (websocket
``new_block`` + ``block_get``) that the last transaction is in a committed
block, and every submitted transaction must have committed. This machine's raw
Ed25519 verify rate (``cryptography``, one core) is measured in the same run:
each transaction is verified once by the validator, so it bounds the rate.

Run: .venv/bin/python -m bench.bench_tx_throughput [--txs 3000] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (CommitWatcher, Headline, LocalNet, create_localnet, ed25519_verify_rate, signed_echo_txs,
                          table, write_result)
from core.tx import Transaction

NAME = "tx_throughput"
TX_BYTES = 200
KEYS_PER_NONCE_WINDOW = 60  # below the mempool's 64-nonce gap per sender


async def _submit_single(url: str, hexes: Sequence[str], concurrency: int) -> list[Any]:
    from client.rpc import RpcClient

    errors: list[Any] = []
    queue = iter(hexes)
    async with RpcClient(url) as client:
        async def worker() -> None:
            for tx in queue:
                try:
                    await client.call("tx_submit", {"tx": tx})
                except Exception as exc:  # counted, and the run is marked failed below
                    errors.append(exc)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors


async def _submit_batched(url: str, hexes: Sequence[str], batch: int, concurrency: int) -> list[Any]:
    from client.rpc import RpcClient

    errors: list[Any] = []
    chunks = iter([hexes[i:i + batch] for i in range(0, len(hexes), batch)])
    async with RpcClient(url) as client:
        async def worker() -> None:
            for chunk in chunks:
                results = await client.batch([("tx_submit", {"tx": tx}) for tx in chunk])
                errors.extend(r for r in results if isinstance(r, Exception))
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors


async def _phase(local: LocalNet, txs: list[Transaction], mode: str, batch: int, concurrency: int,
                 timeout: float) -> dict[str, Any]:
    url = local.rpc_urls[0]
    hexes = [tx.encode().hex() for tx in txs]
    hashes = [tx.hash for tx in txs]
    watcher = CommitWatcher(url)
    await watcher.start()
    try:
        started = time.perf_counter()
        if mode == "single":
            errors = await _submit_single(url, hexes, concurrency)
        else:
            errors = await _submit_batched(url, hexes, batch, concurrency)
        submitted_at = time.perf_counter()
        all_committed = await watcher.wait_for(hashes, timeout)
    finally:
        await watcher.stop()
    committed = [watcher.committed[h] for h in hashes if h in watcher.committed]
    last = max(committed) if committed else submitted_at
    elapsed = last - started
    return {
        "mode": mode, "batch": 1 if mode == "single" else batch, "concurrency": concurrency,
        "submitted": len(txs), "rejected": len(errors), "committed": len(committed),
        "all_committed": all_committed and not errors,
        "submit_s": submitted_at - started, "elapsed_s": elapsed,
        "submit_tx_per_s": len(txs) / (submitted_at - started),
        "committed_tx_per_s": len(committed) / elapsed if elapsed > 0 else 0.0,
        "blocks": sum(1 for _, n, _ in watcher.blocks if n),
        "first_errors": [repr(e) for e in errors[:3]],
    }


async def _stage_costs(txs: int) -> dict[str, float]:
    """Seconds spent in each stage of one transaction's life on a validator, in-process, for ``txs`` txs."""
    from consensus import CommitCertificate, Ed25519Signer
    from consensus.certificates import KIND_COMMIT, vote_sign_bytes
    from core.crypto import PrivateKey
    from core.block import Block
    from genesis.schema import ChainParams
    from node.app_reads import RPC_QUERIES
    from node.app import LedgerApplication
    from node.kinds import build_registry
    from node.ledger import Ledger
    from node.rpc.methods import CallContext
    from node.rpc.server import DISPATCHER, create_app
    from node.service import NodeService
    from node.stores import Database

    keys = [PrivateKey(bytes([i + 1]) * 32) for i in range(max(4, -(-txs // KEYS_PER_NONCE_WINDOW)))]
    validator = PrivateKey(bytes([255]) * 32)
    proposer = validator.public_key.raw
    signer = Ed25519Signer(validator, "bench")
    raws = [tx.encode() for tx in signed_echo_txs(keys, "bench", txs, TX_BYTES)]
    params = ChainParams(max_block_txs=2000, mempool_max_txs=10 * txs + 100, mempool_max_bytes=1 << 30)
    spent: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fbci-bench-stages-") as tmp:
        ledgers, apps = [], []
        for name in ("entry", "peer"):
            app = LedgerApplication("bench", (proposer,), params, Database(Path(tmp) / name),
                                    build_registry("bench", (proposer,)))
            app.init_genesis([(k.public_key.raw, f"c{i}", ["hospital"]) for i, k in enumerate(keys)], [])
            ledgers.append(Ledger.assemble(app, params))
            apps.append(app)
        entry, peer = ledgers
        try:
            service = NodeService(name="entry", genesis=None, app=entry.app, mempool=entry.mempool,  # type: ignore[arg-type]
                                  gossip=lambda raw: None, notify_work=lambda: None, view=lambda: 0, peers=lambda: 0,
                                  syncing=lambda: False, on_rejected=lambda sender, exc: None)
            dispatcher = create_app(service, RPC_QUERIES, chain_id="bench", signatures=apps[0].signatures)[DISPATCHER]
            bodies = [json.dumps([{"jsonrpc": "2.0", "id": j, "method": "tx_submit", "params": {"tx": r.hex()}}
                                  for j, r in enumerate(raws[i:i + 100])]).encode() for i in range(0, txs, 100)]
            ctx = CallContext(client="127.0.0.1")
            t = time.perf_counter()
            for body in bodies:
                await dispatcher.handle(body, ctx)
            spent["rpc_batch_submit"] = time.perf_counter() - t
            t = time.perf_counter()
            for raw in raws:
                peer.mempool.add(raw)
            spent["gossip_admit"] = time.perf_counter() - t
            height = 0
            while len(entry.mempool):
                height += 1
                t = time.perf_counter()
                block = entry.propose(proposer, 10**12 + height)
                raw_block = block.encode()
                spent["build_block"] = spent.get("build_block", 0.0) + time.perf_counter() - t
                t = time.perf_counter()
                checked = Block.decode(raw_block, max_size=params.max_block_bytes)
                peer.app.process_proposal(checked, 10**12 + height)
                spent["validate_block"] = spent.get("validate_block", 0.0) + time.perf_counter() - t
                vote = signer.sign(KIND_COMMIT, vote_sign_bytes("bench", block.height, 0, block.hash))
                cert = CommitCertificate(block.height, 0, block.hash, ((proposer, vote),)).encode()
                t = time.perf_counter()
                peer.blocks.commit(checked, cert, raw_block)
                spent["commit_block"] = spent.get("commit_block", 0.0) + time.perf_counter() - t
                entry.blocks.commit(block, cert)
        finally:
            for ledger in ledgers:
                ledger.app.database.close()
    return spent


def measure_stages(txs: int = 4000, verify_seconds: float = 1.0) -> dict[str, Any]:
    """Per-transaction CPU cost of each stage on one validator, next to one Ed25519 verify.

    In one process, no sockets: JSON-RPC batch dispatch into the mempool (the
    entry validator), mempool admission of a gossiped tx (every other
    validator), building, validating and committing blocks of up to 2,000.
    """
    spent = asyncio.run(_stage_costs(txs))
    verify_rate = ed25519_verify_rate(verify_seconds)
    rows = [{"stage": k, "us_per_tx": 1e6 * v / txs} for k, v in spent.items()]
    rows.append({"stage": "ed25519_verify (one)", "us_per_tx": 1e6 / verify_rate})
    return {"txs": txs, "rows": rows, "ed25519_verify_per_s_one_core": verify_rate}


def measure(txs: int = 3000, batch: int = 100, concurrency: int = 16, batch_concurrency: int = 4,
            out_dir: Path | None = None, timeout: float = 120.0, verify_seconds: float = 1.0) -> dict[str, Any]:
    """Run both modes on one fresh validator; returns rows and the Ed25519 bound."""
    with tempfile.TemporaryDirectory(prefix="fbci-bench-tx-") as tmp:
        root = Path(out_dir or tmp)
        clients = max(4, -(-txs // KEYS_PER_NONCE_WINDOW))
        local = create_localnet(1, root / "net", clients=clients)
        try:
            verify_before = ed25519_verify_rate(verify_seconds)
            # One round-robin run split in two: each sender's nonces continue from the first phase.
            all_txs = signed_echo_txs(local.client_keys, local.chain_id, 2 * txs, TX_BYTES)
            single_txs, batch_txs = all_txs[:txs], all_txs[txs:]
            rows = [
                asyncio.run(_phase(local, single_txs, "single", 1, concurrency, timeout)),
                asyncio.run(_phase(local, batch_txs, "batched", batch, batch_concurrency, timeout)),
            ]
            verify_after = ed25519_verify_rate(verify_seconds)
        finally:
            local.stop()
    verify_rate = (verify_before + verify_after) / 2
    for row in rows:
        row["share_of_verify_bound"] = row["committed_tx_per_s"] / verify_rate
    headlines = [Headline(f"1 validator, {row['mode']} tx_submit (batch {row['batch']})", row["committed_tx_per_s"],
                          "tx/s", verify_rate, "Ed25519 verify/s, one core", row["share_of_verify_bound"]).doc()
                 for row in rows]
    return {"tx_bytes": TX_BYTES, "ed25519_verify_per_s_one_core": verify_rate,
            "ed25519_verify_per_s_samples": [verify_before, verify_after], "rows": rows, "headlines": headlines}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=3000, help="transactions per mode")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent single-request connections")
    args = parser.parse_args(argv)
    result = measure(args.txs, args.batch, args.concurrency)
    result["stages"] = measure_stages()
    print(f"single validator, {TX_BYTES}-byte signed test.echo txs via JSON-RPC tx_submit; "
          f"Ed25519 verify on this machine, same run: {result['ed25519_verify_per_s_one_core']:,.0f}/s/core "
          "(the bound; 'of bound' is the ratio)")
    print(table(result["rows"], [
        ("mode", "mode", ""), ("batch", "batch", "d"), ("submitted", "submitted", "d"),
        ("committed", "committed", "d"), ("rejected", "rejected", "d"), ("submit_tx_per_s", "submit tx/s", ",.0f"),
        ("committed_tx_per_s", "committed tx/s", ",.0f"), ("share_of_verify_bound", "of bound", ".1%"),
        ("blocks", "blocks", "d"),
    ]))
    print("\nper-transaction cost of each stage on one validator (in-process, no sockets):")
    print(table(result["stages"]["rows"], [("stage", "stage", ""), ("us_per_tx", "us/tx", ".1f")]))
    print(f"wrote {write_result(NAME, result)}")
    return result


if __name__ == "__main__":
    main()
