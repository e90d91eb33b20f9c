"""An in-memory :class:`core.state.StateView` for tests and the in-process simulation.

``node/`` backs contracts with LevelDB; this dict-backed twin keeps the same
contract (bytewise key order in ``scan``) so the contract runs unchanged.
``snapshot``/``restore`` let callers emulate the node discarding a failed
transaction's writes.
"""

from __future__ import annotations

from collections.abc import Iterator


class MemoryState:
    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        self._data[bytes(key)] = bytes(value)

    def delete(self, key: bytes) -> None:
        self._data.pop(key, None)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(k for k in self._data if k.startswith(prefix)):
            yield key, self._data[key]

    def snapshot(self) -> dict[bytes, bytes]:
        return dict(self._data)

    def restore(self, snapshot: dict[bytes, bytes]) -> None:
        self._data = dict(snapshot)
