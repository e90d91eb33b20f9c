"""Which key an account used when: the rotations ``acl.rotate`` (or a governance ``rotate``) recorded.

A rotated key signs nothing new, but what it signed before stays history: a
block, an alert or a piece of evidence naming the old key is resolved through
this record to the account that held it, and the new key it moved to. The
validator writes it (``node.accounts``); a client reads it with the
``key_history`` query, defined here once for both.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from core import codec
from core.api import Params, Query
from core.state import StateView
from core.wire import WIRE_BYTES, HexBytes

_NEXT = b"keyhist/next/"
_PREV = b"keyhist/prev/"
MAX_CHAIN = 1024
"""Rotations one answer follows (an account rotating every block for years would still fit)."""


class KeyChange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, **WIRE_BYTES)
    old: bytes
    new: bytes
    height: int
    """The height of the block that executed the rotation; the old key is refused from the next one."""


class KeyHistoryParams(Params):
    public_key: HexBytes


def record_rotation(state: StateView, old: bytes, new: bytes, height: int) -> None:
    state.set(_NEXT + old, codec.encode([new, height]))
    state.set(_PREV + new, old)


def rotated_to(state: StateView, old: bytes) -> KeyChange | None:
    """The rotation that retired ``old``; None while ``old`` was never rotated away."""
    raw = state.get(_NEXT + old)
    if raw is None:
        return None
    new, height = codec.decode(raw)
    return KeyChange(old=old, new=new, height=height)


def was_rotated(state: StateView, key: bytes) -> bool:
    """Whether ``key`` ever held an account that moved on (so it must never be registered again)."""
    return state.get(_NEXT + key) is not None or state.get(_PREV + key) is not None


def current_key(state: StateView, key: bytes) -> bytes:
    """The key an account that once used ``key`` uses now (``key`` itself if it was never rotated)."""
    for _ in range(MAX_CHAIN):
        change = rotated_to(state, key)
        if change is None:
            break
        key = change.new
    return key


def key_history(state: StateView, p: KeyHistoryParams) -> list[KeyChange]:
    """Every rotation of the account that used ``p.public_key`` at any time, oldest first."""
    first = p.public_key
    for _ in range(MAX_CHAIN):
        prev = state.get(_PREV + first)
        if prev is None:
            break
        first = prev
    changes: list[KeyChange] = []
    key = first
    while len(changes) < MAX_CHAIN and (change := rotated_to(state, key)) is not None:
        changes.append(change)
        key = change.new
    return changes


KEY_HISTORY: Query[KeyHistoryParams, list[KeyChange]] = Query(
    "key_history", "Every key rotation of the account that used this key, oldest first.", KeyHistoryParams,
    list[KeyChange])

STATE_QUERIES = ((KEY_HISTORY, key_history),)
