"""The aiohttp application: ``POST /rpc``, ``GET /ws`` and ``GET /metrics``.

HTTP rules on top of the JSON-RPC ones in :mod:`node.rpc.dispatch`: only POST
(405 otherwise) with a JSON content type (415 otherwise); bodies above
``RpcLimits.max_body_bytes`` get 413 without being read; a response that is
only for notifications is 204 with no body. Every error status still carries a
JSON-RPC error object, so clients parse one format. JSON-RPC errors travel with
HTTP 200, as the spec's transport-agnostic answer.

The client address used for rate limiting is the TCP peer; a node behind a
reverse proxy would rate-limit the proxy (forwarded headers are not trusted).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from core.api import Query
from core.errors import FbciError, InvalidRequest, LimitExceeded
from node.rpc.admission import Admission
from node.rpc.node_api import NodeApi, OnMisbehaviour, RateLimiter
from node.rpc.dispatch import Dispatcher
from node.rpc.methods import CallContext, build_methods
from node.rpc.websocket import serve_websocket

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


class RpcMetrics:
    """The RPC server's series, registered in the node's registry next to the node's own gauges."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter("fbci_rpc_requests", "JSON-RPC calls by method and error code (0 = success)",
                                ["method", "code"], registry=registry)
        self.ws_connections = Gauge("fbci_rpc_ws_connections", "Open websocket connections", registry=registry)
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
    body = await _read_limited(request, limits.max_body_bytes)
    if body is None:
        return _error_response(413, LimitExceeded(f"request body is larger than {limits.max_body_bytes} bytes",
                                                  data={"limit": limits.max_body_bytes}), dispatcher)
    reply = await dispatcher.handle(body, CallContext(client=request.remote or "unknown"))
    if reply is None:
        return web.Response(status=204)
    return web.Response(body=reply, content_type="application/json")


async def handle_ws(request: web.Request) -> web.StreamResponse:
    app, limits = request.app, request.app[LIMITS]
    metrics = app[METRICS]
    metrics.ws_connections.inc()
    try:
        return await serve_websocket(request, app[DISPATCHER], app[API].events,
                                     max_message_bytes=limits.max_body_bytes,
                                     max_subscriptions=limits.ws_max_subscriptions,
                                     max_pending=limits.ws_max_pending, heartbeat_s=limits.ws_heartbeat_s,
                                     on_open=app[WEBSOCKETS].add)
    finally:
        metrics.ws_connections.dec()


async def handle_metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS].registry
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _close_websockets(app: web.Application) -> None:
    """On shutdown, close open websockets so the runner need not wait out its timeout for them."""
    for ws in list(app[WEBSOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def create_app(api: NodeApi, queries: Iterable[Query[Any, Any]] = (), *, limits: RpcLimits | None = None, limiter: RateLimiter | None = None,
               signer_limiter: RateLimiter | None = None, metrics_registry: CollectorRegistry | None = None,
               on_misbehaviour: OnMisbehaviour | None = None, version: str = "0.1.0") -> web.Application:
    """The RPC application for ``api``, serving each of ``queries`` as the method of its path.

    ``limiter`` is charged one token per call, keyed ``"addr:<client ip>"``;
    ``signer_limiter`` (default: ``limiter``) one per submitted transaction,
    keyed ``"signer:<public key hex>"``. ``metrics_registry`` is where the
    request counter is registered (a fresh one when omitted).
    """
    limits = limits or RpcLimits()
    registry = metrics_registry if metrics_registry is not None else CollectorRegistry()
    metrics = RpcMetrics(registry)
    admission = Admission(limiter, signer_limiter if signer_limiter is not None else limiter, on_misbehaviour)
    methods = build_methods(api, admission, queries, max_tx_bytes=limits.max_tx_bytes)
    app = web.Application(client_max_size=limits.max_body_bytes)
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


async def start_rpc_server(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving; ``await runner.cleanup()`` stops. ``runner.addresses`` gives the bound port when 0."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
