"""JSON-RPC 2.0 conformance of a real validator process, over raw HTTP.

Every bad request gets the error object the README promises (stable code and
``data.reason``, the offending param named), over the status the server
documents, with no traceback anywhere in the body; and the node keeps serving
and committing afterwards (DESIGN rule 7). One validator serves the whole
module; the rate-limit flood comes from its own loopback address (127.0.0.3)
so it does not throttle the other tests, which call from 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from core.blobs import CHUNK_BYTES
from core.crypto import PrivateKey
from core.readauth import sign_read
from core.tx import Transaction
from genesis.home import HomePaths
from genesis.schema import load_genesis
from node.runtime import JSON_ENVELOPE_BYTES
from devnet.testnet import Testnet
from tests.integration.load import PROGRESS_S, READY_S, heights, wait_heights
from tests.ports import free_base_port

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Node:
    net: Testnet
    host: str
    port: int
    chain_id: str
    key: PrivateKey  # a registered hospital key; only test_a_replayed_nonce_is_refused uses its nonces
    max_tx_bytes: int


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        reply = self.json
        assert isinstance(reply, dict) and "error" in reply, f"not an error reply: {self.body[:300]!r}"
        assert reply["jsonrpc"] == "2.0" and "result" not in reply
        return reply["error"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    net = Testnet.create(1, tmp_path_factory.mktemp("rpc") / "net", free_base_port(4))
    net.start()
    try:
        net.wait_ready(READY_S, min_height=1)
        host, port = net.specs[0].rpc_url.split("//", 1)[1].rsplit(":", 1)
        key = PrivateKey.load(HomePaths(net.specs[0].home).client_key("hospital"))
        genesis = load_genesis(HomePaths(net.specs[0].home).genesis)
        yield Node(net, host, int(port), genesis.chain_id, key, genesis.params.max_tx_bytes)
    finally:
        net.stop_all()


def post(node: Node, body: bytes, *, source: str = "127.0.0.1", content_type: str = "application/json") -> Answer:
    """One HTTP POST /rpc from ``source``; asserts no traceback leaked into the answer."""
    conn = http.client.HTTPConnection(node.host, node.port, timeout=30, source_address=(source, 0))
    try:
        conn.request("POST", "/rpc", body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        answer = Answer(response.status, response.read())
    finally:
        conn.close()
    assert b"Traceback" not in answer.body and b'File "' not in answer.body, answer.body[:500]
    return answer


def call(node: Node, method: str, params: Any = None, *, source: str = "127.0.0.1", rid: Any = 1) -> Answer:
    request: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        request["params"] = params
    return post(node, json.dumps(request).encode(), source=source)


def assert_error(answer: Answer, code: int, reason: str, *, status: int = 200, rid: Any = 1) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body[:300])
    error = answer.error
    assert error["code"] == code, error
    assert error["data"]["reason"] == reason, error
    assert isinstance(error["message"], str) and error["message"], error
    assert answer.json["id"] == rid
    return error


def assert_serving(node: Node, source: str = "127.0.0.1") -> int:
    answer = call(node, "status", source=source)
    assert answer.status == 200 and "result" in answer.json, answer.body[:300]
    return int(answer.json["result"]["height"])


@pytest.fixture(autouse=True)
def still_serving_afterwards(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "node" in request.fixturenames:
        assert_serving(request.getfixturevalue("node"))


def tx_hex(tx: Transaction) -> str:
    return tx.encode().hex()


# -- envelope errors ---------------------------------------------------------------------------


def test_malformed_json_is_a_parse_error_with_null_id(node: Node) -> None:
    error = assert_error(post(node, b'{"jsonrpc": "2.0", "method": "status", "id": 1'), -32700, "parse_error",
                         rid=None)
    assert "JSON" in error["message"]


@pytest.mark.parametrize("request_obj, why", [
    ({"jsonrpc": "1.0", "method": "status", "id": 1}, "'jsonrpc'"),
    ({"jsonrpc": "2.0", "method": 7, "id": 1}, "'method'"),
    ({"jsonrpc": "2.0", "method": "status", "params": "height", "id": 1}, "'params'"),
    ({"jsonrpc": "2.0", "method": "status", "id": 1, "extra": True}, "'extra'"),
])
def test_a_request_that_is_not_json_rpc_is_an_invalid_request(node: Node, request_obj: dict[str, Any],
                                                               why: str) -> None:
    error = assert_error(post(node, json.dumps(request_obj).encode()), -32600, "invalid_request")
    assert why in error["message"]


def test_an_empty_batch_and_a_non_object_are_invalid_requests(node: Node) -> None:
    assert_error(post(node, b"[]"), -32600, "invalid_request", rid=None)
    answer = post(node, b"[1]")
    assert answer.status == 200
    (only,) = answer.json
    assert only["error"]["code"] == -32600 and only["error"]["data"]["reason"] == "invalid_request"


def test_an_unknown_method_is_method_not_found(node: Node) -> None:
    error = assert_error(call(node, "eth_sendRawTransaction", []), -32601, "method_not_found")
    assert "eth_sendRawTransaction" in error["message"]


@pytest.mark.parametrize("method, params, param", [
    ("block_get", {"height": "ten"}, "height"),
    ("block_get", {"height": -1}, "height"),
    ("tx_get", {"hash": 5}, "hash"),
    ("tx_get", {"hash": "zz" * 32}, "hash"),
    ("account_get", {"public_key": "ab"}, "public_key"),
    ("tx_submit", {"tx": ["not", "hex"]}, "tx"),
    ("tx_submit_commit", {"tx": "00", "timeout_s": "soon"}, "timeout_s"),
    ("alerts_query", {"limit": 0}, "limit"),
    ("status", {"verbose": True}, "verbose"),
])
def test_wrong_param_types_are_invalid_params_naming_the_param(node: Node, method: str, params: dict[str, Any],
                                                               param: str) -> None:
    error = assert_error(call(node, method, params), -32602, "invalid_input")
    assert error["data"]["param"] == param
    assert f"'{param}'" in error["message"]


def test_a_body_over_the_limit_is_refused_with_413(node: Node) -> None:
    limit = 2 * max(node.max_tx_bytes, CHUNK_BYTES) + JSON_ENVELOPE_BYTES  # the largest transaction or blob chunk
    huge = b'{"jsonrpc": "2.0", "method": "status", "id": 1, "params": {"pad": "' + b"x" * limit + b'"}}'
    error = assert_error(post(node, huge), -32005, "limit_exceeded", status=413, rid=None)
    assert error["data"]["limit"] == limit


def test_a_transaction_as_large_as_genesis_allows_gets_through_the_rpc_edge(node: Node) -> None:
    """Genesis' max_tx_bytes (1 MiB, sized for model deltas) is what the RPC edge admits too."""
    gateway = PrivateKey.load(HomePaths(node.net.specs[0].home).client_key("gateway"))
    padding = node.max_tx_bytes - len(_echo(node, gateway, 1).encode()) - 16
    tx = Transaction.create(gateway, node.chain_id, 1, "test.echo", {"msg": b"x" * padding})
    assert node.max_tx_bytes - 32 < len(tx.encode()) <= node.max_tx_bytes
    accepted = call(node, "tx_submit", {"tx": tx_hex(tx)})
    assert accepted.status == 200 and accepted.json["result"]["hash"] == tx.hash.hex(), accepted.body[:300]


def test_a_transaction_over_the_genesis_limit_is_too_large(node: Node) -> None:
    gateway = PrivateKey.load(HomePaths(node.net.specs[0].home).client_key("gateway"))
    tx = Transaction.create(gateway, node.chain_id, 1, "test.echo", {"msg": b"x" * node.max_tx_bytes})
    error = assert_error(call(node, "tx_submit", {"tx": tx_hex(tx)}), -32013, "too_large")
    assert str(node.max_tx_bytes) in error["message"]


def test_a_batch_over_the_limit_is_refused_as_a_whole(node: Node) -> None:
    batch = [{"jsonrpc": "2.0", "method": "status", "id": i} for i in range(101)]
    error = assert_error(post(node, json.dumps(batch).encode()), -32005, "limit_exceeded", rid=None)
    assert error["data"]["limit"] == 100
    within = post(node, json.dumps(batch[:100]).encode())
    assert within.status == 200 and [r["id"] for r in within.json] == list(range(100))
    assert all("result" in r for r in within.json)


# -- transactions the node refuses ---------------------------------------------------------------


def _echo(node: Node, key: PrivateKey, nonce: int, *, chain_id: str | None = None, kind: str = "test.echo"
          ) -> Transaction:
    return Transaction.create(key, chain_id or node.chain_id, nonce, kind, {"msg": b"conformance"})


def test_a_bad_signature_is_refused(node: Node) -> None:
    tx = _echo(node, PrivateKey.generate(), 1)
    forged = Transaction(tx.chain_id, node.key.public_key.raw, 1, tx.kind, tx.payload, tx.signature)
    assert_error(call(node, "tx_submit", {"tx": tx_hex(forged)}), -32010, "bad_signature")


def test_a_replayed_nonce_is_refused(node: Node) -> None:
    nonce = call(node, "account_get", {"public_key": node.key.public_key.raw.hex()}).json["result"]["next_nonce"]
    tx = _echo(node, node.key, nonce)
    committed = call(node, "tx_submit_commit", {"tx": tx_hex(tx), "timeout_s": 30})
    assert committed.json["result"]["receipt"]["ok"] is True, committed.body[:300]
    assert_error(call(node, "tx_submit", {"tx": tx_hex(tx)}), -32011, "bad_nonce")
    other = Transaction.create(node.key, node.chain_id, nonce, "test.echo", {"msg": b"same nonce, other body"})
    assert_error(call(node, "tx_submit", {"tx": tx_hex(other)}), -32011, "bad_nonce")


def test_a_transaction_for_another_chain_is_refused(node: Node) -> None:
    tx = _echo(node, node.key, 1, chain_id="some-other-chain")
    error = assert_error(call(node, "tx_submit", {"tx": tx_hex(tx)}), -32014, "wrong_chain")
    assert "some-other-chain" in error["message"]


def test_an_unregistered_sender_is_refused(node: Node) -> None:
    stranger = PrivateKey.generate()
    error = assert_error(call(node, "tx_submit", {"tx": tx_hex(_echo(node, stranger, 1))}), -32012, "unauthorized")
    assert stranger.public_key.raw.hex() in error["message"]


def test_an_unknown_kind_is_refused(node: Node) -> None:
    tx = _echo(node, node.key, 1, kind="test.nope")
    error = assert_error(call(node, "tx_submit", {"tx": tx_hex(tx)}), -32015, "unknown_kind")
    assert "test.nope" in error["message"]


def test_garbage_instead_of_a_transaction_is_invalid_input(node: Node) -> None:
    assert_error(call(node, "tx_submit", {"tx": "c0ffee"}), -32602, "non_canonical_encoding")


# -- lookups of things that do not exist --------------------------------------------------------


def test_tx_get_of_an_unknown_hash_is_not_found(node: Node) -> None:
    """``tx_get`` is a private read: signed, it answers not found; unsigned, it is refused before the lookup."""
    params = {"hash": "00" * 32}
    auth = sign_read(node.key, node.chain_id, "tx_get", params, time.time_ns() // 1_000_000)
    assert_error(call(node, "tx_get", {**params, "auth": auth.model_dump(mode="json")}), -32001, "not_found")
    assert_error(call(node, "tx_get", params), -32141, "auth_required")


def test_block_get_beyond_the_head_is_not_found(node: Node) -> None:
    error = assert_error(call(node, "block_get", {"height": 10**9}), -32001, "not_found")
    assert str(10**9) in error["message"]
    latest = call(node, "block_get", {}).json["result"]
    assert latest["height"] >= 1 and len(latest["commit_certificate"]["signatures"]) == 1


# -- load from one client must not starve another ------------------------------------------------


def test_a_flooding_client_is_rate_limited_while_another_address_is_served(node: Node) -> None:
    flood = json.dumps([{"jsonrpc": "2.0", "method": "status", "id": i} for i in range(100)]).encode()

    def errors(answer: Answer) -> list[dict[str, Any]]:
        """The error objects in a batch answer (a batch refused as a whole is one error object)."""
        replies = answer.json if isinstance(answer.json, list) else [answer.json]
        return [r["error"] for r in replies if "error" in r]

    limited = [e for _ in range(10) for e in errors(post(node, flood, source="127.0.0.3"))]  # 1,000 vs a burst of 400
    assert limited, "1,000 calls in a burst were never rate limited"
    assert all(e["code"] == -32029 and e["data"]["reason"] == "rate_limited" for e in limited), limited[:3]
    assert errors(post(node, flood, source="127.0.0.3")), "the flooding client is served again at once"
    assert_serving(node, source="127.0.0.2")
    assert_serving(node, source="127.0.0.1")


def test_the_node_still_commits_blocks_after_every_bad_request(node: Node) -> None:
    wait_heights(node.net, heights(node.net)[0] + 2, PROGRESS_S)
