"""The dashboard's aiohttp application: pages, their JSON, the acknowledgement, and the live websocket.

Every page is one HTML shell (``static/page.html``) and ``static/dashboard.js``,
which fetches the page's ``/api/...`` JSON and redraws when ``/ws`` says the
chain moved (a block, an alert, an acknowledgement) or the ward did; nothing
reloads. Plotly's bundle is served from the installed ``plotly`` package, so
no asset comes from the internet.

The one write is an acknowledgement: ``POST /api/alerts/<id>/ack`` signs an
``ids.ack_alert`` with the dashboard's key and waits for its commit. Only a
same-origin JSON request is accepted (a cross-site form cannot send one), so
another web page open in the clinician's browser cannot acknowledge for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from pydantic import BaseModel, ValidationError

from core.crypto import PrivateKey
from core.errors import FbciError, InvalidInput, NotFound, Unauthorized
from core.tx import Transaction
from ids.alerts import ACK_TX_KIND, ALERT_CLASSES, AckPayload, StoredAlert
from client.dashboard.chain import ChainIndex
from client.light_verify import HeaderVerifier
from client.dashboard.source import ChainSource
from client.dashboard.trail import TrailReader
from client.dashboard.views import (
    AlertFilter, ModelCache, alert_row, alerts_view, audit_view, models_view, network_view,
)
from client.dashboard.ward import VitalsFeed, equal_workload_threshold, trend, ward_list
from client.rpc import receipt_error, unreachable

log = logging.getLogger("fbci.dashboard")
STATIC = Path(__file__).parent / "static"
PAGES = ("patients", "alerts", "models", "network", "audit")
ACK_TIMEOUT_S = 30.0
WARD_POLL_S = 1.0
CLIENT_QUEUE = 256


@dataclass
class Dashboard:
    """Everything the handlers share; built once by :func:`build_app`."""

    source: ChainSource
    validators: list[ChainSource]
    """Every validator the Network page shows (the dashboard's own first)."""
    feed: VitalsFeed
    signer: PrivateKey | None
    threshold: float | None
    """The alarm threshold given on the command line; None: equal-workload on this ward."""
    history: int = 500
    """Recent blocks the index reads (Audit, Network, acknowledgements)."""
    trusted: HeaderVerifier | None = None
    """Genesis's validators (followed through the chain's set changes), which audit proofs are checked against;
    None: no genesis file at hand."""
    index: ChainIndex = dataclasses.field(init=False)
    cache: ModelCache = dataclasses.field(init=False)
    trail: TrailReader = dataclasses.field(init=False)
    clients: dict[asyncio.Queue[str], web.WebSocketResponse] = dataclasses.field(default_factory=dict)
    closing: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)
    """Close handshakes of cut-off browsers, held so the loop cannot drop them half done."""
    _thresholds: dict[tuple[int, int], float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = ChainIndex(self.source, self.history)
        self.index.listeners.append(self.publish)
        self.cache = ModelCache(self.source)
        self.trail = TrailReader({s.url: s.audit_session for s in self.validators}, self.trusted,
                                 None if self.signer is None else self.signer.public_key.raw)

    def publish(self, event: dict[str, Any]) -> None:
        """Send to every browser; one that cannot keep up is cut off (its page reconnects and refetches)."""
        text = json.dumps(event, default=_jsonable)
        for queue, ws in list(self.clients.items()):
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:
                del self.clients[queue]
                task = asyncio.get_running_loop().create_task(self._cut_off(ws))
                self.closing.add(task)
                task.add_done_callback(self.closing.discard)

    async def _cut_off(self, ws: web.WebSocketResponse) -> None:
        await ws.close()

    async def ward_threshold(self, version: int) -> tuple[float, str]:
        if self.threshold is not None:
            return self.threshold, "set with --alarm-threshold"
        model, _ = await self.cache.deterioration(version)
        patients = self.feed.patients()
        key = (version, sum(len(p.obs) for p in patients))
        if key not in self._thresholds:
            self._thresholds = {key: equal_workload_threshold(model, patients)}
        return self._thresholds[key], "alarms on this ward as often as NEWS2 >= 3 (equal workload)"

    async def acknowledge(self, alert_id: int) -> dict[str, Any]:
        if self.signer is None:
            raise Unauthorized("this dashboard has no signing key (start it with --key)")
        try:
            payload = AckPayload(alert_id=alert_id).model_dump()
        except ValidationError:
            raise InvalidInput(f"no alert {alert_id}: alert ids start at 1") from None
        status = await self.source.status()
        nonce = (await self.source.account(self.signer.public_key.raw)).next_nonce
        tx = Transaction.create(self.signer, status.chain_id, nonce, ACK_TX_KIND, payload)
        result = await self.source.submit_commit(tx, ACK_TIMEOUT_S)
        if not result.receipt.ok:
            raise receipt_error(result.receipt, result.hash)
        await self.index.catch_up(result.height)
        return {"tx_hash": result.hash.hex(), "height": result.height, "result": result.receipt.result}


DASHBOARD = web.AppKey("fbci_dashboard", Dashboard)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=lambda v: json.dumps(v, default=_jsonable))


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    """An error becomes JSON with its stable code, never a traceback; an unreachable validator is a 502."""
    try:
        return await handler(request)
    except FbciError as exc:
        status = 404 if isinstance(exc, NotFound) else 403 if isinstance(exc, Unauthorized) else 400
        return _json({"error": exc.to_json()}, status)
    except (OSError, asyncio.TimeoutError) as exc:
        return _json({"error": {"code": -32060, "message": f"validator unreachable: {exc}",
                                "data": {"reason": "node_unreachable"}}}, 502)


# --- pages and assets -----------------------------------------------------------------------------

async def page(request: web.Request) -> web.Response:
    name = request.match_info.get("page", "patients")
    if name not in PAGES:
        raise web.HTTPNotFound()
    patient = request.match_info.get("patient", "")
    html = (STATIC / "page.html").read_text().replace("{{page}}", name).replace(
        "{{patient}}", json.dumps(patient).replace("<", "\\u003c"))
    return web.Response(text=html, content_type="text/html")


async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/patients")


async def plotly_js(request: web.Request) -> web.FileResponse:
    return web.FileResponse(Path(str(resources.files("plotly") / "package_data" / "plotly.min.js")))


# --- JSON -----------------------------------------------------------------------------------------

async def api_patients(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    model, version = await d.cache.deterioration()
    threshold, why = await d.ward_threshold(version)
    return _json({"model_version": version, "threshold": threshold, "threshold_source": why,
                  "feed": d.feed.description, "patients": ward_list(model, d.feed.patients(), threshold)})


async def api_patient(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    wanted = request.match_info["patient"]
    found = next((p for p in d.feed.patients() if p.patient == wanted), None)
    if found is None:
        raise NotFound(f"no patient {wanted!r} in {d.feed.description}")
    model, version = await d.cache.deterioration()
    threshold, why = await d.ward_threshold(version)
    return _json({"model_version": version, "threshold_source": why, "trend": trend(model, found, threshold)})


async def api_alerts(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    rows = await alerts_view(d.source, d.index, AlertFilter.parse(request.query))
    return _json({"rows": rows, "window": (d.index.first_height, d.index.tip), "classes": ALERT_CLASSES})


async def api_ack(request: web.Request) -> web.Response:
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise Unauthorized(f"acknowledgements come from this dashboard's own pages, not {origin}")
    if request.content_type != "application/json":
        raise InvalidInput("send the acknowledgement as application/json")
    try:
        alert_id = int(request.match_info["alert_id"])
    except ValueError:
        raise InvalidInput("alert id must be an integer") from None
    return _json(await request.app[DASHBOARD].acknowledge(alert_id))


async def api_models(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    return _json({"models": await models_view(d.source, d.index, d.cache, d.feed.patients())})


async def api_network(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    return _json(await network_view(d.validators, d.index))


async def api_audit(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    return _json(await audit_view(d.index, d.trail, request.query.get("actor") or None, request.query.get("kind") or None))


async def websocket(request: web.Request) -> web.WebSocketResponse:
    d = request.app[DASHBOARD]
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    queue: asyncio.Queue[str] = asyncio.Queue(CLIENT_QUEUE)
    d.clients[queue] = ws

    async def pump() -> None:
        while True:
            await ws.send_str(await queue.get())

    sender = asyncio.create_task(pump())
    try:
        async for msg in ws:  # the browser sends nothing; this ends when it goes away
            if msg.type is WSMsgType.ERROR:
                break
    finally:
        d.clients.pop(queue, None)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
    return ws


# --- background -----------------------------------------------------------------------------------

async def _relay_alerts(d: Dashboard) -> None:
    """Push each ``new_alert`` to the browsers at once, before its block is even indexed."""
    while True:
        try:
            async with d.source.subscribe("new_alert") as events:
                async for event in events:
                    alert = StoredAlert.model_validate_json(json.dumps(event))
                    d.publish({"type": "alert", "alert": alert_row(alert, d.index.acks)})
        except (ConnectionError, OSError, FbciError, asyncio.TimeoutError, ValueError) as exc:
            log.warning("alert relay: %s; retrying", exc)
            await asyncio.sleep(1.0)  # back-off before reconnecting, not synchronisation


async def _watch_ward(d: Dashboard) -> None:
    """Tell the browsers when the feed has new observations (it moves without the chain)."""
    seen = -1
    while True:
        rows = sum(len(p.obs) for p in d.feed.patients())
        if rows != seen:
            seen = rows
            d.publish({"type": "ward", "rows": rows})
        await asyncio.sleep(WARD_POLL_S)  # polling a local feed (files or a generator): nothing to wait on


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    d = app[DASHBOARD]
    try:
        try:
            await d.index.start()
        except aiohttp.ClientConnectionError as exc:
            raise unreachable(d.source.url, exc) from None
        tasks = [asyncio.create_task(c) for c in (d.index.follow(), _relay_alerts(d), _watch_ward(d))]
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for source in {id(s): s for s in [d.source, *d.validators]}.values():
            await source.close()


def build_app(dashboard: Dashboard) -> web.Application:
    app = web.Application(middlewares=[_errors])
    app[DASHBOARD] = dashboard
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_get("/", home)
    app.router.add_get("/static/plotly.min.js", plotly_js)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/api/patients", api_patients)
    app.router.add_get("/api/patients/{patient}", api_patient)
    app.router.add_get("/api/alerts", api_alerts)
    app.router.add_post("/api/alerts/{alert_id}/ack", api_ack)
    app.router.add_get("/api/models", api_models)
    app.router.add_get("/api/network", api_network)
    app.router.add_get("/api/audit", api_audit)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/{page}", page)
    app.router.add_get("/patients/{patient}", page)
    return app
