"""The governance section genesis declares in ``app_state.governance``, and its threshold arithmetic.

``{"members": ["admin0", "admin1", ...]}`` (account names or hex public keys of
accounts holding role ``admin``) with either ``"threshold": K`` (K distinct
members) or ``"threshold_num": N, "threshold_den": D`` (more than N/D of the
members). Without a threshold, more than 2/3 of the members must approve, the
BFT quorum that no coalition of up to a third of the hospitals can reach alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import InvalidGenesis

MAX_MEMBERS = 256


def required_approvals(members: int, num: int, den: int) -> int:
    """The fewest distinct approvals that are *more than* ``num/den`` of ``members``: the least k with
    k * den > members * num (integers only, so every validator computes the same number)."""
    if members < 1 or den < 1 or not 0 <= num < den:
        raise ValueError(f"need members >= 1 and 0 <= num < den, got {members}, {num}/{den}")
    return members * num // den + 1


class GovernanceSection(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    members: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=MAX_MEMBERS)
    threshold: int | None = Field(None, ge=1, le=MAX_MEMBERS)
    threshold_num: int | None = Field(None, ge=0)
    threshold_den: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_threshold(self) -> GovernanceSection:
        fraction = (self.threshold_num, self.threshold_den)
        if self.threshold is not None and fraction != (None, None):
            raise ValueError("give either threshold or threshold_num/threshold_den, not both")
        if (fraction[0] is None) != (fraction[1] is None):
            raise ValueError("threshold_num and threshold_den go together")
        if fraction[0] is not None and fraction[1] is not None and fraction[0] >= fraction[1]:
            raise ValueError("threshold_num must be less than threshold_den (more than num/den must approve)")
        return self


class GovernanceConfig(BaseModel):
    """The resolved section: member admin keys (sorted) and the approvals a proposal needs."""

    model_config = ConfigDict(frozen=True)
    members: tuple[bytes, ...]
    required: int


def governance_config(app_state: Mapping[str, Any], admins: Mapping[str, bytes]) -> GovernanceConfig | None:
    """The section of ``app_state`` resolved against the genesis ``admins`` (name -> public key of every
    account holding role admin); None when genesis declares no governance (one admin key decides)."""
    raw = app_state.get("governance")
    if raw is None:
        return None
    try:
        section = GovernanceSection.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidGenesis(f"app_state.governance{'.' + where if where else ''}: {first['msg']}") from None
    by_key = {key: name for name, key in admins.items()}
    members: list[bytes] = []
    for i, ref in enumerate(section.members):
        key = admins.get(ref)
        if key is None and _is_hex(ref) and bytes.fromhex(ref) in by_key:
            key = bytes.fromhex(ref)
        if key is None:
            raise InvalidGenesis(f"app_state.governance.members[{i}]: {ref[:64]!r} is not the name or public key "
                                 f"of a genesis account with role admin")
        if key in members:
            raise InvalidGenesis(f"app_state.governance.members[{i}]: {ref[:64]!r} is listed twice")
        members.append(key)
    n = len(members)
    if section.threshold is not None:
        if section.threshold > n:
            raise InvalidGenesis(f"app_state.governance.threshold: {section.threshold} exceeds the {n} members")
        required = section.threshold
    else:
        num, den = (section.threshold_num, section.threshold_den) if section.threshold_num is not None else (2, 3)
        assert den is not None
        required = required_approvals(n, num, den)
    return GovernanceConfig(members=tuple(sorted(members)), required=required)


def _is_hex(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
