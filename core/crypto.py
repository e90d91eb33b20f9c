"""Ed25519 identity: keys, key files, and domain-separated signatures.

A signature always covers ``sign_bytes(chain_id, kind, message)``, the
canonical encoding of ``["fbci/1", chain_id, kind, message]``. Binding the
chain id and the message kind into the signed bytes means a signature made
for one chain or one purpose (a transaction, a prepare vote, a peer
handshake) never verifies for another.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core import codec
from core.errors import InvalidInput

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SIGN_DOMAIN = "fbci/1"


def sign_bytes(chain_id: str, kind: str, message: bytes) -> bytes:
    return codec.encode([SIGN_DOMAIN, chain_id, kind, message])


@dataclass(frozen=True)
class PublicKey:
    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != PUBLIC_KEY_SIZE:
            raise InvalidInput(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")

    @classmethod
    def from_hex(cls, text: str) -> PublicKey:
        try:
            return cls(bytes.fromhex(text))
        except ValueError:
            raise InvalidInput("public key is not hex") from None

    def hex(self) -> str:
        return self.raw.hex()

    def verify(self, chain_id: str, kind: str, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's signature for (chain, kind, message)."""
        return verify(self.raw, sign_bytes(chain_id, kind, message), signature)


def verify(public_key: bytes, signed: bytes, signature: bytes) -> bool:
    """Raw Ed25519 check over already domain-separated bytes; never raises."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, signed)
    except (InvalidSignature, ValueError):
        return False
    return True


class PrivateKey:
    """An Ed25519 signing key; ``sign`` always domain-separates."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise InvalidInput("an Ed25519 private key seed is 32 bytes")
        self._seed = seed
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = PublicKey(self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(os.urandom(32))

    def sign(self, chain_id: str, kind: str, message: bytes) -> bytes:
        return self._key.sign(sign_bytes(chain_id, kind, message))

    def save(self, path: Path) -> None:
        """Write the key file with mode 0600, created so no other user ever reads it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {"type": "ed25519", "seed": self._seed.hex(), "public_key": self.public_key.hex()}, indent=2
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, body.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: Path) -> PrivateKey:
        try:
            mode = path.stat().st_mode & 0o777
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise InvalidInput(f"key file {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"key file {path} is unreadable: {exc}") from None
        if mode & 0o077:
            raise InvalidInput(f"key file {path} has mode {oct(mode)}; it must be 0600")
        if not isinstance(doc, dict) or doc.get("type") != "ed25519" or not isinstance(doc.get("seed"), str):
            raise InvalidInput(f"key file {path} is not an fbci ed25519 key")
        try:
            key = cls(bytes.fromhex(doc["seed"]))
        except ValueError:
            raise InvalidInput(f"key file {path}: seed is not hex") from None
        if doc.get("public_key") not in (None, key.public_key.hex()):
            raise InvalidInput(f"key file {path}: public key does not match the seed")
        return key
