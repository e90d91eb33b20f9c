"""The peer handshake: each side proves it holds a genesis-listed validator key.

Both sides send a ``hello`` carrying a fresh 32-byte random challenge, then an
``auth`` whose signature (domain kind ``p2p.handshake``) covers the signer's
role, its own challenge, the other side's challenge, its public key and its
listen address. Because every connection's signature covers a challenge the
verifier just drew, a recorded handshake never verifies again (no replay);
because the role is signed, a signature cannot be reflected back at its maker.

This module does no I/O: the transport moves the bytes and calls these
functions, so the rules can be tested without sockets.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum
from typing import Any

from core import codec
from core.crypto import PUBLIC_KEY_SIZE, PrivateKey, PublicKey
from core.errors import DecodeError, PeerMisbehaved

HANDSHAKE_KIND = "p2p.handshake"
PROTOCOL_VERSION = 1
CHALLENGE_SIZE = 32
MAX_LISTEN_LENGTH = 255
_HELLO_FIELDS = frozenset({"type", "version", "chain_id", "public_key", "challenge", "listen"})
_AUTH_FIELDS = frozenset({"type", "signature"})


class Role(str, Enum):
    DIALER = "dial"
    ACCEPTOR = "accept"


class HandshakeFailed(PeerMisbehaved):
    """The remote side did not prove a genesis key; ``slug`` says why (stable, for metrics)."""

    def __init__(self, slug: str, message: str) -> None:
        super().__init__(message, data={"slug": slug})
        self.slug = slug


@dataclass(frozen=True)
class Hello:
    chain_id: str
    public_key: bytes
    challenge: bytes
    listen: str

    @classmethod
    def fresh(cls, chain_id: str, public_key: bytes, listen: str) -> Hello:
        return cls(chain_id, public_key, os.urandom(CHALLENGE_SIZE), listen)

    def encode(self) -> bytes:
        return codec.encode({
            "type": "hello", "version": PROTOCOL_VERSION, "chain_id": self.chain_id,
            "public_key": self.public_key, "challenge": self.challenge, "listen": self.listen,
        })

    @classmethod
    def decode(cls, data: bytes) -> Hello:
        doc = _decode(data, "hello")
        version = doc.get("version")
        if type(version) is not int or version != PROTOCOL_VERSION:  # True == 1, but it is not version 1
            raise HandshakeFailed("bad_version", f"protocol version {str(version)[:20]!r} is not {PROTOCOL_VERSION}")
        _exact_fields(doc, _HELLO_FIELDS)
        chain_id, key, challenge, listen = (doc.get(k) for k in ("chain_id", "public_key", "challenge", "listen"))
        if not isinstance(chain_id, str) or not isinstance(listen, str) or len(listen) > MAX_LISTEN_LENGTH:
            raise HandshakeFailed("malformed_handshake", "hello has a bad chain_id or listen field")
        if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_SIZE:
            raise HandshakeFailed("malformed_handshake", "hello has a bad public key")
        if not isinstance(challenge, bytes) or len(challenge) != CHALLENGE_SIZE:
            raise HandshakeFailed("malformed_handshake", "hello has a bad challenge")
        return cls(chain_id, key, challenge, listen)


def _exact_fields(doc: dict[str, Any], fields: frozenset[str]) -> None:
    """A handshake frame carries its fields and nothing else, so its bytes have one reading (a later
    protocol version that adds fields says so in ``version``, and is refused as such)."""
    if doc.keys() != fields:
        raise HandshakeFailed("malformed_handshake", f"{doc['type']} must have exactly the fields {sorted(fields)}")


def _decode(data: bytes, expected_type: str) -> dict[str, Any]:
    try:
        doc = codec.decode(data, max_size=4096)
    except DecodeError as exc:
        raise HandshakeFailed("malformed_handshake", f"{expected_type} is not canonical msgpack: {exc}") from None
    if not isinstance(doc, dict) or doc.get("type") != expected_type:
        raise HandshakeFailed("malformed_handshake", f"expected a {expected_type} message")
    return doc


def _signed_message(role: Role, own: Hello, other: Hello) -> bytes:
    return codec.encode([role.value, own.challenge, other.challenge, own.public_key, own.listen])


def auth_message(key: PrivateKey, role: Role, own: Hello, other: Hello) -> bytes:
    """The ``auth`` frame answering ``other``'s challenge, signed by ``key``."""
    signature = key.sign(own.chain_id, HANDSHAKE_KIND, _signed_message(role, own, other))
    return codec.encode({"type": "auth", "signature": signature})


def check_hello(
    hello: Hello, *, chain_id: str, own_key: bytes, allowed: Collection[bytes], expected: bytes | None
) -> None:
    """Refuse a hello from another chain, from ourselves, from a key outside genesis,
    or (when we dialled a particular validator) from anyone but that validator."""
    if hello.chain_id != chain_id:
        raise HandshakeFailed("wrong_chain", f"peer is on chain {hello.chain_id!r}, not {chain_id!r}")
    if hello.public_key == own_key:
        raise HandshakeFailed("self_connection", "peer presented our own key")
    if hello.public_key not in allowed:
        raise HandshakeFailed("unknown_key", f"key {hello.public_key.hex()} is not a genesis validator")
    if expected is not None and hello.public_key != expected:
        raise HandshakeFailed("unexpected_key", f"dialled {expected.hex()} but {hello.public_key.hex()} answered")


def verify_auth(data: bytes, *, chain_id: str, their_role: Role, theirs: Hello, ours: Hello) -> None:
    """Check that ``theirs.public_key`` signed our fresh challenge; raise otherwise."""
    doc = _decode(data, "auth")
    _exact_fields(doc, _AUTH_FIELDS)
    signature = doc["signature"]
    if not isinstance(signature, bytes):
        raise HandshakeFailed("malformed_handshake", "auth has no signature")
    message = _signed_message(their_role, theirs, ours)
    if not PublicKey(theirs.public_key).verify(chain_id, HANDSHAKE_KIND, message, signature):
        raise HandshakeFailed("bad_signature", f"handshake signature for {theirs.public_key.hex()} does not verify")
