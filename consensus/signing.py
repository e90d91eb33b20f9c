"""Ed25519 Signer and Verifier bound to one chain, for the node and for the tests that use real keys."""

from __future__ import annotations

from core.crypto import PrivateKey, sign_bytes, verify


class Ed25519Signer:
    def __init__(self, key: PrivateKey, chain_id: str) -> None:
        self._key = key
        self._chain_id = chain_id

    def sign(self, kind: str, message: bytes) -> bytes:
        return self._key.sign(self._chain_id, kind, message)


class Ed25519Verifier:
    def __init__(self, chain_id: str) -> None:
        self._chain_id = chain_id

    def verify(self, public_key: bytes, kind: str, message: bytes, signature: bytes) -> bool:
        return verify(public_key, sign_bytes(self._chain_id, kind, message), signature)
