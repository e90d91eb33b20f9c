"""A secure round through a real validator's ledger (the node's registry, mempool, executor and LevelDB).

The hospitals sign real transactions and read the round back through the
application's queries, as they would over JSON-RPC. After the round, no file
of the validator's store holds any hospital's update in the clear; a plain
round on a twin ledger is the control showing that the search finds updates
when they are there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from client.fl.secagg import SecureHospital
from core.crypto import PrivateKey
from core.tx import Transaction
from fl_contracts import contract
from fl_contracts.aggregation import Updates, aggregate
from fl_contracts.fixedpoint import encode_delta
from fl_contracts.queries import FL_MODEL_GET, ModelGetParams
from fl_contracts.secagg_msgs import KEYS_KIND, MASKED_KIND, SHARES_KIND, UNMASK_KIND, SecureRoundView
from fl_contracts.secagg_queries import FL_SECURE_ROUND, SecureRoundParams
from fl_contracts.spec import ModelSpec
from node.app import LedgerApplication
from node.kinds import build_registry
from node.ledger import Ledger
from node.stores import Database
from tests.client.fl.secagg_sim import secure_spec
from tests.node.helpers import CHAIN, GENESIS_TIME_MS, PARAMS, VKEYS, certify

KEYS = [PrivateKey(bytes([100 + i]) * 32) for i in range(5)]


def open_chain(path: Path, spec: ModelSpec) -> Ledger:
    params = PARAMS.model_copy(update={"max_tx_bytes": 1 << 16, "max_block_txs": 50})
    app = LedgerApplication(CHAIN, VKEYS, params, Database(path), build_registry(CHAIN, VKEYS),
                            genesis_time_ms=GENESIS_TIME_MS)
    accounts = [(k.public_key.raw, f"hospital{i}", ["hospital"]) for i, k in enumerate(KEYS)]
    app.init_genesis(accounts, [lambda state: contract.init_models(state, [spec], {spec.id: None}, 0)])
    return Ledger.assemble(app, params)


class Driver:
    def __init__(self, chain: Ledger) -> None:
        self.chain = chain
        self.nonces = {k.public_key.raw: 0 for k in KEYS}
        self.now = 10_000

    def send(self, key: PrivateKey, kind: str, payload: dict[str, object]) -> None:
        sender = key.public_key.raw
        self.nonces[sender] += 1
        self.chain.mempool.add(Transaction.create(key, CHAIN, self.nonces[sender], kind, payload).encode())

    def block(self) -> None:
        self.now += 1000
        block = self.chain.propose(VKEYS[0], self.now)
        finalized = self.chain.blocks.commit(block, certify(block))
        assert all(r.ok for r in finalized.receipts.values()), [r.message for r in finalized.receipts.values()]

    def view(self, model_id: str, holder: bytes | None = None) -> SecureRoundView:
        answer = self.chain.app.query(FL_SECURE_ROUND.path, SecureRoundParams(model_id=model_id, holder=holder))
        assert isinstance(answer, SecureRoundView)
        return answer


def files_contain(path: Path, needles: list[bytes]) -> list[bytes]:
    blobs = b"".join(f.read_bytes() for f in path.rglob("*") if f.is_file())
    return [n for n in needles if n in blobs]


def test_a_secure_round_through_the_ledger_leaves_no_update_on_disk(tmp_path: Path) -> None:
    spec = secure_spec(5, dims=(15, 4))
    chain = open_chain(tmp_path / "secure", spec)
    d = Driver(chain)
    rng = np.random.default_rng(7)
    updates: dict[bytes, npt.NDArray[np.int32]] = {
        k.public_key.raw: rng.integers(-spec.max_abs // 4, spec.max_abs // 4, spec.num_params).astype(np.int32)
        for k in KEYS}
    hospitals = {k.public_key.raw: SecureHospital(k.public_key.raw, spec.id, 1) for k in KEYS}
    for k in KEYS:
        d.send(k, KEYS_KIND, hospitals[k.public_key.raw].keys().model_dump())
    d.block()
    assert d.view(spec.id).stage == "shares"  # all max_updates members posted: the stage closed early
    for k in KEYS:
        d.send(k, SHARES_KIND, hospitals[k.public_key.raw].shares(d.view(spec.id)).model_dump())
    d.block()
    dropped = KEYS[3].public_key.raw
    for k in KEYS:
        me = k.public_key.raw
        if me != dropped:
            d.send(k, MASKED_KIND, hospitals[me].masked(d.view(spec.id, me), spec, updates[me], 50).model_dump())
    while d.view(spec.id).stage == "masked":
        d.block()
    for k in KEYS:
        if k.public_key.raw != dropped:
            d.send(k, UNMASK_KIND, hospitals[k.public_key.raw].unmask(d.view(spec.id, k.public_key.raw)).model_dump())
    d.block()
    model = chain.app.query(FL_MODEL_GET.path, ModelGetParams(model_id=spec.id))
    alive = sorted(u for u in updates if u != dropped)
    plain = aggregate("fedavg", {}, Updates(np.stack([updates[u] for u in alive]), np.full(4, 50), tuple(alive)),
                      max_abs=spec.max_abs, max_norm=spec.max_norm, max_samples=spec.max_samples)
    assert model.version == 1 and np.array_equal(model.weights_int(), plain.delta)
    chain.app.database.close()
    needles = [encode_delta(u) for u in updates.values()]
    needles += [(u.astype(np.int64) * 50).astype("<i8").tobytes() for u in updates.values()]
    assert files_contain(tmp_path / "secure", needles) == []

    # The control: the same updates in a plain round are on disk, and the search finds them.
    plain_spec = ModelSpec.model_validate({**spec.model_dump(), "secure": False})
    twin = open_chain(tmp_path / "plain", plain_spec)
    t = Driver(twin)
    for k in KEYS:
        t.send(k, contract.TX_KIND, {"model_id": spec.id, "round": 1, "base_version": 0, "num_samples": 50,
                                     "delta": encode_delta(updates[k.public_key.raw])})
    t.block()
    twin.app.database.close()
    assert len(files_contain(tmp_path / "plain", needles[:5])) == 5
