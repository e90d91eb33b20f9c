"""Plain-text tables for terminals: what ``fbci`` commands and ``fbci demo`` print instead of Python reprs.

One layout for every screen, so that an operator reading ``fbci status``,
``fbci block get`` or the demo sees columns that line up, times in UTC and
hashes shortened the same way everywhere. Pure string functions: no I/O.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

HASH_PREFIX = 12
"""Hex digits of a hash shown in a table column (the full hash is in ``--json`` and in the detail views)."""


def table(header: Sequence[str], rows: Iterable[Sequence[object]], *, indent: str = "") -> str:
    """Left-aligned columns, two spaces apart; ``None`` cells print as ``-``."""
    cells = [list(header)] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[c]) for r in cells) for c in range(len(header))]
    return "\n".join(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells)


def fields(pairs: Iterable[tuple[str, object]], *, indent: str = "") -> str:
    """``name  value`` lines with the names aligned: one record, read top to bottom."""
    items = [(name, "-" if value is None else str(value)) for name, value in pairs]
    width = max((len(name) for name, _ in items), default=0)
    return "\n".join(f"{indent}{name.ljust(width)}  {value}".rstrip() for name, value in items)


def indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def short(raw: bytes | None, digits: int = HASH_PREFIX) -> str:
    return "-" if raw is None else raw.hex()[:digits]


def utc(ms: int) -> str:
    """Unix milliseconds as an ISO-8601 UTC time to the second (block times, alert windows)."""
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"
