"""The signed transaction envelope.

A transaction is ``[chain_id, sender, nonce, kind, payload, signature]``. This
module is the only place that knows that layout: the hot paths that must not
decode a whole transaction (the RPC edge reading the signer to rate-limit it,
signature checks cutting the signed body out of the bytes) use
:func:`sender_of` and :func:`signed_body_of` here, which property tests hold
equal to the full decode.
The signature covers the canonical encoding of the first five fields under the
sign kind ``"tx"``; the chain id is inside the signed body *and* in the
signing domain, so a transaction can never be replayed on another chain. The
transaction hash is SHA-256 of the full canonical encoding; the encoding is
canonical, so one transaction has exactly one hash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from core import codec
from core.crypto import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, PrivateKey, sign_bytes, verify
from core.errors import DecodeError, InvalidInput, TooLarge
from core.hashing import sha256

SIGN_KIND = "tx"
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
MAX_NONCE = 2**63 - 1
MAX_NONCE_GAP = 64
"""How far ahead of its committed nonce a sender's transaction may be admitted: what a client may have in
flight at once."""


@dataclass(frozen=True)
class Transaction:
    chain_id: str
    sender: bytes
    nonce: int
    kind: str
    payload: dict[str, Any]
    signature: bytes

    def body(self) -> list[Any]:
        return [self.chain_id, self.sender, self.nonce, self.kind, self.payload]

    def signed_message(self) -> bytes:
        return codec.encode(self.body())

    def encode(self) -> bytes:
        return codec.encode([*self.body(), self.signature])

    @property
    def hash(self) -> bytes:
        return sha256(self.encode())

    def verify_signature(self, raw: bytes | None = None) -> bool:
        """``raw``: the canonical bytes this transaction was decoded from, when the caller has them,
        so the signed body is cut from them instead of re-encoded (:func:`signed_body_of`)."""
        body = signed_body_of(raw, self) if raw is not None else None
        message = self.signed_message() if body is None else body
        return verify(self.sender, sign_bytes(self.chain_id, SIGN_KIND, message), self.signature)

    @classmethod
    def create(cls, key: PrivateKey, chain_id: str, nonce: int, kind: str, payload: dict[str, Any]) -> Transaction:
        unsigned = cls(chain_id, key.public_key.raw, nonce, kind, payload, b"")
        unsigned.validate_shape()
        signature = key.sign(chain_id, SIGN_KIND, unsigned.signed_message())
        return cls(chain_id, key.public_key.raw, nonce, kind, payload, signature)

    def validate_shape(self) -> None:
        """Field types and ranges; says which field is wrong."""
        if not isinstance(self.chain_id, str) or not 0 < len(self.chain_id) <= 64:
            raise InvalidInput("tx.chain_id must be a string of 1..64 characters")
        if not isinstance(self.sender, bytes) or len(self.sender) != PUBLIC_KEY_SIZE:
            raise InvalidInput(f"tx.sender must be a {PUBLIC_KEY_SIZE}-byte public key")
        if isinstance(self.nonce, bool) or not isinstance(self.nonce, int) or not 1 <= self.nonce <= MAX_NONCE:
            raise InvalidInput("tx.nonce must be an integer from 1 to 2**63-1")
        if not isinstance(self.kind, str) or not KIND_PATTERN.match(self.kind):
            raise InvalidInput("tx.kind must look like 'module.action' (lower case)")
        if not isinstance(self.payload, dict):
            raise InvalidInput("tx.payload must be a map")
        if not isinstance(self.signature, bytes) or len(self.signature) not in (0, SIGNATURE_SIZE):
            raise InvalidInput(f"tx.signature must be {SIGNATURE_SIZE} bytes")

    @classmethod
    def decode(cls, data: bytes, *, max_size: int) -> Transaction:
        if len(data) > max_size:
            raise TooLarge(f"transaction is {len(data)} bytes; the limit is {max_size}")
        fields = codec.decode(data, max_size=max_size)
        if not isinstance(fields, list) or len(fields) != 6:
            raise DecodeError("a transaction is a list of 6 fields")
        tx = cls(*fields)
        tx.validate_shape()
        if len(tx.signature) != SIGNATURE_SIZE:
            raise InvalidInput("transaction is not signed")
        return tx


# The canonical encoding of the 6-field list is a fixarray header, the five signed fields, then the
# signature as bin8 of 64 bytes; the signed body is the same five fields under a 5-array header.
_TX_ARRAY = 0x96
_BODY_ARRAY = b"\x95"
_SIG_HEADER = bytes([0xC4, SIGNATURE_SIZE])
_SENDER_HEADER = bytes([0xC4, PUBLIC_KEY_SIZE])


def sender_of(raw: bytes) -> bytes | None:
    """The sender of an encoded transaction without decoding it; None if ``raw`` does not start
    with a 6-array, a str chain id (fixstr or str8) and a 32-byte bin8 (then decode it to learn why)."""
    if len(raw) < 36 or raw[0] != _TX_ARRAY:
        return None
    head = raw[1]
    if 0xA0 <= head <= 0xBF:
        at = 2 + (head & 0x1F)
    elif head == 0xD9:
        at = 3 + raw[2]
    else:
        return None
    if raw[at:at + 2] != _SENDER_HEADER or len(raw) < at + 2 + PUBLIC_KEY_SIZE:
        return None
    return raw[at + 2:at + 2 + PUBLIC_KEY_SIZE]


def signed_body_of(raw: bytes, tx: Transaction) -> bytes | None:
    """``tx.signed_message()`` cut out of ``raw``, the canonical encoding ``tx`` was decoded from;
    None if ``raw`` is not laid out so (the caller then re-encodes)."""
    if len(raw) < 67 or raw[0] != _TX_ARRAY or raw[-66:-64] != _SIG_HEADER or raw[-64:] != tx.signature:
        return None
    return _BODY_ARRAY + raw[1:-66]


def parse_payload(model: type[BaseModel], payload: Any) -> Any:
    """A payload validated by ``model``, or :class:`InvalidInput` naming the first bad field in one plain
    message (every contract's payloads go through here, so every refusal reads the same)."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise InvalidInput(f"payload.{where}: {first['msg']}") from None
