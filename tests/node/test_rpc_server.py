"""JSON-RPC 2.0 conformance and behaviour of the RPC server against an in-process fake node."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from core.crypto import PrivateKey
from node.rpc.methods import build_methods
from node.app_reads import RPC_QUERIES
from node.rpc.server import DISPATCHER, RpcLimits, create_app, start_rpc_server
from tests.node.conftest import CHAIN_ID, SEPSIS, FakeNode

STATUS = {"jsonrpc": "2.0", "method": "status", "id": 1}


class CountingLimiter:
    """Allows ``budget`` calls per key, then refuses: a token bucket that never refills, for determinism."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used: dict[str, int] = {}

    def allow(self, key: str, now_ms: int) -> bool:
        self.used[key] = self.used.get(key, 0) + 1
        return self.used[key] <= self.budget


async def post(client: TestClient, payload: Any, *, raw: bytes | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    body = raw if raw is not None else json.dumps(payload).encode()
    resp = await client.post("/rpc", data=body, headers=headers or {"Content-Type": "application/json"})
    text = await resp.text()
    assert "Traceback" not in text
    return resp.status, (json.loads(text) if text else None)


def call(method: str, params: Any = None, rid: Any = 1) -> dict[str, Any]:
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        req["params"] = params
    return req


async def test_status_result_uses_hex(serve, fake_node):
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        status, body = await post(client, STATUS)
    assert status == 200 and body["id"] == 1 and "error" not in body
    assert body["result"]["latest_block_hash"] == "00" * 32
    assert body["result"]["chain_id"] == CHAIN_ID


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe\x00", b"[1,", b'{"a": NaN}', b"[" * 100_000 + b"]" * 100_000])
async def test_unparseable_body_is_parse_error(serve, fake_node, raw):
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        status, body = await post(client, None, raw=raw)
    assert status == 200
    assert body["error"]["code"] == -32700 and body["id"] is None


@pytest.mark.parametrize("request_obj, expected_id", [
    ({"jsonrpc": "1.0", "method": "status", "id": 7}, 7),
    ({"method": "status", "id": 7}, 7),
    ({"jsonrpc": "2.0", "method": 5, "id": "a"}, "a"),
    ({"jsonrpc": "2.0", "method": "status", "id": {"x": 1}}, None),
    ({"jsonrpc": "2.0", "method": "status", "id": True}, None),
    ({"jsonrpc": "2.0", "method": "status", "id": [1]}, None),
    ({"jsonrpc": "2.0", "method": "status", "params": "x", "id": 3}, 3),
    ({"jsonrpc": "2.0", "method": "status", "params": None, "id": 3}, 3),
    ({"jsonrpc": "2.0", "method": "status", "id": 3, "parms": {}}, 3),
    ("status", None),
    (1, None),
])
async def test_invalid_request_object(serve, fake_node, request_obj, expected_id):
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        status, body = await post(client, request_obj)
    assert status == 200
    assert body["error"]["code"] == -32600
    assert body["id"] == expected_id


async def test_unknown_method(serve, fake_node):
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        _, body = await post(client, call("eth_sendTransaction", [], rid="x"))
    assert body["error"]["code"] == -32601 and body["id"] == "x"


@pytest.mark.parametrize("method, params, param", [
    ("tx_submit", {}, "tx"),
    ("tx_submit", {"tx": 12}, "tx"),
    ("tx_submit", {"tx": "zz"}, "tx"),
    ("tx_submit", {"tx": "0x00"}, "tx"),
    ("tx_get", {"hash": "ab"}, "hash"),
    ("tx_get", ["ab" * 32, "extra"], "params"),
    ("block_get", {"height": -1}, "height"),
    ("block_get", {"height": "1"}, "height"),
    ("block_get", {"height": 1, "hash": "00" * 32}, "params"),
    ("fl_model_get", {"model_id": "sepsis", "verison": 1}, "verison"),
    ("tx_submit_commit", {"tx": "00", "timeout_s": 10_000}, "timeout_s"),
    ("alerts_query", {"limit": 0}, "limit"),
    ("alerts_query", {"from_height": 5, "to_height": 2}, "to_height"),
])
async def test_invalid_params_name_the_param(serve, fake_node, method, params, param):
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        _, body = await post(client, call(method, params))
    error = body["error"]
    assert error["code"] == -32602
    assert error["data"]["param"] == param
    assert f"'{param}'" in error["message"]


async def test_positional_and_named_params_are_equivalent(serve, fake_node):
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        _, by_name = await post(client, call("fl_model_get", {"model_id": "sepsis", "version": 1}))
        _, by_position = await post(client, call("fl_model_get", ["sepsis", 1]))
    assert by_name["result"] == by_position["result"]
    assert (by_name["result"]["model_id"], by_name["result"]["version"], by_name["result"]["weights"]) == ("sepsis", 1, "0001")


async def test_internal_error_hides_details(serve, fake_node):
    fake_node.genesis_error = RuntimeError("password in /etc/secret")
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        _, body = await post(client, call("genesis"))
        _, after = await post(client, STATUS)
    assert body["error"]["code"] == -32603
    assert "secret" not in json.dumps(body)
    assert "result" in after


async def test_batch_mixes_results_errors_and_notifications(serve, fake_node):
    batch = [call("status", rid=1), {"jsonrpc": "2.0", "method": "status"}, call("nope", rid=2), 42,
             call("tx_get", {"hash": "00" * 32}, rid=3)]
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        status, body = await post(client, batch)
    assert status == 200 and isinstance(body, list)
    by_id = {r["id"]: r for r in body}
    assert len(body) == 4
    assert "result" in by_id[1]
    assert by_id[2]["error"]["code"] == -32601
    assert by_id[3]["error"]["code"] == -32001 and by_id[3]["error"]["data"]["reason"] == "not_found"
    assert by_id[None]["error"]["code"] == -32600


async def test_notifications_run_but_get_no_answer(serve, fake_node, client_key, make_tx):
    tx = make_tx(client_key, 1)
    notification = {"jsonrpc": "2.0", "method": "tx_submit", "params": {"tx": tx.encode().hex()}}
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        single = await client.post("/rpc", json=notification)
        batch = await client.post("/rpc", json=[{"jsonrpc": "2.0", "method": "nope"},
                                                {"jsonrpc": "2.0", "method": "status"}])
        assert (single.status, await single.read()) == (204, b"")
        assert (batch.status, await batch.read()) == (204, b"")
    assert tx.hash in fake_node.mempool


async def test_empty_batch_is_one_invalid_request(serve, fake_node):
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        _, body = await post(client, [])
    assert isinstance(body, dict) and body["error"]["code"] == -32600 and body["id"] is None


async def test_too_long_batch_is_refused(serve, fake_node):
    async with serve(create_app(fake_node, RPC_QUERIES, limits=RpcLimits(max_batch=3))) as client:
        _, body = await post(client, [STATUS] * 4)
        _, ok = await post(client, [STATUS] * 3)
    assert body["error"]["code"] == -32005 and body["error"]["data"]["limit"] == 3
    assert len(ok) == 3


async def test_body_over_limit_is_413_with_json_error(serve, fake_node):
    limits = RpcLimits(max_body_bytes=1000)
    big = json.dumps(call("tx_submit", {"tx": "00" * 1000})).encode()

    async def chunked() -> Any:
        for i in range(0, len(big), 100):
            yield big[i:i + 100]

    async with serve(create_app(fake_node, RPC_QUERIES, limits=limits)) as client:
        status, body = await post(client, None, raw=big)
        streamed = await client.post("/rpc", data=chunked(), headers={"Content-Type": "application/json"})
        assert streamed.status == 413
        _, after = await post(client, STATUS)
    assert status == 413 and body["error"]["code"] == -32005
    assert "result" in after


async def test_wrong_http_method_and_content_type(serve, fake_node):
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        get = await client.get("/rpc")
        assert get.status == 405 and get.headers["Allow"] == "POST"
        assert (await get.json())["error"]["code"] == -32600
        status, body = await post(client, STATUS, headers={"Content-Type": "text/plain"})
    assert status == 415 and body["error"]["code"] == -32600


async def test_rate_limit_per_client_address(serve, fake_node):
    limiter, reports = CountingLimiter(3), []
    app = create_app(fake_node, RPC_QUERIES, limiter=limiter, on_misbehaviour=lambda kind, who: reports.append((kind, who)))
    async with serve(app) as client:
        codes = [(await post(client, STATUS))[1].get("error", {}).get("code") for _ in range(4)]
        other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=other) as session:
            resp = await session.post(client.make_url("/rpc"), json=STATUS)
            other_body = await resp.json()
    assert codes == [None, None, None, -32029]
    assert "result" in other_body
    assert reports == [("rpc_flood", "127.0.0.1")]


async def test_rate_limit_counts_each_batch_element(serve, fake_node):
    async with serve(create_app(fake_node, RPC_QUERIES, limiter=CountingLimiter(2))) as client:
        _, body = await post(client, [call("status", rid=i) for i in range(3)])
    assert [r.get("error", {}).get("code") for r in body] == [None, None, -32029]


async def test_rate_limit_per_signer(serve, fake_node, client_key, make_tx):
    other_key = PrivateKey(b"\x22" * 32)
    reports = []
    app = create_app(fake_node, RPC_QUERIES, signer_limiter=CountingLimiter(1),
                     on_misbehaviour=lambda kind, who: reports.append((kind, who)))
    async with serve(app) as client:
        _, first = await post(client, call("tx_submit", [make_tx(client_key, 1).encode().hex()]))
        _, second = await post(client, call("tx_submit", [make_tx(client_key, 2).encode().hex()]))
        _, other = await post(client, call("tx_submit", [make_tx(other_key, 1).encode().hex()]))
    assert "result" in first and "result" in other
    assert second["error"]["code"] == -32029 and second["error"]["data"]["scope"] == "signer"
    assert reports == [("tx_flood", client_key.public_key.hex())]


async def test_bad_signature_is_rejected_and_reported(serve, fake_node, client_key, make_tx):
    tx = make_tx(client_key, 1)
    forged = type(tx)(tx.chain_id, tx.sender, tx.nonce, tx.kind, tx.payload, bytes(64))
    reports = []
    app = create_app(fake_node, RPC_QUERIES, on_misbehaviour=lambda kind, who: reports.append((kind, who)))
    async with serve(app) as client:
        _, body = await post(client, call("tx_submit", {"tx": forged.encode().hex()}))
    assert body["error"]["code"] == -32010 and body["error"]["data"]["reason"] == "bad_signature"
    assert reports == [("bad_signature", "127.0.0.1")]


async def test_submit_commit_then_query_tx_and_block(serve, fake_node, client_key, make_tx):
    first, second = make_tx(client_key, 1), make_tx(client_key, 2)
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        _, admitted = await post(client, call("tx_submit", {"tx": first.encode().hex()}))
        _, committed = await post(client, call("tx_submit_commit", {"tx": second.encode().hex(), "timeout_s": 5}))
        _, tx = await post(client, call("tx_get", {"hash": second.hash.hex()}))
        _, latest = await post(client, call("block_get"))
        _, by_hash = await post(client, call("block_get", {"hash": latest["result"]["hash"]}))
        _, missing = await post(client, call("block_get", {"height": 99}))
        _, account = await post(client, call("account_get", [client_key.public_key.hex()]))
    assert admitted["result"] == {"hash": first.hash.hex()}
    assert committed["result"] == {"hash": second.hash.hex(), "height": 1, "index": 1,
                                   "receipt": {"height": 1, "index": 1, "ok": True, "code": 0, "reason": "ok",
                                               "message": "", "result": {}}}
    assert tx["result"]["sender"] == client_key.public_key.hex() and tx["result"]["tx"] == second.encode().hex()
    assert latest["result"]["txs"] == [first.hash.hex(), second.hash.hex()]
    assert by_hash["result"] == latest["result"]
    assert missing["error"]["code"] == -32001
    assert account["result"]["next_nonce"] == 3


async def test_alerts_query_pages_through_filters(serve, fake_node):
    seen: list[int] = []
    cursor = None
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        for _ in range(10):
            _, body = await post(client, call("alerts_query", {"alert_class": "spoofing", "limit": 5, "cursor": cursor}))
            seen += [a["alert_id"] for a in body["result"]["alerts"]]
            cursor = body["result"]["next_cursor"]
            if cursor is None:
                break
    assert seen == [a.alert_id for a in fake_node.alerts if a.alert_class == "spoofing"]


async def test_fl_methods(serve, fake_node):
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        _, models = await post(client, call("fl_models"))
        _, rounds = await post(client, call("fl_rounds", {"model_id": "sepsis"}))
        _, unknown = await post(client, call("fl_model_get", {"model_id": "nope"}))
    assert models["result"][0]["spec"]["id"] == "sepsis" and models["result"][0]["hash"] == SEPSIS.hash.hex()
    assert [r["round"] for r in rounds["result"]] == [1, 2]
    assert unknown["error"]["code"] == -32001


async def test_openrpc_lists_every_method_with_its_param_schema(serve, fake_node):
    app = create_app(fake_node, RPC_QUERIES)
    async with serve(app) as client:
        _, body = await post(client, call("rpc_discover"))
    doc = body["result"]
    methods = {m["name"]: m for m in doc["methods"]}
    registered = app[DISPATCHER].methods
    assert set(methods) == set(registered) == set(build_methods(fake_node, None, RPC_QUERIES, max_tx_bytes=1)) | {"rpc_discover"}
    for name, method in registered.items():
        schema = method.params.model_json_schema()
        params = methods[name]["params"]
        assert [p["name"] for p in params] == list(method.params.model_fields)
        for p in params:
            assert p["required"] == (p["name"] in schema.get("required", []))
            assert p["schema"]["title"] == schema["properties"][p["name"]]["title"]
    assert methods["tx_get"]["params"][0]["schema"]["contentEncoding"] == "base16"
    assert doc["components"]["errors"]["RateLimited"]["code"] == -32029


async def test_metrics_count_calls_by_method_and_code(serve, fake_node):
    registry = CollectorRegistry()
    async with serve(create_app(fake_node, RPC_QUERIES, metrics_registry=registry)) as client:
        await post(client, STATUS)
        await post(client, call("whatever"))
        resp = await client.get("/metrics")
        text = await resp.text()
    assert resp.status == 200
    assert registry.get_sample_value("fbci_rpc_requests_total", {"method": "status", "code": "0"}) == 1
    assert registry.get_sample_value("fbci_rpc_requests_total", {"method": "<unknown>", "code": "-32601"}) == 1
    assert 'fbci_rpc_requests_total{code="0",method="status"} 1.0' in text


# --- fuzzing: one server for all examples, in a loop the fixture owns ------------------------------------------

@pytest.fixture(scope="module")
def live_client() -> Iterator[tuple[asyncio.AbstractEventLoop, TestClient]]:
    loop = asyncio.new_event_loop()
    client = TestClient(TestServer(create_app(FakeNode(), RPC_QUERIES, limits=RpcLimits(max_body_bytes=64 * 1024))), loop=loop)
    loop.run_until_complete(client.start_server())
    yield loop, client
    loop.run_until_complete(client.close())
    loop.close()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_request_like = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
     "method": st.sampled_from(["status", "tx_submit", "block_get", "alerts_query", "subscribe", "x"]) | _json},
    optional={"id": _json, "params": _json},
)
_bodies = (st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode())
           | _request_like.map(lambda v: json.dumps(v).encode())
           | st.lists(_request_like, max_size=5).map(lambda v: json.dumps(v).encode()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_fuzzed_bodies_never_break_the_server(live_client, body):
    loop, client = live_client

    async def exchange() -> None:
        resp = await client.post("/rpc", data=body, headers={"Content-Type": "application/json"})
        text = await resp.text()
        assert resp.status in (200, 204), (resp.status, text)
        assert "Traceback" not in text
        if resp.status == 200:
            json.loads(text)
        status, answer = await post(client, STATUS)
        assert status == 200 and "result" in answer

    loop.run_until_complete(exchange())


# --- websocket ---------------------------------------------------------------------------------------------------

async def ws_call(ws: aiohttp.ClientWebSocketResponse, method: str, params: Any, rid: int) -> dict[str, Any]:
    await ws.send_json(call(method, params, rid))
    return await ws.receive_json()


async def test_subscribe_receives_pushed_blocks(serve, fake_node):
    async with serve(create_app(fake_node, RPC_QUERIES)) as client, client.ws_connect("/ws") as ws:
        sub = (await ws_call(ws, "subscribe", {"topic": "new_block"}, 1))["result"]
        fake_node.commit()
        fake_node.commit()
        first, second = await ws.receive_json(), await ws.receive_json()
        assert first["method"] == "subscription" and "id" not in first
        assert first["params"] == {"subscription": sub, "topic": "new_block",
                                   "result": {"height": 1, "hash": (1).to_bytes(32, "big").hex()}}
        assert second["params"]["result"]["height"] == 2
        assert (await ws_call(ws, "status", None, 2))["result"]["height"] == 2
        assert (await ws_call(ws, "unsubscribe", [sub], 3))["result"] is True
        assert fake_node.events.subscriber_count("new_block") == 0


async def test_subscribe_is_websocket_only_and_checks_topic(serve, fake_node):
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        _, over_http = await post(client, call("subscribe", {"topic": "new_block"}))
        async with client.ws_connect("/ws") as ws:
            bad_topic = await ws_call(ws, "subscribe", {"topic": "everything"}, 1)
    assert over_http["error"]["code"] == -32601
    assert bad_topic["error"]["code"] == -32602 and bad_topic["error"]["data"]["param"] == "topic"


async def test_slow_consumer_is_disconnected_without_blocking_others(serve, fake_node):
    limits = RpcLimits(ws_max_pending=4, max_body_bytes=4 << 20)
    payload = b"\x00" * (128 * 1024)
    async with serve(create_app(fake_node, RPC_QUERIES, limits=limits)) as client, \
            client.ws_connect("/ws") as slow, client.ws_connect("/ws", max_msg_size=1 << 22) as fast:
        await ws_call(slow, "subscribe", ["new_block"], 1)
        await ws_call(fast, "subscribe", ["new_block"], 1)
        delivered = 0
        while fake_node.events.subscriber_count("new_block") == 2:
            assert delivered < 2000, "the slow consumer was never cut off"
            fake_node.events.publish("new_block", {"n": delivered, "blob": payload})
            note = await fast.receive_json()
            assert note["params"]["result"]["n"] == delivered
            delivered += 1
        fake_node.events.publish("new_block", {"n": delivered, "blob": b""})
        assert (await fast.receive_json())["params"]["result"]["n"] == delivered
        while (msg := await slow.receive()).type is aiohttp.WSMsgType.TEXT:
            pass
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)


async def test_shutdown_closes_open_websockets(fake_node):
    runner = await start_rpc_server(create_app(fake_node, RPC_QUERIES), "127.0.0.1", 0)
    host, port = runner.addresses[0][:2]
    async with aiohttp.ClientSession() as session, session.ws_connect(f"http://{host}:{port}/ws") as ws:
        await ws_call(ws, "subscribe", ["new_alert"], 1)
        await runner.cleanup()
        msg = await ws.receive()
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.GOING_AWAY
    assert fake_node.events.subscriber_count("new_alert") == 0


async def test_answers_serialised_off_the_event_loop_are_the_same_bytes_of_json(serve) -> None:
    """With an ``offload`` executor a query's answer is encoded on it and spliced into the response: a client
    cannot tell, single or batched."""
    from concurrent.futures import ThreadPoolExecutor

    requests = [call("alerts_query", {"min_severity": 2, "limit": 5}), [call("status", rid=1),
                call("alerts_query", {"limit": 3}, rid=2), call("fl_rounds", {"model_id": "sepsis"}, rid=3)]]
    answers = []
    with ThreadPoolExecutor(1) as pool:
        for offload in (None, pool):
            async with serve(create_app(FakeNode(), RPC_QUERIES, offload=offload)) as client:
                answers.append([(await post(client, r))[1] for r in requests])
    assert answers[0] == answers[1] and answers[0][0]["result"]["alerts"]
    assert [a["id"] for a in answers[1][1]] == [1, 2, 3]
