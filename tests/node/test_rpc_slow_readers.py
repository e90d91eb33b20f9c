"""Clients that ask for large answers and read none of them are cut off after the write timeout (issue 17).

A real loopback socket with a 4 KiB receive buffer asks for a ~24 MiB answer (HTTP, and over the
websocket an answer and a subscription stream) and never reads: the server's socket buffers fill, its
write cannot drain, and after ``write_timeout_s`` the connection is aborted, its bytes freed, and
``fbci_rpc_slow_readers`` counts it; an honest client is answered meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from core.api import TX_GET, Params, Receipt, TxGetParams, TxInfo
from node.app_reads import RPC_QUERIES
from node.rpc.server import METRICS, RpcLimits, create_app
from tests.node.conftest import FakeNode
from tests.node.test_rpc_server import call

pytestmark = pytest.mark.timeout(120)

FAT = 3 << 20  # each answer carries 3 MiB of transaction bytes: 6 MiB of hex
CALLS = 4


class FatNode(FakeNode):
    async def query(self, path: str, params: Params) -> object:
        if path == TX_GET.path and isinstance(params, TxGetParams):
            return TxInfo(params.hash, bytes(32), 1, "test.echo", bytes(FAT), Receipt(1, 0, True, 0, "ok", "", {}))
        return await super().query(path, params)


def _batch() -> bytes:
    return json.dumps([call("tx_get", {"hash": f"{i:064x}"}, rid=i) for i in range(CALLS)]).encode()


@asynccontextmanager
async def _server(node: FakeNode) -> AsyncIterator[tuple[TestServer, web.Application]]:
    app = create_app(node, RPC_QUERIES, limits=RpcLimits(write_timeout_s=1.0, max_body_bytes=1 << 20,
                                                         ws_max_pending=10_000))
    async with TestServer(app) as server:
        yield server, app


def _reader_that_reads_nothing(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window stays small
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)  # the server runs on this thread's loop: every socket call below awaits
    return sock


async def _send(sock: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, data)


async def _slow_readers(app: web.Application, transport: str, expect: int, within_s: float = 30.0) -> float:
    """Wait (polling the counter, bounded) until ``expect`` ``transport`` clients were cut off."""
    registry = app[METRICS].registry
    deadline = time.monotonic() + within_s
    while True:
        value = registry.get_sample_value("fbci_rpc_slow_readers_total", {"transport": transport}) or 0.0
        if value >= expect or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def _drain(sock: socket.socket) -> int:
    """Read what is left until the server's abort shows (EOF or reset); the bytes read."""
    loop, got = asyncio.get_running_loop(), 0
    try:
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 10):
            got += len(chunk)
    except ConnectionResetError:
        pass
    return got


async def test_an_http_client_that_reads_no_answer_is_cut_off_and_counted() -> None:
    async with _server(FatNode()) as (server, app):
        body = _batch()
        sock = _reader_that_reads_nothing(server.port)
        try:
            await _send(sock, b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            assert await _slow_readers(app, "http", 1) == 1
            async with ClientSession() as honest:
                async with honest.post(server.make_url("/rpc"), json=call("status")) as answer:
                    assert "result" in await answer.json()  # nobody else waited for it
            assert await _drain(sock) < CALLS * 2 * FAT  # the rest of the answer was dropped, not sent
        finally:
            sock.close()


def _ws_frame(text: str) -> bytes:
    data, mask = text.encode(), os.urandom(4)
    n = len(data)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def _ws_upgrade(sock: socket.socket) -> None:
    key = base64.b64encode(os.urandom(16))
    await _send(sock, b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += await asyncio.get_running_loop().sock_recv(sock, 1)  # byte by byte: no frame bytes taken
    assert head.startswith(b"HTTP/1.1 101"), head


async def test_a_websocket_client_that_reads_no_answer_is_cut_off_and_counted() -> None:
    async with _server(FatNode()) as (server, app):
        sock = _reader_that_reads_nothing(server.port)
        try:
            await _ws_upgrade(sock)
            await _send(sock, _ws_frame(_batch().decode()))
            assert await _slow_readers(app, "ws", 1) == 1
            assert await _drain(sock) < CALLS * 2 * FAT
        finally:
            sock.close()


async def test_a_subscriber_that_reads_no_notifications_is_cut_off_and_counted() -> None:
    node = FatNode()
    async with _server(node) as (server, app):
        sock = _reader_that_reads_nothing(server.port)
        try:
            await _ws_upgrade(sock)
            await _send(sock, _ws_frame(json.dumps(call("subscribe", {"topic": "new_block"}))))
            deadline = time.monotonic() + 10
            while not node.events.subscriber_count("new_block") and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            blob = "x" * (1 << 20)
            for height in range(24):  # 24 MiB of notifications, under the queue bound of 10,000 events
                node.events.publish("new_block", {"height": height, "blob": blob})
            assert await _slow_readers(app, "ws", 1) == 1
        finally:
            sock.close()
