"""State-sync chunks: a key range of the state with its proof, checkable against a certified root alone.

Because the state trie is ordered by key (``core.smt``), a contiguous range
``[start, end)`` with the proof of a scan over it shows every key the state
holds there, and nothing else. So a joining validator needs no separately
committed chunk hashes: it takes the ``state_hash`` of a certified header,
asks peers for consecutive ranges (each chunk's ``end`` is the next one's
``start``; the first starts at ``b""``, the last ends at ``None``), and checks
each chunk against that root as it arrives. A peer can send a chunk that does
not verify (refused, and the peer is to blame) or a short one (slow, not
wrong); it cannot make the joining validator restore a state the validators
did not sign. :func:`make_chunk` is the serving side, :func:`verify_chunk`
the joining side, and ``node.stores.StateStore.restore`` writes the result.

Not yet here: the peer protocol that carries chunks, banning a peer that sends
a bad one, and keeping snapshot versions past the trie's kept window.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

from core import codec, smt
from core.errors import DecodeError, ProofInvalid
from core.proofs import ProvenState, StateProof, TreeState


@dataclass(frozen=True)
class Chunk:
    start: bytes
    end: bytes | None
    """The first key after this chunk (None: the chunk runs to the end of the state)."""
    proof: bytes
    """``StateProof`` of the scan over ``[start, end)``, values included."""

    def encode(self) -> bytes:
        return codec.encode([self.start, self.end, self.proof])

    @classmethod
    def decode(cls, data: bytes) -> Chunk:
        try:
            value = codec.decode(data, max_size=len(data))
        except DecodeError as exc:
            raise ProofInvalid(f"a state chunk is not canonical: {exc.message}") from None
        if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], bytes)
                and isinstance(value[1], (bytes, type(None))) and isinstance(value[2], bytes)):
            raise ProofInvalid("a state chunk is [start, end or null, proof]")
        return cls(*value)


def make_chunk(load: smt.NodeLoader, root: smt.Ref | None, start: bytes, max_keys: int) -> Chunk:
    """At most ``max_keys`` pairs from ``start`` on, with their proof."""
    following = list(islice(TreeState(load, root).range(start, None), max_keys + 1))
    end = following[max_keys][0] if len(following) > max_keys else None
    view = TreeState(load, root)
    for _ in view.range(start, end):
        pass
    return Chunk(start, end, view.proof().encode())


def verify_chunk(chunk: Chunk, state_root: bytes, start: bytes) -> list[tuple[bytes, bytes]]:
    """The pairs of a chunk that must begin at ``start``, proven complete against ``state_root``."""
    if chunk.start != start:
        raise ProofInvalid(f"the chunk starts at {chunk.start!r}, not at the requested {start!r}")
    if chunk.end is not None and chunk.end <= chunk.start:
        raise ProofInvalid("the chunk ends where it starts: it would never make progress")
    return list(ProvenState(StateProof.decode(chunk.proof), state_root).range(chunk.start, chunk.end))
