"""The dashboard over :class:`VerifiedSource`: models, rounds and alerts proven by a light client, a forgery refused.

The provable reads are answered, with proofs, by a real ledger in this process
(``tests.client.test_light_verify.InProcess``); the rest (blocks, status) by the
in-memory chain. A validator that rewrites its proven answer is refused, and
the page shows the refusal, never the forged data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from core.proofs import ProvenAnswer
from client.dashboard.server import Dashboard, build_app
from client.dashboard.source import VerifiedSource
from client.dashboard.ward import GeneratedFeed
from client.light import LightClient
from client.light_verify import GenesisValidators
from tests.client.dashboard.memory_source import MemorySource
from tests.client.dashboard.test_server import _json, run
from tests.client.test_light_verify import InProcess
from tests.node.helpers import CHAIN, HOSPITAL, VKEYS, certify, echo_tx, open_ledger

FORGED = "forged-model"


def _ledger(tmp: Path) -> Any:
    ledger = open_ledger(tmp / "db")
    for i in range(3):
        ledger.mempool.add(echo_tx(HOSPITAL, i + 1, msg=bytes([i])).encode())
        block = ledger.propose(VKEYS[0], 10_000 + i)
        ledger.blocks.commit(block, certify(block))
    return ledger


def _forge(answer: ProvenAnswer) -> ProvenAnswer:
    """Claims a model the proven state does not hold (the proof itself is the validator's real one)."""
    if answer.result != []:
        return answer
    return dataclasses.replace(answer, result=[{"spec": {"id": FORGED}, "hash": "00" * 32}])


def _dashboard(endpoints: list[InProcess]) -> TestClient:
    source = VerifiedSource(MemorySource(), LightClient(endpoints, CHAIN, GenesisValidators(VKEYS)))
    d = Dashboard(source, [source], GeneratedFeed(3, 0, step_s=3600), None, None, history=50)
    return TestClient(TestServer(build_app(d)))


def test_a_forged_model_list_is_refused_and_the_next_validator_is_believed(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    liar, honest = InProcess(ledger, "liar", _forge), InProcess(ledger, "honest")

    async def go() -> None:
        async with _dashboard([liar]) as client:
            refused = await _json(client, "/api/models", status=400)
            assert refused["error"]["code"] == -32136  # no_verified_answer, with the liar's reason
            assert "liar" in refused["error"]["message"] and FORGED not in str(refused["error"].get("data", {}))
            alerts = await _json(client, "/api/alerts")  # the liar forges only models: alerts still verify
            assert alerts["rows"] == []
        async with _dashboard([liar, honest]) as client:
            assert (await _json(client, "/api/models"))["models"] == []  # the proven state holds no model
    run(go)
