"""The aiohttp application: ``POST /rpc``, ``GET /ws`` and ``GET /metrics``.

HTTP rules on top of the JSON-RPC ones in :mod:`node.rpc.dispatch`: only POST
(405 otherwise) with a JSON content type (415 otherwise); bodies above
``RpcLimits.max_body_bytes`` get 413 without being read; a response that is
only for notifications is 204 with no body. Every error status still carries a
JSON-RPC error object, so clients parse one format (except the 400 aiohttp
itself answers to a request head it cannot parse). JSON-RPC errors travel with
HTTP 200, as the spec's transport-agnostic answer.

Bounds in bytes and time (:class:`RpcLimits`): a request head must arrive
within ``header_timeout_s`` of the connection opening or of its previous
response (aiohttp's keep-alive timer, which also closes a connection idle that
long), its lines and header count are capped, and its body must arrive within
``body_timeout_s`` (408 otherwise), and a response (a websocket answer or
notification too) must drain to the client within ``write_timeout_s``, or the
connection is cut and counted in ``fbci_rpc_slow_readers``: a client that asks
for large answers and reads none of them holds neither a connection nor the
answers' bytes for long. :func:`start_rpc_server` caps the open
connections per address and in all (:mod:`node.rpc.connections`), so a
client that opens sockets and never finishes a request cannot exhaust the
node's file descriptors. A client that hangs up cancels its handler, so a
commit waiter never outlives its socket.

The client address used for rate limiting is the TCP peer; a node behind a
reverse proxy would rate-limit the proxy (forwarded headers are not trusted).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from core.api import Query
from core.errors import FbciError, InvalidRequest, LimitExceeded, Timeout
from node.rpc.admission import Admission
from node.rpc.connections import (
    ConnectionGuard, HttpErrorLog, LogThrottle, default_max_connections, install_accept_error_handler, one_line,
)
from node.rpc.dispatch import Dispatcher
from node.rpc.methods import BlobApi, CallContext, CommittedLookup, ReadGate, build_methods
from node.rpc.node_api import NodeApi, OnMisbehaviour, RateLimiter, SignatureCheck
from node.rpc.websocket import serve_websocket

log = logging.getLogger(__name__)

JSON_CONTENT_TYPES = frozenset({"application/json", "application/json-rpc", "application/jsonrequest"})


@dataclass(frozen=True)
class RpcLimits:
    max_body_bytes: int = 1 << 20
    """HTTP body and websocket message limit."""
    max_batch: int = 100
    max_tx_bytes: int = 256 * 1024
    """Largest encoded transaction accepted by tx_submit (its hex is twice this)."""
    ws_max_subscriptions: int = 16
    ws_max_pending: int = 256
    """Undelivered events per subscription before the client is cut off as too slow."""
    ws_heartbeat_s: float | None = 30.0
    header_timeout_s: float = 10.0
    """A request head must be complete this long after the connection opened or its previous response
    was sent; a keep-alive connection idle this long is closed too."""
    body_timeout_s: float = 30.0
    """The whole body must have arrived this long after its head (408 otherwise)."""
    write_timeout_s: float = 30.0
    """A response, or one websocket message, must have drained to the client this long after it was written."""
    max_line_bytes: int = 8190
    """Longest request line and longest header field."""
    max_headers: int = 32
    max_connections_per_address: int = 128
    """Open connections one client address may hold: above the 100 of an aiohttp client's pool."""
    max_connections: int | None = None
    """Open connections in all; ``None``: half the process's open-file limit."""
    log_interval_s: float = 10.0
    """Refused connections and malformed requests are logged once per interval, with a count."""


class RpcMetrics:
    """The RPC server's series, registered in the node's registry next to the node's own gauges."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter("fbci_rpc_requests", "JSON-RPC calls by method and error code (0 = success)",
                                ["method", "code"], registry=registry)
        self.ws_connections = Gauge("fbci_rpc_ws_connections", "Open websocket connections", registry=registry)
        self.connections = Gauge("fbci_rpc_connections", "Open RPC connections", registry=registry)
        self.connections_refused = Counter("fbci_rpc_connections_refused",
                                           "Connections refused over the per-address or the total limit",
                                           ["scope"], registry=registry)
        self.slow_readers = Counter("fbci_rpc_slow_readers", "Connections cut because the client read too slowly",
                                    ["transport"], registry=registry)
        self._children: dict[tuple[str, int], Any] = {}

    def record(self, method: str, code: int) -> None:
        child = self._children.get((method, code))
        if child is None:  # labels() locks and builds the key on every call; keep each child once made
            child = self._children[(method, code)] = self.requests.labels(method, str(code))
        child.inc()


DISPATCHER = web.AppKey("fbci_rpc_dispatcher", Dispatcher)
API = web.AppKey("fbci_rpc_api", NodeApi)
LIMITS = web.AppKey("fbci_rpc_limits", RpcLimits)
METRICS = web.AppKey("fbci_rpc_metrics", RpcMetrics)
WEBSOCKETS = web.AppKey("fbci_rpc_websockets", weakref.WeakSet[web.WebSocketResponse])


def _error_response(status: int, exc: FbciError, dispatcher: Dispatcher,
                    headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=dispatcher.error_body(exc), content_type="application/json",
                        headers=headers)


def _closing(response: web.Response) -> web.Response:
    """The connection closes after this answer: what is left of the body is not worth reading."""
    response.force_close()
    return response


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or ``None`` as soon as it is known to exceed ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def handle_rpc(request: web.Request) -> web.StreamResponse:
    dispatcher, limits = request.app[DISPATCHER], request.app[LIMITS]
    if request.method != "POST":
        return _error_response(405, InvalidRequest("send JSON-RPC requests with POST"), dispatcher,
                               {"Allow": "POST"})
    if request.content_type not in JSON_CONTENT_TYPES:
        return _error_response(415, InvalidRequest("Content-Type must be application/json"), dispatcher)
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            body = await _read_limited(request, limits.max_body_bytes)
    except TimeoutError:
        return _closing(_error_response(
            408, Timeout(f"the request body did not arrive within {limits.body_timeout_s} s"), dispatcher))
    except web.RequestPayloadError as exc:  # a body that does not decompress: the peer's fault
        return _closing(_error_response(400, InvalidRequest(f"the request body could not be read: {one_line(exc)}"),
                                        dispatcher))
    if body is None:
        return _error_response(413, LimitExceeded(f"request body is larger than {limits.max_body_bytes} bytes",
                                                  data={"limit": limits.max_body_bytes}), dispatcher)
    reply = await dispatcher.handle(body, CallContext(client=request.remote or "unknown"))
    if reply is None:
        return web.Response(status=204)
    return await _send(request, web.Response(body=reply, content_type="application/json"))


async def _send(request: web.Request, response: web.Response) -> web.Response:
    """Write ``response`` now, within the write timeout; a client that does not read it is cut off."""
    limits, metrics = request.app[LIMITS], request.app[METRICS]
    try:
        async with asyncio.timeout(limits.write_timeout_s):
            await response.prepare(request)
            await response.write_eof()
    except TimeoutError:
        metrics.slow_readers.labels("http").inc()
        log.debug("RPC client %s read no answer within %.0f s; disconnecting it", request.remote,
                  limits.write_timeout_s)
        if request.transport is not None:
            request.transport.abort()
    return response


async def handle_ws(request: web.Request) -> web.StreamResponse:
    app, limits = request.app, request.app[LIMITS]
    metrics = app[METRICS]
    metrics.ws_connections.inc()
    try:
        return await serve_websocket(request, app[DISPATCHER], app[API].events,
                                     max_message_bytes=limits.max_body_bytes,
                                     max_subscriptions=limits.ws_max_subscriptions,
                                     max_pending=limits.ws_max_pending, heartbeat_s=limits.ws_heartbeat_s,
                                     on_open=app[WEBSOCKETS].add, write_timeout_s=limits.write_timeout_s,
                                     on_slow_reader=metrics.slow_readers.labels("ws").inc)
    finally:
        metrics.ws_connections.dec()


async def handle_metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS].registry
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _close_websockets(app: web.Application) -> None:
    """On shutdown, close open websockets so the runner need not wait out its timeout for them."""
    for ws in list(app[WEBSOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def create_app(api: NodeApi, queries: Iterable[Query[Any, Any]] = (), *, limits: RpcLimits | None = None,
               limiter: RateLimiter | None = None, signer_limiter: RateLimiter | None = None,
               metrics_registry: CollectorRegistry | None = None, on_misbehaviour: OnMisbehaviour | None = None,
               chain_id: str | None = None, signatures: SignatureCheck | None = None,
               version: str = "0.1.0", reads: ReadGate | None = None,
               committed: CommittedLookup | None = None, offload: Executor | None = None,
               blobs: BlobApi | None = None) -> web.Application:
    """The RPC application for ``api``, serving each of ``queries`` as the method of its path.

    ``limiter`` is charged one token per call, keyed ``"addr:<client ip>"``;
    ``signer_limiter`` (default: ``limiter``) one per new transaction whose
    signature verified, keyed ``"signer:<public key hex>"``, and one per
    transaction that proves no signer, keyed ``"unproven:<client ip>"``.
    ``signatures`` is the node's cache of verified signatures (the mempool
    then finds each one there), ``chain_id`` this chain's id (see
    :class:`node.rpc.methods.TxAuth`), ``committed`` the committed-transaction
    index (a replayed committed transaction is answered without a charge), ``offload`` where state queries'
    answers are serialised, off the event loop, ``blobs`` the blob store the blob methods serve (none without
    it). ``metrics_registry`` is where the request counter is registered (a fresh one when omitted).
    """
    limits = limits or RpcLimits()
    registry = metrics_registry if metrics_registry is not None else CollectorRegistry()
    metrics = RpcMetrics(registry)
    admission = Admission(limiter, signer_limiter if signer_limiter is not None else limiter, on_misbehaviour)
    methods = build_methods(api, admission, queries, max_tx_bytes=limits.max_tx_bytes, chain_id=chain_id,
                            signatures=signatures, reads=reads, committed=committed, offload=offload, blobs=blobs)
    http_log = HttpErrorLog(logging.getLogger("node.rpc.http"),
                            LogThrottle(logging.getLogger("node.rpc.http"), limits.log_interval_s))
    app = web.Application(client_max_size=limits.max_body_bytes, handler_args={
        "keepalive_timeout": limits.header_timeout_s, "max_line_size": limits.max_line_bytes,
        "max_field_size": limits.max_line_bytes, "max_headers": limits.max_headers, "logger": http_log,
        "handler_cancellation": True,
    })
    app[API] = api
    app[LIMITS] = limits
    app[METRICS] = metrics
    app[DISPATCHER] = Dispatcher(methods, admission, max_batch=limits.max_batch, record=metrics.record,
                                 version=version)
    app[WEBSOCKETS] = weakref.WeakSet()
    app.on_shutdown.append(_close_websockets)
    app.router.add_route("*", "/rpc", handle_rpc)
    app.router.add_get("/ws", handle_ws)
    app.router.add_get("/metrics", handle_metrics)
    return app


@dataclass(frozen=True)
class RpcServer:
    """A started server: ``addresses`` gives the bound port when 0 was asked; ``await cleanup()`` stops it."""

    runner: web.AppRunner
    listener: asyncio.Server
    restore_exception_handler: Callable[[], None]

    @property
    def addresses(self) -> list[Any]:
        return [sock.getsockname() for sock in self.listener.sockets]

    async def cleanup(self) -> None:
        self.listener.close()  # stop accepting; the runner then closes the open connections
        await self.runner.cleanup()
        self.restore_exception_handler()


async def start_rpc_server(app: web.Application, host: str, port: int,
                           ssl_context: ssl.SSLContext | None = None) -> RpcServer:
    """Start serving ``app`` behind the connection limits of its :class:`RpcLimits` (over TLS with
    ``ssl_context``: :func:`node.rpc.tls.server_ssl_context`)."""
    limits, metrics = app[LIMITS], app[METRICS]
    loop = asyncio.get_running_loop()
    throttle = LogThrottle(log, limits.log_interval_s, loop.call_later)
    guard = ConnectionGuard(limits.max_connections_per_address, limits.max_connections or default_max_connections(),
                            throttle, on_refused=lambda scope: metrics.connections_refused.labels(scope).inc())
    metrics.connections.set_function(lambda: guard.open_total)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    restore = install_accept_error_handler(loop, throttle)
    try:
        assert runner.server is not None  # setup() made it
        listener = await loop.create_server(guard.factory(runner.server), host, port, backlog=128,
                                            ssl=ssl_context)
    except BaseException:
        restore()
        await runner.cleanup()
        raise
    return RpcServer(runner, listener, restore)
