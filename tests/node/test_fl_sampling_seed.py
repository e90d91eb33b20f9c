"""The validator seeds a sampled round's draw with the hash of the block the round opens at."""

from __future__ import annotations

import pytest

from fl_contracts import contract, sampling
from fl_contracts.spec import ModelSpec
from node.execution import Executor, SignatureCache
from node.kinds import build_registry
from node.stores import Database
from node.state_store import StateStore
from core.accounts import Account, store_account
from tests.node.helpers import CHAIN, GATEWAY, HOSPITAL, VKEYS, make_block


def test_every_end_block_hook_gets_the_block_hash_and_fl_draws_from_it(tmp_path) -> None:
    db = Database(tmp_path / "db")
    try:
        state = StateStore(db)
        spec = ModelSpec.for_sequential("lr", [3, 2], round_length_blocks=1).model_copy(
            update={"sample_rate_ppm": sampling.PPM})
        pending = state.begin()
        store_account(pending, HOSPITAL.public_key.raw, Account("h1", frozenset({"hospital"}), 0))
        store_account(pending, GATEWAY.public_key.raw, Account("gw", frozenset({"gateway"}), 0))  # not drawn from
        contract.init_models(pending, [spec], {spec.id: None}, 0)
        state.commit(0, pending)
        executor = Executor(CHAIN, build_registry(CHAIN, VKEYS), SignatureCache(), max_tx_bytes=4096)
        block = make_block(1, [])
        outcome = executor.execute_block(block, state)  # the deadline of round 1: it fails, round 2 opens
        assert [r.round for r in outcome.rounds_closed] == [1]
        draw = sampling.load_draw(outcome.pending, spec.id, 2)
        assert draw is not None and draw.seed == block.hash != bytes(32)
        assert draw.drawn == [HOSPITAL.public_key.raw] and draw.population == 1
    finally:
        db.close()


def test_genesis_refuses_a_draw_that_cannot_reach_the_quorum(tmp_path) -> None:
    from core.errors import InvalidGenesis
    from devnet.catalog import default_models
    from genesis.create import init_network
    from genesis.home import HomePaths
    from genesis.schema import load_genesis
    from node.kinds import genesis_hooks

    def genesis(rate: int, name: str):
        spec = default_models(4)[1].model_copy(update={"sample_rate_ppm": rate, "min_updates": 2})
        net = init_network(1, tmp_path / name, hospitals=4, app_state={"models": [spec.to_doc()]})
        return load_genesis(HomePaths(net.homes[0]).genesis)

    genesis_hooks(genesis(500_000, "ok"))  # 4 hospitals at q = 0.5: 2 expected, the quorum
    with pytest.raises(InvalidGenesis, match="draws 1.20 of genesis's 4 hospitals.*below its min_updates 2"):
        genesis_hooks(genesis(300_000, "low"))
