"""Websocket subscriptions on a real validator: new blocks, and alerts committed through another validator."""

from __future__ import annotations

import asyncio

from core.crypto import PrivateKey
from core.hashing import sha256
from core.tx import Transaction
from genesis.home import HomePaths
from genesis.schema import load_genesis
from ids.alerts import SEVERITY_HIGH, TX_KIND, AlertPayload
from client.rpc import RpcClient


def test_an_alert_committed_via_one_validator_is_pushed_by_another(testnet) -> None:
    net = testnet(2)
    net.wait_ready(60, min_height=1)
    home = HomePaths(net.specs[0].home)
    gateway = PrivateKey.load(home.client_key("gateway"))
    chain_id = load_genesis(home.genesis).chain_id
    alert = AlertPayload(hospital="gateway0", subject_kind="device", subject=sha256(b"pump-7"),
                         alert_class="spoofing", severity=SEVERITY_HIGH, window_start_ms=0, window_ms=60_000,
                         count=1, score_ppm=950_000, feature_digest=sha256(b"features"), model_version=0)

    async def scenario() -> tuple[dict, dict, int]:
        async with RpcClient(net.specs[1].rpc_url, reader=gateway) as watcher, \
                RpcClient(net.specs[0].rpc_url) as submitter:  # new_alert pushes are as private as alerts_query
            async with watcher.subscribe("new_alert") as alerts, watcher.subscribe("new_block") as blocks:
                nonce = (await submitter.account_get(gateway.public_key.raw)).next_nonce
                tx = Transaction.create(gateway, chain_id, nonce, TX_KIND, alert.to_payload())
                committed = await submitter.submit_tx_commit(tx, 30)
                pushed = await asyncio.wait_for(anext(alerts), 30)
                block = await asyncio.wait_for(anext(blocks), 30)
        return pushed, block, committed.height

    pushed, block, height = asyncio.run(scenario())
    assert pushed["alert_class"] == "spoofing" and pushed["subject"] == sha256(b"pump-7").hex()
    assert pushed["height"] == height and pushed["sender"] == gateway.public_key.hex()
    assert block["height"] >= 1 and len(block["hash"]) == 64
