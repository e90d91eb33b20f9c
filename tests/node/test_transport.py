"""PeerTransport over real sockets on 127.0.0.1: authentication, isolation, priority, reconnection."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from core.crypto import PrivateKey, PublicKey
from node.transport import (
    Channel, FrameTooLarge, PeerInfo, PeerTransport, TransportCollector, TransportTuning, UnknownPeer,
)
from node.transport.handshake import Handshake, Role
from node.transport.secure import SecureSession
from node.transport.queues import PeerQueues, PeerStats, QueueLimit
from tests.leakcheck import run

CHAIN = "fbci-test"
TUNING = TransportTuning(handshake_timeout=2.0, heartbeat=60.0, close_timeout=0.5,
                         backoff_initial=0.02, backoff_max=0.2, malformed_limit=3)
LIMITS = {Channel.CONSENSUS: QueueLimit(64 << 20, 1000), Channel.SYNC: QueueLimit(64 << 20, 1000),
          Channel.GOSSIP: QueueLimit(64 << 20, 10000), Channel.BLOB: QueueLimit(64 << 20, 1000)}
MAX = 1 << 20
WAIT = 10.0


def bound_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()
    return f"{host}:{port}"


def sorted_keys(n: int) -> list[PrivateKey]:
    """Keys ordered by public key, so tests know who dials whom (the lower key dials)."""
    return sorted((PrivateKey.generate() for _ in range(n)), key=lambda k: k.public_key.raw)


class Inbox:
    """Collects (sender, channel, payload) and lets a test wait for a condition on them."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, Channel, bytes]] = []
        self._changed = asyncio.Event()

    def __call__(self, sender: bytes, channel: Channel, payload: bytes) -> None:
        self.messages.append((sender, channel, payload))
        self._changed.set()

    async def wait_for(self, condition: Callable[[list[tuple[bytes, Channel, bytes]]], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not condition(self.messages):
                self._changed.clear()
                await self._changed.wait()


class Reports:
    def __init__(self) -> None:
        self.items: list[tuple[bytes | str, str]] = []
        self._changed = asyncio.Event()

    def __call__(self, who: bytes | str, reason: str) -> None:
        self.items.append((who, reason))
        self._changed.set()

    async def wait_reason(self, reason: str) -> bytes | str:
        async with asyncio.timeout(WAIT):
            while True:
                for who, why in self.items:
                    if why == reason:
                        return who
                self._changed.clear()
                await self._changed.wait()


class Node:
    def __init__(self, key: PrivateKey, sock: socket.socket, name: str) -> None:
        self.key, self.sock, self.name = key, sock, name
        self.info = PeerInfo(name, key.public_key.raw, address(sock))
        self.inbox = Inbox()
        self.reports = Reports()
        self.transport: PeerTransport | None = None

    @property
    def pub(self) -> bytes:
        return self.key.public_key.raw

    def build(self, peers: list[PeerInfo], **kw: Any) -> PeerTransport:
        self.transport = PeerTransport(
            chain_id=CHAIN, key=self.key, listen=self.sock, peers=peers, on_message=self.inbox,
            max_message_bytes=kw.pop("max_message_bytes", MAX), queue_limits=kw.pop("queue_limits", LIMITS),
            on_misbehaviour=self.reports, tuning=kw.pop("tuning", TUNING), **kw)
        return self.transport

    async def restart(self, peers: list[PeerInfo]) -> PeerTransport:
        """Stop and start again on the same port, as a restarted process would."""
        assert self.transport is not None
        await self.transport.stop()
        self.sock = bound_socket(int(self.info.address.rsplit(":", 1)[1]))
        self.inbox = Inbox()
        await self.build(peers).start()
        return self.transport


@asynccontextmanager
async def cluster(n: int, extra_peers: list[PeerInfo] = (), start: bool = True,
                  keys: list[PrivateKey] | None = None, **kw: Any) -> AsyncIterator[list[Node]]:
    nodes = [Node(k, bound_socket(), f"node{i}") for i, k in enumerate(keys or sorted_keys(n))]
    infos = [node.info for node in nodes] + list(extra_peers)
    for node in nodes:
        node.build(infos, **kw)
    try:
        if start:
            for node in nodes:
                await node.transport.start()
        yield nodes
    finally:
        for node in nodes:
            await node.transport.stop()


@dataclass(frozen=True)
class Claiming:
    """A signing key that presents ``claim`` as its identity but signs with ``key``: a peer naming a validator
    key it does not hold."""

    key: PrivateKey
    claim: bytes

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(self.claim)

    def sign(self, chain_id: str, kind: str, message: bytes) -> bytes:
        return self.key.sign(chain_id, kind, message)


@dataclass
class RawLink:
    """A dialer driven by hand: ``sent`` holds the hello and sealed auth it sent; once :meth:`established`
    has read the acceptor's auth, :meth:`send` seals frames as a real peer would."""

    ws: aiohttp.ClientWebSocketResponse
    handshake: Handshake
    sent: list[bytes] = field(default_factory=list)

    async def established(self) -> SecureSession:
        async with asyncio.timeout(WAIT):
            msg = await self.ws.receive()
        assert msg.type is aiohttp.WSMsgType.BINARY, msg
        self.handshake.receive(msg.data)
        assert self.handshake.session is not None
        return self.handshake.session

    @property
    def session(self) -> SecureSession:
        assert self.handshake.session is not None
        return self.handshake.session

    async def send(self, plaintext: bytes) -> None:
        await self.ws.send_bytes(self.session.sealer.seal(plaintext))


def dialer(key: Any, chain: str = CHAIN) -> Handshake:
    """A dialer's handshake that trusts whatever Ed25519 key answers (the tests check the other side)."""
    return Handshake(Role.DIALER, chain_id=chain, key=key, listen="127.0.0.1:1", peer_keys=PublicKey,
                     max_plaintext=MAX + 1)


async def raw_dial(session: aiohttp.ClientSession, target: Node, key: PrivateKey, *,
                   claim: bytes | None = None, **kw: Any) -> RawLink:
    """Handshake by hand as a dialer, up to sending our hello and sealed auth."""
    ws = await session.ws_connect(f"http://{target.info.address}/p2p", **kw)
    link = RawLink(ws, dialer(key if claim is None else Claiming(key, claim)))
    async with asyncio.timeout(WAIT):
        link.sent = link.handshake.receive((await ws.receive()).data)
    for frame in link.sent:
        await ws.send_bytes(frame)
    return link


async def rejected_with(ws: aiohttp.ClientWebSocketResponse) -> str:
    """Skip binary frames, then expect a policy-violation close; return its reason."""
    async with asyncio.timeout(WAIT):
        msg = await ws.receive()
        while msg.type is aiohttp.WSMsgType.BINARY:
            msg = await ws.receive()
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION, msg
    await ws.close()
    return msg.extra


def test_queues_drain_by_priority_and_drop_when_full() -> None:
    stats = PeerStats()
    queues = PeerQueues(dict.fromkeys(Channel, QueueLimit(1 << 20, 2)), stats)
    assert queues.push(Channel.GOSSIP, b"g1") and queues.push(Channel.GOSSIP, b"g2")
    assert not queues.push(Channel.GOSSIP, b"g3")
    assert queues.push(Channel.SYNC, b"s1") and queues.push(Channel.CONSENSUS, b"c1")
    order = [queues.pop() for _ in range(5)]
    assert order == [(Channel.CONSENSUS, b"c1"), (Channel.SYNC, b"s1"), (Channel.GOSSIP, b"g1"),
                     (Channel.GOSSIP, b"g2"), None]
    assert stats.dropped == 1 and not queues.ready.is_set()


def test_full_mesh_of_four_delivers_direct_and_broadcast_messages() -> None:
    async def main() -> None:
        async with cluster(4) as nodes:
            for node in nodes:
                await node.transport.wait_connected(timeout=WAIT)
            for node in nodes:
                node.transport.broadcast(Channel.CONSENSUS, b"hello from " + node.name.encode())
                for other in nodes:
                    if other is not node:
                        assert node.transport.send(other.pub, Channel.SYNC, node.pub + other.pub)
            for node in nodes:
                await node.inbox.wait_for(lambda m: len(m) == 6)
                got = {(s, c, p) for s, c, p in node.inbox.messages}
                others = [o for o in nodes if o is not node]
                assert got == {(o.pub, Channel.CONSENSUS, b"hello from " + o.name.encode()) for o in others} | {
                    (o.pub, Channel.SYNC, o.pub + node.pub) for o in others}
            stats = nodes[0].transport.stats()
            assert all(s.connected and s.sent == 2 and s.received == 2 for s in stats.values())
            registry = CollectorRegistry()
            registry.register(TransportCollector(nodes[0].transport, "node0"))
            labels = {"node": "node0", "peer": "node1"}
            assert registry.get_sample_value("fbci_p2p_sent_total", labels) == 2
            assert registry.get_sample_value("fbci_p2p_connected", labels) == 1
            with pytest.raises(UnknownPeer):
                nodes[0].transport.send(b"\x00" * 32, Channel.GOSSIP, b"x")
    run(main)


def test_unknown_key_is_rejected_and_reported() -> None:
    async def main() -> None:
        async with cluster(2) as (a, b), aiohttp.ClientSession() as session:
            stranger = PrivateKey.generate()
            link = await raw_dial(session, b, stranger)
            assert await rejected_with(link.ws) == "unknown_key"
            who = await b.reports.wait_reason("unknown_key")
            assert isinstance(who, str) and who.startswith("127.0.0.1:")
            await b.transport.wait_connected([a.pub], timeout=WAIT)
            assert b.transport.connected_peers() == [a.pub]
    run(main)


def test_peer_claiming_a_genesis_key_without_holding_it_is_rejected() -> None:
    async def main() -> None:
        lower = PrivateKey.generate()
        # b knows `lower` as a validator; an impostor presents lower's key but signs with its own.
        impostor = PrivateKey.generate()
        async with cluster(1, extra_peers=[PeerInfo("node-low", lower.public_key.raw, "127.0.0.1:9")]) as (b,), \
                aiohttp.ClientSession() as session:
            link = await raw_dial(session, b, impostor, claim=lower.public_key.raw)
            assert await rejected_with(link.ws) == "bad_signature"
            await b.reports.wait_reason("bad_signature")
            assert b.transport.connected_peers() == []
    run(main)


def test_dialer_refuses_a_listener_with_the_right_name_but_the_wrong_key() -> None:
    async def main() -> None:
        async with cluster(2, start=False) as (a, b):
            # b's address is served by a transport holding another key that a also trusts.
            impostor_key = PrivateKey.generate()
            impostor = Node(impostor_key, b.sock, "node1")
            impostor.build([a.info, b.info, PeerInfo("node9", impostor_key.public_key.raw, "127.0.0.1:9")])
            a.build([a.info, b.info, PeerInfo("node9", impostor_key.public_key.raw, "127.0.0.1:9")])
            await impostor.transport.start()
            try:
                await a.transport.start()
                assert await a.reports.wait_reason("unexpected_key") == b.info.address
                assert a.transport.connected_peers() == []
            finally:
                await impostor.transport.stop()
    run(main)


def test_recorded_handshake_cannot_be_replayed() -> None:
    async def main() -> None:
        async with cluster(2) as (a, b), aiohttp.ClientSession() as session:
            await a.transport.stop()  # free a's identity so the raw client can use it
            link = await raw_dial(session, b, a.key)
            await b.transport.wait_connected([a.pub], timeout=WAIT)
            await link.ws.close()
            await b.transport.wait_peers(lambda connected: not connected, timeout=WAIT)
            replay = await session.ws_connect(f"http://{b.info.address}/p2p")
            assert (await replay.receive()).type is aiohttp.WSMsgType.BINARY  # b's fresh key shares
            for frame in link.sent:  # our recorded hello and sealed auth, under b's new ephemeral keys
                await replay.send_bytes(frame)
            assert await rejected_with(replay) == "bad_frame"
            assert b.transport.connected_peers() == []
    run(main)


def test_oversized_and_malformed_frames_are_reported_without_harm() -> None:
    async def main() -> None:
        async with cluster(2, max_message_bytes=1024) as (a, b), aiohttp.ClientSession() as session:
            with pytest.raises(FrameTooLarge):
                a.transport.send(b.pub, Channel.GOSSIP, b"x" * 1025)
            await a.transport.stop()
            link = await raw_dial(session, b, a.key)
            await link.established()
            await b.transport.wait_connected([a.pub], timeout=WAIT)
            await link.send(b"")
            await link.send(b"\x07unknown channel")
            await link.send(bytes([Channel.GOSSIP]) + b"still fine")
            await b.inbox.wait_for(lambda m: m == [(a.pub, Channel.GOSSIP, b"still fine")])
            assert [r for _, r in b.reports.items] == ["malformed_frame", "malformed_frame"]
            await link.send(bytes([Channel.GOSSIP]) + b"y" * 4096)
            await b.reports.wait_reason("oversized_frame")
            await b.transport.wait_peers(lambda connected: not connected, timeout=WAIT)
            await link.ws.close()
            assert b.transport.stats()[a.pub].malformed == 3
            # b survived: the real a comes back and talks to it.
            await a.restart([a.info, b.info])
            await a.transport.wait_connected(timeout=WAIT)
            assert a.transport.send(b.pub, Channel.CONSENSUS, b"after")
            await b.inbox.wait_for(lambda m: m[-1][2] == b"after")
    run(main)


def test_too_many_malformed_frames_close_the_connection() -> None:
    async def main() -> None:
        async with cluster(2) as (a, b), aiohttp.ClientSession() as session:
            await a.transport.stop()
            link = await raw_dial(session, b, a.key)
            await link.established()
            await b.transport.wait_connected([a.pub], timeout=WAIT)
            for _ in range(TUNING.malformed_limit):
                await link.send(b"\x09no such channel")
            await b.transport.wait_peers(lambda connected: not connected, timeout=WAIT)
            assert await rejected_with(link.ws) == "too many malformed frames"
    run(main)


def test_consensus_overtakes_a_queued_gossip_flood() -> None:
    async def main() -> None:
        async with cluster(2, start=False) as (a, b):
            await a.transport.start()  # b is down: everything queues at a
            for i in range(500):
                assert a.transport.send(b.pub, Channel.GOSSIP, b"g%d" % i)
            assert a.transport.send(b.pub, Channel.SYNC, b"sync")
            assert a.transport.send(b.pub, Channel.CONSENSUS, b"vote")
            await b.transport.start()
            await b.inbox.wait_for(lambda m: len(m) == 502)
            assert [p for _, _, p in b.inbox.messages[:3]] == [b"vote", b"sync", b"g0"]
    run(main)


def test_consensus_is_not_starved_by_a_gossip_flood_in_flight() -> None:
    async def main() -> None:
        async with cluster(2) as (a, b):
            await a.transport.wait_connected(timeout=WAIT)
            # 32 MB of gossip: more than loopback's socket buffers hold, so most of it is still
            # queued at a when the vote is sent; a FIFO transport would deliver the vote last.
            flood = 8000
            for i in range(flood):
                assert a.transport.send(b.pub, Channel.GOSSIP, i.to_bytes(4, "big") * 1024)
            await b.inbox.wait_for(lambda m: len(m) >= 1)  # the flood is on the wire
            assert a.transport.send(b.pub, Channel.CONSENSUS, b"vote")
            await b.inbox.wait_for(lambda m: any(p == b"vote" for _, _, p in m))
            position = next(i for i, (_, _, p) in enumerate(b.inbox.messages) if p == b"vote")
            assert position < flood // 2, f"consensus arrived after {position} gossip messages"
    run(main)


def test_a_stalled_peer_does_not_block_the_others() -> None:
    async def main() -> None:
        stalled_key, *keys = sorted_keys(3)  # lowest key: the stalled peer is the one that dials
        limits = dict.fromkeys(Channel, QueueLimit(1 << 30, 4))
        extra = [PeerInfo("stalled", stalled_key.public_key.raw, "127.0.0.1:9")]
        async with cluster(2, extra_peers=extra, queue_limits=limits, keys=keys) as (a, b), \
                aiohttp.ClientSession() as session:
            await a.transport.wait_connected([b.pub], timeout=WAIT)
            link = await raw_dial(session, a, stalled_key)  # handshakes, then never reads
            await a.transport.wait_connected([stalled_key.public_key.raw], timeout=WAIT)
            big = b"z" * (512 * 1024)
            for i in range(200):
                a.transport.send(stalled_key.public_key.raw, Channel.CONSENSUS, big)
                assert a.transport.send(b.pub, Channel.CONSENSUS, b"%d" % i)
                await b.inbox.wait_for(lambda m: len(m) == i + 1)
            stalled = a.transport.stats()[stalled_key.public_key.raw]
            assert stalled.dropped > 0 and stalled.sent < 200
            assert a.transport.stats()[b.pub].dropped == 0
            await link.ws.close()
    run(main)


def test_restarted_peers_reconnect_in_both_roles() -> None:
    async def main() -> None:
        async with cluster(2) as (a, b):
            infos = [a.info, b.info]
            await a.transport.wait_connected(timeout=WAIT)
            await b.restart(infos)  # the acceptor restarts: the dialer backs off and redials
            await a.transport.wait_connected(timeout=WAIT)
            assert a.transport.send(b.pub, Channel.CONSENSUS, b"to the new b")
            await b.inbox.wait_for(lambda m: m == [(a.pub, Channel.CONSENSUS, b"to the new b")])
            assert a.transport.stats()[b.pub].reconnects >= 1
            await a.restart(infos)  # the dialer restarts: the acceptor takes the new connection
            await a.transport.wait_connected(timeout=WAIT)
            await b.transport.wait_connected(timeout=WAIT)
            assert b.transport.send(a.pub, Channel.CONSENSUS, b"to the new a")
            await a.inbox.wait_for(lambda m: m == [(b.pub, Channel.CONSENSUS, b"to the new a")])
    run(main)


def test_pending_handshakes_are_bounded() -> None:
    async def main() -> None:
        tuning = TransportTuning(**{**TUNING.__dict__, "max_pending_handshakes": 1})
        async with cluster(1, tuning=tuning) as (b,), aiohttp.ClientSession() as session:
            url = f"http://{b.info.address}/p2p"
            silent = await session.ws_connect(url)  # connects, never says hello
            assert (await silent.receive()).type is aiohttp.WSMsgType.BINARY  # b's hello: b is waiting
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url)
            assert refused.value.status == 503
            await silent.close()
    run(main)
