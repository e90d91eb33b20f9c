"""The narrow interface on-chain contracts execute against.

Contracts in ``fl_contracts/`` and ``ids/`` read and write state only
through :class:`StateView`, which ``node/`` backs with the state store's
per-block write buffer and :class:`MemoryState` backs with a dict (tests and
the in-process simulation); they learn about the transaction only through
:class:`TxContext`. Neither gives access to the clock, randomness or disk, so
execution stays deterministic by construction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


class StateView(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def set(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Key-ordered (bytewise) pairs whose key starts with ``prefix`` and, given ``start``, is at
        least ``start``: a store seeks there, so a page costs its own length, not the keys before it."""
        ...


@dataclass(frozen=True)
class TxContext:
    """What a contract may know about the transaction it executes."""

    chain_id: str
    height: int
    block_time_ms: int
    sender: bytes
    sender_roles: frozenset[str]
    tx_hash: bytes
    sender_name: str
    """The sender's registered account name: who the chain knows it as, so a contract can bind a
    claim of identity (an alert's reporter) to the key that signed it."""


class MemoryState:
    """A dict-backed :class:`StateView` with the same bytewise key order in ``scan``;
    ``snapshot``/``restore`` let callers emulate the node discarding a failed transaction's writes."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        self._data[bytes(key)] = bytes(value)

    def delete(self, key: bytes) -> None:
        self._data.pop(key, None)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(k for k in self._data if k.startswith(prefix) and (start is None or k >= start)):
            yield key, self._data[key]

    def snapshot(self) -> dict[bytes, bytes]:
        return dict(self._data)

    def restore(self, snapshot: dict[bytes, bytes]) -> None:
        self._data = dict(snapshot)
