"""FaultProxy against a real echo server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from devnet.faultproxy import FaultProxy, LinkState
from tests.leakcheck import run

WAIT = 10.0


class Echo:
    """Echoes every byte back and counts what reached it."""

    def __init__(self) -> None:
        self.received = 0
        self.server: asyncio.Server | None = None
        self.address = ""
        self._handlers: set[asyncio.Task[Any]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while data := await reader.read(65536):
                self.received += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[Echo]:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        self.address = f"{host}:{port}"
        async with self.server:
            yield self
            self.server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)


@asynccontextmanager
async def proxied() -> AsyncIterator[tuple[Echo, FaultProxy]]:
    async with Echo().serving() as echo, FaultProxy("127.0.0.1:0", echo.address) as proxy:
        yield echo, proxy


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = proxy.address.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the peer sends before the connection ends (by EOF or reset)."""
    got = b""
    try:
        async with asyncio.timeout(WAIT):
            while chunk := await reader.read(65536):
                got += chunk
    except ConnectionError:
        pass
    return got


def test_forwards_both_ways_and_counts() -> None:
    async def main() -> None:
        async with proxied() as (echo, proxy):
            reader, writer = await connect(proxy)
            payload = bytes(range(256)) * 1000
            writer.write(payload)
            assert await asyncio.wait_for(reader.readexactly(len(payload)), WAIT) == payload
            assert echo.received == len(payload)
            assert proxy.stats.bytes_forwarded == 2 * len(payload) and proxy.stats.active == 1
            writer.close()
            assert await read_until_closed(reader) == b""
    run(main)


def test_cut_resets_links_and_refuses_new_ones_until_healed() -> None:
    async def main() -> None:
        async with proxied() as (echo, proxy):
            reader, writer = await connect(proxy)
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"ping"
            await proxy.cut()
            assert proxy.state is LinkState.CUT and proxy.stats.active == 0
            assert await read_until_closed(reader) == b""
            writer.close()
            reader2, writer2 = await connect(proxy)
            writer2.write(b"lost")
            assert await read_until_closed(reader2) == b""
            writer2.close()
            assert proxy.stats.refused == 1 and echo.received == 4
            await proxy.heal()
            reader3, writer3 = await connect(proxy)
            writer3.write(b"back")
            assert await asyncio.wait_for(reader3.readexactly(4), WAIT) == b"back"
            writer3.close()
    run(main)


def test_blackhole_swallows_bytes_and_heal_closes_the_tainted_link() -> None:
    async def main() -> None:
        async with proxied() as (echo, proxy):
            reader, writer = await connect(proxy)
            writer.write(b"before")
            assert await asyncio.wait_for(reader.readexactly(6), WAIT) == b"before"
            proxy.blackhole()
            writer.write(b"into the void")
            await writer.drain()
            late_reader, late_writer = await connect(proxy)  # a link made during the partition
            late_writer.write(b"also lost")
            await proxy.heal()
            assert await read_until_closed(reader) == b""
            assert await read_until_closed(late_reader) == b""
            writer.close()
            late_writer.close()
            assert echo.received == 6
            fresh_reader, fresh_writer = await connect(proxy)
            fresh_writer.write(b"healed")
            assert await asyncio.wait_for(fresh_reader.readexactly(6), WAIT) == b"healed"
            fresh_writer.close()
    run(main)


def test_delay_adds_latency_each_way_and_keeps_order() -> None:
    async def main() -> None:
        async with proxied() as (_, proxy):
            proxy.delay(150)
            reader, writer = await connect(proxy)
            loop = asyncio.get_running_loop()
            started = loop.time()
            for i in range(5):
                writer.write(b"%d," % i)
                await writer.drain()
            echoed = b""
            while echoed.count(b",") < 5:
                echoed += await asyncio.wait_for(reader.read(100), WAIT)
            assert echoed == b"0,1,2,3,4,"
            assert loop.time() - started >= 0.3
            writer.close()
    run(main)
