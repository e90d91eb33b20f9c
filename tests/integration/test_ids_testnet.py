"""The IDS on the real chain: federated training, gateway alerts on every validator, and an RPC flood.

(a) Four hospitals train ``iomt_ids`` for a few rounds over JSON-RPC; a
gateway then scores generated attack traffic with the committed model
(``client.ids_watch.watch``) and its alerts must be committed, identical on
every validator (``alerts_query`` on each) and bounded by the per-device,
class and window dedup. (b) One client floods a validator's RPC until it is
rate limited (-32029); an honest client from another loopback address
(127.0.0.2) is still served, and the validator's self-defence
``request_flood`` alert about the flooding address lands on chain, visible
on every validator.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np

from core.errors import RateLimited
from ids.flows import HOSPITAL_PROFILES, generate_flows
from ids.selfdefence import address_subject
from client.session import ChainSession, load_client_key
from client.fl.train import local_data, train_rounds
from client.ids_watch import reporter_name, watch, with_attack_rate
from client.rpc import RpcClient
from devnet.testnet import Testnet

IDS_ROUNDS = 12


def all_alerts(net: Testnet, i: int, **query: object) -> list[dict]:
    with ChainSession(net.specs[i].rpc_url, net.client_key(), local_addr="127.0.0.2") as session:
        return session.call("alerts_query", {**query, "limit": 500})["alerts"]


def test_gateway_alerts_from_the_chain_trained_ids_are_on_every_validator(testnet: Callable[..., Testnet]) -> None:
    net = testnet(4)
    net.wait_ready(60, min_height=1)
    errors: list[BaseException] = []

    def hospital(i: int) -> None:
        try:
            x, y = local_data("iomt", i, 4, seed=0, samples=1500)
            train_rounds(net.specs[i].rpc_url, load_client_key("hospital", net.specs[i].home), "iomt_ids", x, y,
                         IDS_ROUNDS, epochs=2, lr=0.2, batch_size=64, seed=i, round_timeout_s=90.0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hospital, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors

    profile = with_attack_rate(HOSPITAL_PROFILES[4], 0.5)  # a hospital none of the four trained on
    records = generate_flows(profile, 1500, np.random.default_rng(11))
    attacks = sum(r.label != "normal" for r in records)
    gateway_key = load_client_key("gateway", net.specs[1].home)
    with ChainSession(net.specs[1].rpc_url, gateway_key) as session:
        summary = watch(session, records)
        reporter = reporter_name(session)
        final = session.call("status")["height"]
    print("ids watch:", summary.model_version, summary.by_class, summary.committed, "of", attacks, "attack records")
    assert summary.model_version == IDS_ROUNDS  # scored with the chain's model, not the rules
    assert summary.committed == summary.submitted == summary.alerts > 0 and not summary.rejected
    # dedup: one alert per device, class and 60 s window, far fewer than the attack records
    devices, windows = profile.n_devices, 1 + (records[-1].ts_ms - records[0].ts_ms) // 60_000 + 1
    assert summary.alerts <= min(attacks / 5, devices * 5 * windows)
    for i in range(4):
        net.wait_ready(30, nodes=[i], min_height=final)
    views = [all_alerts(net, i, hospital=reporter) for i in range(4)]
    assert sorted(a["alert_id"] for a in views[0]) == sorted(summary.alert_ids)
    assert all(v == views[0] for v in views[1:]), "validators disagree about the alerts"
    assert {a["sender"] for a in views[0]} == {gateway_key.public_key.hex()}
    assert {a["model_version"] for a in views[0]} == {IDS_ROUNDS}
    assert len(summary.by_class) >= 3, summary.by_class  # the federated model, not only the plausibility rule


async def flood(url: str, batches: int, size: int) -> tuple[int, int]:
    """(answered, rate limited) over ``batches`` JSON-RPC batches of ``size`` status calls from 127.0.0.1."""
    answered = limited = 0
    async with RpcClient(url) as client:
        for _ in range(batches):
            try:
                results = await client.batch([("status", None)] * size)
            except RateLimited:
                limited += size
                continue
            limited += sum(isinstance(r, RateLimited) for r in results)
            answered += sum(isinstance(r, dict) for r in results)
    return answered, limited


def test_rpc_flood_is_rate_limited_honest_client_served_and_alert_on_chain(testnet: Callable[..., Testnet]) -> None:
    net = testnet(4)
    net.wait_ready(60, min_height=1)
    target = net.specs[0].rpc_url
    answered, limited = asyncio.run(flood(target, batches=20, size=100))  # 2000 calls; burst is 400
    assert limited >= 1000 and answered >= 300, (answered, limited)
    # honest client: another address, its own key, served and committed while the flooder is limited
    honest = ChainSession(target, load_client_key("admin", net.specs[0].home), local_addr="127.0.0.2")
    with honest:
        doc = honest.submit_commit("test.echo", {"msg": b"still served"})
    assert doc.receipt.ok is True
    flooder = address_subject("127.0.0.1").hex()
    with ChainSession(target, net.client_key(), local_addr="127.0.0.2") as session:
        found = session.run(lambda c: wait_for_alert(c, flooder))
    assert found["alert_class"] == "request_flood" and found["subject_kind"] == "address"
    assert found["hospital"] == net.specs[0].name
    for i in range(4):
        net.wait_ready(30, nodes=[i], min_height=found["height"])
        alerts = [a for a in all_alerts(net, i, alert_class="request_flood") if a["subject"] == flooder]
        assert alerts == [found], f"node{i}"


async def wait_for_alert(client: RpcClient, subject: str, timeout_s: float = 60.0) -> dict:
    """The first committed alert about ``subject``: checked now and after every new block."""
    async def probe() -> dict | None:
        # by class, then subject here: alerts_query's own subject filter fails on this build (reported)
        page = await client.call_read("alerts_query", {"alert_class": "request_flood", "limit": 500})
        return next((a for a in page["alerts"] if a["subject"] == subject), None)

    async def watch_blocks() -> dict:
        async with client.subscribe("new_block") as blocks:
            if (hit := await probe()) is not None:
                return hit
            async for _ in blocks:
                if (hit := await probe()) is not None:
                    return hit
        raise AssertionError("subscription ended")

    return await asyncio.wait_for(watch_blocks(), timeout_s)
