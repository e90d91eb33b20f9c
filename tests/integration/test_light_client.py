"""A lying validator on a real 4-validator testnet: the light client refuses each lie and falls back.

The liar is an HTTP proxy in front of validator 0 that rewrites its proven
answers: a wrong global model (with a proof and header state root forged to
match it), a forged alert list, a stale answer replayed from an earlier
height, and a receipt for a transaction that never committed. A light client
holding only the liar refuses each with its error class; one holding the
liar and an honest validator gets the honest answer every time.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import ClientSession, web

from client.ids_watch import reporter_name
from client.light import LightClient, home_genesis
from client.rpc import RpcClient
from client.session import ChainSession, load_client_key
from core import codec, smt
from core.api import Query, TxGetParams
from core.block import BlockHeader
from core.errors import NoVerifiedAnswer
from core.hashing import sha256
from core.proofs import TX_RECEIPT, PBranch, PLeaf, StateProof
from devnet.testnet import Testnet
from fl_contracts.queries import FL_MODEL_GET, FL_MODELS, ModelGetParams
from genesis.schema import GenesisDoc
from ids.alerts import TX_KIND, AlertPayload
from ids.queries import ALERTS_QUERY, AlertsQueryParams
from tests.ports import free_base_port

LAG = 2


def _forge_model(answer: dict[str, Any]) -> dict[str, Any]:
    """A consistent forgery: other weights in the result and in the proof's leaf, and the header's state
    root recomputed to match, so only the commit certificate can catch it."""
    proof = StateProof.decode(bytes.fromhex(answer["proof"]))

    def forge(node: Any) -> Any:
        if isinstance(node, PLeaf) and node.value is not None and node.key.startswith(b"fl/ver/"):
            value = node.value[:-1] + bytes([node.value[-1] ^ 1])
            return PLeaf(node.key, smt.value_hash(value), value)
        if isinstance(node, PBranch):
            return PBranch(node.crit, node.label, forge(node.left), forge(node.right))
        return node

    forged = StateProof(forge(proof.root))
    fields = codec.decode(bytes.fromhex(answer["header"]))
    fields[6] = forged.root_hash()  # state_hash
    weights = answer["result"]["weights"]
    return {**answer, "proof": forged.encode().hex(), "header": BlockHeader(*fields).encode().hex(),
            "result": {**answer["result"], "weights": weights[:-1] + ("0" if weights[-1] != "0" else "1")}}


def _forge_alerts(answer: dict[str, Any]) -> dict[str, Any]:
    alerts = answer["result"]["alerts"]
    fake = {**alerts[0], "alert_id": 10_000, "alert_class": "flooding"}
    return {**answer, "result": {**answer["result"], "alerts": alerts[1:] + [fake]}}


def _fake_receipt(answer: dict[str, Any]) -> dict[str, Any]:
    receipt = {"height": answer["state_height"], "index": 0, "ok": True, "code": 0, "reason": "", "result": {}}
    return {**answer, "result": receipt, "not_found": None}


class Liar:
    """validator 0 behind a proxy that applies ``self.lie`` to every proven answer (None: passes it on);
    ``stale`` replays the first proven answer it saw for the same request instead."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/") + "/rpc"
        self.lie: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.stale = False
        self.seen: dict[str, dict[str, Any]] = {}
        self.port = free_base_port(1)
        self.url = f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        async with self._http.post(self.upstream, json=body) as resp:
            answer = await resp.json(content_type=None)
        params = body.get("params") if isinstance(body, dict) else None
        if isinstance(params, dict) and params.get("prove") and "result" in answer:
            # the same read, whatever its signature (a signed read's auth is fresh each time)
            key = codec.encode([body["method"], sorted((k, v) for k, v in params.items() if k != "auth")]).hex()
            first = self.seen.setdefault(key, answer["result"])
            if self.stale:
                answer = {**answer, "result": first}
            elif self.lie is not None:
                answer = {**answer, "result": self.lie(copy.deepcopy(answer["result"]))}
        return web.json_response(answer)

    async def __aenter__(self) -> Liar:
        self._http = ClientSession()
        app = web.Application()
        app.router.add_post("/rpc", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
        await self._http.close()


async def _refused(client: LightClient, query: Query[Any, Any], params: Any, reason: str) -> None:
    with pytest.raises(NoVerifiedAnswer) as caught:
        await client.query(query, params)
    assert reason in caught.value.data["failures"][0], caught.value.data


async def _scenario(net: Testnet, doc: GenesisDoc, committed_at: int, hospital: str) -> None:
    async with Liar(net.specs[0].rpc_url) as liar:
        reader = net.client_key()  # models and alerts are private reads: the light client signs them
        lying, honest = RpcClient(liar.url, reader=reader), RpcClient(net.specs[1].rpc_url, reader=reader)
        alone = LightClient.from_genesis(doc, [lying], max_lag_blocks=LAG)
        model_id = (await alone.query(FL_MODELS, FL_MODELS.params()))[0].spec.id
        model = ModelGetParams(model_id=model_id)
        alerts = AlertsQueryParams(hospital=hospital)
        receipt = TxGetParams(hash=sha256(b"a transaction nobody sent"))
        truth = {"model": await alone.query(FL_MODEL_GET, model),
                 "alerts": await alone.query(ALERTS_QUERY, alerts, min_state_height=committed_at)}
        assert len(truth["alerts"].alerts) == 2
        assert await alone.query(TX_RECEIPT, receipt) is None

        for lie, query, params, reason in [(_forge_model, FL_MODEL_GET, model, "header_unverified"),
                                           (_forge_alerts, ALERTS_QUERY, alerts, "answer_mismatch"),
                                           (_fake_receipt, TX_RECEIPT, receipt, "answer_mismatch")]:
            liar.lie = lie
            await _refused(alone, query, params, reason)
            both = LightClient.from_genesis(doc, [lying, honest], max_lag_blocks=LAG)  # asks the liar first
            expected = {FL_MODEL_GET: truth["model"], ALERTS_QUERY: truth["alerts"], TX_RECEIPT: None}[query]
            assert await both.query(query, params) == expected  # fell back to validator 1

        liar.lie, liar.stale = None, True  # replay the answers recorded at the start
        stale_at = (await honest.status()).height
        net.wait_ready(30, nodes=[1], min_height=stale_at + LAG + 2)
        both = LightClient.from_genesis(doc, [lying, honest], max_lag_blocks=LAG)
        for client in (alone, both):
            assert await client.sync_head() >= stale_at + LAG + 2  # the liar's own head still verifies
        await _refused(alone, ALERTS_QUERY, alerts, "stale_answer")
        assert await both.query(ALERTS_QUERY, alerts) == truth["alerts"]
        await lying.close()
        await honest.close()


def _alert(hospital: str, i: int) -> dict[str, Any]:
    return AlertPayload(hospital=hospital, subject_kind="device", subject=sha256(b"pump %d" % i),
                        alert_class="spoofing", severity=3, window_start_ms=60_000 * i, window_ms=60_000, count=1,
                        score_ppm=900_000, feature_digest=sha256(b"features %d" % i), model_version=0).to_payload()


def test_a_lying_validator_is_refused_and_an_honest_one_answers(testnet: Callable[..., Testnet]) -> None:
    net = testnet(4)
    net.wait_ready(60, min_height=1)
    doc = home_genesis(net.specs[0].home)
    assert doc is not None
    with ChainSession(net.specs[1].rpc_url, load_client_key("gateway", net.specs[1].home)) as session:
        hospital = reporter_name(session)
        committed_at = max(session.submit_commit(TX_KIND, _alert(hospital, i)).receipt.height for i in range(2))
    asyncio.run(_scenario(net, doc, committed_at, hospital))
    # the default path of fbci fl train / predict / ids watch: a session reads through the light client
    with ChainSession(net.specs[2].rpc_url, net.client_key(), genesis=doc) as session:
        assert session.model_version(session.read(FL_MODELS, FL_MODELS.params())[0].spec.id).version >= 0
        assert session.light().trusted_height >= committed_at
