"""The p2p listening socket: aiohttp's low-level server, with open connections capped per source address.

An ``aiohttp.web.Application`` gives no hook between accepting a TCP
connection and reading its request; the low-level :class:`aiohttp.web.Server`
does, because it is the protocol factory: it builds one
:class:`aiohttp.web.RequestHandler` per connection. :class:`_CappedHandler`
counts the connection against its source address in ``connection_made`` and
aborts it at once when the address is over its cap, before a byte of it is
parsed. The server's ``keepalive_timeout`` is the handshake timeout, so a
connection that never sends (or never finishes) its HTTP request is closed as
quickly as one that never says hello after the upgrade; and a request the
HTTP parser refuses (an overlong header, garbage) is a remote's doing, logged
at debug level rather than as aiohttp's error-level traceback. Until the
handler calls :func:`authenticated`, the bytes of an upgraded connection pass
:class:`~node.transport.preauth.PreAuthFrames`, so a stranger's frame can be no
larger than a handshake frame, refused from its header before it is buffered.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from core.errors import InvalidInput
from node.transport.admission import ConnectionCaps, normalize_host
from node.transport.preauth import PreAuthFrames

log = logging.getLogger(__name__)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidInput(f"address {address!r} is not host:port")
    return host, int(port)


def peer_host(transport: asyncio.BaseTransport | None) -> str | None:
    """The source IP of a TCP connection (None for a transport without one)."""
    peername = transport.get_extra_info("peername") if transport is not None else None
    return str(peername[0]) if isinstance(peername, tuple) and peername else None


def peer_label(transport: asyncio.BaseTransport | None) -> str:
    """``ip:port`` of the other end, for logs and misbehaviour reports."""
    peername = transport.get_extra_info("peername") if transport is not None else None
    return f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) and len(peername) >= 2 else "unknown"


async def resolve_hosts(weights: Mapping[str, int], timeout: float) -> Counter[str]:
    """Map each host (an IP or a DNS name) to the addresses its connections come from, keeping its weight.

    Connections are told apart by source IP, so a validator host given by name
    only protects that validator once it is resolved; a name that does not
    resolve is skipped with a warning (that validator then competes for the
    strangers' handshake slots until the next start).
    """
    loop = asyncio.get_running_loop()
    resolved: Counter[str] = Counter()
    for host, weight in weights.items():
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            log.warning("cannot resolve validator host %s, it gets no reserved handshake slots: %s", host, exc)
            continue
        for address in {normalize_host(str(info[4][0])) for info in infos}:
            resolved[address] += weight
    return resolved


class _CappedHandler(web.RequestHandler):
    """A request handler that holds one unit of its source address's connection cap while it is open."""

    def __init__(self, manager: web.Server, caps: ConnectionCaps, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._caps = caps
        self._counted: str | None = None
        self._refusing = False
        self._preauth: PreAuthFrames | None = PreAuthFrames()

    def authenticated(self) -> None:
        """The peer proved a validator key: its frames are bounded by the websocket's own limit from now on."""
        self._preauth = None

    def set_parser(self, parser: Any, data_received_cb: Callable[[], None] | None = None) -> None:
        """The websocket upgrade: bytes that came with the request are checked before the parser sees them."""
        if self._preauth is not None and self._message_tail and not self._preauth.feed(self._message_tail):
            self._refuse_preauth()
            return
        super().set_parser(parser, data_received_cb)

    def data_received(self, data: bytes) -> None:
        if self._preauth is not None and self._payload_parser is not None and not self._preauth.feed(data):
            self._refuse_preauth()
            return
        super().data_received(data)

    def _refuse_preauth(self) -> None:
        assert self._preauth is not None
        log.debug("refused p2p connection from %s: it %s", peer_label(self.transport), self._preauth.refused)
        self._caps.refused_preauth += 1
        if self.transport is not None:
            self.transport.abort()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp logs every request its parser refuses (a 4xx) with a traceback at error level; on a port
        open to the network that is a remote's malformed bytes, so it is a debug line here. A 5xx (a bug
        in the handler) still logs as aiohttp does."""
        self._refusing = status < 500
        try:
            return super().handle_error(request, status, exc, message)
        finally:
            self._refusing = False

    def log_exception(self, *args: Any, **kw: Any) -> None:
        if self._refusing:
            log.debug("refused a malformed HTTP request on the p2p port from %s: %r", peer_label(self.transport),
                      kw.get("exc_info"))
            return
        super().log_exception(*args, **kw)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        host = peer_host(transport)
        if host is None:
            return
        if self._caps.admit(host):
            self._counted = host
        else:
            log.debug("refused a p2p connection from %s: too many open from that address", host)
            assert isinstance(transport, asyncio.Transport)
            transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted is not None:
            self._caps.release(self._counted)
            self._counted = None
        super().connection_lost(exc)


def authenticated(request: web.BaseRequest) -> None:
    """Lift the pre-authentication frame bound of ``request``'s connection: its peer proved a validator key."""
    protocol = request.protocol
    if isinstance(protocol, _CappedHandler):
        protocol.authenticated()


class _CappedServer(web.Server):
    def __init__(self, handler: Handler, caps: ConnectionCaps, **handler_args: Any) -> None:
        super().__init__(handler, **handler_args)
        self._caps = caps
        self._handler_args = handler_args
        self._handler_loop = asyncio.get_running_loop()

    def __call__(self) -> web.RequestHandler:
        return _CappedHandler(self, self._caps, loop=self._handler_loop, **self._handler_args)


class Listener:
    """Serves ``handler`` on the p2p address; :meth:`start` returns the address actually bound."""

    def __init__(self, handler: Handler, caps: ConnectionCaps, *, handshake_timeout: float,
                 close_timeout: float) -> None:
        self._handler = handler
        self._caps = caps
        self._handshake_timeout = handshake_timeout
        self._close_timeout = close_timeout
        self._runner: web.ServerRunner | None = None

    async def start(self, listen: str | socket.socket) -> str:
        server = _CappedServer(self._handler, self._caps, keepalive_timeout=self._handshake_timeout,
                               access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=self._close_timeout)
        await self._runner.setup()
        if isinstance(listen, socket.socket):
            site: web.BaseSite = web.SockSite(self._runner, listen)
        else:
            host, port = split_address(listen)
            site = web.TCPSite(self._runner, host, port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
