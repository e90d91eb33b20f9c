"""Cheap stand-ins for Ed25519 so the property tests can afford thousands of schedules.

A fake signature is SHA-256 over (key, kind, message): only the harness, which
plays every validator, can produce one, and a replica can still tell a valid
signature from a corrupted one, which is all the protocol relies on.
"""

from __future__ import annotations

from core import codec
from core.hashing import sha256


def validator_keys(n: int) -> tuple[bytes, ...]:
    return tuple(sha256(b"validator %d" % i) for i in range(n))


class FakeSigner:
    def __init__(self, key: bytes) -> None:
        self.key = key
        self.count = 0

    def sign(self, kind: str, message: bytes) -> bytes:
        self.count += 1
        return fake_signature(self.key, kind, message)


class FakeVerifier:
    def __init__(self) -> None:
        self.count = 0

    def verify(self, public_key: bytes, kind: str, message: bytes, signature: bytes) -> bool:
        self.count += 1
        return signature == fake_signature(public_key, kind, message)


def fake_signature(key: bytes, kind: str, message: bytes) -> bytes:
    return sha256(codec.encode([key, kind, message]))


def make_block(height: int, view: int, proposer: bytes, salt: int = 0) -> tuple[bytes, bytes]:
    """An opaque block for the simulator: its hash is SHA-256 of its bytes, as the node's will be."""
    block = codec.encode([height, view, proposer, salt])
    return block, sha256(block)


def block_is_valid(height: int, block: bytes, block_hash: bytes) -> bool:
    try:
        value = codec.decode(block)
    except Exception:
        return False
    return sha256(block) == block_hash and isinstance(value, list) and len(value) == 4 and value[0] == height
