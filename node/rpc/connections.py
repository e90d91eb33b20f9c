"""The RPC server's TCP edge: how many sockets anyone may hold, and logs no client can flood.

aiohttp bounds what a request may contain but not how many connections one
address holds, and an unfinished request head holds its socket until the
keep-alive timer (set from ``RpcLimits.header_timeout_s`` in
``node.rpc.server``) closes it. :class:`ConnectionGuard` wraps aiohttp's
protocol factory and refuses a connection at once, with a 503 carrying a
JSON-RPC error, when its address already holds ``per_address`` sockets or the
server holds ``total``; ``total`` defaults to half the process's open-file
limit, so RPC sockets can never take the descriptors LevelDB, the write-ahead
log and the peer links need (file-descriptor exhaustion is what stops
``accept()``).

Expected network events (a refused connection, a malformed request head, an
``accept()`` that ran out of descriptors) are logged through a
:class:`LogThrottle`: a warning at the first one, then one line per interval
with a count while they go on, never a traceback. A traceback is kept for
what is not expected, which is a bug.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError

from core.errors import LimitExceeded

CallLater = Callable[[float, Callable[[], None]], object]
EXPECTED_HTTP_ERRORS: tuple[type[BaseException], ...] = (HttpProcessingError, RequestPayloadError, ConnectionError)
"""What a peer can make aiohttp raise without any bug on our side: a malformed request, a reset."""


def default_max_connections() -> int:
    """Half the soft open-file limit (10,000 when unlimited): the other half stays for the node's files."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 10_000 if soft == resource.RLIM_INFINITY else max(16, soft // 2)


@dataclass
class _Window:
    count: int = 0
    latest: str = ""


class LogThrottle:
    """At most one warning per ``interval_s`` per kind of event, carrying how many there were.

    The first event of a quiet period is logged at once; those that follow within the interval
    are counted and reported in one line when it ends, and the next interval starts counting
    again for as long as they continue.
    """

    def __init__(self, logger: logging.Logger, interval_s: float, call_later: CallLater | None = None) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._call_later = call_later
        self._windows: dict[str, _Window] = {}

    def note(self, what: str, detail: str) -> None:
        window = self._windows.get(what)
        if window is not None:
            window.count += 1
            window.latest = detail
            return
        self.logger.warning("%s (%s)", what, detail)
        self._open(what)

    def _open(self, what: str) -> None:
        self._windows[what] = _Window()
        call_later = self._call_later or asyncio.get_running_loop().call_later
        call_later(self.interval_s, lambda: self._close(what))

    def _close(self, what: str) -> None:
        window = self._windows.pop(what)
        if window.count:
            self.logger.warning("%s: %d more in the last %g s (latest: %s)", what, window.count, self.interval_s,
                                window.latest)
            self._open(what)


def one_line(exc: BaseException, limit: int = 160) -> str:
    """``Type: message`` on one short line: what a peer sent can be long and span lines."""
    text = " ".join((getattr(exc, "message", "") or str(exc)).split())[:limit]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class HttpErrorLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger aiohttp's request handler writes to (its ``logger`` setting).

    aiohttp logs every malformed request head with its traceback at error level, outside any rate
    limit; here an expected one becomes a throttled warning, and anything else keeps its traceback.
    """

    def __init__(self, logger: logging.Logger, throttle: LogThrottle) -> None:
        super().__init__(logger, {})
        self.throttle = throttle

    def log(self, level: int, msg: object, *args: object, exc_info: Any = None, **kwargs: Any) -> None:
        exc = sys.exc_info()[1] if exc_info is True else exc_info
        if isinstance(exc, EXPECTED_HTTP_ERRORS):
            self.throttle.note("refused malformed HTTP requests", one_line(exc))
            return
        super().log(level, msg, *args, exc_info=exc_info, **kwargs)


ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


def install_accept_error_handler(loop: asyncio.AbstractEventLoop, throttle: LogThrottle) -> Callable[[], None]:
    """Route the loop's ``accept()`` failures (out of descriptors, memory) through ``throttle``.

    asyncio logs each with a traceback and retries a second later, for every listening socket on the
    loop, for as long as the descriptors stay exhausted. Other errors go to the handler there was
    before. Returns the function that puts that handler back.
    """
    previous: ExceptionHandler | None = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and "accept" in str(context.get("message", "")):
            throttle.note("accept() failed: out of file descriptors or memory", one_line(exc))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
    return lambda: loop.set_exception_handler(previous)


@dataclass
class ConnectionGuard:
    """Open-connection counts per address and in all; see the module docstring."""

    per_address: int
    total: int
    refused_log: LogThrottle
    on_refused: Callable[[str], None] = lambda scope: None
    """Called with ``"address"`` or ``"total"`` for each refusal (the server counts them)."""
    open_by_address: Counter[str] = field(default_factory=Counter)
    open_total: int = 0

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` that guards the one ``inner`` builds per connection."""
        return lambda: _GuardedConnection(self, inner)

    def admit(self, address: str) -> LimitExceeded | None:
        """Count a new connection from ``address``, or say why it is refused."""
        if self.open_by_address[address] >= self.per_address:
            return self._refuse("address", address, f"{self.per_address} connections from {address} are open "
                                                    "already; reuse one (keep-alive) or close some",
                                self.per_address)
        if self.open_total >= self.total:
            return self._refuse("total", address, f"the server holds its limit of {self.total} connections; "
                                                  "retry shortly", self.total)
        self.open_by_address[address] += 1
        self.open_total += 1
        return None

    def release(self, address: str) -> None:
        self.open_total -= 1
        self.open_by_address[address] -= 1
        if not self.open_by_address[address]:
            del self.open_by_address[address]

    def _refuse(self, scope: str, address: str, message: str, limit: int) -> LimitExceeded:
        self.refused_log.note(f"refused RPC connections over the {scope} limit of {limit}", f"latest from {address}")
        self.on_refused(scope)
        return LimitExceeded(message, data={"limit": limit, "scope": f"connections_{scope}"})


def _refusal(error: LimitExceeded) -> bytes:
    """A complete HTTP response: the JSON-RPC error a client parses, then the connection closes."""
    body = json.dumps({"jsonrpc": "2.0", "error": error.to_json(), "id": None}).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Retry-After: 1\r\nConnection: close\r\n\r\n")
    return head.encode() + body


class _GuardedConnection(asyncio.Protocol):
    """One accepted socket: refused at once, or handed to aiohttp's protocol and counted until it closes."""

    def __init__(self, guard: ConnectionGuard, inner: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make_inner = inner
        self._inner: asyncio.Protocol | None = None
        self._address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        refused = self._guard.admit(self._address)
        if refused is not None:
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(_refusal(refused))
            transport.close()
            return
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._guard.release(self._address)
            self._inner.connection_lost(exc)
            self._inner = None
