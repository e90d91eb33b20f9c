"""Fuzzing a real validator's p2p port with hypothesis: handshake frames, then frames after the handshake.

Four validators run; the one with the lowest key (it dials everyone) is
stopped, and the fuzzer speaks with its key to one of the other three, the
target, which keeps its quorum with the remaining two. Inputs are drawn by
hypothesis, a bounded number of them:

- before authentication: garbage, text frames, hello documents with fuzzed
  fields, byte-mutated valid hellos, and after a valid hello random or
  mutated auth frames (including the correctly sealed and signed one, mutated);
- after a real handshake, sealed as a real peer seals them: frames with bad
  channel bytes, empty frames, random msgpack, consensus- and sync-shaped
  messages with fuzzed fields, and mutated signed transactions as gossip (bare and in batch frames);
  and, unsealed, text frames and raw bytes (the link must close);
- once each: a frame above the size limit on both sides of the handshake,
  and HTTP that is not a websocket upgrade.

Whatever arrives, the target must stay up, log no error-level traceback,
keep its real peers and keep committing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import codec
from core.crypto import PrivateKey, PublicKey
from core.tx import Transaction
from devnet.testnet import Testnet
from node.gossip import encode_batch
from node.transport.handshake import PROTOCOL_VERSION, Handshake, Role
from node.transport.secure import ML_KEM_CIPHERTEXT_SIZE
from tests.integration.load import PROGRESS_S, READY_S, chain_id_of, client_keys, wait_growing
from tests.integration.test_p2p_attacks import UPGRADE, node_keys, p2p_host_port, peers, tracebacks

N = 4
EXAMPLES = 400  # per phase; both phases together take about 20 s on 2 cores
CLOSE_S = 5.0

pytestmark = pytest.mark.timeout(300)

MakeTestnet = Callable[..., Testnet]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass(frozen=True)
class Mutation:
    """Byte overwrites (positions taken modulo the length), then an optional cut and an appended tail."""

    writes: tuple[tuple[int, int], ...]
    cut: int | None
    tail: bytes

    def apply(self, frame: bytes) -> bytes:
        out = bytearray(frame)
        for position, value in self.writes:
            if out:
                out[position % len(out)] = value
        if self.cut is not None:
            del out[self.cut % (len(out) + 1):]
        return bytes(out) + self.tail


mutations = st.builds(Mutation, st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=4)
                      .map(tuple), st.none() | st.integers(0, 1 << 16), st.binary(max_size=8))
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=64) | st.text(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)
ints = st.integers(0, 3) | st.integers(-(2**63), 2**64 - 1)


# ---- before authentication -------------------------------------------------------------------

Frame = bytes | str  # str: sent as a text frame

hello_fields = st.fixed_dictionaries({
    "type": st.just("hello") | values, "version": st.just(PROTOCOL_VERSION) | values,
    "chain_id": st.text(max_size=12) | values, "x25519": st.binary(min_size=32, max_size=32) | values,
    "ml_kem": st.binary(min_size=ML_KEM_CIPHERTEXT_SIZE, max_size=ML_KEM_CIPHERTEXT_SIZE) | values,
}, optional={"extra": values})


@dataclass(frozen=True)
class PreAuth:
    """What the fuzzer sends after reading the target's hello: a hello variant, an auth variant, extra frames."""

    hello: tuple[str, object]  # ("raw", frame) | ("doc", dict) | ("mutated", Mutation) | ("valid", None)
    auth: tuple[str, object] | None  # ("raw", frame) | ("doc", dict) | ("mutated", Mutation) | ("valid", None)
    extra: tuple[Frame, ...]


frames = st.binary(max_size=300) | st.text(max_size=40) | values.map(codec.encode)
pre_auth = st.builds(
    PreAuth,
    st.tuples(st.just("raw"), frames) | st.tuples(st.just("doc"), hello_fields)
    | st.tuples(st.just("mutated"), mutations) | st.tuples(st.just("valid"), st.none()),
    st.none() | st.tuples(st.just("raw"), frames)
    | st.tuples(st.just("doc"), st.dictionaries(st.text(max_size=10), values, max_size=3)
                .map(lambda d: {"type": "auth", **d}))
    | st.tuples(st.just("mutated"), mutations) | st.tuples(st.just("valid"), st.none()),
    st.lists(frames, max_size=3).map(tuple),
)


async def send(ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> None:
    if isinstance(frame, str):
        await ws.send_str(frame)
    else:
        await ws.send_bytes(frame)


@dataclass
class Fuzzer:
    """Speaks to the target's p2p port as ``key``; each call is one connection, closed at its end."""

    url: str
    chain_id: str
    key: PrivateKey

    async def _connect(self, session: aiohttp.ClientSession
                       ) -> tuple[aiohttp.ClientWebSocketResponse, Handshake, list[bytes]]:
        """Connect and read the target's hello; returns the handshake and our hello and sealed auth."""
        ws = await session.ws_connect(self.url, max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_S))
        handshake = Handshake(Role.DIALER, chain_id=self.chain_id, key=self.key, listen="127.0.0.1:1",
                              peer_keys=PublicKey, max_plaintext=1 << 26)
        async with asyncio.timeout(CLOSE_S):
            ours = handshake.receive((await ws.receive()).data)
        return ws, handshake, ours

    async def pre_auth(self, case: PreAuth) -> None:
        async with aiohttp.ClientSession() as session:
            ws, _, (hello, auth) = await self._connect(session)
            sent = [self._variant(case.hello, hello)]
            if case.auth is not None:
                sent.append(self._variant(case.auth, auth))
            try:
                for frame in (*sent, *case.extra):
                    await send(ws, frame)
            except (aiohttp.ClientError, ConnectionError):
                pass  # the target hung up on us, as it should on a bad frame
            await ws.close()

    @staticmethod
    def _variant(variant: tuple[str, object], valid: bytes) -> Frame:
        kind, value = variant
        if kind == "valid":
            return valid
        if kind == "mutated":
            assert isinstance(value, Mutation)
            return value.apply(valid)
        if kind == "doc":
            return codec.encode(value)
        assert isinstance(value, (bytes, str))
        return value

    async def post_auth(self, sent: list[Frame], *, sealed: bool = True) -> None:
        """Complete a real handshake, then send ``sent``: each bytes frame sealed (unless ``sealed`` is
        False) as a real peer would, each str as a clear text frame."""
        async with aiohttp.ClientSession() as session:
            ws, handshake, ours = await self._connect(session)
            for frame in ours:
                await ws.send_bytes(frame)
            async with asyncio.timeout(CLOSE_S):
                handshake.receive((await ws.receive()).data)  # the target's sealed auth
            assert handshake.session is not None
            try:
                for frame in sent:
                    await send(ws, handshake.session.sealer.seal(frame) if sealed and isinstance(frame, bytes)
                               else frame)
            except (aiohttp.ClientError, ConnectionError):
                pass  # closed for too many malformed frames
            await ws.close()


# ---- after authentication ----------------------------------------------------------------------

hashes = st.one_of(*[st.binary(min_size=32, max_size=32)] * 3, st.binary(max_size=40))
signatures = st.one_of(*[st.binary(min_size=64, max_size=64)] * 3, st.binary(max_size=80))


def consensus_like(validators: list[bytes]) -> st.SearchStrategy[bytes]:
    """Consensus messages whose shape mostly decodes, from the validators' own keys, with fuzzed fields."""
    sender = st.sampled_from(validators) | hashes
    return st.one_of(
        st.tuples(st.sampled_from(["prepare", "commit"]), ints, ints, hashes, sender, signatures),
        st.tuples(st.just("pre-prepare"), ints, ints, hashes, st.binary(max_size=200), sender, signatures),
        st.tuples(st.just("view-change"), ints, ints, st.none() | values, sender, signatures),
        st.tuples(st.just("new-view"), ints, ints, st.lists(values, max_size=3), hashes, st.binary(max_size=100),
                  sender, signatures),
        st.tuples(st.just("commit-proof"), values, sender),
        st.lists(values, max_size=6),
    ).map(lambda fields: codec.encode(list(fields)))


sync_like = st.one_of(
    st.tuples(st.just("get_blocks"), ints | values, ints | values),
    st.tuples(st.just("blocks"), st.lists(st.lists(st.binary(max_size=200), max_size=3), max_size=3) | values),
).map(lambda fields: codec.encode(list(fields)))


def post_auth_frames(tx: bytes, validators: list[bytes]) -> st.SearchStrategy[list[Frame]]:
    """Frames after the handshake; ``tx`` is a real signed transaction for the gossip channel to mutate."""
    channel_byte = st.integers(0, 2) | st.integers(0, 2) | st.integers(0, 255)
    payload = st.one_of(st.binary(max_size=300), values.map(codec.encode), consensus_like(validators), sync_like,
                        mutations.map(lambda m: m.apply(tx)), st.just(tx),
                        mutations.map(lambda m: encode_batch([m.apply(tx)])), st.just(encode_batch([tx])))
    frame = st.one_of(st.builds(lambda c, p: bytes([c]) + p, channel_byte, payload), st.just(b""),
                      st.text(max_size=30))
    return st.lists(frame, min_size=1, max_size=12)


def test_fuzzed_peer_frames_and_handshakes_leave_a_validator_running(testnet: MakeTestnet) -> None:
    net = testnet(N)
    net.wait_ready(READY_S, min_height=1)
    keys = node_keys(net)
    order = sorted(range(N), key=lambda i: keys[i].public_key.raw)
    impersonated, target = order[0], order[1]  # the lowest key dials everyone, so every other node accepts it
    net.stop(impersonated)
    running = [i for i in range(N) if i != impersonated]
    wait_growing(net, 2, PROGRESS_S, running)  # three of four: still a quorum
    host, port = p2p_host_port(net, target)
    chain_id = chain_id_of(net)
    fuzzer = Fuzzer(f"http://{host}:{port}/p2p", chain_id, keys[impersonated])
    tx = Transaction.create(client_keys(net)[0], chain_id, 1, "test.echo", {"msg": b"fuzz"}).encode()

    @FUZZ
    @given(pre_auth)
    def handshakes(case: PreAuth) -> None:
        asyncio.run(fuzzer.pre_auth(case))

    @FUZZ
    @given(post_auth_frames(tx, [k.public_key.raw for k in keys]))
    def after_handshake(sent: list[Frame]) -> None:
        asyncio.run(fuzzer.post_auth(sent))

    handshakes()
    after_handshake()
    limit = 2 * 8 * 1024 * 1024 + 65536  # the runtime's max_message_bytes for the default max_block_bytes
    asyncio.run(fuzzer.post_auth([bytes([0]) + bytes(limit + 1)]))
    asyncio.run(fuzzer.post_auth([bytes([0]) + bytes(limit + 64)], sealed=False))
    asyncio.run(fuzzer.post_auth([b"\x00unsealed: the link closes", b"\x00after"], sealed=False))
    asyncio.run(fuzzer.pre_auth(PreAuth(("raw", bytes(limit + 2)), None, ())))
    asyncio.run(http_that_is_not_an_upgrade(host, port))

    assert net.alive(target), f"the target exited; log tail:\n{net.log_tail(target)}"
    assert not tracebacks(net, target), tracebacks(net, target)[:3]
    wait_growing(net, 3, PROGRESS_S, running)
    assert peers(net, target) == len(running) - 1  # its real links survived every fuzzed connection


async def http_that_is_not_an_upgrade(host: str, port: int) -> None:
    """Requests a p2p port must answer without a handshake: garbage, a plain GET, another path, no headers end."""
    for request in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64), b"GET /p2p HTTP/1.1\r\n\r\n",
                    UPGRADE.replace(b"/p2p", b"/elsewhere"), b"GET /p2p HTTP/1.1\r\nX: " + b"y" * 20000):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        try:
            async with asyncio.timeout(CLOSE_S):
                await reader.read(1024)
        except (TimeoutError, ConnectionError):
            pass  # no answer yet or a reset: both fine, what matters is the node afterwards
        finally:
            writer.close()
