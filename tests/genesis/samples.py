"""Fixed-seed keys and public parts, so tests build the same known-good genesis every time."""

from __future__ import annotations

from core.crypto import PrivateKey
from genesis.keys import PublicPart, public_part_of

GENESIS_TIME_MS = 1_700_000_000_000


def fixed_key(i: int) -> PrivateKey:
    return PrivateKey(bytes([i + 1]) * 32)


def sample_parts(n_validators: int = 4) -> list[PublicPart]:
    parts = [public_part_of(fixed_key(i), name=f"node{i}", roles=["validator"],
                            p2p_address=f"127.0.0.1:{26600 + 2 * i}", rpc_address=f"127.0.0.1:{26601 + 2 * i}")
             for i in range(n_validators)]
    parts.append(public_part_of(fixed_key(50), name="admin", roles=["admin"]))
    parts.append(public_part_of(fixed_key(51), name="hospital0", roles=["hospital"]))
    parts.append(public_part_of(fixed_key(52), name="gateway0", roles=["gateway"]))
    return parts
