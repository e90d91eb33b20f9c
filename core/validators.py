"""The validator set of a height: who decides it, in proposer order, and its hash that headers commit to.

One type for the validator (state, headers, the ``validators`` read) and for
clients (the light client follows ``next_validators_hash`` with it), so the
set is encoded and hashed one way. The set changes only by a consortium
decision (``validator.add`` / ``validator.remove``); a change decided in
block H decides height H + 2 onward, CometBFT's rule, so the sets of the
height being decided and of the next one are always already known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core import codec
from core.api import NoParams, Query
from core.crypto import HybridPublicKey, KeyType, PublicKey, VerifyingKey
from core.errors import DecodeError
from core.hashing import sha256
from core.state import StateView
from core.wire import Hash32, HexBytes

MIN_VALIDATORS = 4
"""Below 3f + 1 = 4 a chain tolerates no Byzantine validator at all; no decision may go below it."""


@dataclass(frozen=True)
class Validator:
    public_key: Hash32
    name: str
    p2p_address: str
    key_type: str = KeyType.ED25519.value
    ml_dsa_public_key: HexBytes = b""
    """The ML-DSA-65 half of a hybrid key; empty for an Ed25519 validator."""

    def verifying_key(self) -> VerifyingKey:
        if self.key_type == KeyType.HYBRID.value:
            return HybridPublicKey(self.public_key, self.ml_dsa_public_key)
        return PublicKey(self.public_key)

    def to_value(self) -> list[Any]:
        return [self.public_key, self.name, self.p2p_address, self.key_type, self.ml_dsa_public_key]

    @classmethod
    def from_value(cls, value: Any) -> Validator:
        if not (isinstance(value, list) and len(value) == 5 and isinstance(value[0], bytes) and len(value[0]) == 32
                and isinstance(value[1], str) and isinstance(value[2], str) and isinstance(value[3], str)
                and isinstance(value[4], bytes)):
            raise DecodeError("a validator is [public key (32 bytes), name, p2p address, key type, ml-dsa key]")
        return cls(*value)


@dataclass(frozen=True)
class ValidatorSet:
    validators: tuple[Validator, ...]

    @property
    def keys(self) -> tuple[bytes, ...]:
        """The identities in proposer order: what consensus and certificates take."""
        return tuple(v.public_key for v in self.validators)

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def __len__(self) -> int:
        return len(self.validators)

    def get(self, key: bytes) -> Validator | None:
        return next((v for v in self.validators if v.public_key == key), None)

    def verifying_keys(self) -> dict[bytes, VerifyingKey]:
        return {v.public_key: v.verifying_key() for v in self.validators}

    def encode(self) -> bytes:
        return codec.encode([v.to_value() for v in self.validators])

    @classmethod
    def decode(cls, data: bytes) -> ValidatorSet:
        value = codec.decode(data)
        if not isinstance(value, list) or not value:
            raise DecodeError("a validator set is a non-empty list of validators")
        members = tuple(Validator.from_value(v) for v in value)
        if len({v.public_key for v in members}) != len(members):
            raise DecodeError("a validator set lists a key twice")
        return cls(members)

    def hash(self) -> bytes:
        """What ``validators_hash`` and ``next_validators_hash`` hold (SHA-256 of the canonical encoding)."""
        return sha256(self.encode())


# -- as state: one entry per height from which a set decides --------------------------------------

SETS_PREFIX = b"vals/at/"


def set_key(height: int) -> bytes:
    return SETS_PREFIX + height.to_bytes(8, "big")


@dataclass(frozen=True)
class ScheduledSet:
    """A validator set and the first height it decides."""

    start: int
    validators: ValidatorSet


def schedule(state: StateView) -> list[ScheduledSet]:
    """Every set the chain decided, in height order (genesis's from height 1)."""
    return [ScheduledSet(int.from_bytes(key[len(SETS_PREFIX):], "big"), ValidatorSet.decode(raw))
            for key, raw in state.scan(SETS_PREFIX)]


def set_at(decided: list[ScheduledSet], height: int) -> ValidatorSet:
    """The set deciding ``height`` in a schedule (the last one starting at or before it)."""
    chosen = decided[0].validators
    for item in decided:
        if item.start > height:
            break
        chosen = item.validators
    return chosen


def validator_sets(state: StateView, p: NoParams) -> list[ScheduledSet]:
    return schedule(state)


VALIDATOR_SETS: Query[NoParams, list[ScheduledSet]] = Query(
    "validator_sets", "Every validator set the chain decided and the first height each decides (genesis's from 1); "
    "a light client accepts each only through the header before it, whose next_validators_hash names it.",
    NoParams, list[ScheduledSet])
STATE_QUERIES = ((VALIDATOR_SETS, validator_sets),)
