"""The signed transaction envelope.

A transaction is ``[chain_id, sender, nonce, kind, payload, signature]``.
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

from core import codec
from core.crypto import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, PrivateKey, sign_bytes, verify
from core.errors import DecodeError, InvalidInput, TooLarge
from core.hashing import sha256

SIGN_KIND = "tx"
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
MAX_NONCE = 2**63 - 1


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

    def verify_signature(self) -> bool:
        return verify(self.sender, sign_bytes(self.chain_id, SIGN_KIND, self.signed_message()), self.signature)

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
