"""Sampled rounds on a real one-validator testnet: only drawn hospitals train, undrawn ones skip politely.

Four hospitals run ``client.fl.train.train_rounds`` in threads for three
rounds of a model that draws each hospital with probability 1/2. Every
closed round's participants must be exactly its draw, the draw must be the
one recomputed here from the hash of the block the round opened at (the
zero hash for round 1, opened at genesis) and the genesis roster, and each
hospital must have reported ``not_drawn`` for exactly the rounds it was left
out of.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from client.fl.data import breast_cancer_split
from client.fl.hospital import Progress
from client.fl.train import train_rounds
from client.session import ChainSession, load_client_key
from core.block import ZERO_HASH
from devnet.catalog import default_models
from devnet.testnet import Testnet
from fl_contracts import sampling
from fl_contracts.queries import FL_DRAW, DrawParams
from genesis.create import init_network
from tests.ports import free_base_port
from tests.testnets import run_in_threads, started

HOSPITALS, ROUNDS = 4, 3
SPEC = default_models(HOSPITALS)[1].model_copy(update={
    "id": "breast_cancer_sampled", "sample_rate_ppm": 500_000, "min_updates": 1, "round_length_blocks": 12})


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Testnet]:
    init_network(1, tmp_path / "net", base_port=free_base_port(4), hospitals=HOSPITALS,
                 app_state={"models": [SPEC.to_doc()]})
    with started(Testnet.load(tmp_path / "net")) as testnet:
        yield testnet


def test_only_the_drawn_hospitals_train_each_round(net: Testnet) -> None:
    split = breast_cancer_split(HOSPITALS, alpha=0.5, seed=0)
    home, url = net.specs[0].home, net.specs[0].rpc_url
    keys = [load_client_key("hospital" if j == 0 else f"hospital{j}", home) for j in range(HOSPITALS)]
    skipped: dict[int, list[int]] = {j: [] for j in range(HOSPITALS)}

    def hospital(j: int) -> None:
        def progress(p: Progress) -> None:
            if p.stage == "not_drawn":
                skipped[j].append(p.round)
        x, y = split.hospitals[j]
        train_rounds(url, keys[j], SPEC.id, x, y, ROUNDS, epochs=1, seed=j, progress=progress, round_timeout_s=120.0)

    run_in_threads(hospital, HOSPITALS, timeout_s=400)

    roster = [k.public_key.raw for k in keys]
    with ChainSession(url, keys[0]) as session:
        records = [r for r in session.run(lambda c: c.fl_rounds(SPEC.id)) if r.status != "open"][:ROUNDS]
        assert [r.round for r in records] == list(range(1, ROUNDS + 1))
        for record in records:
            draw = session.run(lambda c: c.query(FL_DRAW, DrawParams(model_id=SPEC.id, round=record.round)))
            seed = ZERO_HASH if record.opened_height == 0 else \
                session.run(lambda c: c.get_block(record.opened_height)).hash
            assert draw.seed == seed and draw.population == HOSPITALS
            assert draw.drawn == list(sampling.draw(seed, SPEC.id, record.round, roster, SPEC.sample_rate_ppm))
            assert sorted(p.sender for p in record.participants) == draw.drawn
            for j, key in enumerate(keys):
                assert (record.round in skipped[j]) == (key.public_key.raw not in draw.drawn)
