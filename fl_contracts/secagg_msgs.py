"""The four secure-round transactions and the round view, defined once for hospital and validator.

A hospital builds these payloads (``client/fl/secagg.py``), the contract
(:mod:`fl_contracts.secure_round`) validates them, and both read the round
through :class:`SecureRoundView`. Every byte field has a fixed length, so a
malformed payload is refused by the model before the contract looks at it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBytes, StrictInt, StrictStr

from core.wire import WIRE_BYTES

KEYS_KIND = "fl.secagg_keys"
SHARES_KIND = "fl.secagg_shares"
MASKED_KIND = "fl.secagg_masked"
UNMASK_KIND = "fl.secagg_unmask"
KINDS = (KEYS_KIND, SHARES_KIND, MASKED_KIND, UNMASK_KIND)

Stage = Literal["keys", "shares", "masked", "unmask"]
STAGES: tuple[Stage, ...] = ("keys", "shares", "masked", "unmask")

Bytes32 = Annotated[StrictBytes, Field(min_length=32, max_length=32)]
Bytes16 = Annotated[StrictBytes, Field(min_length=16, max_length=16)]
CIPHERTEXT_BYTES = 2 * 16 + 16
"""A holder's two 16-byte shares (self-mask seed, mask-key seed) plus the Poly1305 tag."""
Ciphertext = Annotated[StrictBytes, Field(min_length=CIPHERTEXT_BYTES, max_length=CIPHERTEXT_BYTES)]
_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)
_STATE = ConfigDict(extra="forbid", frozen=True, **WIRE_BYTES)


class _Addressed(BaseModel):
    model_config = _STRICT
    model_id: StrictStr
    round: StrictInt = Field(ge=1)


class SecKeys(_Addressed):
    """Stage 1: two X25519 public keys, one to receive shares on, one to agree pairwise masks with."""

    enc_pk: Bytes32
    mask_pk: Bytes32


class SecShares(_Addressed):
    """Stage 2: for every member in round order (itself included), the encrypted pair of shares
    and the dealer's commitment to each share."""

    ciphertexts: list[Ciphertext]
    commit_b: list[Bytes32]
    commit_s: list[Bytes32]
    commit_seed: Bytes32
    """Commitment to the dealer's own self-mask seed (:func:`fl_contracts.secagg.seed_commitment`)."""


class SecMasked(_Addressed):
    """Stage 3: ``w x + masks`` as little-endian uint64; ``num_samples`` gives ``w`` as in a plain round."""

    num_samples: StrictInt = Field(ge=1, le=2**53)
    masked: StrictBytes


class RevealedShare(BaseModel):
    model_config = _STRICT
    dealer: Bytes32
    kind: Literal["b", "s"]
    share: Bytes16


class SecUnmask(_Addressed):
    """Stage 4: a survivor's own self-mask seed, and its shares of the other survivors' self-mask seeds
    and of the dropouts' mask-key seeds."""

    shares: list[RevealedShare] = Field(max_length=2048)
    own_seed: Bytes16 | None = None
    """The survivor's own self-mask seed: checked against its commitment, it spares the chain
    rebuilding that seed from shares (which it still does for a survivor that reveals nothing)."""


class Member(BaseModel):
    """A hospital that posted keys, with its 1-based share index (its rank by account key)."""

    model_config = _STATE
    sender: bytes
    index: int
    enc_pk: bytes
    mask_pk: bytes


class Dealt(BaseModel):
    """What one dealer sent one holder: the ciphertext and the dealer's commitments to its two shares."""

    model_config = _STATE
    dealer: bytes
    ciphertext: bytes
    commit_b: bytes
    commit_s: bytes


class SecureRoundView(BaseModel):
    """What a hospital reads to take its next step; ``inbox`` holds what each dealer sent the
    hospital that asked (empty when none was asked for)."""

    model_config = _STATE
    model_id: str
    round: int
    base_version: int
    stage: Stage
    deadline_height: int
    threshold: int
    members: list[Member]
    shared: list[bytes]
    masked: list[bytes]
    revealed: list[bytes]
    inbox: list[Dealt] = []

    def member(self, sender: bytes) -> Member:
        for m in self.members:
            if m.sender == sender:
                return m
        raise KeyError(sender.hex())


class SecureOutcome(BaseModel):
    """Who took part in which stage, and who was caught revealing a wrong share."""

    model_config = _STATE
    model_id: str
    round: int
    stage_reached: Stage
    threshold: int
    members: list[bytes]
    shared: list[bytes]
    masked: list[bytes]
    wrong_share: list[bytes]
    status: str
    reason: str | None = None
