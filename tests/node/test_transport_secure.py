"""The encrypted peer link (issue 10, part 5): sealed frames, the hybrid handshake, and what a tap on the wire sees.

Pure parts under hypothesis (the frame codec, the handshake as a state machine), then real transports on
127.0.0.1: a tapping TCP proxy between two validators reads no message byte and no validator key; a peer
that signs correctly with a key the allow-list does not name is refused; a frame that is altered, replayed
or reordered closes the link.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.crypto import HybridPrivateKey, PrivateKey, PublicKey, VerifyingKey
from core.tx import Transaction
from node.transport import BadFrame, Channel, FrameTooLarge, PeerInfo
from node.transport.handshake import Handshake, HandshakeFailed, Role
from node.transport.secure import FRAME_OVERHEAD, FrameOpener, FrameSealer
from tests.leakcheck import run
from tests.node.test_transport import CHAIN, WAIT, Node, bound_socket, cluster, raw_dial, rejected_with, sorted_keys

KEY = bytes(range(32))
payloads = st.lists(st.binary(max_size=300), min_size=1, max_size=8)


# ---- the frame codec -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(payloads)
def test_sealed_frames_open_in_order_to_the_same_bytes(messages: list[bytes]) -> None:
    sealer, opener = FrameSealer(KEY, 300), FrameOpener(KEY, 300)
    frames = [sealer.seal(m) for m in messages]
    assert [len(f) for f in frames] == [len(m) + FRAME_OVERHEAD for m in messages]
    assert [opener.open(f) for f in frames] == messages


@settings(max_examples=200, deadline=None)
@given(payloads, st.data())
def test_an_altered_frame_never_opens_and_kills_the_stream(messages: list[bytes], data: st.DataObject) -> None:
    sealer, opener = FrameSealer(KEY, 300), FrameOpener(KEY, 300)
    frames = [sealer.seal(m) for m in messages]
    victim = data.draw(st.integers(0, len(frames) - 1))
    for frame in frames[:victim]:
        opener.open(frame)
    altered = bytearray(frames[victim])
    altered[data.draw(st.integers(0, len(altered) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(BadFrame):
        opener.open(bytes(altered))
    with pytest.raises(BadFrame):  # nothing opens after a failure, not even the genuine frame
        opener.open(frames[victim])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=50), min_size=2, max_size=6), st.data())
def test_replayed_reordered_or_dropped_frames_do_not_open(messages: list[bytes], data: st.DataObject) -> None:
    sealer, opener = FrameSealer(KEY, 300), FrameOpener(KEY, 300)
    frames = [sealer.seal(m) for m in messages]
    order = data.draw(st.lists(st.integers(0, len(frames) - 1), min_size=1, max_size=len(frames) + 2))
    for step, index in enumerate(order):
        if index != step:  # not the next frame in sequence: a replay, a skip (drop) or a reorder
            with pytest.raises(BadFrame):
                opener.open(frames[index])
            return
        assert opener.open(frames[index]) == messages[index]


def test_frame_sizes_are_bounded_before_decryption() -> None:
    sealer, opener = FrameSealer(KEY, 1 << 20), FrameOpener(KEY, 100)
    with pytest.raises(FrameTooLarge):
        FrameSealer(KEY, 100).seal(bytes(101))
    with pytest.raises(FrameTooLarge):
        opener.open(sealer.seal(bytes(101)))
    short = FrameOpener(KEY, 100)
    frame = FrameSealer(KEY, 100).seal(b"x")
    for bad in (frame[:-1], frame + b"\0", frame[:3], b""):  # a length prefix that lies about the size
        with pytest.raises(BadFrame):
            FrameOpener(KEY, 100).open(bad)
    assert short.open(frame) == b"x"
    with pytest.raises(BadFrame):
        FrameOpener(bytes(32), 100).open(frame)  # another key


# ---- the handshake as a state machine ------------------------------------------------------------


def handshake_pair(acceptor_key: object, dialer_key: object, allowed: dict[bytes, VerifyingKey]
                   ) -> tuple[Handshake, Handshake]:
    acceptor = Handshake(Role.ACCEPTOR, chain_id=CHAIN, key=acceptor_key, listen="a", peer_keys=allowed.get,
                         max_plaintext=1024)
    dialer = Handshake(Role.DIALER, chain_id=CHAIN, key=dialer_key, listen="d", peer_keys=allowed.get,
                       max_plaintext=1024)
    return acceptor, dialer


def complete(acceptor: Handshake, dialer: Handshake) -> None:
    hello, auth = dialer.receive(acceptor.opening() or b"")
    assert acceptor.receive(hello) == []
    (reply,) = acceptor.receive(auth)
    assert dialer.receive(reply) == []


@pytest.mark.parametrize("kind", [PrivateKey, HybridPrivateKey])
def test_both_ends_derive_one_session_per_direction(kind: type[PrivateKey] | type[HybridPrivateKey]) -> None:
    a, d = kind.generate(), kind.generate()
    acceptor, dialer = handshake_pair(a, d, {a.public_key.raw: a.public_key, d.public_key.raw: d.public_key})
    complete(acceptor, dialer)
    assert acceptor.session is not None and dialer.session is not None
    assert (acceptor.session.peer, dialer.session.peer) == (d.public_key.raw, a.public_key.raw)
    assert acceptor.session.opener.open(dialer.session.sealer.seal(b"to a")) == b"to a"
    assert dialer.session.opener.open(acceptor.session.sealer.seal(b"to d")) == b"to d"
    with pytest.raises(BadFrame):  # each direction has its own key: a frame is not reflected back
        FrameOpener(b"\0" * 32, 1024).open(dialer.session.sealer.seal(b"x"))


def test_a_man_in_the_middle_who_swaps_a_key_share_gets_no_session() -> None:
    a, d = PrivateKey.generate(), PrivateKey.generate()
    acceptor, dialer = handshake_pair(a, d, {a.public_key.raw: a.public_key, d.public_key.raw: d.public_key})
    # The attacker relays the acceptor's hello but replaces its X25519 share with its own.
    mitm, _ = handshake_pair(PrivateKey.generate(), d, {})
    genuine, forged = acceptor.opening() or b"", mitm.opening() or b""
    spliced = genuine.replace(genuine[genuine.index(b"x25519") + 8:][:32], forged[forged.index(b"x25519") + 8:][:32])
    assert spliced != genuine
    hello, auth = dialer.receive(spliced)
    acceptor.receive(hello)
    with pytest.raises(HandshakeFailed) as failed:
        acceptor.receive(auth)
    assert failed.value.slug == "bad_frame" and acceptor.session is None


def test_a_hybrid_validator_must_sign_with_both_halves() -> None:
    """A peer holding only the Ed25519 half of a hybrid validator's key (the half a quantum computer could
    forge) cannot pass for it."""
    a, hybrid = PrivateKey.generate(), HybridPrivateKey.generate()
    ed25519_half = hybrid.ed25519
    allowed = {a.public_key.raw: a.public_key, hybrid.public_key.raw: hybrid.public_key}
    acceptor, dialer = handshake_pair(a, ed25519_half, allowed)
    hello, auth = dialer.receive(acceptor.opening() or b"")
    acceptor.receive(hello)
    with pytest.raises(HandshakeFailed) as failed:
        acceptor.receive(auth)
    assert failed.value.slug == "bad_signature"


def test_the_allow_list_is_asked_at_every_handshake() -> None:
    a, d = PrivateKey.generate(), PrivateKey.generate()
    allowed: dict[bytes, VerifyingKey] = {d.public_key.raw: d.public_key, a.public_key.raw: a.public_key}
    complete(*handshake_pair(a, d, allowed))
    del allowed[d.public_key.raw]  # d left the validator set (the acceptor asks the same provider)
    acceptor, dialer = handshake_pair(a, d, allowed)
    hello, auth = dialer.receive(acceptor.opening() or b"")
    acceptor.receive(hello)
    with pytest.raises(HandshakeFailed) as failed:
        acceptor.receive(auth)
    assert failed.value.slug == "unknown_key"


# ---- real transports -----------------------------------------------------------------------------


class Tap:
    """A TCP proxy that forwards both ways and keeps a copy of every byte: a passive reader of the link."""

    def __init__(self, upstream: str) -> None:
        self._host, port = upstream.rsplit(":", 1)
        self._port = int(port)
        self.seen = bytearray()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address = ""

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                self.seen += chunk
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        for pump in (self._pump(reader, up_writer), self._pump(up_reader, writer)):
            task = asyncio.create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Tap]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.address = "127.0.0.1:%d" % self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()


def test_a_passive_reader_of_the_socket_sees_no_message_and_no_validator_key() -> None:
    async def main() -> None:
        async with cluster(2, start=False) as (a, b):  # a has the lower key: it dials b, through the tap
            async with Tap(b.info.address).running() as tap:
                a.build([a.info, PeerInfo(b.name, b.pub, tap.address)])
                await b.transport.start()
                await a.transport.start()
                await a.transport.wait_connected(timeout=WAIT)
                tx = Transaction.create(PrivateKey.generate(), CHAIN, 1, "test.echo",
                                        {"msg": b"plaintext-marker: a tx body a tap must not read"}).encode()
                assert a.transport.send(b.pub, Channel.GOSSIP, tx)
                assert b.transport.send(a.pub, Channel.CONSENSUS, b"vote-marker " * 100)
                await b.inbox.wait_for(lambda m: m == [(a.pub, Channel.GOSSIP, tx)])
                await a.inbox.wait_for(lambda m: m == [(b.pub, Channel.CONSENSUS, b"vote-marker " * 100)])
                wire = bytes(tap.seen)
                assert b"GET /p2p HTTP/1.1" in wire and len(wire) > len(tx) + 1200  # the tap did see the link
                for secret in (tx, b"plaintext-marker", b"vote-marker", a.pub, b.pub, a.pub.hex().encode()):
                    assert secret not in wire, secret[:20]
    run(main)


def test_a_correct_signature_from_a_key_off_the_validator_set_is_refused() -> None:
    async def main() -> None:
        async with cluster(2) as (a, b), aiohttp.ClientSession() as session:
            await b.transport.wait_connected([a.pub], timeout=WAIT)
            outsider = PrivateKey.generate()  # signs its auth correctly; it is just not a validator
            link = await raw_dial(session, b, outsider)
            assert await rejected_with(link.ws) == "unknown_key"
            assert outsider.public_key.raw not in b.transport.connected_peers()
    run(main)


def test_the_transport_asks_its_allow_list_provider_not_a_frozen_copy() -> None:
    async def main() -> None:
        a_key, b_key = sorted_keys(2)
        members: dict[bytes, VerifyingKey] = {a_key.public_key.raw: a_key.public_key}
        b = Node(b_key, bound_socket(), "node1")
        a = Node(a_key, bound_socket(), "node0")
        b.build([a.info, b.info], peer_keys=members.get)
        a.build([a.info, b.info])
        await b.transport.start()
        try:
            await a.transport.start()
            await b.transport.wait_connected(timeout=WAIT)
            await a.transport.stop()
            members.clear()  # the chain removed a: its next handshake is refused
            async with aiohttp.ClientSession() as session:
                link = await raw_dial(session, b, a_key)
                assert await rejected_with(link.ws) == "unknown_key"
        finally:
            await a.transport.stop()
            await b.transport.stop()
    run(main)


@pytest.mark.parametrize("attack", ["tampered", "replayed", "reordered"])
def test_a_tampered_replayed_or_reordered_frame_closes_the_link(attack: str) -> None:
    async def main() -> None:
        async with cluster(2) as (a, b), aiohttp.ClientSession() as session:
            await a.transport.stop()  # the raw client speaks as a
            link = await raw_dial(session, b, a.key)
            await link.established()
            await b.transport.wait_connected([a.pub], timeout=WAIT)
            sealer = link.session.sealer
            first, second = sealer.seal(b"\x00first"), sealer.seal(b"\x00second")
            if attack == "tampered":
                frames = [first[:-1] + bytes([first[-1] ^ 1])]
            elif attack == "replayed":
                frames = [first, first]
            else:
                frames = [second, first]
            for frame in frames:
                await link.ws.send_bytes(frame)
            assert await rejected_with(link.ws) == "bad_frame"
            await b.reports.wait_reason("bad_frame")
            assert [p for _, _, p in b.inbox.messages] == ([b"first"] if attack == "replayed" else [])
            await b.transport.wait_peers(lambda connected: a.pub not in connected, timeout=WAIT)
    run(main)
