"""Evidence of equivocation: two signed messages from one validator that an honest one never sends both of.

The node puts an ``Evidence`` on chain; anyone can re-check it with the
validator set, so a validator cannot be blamed on a peer's word alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import codec
from core.errors import DecodeError, InvalidInput

from consensus.certificates import Verifier, check_list
from consensus.messages import (
    Commit, NewView, PrePrepare, Prepare, _from_value, _to_value, same_slot,
)

Vote = PrePrepare | Prepare | Commit | NewView


class InvalidEvidence(InvalidInput):
    reason = "invalid_evidence"


@dataclass(frozen=True)
class Evidence:
    """Two conflicting votes (different block hashes) for one (height, view, phase) by ``first.sender``."""

    first: Vote
    second: Vote

    @property
    def validator(self) -> bytes:
        return self.first.sender

    @property
    def height(self) -> int:
        return self.first.height

    def encode(self) -> bytes:
        a, b = sorted([_to_value(self.first), _to_value(self.second)], key=codec.encode)
        return codec.encode([a, b])

    @classmethod
    def decode(cls, data: bytes) -> Evidence:
        a, b = check_list(codec.decode(data), "evidence", 2)
        first, second = _from_value(a), _from_value(b)
        if not isinstance(first, (PrePrepare, Prepare, Commit, NewView)) or not isinstance(
                second, (PrePrepare, Prepare, Commit, NewView)):
            raise DecodeError("evidence holds two proposals or two votes")
        return cls(first, second)

    def verify(self, chain_id: str, validators: tuple[bytes, ...], verifier: Verifier) -> None:
        """Raise ``InvalidEvidence`` unless both messages are validly signed and really conflict."""
        a, b = self.first, self.second
        if not same_slot(a, b):
            raise InvalidEvidence("the two messages are not for the same validator, height, view and phase")
        if a.block_hash == b.block_hash:
            raise InvalidEvidence("the two messages agree; that is not equivocation")
        if a.sender not in validators:
            raise InvalidEvidence("the sender is not a validator")
        for m in (a, b):
            if not verifier.verify(m.sender, m.kind, m.sign_bytes(chain_id), m.signature):
                raise InvalidEvidence(f"bad signature on the {m.kind} message")

