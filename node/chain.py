"""The application half of a validator: what consensus orders, this executes.

:class:`Chain` owns the stores, the executor and the mempool. It answers the
three questions consensus asks (build a block for this height, is this
proposed block valid, this block is committed with this certificate) and
knows nothing about peers, timers or sockets, so it is driven the same way by
the single-process path, the consensus driver and block sync. Everything here
is synchronous disk work; the asyncio loop around it lives in
``node/runtime.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consensus import CommitCertificate, Ed25519Verifier
from core.block import ZERO_HASH, Block, BlockHeader
from core.errors import ContractRejected, FbciError, InvalidInput, NotFound, TxRejected
from core.hashing import merkle_root, sha256
from core.state import TxContext
from core.tx import Transaction
from node.accounts import Account, load_account, store_account
from node.execution import Executor, SignatureCache, TxKind, TxKindRegistry, validate_block_txs
from node.mempool import Mempool
from node.stores import BlockStore, Database, Receipt, StateStore, TxIndex, commit_block

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ChainParams:
    """The subset of genesis parameters the application enforces."""

    max_tx_bytes: int
    max_block_bytes: int
    max_block_txs: int
    max_clock_drift_ms: int
    mempool_max_txs: int
    mempool_max_bytes: int


@dataclass(frozen=True)
class CommittedBlock:
    block: Block
    certificate: bytes
    receipts: dict[bytes, Receipt]
    events: list[dict[str, Any]]


@dataclass
class Chain:
    chain_id: str
    validators: tuple[bytes, ...]
    params: ChainParams
    database: Database
    registry: TxKindRegistry
    genesis_time_ms: int = 0
    on_commit: list[Callable[[CommittedBlock], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.blocks = BlockStore(self.database)
        self.state = StateStore(self.database)
        self.tx_index = TxIndex(self.database)
        self.signatures = SignatureCache()
        self.verifier = Ed25519Verifier(self.chain_id)
        self.mempool = Mempool(
            chain_id=self.chain_id, registry=self.registry, signatures=self.signatures,
            accounts=self.account, max_txs=self.params.mempool_max_txs,
            max_bytes=self.params.mempool_max_bytes, max_tx_bytes=self.params.max_tx_bytes,
            check=self.check_tx, height=self.blocks.last_height,
        )
        self.executor = Executor(self.chain_id, self.registry, self.signatures, self.params.max_tx_bytes,
                                 decoded=self.mempool.decoded)
        self._head: Block | None = None  # the block at self.height, decoded once (see _head_block)

    # -- start-up ---------------------------------------------------------------------------

    def init_genesis(self, accounts: list[tuple[bytes, str, list[str]]], hooks: list[Callable[[Any], None]]) -> None:
        """Write genesis state as height 0, once; a restarted node skips this."""
        if self.state.height >= 0:
            return
        pending = self.state.begin()
        for public_key, name, roles in accounts:
            store_account(pending, public_key, Account(name, frozenset(roles), 0))
        for hook in hooks:
            hook(pending)
        self.state.commit(0, pending)
        log.info("genesis state written, state hash %s", self.state.state_hash.hex())

    def replay_unapplied(self) -> int:
        """Re-execute blocks that were stored but whose state commit a crash cut off."""
        replayed = 0
        for height in range(self.state.height + 1, self.blocks.last_height + 1):
            block = Block.decode(self.blocks.block(height), max_size=self.params.max_block_bytes)
            self._apply(block, self.blocks.certificate(height), store_block=False)
            replayed += 1
        return replayed

    # -- reads ------------------------------------------------------------------------------

    @property
    def height(self) -> int:
        return self.blocks.last_height

    def account(self, public_key: bytes) -> Account | None:
        return load_account(self.state, public_key)

    def block_at(self, height: int) -> Block:
        return Block.decode(self.blocks.block(height), max_size=self.params.max_block_bytes)

    def _head_block(self) -> Block:
        """The last committed block. Proposing, voting and ``status`` all ask for it, and decoding a
        full block (canonical re-encode, Merkle root) costs milliseconds, so the decoded block is kept
        for as long as the height stays the same: it is the same stored bytes, so nothing changes."""
        height = self.height
        if self._head is None or self._head.height != height:
            self._head = self.block_at(height)
        return self._head

    def last_block_hash(self) -> bytes:
        return ZERO_HASH if self.height == 0 else self._head_block().hash

    def last_block_time(self) -> int:
        return self._head_block().header.time_ms if self.height else self.genesis_time_ms

    def last_commit(self) -> bytes:
        """This validator's certificate for the last block: what its next proposal carries."""
        return b"" if self.height == 0 else self.blocks.certificate(self.height)

    def check_tx(self, tx: Transaction, tx_hash: bytes, kind: TxKind, account: Account, has_pending: bool) -> None:
        """CheckTx: run the contract on a throwaway buffer over committed state.

        A malformed payload is always refused. A contract-rule refusal is
        refused only when the sender has nothing pending, because a pending
        transaction may be what makes this one valid (register, then grant).
        """
        ctx = TxContext(self.chain_id, self.height + 1, self.last_block_time(), tx.sender, account.roles, tx_hash)
        try:
            kind.handler(self.state.begin(), ctx, tx.payload)
        except ContractRejected:
            if not has_pending:
                raise
        except FbciError:
            raise
        except Exception as exc:  # the same contract bug execution would turn into a failed receipt
            raise TxRejected(f"contract error: {type(exc).__name__}") from None

    # -- what consensus asks ----------------------------------------------------------------

    def build_block(self, proposer: bytes, now_ms: int) -> Block:
        """A block for the next height from the mempool, within the size limits."""
        height = self.height + 1
        txs = self.mempool.reap(self.params.max_block_txs, self.params.max_block_bytes - 1024)
        prev_time = self.last_block_time()
        last_commit = self.last_commit()
        header = BlockHeader(
            chain_id=self.chain_id, height=height, prev_block_hash=self.last_block_hash(), proposer=proposer,
            time_ms=max(now_ms, prev_time + 1), txs_root=merkle_root(txs), state_hash=self.state.state_hash,
            prev_commit_hash=sha256(last_commit) if last_commit else ZERO_HASH, num_txs=len(txs),
        )
        return Block(header, tuple(txs), last_commit)

    def check_proposal(self, raw: bytes, now_ms: int) -> Block:
        """Raise InvalidInput naming the rule a proposed block breaks; return it otherwise.

        The time check reads this validator's clock, so validators may
        *vote* differently on a block stamped far in the future; that only
        affects liveness, never what execution computes.
        """
        block = Block.decode(raw, max_size=self.params.max_block_bytes)
        self.check_linkage(block)
        if block.header.time_ms > now_ms + self.params.max_clock_drift_ms:
            raise InvalidInput("block.time_ms is too far in the future")
        return block

    def check_linkage(self, block: Block) -> None:
        """The rules a block must keep relative to this validator's last committed block.

        Block sync uses this alone (with a verified certificate), since an old
        block's time cannot be judged against today's clock.
        """
        h = block.header
        expected = self.height + 1
        if h.chain_id != self.chain_id:
            raise InvalidInput(f"block is for chain {h.chain_id!r}")
        if h.height != expected:
            raise InvalidInput(f"block height {h.height}, expected {expected}")
        if h.prev_block_hash != self.last_block_hash():
            raise InvalidInput("block.prev_block_hash is not the hash of the last committed block")
        self._check_last_commit(block)
        if h.state_hash != self.state.state_hash:
            raise InvalidInput("block.state_hash differs from this validator's state after the last block")
        if h.proposer not in self.validators:
            raise InvalidInput("block.proposer is not a validator")
        if h.time_ms <= self.last_block_time():
            raise InvalidInput("block.time_ms is not after the previous block's time (or genesis time)")
        if h.num_txs > self.params.max_block_txs:
            raise InvalidInput(f"block has {h.num_txs} transactions; the limit is {self.params.max_block_txs}")
        validate_block_txs(block, self.chain_id, self.params.max_tx_bytes, self.signatures)

    def _check_last_commit(self, block: Block) -> None:
        """The carried certificate must finalise exactly our last block, with a quorum of valid signatures.

        Any valid quorum will do, not only this validator's own subset; the
        header's ``prev_commit_hash`` is already bound to these bytes
        (``Block.validate_shape``).
        """
        if self.height == 0:
            return  # validate_shape: empty last_commit at height 1
        try:
            cert = CommitCertificate.decode(block.last_commit)
        except FbciError as exc:
            raise InvalidInput(f"block.last_commit (prev_commit_hash) is not a commit certificate: {exc.message}") from None
        if cert.height != self.height or cert.block_hash != self.last_block_hash():
            raise InvalidInput("block.last_commit (prev_commit_hash) does not certify the last committed block")
        cert.verify(self.chain_id, self.validators, self.verifier)

    def commit(self, block: Block, certificate: bytes, raw: bytes | None = None, *,
               durable: bool = True) -> CommittedBlock:
        """Store, execute and apply a finalised block (see node/stores.py for the order).

        ``raw``: the block's encoding when the caller has it (the bytes it was
        decoded from, canonical by construction), to save re-encoding it.
        ``durable=False`` defers the fsync to the next durable commit; only block
        sync uses it, for all but the last block of a batch.
        """
        if block.height != self.height + 1:
            raise InvalidInput(f"cannot commit height {block.height} on top of {self.height}")
        return self._apply(block, certificate, store_block=True, raw=raw, durable=durable)

    def _apply(self, block: Block, certificate: bytes, *, store_block: bool,
               raw: bytes | None = None, durable: bool = True) -> CommittedBlock:
        outcome = self.executor.execute_block(block, self.state)
        stored = None
        if store_block:
            stored = (block.height, block.hash, block.encode() if raw is None else raw, certificate)
        commit_block(self.database, self.blocks, stored, self.tx_index, outcome.receipts, self.state, block.height,
                     outcome.pending, durable=durable)
        self._head = block
        self.mempool.update(block.height, list(outcome.receipts), outcome.senders)
        committed = CommittedBlock(block, certificate, outcome.receipts, outcome.events)
        for callback in self.on_commit:
            try:
                callback(committed)
            except Exception:  # an observer must never stop the chain
                log.exception("commit observer failed")
        return committed

    def receipt(self, tx_hash: bytes) -> Receipt:
        return self.tx_index.get(tx_hash)

    def find_block(self, height: int | None, block_hash: bytes | None) -> tuple[Block, bytes]:
        if block_hash is not None:
            height = self.blocks.height_of(block_hash)
        if height is None:
            height = self.height
        if height < 1 or height > self.height:
            raise NotFound(f"no block at height {height}; the chain is at {self.height}")
        return self.block_at(height), self.blocks.certificate(height)
