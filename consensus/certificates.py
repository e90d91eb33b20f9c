"""Quorum certificates: the self-contained proofs that anyone holding the validator set can check.

A certificate is a set of signatures from distinct validators on the same
(height, view, block_hash). Its value is that it needs no trust in whoever
hands it over: block sync, view change and light clients all re-verify it.
Quorums are sized so that any two intersect in at least f + 1 validators,
i.e. in at least one honest one; for n = 3f + 1 that is the paper's 2f + 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from core import codec
from core.crypto import MAX_SIGNATURE_SIZE
from core.errors import DecodeError, InvalidInput
from core.hashing import HASH_SIZE, sha256

PUBLIC_KEY_SIZE = 32
KIND_PREPARE = "pbft.prepare"
KIND_COMMIT = "pbft.commit"
MAX_INT = 2**63 - 1


class Verifier(Protocol):
    """Checks a domain-separated signature; the node binds the chain id, and knows each validator's key
    type (``consensus.signing.KeyedVerifier``), so certificates of hybrid validators verify both halves."""

    def verify(self, public_key: bytes, kind: str, message: bytes, signature: bytes) -> bool: ...


class InvalidCertificate(InvalidInput):
    """A certificate without a quorum of valid, distinct validator signatures."""

    reason = "invalid_certificate"


def max_faulty(n: int) -> int:
    """f: the most Byzantine validators n can tolerate (n >= 3f + 1)."""
    return (n - 1) // 3


def quorum_size(n: int) -> int:
    """Smallest q with 2q - n >= f + 1, so two quorums always share an honest validator."""
    return (n + max_faulty(n)) // 2 + 1


def vote_sign_bytes(chain_id: str, height: int, view: int, block_hash: bytes) -> bytes:
    """The chain id is in the body as well as the signing domain, so a vote never crosses chains."""
    return codec.encode([chain_id, height, view, block_hash])


def check_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise DecodeError(f"{name} must be an integer in [0, 2**63)")
    return value


def check_bytes(value: Any, name: str, size: int | None = None, max_size: int | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise DecodeError(f"{name} must be bytes")
    if size is not None and len(value) != size:
        raise DecodeError(f"{name} must be {size} bytes")
    if max_size is not None and not 0 < len(value) <= max_size:
        raise DecodeError(f"{name} must be 1..{max_size} bytes")
    return value


def check_list(value: Any, name: str, length: int | None = None) -> list[Any]:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        raise DecodeError(f"{name} must be a list" + (f" of {length} items" if length is not None else ""))
    return value


def encode_signatures(signatures: tuple[tuple[bytes, bytes], ...]) -> list[list[bytes]]:
    return [[v, s] for v, s in signatures]


def decode_signatures(value: Any, name: str) -> tuple[tuple[bytes, bytes], ...]:
    """Strict: sorted by validator key and unique, so one certificate has one encoding."""
    pairs = []
    for item in check_list(value, name):
        v, s = check_list(item, f"{name} entry", 2)
        pairs.append((check_bytes(v, f"{name} validator", PUBLIC_KEY_SIZE),
                      check_bytes(s, f"{name} signature", max_size=MAX_SIGNATURE_SIZE)))
    keys = [v for v, _ in pairs]
    if keys != sorted(set(keys)):
        raise DecodeError(f"{name} must be sorted by validator with no duplicates")
    return tuple(pairs)


def verify_quorum(kind: str, body: bytes, signatures: tuple[tuple[bytes, bytes], ...],
                  validators: tuple[bytes, ...], verifier: Verifier, what: str) -> None:
    """Raise unless every signature is valid and a quorum of distinct validators signed."""
    members = set(validators)
    seen: set[bytes] = set()
    for validator, signature in signatures:
        if validator not in members:
            raise InvalidCertificate(f"{what}: {validator.hex()[:16]} is not a validator")
        if validator in seen:
            raise InvalidCertificate(f"{what}: {validator.hex()[:16]} signed twice")
        if not verifier.verify(validator, kind, body, signature):
            raise InvalidCertificate(f"{what}: bad signature from {validator.hex()[:16]}")
        seen.add(validator)
    need = quorum_size(len(validators))
    if len(seen) < need:
        raise InvalidCertificate(f"{what}: {len(seen)} signatures, {need} needed")


def weak_support(kind: str, body: bytes, signatures: tuple[tuple[bytes, bytes], ...],
                 validators: tuple[bytes, ...], verifier: Verifier) -> bool:
    """Whether at least f + 1 of ``validators`` validly signed: at least one honest member vouches for it.

    For a certificate from a height whose set a lagging replica does not know yet (the chain changed its
    validators while it was away): enough to go and sync, never enough to commit."""
    members, need, good = set(validators), max_faulty(len(validators)) + 1, 0
    for validator, signature in signatures:
        if validator in members and verifier.verify(validator, kind, body, signature):
            good += 1
            if good >= need:
                return True
    return False


def _sorted_sigs(signatures: tuple[tuple[bytes, bytes], ...]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(sorted(signatures))


@dataclass(frozen=True)
class CommitCertificate:
    """A quorum of commit votes: the block at ``height`` is final, stored with it and hashed into the next header."""

    height: int
    view: int
    block_hash: bytes
    signatures: tuple[tuple[bytes, bytes], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "signatures", _sorted_sigs(self.signatures))

    def to_value(self) -> list[Any]:
        return [self.height, self.view, self.block_hash, encode_signatures(self.signatures)]

    @classmethod
    def from_value(cls, value: Any) -> CommitCertificate:
        h, v, bh, sigs = check_list(value, "commit certificate", 4)
        return cls(check_int(h, "height"), check_int(v, "view"),
                   check_bytes(bh, "block_hash", HASH_SIZE), decode_signatures(sigs, "signatures"))

    def encode(self) -> bytes:
        return codec.encode(self.to_value())

    @classmethod
    def decode(cls, data: bytes) -> CommitCertificate:
        return cls.from_value(codec.decode(data))

    def hash(self) -> bytes:
        return sha256(self.encode())

    def verify(self, chain_id: str, validators: tuple[bytes, ...], verifier: Verifier) -> None:
        """``validators``: the set of this certificate's own height (they change, see ``core.validators``)."""
        body = vote_sign_bytes(chain_id, self.height, self.view, self.block_hash)
        verify_quorum(KIND_COMMIT, body, self.signatures, validators, verifier,
                      f"commit certificate for height {self.height}")

    def vouched_by(self, chain_id: str, validators: tuple[bytes, ...], verifier: Verifier) -> bool:
        """f + 1 of ``validators`` signed it (see :func:`weak_support`)."""
        body = vote_sign_bytes(chain_id, self.height, self.view, self.block_hash)
        return weak_support(KIND_COMMIT, body, self.signatures, validators, verifier)


@dataclass(frozen=True)
class PreparedCertificate:
    """A quorum of prepare votes plus the block: what a view change carries so the block can be re-proposed.

    Castro & Liskov: "prepared(m, v, n, i) is true if and only if replica i has
    inserted in its log: the request m, a pre-prepare for m in view v with
    sequence number n, and 2f prepares from different backups that match".
    """

    height: int
    view: int
    block_hash: bytes
    block: bytes
    signatures: tuple[tuple[bytes, bytes], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "signatures", _sorted_sigs(self.signatures))

    def to_value(self) -> list[Any]:
        return [self.height, self.view, self.block_hash, self.block, encode_signatures(self.signatures)]

    @classmethod
    def from_value(cls, value: Any) -> PreparedCertificate:
        h, v, bh, block, sigs = check_list(value, "prepared certificate", 5)
        return cls(check_int(h, "height"), check_int(v, "view"), check_bytes(bh, "block_hash", HASH_SIZE),
                   check_bytes(block, "block"), decode_signatures(sigs, "signatures"))

    def digest(self) -> bytes:
        return sha256(codec.encode(self.to_value()))

    def verify(self, chain_id: str, validators: tuple[bytes, ...], verifier: Verifier) -> None:
        body = vote_sign_bytes(chain_id, self.height, self.view, self.block_hash)
        verify_quorum(KIND_PREPARE, body, self.signatures, validators, verifier,
                      f"prepared certificate for height {self.height} view {self.view}")
