"""SHA-256 and the Merkle root of a list of byte strings (RFC 6962 style).

Leaves and inner nodes get different one-byte prefixes so that a leaf can
never be passed off as an inner node (the second-preimage attack on naive
Merkle trees).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def merkle_root(items: Sequence[bytes]) -> bytes:
    """Root over ``items`` in order; the empty list hashes to SHA-256 of nothing."""
    if not items:
        return EMPTY_ROOT
    level = [hashlib.sha256(b"\x00" + item).digest() for item in items]
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            nxt.append(hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest())
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]
