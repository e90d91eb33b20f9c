"""Blocks and their headers.

The header commits to everything a light client needs to check a block
against the one before it: the previous block's hash, the hash of the
certificate that finalised the previous block, the Merkle root of the
transactions, and ``state_hash``: the application state hash *after the
previous block* (as in CometBFT's app_hash), so a proposer never has to
execute a block before proposing it. The block hash is SHA-256 of the
canonical header encoding.

The header also names who decides: ``validators_hash`` is the hash of the
validator set of its own height and ``next_validators_hash`` that of the next
height (``core.validators``; CometBFT's fields). A set decided in block H
takes effect at H + 2, so both are known when the block is proposed, and a
light client that trusts one header's set learns the next from it.

The block itself carries that previous certificate (``last_commit``, as in
CometBFT): honest validators finish a height holding different 2f + 1 subsets
of the commit votes, so the chain records the proposer's copy, which every
validator verifies against the validator set before voting, and the header
commits to exactly those bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import codec
from core.errors import DecodeError, InvalidInput
from core.hashing import HASH_SIZE, merkle_root, sha256

ZERO_HASH = bytes(HASH_SIZE)
HEADER_FIELDS = 11


@dataclass(frozen=True)
class BlockHeader:
    chain_id: str
    height: int
    prev_block_hash: bytes
    proposer: bytes
    time_ms: int
    txs_root: bytes
    state_hash: bytes
    prev_commit_hash: bytes
    num_txs: int
    validators_hash: bytes = ZERO_HASH
    next_validators_hash: bytes = ZERO_HASH
    """Zero only in tools' and tests' headers: a validator refuses a block whose hashes are not its sets'."""

    def fields(self) -> list[object]:
        return [
            self.chain_id, self.height, self.prev_block_hash, self.proposer, self.time_ms,
            self.txs_root, self.state_hash, self.prev_commit_hash, self.num_txs, self.validators_hash,
            self.next_validators_hash,
        ]

    @classmethod
    def from_fields(cls, fields: object) -> BlockHeader:
        """A decoded header's field list; the shape only (``Block.validate_shape`` checks the values)."""
        if not isinstance(fields, list) or len(fields) != HEADER_FIELDS:
            raise DecodeError(f"a header is a list of {HEADER_FIELDS} fields")
        return cls(*fields)

    def encode(self) -> bytes:
        return codec.encode(self.fields())

    @property
    def hash(self) -> bytes:
        return sha256(self.encode())


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    txs: tuple[bytes, ...]
    last_commit: bytes = b""
    """The encoded commit certificate of the previous height; empty at height 1."""

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    def encode(self) -> bytes:
        return codec.encode([self.header.fields(), list(self.txs), self.last_commit])

    @classmethod
    def decode(cls, data: bytes, *, max_size: int) -> Block:
        value = codec.decode(data, max_size=max_size)
        if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], list)
                and len(value[0]) == HEADER_FIELDS and isinstance(value[1], list) and isinstance(value[2], bytes)):
            raise DecodeError(f"a block is [header({HEADER_FIELDS} fields), txs, last_commit]")
        header = BlockHeader.from_fields(value[0])
        block = cls(header, tuple(value[1]), value[2])
        block.validate_shape()
        return block

    def validate_shape(self) -> None:
        """Structure only; chain rules (heights, hashes, time) are checked by the node."""
        h = self.header
        if not isinstance(h.chain_id, str):
            raise InvalidInput("block.header.chain_id must be a string")
        for name in ("height", "time_ms", "num_txs"):
            v = getattr(h, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidInput(f"block.header.{name} must be a non-negative integer")
        for name in ("prev_block_hash", "txs_root", "state_hash", "prev_commit_hash", "validators_hash",
                     "next_validators_hash"):
            v = getattr(h, name)
            if not isinstance(v, bytes) or len(v) != HASH_SIZE:
                raise InvalidInput(f"block.header.{name} must be {HASH_SIZE} bytes")
        if not isinstance(h.proposer, bytes) or len(h.proposer) != 32:
            raise InvalidInput("block.header.proposer must be a 32-byte public key")
        if not all(isinstance(t, bytes) for t in self.txs):
            raise InvalidInput("block.txs must be a list of encoded transactions")
        if h.num_txs != len(self.txs):
            raise InvalidInput("block.header.num_txs does not match the transactions")
        if merkle_root(list(self.txs)) != h.txs_root:
            raise InvalidInput("block.header.txs_root does not match the transactions")
        expected = ZERO_HASH if not self.last_commit else sha256(self.last_commit)
        if h.prev_commit_hash != expected or (h.height <= 1) != (not self.last_commit):
            raise InvalidInput("block.header.prev_commit_hash does not match the block's last_commit "
                               "(which must be empty exactly at height 1)")
