"""What the state trie costs per block, beside the execution it adds to, at 10k, 100k and 1M state keys.

For each size a LevelDB state is loaded in one batch (``StateStore.restore``,
the trie built bottom-up) with keys shaped like the chain's own: accounts,
receipts under transaction hashes, alerts and their indexes under big-endian
counters, model versions. Then ``--blocks`` blocks of ``--txs`` signed
``test.echo`` transactions from 50 registered senders run through the
validator's real executor and commit, as a validator does:

- ``exec_ms``: ``Executor.execute_block`` with the signatures already in the
  cache (as for transactions the mempool admitted); ``exec_verify_ms`` the
  same block with a cold cache (every Ed25519 signature checked);
- ``trie_ms``: ``core.smt.update`` of the block's sorted write set against the
  stored trie (node reads from LevelDB, hashing, new nodes): the new cost;
- ``chain_ms``: what the write-set hash chain it replaces cost (one SHA-256
  over the encoded sorted write set), for comparison;
- ``commit_ms``: the whole fsynced commit (state writes, trie update, trie
  nodes, pruning of what falls out of the kept versions);
- ``depth`` and ``proof_b``: a point read's path length and proof size, over
  200 random present keys.

Medians over the blocks. Run: .venv/bin/python -m bench.bench_state_commit [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import signed_echo_txs, table, write_result
from core import codec, smt
from core.accounts import Account, account_key
from core.block import ZERO_HASH, Block, BlockHeader
from core.crypto import PrivateKey
from core.hashing import merkle_root, sha256
from core.proofs import StateReceipt, TreeState, receipt_key
from genesis.schema import ChainParams
from node.execution import Executor, SignatureCache
from node.kinds import build_registry
from node.quotas import MemberQuota
from node.stores import Database
from node.state_store import StateStore

NAME = "state_commit"
CHAIN = "fbci-bench"
SENDERS = 50
VALUE_BYTES = 64


def synthetic_state(n: int, senders: list[PrivateKey]) -> dict[bytes, bytes]:
    """``n`` keys in the chain's layouts (deterministic), plus the senders' accounts."""
    items: dict[bytes, bytes] = {}
    for i in range(n):
        digest = sha256(struct.pack(">Q", i))
        kind = i % 10
        if kind < 4:
            key = receipt_key(digest)
        elif kind < 6:
            key = b"ids/a/" + struct.pack(">Q", i)
        elif kind < 8:
            key = b"ids/i/t/" + struct.pack(">QQ", i // 7, i)
        elif kind < 9:
            key = account_key(digest)
        else:
            key = b"fl/ver/" + (b"model%d" % (i % 5)) + b"/" + struct.pack(">Q", i)
        items[key] = (digest * 2)[:VALUE_BYTES]
    for key in senders:
        items[account_key(key.public_key.raw)] = Account("bench", frozenset({"hospital"}), 0).encode()
    return items


def _block(height: int, txs: list[bytes]) -> Block:
    header = BlockHeader(CHAIN, height, ZERO_HASH, bytes(32), 1000 * height, merkle_root(txs), ZERO_HASH, ZERO_HASH,
                         len(txs))
    return Block(header, tuple(txs))


def _path_depth(state: StateStore, root: smt.Ref | None, key: bytes) -> int:
    depth, ref = 0, root
    while ref is not None:
        node, _ = smt.decode_stored(state.node(ref))
        if isinstance(node, smt.Leaf):
            return depth
        depth += 1
        ref = node.child(smt.bit(key, node.crit))
    return depth


def measure_size(n: int, blocks: int, txs_per_block: int, work_dir: Path) -> dict[str, Any]:
    senders = [PrivateKey(sha256(b"bench sender %d" % i)) for i in range(SENDERS)]
    items = synthetic_state(n, senders)
    database = Database(work_dir / f"db{n}")
    state = StateStore(database)
    started = time.perf_counter()
    state.restore(0, items)
    load_s = time.perf_counter() - started
    params = ChainParams()
    executor = Executor(CHAIN, build_registry(CHAIN, ()), SignatureCache(), params.max_tx_bytes,
                        MemberQuota.from_params(params))
    txs = signed_echo_txs(senders, CHAIN, blocks * txs_per_block, 200)
    rows: dict[str, list[float]] = {k: [] for k in ("exec_verify_ms", "exec_ms", "trie_ms", "chain_ms", "commit_ms",
                                                    "writes", "nodes")}
    for height in range(1, blocks + 1):
        block = _block(height, [t.encode() for t in txs[(height - 1) * txs_per_block:height * txs_per_block]])
        executor.signatures = SignatureCache()
        t0 = time.perf_counter()
        executor.execute_block(block, state)
        t1 = time.perf_counter()
        outcome = executor.execute_block(block, state)  # the cache now holds every signature
        t2 = time.perf_counter()
        assert all(r.ok for r in outcome.receipts.values()), "the bench's transactions must all execute"
        for tx_hash, receipt in outcome.receipts.items():
            outcome.pending.set(receipt_key(tx_hash), StateReceipt.of(receipt).encode())
        writes = sorted(outcome.pending.writes.items())
        t3 = time.perf_counter()
        update = smt.update(state.node, state.tree_root(height - 1), writes, height)
        t4 = time.perf_counter()
        sha256(codec.encode([ZERO_HASH, height, [[k, v] for k, v in writes]]))
        t5 = time.perf_counter()
        state.commit(height, outcome.pending)
        t6 = time.perf_counter()
        for key, value in (("exec_verify_ms", t1 - t0), ("exec_ms", t2 - t1), ("trie_ms", t4 - t3),
                           ("chain_ms", t5 - t4), ("commit_ms", t6 - t5)):
            rows[key].append(1000 * value)
        rows["writes"].append(len(writes))
        rows["nodes"].append(len(update.puts))
    root = state.tree_root(blocks)
    sample = random.Random(n).sample(sorted(items), 200)
    depths = [_path_depth(state, root, key) for key in sample]
    proof_sizes = []
    for key in sample:
        view = TreeState(state.node, root)
        view.get(key)
        proof_sizes.append(len(view.proof().encode()))
    database.close()
    medians = {k: statistics.median(v) for k, v in rows.items()}
    return {"state_keys": len(items), "load_s": load_s, **medians,
            "trie_share_of_exec": medians["trie_ms"] / medians["exec_ms"],
            "depth": statistics.mean(depths), "max_depth": max(depths), "proof_b": statistics.median(proof_sizes)}


COLUMNS = [("state_keys", "state keys", ","), ("load_s", "load s", ".1f"), ("writes", "writes/blk", ".0f"),
           ("exec_verify_ms", "exec+sig ms", ".1f"), ("exec_ms", "exec ms", ".1f"), ("trie_ms", "trie ms", ".1f"),
           ("chain_ms", "old chain ms", ".2f"), ("commit_ms", "commit ms", ".1f"), ("nodes", "nodes/blk", ".0f"),
           ("depth", "depth", ".1f"), ("max_depth", "max", "d"), ("proof_b", "proof B", ".0f")]


def measure(sizes: list[int], blocks: int, txs_per_block: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fbci-bench-state-") as tmp:
        rows = [measure_size(n, blocks, txs_per_block, Path(tmp)) for n in sizes]
    return {"blocks": blocks, "txs_per_block": txs_per_block, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--txs", type=int, default=200, help="transactions per block")
    args = parser.parse_args()
    result = measure([int(s) for s in args.sizes.split(",")], args.blocks, args.txs)
    print(table(result["rows"], COLUMNS))
    print(f"({args.txs} test.echo transactions per block, {args.blocks} blocks, medians; trie ms / exec ms: "
          + ", ".join(f"{r['trie_share_of_exec']:.2f}" for r in result["rows"]) + ")")
    print("wrote", write_result(NAME, result))


if __name__ == "__main__":
    main()
