"""Authenticated, prioritised websocket links between genesis validators.

One websocket per pair of validators: the side with the lower public key
dials, the other accepts, so there is never a duplicate to reconcile (an
acceptor that gets a second connection from the same peer keeps the newest,
because the old one belongs to a peer that restarted). Each connection first
runs the challenge-response handshake in :mod:`node.transport.handshake`;
after it, every binary message is ``[channel byte] + payload``.

Isolation between peers is structural: each peer has its own bounded queues
and its own writer task, ``send`` only appends (or drops), and the reader of
one peer awaits ``on_message`` for that peer alone. So a peer that stops
reading fills only its own queues, and a peer that sends garbage is reported
through ``on_misbehaviour`` and, past a threshold, disconnected.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Union

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.http_websocket import WebSocketError

from core.crypto import PrivateKey
from core.errors import InvalidInput, LimitExceeded
from node.transport.handshake import HandshakeFailed, Hello, Role, auth_message, check_hello, verify_auth
from node.transport.queues import Channel, PeerQueues, PeerStats

log = logging.getLogger(__name__)

P2P_PATH = "/p2p"
_CHANNELS = frozenset(int(c) for c in Channel)

OnMessage = Callable[[bytes, Channel, bytes], Union[Awaitable[None], None]]
OnMisbehaviour = Callable[[Union[bytes, str], str], None]
_Socket = Union[web.WebSocketResponse, aiohttp.ClientWebSocketResponse]


@dataclass(frozen=True)
class PeerInfo:
    """A validator from genesis: its name, key, and where to dial it (possibly a proxy)."""

    name: str
    public_key: bytes
    address: str


@dataclass(frozen=True)
class TransportTuning:
    """Timing knobs; the defaults suit a LAN, tests shorten them."""

    handshake_timeout: float = 5.0
    heartbeat: float = 10.0
    close_timeout: float = 1.0
    backoff_initial: float = 0.05
    backoff_max: float = 5.0
    malformed_limit: int = 10
    max_pending_handshakes: int = 64


class UnknownPeer(InvalidInput):
    reason = "unknown_peer"


class FrameTooLarge(LimitExceeded):
    reason = "frame_too_large"


class _Peer:
    def __init__(self, info: PeerInfo, limits: Mapping[Channel, int]) -> None:
        self.info = info
        self.stats = PeerStats()
        self.queues = PeerQueues(limits, self.stats)
        self.ws: _Socket | None = None
        self.connections = 0


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidInput(f"address {address!r} is not host:port")
    return host, int(port)


class PeerTransport:
    """Validator-to-validator messaging; start with :meth:`start`, end with :meth:`stop`."""

    def __init__(
        self, *, chain_id: str, key: PrivateKey, listen: str | socket.socket, peers: Sequence[PeerInfo],
        on_message: OnMessage, max_message_bytes: int, queue_limits: Mapping[Channel, int],
        on_misbehaviour: OnMisbehaviour | None = None, tuning: TransportTuning = TransportTuning(),
    ) -> None:
        self._chain_id = chain_id
        self._key = key
        self._own = key.public_key.raw
        self._listen = listen
        self._peers = {p.public_key: _Peer(p, queue_limits) for p in peers if p.public_key != self._own}
        self._on_message = on_message
        self._on_misbehaviour = on_misbehaviour
        self._max_message_bytes = max_message_bytes
        self._tuning = tuning
        self._sockets: set[_Socket] = set()
        self._dialers: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._changed = asyncio.Event()
        self._stopping = False
        self._pending_handshakes = 0
        self.listen_address = ""

    # ---- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(P2P_PATH, self._accept)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._tuning.close_timeout)
        try:
            await self._runner.setup()
            if isinstance(self._listen, socket.socket):
                site: web.BaseSite = web.SockSite(self._runner, self._listen)
            else:
                host, port = _split_address(self._listen)
                site = web.TCPSite(self._runner, host, port)
            await site.start()
            host, port = self._runner.addresses[0][:2]
            self.listen_address = f"{host}:{port}"
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._tuning.handshake_timeout))
        except BaseException:
            await self.stop()
            raise
        self._dialers = [asyncio.create_task(self._dial_loop(p)) for p in self._peers.values() if self._dials(p)]

    async def stop(self) -> None:
        """Cancel dialers, close every socket, then the server and the client session."""
        self._stopping = True
        for task in self._dialers:
            task.cancel()
        await asyncio.gather(*self._dialers, return_exceptions=True)
        self._dialers = []
        await asyncio.gather(*(self._close(ws, WSCloseCode.GOING_AWAY, "shutdown") for ws in list(self._sockets)))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> PeerTransport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- public API ------------------------------------------------------

    def send(self, peer: bytes, channel: Channel, payload: bytes) -> bool:
        """Queue ``payload`` for ``peer``; False (and counted) when that queue is full."""
        state = self._peers.get(peer)
        if state is None:
            raise UnknownPeer(f"{peer.hex()} is not a peer of this transport")
        self._check_size(payload)
        return state.queues.push(channel, payload)

    def broadcast(self, channel: Channel, payload: bytes) -> None:
        self._check_size(payload)
        for state in self._peers.values():
            state.queues.push(channel, payload)

    def connected_peers(self) -> list[bytes]:
        return [k for k, p in self._peers.items() if p.ws is not None]

    def stats(self) -> dict[bytes, PeerStats]:
        """A snapshot of each peer's counters."""
        return {k: replace(p.stats) for k, p in self._peers.items()}

    def peer_names(self) -> dict[bytes, str]:
        return {k: p.info.name for k, p in self._peers.items()}

    async def wait_connected(self, peers: Iterable[bytes] | None = None, *, timeout: float) -> None:
        """Return once all ``peers`` (default: every peer) are connected; TimeoutError otherwise."""
        wanted = set(self._peers if peers is None else peers)
        await self.wait_peers(lambda connected: wanted <= connected, timeout=timeout)

    async def wait_peers(self, condition: Callable[[set[bytes]], bool], *, timeout: float) -> None:
        """Return once ``condition(connected peer keys)`` holds; checked on every (dis)connection."""
        async with asyncio.timeout(timeout):
            while not condition(set(self.connected_peers())):
                await self._changed.wait()

    # ---- internals -------------------------------------------------------

    def _check_size(self, payload: bytes) -> None:
        if len(payload) > self._max_message_bytes:
            raise FrameTooLarge(f"payload of {len(payload)} bytes exceeds {self._max_message_bytes}")

    def _dials(self, peer: _Peer) -> bool:
        return self._own < peer.info.public_key

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _report(self, who: bytes | str, reason: str) -> None:
        label = who.hex()[:16] if isinstance(who, bytes) else who
        log.warning("peer %s misbehaved: %s", label, reason)
        if self._on_misbehaviour is not None:
            try:
                self._on_misbehaviour(who, reason)
            except Exception:
                log.exception("on_misbehaviour callback failed")

    async def _close(self, ws: _Socket, code: int = WSCloseCode.OK, reason: str = "") -> None:
        """Close ``ws``, giving the peer ``close_timeout`` to answer; a stalled peer is cut hard."""
        try:
            async with asyncio.timeout(self._tuning.close_timeout):
                await ws.close(code=code, message=reason.encode()[:120])
        except (TimeoutError, ConnectionError, aiohttp.ClientError):
            pass

    async def _dial_loop(self, peer: _Peer) -> None:
        delay = self._tuning.backoff_initial
        while True:
            try:
                if await self._dial_once(peer):
                    delay = self._tuning.backoff_initial
            except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                log.debug("dial %s failed: %r", peer.info.name, exc)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._tuning.backoff_max)

    async def _dial_once(self, peer: _Peer) -> bool:
        """One connection attempt; True when it authenticated (and has since closed)."""
        assert self._session is not None
        ws = await self._session.ws_connect(
            f"http://{peer.info.address}{P2P_PATH}", max_msg_size=self._max_message_bytes + 1,
            heartbeat=self._tuning.heartbeat, timeout=aiohttp.ClientWSTimeout(ws_close=self._tuning.close_timeout))
        self._sockets.add(ws)
        try:
            try:
                await self._handshake(ws, Role.DIALER, expected=peer.info.public_key)
            except HandshakeFailed as exc:
                self._report(peer.info.address, exc.slug)
                await self._close(ws, WSCloseCode.POLICY_VIOLATION, exc.slug)
                return False
            await self._serve(peer, ws)
            return True
        finally:
            self._sockets.discard(ws)
            await self._close(ws)

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        if self._pending_handshakes >= self._tuning.max_pending_handshakes:
            raise web.HTTPServiceUnavailable(text="too many handshakes in progress")
        ws = web.WebSocketResponse(
            max_msg_size=self._max_message_bytes + 1, heartbeat=self._tuning.heartbeat,
            timeout=self._tuning.close_timeout)
        await ws.prepare(request)
        peername = request.transport.get_extra_info("peername") if request.transport else None
        remote = f"{peername[0]}:{peername[1]}" if peername else "unknown"
        if self._stopping:
            await self._close(ws, WSCloseCode.GOING_AWAY, "shutdown")
            return ws
        self._sockets.add(ws)
        try:
            self._pending_handshakes += 1
            try:
                key = await self._handshake(ws, Role.ACCEPTOR, expected=None)
            except HandshakeFailed as exc:
                self._report(remote, exc.slug)
                await self._close(ws, WSCloseCode.POLICY_VIOLATION, exc.slug)
                return ws
            except (TimeoutError, ConnectionError):
                return ws
            finally:
                self._pending_handshakes -= 1
            peer = self._peers[key]
            if self._dials(peer):
                self._report(key, "wrong_direction")
                await self._close(ws, WSCloseCode.POLICY_VIOLATION, "wrong_direction")
                return ws
            await self._serve(peer, ws)
        finally:
            self._sockets.discard(ws)
            await self._close(ws)
        return ws

    async def _handshake(self, ws: _Socket, role: Role, *, expected: bytes | None) -> bytes:
        async with asyncio.timeout(self._tuning.handshake_timeout):
            ours = Hello.fresh(self._chain_id, self._own, self.listen_address)
            await ws.send_bytes(ours.encode())
            theirs = Hello.decode(await self._handshake_frame(ws))
            check_hello(theirs, chain_id=self._chain_id, own_key=self._own, allowed=self._peers.keys(),
                        expected=expected)
            await ws.send_bytes(auth_message(self._key, role, ours, theirs))
            their_role = Role.ACCEPTOR if role is Role.DIALER else Role.DIALER
            verify_auth(await self._handshake_frame(ws), chain_id=self._chain_id, their_role=their_role,
                        theirs=theirs, ours=ours)
            return theirs.public_key

    @staticmethod
    async def _handshake_frame(ws: _Socket) -> bytes:
        msg = await ws.receive()
        if msg.type is WSMsgType.BINARY:
            return bytes(msg.data)
        if msg.type is WSMsgType.TEXT:
            raise HandshakeFailed("malformed_handshake", "handshake frames are binary")
        raise ConnectionError(f"connection ended during the handshake ({msg.type.name})")

    async def _serve(self, peer: _Peer, ws: _Socket) -> None:
        """Run an authenticated connection until it closes; the newest connection wins."""
        old, peer.ws = peer.ws, ws
        if old is not None:
            await self._close(old, WSCloseCode.GOING_AWAY, "replaced")
        peer.connections += 1
        peer.stats.reconnects = peer.connections - 1
        peer.stats.connected = True
        self._notify()
        log.info("connected to %s", peer.info.name)
        writer = asyncio.create_task(self._write_loop(peer, ws))
        try:
            await self._read_loop(peer, ws)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if peer.ws is ws:
                peer.ws = None
                peer.stats.connected = False
                self._notify()
                log.info("disconnected from %s", peer.info.name)

    async def _write_loop(self, peer: _Peer, ws: _Socket) -> None:
        try:
            while peer.ws is ws:
                item = peer.queues.pop()
                if item is None:
                    await peer.queues.ready.wait()
                    continue
                channel, payload = item
                await ws.send_bytes(bytes((channel,)) + payload)
                peer.stats.sent += 1
        except (ConnectionError, aiohttp.ClientError) as exc:
            log.debug("write to %s failed: %r", peer.info.name, exc)
            await self._close(ws)

    async def _read_loop(self, peer: _Peer, ws: _Socket) -> None:
        key = peer.info.public_key
        malformed = 0
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.BINARY and msg.data and msg.data[0] in _CHANNELS:
                peer.stats.received += 1
                await self._deliver(key, Channel(msg.data[0]), bytes(msg.data[1:]))
            elif msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                malformed += 1
                peer.stats.malformed += 1
                self._report(key, "malformed_frame")
                if malformed >= self._tuning.malformed_limit:
                    await self._close(ws, WSCloseCode.POLICY_VIOLATION, "too many malformed frames")
                    return
            elif msg.type is WSMsgType.ERROR:
                if isinstance(msg.data, WebSocketError) and msg.data.code == WSCloseCode.MESSAGE_TOO_BIG:
                    peer.stats.malformed += 1
                    self._report(key, "oversized_frame")
                return
            else:
                return

    async def _deliver(self, key: bytes, channel: Channel, payload: bytes) -> None:
        try:
            result = self._on_message(key, channel, payload)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("on_message failed for a %s message", channel.name)
