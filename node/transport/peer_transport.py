"""Encrypted, mutually authenticated, prioritised websocket links between validators.

One websocket per pair of validators: the side with the lower public key
dials, the other accepts, so there is never a duplicate to reconcile (an
acceptor that gets a second connection from the same peer keeps the newest,
because the old one belongs to a peer that restarted). Each connection first
runs the handshake in :mod:`node.transport.handshake` (hybrid key agreement,
then signed identities checked against the allow-list provider); after it,
every message is one sealed frame (:mod:`node.transport.secure`) whose
plaintext is ``[channel byte] + payload``, and a frame that does not open
closes the link.

Isolation between peers is structural: each peer has its own byte-bounded
queues and its own writer task, ``send`` only appends (or drops), and the
reader of one peer awaits ``on_message`` for that peer alone. So a peer that
stops reading fills only its own queues, and a peer that sends garbage is
reported through ``on_misbehaviour`` and, past a threshold, disconnected.

Before a connection is authenticated it is a stranger's: it holds one of its
source address's connections (:class:`~node.transport.admission.ConnectionCaps`)
and one handshake slot (:class:`~node.transport.admission.HandshakeSlots`, with
slots reserved for the hosts the validators live at), and the whole of it, from
TCP connect or HTTP upgrade to the last handshake frame, must finish within
``handshake_timeout``. A connection that ends early (a reset, a paused peer
resuming after its dialer gave up) is a network event, logged at debug level.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Union

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.http_websocket import WebSocketError

from core.crypto import PublicKey, SigningKey, VerifyingKey
from node.transport.admission import ConnectionCaps, HandshakeSlots, host_weights
from node.transport.handshake import MAX_AUTH_BYTES, Handshake, HandshakeFailed, PeerKeys, Role
from node.transport.link import Socket, run_handshake
from node.transport.listener import Listener, authenticated, peer_host, peer_label, resolve_hosts, split_address
from node.transport.queues import Channel, PeerQueues, PeerStats, QueueLimit
from node.transport.secure import FRAME_OVERHEAD, SecureSession
from node.transport.types import AdmissionStats, BadFrame, FrameTooLarge, PeerInfo, TransportTuning, UnknownPeer

log = logging.getLogger(__name__)

P2P_PATH = "/p2p"
_CHANNELS = frozenset(int(c) for c in Channel)
# A connection that breaks (reset, closed under us, a websocket protocol error) is the network's doing.
NETWORK_ERRORS = (OSError, TimeoutError, aiohttp.ClientError, WebSocketError)

OnMessage = Callable[[bytes, Channel, bytes], Union[Awaitable[None], None]]
OnMisbehaviour = Callable[[Union[bytes, str], str], None]


class _Peer:
    def __init__(self, info: PeerInfo, limits: Mapping[Channel, QueueLimit]) -> None:
        self.info = info
        self.stats = PeerStats()
        self.queues = PeerQueues(limits, self.stats)
        self.ws: Socket | None = None
        self.connections = 0


class PeerTransport:
    """Validator-to-validator messaging; start with :meth:`start`, end with :meth:`stop`.

    ``validator_hosts`` are the hosts genesis lists for the validator set (one
    entry per validator); with the hosts of ``peers`` they get reserved
    handshake slots and larger connection caps.

    ``peer_keys`` is the allow-list, asked at every handshake: the verifying
    key of a validator by its identity, None for anyone else. By default it
    names the Ed25519 keys of ``peers``; the node passes the validator set's
    keys (hybrid ones included), and a changing set is a changing answer. A
    key it names that is not among ``peers`` is refused as ``not_a_peer``
    (this transport has no queues for it).
    """

    def __init__(
        self, *, chain_id: str, key: SigningKey, listen: str | socket.socket, peers: Sequence[PeerInfo],
        on_message: OnMessage, max_message_bytes: int, queue_limits: Mapping[Channel, QueueLimit],
        on_misbehaviour: OnMisbehaviour | None = None, tuning: TransportTuning = TransportTuning(),
        validator_hosts: Iterable[str] = (), peer_keys: PeerKeys | None = None,
        spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]] | None = None,
    ) -> None:
        self._chain_id = chain_id
        self._key = key
        self._own = key.public_key.raw
        self._listen = listen
        self._queue_limits = queue_limits
        self._peers = {p.public_key: _Peer(p, queue_limits) for p in peers if p.public_key != self._own}
        self._peer_keys = peer_keys or self._listed_peer_keys
        self._on_message = on_message
        self._on_misbehaviour = on_misbehaviour
        self._max_message_bytes = max_message_bytes
        # A websocket message is a sealed frame (payload, channel byte, overhead) or a handshake frame.
        self._ws_limit = max(max_message_bytes + 1 + FRAME_OVERHEAD, MAX_AUTH_BYTES + FRAME_OVERHEAD)
        self._tuning = tuning
        # Dialer and writer tasks start through ``spawn``: the runtime's supervisor stops the validator if one fails.
        self._spawn = spawn or (lambda coro, name: asyncio.create_task(coro, name=name))
        weights = host_weights(split_address(p.info.address)[0] for p in self._peers.values())
        for host, count in host_weights(validator_hosts).items():
            weights[host] = max(weights[host], count)
        self._validator_hosts = weights
        self._sockets: set[Socket] = set()
        self._dialers: dict[bytes, asyncio.Task[None]] = {}
        self._listener: Listener | None = None
        self._slots: HandshakeSlots | None = None
        self._caps: ConnectionCaps | None = None
        self._session: aiohttp.ClientSession | None = None
        self._changed = asyncio.Event()
        self._stopping = False
        self.listen_address = ""

    # ---- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        tuning = self._tuning
        try:
            hosts = await resolve_hosts(self._validator_hosts, tuning.handshake_timeout)
            self._slots = HandshakeSlots(
                shared=tuning.max_pending_handshakes, per_address=tuning.max_pending_per_address,
                reserved={h: n * tuning.reserved_handshakes_per_validator for h, n in hosts.items()})
            self._caps = ConnectionCaps(
                per_address=tuning.max_connections_per_address,
                extra={h: n * tuning.max_connections_per_address for h, n in hosts.items()})
            self._listener = Listener(self._accept, self._caps, handshake_timeout=tuning.handshake_timeout,
                                      close_timeout=tuning.close_timeout)
            self.listen_address = await self._listener.start(self._listen)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=tuning.handshake_timeout))
        except BaseException:
            await self.stop()
            raise
        for peer in self._peers.values():
            self._start_dialer(peer)

    async def stop(self) -> None:
        """Cancel dialers, close every socket, then the server and the client session."""
        self._stopping = True
        for task in self._dialers.values():
            task.cancel()
        await asyncio.gather(*self._dialers.values(), return_exceptions=True)
        self._dialers = {}
        await asyncio.gather(*(self._close(ws, WSCloseCode.GOING_AWAY, "shutdown") for ws in list(self._sockets)))
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> PeerTransport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- public API ------------------------------------------------------

    def send(self, peer: bytes, channel: Channel, payload: bytes, *, missing_ok: bool = False) -> bool:
        """Queue ``payload`` for ``peer``; False (and counted) when that channel's budget is spent.
        ``missing_ok``: False, not :class:`UnknownPeer`, for a peer that is not (or no longer) one, since
        the validator set may drop it between a caller's choice and its send."""
        state = self._peers.get(peer)
        if state is None:
            if missing_ok:
                return False
            raise UnknownPeer(f"{peer.hex()} is not a peer of this transport")
        self._check_size(payload)
        return state.queues.push(channel, payload)

    def broadcast(self, channel: Channel, payload: bytes) -> None:
        self._check_size(payload)
        for state in self._peers.values():
            state.queues.push(channel, payload)

    def set_peers(self, peers: Sequence[PeerInfo]) -> None:
        """The validator set changed: a peer no longer listed loses its link and queues, a new one is
        dialled (or awaited, by the dial rule). The allow-list (``peer_keys``) is the caller's to change."""
        wanted = {p.public_key: p for p in peers if p.public_key != self._own}
        for key in [k for k in self._peers if k not in wanted]:
            gone = self._peers.pop(key)
            dialer = self._dialers.pop(key, None)
            if dialer is not None:
                dialer.cancel()
            if gone.ws is not None:
                self._spawn(self._close(gone.ws, WSCloseCode.POLICY_VIOLATION, "no longer a validator"),
                            f"p2p-close-{gone.info.name}")
            log.info("%s is no longer a peer", gone.info.name)
        for key, info in wanted.items():
            if key not in self._peers:
                self._peers[key] = peer = _Peer(info, self._queue_limits)
                if self._session is not None and not self._stopping:
                    self._start_dialer(peer)
                log.info("%s is a peer now", info.name)
        self._notify()

    def connected_peers(self) -> list[bytes]:
        return [k for k, p in self._peers.items() if p.ws is not None]

    def stats(self) -> dict[bytes, PeerStats]:
        """A snapshot of each peer's counters."""
        return {k: replace(p.stats) for k, p in self._peers.items()}

    def admission(self) -> AdmissionStats:
        """Handshakes in progress and connections refused so far (zeros before :meth:`start`)."""
        if self._slots is None or self._caps is None:
            return AdmissionStats()
        return AdmissionStats(self._slots.pending, self._slots.refused, self._caps.refused, self._caps.refused_preauth)

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

    def _listed_peer_keys(self, public_key: bytes) -> VerifyingKey | None:
        return PublicKey(public_key) if public_key in self._peers else None

    def _check_size(self, payload: bytes) -> None:
        if len(payload) > self._max_message_bytes:
            raise FrameTooLarge(f"payload of {len(payload)} bytes exceeds {self._max_message_bytes}")

    def _dials(self, peer: _Peer) -> bool:
        return self._own < peer.info.public_key

    def _start_dialer(self, peer: _Peer) -> None:
        if self._dials(peer):
            self._dialers[peer.info.public_key] = self._spawn(self._dial_loop(peer), f"p2p-dial-{peer.info.name}")

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

    def _deadline(self) -> float:
        """The loop time by which a connection begun now must have finished its handshake."""
        return asyncio.get_running_loop().time() + self._tuning.handshake_timeout

    async def _close(self, ws: Socket, code: int = WSCloseCode.OK, reason: str = "") -> None:
        """Close ``ws``, giving the peer ``close_timeout`` to answer; a stalled peer is cut hard."""
        try:
            async with asyncio.timeout(self._tuning.close_timeout):
                await ws.close(code=code, message=reason.encode()[:120])
        except NETWORK_ERRORS:
            pass

    async def _dial_loop(self, peer: _Peer) -> None:
        delay = self._tuning.backoff_initial
        while True:
            try:
                if await self._dial_once(peer):
                    delay = self._tuning.backoff_initial
            except NETWORK_ERRORS as exc:
                log.debug("dial %s failed: %r", peer.info.name, exc)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._tuning.backoff_max)

    async def _dial_once(self, peer: _Peer) -> bool:
        """One connection attempt; True when it authenticated (and has since closed)."""
        assert self._session is not None
        deadline = self._deadline()
        async with asyncio.timeout_at(deadline):  # a listener that accepts but never answers is given up on
            ws = await self._session.ws_connect(
                f"http://{peer.info.address}{P2P_PATH}", max_msg_size=self._ws_limit,
                heartbeat=self._tuning.heartbeat, timeout=aiohttp.ClientWSTimeout(ws_close=self._tuning.close_timeout))
        self._sockets.add(ws)
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    session = await self._handshake(ws, Role.DIALER, expected=peer.info.public_key)
            except HandshakeFailed as exc:
                self._report(peer.info.address, exc.slug)
                await self._close(ws, WSCloseCode.POLICY_VIOLATION, exc.slug)
                return False
            await self._serve(peer, ws, session)
            return True
        finally:
            self._sockets.discard(ws)
            await self._close(ws)

    async def _accept(self, request: web.BaseRequest) -> web.StreamResponse:
        """Admit, upgrade and authenticate one incoming connection, then serve it until it closes."""
        if request.path != P2P_PATH:
            raise web.HTTPNotFound()
        assert self._slots is not None
        host = peer_host(request.transport) or "unknown"
        slot = self._slots.acquire(host)
        if slot is None:
            raise web.HTTPServiceUnavailable(text="too many handshakes in progress")
        ws = web.WebSocketResponse(
            max_msg_size=self._ws_limit, heartbeat=self._tuning.heartbeat,
            timeout=self._tuning.close_timeout)
        remote = peer_label(request.transport)
        upgraded = False
        try:
            try:
                async with asyncio.timeout_at(self._deadline()):
                    await ws.prepare(request)
                    upgraded = True
                    self._sockets.add(ws)
                    if self._stopping:
                        await self._close(ws, WSCloseCode.GOING_AWAY, "shutdown")
                        return ws
                    session = await self._handshake(ws, Role.ACCEPTOR, expected=None,
                                                    on_established=lambda: authenticated(request))
            finally:
                self._slots.release(slot)
            peer = self._peers.get(session.peer)
            if peer is None or self._dials(peer):
                reason = "wrong_direction" if peer is not None else "not_a_peer"
                self._report(session.peer, reason)
                await self._close(ws, WSCloseCode.POLICY_VIOLATION, reason)
                return ws
            await self._serve(peer, ws, session)
        except HandshakeFailed as exc:
            self._report(remote, exc.slug)
            await self._close(ws, WSCloseCode.POLICY_VIOLATION, exc.slug)
        except NETWORK_ERRORS as exc:
            log.debug("p2p connection from %s ended: %r", remote, exc)
        finally:
            if upgraded:
                self._sockets.discard(ws)
                await self._close(ws)
        # A connection that died before its upgrade was answered gets a plain response nobody reads:
        # a half-prepared websocket cannot be finished.
        return ws if upgraded else web.Response(status=400, text="connection ended during the upgrade")

    async def _handshake(self, ws: Socket, role: Role, *, expected: bytes | None,
                         on_established: Callable[[], None] | None = None) -> SecureSession:
        return await run_handshake(ws, Handshake(
            role, chain_id=self._chain_id, key=self._key, listen=self.listen_address, peer_keys=self._peer_keys,
            max_plaintext=self._max_message_bytes + 1, expected=expected), on_established)

    async def _serve(self, peer: _Peer, ws: Socket, session: SecureSession) -> None:
        """Run an authenticated connection until it closes; the newest connection wins."""
        old, peer.ws = peer.ws, ws
        if old is not None:
            await self._close(old, WSCloseCode.GOING_AWAY, "replaced")
        peer.connections += 1
        peer.stats.reconnects = peer.connections - 1
        peer.stats.connected = True
        self._notify()
        log.info("connected to %s", peer.info.name)
        writer = self._spawn(self._write_loop(peer, ws, session), f"p2p-write-{peer.info.name}")
        try:
            await self._read_loop(peer, ws, session)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if peer.ws is ws:
                peer.ws = None
                peer.stats.connected = False
                self._notify()
                log.info("disconnected from %s", peer.info.name)

    async def _write_loop(self, peer: _Peer, ws: Socket, session: SecureSession) -> None:
        try:
            while peer.ws is ws:
                item = peer.queues.pop()
                if item is None:
                    await peer.queues.ready.wait()
                    continue
                channel, payload = item
                await ws.send_bytes(session.sealer.seal(bytes((channel,)) + payload))
                peer.stats.sent += 1
        except NETWORK_ERRORS as exc:
            log.debug("write to %s failed: %r", peer.info.name, exc)
            await self._close(ws)

    async def _read_loop(self, peer: _Peer, ws: Socket, session: SecureSession) -> None:
        """Deliver each frame that opens. One that does not (or any text frame) ends the link: its sender is
        not the peer that authenticated, or the stream was tampered with. A frame that opens but names no
        channel is the peer's own bug, counted up to ``malformed_limit``."""
        key = peer.info.public_key
        malformed = 0
        while True:
            msg = await ws.receive()
            if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                try:
                    if msg.type is WSMsgType.TEXT:
                        raise BadFrame("a text frame on an encrypted link")
                    plaintext = session.opener.open(bytes(msg.data))
                except (BadFrame, FrameTooLarge) as exc:
                    peer.stats.malformed += 1
                    slug = "oversized_frame" if isinstance(exc, FrameTooLarge) else "bad_frame"
                    self._report(key, slug)
                    await self._close(ws, WSCloseCode.POLICY_VIOLATION, slug)
                    return
                if plaintext and plaintext[0] in _CHANNELS:
                    peer.stats.received += 1
                    await self._deliver(key, Channel(plaintext[0]), plaintext[1:])
                    continue
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
                else:
                    log.debug("connection to %s failed: %r", peer.info.name, msg.data)
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
