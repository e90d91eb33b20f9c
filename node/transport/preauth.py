"""What a p2p connection may send before it has authenticated: frames no larger than the handshake's own.

The websocket's message limit must admit a whole block once a validator is
authenticated (16 MiB by default), and aiohttp applies one limit to a
connection for its whole life. Without this guard any stranger could make a
validator buffer one 16 MiB frame per connection before saying who it is.
:class:`PreAuthFrames` reads the websocket frame headers a client sends until
the handshake completes and refuses, from the declared length alone, before
any of its payload is buffered, a message larger than the largest handshake
frame (the dialer's hybrid hello or its sealed hybrid ``auth``), or more
bytes in all than a handshake needs. It is pure (bytes in, a verdict out);
:mod:`node.transport.listener` feeds it and aborts the connection on a refusal.
"""

from __future__ import annotations

from node.transport.handshake import MAX_AUTH_BYTES, MAX_HELLO_BYTES
from node.transport.secure import FRAME_OVERHEAD

PREAUTH_MAX_MESSAGE = max(MAX_HELLO_BYTES, MAX_AUTH_BYTES + FRAME_OVERHEAD)
"""The largest frame a dialer sends during the handshake: its hello, or its sealed auth (hybrid: an Ed25519
and an ML-DSA-65 signature)."""
PREAUTH_MAX_BYTES = 4 * PREAUTH_MAX_MESSAGE
"""Everything a dialer may send before it is authenticated: hello, auth, heartbeats and a close, with room."""
_CONTROL = 0x8
_CONTINUATION = 0x0


class PreAuthFrames:
    """Websocket frame headers in a client's bytes (RFC 6455 section 5.2), to bound them before authentication."""

    def __init__(self, max_message: int = PREAUTH_MAX_MESSAGE, max_bytes: int = PREAUTH_MAX_BYTES) -> None:
        self.max_message = max_message
        self.max_bytes = max_bytes
        self.refused: str | None = None
        """Why the client was refused, once it was."""
        self._head = bytearray()
        self._skip = 0
        """Payload bytes of the current frame still to pass."""
        self._message = 0
        """Payload bytes of the data message in progress (fragments add up)."""
        self._total = 0

    def feed(self, data: bytes) -> bool:
        """Account for ``data``; False (and :attr:`refused` set) as soon as it is over a bound."""
        if self.refused is not None:
            return False
        self._total += len(data)
        if self._total > self.max_bytes:
            return self._refuse(f"sent over {self.max_bytes} bytes before authenticating")
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            self._head.append(data[i])
            i += 1
            if not self._header_complete():
                continue
            if not self._frame_admitted():
                return False
        return True

    def _header_complete(self) -> bool:
        head = self._head
        if len(head) < 2:
            return False
        length7 = head[1] & 0x7F
        extended = 2 if length7 == 126 else 8 if length7 == 127 else 0
        return len(head) >= 2 + extended + (4 if head[1] & 0x80 else 0)

    def _frame_admitted(self) -> bool:
        head = self._head
        fin, opcode, length7 = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
        extended = 2 if length7 == 126 else 8 if length7 == 127 else 0
        length = int.from_bytes(head[2:2 + extended], "big") if extended else length7
        self._head.clear()
        self._skip = length
        if opcode & _CONTROL:
            return True  # ping, pong, close: at most 125 bytes (the websocket parser checks that)
        self._message = length + (self._message if opcode == _CONTINUATION else 0)
        if self._message > self.max_message:
            return self._refuse(f"sent a {self._message}-byte message before authenticating; the handshake's "
                                f"largest is {self.max_message}")
        if fin:
            self._message = 0
        return True

    def _refuse(self, why: str) -> bool:
        self.refused = why
        return False
