"""The short I/O loop around the pure :class:`~node.transport.handshake.Handshake`: frames in, frames out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.http_websocket import WebSocketError

from node.transport.handshake import Handshake, HandshakeFailed
from node.transport.secure import SecureSession

Socket = Union[web.WebSocketResponse, aiohttp.ClientWebSocketResponse]


async def run_handshake(ws: Socket, handshake: Handshake,
                        on_established: Callable[[], None] | None = None) -> SecureSession:
    """Send the opening, then answer each frame, until the session is established; the caller bounds it
    by the handshake deadline and closes the socket on :class:`HandshakeFailed`. ``on_established`` runs
    once the peer is authenticated, before this side's last frame goes out: the peer sends its first
    message only after that frame, so nothing it sends as an authenticated peer can come earlier."""
    opening = handshake.opening()
    if opening is not None:
        await ws.send_bytes(opening)
    while handshake.session is None:
        frames = handshake.receive(await _handshake_frame(ws))
        if handshake.session is not None and on_established is not None:
            on_established()
        for frame in frames:
            await ws.send_bytes(frame)
    return handshake.session


async def _handshake_frame(ws: Socket) -> bytes:
    msg = await ws.receive()
    if msg.type is WSMsgType.BINARY:
        return bytes(msg.data)
    if msg.type is WSMsgType.TEXT:
        raise HandshakeFailed("malformed_handshake", "handshake frames are binary")
    if msg.type is WSMsgType.ERROR and isinstance(msg.data, WebSocketError) \
            and msg.data.code == WSCloseCode.MESSAGE_TOO_BIG:
        raise HandshakeFailed("oversized_frame", "handshake frame above the message limit")
    raise ConnectionError(f"connection ended during the handshake ({msg.type.name})")
