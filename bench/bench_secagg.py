"""Secure against plain aggregation, side by side in one run, through a validator's own ledger.

For N = 5, 10, 20 hospitals and one model of P parameters (default 16,384),
a plain FedAvg round (one ``fl.submit_update`` each) and a secure round (the
four ``fl.secagg_*`` stages) run through the node's registry, mempool,
executor and LevelDB in this process, on the same updates. Per round:

- client CPU per hospital: its secure-aggregation work (keys, Shamir shares
  and their encryption, masking, reveal) plus signing, averaged over
  hospitals; the plain figure is signing its one transaction;
- bytes up per hospital: its signed transactions; bytes down: the round
  views it reads (JSON, as a validator answers them); expansion = secure up /
  plain up (Bonawitz et al. report about 1.7x for their parameters; here the
  masked vector is 8 bytes per parameter against 4 in the clear, so ~2x is
  the floor for large P);
- chain time: admission (CheckTx) plus execution and commit of every block
  until the round closes, i.e. what each validator spends;

Times are this process's CPU time (``time.process_time``), not wall time: the
bench machine is shared, and CPU time is what other load disturbs least.
- a secure round of 10 with one hospital dropping after the shares stage,
  the path that rebuilds a mask key and regenerates its pairwise masks
  (its empty blocks waiting for the masked deadline are in its chain time).

Target from the issue: secure chain time at most 2x plain at 10 hospitals;
the table says whether this run met it. Writes bench/results/secagg.json.

Run: .venv/bin/python -m bench.bench_secagg [--params P] [--hospitals 5 10 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import Headline, table, write_result
from client.fl.secagg import SecureHospital
from consensus import CommitCertificate, Ed25519Signer
from consensus.certificates import KIND_COMMIT, vote_sign_bytes
from core.crypto import PrivateKey
from core.tx import Transaction
from core.wire import to_wire
from fl_contracts import contract
from fl_contracts.fixedpoint import encode_delta
from fl_contracts.secagg_msgs import KEYS_KIND, MASKED_KIND, SHARES_KIND, UNMASK_KIND, SecureRoundView
from fl_contracts.secagg_queries import FL_SECURE_ROUND, SecureRoundParams
from fl_contracts.spec import ModelSpec
from genesis.schema import ChainParams
from node.app import LedgerApplication
from node.kinds import build_registry
from node.ledger import Ledger
from node.stores import Database

CHAIN = "bench-secagg"
VALIDATORS = [PrivateKey(bytes([10 + i]) * 32) for i in range(4)]
VKEYS = tuple(v.public_key.raw for v in VALIDATORS)
PARAMS = ChainParams(max_tx_bytes=1 << 20, max_block_bytes=64 << 20, max_block_txs=1000, max_clock_drift_ms=10**9,
                     mempool_max_txs=10_000, mempool_max_bytes=256 << 20)
STAGE_BLOCKS = 4


def spec_for(n: int, params: int, secure: bool) -> ModelSpec:
    base = ModelSpec.for_sequential("m", [params - 1, 1], frac_bits=12, min_updates=2, max_updates=n,
                                    round_length_blocks=STAGE_BLOCKS, max_abs=4.0, max_norm=64.0, max_samples=1000)
    return ModelSpec.model_validate({**base.model_dump(), "secure": secure})


def certify(block: Any) -> bytes:
    body = vote_sign_bytes(CHAIN, block.height, 0, block.hash)
    sigs = tuple((k.public_key.raw, Ed25519Signer(k, CHAIN).sign(KIND_COMMIT, body)) for k in VALIDATORS[:3])
    return CommitCertificate(block.height, 0, block.hash, sigs).encode()


class Chain:
    """One validator's ledger, with the chain's share of the time counted apart from the hospitals'."""

    def __init__(self, path: Path, spec: ModelSpec, keys: list[PrivateKey]) -> None:
        app = LedgerApplication(CHAIN, VKEYS, PARAMS, Database(path), build_registry(CHAIN, VKEYS), genesis_time_ms=1)
        accounts = [(k.public_key.raw, f"h{i}", ["hospital"]) for i, k in enumerate(keys)]
        app.init_genesis(accounts, [lambda state: contract.init_models(state, [spec], {spec.id: None}, 0)])
        self.ledger = Ledger.assemble(app, PARAMS)
        self.app = app
        self.nonces = {k.public_key.raw: 0 for k in keys}
        self.chain_s = 0.0
        self.now = 1000

    def tx(self, key: PrivateKey, kind: str, payload: dict[str, Any]) -> bytes:
        self.nonces[key.public_key.raw] += 1
        return Transaction.create(key, CHAIN, self.nonces[key.public_key.raw], kind, payload).encode()

    def submit(self, raw: bytes) -> None:
        t = time.process_time()
        self.ledger.mempool.add(raw)
        self.chain_s += time.process_time() - t

    def block(self) -> None:
        self.now += 1000
        t = time.process_time()
        block = self.ledger.propose(VKEYS[0], self.now)
        self.ledger.blocks.commit(block, certify(block), durable=False)
        self.chain_s += time.process_time() - t

    def view(self, holder: bytes) -> SecureRoundView:
        answer = self.app.query(FL_SECURE_ROUND.path, SecureRoundParams(model_id="m", holder=holder))
        assert isinstance(answer, SecureRoundView)
        return answer

    def version(self) -> int:
        return contract.current_round(self.app.state, "m").base_version  # type: ignore[arg-type]

    def close(self) -> None:
        self.app.database.close()


def timed(clock: list[float], fn: Callable[[], Any]) -> Any:
    t = time.process_time()
    out = fn()
    clock[0] += time.process_time() - t
    return out


def plain_round(tmp: Path, n: int, updates: list[npt.NDArray[np.int32]], keys: list[PrivateKey]) -> dict[str, Any]:
    chain = Chain(tmp / f"plain{n}", spec_for(n, updates[0].size, False), keys)
    client, up = [0.0], 0
    for k, q in zip(keys, updates):
        payload = {"model_id": "m", "round": 1, "base_version": 0, "num_samples": 100, "delta": encode_delta(q)}
        raw = timed(client, lambda: chain.tx(k, contract.TX_KIND, payload))
        up += len(raw)
        chain.submit(raw)
    chain.block()
    assert chain.version() == 1, "the plain round did not aggregate"
    chain.close()
    return {"mode": "plain", "n": n, "client_ms": 1e3 * client[0] / n, "up_bytes": up / n, "down_bytes": 0,
            "chain_ms": 1e3 * chain.chain_s}


def secure_round(tmp: Path, n: int, updates: list[npt.NDArray[np.int32]], keys: list[PrivateKey],
                 dropped: int = 0) -> dict[str, Any]:
    spec = spec_for(n, updates[0].size, True)
    chain = Chain(tmp / f"secure{n}-{dropped}", spec, keys)
    me = [k.public_key.raw for k in keys]
    hospitals = [SecureHospital(s, "m", 1) for s in me]
    alive = list(range(dropped, n))
    client, up, down = [0.0], [0], [0]

    def post(i: int, kind: str, make: Callable[[], Any]) -> None:
        raw = timed(client, lambda: chain.tx(keys[i], kind, make().model_dump()))
        up[0] += len(raw)
        chain.submit(raw)

    def read(i: int) -> SecureRoundView:
        v = chain.view(me[i])
        down[0] += len(json.dumps(to_wire(v)))
        return v

    def until_stage(stage: str) -> None:
        for _ in range(STAGE_BLOCKS + 1):
            chain.block()
            if chain.view(me[-1]).stage == stage or chain.version() == 1:
                return
        raise AssertionError(f"stage {stage} never came")

    for i in range(n):
        post(i, KEYS_KIND, hospitals[i].keys)
    until_stage("shares")
    for i in range(n):
        v = read(i)
        post(i, SHARES_KIND, lambda: hospitals[i].shares(v))
    until_stage("masked")
    for i in alive:
        v = read(i)
        post(i, MASKED_KIND, lambda: hospitals[i].masked(v, spec, updates[i], 100))
    until_stage("unmask")
    for i in alive:
        v = read(i)
        post(i, UNMASK_KIND, lambda: hospitals[i].unmask(v))
    until_stage("keys")
    assert chain.version() == 1, "the secure round did not aggregate"
    chain.close()
    mode = "secure" if not dropped else f"secure, {dropped} dropped"
    return {"mode": mode, "n": n, "client_ms": 1e3 * client[0] / n, "up_bytes": up[0] / n,
            "down_bytes": down[0] / n, "chain_ms": 1e3 * chain.chain_s}


def best(repeat: int, run: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """The run with the least chain time of ``repeat`` fresh ledgers: the machine is shared, so noise only adds."""
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(run(Path(tmp)))
    return min(runs, key=lambda r: r["chain_ms"])


def measure(hospitals: list[int], params: int, out_dir: Path | None = None, repeat: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for n in hospitals:
        keys = [PrivateKey(bytes([1 + i]) * 32) for i in range(n)]
        updates = [rng.integers(-1 << 12, 1 << 12, params).astype(np.int32) for _ in range(n)]
        plain = best(repeat, lambda tmp: plain_round(tmp, n, updates, keys))
        group = [plain, best(repeat, lambda tmp: secure_round(tmp, n, updates, keys))]
        if n == 10:
            group.append(best(repeat, lambda tmp: secure_round(tmp, n, updates, keys, dropped=1)))
        for row in group:
            row["expansion"] = row["up_bytes"] / plain["up_bytes"]
            row["chain_ratio"] = row["chain_ms"] / plain["chain_ms"]
        rows += group
    at10 = next((r["chain_ratio"] for r in rows if r["n"] == 10 and r["mode"] == "secure"), None)
    result = {"params": params, "repeat": repeat, "rows": rows, "target_chain_ratio_at_10": 2.0, "chain_ratio_at_10": at10,
              "target_met": None if at10 is None else at10 <= 2.0, "headlines": headlines(rows)}
    if out_dir is not None:
        write_result("secagg", result, out_dir)
    return result


def headlines(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For ``bench.report``: secure chain time at 10 against plain; plain / secure >= 1/2 is the issue's 2x."""
    pair = {r["mode"]: r for r in rows if r["n"] == 10}
    if "secure" not in pair or "plain" not in pair:
        return []
    secure, plain = pair["secure"]["chain_ms"], pair["plain"]["chain_ms"]
    return [Headline("secure aggregation chain time per round, 10 hospitals", secure, "ms", plain,
                     "a plain FedAvg round of the same updates", plain / secure, 0.5).doc()]


COLUMNS = [("n", "hospitals", "d"), ("mode", "round", ""), ("client_ms", "client ms/hosp", ".1f"),
           ("up_bytes", "bytes up/hosp", ".0f"), ("down_bytes", "bytes down/hosp", ".0f"),
           ("expansion", "up vs plain", ".2f"), ("chain_ms", "chain ms/round", ".1f"),
           ("chain_ratio", "chain vs plain", ".2f")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=16_384)
    parser.add_argument("--hospitals", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--repeat", type=int, default=3, help="fresh ledgers per round; the fastest counts")
    args = parser.parse_args()
    result = measure(args.hospitals, args.params, Path(__file__).parent / "results", args.repeat)
    print(f"secure vs plain FedAvg, P = {args.params} parameters, one validator's ledger in process, "
          f"best of {args.repeat}")
    print(table(result["rows"], COLUMNS))
    if result["chain_ratio_at_10"] is not None:
        verdict = "met" if result["target_met"] else "NOT met"
        print(f"target: secure chain time <= 2x plain at 10 hospitals: {result['chain_ratio_at_10']:.2f}x ({verdict})")


if __name__ == "__main__":
    main()
