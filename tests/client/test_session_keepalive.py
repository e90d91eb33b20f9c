"""A :class:`ChainSession` survives a pause longer than the server's keep-alive (a training round, say).

The session's event loop runs only during a call, so it never sees the server
close an idle connection; it must not reuse one idle longer than
``KEEPALIVE_S``, which is below the node's idle limit. Here the server closes
idle connections after 0.3 s and the session's bound is lowered to 0.1 s to
match; with the bound above the server's (as aiohttp's default 15 s is above
the node's 10 s) the second call writes into a closed socket.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from aiohttp import web

from client import session as session_module
from client.session import ChainSession
from tests.ports import free_base_port

SERVER_IDLE_S = 0.3


@pytest.fixture
def server() -> Iterator[str]:
    async def rpc(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": {"ok": True}})

    loop = asyncio.new_event_loop()
    port = free_base_port(1)
    app = web.Application()
    app.router.add_post("/rpc", rpc)
    runner = web.AppRunner(app, keepalive_timeout=SERVER_IDLE_S, shutdown_timeout=0.5)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_a_call_after_a_long_pause_opens_a_fresh_connection(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "KEEPALIVE_S", SERVER_IDLE_S / 3)
    with ChainSession(server) as s:
        assert s.call("status") == {"ok": True}
        time.sleep(SERVER_IDLE_S * 3)  # the pause under test: longer than the server keeps an idle connection
        assert s.call("status") == {"ok": True}
