"""Signed read requests: what a client adds to a private JSON-RPC read and what the node checks.

A private read (genesis ``app_state.read_policy``, default
:attr:`core.api.Access.private`) carries an ``auth`` member in its by-name
params: the reader's key, its clock in Unix ms, a fresh random nonce, and an
Ed25519 signature over ``[key, timestamp_ms, nonce, sha256([method, params])]``
under the domain ``(chain id, "rpc/read")`` of :mod:`core.crypto`, so a read
signature can never pass for a transaction, a vote or another chain's read.
``params`` is the method's params model dumped as JSON values
(``model_dump(mode="json")``): both sides compute it from the same model, so
by-name order or omitted defaults cannot change the hash.

The node refuses a timestamp outside its window (:data:`DEFAULT_WINDOW_MS`),
a nonce the key already used, an unknown or revoked key and a role the method
does not admit, each with its own code (``core.errors.ReadRefused``).
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core import codec
from core.crypto import PrivateKey, sign_bytes, verify
from core.hashing import sha256
from core.wire import Hash32, HexBytes

READ_KIND = "rpc/read"
AUTH_PARAM = "auth"
NONCE_BYTES = 16
DEFAULT_WINDOW_MS = 30_000
"""How far a request's timestamp may be from the node's clock, either way."""


class ReadAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    key: Hash32 = Field(description="the reader's Ed25519 public key, hex")
    timestamp_ms: int = Field(ge=0, le=2**63 - 1, description="the reader's clock, Unix ms")
    nonce: HexBytes = Field(description=f"{NONCE_BYTES} random bytes, hex, never reused by this key")
    signature: HexBytes = Field(description="Ed25519 over the read's sign bytes, hex")


def request_digest(method: str, params: dict[str, Any]) -> bytes:
    return sha256(codec.encode([method, params]))


def _message(key: bytes, timestamp_ms: int, nonce: bytes, digest: bytes) -> bytes:
    return codec.encode([key, timestamp_ms, nonce, digest])


def sign_read(key: PrivateKey, chain_id: str, method: str, params: dict[str, Any], now_ms: int,
              nonce: bytes | None = None) -> ReadAuth:
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    pub = key.public_key.raw
    signature = key.sign(chain_id, READ_KIND, _message(pub, now_ms, nonce, request_digest(method, params)))
    return ReadAuth(key=pub, timestamp_ms=now_ms, nonce=nonce, signature=signature)


def verify_read(chain_id: str, auth: ReadAuth, method: str, params: dict[str, Any]) -> bool:
    if len(auth.nonce) != NONCE_BYTES:
        return False
    message = _message(auth.key, auth.timestamp_ms, auth.nonce, request_digest(method, params))
    return verify(auth.key, sign_bytes(chain_id, READ_KIND, message), auth.signature)


class ReaderParams(BaseModel):
    """Node-internal (not served over JSON-RPC): who a key is, for the read guard."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    public_key: Hash32


class ReaderInfo(BaseModel):
    """A registered key as the read guard sees it: its roles and whom it acts for.

    ``hospital`` is the key of the hospital it belongs to (its own for a hospital, the issuer's for a
    clinician or patient proxy, None otherwise); ``patient`` the pseudonym a patient proxy acts for."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    public_key: bytes
    name: str
    roles: frozenset[str]
    hospital: bytes | None = None
    hospital_name: str | None = None
    patient: bytes | None = None


READER_PATH = "reader"


class CustodianParams(BaseModel):
    """Node-internal (not served over JSON-RPC): which hospital holds a patient pseudonym, for the read
    guard's check that a clinician scores only its own hospital's patients."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    patient: Hash32


CUSTODIAN_PATH = "custodian"
