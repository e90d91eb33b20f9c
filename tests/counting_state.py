"""An in-memory state that counts the entries scans yield: how tests prove a query reads its page only."""

from __future__ import annotations

from collections.abc import Iterator

from core.state import MemoryState


class CountingState(MemoryState):
    """Counts the entries its scans yield (index entries, round records) in ``scanned``."""

    def __init__(self) -> None:
        super().__init__()
        self.scanned = 0

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        for item in super().scan(prefix, start):
            self.scanned += 1
            yield item
