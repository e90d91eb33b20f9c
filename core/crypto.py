"""Identity: keys, key files, and domain-separated signatures, Ed25519 or hybrid Ed25519 + ML-DSA-65.

A signature always covers ``sign_bytes(chain_id, kind, message)``, the
canonical encoding of ``["fbci/1", chain_id, kind, message]``. Binding the
chain id and the message kind into the signed bytes means a signature made
for one chain or one purpose (a transaction, a prepare vote, a peer
handshake) never verifies for another.

Hybrid keys (:class:`HybridPrivateKey`) add a post-quantum half; the 32-byte Ed25519
public key stays the identity either way, so a key's *type* is a property of
its registration (genesis says which validators are hybrid), never something a
signature chooses for itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, Union

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core import codec
from core.errors import DecodeError, InvalidInput, UnsupportedKeyType

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SIGN_DOMAIN = "fbci/1"
ML_DSA_PUBLIC_KEY_SIZE = 1952
ML_DSA_SIGNATURE_SIZE = 3309
_ML_DSA_CONTEXT = SIGN_DOMAIN.encode()


class KeyType(str, Enum):
    """How a registered key signs; the value is what genesis, key files and hybrid signatures spell."""

    ED25519 = "ed25519"
    HYBRID = "ed25519+ml-dsa-65"


HYBRID_SIGNATURE_SIZE = len(codec.encode([KeyType.HYBRID.value, bytes(SIGNATURE_SIZE), bytes(ML_DSA_SIGNATURE_SIZE)]))
MAX_SIGNATURE_SIZE = HYBRID_SIGNATURE_SIZE
"""The largest signature any key type makes: what decoders of signed messages bound a signature by."""


class VerifyingKey(Protocol):
    """A public key of any type; ``raw`` is always the 32-byte Ed25519 identity."""

    @property
    def raw(self) -> bytes: ...

    @property
    def key_type(self) -> KeyType: ...

    def verify(self, chain_id: str, kind: str, message: bytes, signature: bytes) -> bool: ...

    def verify_signed(self, signed: bytes, signature: bytes) -> bool: ...


class SigningKey(Protocol):
    """A private key of any type; ``sign`` always domain-separates."""

    @property
    def public_key(self) -> VerifyingKey: ...

    def sign(self, chain_id: str, kind: str, message: bytes) -> bytes: ...


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

    @property
    def key_type(self) -> KeyType:
        return KeyType.ED25519

    def verify(self, chain_id: str, kind: str, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's signature for (chain, kind, message)."""
        return verify(self.raw, sign_bytes(chain_id, kind, message), signature)

    def verify_signed(self, signed: bytes, signature: bytes) -> bool:
        return verify(self.raw, signed, signature)


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
        return self.sign_signed(sign_bytes(chain_id, kind, message))

    def sign_signed(self, signed: bytes) -> bytes:
        """Sign bytes that are already domain-separated (a hybrid key signs the same bytes twice)."""
        return self._key.sign(signed)

    def save(self, path: Path) -> None:
        """Write the key file with mode 0600, created so no other user ever reads it."""
        _write_key_file(path, {"type": KeyType.ED25519.value, "seed": self._seed.hex(),
                               "public_key": self.public_key.hex()})

    @classmethod
    def load(cls, path: Path) -> PrivateKey:
        doc = _read_key_file(path)
        if doc.get("type") != KeyType.ED25519.value:
            raise InvalidInput(f"key file {path} is not an fbci ed25519 key")
        return cls._from_doc(doc, path)

    @classmethod
    def _from_doc(cls, doc: dict[str, Any], path: Path) -> PrivateKey:
        key = cls(_hex_field(doc, "seed", path))
        if doc.get("public_key") not in (None, key.public_key.hex()):
            raise InvalidInput(f"key file {path}: public key does not match the seed")
        return key


# ---- hybrid: Ed25519 + ML-DSA-65 (FIPS 204) ---------------------------------------------------------


def _ml_dsa_unavailable(exc: Exception) -> UnsupportedKeyType:
    return UnsupportedKeyType(f"this build of the cryptography package has no ML-DSA-65 ({exc}); "
                              "hybrid keys need cryptography >= 48 with its standard wheels")


@dataclass(frozen=True)
class HybridPublicKey:
    """Ed25519 (``raw``, the identity) and ML-DSA-65 public keys: a signature is valid only when both halves
    verify, so it stays unforgeable while either scheme holds (against a quantum computer, ML-DSA does)."""

    raw: bytes
    ml_dsa: bytes
    _ml_dsa_key: MLDSA65PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        PublicKey(self.raw)  # checks the Ed25519 half's size
        if not isinstance(self.ml_dsa, bytes) or len(self.ml_dsa) != ML_DSA_PUBLIC_KEY_SIZE:
            raise InvalidInput(f"an ML-DSA-65 public key is {ML_DSA_PUBLIC_KEY_SIZE} bytes")
        try:
            loaded = MLDSA65PublicKey.from_public_bytes(self.ml_dsa)
        except UnsupportedAlgorithm as exc:
            raise _ml_dsa_unavailable(exc) from None
        except ValueError as exc:
            raise InvalidInput(f"not an ML-DSA-65 public key: {exc}") from None
        object.__setattr__(self, "_ml_dsa_key", loaded)

    @property
    def key_type(self) -> KeyType:
        return KeyType.HYBRID

    def verify(self, chain_id: str, kind: str, message: bytes, signature: bytes) -> bool:
        return self.verify_signed(sign_bytes(chain_id, kind, message), signature)

    def verify_signed(self, signed: bytes, signature: bytes) -> bool:
        """Both halves over the same signed bytes; anything that is not a hybrid signature is False."""
        try:
            ed, ml = decode_hybrid_signature(signature)
        except DecodeError:
            return False
        if not verify(self.raw, signed, ed):
            return False
        try:
            self._ml_dsa_key.verify(ml, signed, _ML_DSA_CONTEXT)
        except (InvalidSignature, ValueError):
            return False
        return True


def encode_hybrid_signature(ed25519: bytes, ml_dsa: bytes) -> bytes:
    return codec.encode([KeyType.HYBRID.value, ed25519, ml_dsa])


def decode_hybrid_signature(signature: bytes) -> tuple[bytes, bytes]:
    """``[type, ed25519 signature, ML-DSA-65 signature]`` in the canonical codec, strictly (one encoding)."""
    if not isinstance(signature, bytes) or len(signature) != HYBRID_SIGNATURE_SIZE:
        raise DecodeError(f"a hybrid signature is {HYBRID_SIGNATURE_SIZE} bytes")
    value = codec.decode(signature, max_size=HYBRID_SIGNATURE_SIZE)
    if (not isinstance(value, list) or len(value) != 3 or value[0] != KeyType.HYBRID.value
            or not isinstance(value[1], bytes) or len(value[1]) != SIGNATURE_SIZE
            or not isinstance(value[2], bytes) or len(value[2]) != ML_DSA_SIGNATURE_SIZE):
        raise DecodeError("a hybrid signature is [type, 64-byte Ed25519, 3309-byte ML-DSA-65]")
    return value[1], value[2]


class HybridPrivateKey:
    """An Ed25519 seed and an ML-DSA-65 seed; ``sign`` signs the same domain-separated bytes with both."""

    def __init__(self, seed: bytes, ml_dsa_seed: bytes) -> None:
        if len(ml_dsa_seed) != 32:
            raise InvalidInput("an ML-DSA-65 private key seed is 32 bytes")
        self._ed = PrivateKey(seed)
        self._seed = seed
        self._ml_dsa_seed = ml_dsa_seed
        try:
            self._ml = MLDSA65PrivateKey.from_seed_bytes(ml_dsa_seed)
        except UnsupportedAlgorithm as exc:
            raise _ml_dsa_unavailable(exc) from None
        self.public_key = HybridPublicKey(self._ed.public_key.raw, self._ml.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> HybridPrivateKey:
        return cls(os.urandom(32), os.urandom(32))

    @property
    def ed25519(self) -> PrivateKey:
        """The Ed25519 half alone: what signs this identity's transactions, whose envelope carries a 64-byte
        Ed25519 signature (hybrid transactions need a new envelope; see the README)."""
        return self._ed

    def sign(self, chain_id: str, kind: str, message: bytes) -> bytes:
        signed = sign_bytes(chain_id, kind, message)
        return encode_hybrid_signature(self._ed.sign_signed(signed), self._ml.sign(signed, _ML_DSA_CONTEXT))

    def save(self, path: Path) -> None:
        _write_key_file(path, {"type": KeyType.HYBRID.value, "seed": self._seed.hex(),
                               "ml_dsa_seed": self._ml_dsa_seed.hex(), "public_key": self.public_key.raw.hex()})

    @classmethod
    def _from_doc(cls, doc: dict[str, Any], path: Path) -> HybridPrivateKey:
        key = cls(_hex_field(doc, "seed", path), _hex_field(doc, "ml_dsa_seed", path))
        if doc.get("public_key") not in (None, key.public_key.raw.hex()):
            raise InvalidInput(f"key file {path}: public key does not match the seed")
        return key


AnySigningKey = Union[PrivateKey, HybridPrivateKey]


def load_signing_key(path: Path) -> AnySigningKey:
    """A key file of either type; its ``type`` field says which."""
    doc = _read_key_file(path)
    kinds: dict[Any, type[PrivateKey] | type[HybridPrivateKey]] = {
        KeyType.ED25519.value: PrivateKey, KeyType.HYBRID.value: HybridPrivateKey}
    cls = kinds.get(doc.get("type"))
    if cls is None:
        raise InvalidInput(f"key file {path} has type {str(doc.get('type'))[:40]!r}; "
                           f"expected one of {sorted(k for k in kinds)}")
    return cls._from_doc(doc, path)


def _write_key_file(path: Path, doc: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps(doc, indent=2).encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_key_file(path: Path) -> dict[str, Any]:
    try:
        mode = path.stat().st_mode & 0o777
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInput(f"key file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"key file {path} is unreadable: {exc}") from None
    if mode & 0o077:
        raise InvalidInput(f"key file {path} has mode {oct(mode)}; it must be 0600")
    if not isinstance(doc, dict):
        raise InvalidInput(f"key file {path} is not an fbci key")
    return doc


def _hex_field(doc: dict[str, Any], name: str, path: Path) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"key file {path} is not an fbci key: no {name}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidInput(f"key file {path}: {name} is not hex") from None
