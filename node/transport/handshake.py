"""The peer handshake: a hybrid key agreement, then each side proves, encrypted, that it holds a validator key.

It follows CometBFT's SecretConnection, with ML-KEM-768 beside X25519::

    acceptor -> dialer   hello {chain_id, x25519, ml_kem: encapsulation key}
    dialer -> acceptor   hello {chain_id, x25519, ml_kem: ciphertext}  then  seal(auth)
    acceptor -> dialer   seal(auth)

Both ends derive the session keys and a challenge from both shared secrets and
the transcript hash (:mod:`node.transport.secure`). ``auth`` carries the
signer's validator key, its listen address and its signature (domain kind
``p2p.handshake``) over its role, the challenge and that address. So:

- the signature covers a challenge that only the two ends of *this* key
  agreement know, and that is fresh for every connection (no replay, and a
  man in the middle, who must run two key agreements, holds two different
  challenges and can forward neither signature);
- the role is signed, so a signature cannot be reflected back at its maker;
- the key must be one the node's allow-list provider names *now* (the
  validator set; genesis today, the chain's current set once it can change),
  and a hybrid validator's signature must verify in both halves;
- identities travel only inside the encrypted channel, and the acceptor
  reveals its own only to a dialer that has already proved a validator key.

There is no certificate authority: the validator set is the trust root.
This module does no I/O: :class:`Handshake` takes frames and returns the frames
to send (h11's style), so the rules are tested without sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from core import codec
from core.crypto import MAX_SIGNATURE_SIZE, PUBLIC_KEY_SIZE, SigningKey, VerifyingKey
from core.errors import DecodeError, PeerMisbehaved
from node.transport.secure import (
    ML_KEM_CIPHERTEXT_SIZE, ML_KEM_ENCAPSULATION_KEY_SIZE, X25519_SIZE, AcceptorShare, DialerShare, FrameOpener,
    FrameSealer, SecureSession, derive_keys, transcript_hash,
)
from node.transport.types import BadFrame, FrameTooLarge

HANDSHAKE_KIND = "p2p.handshake"
PROTOCOL_VERSION = 3
"""3: block headers carry validators_hash and next_validators_hash, so a peer of an older build is refused
at the handshake rather than by every block it sends."""
MAX_LISTEN_LENGTH = 255
MAX_HELLO_BYTES = 2048
MAX_AUTH_BYTES = MAX_SIGNATURE_SIZE + 512
_HELLO_FIELDS = frozenset({"type", "version", "chain_id", "x25519", "ml_kem"})
_AUTH_FIELDS = frozenset({"type", "public_key", "listen", "signature"})

PeerKeys = Callable[[bytes], VerifyingKey | None]
"""The allow-list: a validator's verifying key by its 32-byte identity, or None when it is no validator now."""


class Role(str, Enum):
    DIALER = "dial"
    ACCEPTOR = "accept"


class HandshakeFailed(PeerMisbehaved):
    """The remote side did not prove a validator key; ``slug`` says why (stable, for metrics)."""

    def __init__(self, slug: str, message: str) -> None:
        super().__init__(message, data={"slug": slug})
        self.slug = slug


@dataclass(frozen=True)
class Hello:
    """The clear-text opening: chain id and ephemeral key shares only (``ml_kem`` is the acceptor's
    encapsulation key, or the dialer's ciphertext to it)."""

    chain_id: str
    x25519: bytes
    ml_kem: bytes

    def encode(self) -> bytes:
        return codec.encode({"type": "hello", "version": PROTOCOL_VERSION, "chain_id": self.chain_id,
                             "x25519": self.x25519, "ml_kem": self.ml_kem})

    @classmethod
    def decode(cls, data: bytes, sender: Role) -> Hello:
        doc = _decode(data, "hello", MAX_HELLO_BYTES)
        version = doc.get("version")
        if type(version) is not int or version != PROTOCOL_VERSION:  # True == 1, but it is not a version
            raise HandshakeFailed("bad_version", f"protocol version {str(version)[:20]!r} is not {PROTOCOL_VERSION}")
        _exact_fields(doc, _HELLO_FIELDS)
        chain_id, x25519, ml_kem = doc["chain_id"], doc["x25519"], doc["ml_kem"]
        kem_size = ML_KEM_ENCAPSULATION_KEY_SIZE if sender is Role.ACCEPTOR else ML_KEM_CIPHERTEXT_SIZE
        if not isinstance(chain_id, str):
            raise HandshakeFailed("malformed_handshake", "hello has a bad chain_id")
        if not isinstance(x25519, bytes) or len(x25519) != X25519_SIZE:
            raise HandshakeFailed("malformed_handshake", "hello has a bad X25519 key")
        if not isinstance(ml_kem, bytes) or len(ml_kem) != kem_size:
            raise HandshakeFailed("malformed_handshake", f"hello's ML-KEM field must be {kem_size} bytes")
        return cls(chain_id, x25519, ml_kem)


@dataclass(frozen=True)
class Auth:
    """The sealed proof of identity; ``public_key`` is the 32-byte validator identity."""

    public_key: bytes
    listen: str
    signature: bytes

    @staticmethod
    def signed_message(role: Role, challenge: bytes, listen: str) -> bytes:
        return codec.encode([role.value, challenge, listen])

    @classmethod
    def make(cls, key: SigningKey, chain_id: str, role: Role, challenge: bytes, listen: str) -> Auth:
        signature = key.sign(chain_id, HANDSHAKE_KIND, cls.signed_message(role, challenge, listen))
        return cls(key.public_key.raw, listen, signature)

    def encode(self) -> bytes:
        return codec.encode({"type": "auth", "public_key": self.public_key, "listen": self.listen,
                             "signature": self.signature})

    @classmethod
    def decode(cls, data: bytes) -> Auth:
        doc = _decode(data, "auth", MAX_AUTH_BYTES)
        _exact_fields(doc, _AUTH_FIELDS)
        key, listen, signature = doc["public_key"], doc["listen"], doc["signature"]
        if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_SIZE:
            raise HandshakeFailed("malformed_handshake", "auth has a bad public key")
        if not isinstance(listen, str) or len(listen) > MAX_LISTEN_LENGTH:
            raise HandshakeFailed("malformed_handshake", "auth has a bad listen field")
        if not isinstance(signature, bytes) or not 0 < len(signature) <= MAX_SIGNATURE_SIZE:
            raise HandshakeFailed("malformed_handshake", "auth has no signature")
        return cls(key, listen, signature)


def _exact_fields(doc: dict[str, Any], fields: frozenset[str]) -> None:
    """A handshake frame carries its fields and nothing else, so its bytes have one reading (a later
    protocol version that adds fields says so in ``version``, and is refused as such)."""
    if doc.keys() != fields:
        raise HandshakeFailed("malformed_handshake", f"{doc['type']} must have exactly the fields {sorted(fields)}")


def _decode(data: bytes, expected_type: str, max_size: int) -> dict[str, Any]:
    try:
        doc = codec.decode(data, max_size=max_size)
    except DecodeError as exc:
        raise HandshakeFailed("malformed_handshake", f"{expected_type} is not canonical msgpack: {exc}") from None
    if not isinstance(doc, dict) or doc.get("type") != expected_type:
        raise HandshakeFailed("malformed_handshake", f"expected a {expected_type} message")
    return doc


class Handshake:
    """One side of one handshake. Send :meth:`opening` (if any), then feed each frame received to
    :meth:`receive` and send what it returns, until :attr:`session` is set. Any violation raises
    :class:`HandshakeFailed`; the caller then closes the connection.

    ``expected``: when dialling a particular validator, the only key that may answer.
    ``max_plaintext``: the largest frame the established session will seal or open (never less than
    an auth frame, which must pass through it).
    """

    def __init__(self, role: Role, *, chain_id: str, key: SigningKey, listen: str, peer_keys: PeerKeys,
                 max_plaintext: int, expected: bytes | None = None) -> None:
        self._role = role
        self._chain_id = chain_id
        self._key = key
        self._listen = listen
        self._peer_keys = peer_keys
        self._max = max(max_plaintext, MAX_AUTH_BYTES)
        self._expected = expected
        self._acceptor_share = AcceptorShare() if role is Role.ACCEPTOR else None
        share = self._acceptor_share
        self._acceptor_hello = b"" if share is None else Hello(chain_id, share.x25519, share.ml_kem).encode()
        self._sealer: FrameSealer | None = None
        self._opener: FrameOpener | None = None
        self._challenge = b""
        self.session: SecureSession | None = None

    def opening(self) -> bytes | None:
        """The acceptor speaks first: its hello. The dialer waits for it."""
        return self._acceptor_hello if self._role is Role.ACCEPTOR else None

    def receive(self, frame: bytes) -> list[bytes]:
        if self.session is not None:
            raise HandshakeFailed("malformed_handshake", "a frame after the handshake ended")
        if self._opener is None:
            return self._on_hello(frame)
        return self._on_auth(frame)

    def _on_hello(self, frame: bytes) -> list[bytes]:
        sender = Role.DIALER if self._role is Role.ACCEPTOR else Role.ACCEPTOR
        theirs = Hello.decode(frame, sender)
        if theirs.chain_id != self._chain_id:
            raise HandshakeFailed("wrong_chain", f"peer is on chain {theirs.chain_id[:64]!r}, not {self._chain_id!r}")
        try:
            if self._acceptor_share is not None:
                secrets = self._acceptor_share.secrets(theirs.x25519, theirs.ml_kem)
                dialer_hello, reply = frame, []
            else:
                share = DialerShare(theirs.x25519, theirs.ml_kem)
                secrets = (share.x25519_secret, share.ml_kem_secret)
                self._acceptor_hello = frame
                dialer_hello = Hello(self._chain_id, share.x25519, share.ciphertext).encode()
                reply = [dialer_hello]
        except ValueError as exc:
            raise HandshakeFailed("bad_key_share", f"the peer's key share is unusable: {exc}") from None
        keys = derive_keys(*secrets, transcript_hash(self._chain_id, self._acceptor_hello, dialer_hello))
        outgoing, incoming = ((keys.dialer_to_acceptor, keys.acceptor_to_dialer) if self._role is Role.DIALER
                              else (keys.acceptor_to_dialer, keys.dialer_to_acceptor))
        self._sealer, self._opener = FrameSealer(outgoing, self._max), FrameOpener(incoming, self._max)
        self._challenge = keys.challenge
        if self._role is Role.DIALER:
            reply.append(self._own_auth())
        return reply

    def _own_auth(self) -> bytes:
        assert self._sealer is not None
        auth = Auth.make(self._key, self._chain_id, self._role, self._challenge, self._listen)
        return self._sealer.seal(auth.encode())

    def _on_auth(self, frame: bytes) -> list[bytes]:
        assert self._opener is not None and self._sealer is not None
        try:
            auth = Auth.decode(self._opener.open(frame))
        except (BadFrame, FrameTooLarge) as exc:
            raise HandshakeFailed("bad_frame", f"the auth frame does not open: {exc.message}") from None
        self._check(auth)
        reply = [self._own_auth()] if self._role is Role.ACCEPTOR else []
        self.session = SecureSession(auth.public_key, self._sealer, self._opener)
        return reply

    def _check(self, auth: Auth) -> None:
        """Refuse our own key, a key the allow-list does not name, an unexpected validator, a bad signature."""
        key = auth.public_key
        if key == self._key.public_key.raw:
            raise HandshakeFailed("self_connection", "peer presented our own key")
        verifying = self._peer_keys(key)
        if verifying is None:
            raise HandshakeFailed("unknown_key", f"key {key.hex()} is not in the validator set")
        if self._expected is not None and key != self._expected:
            raise HandshakeFailed("unexpected_key", f"dialled {self._expected.hex()} but {key.hex()} answered")
        their_role = Role.ACCEPTOR if self._role is Role.DIALER else Role.DIALER
        message = Auth.signed_message(their_role, self._challenge, auth.listen)
        if not verifying.verify(self._chain_id, HANDSHAKE_KIND, message, auth.signature):
            raise HandshakeFailed("bad_signature", f"handshake signature for {key.hex()} does not verify")
