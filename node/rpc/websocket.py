"""``GET /ws``: JSON-RPC over a websocket, plus pushed ``subscription`` notifications.

Every text (or binary) message is a JSON-RPC request or batch answered like
``POST /rpc``; ``subscribe``/``unsubscribe`` work only here. Notifications look
like Ethereum's ``eth_subscription``::

    {"jsonrpc": "2.0", "method": "subscription",
     "params": {"subscription": "<id>", "topic": "new_block", "result": {...}}}

Each subscription's pump task starts only after the ``subscribe`` answer has
been written, so a client never sees a notification for an id it has not been
told. A client that reads too slowly overflows its bounded queue, or leaves a
notification or an answer unwritten for ``write_timeout_s`` (its socket buffers
full: it reads nothing), and is disconnected at once (transport aborted: a close
frame could not get through anyway); publishers and other clients never wait
for it, and its buffered bytes are freed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from core.errors import LimitExceeded
from node.rpc.dispatch import Dispatcher
from core.wire import to_wire
from node.rpc.methods import CallContext
from node.rpc.subscriptions import EventHub, Subscription

log = logging.getLogger(__name__)


def _notification(sub: Subscription, event: object) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "subscription",
            "params": {"subscription": sub.id, "topic": sub.topic, "result": to_wire(event)}}


class WsSession:
    """The subscriptions of one websocket connection; implements ``methods.SubscriptionSession``."""

    def __init__(self, ws: web.WebSocketResponse, hub: EventHub, *, max_subscriptions: int, max_pending: int,
                 on_slow_consumer: Callable[[], None], write_timeout_s: float = 30.0) -> None:
        self._ws = ws
        self._write_timeout_s = write_timeout_s
        self._hub = hub
        self._max_subscriptions = max_subscriptions
        self._max_pending = max_pending
        self._on_slow_consumer = on_slow_consumer
        self._subs: dict[str, Subscription] = {}
        self._unstarted: list[Subscription] = []
        self._pumps: set[asyncio.Task[None]] = set()

    def subscribe(self, topic: str) -> str:
        if len(self._subs) >= self._max_subscriptions:
            raise LimitExceeded(f"at most {self._max_subscriptions} subscriptions per connection",
                                data={"limit": self._max_subscriptions})
        sub = self._hub.subscribe(topic, max_pending=self._max_pending, on_overflow=self._overflowed)
        self._subs[sub.id] = sub
        self._unstarted.append(sub)
        return sub.id

    def unsubscribe(self, subscription_id: str) -> bool:
        sub = self._subs.pop(subscription_id, None)
        if sub is None:
            return False
        sub.close()
        return True

    def start_pumps(self) -> None:
        """Begin delivering to subscriptions made since the last call (after their ids were sent)."""
        for sub in self._unstarted:
            task = asyncio.create_task(self._pump(sub), name=f"ws-pump-{sub.id}")
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)
        self._unstarted.clear()

    async def send(self, text: str, what: str) -> None:
        """Write ``text`` within the write timeout, or cut the connection: its reader is not reading."""
        try:
            async with asyncio.timeout(self._write_timeout_s):
                await self._ws.send_str(text)
        except TimeoutError:
            log.debug("websocket client read no %s within %.0f s; disconnecting it", what, self._write_timeout_s)
            self._on_slow_consumer()
            raise ConnectionResetError("slow reader") from None

    async def _pump(self, sub: Subscription) -> None:
        try:
            async for event in sub:
                await self.send(json.dumps(_notification(sub, event)), f"{sub.topic} notification")
        except LimitExceeded:
            pass  # _overflowed already cut the connection
        except ConnectionResetError:
            sub.close()

    def _overflowed(self, sub: Subscription) -> None:
        log.warning("websocket subscriber to %s fell behind; disconnecting it", sub.topic)
        self._on_slow_consumer()

    def close(self) -> None:
        for sub in self._subs.values():
            sub.close()
        self._subs.clear()
        for task in list(self._pumps):
            task.cancel()


async def serve_websocket(request: web.Request, dispatcher: Dispatcher, hub: EventHub, *, max_message_bytes: int,
                          max_subscriptions: int, max_pending: int, heartbeat_s: float | None,
                          on_open: Callable[[web.WebSocketResponse], None], write_timeout_s: float = 30.0,
                          on_slow_reader: Callable[[], None] = lambda: None) -> web.WebSocketResponse:
    """``on_slow_reader``: told each time a client is cut off for not reading (a queue overflow or a write
    that did not drain within ``write_timeout_s``)."""
    ws = web.WebSocketResponse(max_msg_size=max_message_bytes, heartbeat=heartbeat_s)
    await ws.prepare(request)
    on_open(ws)
    transport = request.transport

    def abort() -> None:
        if transport is not None and not transport.is_closing():
            on_slow_reader()
            transport.abort()

    session = WsSession(ws, hub, max_subscriptions=max_subscriptions, max_pending=max_pending,
                        on_slow_consumer=abort, write_timeout_s=write_timeout_s)
    ctx = CallContext(client=request.remote or "unknown", session=session)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                body = msg.data.encode()
            elif msg.type is WSMsgType.BINARY:
                body = msg.data
            else:
                continue
            reply = await dispatcher.handle(body, ctx)
            if reply is not None:
                await session.send(reply.decode(), "answer")
            session.start_pumps()
    except ConnectionResetError:
        pass  # the client went away mid-reply
    finally:
        session.close()
    return ws
