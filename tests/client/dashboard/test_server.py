"""The dashboard's HTTP API and live websocket on an in-memory chain (real contracts, no processes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from aiohttp.test_utils import TestClient, TestServer

from core.crypto import PrivateKey
from core.tx import Transaction
from client.dashboard.server import Dashboard, build_app
from client.dashboard.ward import GeneratedFeed
from tests.client.dashboard.helpers import alert_payload
from tests.client.dashboard.memory_source import CHAIN_ID, MemorySource

WAIT_S = 5.0


class Chain:
    """The memory chain with a gateway and a hospital (the dashboard's signer)."""

    def __init__(self) -> None:
        self.source = MemorySource()
        self.gateway = self.source.add_account("gateway0", {"gateway"})
        self.hospital = self.source.add_account("hospital0", {"hospital"})

    def post_alert(self, **kwargs: Any) -> int:
        nonce = self.source.nonces.get(self.gateway.public_key.raw, 0) + 1
        tx = Transaction.create(self.gateway, CHAIN_ID, nonce, "ids.alert", alert_payload("gateway0", **kwargs))
        return int(self.source.commit([tx])[0].result["alert_id"])


@asynccontextmanager
async def dashboard(chain: Chain, signer: PrivateKey | None = None) -> AsyncIterator[TestClient]:
    feed = GeneratedFeed(3, 0, step_s=3600)
    d = Dashboard(chain.source, [chain.source], feed, signer, None, history=50)
    async with TestClient(TestServer(build_app(d))) as client:
        yield client


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


async def _json(client: TestClient, path: str, status: int = 200, **kwargs: Any) -> Any:
    method = kwargs.pop("method", "GET")
    resp = await client.request(method, path, **kwargs)
    assert resp.status == status, await resp.text()
    return await resp.json()


def test_pages_assets_and_plotly_are_served_locally() -> None:
    async def go() -> None:
        async with dashboard(Chain()) as client:
            for page in ("patients", "alerts", "models", "network", "audit", "patients/bed-01"):
                resp = await client.get(f"/{page}")
                html = await resp.text()
                assert resp.status == 200 and "/static/dashboard.js" in html
                assert "http://" not in html and "https://" not in html  # nothing from the internet
            js = await client.get("/static/plotly.min.js")
            assert js.status == 200 and len(await js.read()) > 1_000_000
            assert (await client.get("/nowhere")).status == 404
    run(go)


def test_ward_is_sorted_by_escalation_then_score() -> None:
    async def go() -> None:
        async with dashboard(Chain()) as client:
            ward = await _json(client, "/api/patients")
            assert ward["model_version"] == 0 and 0 < ward["threshold"] < 1
            order = [("emergency", "urgent", "ward").index(p["response"]) for p in ward["patients"]]
            assert order == sorted(order)
            for p in ward["patients"]:
                assert p["alarm"] == (p["probability"] >= ward["threshold"])
                assert sum(p["parameter_points"].values()) == p["news2"]
            trend = (await _json(client, "/api/patients/bed-01"))["trend"]
            assert len(trend["scores"]) == len(trend["times_h"]) - 7
            err = await _json(client, "/api/patients/bed-99", status=404)
            assert err["error"]["data"]["reason"] == "not_found"
    run(go)


def test_alert_reaches_the_websocket_and_an_ack_is_a_signed_transaction() -> None:
    chain = Chain()
    first = chain.post_alert(alert_class="flooding")

    async def go() -> None:
        async with dashboard(chain, chain.hospital) as client:
            rows = (await _json(client, "/api/alerts"))["rows"]
            assert [r["alert_id"] for r in rows] == [first] and rows[0]["ack"] is None
            ws = await client.ws_connect("/ws")
            second = chain.post_alert(alert_class="spoofing", severity=4)

            async def next_of(kind: str) -> dict[str, Any]:
                while (event := json.loads((await ws.receive()).data))["type"] != kind:
                    pass
                return event

            pushed = await asyncio.wait_for(next_of("alert"), WAIT_S)
            assert pushed["alert"]["alert_id"] == second and pushed["alert"]["severity"] == 4
            only = (await _json(client, "/api/alerts?class=spoofing"))["rows"]
            assert [r["alert_id"] for r in only] == [second]

            acked = await _json(client, f"/api/alerts/{second}/ack", method="POST", json={})
            tx = chain.source.txs[bytes.fromhex(acked["tx_hash"])]
            assert tx.kind == "ids.ack_alert" and tx.sender == chain.hospital.public_key.raw
            assert tx.transaction().verify_signature()
            assert (await asyncio.wait_for(next_of("ack"), WAIT_S))["alert_id"] == second
            row = next(r for r in (await _json(client, "/api/alerts"))["rows"] if r["alert_id"] == second)
            assert row["ack"]["by"] == "hospital0"
            again = await _json(client, f"/api/alerts/{second}/ack", method="POST", json={}, status=400)
            assert "already acknowledged" in again["error"]["message"]
            audit = await _json(client, "/api/audit?kind=ids.ack_alert")
            assert [t["actor"] for t in audit["rows"]] == ["hospital0", "hospital0"]
            assert [t["ok"] for t in audit["rows"]] == [False, True]  # newest first: the refused second
            await ws.close()
    run(go)


def test_ack_refuses_other_origins_non_json_and_a_read_only_dashboard() -> None:
    chain = Chain()
    alert_id = chain.post_alert()

    async def go() -> None:
        async with dashboard(chain, chain.hospital) as client:
            err = await _json(client, f"/api/alerts/{alert_id}/ack", method="POST", json={},
                              headers={"Origin": "http://evil.example"}, status=403)
            assert err["error"]["data"]["reason"] == "unauthorized"
            err = await _json(client, f"/api/alerts/{alert_id}/ack", method="POST", data="alert_id=1", status=400,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert "application/json" in err["error"]["message"]
            await _json(client, "/api/alerts/x/ack", method="POST", json={}, status=400)
            err = await _json(client, "/api/alerts/0/ack", method="POST", json={}, status=400)
            assert "start at 1" in err["error"]["message"]
        async with dashboard(chain) as client:
            err = await _json(client, f"/api/alerts/{alert_id}/ack", method="POST", json={}, status=403)
            assert "no signing key" in err["error"]["message"]
        assert not any(t.kind == "ids.ack_alert" for t in chain.source.txs.values())
    run(go)


def test_bad_filters_are_clear_errors() -> None:
    async def go() -> None:
        async with dashboard(Chain()) as client:
            for query, words in (("class=mischief", "class must be one of"), ("severity=9", "severity"),
                                 ("device=abc", "device"), ("since_ms=soon", "since_ms")):
                err = await _json(client, f"/api/alerts?{query}", status=400)
                assert words in err["error"]["message"] and err["error"]["code"] == -32602
    run(go)


def test_network_and_models_pages_read_certificates_metrics_and_rounds() -> None:
    chain = Chain()
    chain.post_alert()

    async def go() -> None:
        async with dashboard(chain) as client:
            net = await _json(client, "/api/network")
            assert net["validators"][0]["view_changes"] == 2.0 and net["validators"][0]["reachable"]
            assert net["missing_signatures"] == {"node3": 1}
            assert net["recent_blocks"][0]["signers"] == ["node0", "node1", "node2"]
            models = {m["id"]: m for m in (await _json(client, "/api/models"))["models"]}
            assert models["deterioration"]["rounds"][0]["status"] == "open"
            points = models["deterioration"]["evaluation"]
            assert [p["version"] for p in points] == [0] and points[0]["windows"] > 0
            assert models["iomt_ids"]["evaluation"] == [] and "no evaluation" in models["iomt_ids"]["evaluation_note"]
    run(go)
    assert chain.source.closed  # the app's cleanup closed its source


def test_ward_threshold_matches_the_news2_alarm_rate() -> None:
    from client.dashboard.views import ModelCache

    chain = Chain()
    feed = GeneratedFeed(6, 3, step_s=3600)

    async def go() -> None:
        d = Dashboard(chain.source, [chain.source], feed, None, None)
        threshold, _ = await d.ward_threshold(0)
        model, _ = await ModelCache(chain.source).deterioration(0)
        from client.dashboard.ward import score_windows
        from ids.vitals import news2_scores

        scores = np.concatenate([score_windows(model, p.obs) for p in feed.patients()])
        news2 = np.concatenate([news2_scores(p.obs[7:]) for p in feed.patients()])
        assert abs((scores >= threshold).mean() - (news2 >= 3).mean()) <= 2 / len(scores)
    run(go)


def test_a_browser_that_stops_reading_is_cut_off_not_waited_for() -> None:
    from client.dashboard.server import CLIENT_QUEUE

    class Socket:
        closed = 0

        async def close(self) -> None:
            Socket.closed += 1

    async def go() -> None:
        d = Dashboard(Chain().source, [], GeneratedFeed(1, 0), None, None)
        slow: asyncio.Queue[str] = asyncio.Queue(CLIENT_QUEUE)
        d.clients[slow] = Socket()  # type: ignore[assignment]
        for height in range(CLIENT_QUEUE + 1):
            d.publish({"type": "block", "height": height})
        await asyncio.gather(*d.closing)
        assert d.clients == {} and Socket.closed == 1 and slow.qsize() == CLIENT_QUEUE
    run(go)


def test_evidence_on_chain_names_the_convicted_validator() -> None:
    chain = Chain()
    source = chain.source
    accused = source.validator_keys[2].public_key.raw
    source.handlers["consensus.evidence"] = lambda state, ctx, payload: {  # the node's handler checks the proof
        "validator": accused, "height": 3, "digest": b"\0" * 32}
    reporter = source.validator_keys[1]
    source.commit([Transaction.create(reporter, CHAIN_ID, 1, "consensus.evidence", {"evidence": b"proof"})])

    async def go() -> None:
        async with dashboard(chain) as client:
            [row] = (await _json(client, "/api/network"))["evidence"]
            assert row["actor"] == "node1" and row["detail"] == "convicted node2 of equivocating at height 3"
            [audited] = (await _json(client, "/api/audit?actor=node1"))["rows"]
            assert audited["detail"] == row["detail"]
    run(go)
