"""Hardening of the peer transport (issue 17): byte-bounded queues, rationed handshakes, quiet resets.

In-process: the pure rules (queue budgets, handshake slots, connection caps,
hello decoding) under hypothesis, and PeerTransport over real sockets on
127.0.0.0/8, where strangers connect from 127.0.0.2 and up while the
validators live at 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from core import codec
from core.crypto import PrivateKey
from node.transport import Channel, HandshakeFailed, PeerInfo, QueueLimit, TransportCollector
from node.transport.admission import ConnectionCaps, HandshakeSlots, Slot
from node.transport.handshake import PROTOCOL_VERSION, Handshake, Hello, Role
from node.transport.secure import ML_KEM_CIPHERTEXT_SIZE, ML_KEM_ENCAPSULATION_KEY_SIZE, X25519_SIZE
from node.transport.queues import PeerQueues, PeerStats
from tests.leakcheck import run
from tests.node.test_transport import TUNING, WAIT, Node, bound_socket, cluster, sorted_keys

UPGRADE = (b"GET /p2p HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


# ---- byte-bounded queues ---------------------------------------------------------------------


def test_byte_budgets_bound_each_channel_and_count_what_they_drop() -> None:
    stats = PeerStats()
    limits = {Channel.CONSENSUS: QueueLimit(100, 100), Channel.SYNC: QueueLimit(100, 100),
              Channel.GOSSIP: QueueLimit(max_bytes=100, max_frames=100), Channel.BLOB: QueueLimit(100, 100)}
    queues = PeerQueues(limits, stats)
    assert all(queues.push(Channel.GOSSIP, b"g" * 10) for _ in range(10))
    assert not queues.push(Channel.GOSSIP, b"g" * 10)  # 110 bytes would exceed the budget; 11 frames would not
    assert (stats.dropped, stats.dropped_bytes, stats.queued_bytes) == (1, 10, 100)
    assert queues.push(Channel.CONSENSUS, b"c" * 100)  # gossip's flood took none of consensus' room
    assert queues.push(Channel.SYNC, b"s" * 1000)  # an empty channel takes one frame larger than its budget
    assert not queues.push(Channel.SYNC, b"s")
    assert (stats.dropped, stats.dropped_bytes, stats.queued_bytes) == (2, 11, 1200)
    assert queues.pop() == (Channel.CONSENSUS, b"c" * 100)
    assert queues.pop() == (Channel.SYNC, b"s" * 1000)
    while queues.pop() is not None:
        pass
    assert stats.queued_bytes == 0 and len(queues) == 0
    with pytest.raises(ValueError):
        QueueLimit(max_bytes=0, max_frames=1)
    with pytest.raises(ValueError):
        PeerQueues({Channel.CONSENSUS: QueueLimit(1, 1)}, PeerStats())


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.sampled_from(list(Channel)), st.integers(0, 300)), st.none()),
                max_size=80),
       st.integers(1, 500), st.integers(1, 6))
def test_queue_accounting_holds_for_any_sequence_of_pushes_and_pops(
        ops: list[tuple[Channel, int] | None], budget: int, frames: int) -> None:
    stats = PeerStats()
    queues = PeerQueues(dict.fromkeys(Channel, QueueLimit(budget, frames)), stats)
    model: dict[Channel, list[bytes]] = {c: [] for c in Channel}
    for op in ops:
        if op is None:
            item = queues.pop()
            expected = next(((c, model[c][0]) for c in Channel if model[c]), None)
            assert item == expected  # the oldest frame of the most urgent channel
            if item is not None:
                model[item[0]].pop(0)
            continue
        channel, size = op
        payload = bytes([channel]) * size
        held = model[channel]
        fits = not held or (len(held) < frames and sum(map(len, held)) + size <= budget)
        assert queues.push(channel, payload) is fits
        if fits:
            held.append(payload)
        for c in Channel:  # a channel holds at most its budget, or the one frame it took while empty
            assert len(model[c]) <= frames and (sum(map(len, model[c])) <= budget or len(model[c]) == 1)
    assert stats.queued_bytes == sum(len(p) for held in model.values() for p in held)
    assert len(queues) == sum(len(held) for held in model.values())


def test_a_stopped_peer_holds_at_most_its_budget_and_the_drops_are_exported() -> None:
    async def main() -> None:
        budget = QueueLimit(max_bytes=64 * 1024, max_frames=10_000)
        limits = {channel: budget for channel in Channel}
        async with cluster(2, start=False, queue_limits=limits) as (a, b):
            await a.transport.start()  # b is down: everything for it queues at a
            accepted = sum(a.transport.send(b.pub, Channel.GOSSIP, bytes(10 * 1024)) for _ in range(100))
            assert accepted == 6
            assert a.transport.send(b.pub, Channel.CONSENSUS, b"vote")
            stats = a.transport.stats()[b.pub]
            assert (stats.dropped, stats.dropped_bytes) == (94, 94 * 10 * 1024)
            assert stats.queued_bytes == 6 * 10 * 1024 + 4
            registry = CollectorRegistry()
            registry.register(TransportCollector(a.transport, "node0"))
            labels = {"node": "node0", "peer": "node1"}
            assert registry.get_sample_value("fbci_p2p_queued_bytes", labels) == stats.queued_bytes
            assert registry.get_sample_value("fbci_p2p_dropped_bytes_total", labels) == stats.dropped_bytes
            assert registry.get_sample_value("fbci_p2p_dropped_total", labels) == 94
            await b.transport.start()
            await b.inbox.wait_for(lambda m: len(m) == 7)
            assert b.inbox.messages[0][2] == b"vote"
            assert a.transport.stats()[b.pub].queued_bytes == 0
    run(main)


# ---- handshake slots and connection caps, as pure rules -----------------------------------------

VALIDATOR_HOSTS = {"10.0.0.1": 2, "10.0.0.2": 1}
STRANGERS = [f"10.9.0.{i}" for i in range(5)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([*VALIDATOR_HOSTS, *STRANGERS])), max_size=120))
def test_validator_hosts_always_get_their_reserved_slots_whatever_strangers_hold(
        ops: list[tuple[bool, str]]) -> None:
    shared, per_address = 6, 2
    slots = HandshakeSlots(shared=shared, per_address=per_address, reserved=VALIDATOR_HOSTS)
    held: list[Slot] = []
    for acquire, host in ops:
        if not acquire:
            mine = [s for s in held if s.host == host]
            if mine:
                held.remove(mine[0])
                slots.release(mine[0])
            continue
        in_shared = [s for s in held if not s.reserved]
        reserved_left = VALIDATOR_HOSTS.get(host, 0) - sum(1 for s in held if s.host == host and s.reserved)
        shared_ok = len(in_shared) < shared and sum(1 for s in in_shared if s.host == host) < per_address
        slot = slots.acquire(host)
        assert (slot is not None) == (reserved_left > 0 or shared_ok)
        if slot is not None:
            assert slot.reserved == (reserved_left > 0)
            held.append(slot)
        assert slots.pending == len(held)
    refused_before = slots.refused
    for slot in held:
        slots.release(slot)
    assert slots.pending == 0
    again = [slots.acquire(h) for h in STRANGERS for _ in range(per_address)]
    assert sum(s is not None for s in again) == shared and slots.refused == refused_before + len(again) - shared


def test_connection_caps_count_per_address_with_room_for_validator_hosts() -> None:
    caps = ConnectionCaps(per_address=2, extra={"127.0.0.1": 4})
    assert [caps.admit("127.0.0.2") for _ in range(3)] == [True, True, False]
    assert all(caps.admit("127.0.0.1") for _ in range(6)) and not caps.admit("::ffff:127.0.0.1")
    caps.release("127.0.0.2")
    assert caps.admit("127.0.0.2") and caps.refused == 2


# ---- hello decoding ----------------------------------------------------------------------------

_any_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)


def _field(valid: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(valid, valid, _any_value)


_hello_docs = st.fixed_dictionaries({
    "type": _field(st.just("hello")),
    "version": _field(st.sampled_from([PROTOCOL_VERSION, True, 1, 3])),
    "chain_id": _field(st.text(max_size=20)),
    "x25519": _field(st.binary(min_size=X25519_SIZE, max_size=X25519_SIZE)),
    "ml_kem": _field(st.sampled_from([ML_KEM_ENCAPSULATION_KEY_SIZE, ML_KEM_CIPHERTEXT_SIZE, 31]).map(bytes)),
}, optional={"extra": _any_value})


def _valid_hello(doc: dict[str, object], sender: Role) -> bool:
    kem = ML_KEM_ENCAPSULATION_KEY_SIZE if sender is Role.ACCEPTOR else ML_KEM_CIPHERTEXT_SIZE
    return ("extra" not in doc and doc["type"] == "hello" and type(doc["version"]) is int
            and doc["version"] == PROTOCOL_VERSION and isinstance(doc["chain_id"], str)
            and isinstance(doc["x25519"], bytes) and len(doc["x25519"]) == X25519_SIZE
            and isinstance(doc["ml_kem"], bytes) and len(doc["ml_kem"]) == kem)


@settings(max_examples=300, deadline=None)
@given(_hello_docs, st.sampled_from(Role), st.binary(max_size=200), st.data())
def test_hello_decoding_accepts_exactly_the_valid_documents(doc: dict[str, object], sender: Role, noise: bytes,
                                                            data: st.DataObject) -> None:
    encoded = codec.encode(doc)
    mutated = bytearray(encoded)
    for _ in range(data.draw(st.integers(0, 3))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    for frame, oracle in ((encoded, _valid_hello(doc, sender)), (bytes(mutated), None), (noise, None)):
        try:
            hello = Hello.decode(frame, sender)
        except HandshakeFailed:
            assert oracle is not True, f"a valid hello was refused: {doc}"
            continue
        assert oracle is not False, f"an invalid hello was accepted: {doc}"
        assert hello.encode() == frame  # whatever is accepted is exactly a hello this node would send


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.data())
def test_no_auth_frame_but_the_real_one_completes_a_handshake(noise: bytes, data: st.DataObject) -> None:
    """After a valid hello, whatever the dialer sends as its auth (noise, a mutation of the real sealed auth,
    an auth sealed correctly but signed by a key nobody allowed) never completes the acceptor's handshake."""
    known, stranger = PrivateKey.generate(), PrivateKey.generate()
    allowed = {known.public_key.raw: known.public_key}
    acceptor = Handshake(Role.ACCEPTOR, chain_id="c", key=PrivateKey.generate(), listen="127.0.0.1:2",
                         peer_keys=allowed.get, max_plaintext=1024)
    signer = data.draw(st.sampled_from([known, stranger]))
    dial = Handshake(Role.DIALER, chain_id="c", key=signer, listen="127.0.0.1:1",
                     peer_keys=lambda k: None, max_plaintext=1024)
    hello, auth = dial.receive(acceptor.opening() or b"")
    assert acceptor.receive(hello) == []
    mutated = bytearray(auth)
    position = data.draw(st.integers(0, len(mutated) - 1))
    mutated[position] ^= data.draw(st.integers(1, 255))
    frame = data.draw(st.sampled_from([noise, bytes(mutated), auth]))
    if frame == auth and signer is known:
        assert len(acceptor.receive(frame)) == 1 and acceptor.session is not None
        return
    with pytest.raises(HandshakeFailed) as failed:
        acceptor.receive(frame)
    assert failed.value.slug == ("unknown_key" if frame == auth else "bad_frame")
    assert acceptor.session is None


# ---- real sockets --------------------------------------------------------------------------------


@asynccontextmanager
async def sessions() -> AsyncIterator[Callable[[str], aiohttp.ClientSession]]:
    """``session(source_ip)``: a client session whose connections leave from that loopback address."""
    async with AsyncExitStack() as stack:
        made: dict[str, aiohttp.ClientSession] = {}

        def session(source: str) -> aiohttp.ClientSession:
            if source not in made:
                connector = aiohttp.TCPConnector(local_addr=(source, 0))
                made[source] = aiohttp.ClientSession(connector=connector)
                stack.push_async_callback(made[source].close)
            return made[source]

        yield session


async def squat(session: aiohttp.ClientSession, node: Node) -> aiohttp.ClientWebSocketResponse:
    """Upgrade and never answer; returns once the node's own hello shows it holds a slot for us."""
    ws = await session.ws_connect(f"http://{node.info.address}/p2p")
    assert (await ws.receive()).type is aiohttp.WSMsgType.BINARY
    return ws


async def refused(session: aiohttp.ClientSession, node: Node) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as error:
        await session.ws_connect(f"http://{node.info.address}/p2p")
    return error.value.status


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the server ends the connection within ``within`` seconds (EOF or reset)."""
    try:
        async with asyncio.timeout(within):
            return await reader.read() == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def connect_from(source: str, node: Node) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = node.info.address.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port), local_addr=(source, 0))


async def eventually(condition: Callable[[], bool]) -> None:
    """Poll in-process state the transport changes on its own schedule (a socket it has seen close)."""
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.01)


async def upgraded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(UPGRADE)
    async with asyncio.timeout(WAIT):
        return (await reader.readline()).startswith(b"HTTP/1.1 101")


def test_a_validator_gets_a_handshake_slot_while_strangers_hold_all_the_others() -> None:
    async def main() -> None:
        tuning = replace(TUNING, handshake_timeout=30.0, max_pending_handshakes=4, max_pending_per_address=2)
        async with cluster(2, start=False, tuning=tuning) as (a, b), sessions() as session:
            await b.transport.start()
            held = [await squat(session("127.0.0.2"), b) for _ in range(2)]
            assert await refused(session("127.0.0.2"), b) == 503  # its per-address share is used up
            held += [await squat(session("127.0.0.3"), b) for _ in range(2)]
            assert await refused(session("127.0.0.4"), b) == 503  # the strangers' pool is full
            assert b.transport.admission().pending_handshakes == 4
            await a.transport.start()  # a validator at 127.0.0.1: its host has slots of its own
            await b.transport.wait_connected([a.pub], timeout=5.0)
            admission = b.transport.admission()
            assert (admission.pending_handshakes, admission.refused_handshakes) == (4, 2)
            registry = CollectorRegistry()
            registry.register(TransportCollector(b.transport, "node1"))
            assert registry.get_sample_value("fbci_p2p_refused_total",
                                             {"node": "node1", "limit": "handshake_slots"}) == 2
            assert registry.get_sample_value("fbci_p2p_pending_handshakes", {"node": "node1"}) == 4
            for ws in held:
                await ws.close()
    run(main)


def test_connections_over_the_per_address_cap_are_cut_at_once() -> None:
    async def main() -> None:
        async with cluster(1, tuning=replace(TUNING, max_connections_per_address=2)) as (b,):
            first, second, third = [await connect_from("127.0.0.2", b) for _ in range(3)]
            assert await closed_by_server(third[0], within=WAIT)
            assert await upgraded(*first) and await upgraded(*second)  # the two within the cap are served
            other = await connect_from("127.0.0.3", b)
            assert await upgraded(*other)  # another address has its own cap
            first[1].close()
            await eventually(lambda: b.transport.admission().pending_handshakes == 2)  # b saw it close
            fourth = await connect_from("127.0.0.2", b)
            assert await upgraded(*fourth)  # a closed connection gives its place back
            assert b.transport.admission().refused_connections == 1
            for _, writer in (second, third, fourth, other):
                writer.close()
    run(main)


def test_silent_connections_are_closed_after_the_handshake_timeout() -> None:
    async def main() -> None:
        async with cluster(1, tuning=replace(TUNING, handshake_timeout=0.5)) as (b,), sessions() as session:
            reader, _ = await connect_from("127.0.0.2", b)  # TCP only: never sends its HTTP request
            ws = await squat(session("127.0.0.3"), b)  # upgraded, never says hello
            assert await closed_by_server(reader, within=WAIT)
            async with asyncio.timeout(WAIT):
                assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            await ws.close()
    run(main)


def test_a_dialer_gives_up_on_a_listener_that_accepts_but_never_answers() -> None:
    async def main() -> None:
        low, high = sorted_keys(2)  # the lower key dials
        attempts: list[asyncio.StreamWriter] = []
        handlers: list[asyncio.Task[object]] = []

        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            attempts.append(writer)
            task = asyncio.current_task()
            assert task is not None
            handlers.append(task)
            await reader.read()  # reads the upgrade request, answers nothing, until the dialer hangs up
            writer.close()

        server = await asyncio.start_server(mute, sock=bound_socket())
        host, port = server.sockets[0].getsockname()[:2]
        node = Node(low, bound_socket(), "node0")
        node.build([node.info, PeerInfo("mute", high.public_key.raw, f"{host}:{port}")],
                   tuning=replace(TUNING, handshake_timeout=0.3))
        await node.transport.start()
        try:
            async with asyncio.timeout(WAIT):
                while len(attempts) < 3:  # each attempt gave up at its deadline, and the dialer redialled
                    await asyncio.sleep(0.05)
        finally:
            await node.transport.stop()
            server.close()
            await server.wait_closed()
            for writer in attempts:
                writer.close()
            await asyncio.gather(*handlers, return_exceptions=True)
    run(main)


def test_a_connection_gone_before_its_upgrade_is_answered_is_a_quiet_network_event(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        async with cluster(2, start=False) as (a, b):
            await b.transport.start()
            host, port = b.info.address.rsplit(":", 1)
            # Like a dialer that gave up while this node was paused: by the time the node reads the
            # request, the connection is already gone (blocking calls: the loop does not run meanwhile).
            with socket.create_connection((host, int(port))) as gone:
                gone.sendall(UPGRADE)
            async with asyncio.timeout(WAIT):
                while not any("p2p connection from" in r.getMessage() or r.levelno >= logging.ERROR
                              for r in caplog.records):
                    await asyncio.sleep(0.02)
            await a.transport.start()
            await b.transport.wait_connected([a.pub], timeout=WAIT)  # and the node serves the next peer
        loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert not loud, [f"{r.name}: {r.getMessage()}" for r in loud]
    run(main)


def test_malformed_http_on_the_p2p_port_is_answered_without_an_error_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        async with cluster(1) as (b,):
            reader, writer = await connect_from("127.0.0.2", b)
            writer.write(b"GET /p2p HTTP/1.1\r\nX: " + b"y" * 20000 + b"\r\n\r\n")  # a header line too long
            async with asyncio.timeout(WAIT):
                assert (await reader.readline()).split()[1] == b"400"
            writer.close()
            other, writer = await connect_from("127.0.0.2", b)
            writer.write(UPGRADE.replace(b"/p2p", b"/elsewhere"))
            async with asyncio.timeout(WAIT):
                assert (await other.readline()).split()[1] == b"404"
            writer.close()
        loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert not loud, [f"{r.name}: {r.getMessage()}" for r in loud]
    run(main)
