"""The fault proxy's WAN emulation: jitter and TCP-style loss keep a stream whole and in order; mesh splits."""

from __future__ import annotations

import asyncio

import pytest

from devnet.faultproxy import SEGMENT, FaultProxy, LinkState, ProxyMesh
from tests.devnet.test_faultproxy import WAIT, connect, proxied
from tests.leakcheck import run


def schedule(proxy: FaultProxy, sizes: list[int], gap: float = 0.001) -> list[float]:
    """The departure times ``_due`` gives chunks of ``sizes`` bytes arriving ``gap`` seconds apart."""
    due, out = 0.0, []
    for k, size in enumerate(sizes):
        due = proxy._due(k * gap, size, due)
        out.append(due)
    return out


def test_jitter_stays_within_its_bound_and_never_reorders() -> None:
    proxy = FaultProxy("127.0.0.1:0", "127.0.0.1:1", seed=7)
    proxy.delay(20, jitter_ms=30)
    times = schedule(proxy, [100] * 500)
    assert times == sorted(times), "a chunk overtook an earlier one"
    lateness = [t - k * 0.001 for k, t in enumerate(times)]
    assert min(lateness) >= 0.020 - 1e-9
    own = [proxy._due(0.0, 100, 0.0) for _ in range(500)]  # without the order constraint
    assert all(0.020 <= d <= 0.050 for d in own)
    assert max(own) - min(own) > 0.025, "jitter left the delay constant"


def test_loss_delays_a_chunk_by_the_retransmit_timeout_per_segment_lost() -> None:
    proxy = FaultProxy("127.0.0.1:0", "127.0.0.1:1", seed=3)
    proxy.loss(0.1, retransmit_ms=200)
    one = [proxy._due(0.0, SEGMENT, 0.0) for _ in range(4000)]
    assert set(one) == {0.0, 0.2}
    assert 0.08 < one.count(0.2) / len(one) < 0.12  # one segment: lost with probability 0.1
    twenty = [proxy._due(0.0, 20 * SEGMENT, 0.0) for _ in range(4000)]
    assert 0.85 < twenty.count(0.2) / len(twenty) < 0.91  # 1 - 0.9**20 = 0.878
    proxy.loss(0.0)
    assert {proxy._due(0.0, 20 * SEGMENT, 0.0) for _ in range(100)} == {0.0}


def test_bad_settings_are_refused_and_change_nothing() -> None:
    proxy = FaultProxy("127.0.0.1:0", "127.0.0.1:1")
    proxy.delay(5)
    for call in (lambda: proxy.delay(-1), lambda: proxy.delay(1, jitter_ms=-1),
                 lambda: proxy.loss(1.0), lambda: proxy.loss(-0.1)):
        with pytest.raises(ValueError):
            call()
    assert proxy._due(0.0, 1, 0.0) == pytest.approx(0.005)


def test_a_lossy_jittery_link_delivers_every_byte_in_order_but_late() -> None:
    async def main() -> None:
        async with proxied() as (echo, proxy):
            proxy.delay(10, jitter_ms=20)
            proxy.loss(0.99, retransmit_ms=150)  # every chunk loses a segment: each way waits 150 ms
            reader, writer = await connect(proxy)
            loop = asyncio.get_running_loop()
            started = loop.time()
            payload = bytes(range(256)) * 2000
            writer.write(payload)
            assert await asyncio.wait_for(reader.readexactly(len(payload)), WAIT) == payload
            assert loop.time() - started >= 2 * (0.010 + 0.150)
            assert echo.received == len(payload) and proxy.stats.bytes_dropped == 0
            writer.close()
    run(main)


def test_mesh_split_cuts_only_links_between_groups_and_listens_where_told() -> None:
    mesh = ProxyMesh("127.0.0.2")
    try:
        names = ["a", "b", "c", "d"]
        for x in names:
            for y in names:
                if x != y:
                    assert mesh.add(x, y, "127.0.0.1:9").startswith("127.0.0.2:")
        mesh.split({"a", "b"}, {"c", "d"})
        side = {"a": 0, "b": 0, "c": 1, "d": 1}
        crossing = {(x, y) for x in names for y in names if side[x] != side[y]}
        states = {link: proxy.state for link, proxy in mesh.links.items()}
        assert {link for link, state in states.items() if state is LinkState.CUT} == crossing
        assert len(crossing) == 8
        mesh.heal()
        assert {proxy.state for proxy in mesh.links.values()} == {LinkState.UP}
    finally:
        mesh.close()
