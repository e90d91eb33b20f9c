"""The RPC client against the real server and a fake node: typed results, errors as classes, subscriptions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from core.crypto import PrivateKey
from core.errors import ALL_ERRORS, RPC_ERRORS, MethodNotFound, BadNonce, FbciError, InvalidInput, LimitExceeded, NotFound, RateLimited
from core.tx import Transaction
from fl_contracts.queries import FL_MODELS
from node.app_reads import RPC_QUERIES
from node.rpc.server import RpcLimits, create_app, start_rpc_server
from client.rpc import NonceTracker, RpcClient, SyncRpcClient, error_from_json
from tests.node.conftest import CHAIN_ID, SEPSIS, FakeNode


def base_url(test_client) -> str:
    return str(test_client.make_url("")).rstrip("/")


@pytest.mark.parametrize("cls", [*ALL_ERRORS, *RPC_ERRORS])
def test_every_error_class_survives_the_wire(cls):
    error = error_from_json(cls("what went wrong", data={"height": 3}).to_json())
    assert type(error) is cls
    assert (error.message, error.data) == ("what went wrong", {"height": 3})


def test_error_without_reason_falls_back_to_code():
    assert type(error_from_json({"code": -32602, "message": "x"})) is InvalidInput
    assert type(error_from_json({"code": -32029, "message": "x"})) is RateLimited
    assert type(error_from_json({"code": -32077, "message": "x"})) is FbciError


async def test_typed_methods_round_trip(serve, fake_node, client_key, make_tx):
    async with serve(create_app(fake_node, RPC_QUERIES)) as server, RpcClient(base_url(server)) as node:
        assert (await node.status()).latest_block_hash == bytes(32)
        first = make_tx(client_key, 1)
        assert await node.submit_tx(first) == first.hash
        committed = await node.submit_tx_commit(make_tx(client_key, 2), timeout_s=5)
        assert (committed.height, committed.index) == (1, 1)
        answered = await node.get_tx(first.hash)
        assert answered == fake_node.txs[first.hash] and answered.transaction() == first  # bytes intact
        assert await node.get_block(height=1) == fake_node.blocks[0]
        assert (await node.get_block(block_hash=(1).to_bytes(32, "big"))).height == 1
        account = await node.account_get(client_key.public_key.raw)
        assert (account.public_key, account.roles, account.next_nonce) == (client_key.public_key.raw,
                                                                           ("hospital",), 3)
        page = await node.alerts_query(alert_class="flooding", limit=3)
        assert [a.alert_id for a in page.alerts] == [2, 4, 6] and page.next_cursor is not None
        assert page.alerts[0] == fake_node.alerts[1]  # subject, digest, sender, tx hash: bytes again
        assert (await node.fl_model_get("sepsis", 1)).weights == b"\x00\x01"
        rounds = await node.fl_rounds("sepsis")
        assert [(r.round, r.status) for r in rounds] == [(1, "aggregated"), (2, "open")]
        (model,) = await node.fl_models()
        assert model.spec == SEPSIS and model.hash == SEPSIS.hash
        genesis = await node.genesis()
        assert genesis.genesis.chain_id == CHAIN_ID and genesis.hash == genesis.genesis.hash().hex()
        assert "methods" in await node.discover()


async def test_errors_raise_their_classes(serve, fake_node, client_key, make_tx):
    async with serve(create_app(fake_node, RPC_QUERIES, limits=RpcLimits(max_body_bytes=2000))) as server, \
            RpcClient(base_url(server)) as node:
        with pytest.raises(NotFound):
            await node.get_tx(bytes(32))
        with pytest.raises(BadNonce) as bad_nonce:
            await node.submit_tx(make_tx(client_key, 5))
        assert bad_nonce.value.data == {"expected": 1}
        with pytest.raises(MethodNotFound):
            await node.call("no_such_method")
        with pytest.raises(LimitExceeded):
            await node.call("tx_submit", {"tx": "00" * 2000})


async def test_batch_returns_results_and_errors_in_order(serve, fake_node):
    async with serve(create_app(fake_node, RPC_QUERIES, limits=RpcLimits(max_batch=3))) as server, \
            RpcClient(base_url(server)) as node:
        status, missing, models = await node.batch([("status", None), ("tx_get", [bytes(32).hex()]),
                                                    ("fl_models", [])])
        assert status["height"] == 0
        assert isinstance(missing, NotFound)
        assert FL_MODELS.parse(models)[0].spec.id == "sepsis"
        with pytest.raises(LimitExceeded):
            await node.batch([("status", None)] * 4)


async def test_subscribe_yields_events(serve, fake_node):
    async with serve(create_app(fake_node, RPC_QUERIES)) as server, RpcClient(base_url(server)) as node:
        async with node.subscribe("new_block") as events:
            fake_node.commit()
            event = await anext(aiter(events))
        assert event == {"height": 1, "hash": (1).to_bytes(32, "big").hex()}
        with pytest.raises(InvalidInput):
            async with node.subscribe("gossip"):
                pass


async def test_nonce_tracker_counts_up_and_refetches_after_forget(serve, fake_node, client_key, make_tx):
    async with serve(create_app(fake_node, RPC_QUERIES)) as server, RpcClient(base_url(server)) as node:
        tracker = NonceTracker(node, client_key.public_key.raw)
        for _ in range(3):
            await node.submit_tx(make_tx(client_key, await tracker.next()))
        stale = NonceTracker(node, client_key.public_key.raw)
        other = Transaction.create(client_key, CHAIN_ID, 4, "ids.alert", {"by": "another process"})
        await fake_node.submit_tx(other.encode())
        await node.submit_tx(make_tx(client_key, await stale.next()))
        with pytest.raises(BadNonce):
            await node.submit_tx(make_tx(client_key, await tracker.next()))
        tracker.forget()
        assert await tracker.next() == 6


@pytest.fixture
def threaded_server() -> Iterator[tuple[str, FakeNode]]:
    """A server on its own thread and loop, so a blocking client can call it from this one."""
    fake, loop, ready = FakeNode(), asyncio.new_event_loop(), threading.Event()
    holder: dict[str, object] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        holder["runner"] = loop.run_until_complete(start_rpc_server(create_app(fake, RPC_QUERIES), "127.0.0.1", 0))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    runner = holder["runner"]
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}", fake
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)
    loop.close()


def test_sync_client_for_clis(threaded_server, client_key, make_tx):
    url, fake = threaded_server
    client = SyncRpcClient(url + "/rpc")
    assert client.status().chain_id == CHAIN_ID
    assert client.account_get(client_key.public_key.raw).next_nonce == 1
    tx = make_tx(client_key, 1)
    assert client.submit_tx(tx) == tx.hash
    assert client.submit_tx_commit(make_tx(client_key, 2)).height == 1
    with pytest.raises(NotFound):
        client.call("tx_get", [PrivateKey(b"\x05" * 32).public_key.hex()])
