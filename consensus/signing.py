"""Signer and Verifier bound to one chain, for the node and for the tests that use real keys.

The verifier checks each validator by the key type its registration declares
(:class:`KeyedVerifier`): a validator registered as hybrid is held to hybrid
signatures, so an Ed25519-only signature, which a quantum adversary could
forge, never passes for it. An identity registered nowhere is an Ed25519 key,
as every key was before hybrid keys existed.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.crypto import SigningKey, VerifyingKey, sign_bytes, verify


class ChainSigner:
    """Signs consensus messages with an Ed25519 or a hybrid key, in this chain's signing domain."""

    def __init__(self, key: SigningKey, chain_id: str) -> None:
        self._key = key
        self._chain_id = chain_id

    def sign(self, kind: str, message: bytes) -> bytes:
        return self._key.sign(self._chain_id, kind, message)


class KeyedVerifier:
    """``keys``: the registered verifying keys by identity (genesis's validator set, hybrid ones included)."""

    def __init__(self, chain_id: str, keys: Mapping[bytes, VerifyingKey] | None = None) -> None:
        self._chain_id = chain_id
        self._keys = dict(keys or {})

    def verify(self, public_key: bytes, kind: str, message: bytes, signature: bytes) -> bool:
        signed = sign_bytes(self._chain_id, kind, message)
        key = self._keys.get(public_key)
        if key is None:
            return verify(public_key, signed, signature)
        return key.verify_signed(signed, signature)

    def learn(self, keys: Mapping[bytes, VerifyingKey]) -> None:
        """Validators a set change admits: their key types count from now on. Nothing is forgotten, since
        a removed validator's signatures in the history it signed stay checkable."""
        self._keys.update(keys)


Ed25519Signer = ChainSigner
"""The name the callers with plain Ed25519 keys have always used."""
Ed25519Verifier = KeyedVerifier
"""With no registered keys every identity is an Ed25519 key: the verifier of an all-Ed25519 chain."""
